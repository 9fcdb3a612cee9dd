package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	queries := fs.Int("queries", 4, "test digits to explain")
	k := fs.Int("k", 3, "helpful and harmful training digits to show per test digit")
	l2 := fs.Float64("l2", 1e-2, "L2 strength λ on the mean loss")
	seed := fs.Uint64("seed", 0, "seed of the train/test split")
	pngPath := fs.String("png", "", "also write the grid of digits to this PNG file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *queries < 1 || *k < 1 {
		return fmt.Errorf("%w: demo: --queries and --k must be at least 1", errUsage)
	}
	if err := checkOutputs("demo", paths("--png", *pngPath), nil); err != nil {
		return err
	}
	start := time.Now()
	all, err := datasets.Digits()
	if err != nil {
		return err
	}
	digits := all.Scaled(1.0 / 16)
	train, test, err := digits.Split(digits.Len()*4/5, *seed)
	if err != nil {
		return err
	}
	if *queries > test.Len() {
		return fmt.Errorf("%w: demo: %d queries but only %d test digits", errUsage, *queries, test.Len())
	}
	be, err := linalg.Auto()
	if err != nil {
		return err
	}
	m := models.NewSoftmax(train.X.Cols, train.Classes, *l2)
	if err := models.SetBackend(m, be); err != nil {
		return err
	}
	fit, err := models.FitNewton(ctx, m, train.X, train.Y, nil, models.NewtonOptions{Backend: be})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "trained softmax regression on %d digits (λ = %g, ‖∇R‖ = %.1g, %d Newton steps, backend %s)\n",
		train.Len(), *l2, fit.GradNorm, fit.Iterations, be.Name())

	q := pickQueries(m, test, *queries)
	qd := test.Subset(q)
	h := m.Curvature(train.X, train.Y, nil)
	an := &influence.Analyzer{Method: influence.Exact(h, 0), Backend: be}
	scores, err := an.Scores(ctx, m.Gradients(qd.X, qd.Y), m.Gradients(train.X, train.Y))
	if err != nil {
		return err
	}
	rank := influence.TopK(scores, *k)
	probs := m.Probs(qd.X)

	fmt.Fprintf(stdout, "Test accuracy %.1f%% on %d held-out digits. Exact influence, (H + λI)⁻¹ by Cholesky on %d parameters.\n",
		100*models.Accuracy(m, test.X, test.Y), test.Len(), models.NumParams(m))
	fmt.Fprintln(stdout, "Score > 0: helpful (removing the training digit would raise this test digit's loss by ≈ score/N).")
	var rows []demoRow
	for i := range q {
		r := demoRow{query: qd.X.Row(i), label: qd.Y[i], pred: argmax(probs.Row(i)), prob: probs.At(i, qd.Y[i]), id: qd.Index[i]}
		for _, e := range rank[i].Helpful {
			r.helpful = append(r.helpful, demoTile{train.X.Row(e.Index), train.Y[e.Index], e.Score, train.Index[e.Index]})
		}
		for _, e := range rank[i].Harmful {
			r.harmful = append(r.harmful, demoTile{train.X.Row(e.Index), train.Y[e.Index], e.Score, train.Index[e.Index]})
		}
		rows = append(rows, r)
		fmt.Fprintln(stdout)
		printRow(stdout, r)
	}
	if *pngPath != "" {
		if err := writeGridPNG(*pngPath, rows); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", *pngPath)
	}
	fmt.Fprintf(stderr, "done in %.1f s\n", time.Since(start).Seconds())
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
