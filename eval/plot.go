package eval

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/goinfluence/goinfluence/internal/atomicfile"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
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
		if err := addDiagonal(p, lo, hi, 120); err != nil {
			return err
		}
	}
	p.Legend.Top, p.Legend.Left = true, true
	if err := savePlot(p, 6*vg.Inch, 6*vg.Inch, path); err != nil {
		return fmt.Errorf("eval: plot %s: %w", path, err)
	}
	return nil
}

// PlotLDS writes a scatter plot of the datamodel predictions Σ_{i∈S}
// score(q, i) against the measured output after training on each subset S,
// for the test point whose Spearman correlation is closest to the method's
// mean (a typical one, not the best).
func PlotLDS(path string, truth *LDSTruth, scores *linalg.Dense64, o models.Output, r *LDSResult, method string) error {
	q, best := -1, math.Inf(1)
	for i, v := range r.PerTest {
		if d := math.Abs(v - r.Mean); d < best {
			q, best = i, d
		}
	}
	if q < 0 {
		return fmt.Errorf("eval: plot: no test point with a defined LDS")
	}
	pred := LDSPredictions(truth, scores)[q]
	var xy plotter.XYs
	for j, row := range truth.Outputs[o] {
		xy = append(xy, plotter.XY{X: pred[j], Y: row[q]})
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("LDS, %s on %s %s: test point %d, Spearman %.3f (mean %.3f)",
		method, truth.Setup.Dataset, truth.Setup.Model, q, r.PerTest[q], r.Mean)
	p.X.Label.Text = "predicted: sum of scores over the subset"
	p.Y.Label.Text = fmt.Sprintf("measured %s after training on the subset", o)
	p.Add(plotter.NewGrid())
	s, err := plotter.NewScatter(xy)
	if err != nil {
		return fmt.Errorf("eval: plot: %w", err)
	}
	s.GlyphStyle.Color = palette[0]
	s.GlyphStyle.Shape = draw.CircleGlyph{}
	s.GlyphStyle.Radius = vg.Points(2.5)
	p.Add(s)
	if err := savePlot(p, 6*vg.Inch, 6*vg.Inch, path); err != nil {
		return fmt.Errorf("eval: plot %s: %w", path, err)
	}
	return nil
}

// ROCCurve is one method's ROC curve for PlotROC.
type ROCCurve struct {
	Name     string
	FPR, TPR []float64
	AUC      float64
}

// PlotROC writes the ROC curves of several methods, with the chance diagonal.
func PlotROC(path, title string, curves []ROCCurve) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "false-positive rate"
	p.Y.Label.Text = "true-positive rate (flipped labels found)"
	p.Add(plotter.NewGrid())
	for i, c := range curves {
		xy := make(plotter.XYs, len(c.FPR))
		for j := range c.FPR {
			xy[j] = plotter.XY{X: c.FPR[j], Y: c.TPR[j]}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("eval: plot: %w", err)
		}
		l.Color = palette[i%len(palette)]
		l.Width = vg.Points(1.5)
		if i >= len(palette) {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (AUC %.3f)", c.Name, c.AUC), l)
	}
	if err := addDiagonal(p, 0, 1, 150); err != nil {
		return err
	}
	// Bottom right, below the curves of useful methods.
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(5), vg.Points(5)
	if err := savePlot(p, 7*vg.Inch, 7*vg.Inch, path); err != nil {
		return fmt.Errorf("eval: plot %s: %w", path, err)
	}
	return nil
}

// addDiagonal draws the dashed line y = x from lo to hi in grey level gray.
func addDiagonal(p *plot.Plot, lo, hi float64, gray uint8) error {
	diag, err := plotter.NewLine(plotter.XYs{{X: lo, Y: lo}, {X: hi, Y: hi}})
	if err != nil {
		return fmt.Errorf("eval: plot: %w", err)
	}
	diag.Color = color.Gray{Y: gray}
	diag.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(diag)
	return nil
}

// palette holds the colours of the plots' series.
var palette = []color.Color{
	color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{44, 160, 44, 255},
	color.RGBA{214, 39, 40, 255}, color.RGBA{148, 103, 189, 255}, color.RGBA{140, 86, 75, 255},
	color.RGBA{227, 119, 194, 255}, color.RGBA{127, 127, 127, 255}, color.RGBA{188, 189, 34, 255},
	color.RGBA{23, 190, 207, 255},
}

// savePlot writes p to path, in the format of the file's extension, as
// plot.Save does but atomically, so that a failed plot leaves no half file.
func savePlot(p *plot.Plot, w, h vg.Length, path string) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	c, err := p.WriterTo(w, h, format)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		_, err := c.WriteTo(w)
		return err
	})
}
