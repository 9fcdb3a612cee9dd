package datasets

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEmbedded(t *testing.T) {
	tests := []struct {
		name          string
		load          func() (*Dataset, error)
		rows, cols, k int
	}{
		{"digits", Digits, 1797, 64, 10},
		{"breast-cancer", BreastCancer, 569, 30, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.load()
			if err != nil {
				t.Fatal(err)
			}
			if d.X.Rows != tc.rows || d.X.Cols != tc.cols || d.Classes != tc.k {
				t.Fatalf("got %d×%d with %d classes", d.X.Rows, d.X.Cols, d.Classes)
			}
			count := make([]int, d.Classes)
			for _, y := range d.Y {
				count[y]++
			}
			for c, n := range count {
				if n == 0 {
					t.Errorf("class %d has no examples", c)
				}
			}
		})
	}
}

func TestSplitAndScaler(t *testing.T) {
	d, err := BreastCancer()
	if err != nil {
		t.Fatal(err)
	}
	tr, te, err := d.Split(400, 7)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Len() != 400 || te.Len() != 169 {
		t.Fatalf("split sizes %d, %d", tr.Len(), te.Len())
	}
	seen := map[int]bool{}
	for _, i := range append(append([]int{}, tr.Index...), te.Index...) {
		if seen[i] {
			t.Fatalf("row %d in both halves", i)
		}
		seen[i] = true
	}
	tr2, _, _ := d.Split(400, 7)
	for i := range tr.Index {
		if tr.Index[i] != tr2.Index[i] {
			t.Fatal("split is not reproducible for a seed")
		}
	}
	z := FitScaler(tr.X).Transform(tr.X)
	for j := 0; j < z.Cols; j++ {
		var m, v float64
		for i := 0; i < z.Rows; i++ {
			m += z.At(i, j) / float64(z.Rows)
		}
		for i := 0; i < z.Rows; i++ {
			v += (z.At(i, j) - m) * (z.At(i, j) - m) / float64(z.Rows)
		}
		if math.Abs(m) > 1e-9 || math.Abs(v-1) > 1e-9 {
			t.Fatalf("feature %d: mean %g var %g", j, m, v)
		}
	}
}

func TestParseCSVErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ragged", "1,2,0\n1,0\n", "line 2: 2 fields"},
		{"bad number", "1,x,0\n", "field 2"},
		{"bad label", "1,2,5\n", "label"},
		{"nan", "NaN,2,1\n", "field 1"},
		{"empty", "\n", "no examples"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCSV("t", strings.NewReader(tc.in), false, 2)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseLabelFirst(t *testing.T) {
	in := "label,p0,p1\n3,0,255\n7,12,1\n"
	d, err := parseCSV("t", strings.NewReader(in), csvFormat{header: true, labelFirst: true}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || d.X.Cols != 2 || d.Y[0] != 3 || d.Y[1] != 7 || d.X.At(0, 1) != 255 || d.X.At(1, 0) != 12 {
		t.Fatalf("parsed %v %v", d.X.Data, d.Y)
	}
	_, err = parseCSV("t", strings.NewReader("label,p0\n1,x\n"), csvFormat{header: true, labelFirst: true}, 10)
	if err == nil || !strings.Contains(err.Error(), "line 2: field 2") {
		t.Fatalf("error %v does not name line 2, field 2", err)
	}
}

func TestMNIST(t *testing.T) {
	ctx := context.Background()
	// A directory without the files is unavailable data, not a failure.
	if _, _, err := MNIST(ctx, t.TempDir()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("empty directory: %v, want ErrUnavailable", err)
	}
	// Files of the wrong size are refused with their path.
	dir := t.TempDir()
	for _, f := range []string{"mnist_train.csv", "mnist_test.csv"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("label,p0\n1,0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := MNIST(ctx, dir); err == nil || !strings.Contains(err.Error(), "want 5000 of 784") {
		t.Errorf("short files: %v", err)
	}
	train, test, err := MNIST(ctx, "")
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("MNIST cannot be fetched here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != MNISTTrain || test.Len() != MNISTTest || train.X.Cols != 784 || train.Classes != 10 {
		t.Fatalf("train %d, test %d, %d features", train.Len(), test.Len(), train.X.Cols)
	}
	count := make([]int, 10)
	for _, y := range train.Y {
		count[y]++
	}
	hi := 0.0
	for _, v := range train.X.Data {
		hi = math.Max(hi, v)
	}
	if count[0] != 494 || count[1] != 558 || hi != 255 {
		t.Errorf("class counts %v, largest pixel %v", count, hi)
	}
}
