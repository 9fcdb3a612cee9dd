package eval

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotLOO writes a PNG (or SVG/PDF, by the file's extension) scatter plot of
// predicted against actual change of test loss, one colour per test point,
// with the line y = x.
func PlotLOO(path string, r *LOOResult) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("LOO, %s %s (λ = %g): Pearson %.4f, Spearman %.4f", r.Dataset, r.Model, r.L2, r.Pearson, r.Spearman)
	p.X.Label.Text = "actual change of test loss (retrained)"
	p.Y.Label.Text = "predicted change, +score/N"
	p.Add(plotter.NewGrid())
	lo, hi := math.Inf(1), math.Inf(-1)
	palette := []color.Color{
		color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{44, 160, 44, 255},
		color.RGBA{214, 39, 40, 255}, color.RGBA{148, 103, 189, 255}, color.RGBA{140, 86, 75, 255},
	}
	for i, tp := range r.PerTest {
		var xy plotter.XYs
		for _, pt := range r.Points {
			if pt.Test == tp.Test {
				xy = append(xy, plotter.XY{X: pt.Actual, Y: pt.Predicted})
				lo = math.Min(lo, math.Min(pt.Actual, pt.Predicted))
				hi = math.Max(hi, math.Max(pt.Actual, pt.Predicted))
			}
		}
		s, err := plotter.NewScatter(xy)
		if err != nil {
			return fmt.Errorf("eval: plot: %w", err)
		}
		s.GlyphStyle.Color = palette[i%len(palette)]
		s.GlyphStyle.Shape = draw.CircleGlyph{}
		s.GlyphStyle.Radius = vg.Points(2.5)
		p.Add(s)
		p.Legend.Add(fmt.Sprintf("test %d (r = %.3f)", tp.Test, tp.Pearson), s)
	}
	if lo < hi {
		diag, err := plotter.NewLine(plotter.XYs{{X: lo, Y: lo}, {X: hi, Y: hi}})
		if err != nil {
			return fmt.Errorf("eval: plot: %w", err)
		}
		diag.Color = color.Gray{Y: 120}
		diag.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(diag)
	}
	p.Legend.Top, p.Legend.Left = true, true
	if err := p.Save(6*vg.Inch, 6*vg.Inch, path); err != nil {
		return fmt.Errorf("eval: plot %s: %w", path, err)
	}
	return nil
}
