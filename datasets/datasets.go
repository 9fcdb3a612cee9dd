package datasets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/linalg"
)

//go:embed data/*.csv.gz
var files embed.FS

// Dataset is a classification data set: one example a row of X, labels in
// [0, Classes).
type Dataset struct {
	Name    string
	X       *linalg.Dense64
	Y       []int
	Classes int
	// Index maps each row to its row in the original file, so that subsets
	// and splits can still name the examples they came from.
	Index []int
}

// Len returns the number of examples.
func (d *Dataset) Len() int { return len(d.Y) }

// Digits returns the 1797 8×8 handwritten digits (pixels 0–16, 10 classes)
// embedded in the package (UCI, CC BY 4.0).
func Digits() (*Dataset, error) {
	return load("digits", "data/digits.csv.gz", false, 10)
}

// BreastCancer returns the 569 Wisconsin Diagnostic Breast Cancer examples
// (30 real features, label 0 = malignant, 1 = benign) embedded in the package
// (UCI, CC BY 4.0). Features are raw: standardise them before training.
func BreastCancer() (*Dataset, error) {
	return load("breast-cancer", "data/breast_cancer.csv.gz", true, 2)
}

// ByName returns "digits" or "breast-cancer".
func ByName(name string) (*Dataset, error) {
	switch name {
	case "digits":
		return Digits()
	case "breast-cancer", "breast_cancer":
		return BreastCancer()
	}
	return nil, fmt.Errorf("datasets: unknown dataset %q (have digits, breast-cancer)", name)
}

func load(name, path string, header bool, classes int) (*Dataset, error) {
	raw, err := files.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("datasets: %s: %w", name, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("datasets: %s: %w", name, err)
	}
	return ParseCSV(name, zr, header, classes)
}

// ParseCSV reads comma-separated rows of features followed by an integer
// label, skipping one header line when header is set. Every row must have the
// same number of fields; errors name the line and field.
func ParseCSV(name string, r io.Reader, header bool, classes int) (*Dataset, error) {
	return parseCSV(name, r, csvFormat{header: header}, classes)
}

// csvFormat describes a CSV layout: an optional header line, and the label
// in the last field or, with labelFirst, the first.
type csvFormat struct {
	header, labelFirst bool
}

func parseCSV(name string, r io.Reader, format csvFormat, classes int) (*Dataset, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var (
		data  []float64
		y     []int
		width = -1
		line  = 0
	)
	for sc.Scan() {
		line++
		if format.header && line == 1 {
			continue
		}
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		fields := strings.Split(text, ",")
		if width < 0 {
			width = len(fields)
			if width < 2 {
				return nil, fmt.Errorf("datasets: %s: line %d: need features and a label, got %d fields", name, line, width)
			}
		}
		if len(fields) != width {
			return nil, fmt.Errorf("datasets: %s: line %d: %d fields, want %d", name, line, len(fields), width)
		}
		feats, label, first := fields[:width-1], fields[width-1], 1
		if format.labelFirst {
			feats, label, first = fields[1:], fields[0], 2
		}
		for j, f := range feats {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("datasets: %s: line %d: field %d: bad number %q", name, line, j+first, f)
			}
			data = append(data, v)
		}
		lab, err := strconv.Atoi(strings.TrimSpace(label))
		if err != nil || lab < 0 || lab >= classes {
			return nil, fmt.Errorf("datasets: %s: line %d: label %q not in [0, %d)", name, line, label, classes)
		}
		y = append(y, lab)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("datasets: %s: %w", name, err)
	}
	if len(y) == 0 {
		return nil, fmt.Errorf("datasets: %s: no examples", name)
	}
	idx := make([]int, len(y))
	for i := range idx {
		idx[i] = i
	}
	return &Dataset{Name: name, X: linalg.NewDense64(len(y), width-1, data), Y: y, Classes: classes, Index: idx}, nil
}

