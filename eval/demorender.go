package eval

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

// shades maps intensity to a glyph; each pixel is two glyphs wide so digits
// keep their aspect ratio in a terminal.
var shades = []string{"  ", "░░", "▒▒", "▓▓", "██"}

func shade(v float64) string {
	i := int(v*float64(len(shades)-1) + 0.5)
	return shades[min(max(i, 0), len(shades)-1)]
}

// writeDemoRow draws the query and its rankings side by side, captions
// above.
func writeDemoRow(w io.Writer, r DemoRow) error {
	const width = 16 // 8 pixels × 2 glyphs
	caps := []string{fmt.Sprintf("test #%d: %d", r.ID, r.Label)}
	imgs := [][]float64{r.Query}
	for _, t := range r.Helpful {
		caps = append(caps, fmt.Sprintf("#%d: %d %+.2g", t.ID, t.Label, t.Score))
		imgs = append(imgs, t.Pixels)
	}
	for _, t := range r.Harmful {
		caps = append(caps, fmt.Sprintf("#%d: %d %+.2g", t.ID, t.Label, t.Score))
		imgs = append(imgs, t.Pixels)
	}
	verdict := "correct"
	if r.Pred != r.Label {
		verdict = fmt.Sprintf("MISCLASSIFIED as %d", r.Pred)
	}
	fmt.Fprintf(w, "Test digit #%d, label %d, p(label) = %.3f, %s\n", r.ID, r.Label, r.Prob, verdict)
	fmt.Fprintf(w, "%-*s | %-*s | %s\n", width, "query", (width+2)*len(r.Helpful)-2, "most helpful", "most harmful")
	sep := func(i int) string {
		if i == 0 || i == 1+len(r.Helpful) {
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
	return nil
}

// WritePNG draws the result to a PNG file at path, one row per test digit:
// the query, then the helpful digits framed in green and the harmful ones
// framed in red, each captioned with its label and score.
func (res *DemoResult) WritePNG(path string) error {
	rows := res.Rows
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
		cols += len(rows[0].Helpful) + len(rows[0].Harmful)
	}
	img := image.NewRGBA(image.Rect(0, 0, cols*cellW, len(rows)*cellH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	green, red, blue := color.RGBA{30, 150, 60, 255}, color.RGBA{200, 40, 40, 255}, color.RGBA{40, 80, 200, 255}
	for ri, r := range rows {
		type cell struct {
			t     DemoTile
			frame color.Color
			text  string
		}
		cells := []cell{{DemoTile{Pixels: r.Query, Label: r.Label}, blue, fmt.Sprintf("test %d -> %d", r.Label, r.Pred)}}
		for _, t := range r.Helpful {
			cells = append(cells, cell{t, green, fmt.Sprintf("%d  %+.2g", t.Label, t.Score)})
		}
		for _, t := range r.Harmful {
			cells = append(cells, cell{t, red, fmt.Sprintf("%d  %+.2g", t.Label, t.Score)})
		}
		for ci, c := range cells {
			x0, y0 := ci*cellW+pad+15, ri*cellH+pad
			frame := image.Rect(x0-3, y0-3, x0+tile+3, y0+tile+3)
			draw.Draw(img, frame, image.NewUniform(c.frame), image.Point{}, draw.Src)
			for y := 0; y < 8; y++ {
				for x := 0; x < 8; x++ {
					v := uint8(255 - 255*min(max(c.t.Pixels[y*8+x], 0), 1))
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
