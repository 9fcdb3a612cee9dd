package eval

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// DemoOptions configures Demo. Zero values are replaced by the defaults of
// 'goinfluence demo'.
type DemoOptions struct {
	Queries int     // test digits to explain (4)
	K       int     // helpful and harmful training digits per test digit (3)
	L2      float64 // λ on the mean loss (1e-2)
	Seed    uint64  // seed of the 80/20 train/test split
	Backend linalg.Backend
}

// DemoTile is one 8×8 digit with its label and score.
type DemoTile struct {
	Pixels []float64 // 64 values in [0, 1]
	Label  int
	Score  float64
	ID     int // row in the original data file
}

// DemoRow is a test digit with its most helpful and most harmful training
// digits.
type DemoRow struct {
	Query            []float64
	Label, Pred, ID  int
	Prob             float64 // p(label)
	Helpful, Harmful []DemoTile
}

// DemoResult is what Demo found.
type DemoResult struct {
	Rows             []DemoRow
	Train, Test      int     // examples
	TestAccuracy     float64 // fraction
	Params           int
	GradNorm         float64 // ‖∇R‖ at the optimum
	NewtonIterations int
	L2               float64
	Backend          string
}

// Demo is the main job on embedded data, as 'goinfluence demo' runs it:
// softmax regression trained to its optimum on the handwritten digits, exact
// influence ((H + λI)⁻¹ by Cholesky) of every training digit on a few test
// digits (the first misclassified one, then correctly classified ones of
// distinct classes), and the most helpful and most harmful training digits
// of each.
func Demo(ctx context.Context, opt DemoOptions) (*DemoResult, error) {
	opt.Queries = cmp.Or(opt.Queries, 4)
	opt.K = cmp.Or(opt.K, 3)
	opt.L2 = cmp.Or(opt.L2, 1e-2)
	if opt.Queries < 1 || opt.K < 1 {
		return nil, fmt.Errorf("eval: demo: %d queries and k = %d, want at least 1 each", opt.Queries, opt.K)
	}
	be, err := linalg.OrAuto(opt.Backend)
	if err != nil {
		return nil, err
	}
	train, test, err := datasets.LoadSplit(ctx, "digits", datasets.SplitOptions{Seed: opt.Seed})
	if err != nil {
		return nil, err
	}
	if opt.Queries > test.Len() {
		return nil, fmt.Errorf("eval: demo: %d queries but only %d test digits", opt.Queries, test.Len())
	}
	m := models.NewSoftmax(train.X.Cols, train.Classes, opt.L2)
	if err := models.SetBackend(m, be); err != nil {
		return nil, err
	}
	fit, err := models.FitNewton(ctx, m, train.X, train.Y, nil, models.NewtonOptions{Backend: be})
	if err != nil {
		return nil, err
	}
	q := pickQueries(m, test, opt.Queries)
	qd := test.Subset(q)
	an := &influence.Analyzer{Method: influence.Exact(m.Curvature(train.X, train.Y, nil), 0), Backend: be}
	scores, err := an.Scores(ctx, m.Gradients(qd.X, qd.Y), m.Gradients(train.X, train.Y))
	if err != nil {
		return nil, err
	}
	rank := influence.TopK(scores, opt.K)
	probs := m.Probs(qd.X)
	res := &DemoResult{Train: train.Len(), Test: test.Len(), TestAccuracy: models.Accuracy(m, test.X, test.Y),
		Params: models.NumParams(m), GradNorm: fit.GradNorm, NewtonIterations: fit.Iterations, L2: opt.L2, Backend: be.Name()}
	tile := func(e influence.Entry) DemoTile {
		return DemoTile{train.X.Row(e.Index), train.Y[e.Index], e.Score, train.Index[e.Index]}
	}
	for i := range q {
		r := DemoRow{Query: qd.X.Row(i), Label: qd.Y[i], Pred: argmax(probs.Row(i)), Prob: probs.At(i, qd.Y[i]), ID: qd.Index[i]}
		for _, e := range rank[i].Helpful {
			r.Helpful = append(r.Helpful, tile(e))
		}
		for _, e := range rank[i].Harmful {
			r.Harmful = append(r.Harmful, tile(e))
		}
		res.Rows = append(res.Rows, r)
	}
	return res, nil
}

// WriteText writes the result as 'goinfluence demo' prints it: a header and
// each test digit beside its rankings, drawn with shade glyphs.
func (r *DemoResult) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "Test accuracy %.1f%% on %d held-out digits. Exact influence, (H + λI)⁻¹ by Cholesky on %d parameters.\n",
		100*r.TestAccuracy, r.Test, r.Params)
	fmt.Fprintln(w, "Score > 0: helpful (removing the training digit would raise this test digit's loss by ≈ score/N).")
	for _, row := range r.Rows {
		fmt.Fprintln(w)
		if err := writeDemoRow(w, row); err != nil {
			return err
		}
	}
	return nil
}

// pickQueries returns test rows to explain: the first misclassified digit,
// if any, then correctly classified digits of distinct classes.
func pickQueries(m models.Model, test *datasets.Dataset, n int) []int {
	p := m.Probs(test.X)
	var out []int
	seen := map[int]bool{}
	for i := 0; i < test.Len() && len(out) < 1; i++ {
		if argmax(p.Row(i)) != test.Y[i] {
			out = append(out, i)
			seen[test.Y[i]] = true
		}
	}
	for i := 0; i < test.Len() && len(out) < n; i++ {
		if !seen[test.Y[i]] && argmax(p.Row(i)) == test.Y[i] {
			out = append(out, i)
			seen[test.Y[i]] = true
		}
	}
	for i := 0; i < test.Len() && len(out) < n; i++ {
		if !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	return out[:min(n, len(out))]
}

func argmax(v []float64) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}