// Subset returns the examples at the given rows, copied.
func (d *Dataset) Subset(rows []int) *Dataset {
	x := linalg.NewDense64(len(rows), d.X.Cols, nil)
	y := make([]int, len(rows))
	idx := make([]int, len(rows))
	for i, r := range rows {
		copy(x.Row(i), d.X.Row(r))
		y[i] = d.Y[r]
		idx[i] = d.Index[r]
	}
	return &Dataset{Name: d.Name, X: x, Y: y, Classes: d.Classes, Index: idx}
}

// Split shuffles the examples with a seeded generator and returns the first
// nTrain as the training set and the rest as the test set.
func (d *Dataset) Split(nTrain int, seed uint64) (train, test *Dataset, err error) {
	if nTrain <= 0 || nTrain >= d.Len() {
		return nil, nil, fmt.Errorf("datasets: %s: cannot split %d examples with %d for training", d.Name, d.Len(), nTrain)
	}
	perm := rand.New(rand.NewPCG(seed, 0x73706c6974)).Perm(d.Len()) // "split"
	return d.Subset(perm[:nTrain]), d.Subset(perm[nTrain:]), nil
}

// Scaler standardises features to zero mean and unit variance with the
// statistics of the data it was fitted on.
type Scaler struct {
	Mean, Scale []float64
}

// FitScaler computes per-feature mean and standard deviation of x. Constant
// features get scale 1 so they map to zero instead of NaN.
func FitScaler(x *linalg.Dense64) *Scaler {
	s := &Scaler{Mean: make([]float64, x.Cols), Scale: make([]float64, x.Cols)}
	n := float64(x.Rows)
	for i := 0; i < x.Rows; i++ {
		for j, v := range x.Row(i) {
			s.Mean[j] += v / n
		}
	}
	for i := 0; i < x.Rows; i++ {
		for j, v := range x.Row(i) {
			d := v - s.Mean[j]
			s.Scale[j] += d * d / n
		}
	}
	for j := range s.Scale {
		s.Scale[j] = math.Sqrt(s.Scale[j])
		if s.Scale[j] < 1e-12 {
			s.Scale[j] = 1
		}
	}
	return s
}

// Transform returns a standardised copy of x.
func (s *Scaler) Transform(x *linalg.Dense64) *linalg.Dense64 {
	out := x.Clone()
	for i := 0; i < out.Rows; i++ {
		row := out.Row(i)
		for j := range row {
			row[j] = (row[j] - s.Mean[j]) / s.Scale[j]
		}
	}
	return out
}

// Scaled returns a copy of the data set with features scaled by c (the
// digits' 0–16 pixels by 1/16, say).
func (d *Dataset) Scaled(c float64) *Dataset {
	out := &Dataset{Name: d.Name, X: d.X.Clone(), Y: slices.Clone(d.Y), Classes: d.Classes, Index: slices.Clone(d.Index)}
	for i := range out.X.Data {
		out.X.Data[i] *= c
	}
	return out
}

// Concat returns the examples of a followed by those of b, for instance a
// split's training part then its test part; the name and classes are a's.
// It panics if the two have different numbers of features, a programming
// error as in linalg.
func Concat(a, b *Dataset) *Dataset {
	if a.X.Cols != b.X.Cols {
		panic(fmt.Sprintf("datasets: concat of %s (%d features) and %s (%d features)", a.Name, a.X.Cols, b.Name, b.X.Cols))
	}
	n := a.Len() + b.Len()
	d := &Dataset{Name: a.Name, X: linalg.NewDense64(n, a.X.Cols, nil), Classes: a.Classes,
		Y: make([]int, 0, n), Index: make([]int, 0, n)}
	for i, part := range []*Dataset{a, b} {
		off := i * a.Len()
		for r := 0; r < part.Len(); r++ {
			copy(d.X.Row(off+r), part.X.Row(r))
		}
		d.Y = append(d.Y, part.Y...)
		d.Index = append(d.Index, part.Index...)
	}
	return d
}
