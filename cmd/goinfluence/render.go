package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/goinfluence/goinfluence/internal/atomicfile"
)

// demoTile is one 8×8 digit with its label and score.
type demoTile struct {
	pixels []float64 // 64 values in [0, 1]
	label  int
	score  float64
	id     int // row in the original data file
}

// demoRow is a test digit with its most helpful and harmful training digits.
type demoRow struct {
	query            []float64
	label, pred, id  int
	prob             float64
	helpful, harmful []demoTile
}

// shades maps intensity to a glyph; each pixel is two glyphs wide so digits
// keep their aspect ratio in a terminal.
var shades = []string{"  ", "░░", "▒▒", "▓▓", "██"}

func shade(v float64) string {
	i := int(v*float64(len(shades)-1) + 0.5)
	return shades[min(max(i, 0), len(shades)-1)]
}

// printRow draws the query and its rankings side by side, captions above.
func printRow(w io.Writer, r demoRow) {
	const width = 16 // 8 pixels × 2 glyphs
	caps := []string{fmt.Sprintf("test #%d: %d", r.id, r.label)}
	imgs := [][]float64{r.query}
	for _, t := range r.helpful {
		caps = append(caps, fmt.Sprintf("#%d: %d %+.2g", t.id, t.label, t.score))
		imgs = append(imgs, t.pixels)
	}
	for _, t := range r.harmful {
		caps = append(caps, fmt.Sprintf("#%d: %d %+.2g", t.id, t.label, t.score))
		imgs = append(imgs, t.pixels)
	}
	verdict := "correct"
	if r.pred != r.label {
		verdict = fmt.Sprintf("MISCLASSIFIED as %d", r.pred)
	}
	fmt.Fprintf(w, "Test digit #%d, label %d, p(label) = %.3f, %s\n", r.id, r.label, r.prob, verdict)
	fmt.Fprintf(w, "%-*s | %-*s | %s\n", width, "query", (width+2)*len(r.helpful)-2, "most helpful", "most harmful")
	sep := func(i int) string {
		if i == 0 || i == 1+len(r.helpful) {
			return " | "
		}
		return "  "
	}
	var b strings.Builder
	for i, c := range caps {
		if i > 0 {
			b.WriteString(sep(i))
		}
		if len([]rune(c)) > width {
			c = string([]rune(c)[:width])
		}
		fmt.Fprintf(&b, "%-*s", width, c)
	}
	fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	for y := 0; y < 8; y++ {
		b.Reset()
		for i, img := range imgs {
			if i > 0 {
				b.WriteString(sep(i))
			}
			for x := 0; x < 8; x++ {
				b.WriteString(shade(img[y*8+x]))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// writeGridPNG draws one row per test digit: the query, then the helpful
// digits framed in green and the harmful ones framed in red, each captioned
// with its label and score.
func writeGridPNG(path string, rows []demoRow) error {
	const (
		scale   = 10 // screen pixels per digit pixel
		tile    = 8 * scale
		pad     = 6
		caption = 16
		cellW   = tile + 2*pad + 30
		cellH   = tile + 2*pad + caption
	)
	cols := 1
	if len(rows) > 0 {
		cols += len(rows[0].helpful) + len(rows[0].harmful)
	}
	img := image.NewRGBA(image.Rect(0, 0, cols*cellW, len(rows)*cellH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	green, red, blue := color.RGBA{30, 150, 60, 255}, color.RGBA{200, 40, 40, 255}, color.RGBA{40, 80, 200, 255}
	for ri, r := range rows {
		type cell struct {
			t     demoTile
			frame color.Color
			text  string
		}
		cells := []cell{{demoTile{pixels: r.query, label: r.label}, blue, fmt.Sprintf("test %d -> %d", r.label, r.pred)}}
		for _, t := range r.helpful {
			cells = append(cells, cell{t, green, fmt.Sprintf("%d  %+.2g", t.label, t.score)})
		}
		for _, t := range r.harmful {
			cells = append(cells, cell{t, red, fmt.Sprintf("%d  %+.2g", t.label, t.score)})
		}
		for ci, c := range cells {
			x0, y0 := ci*cellW+pad+15, ri*cellH+pad
			frame := image.Rect(x0-3, y0-3, x0+tile+3, y0+tile+3)
			draw.Draw(img, frame, image.NewUniform(c.frame), image.Point{}, draw.Src)
			for y := 0; y < 8; y++ {
				for x := 0; x < 8; x++ {
					v := uint8(255 - 255*min(max(c.t.pixels[y*8+x], 0), 1))
					px := image.Rect(x0+x*scale, y0+y*scale, x0+(x+1)*scale, y0+(y+1)*scale)
					draw.Draw(img, px, image.NewUniform(color.Gray{Y: v}), image.Point{}, draw.Src)
				}
			}
			d := font.Drawer{Dst: img, Src: image.Black, Face: basicfont.Face7x13,
				Dot: fixed.P(x0-10, y0+tile+caption)}
			d.DrawString(c.text)
		}
	}
	if err := atomicfile.WriteFile(path, func(w io.Writer) error { return png.Encode(w, img) }); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
