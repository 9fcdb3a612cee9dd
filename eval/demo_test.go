package eval

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDemo(t *testing.T) {
	res, err := Demo(context.Background(), DemoOptions{Queries: 3, K: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 3 || res.Train != 1437 || res.Test != 360 || res.TestAccuracy < 0.9 {
		t.Fatalf("%d rows, %d train, %d test, accuracy %.3f", len(res.Rows), res.Train, res.Test, res.TestAccuracy)
	}
	for i, r := range res.Rows {
		if len(r.Helpful) != 2 || len(r.Harmful) != 2 || !(r.Helpful[0].Score >= r.Helpful[1].Score) ||
			!(r.Harmful[0].Score <= r.Harmful[1].Score) || r.Helpful[0].Score <= 0 || r.Harmful[0].Score >= 0 {
			t.Errorf("row %d: helpful %+v harmful %+v", i, r.Helpful, r.Harmful)
		}
	}
	// The first query is the first misclassified test digit, when there
	// is one.
	if r := res.Rows[0]; r.Pred == r.Label && res.TestAccuracy < 1 {
		t.Errorf("first query #%d is classified correctly", r.ID)
	}
	var b bytes.Buffer
	if err := res.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Test accuracy", "Score > 0: helpful", "Test digit #", "most helpful", "most harmful", "██"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	path := filepath.Join(t.TempDir(), "grid.png")
	if err := res.WritePNG(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 5*80 || b.Dy() < 3*80 {
		t.Errorf("PNG of %v for 3 rows of 5 digits", b)
	}
	if _, err := Demo(context.Background(), DemoOptions{Queries: 1000}); err == nil {
		t.Error("1000 queries of 360 test digits accepted")
	}
}
