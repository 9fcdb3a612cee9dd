package main

import (
	"context"
	"fmt"
	"math"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// options sizes a run.
type options struct {
	Hidden  int     // hidden units (one hidden layer)
	Steps   int     // full-batch Adam steps
	LR      float64 // Adam learning rate
	L2      float64 // penalty λ of the training objective
	Queries int     // test digits scored against the training digits
	Singles int     // training digits whose single-example gradient is checked
	Seed    uint64
}

// report holds what a run measured. Every error is the largest absolute
// difference over the largest magnitude of the reference (the native model,
// or gorgonia's own weight gradient).
type report struct {
	TrainSet, QuerySet *datasets.Dataset
	Train, Test        int     // examples in the splits
	Params             int     // parameters of the network
	TrainAcc, TestAcc  float64 // gorgonia's predictions
	NativeAcc          float64 // the native model's, on the training digits

	LossErr          float64 // ℓ_n, gorgonia vs native
	AErr, SErr       float64 // factors at the true labels, worst layer
	FitAErr, FitSErr float64 // factors at sampled labels (the fit set)
	SumErr           float64 // Σ_n s_n a_nᵀ vs gorgonia's ∂(Σ_n ℓ_n)/∂W
	SingleErr        float64 // s_n a_nᵀ vs gorgonia's ∂ℓ_n/∂W, one graph per example
	EKFACErr         float64 // EK-FAC scores
	EKFACSelfErr     float64 // EK-FAC self-influence
	IdentErr         float64 // identity scores
	MaxErr           float64 // the largest of the errors above

	Scores        *linalg.Dense64 // gorgonia's EK-FAC scores, queries × training digits
	FactorsLayers int             // layers of the fitted factors
	FitExamples   int             // examples EK-FAC was fitted on
}

// tolerance bounds every error of a run: float64 throughout, the two
// implementations differ only in the order of their sums.
const tolerance = 1e-9

// check reports an option out of range. A graph of no rows or no hidden
// units makes gorgonia panic rather than return an error, and a learning
// rate ≤ 0 showed only later as a failed damping.
func (o options) check() error {
	switch {
	case o.Hidden < 1:
		return fmt.Errorf("hidden units %d, want ≥ 1", o.Hidden)
	case o.Steps < 0:
		return fmt.Errorf("steps %d, want ≥ 0", o.Steps)
	case !(o.LR > 0) || math.IsInf(o.LR, 0):
		return fmt.Errorf("learning rate %v, want a finite number > 0", o.LR)
	case !(o.L2 >= 0) || math.IsInf(o.L2, 0):
		return fmt.Errorf("l2 %v, want a finite number ≥ 0", o.L2)
	case o.Queries < 1:
		return fmt.Errorf("queries %d, want ≥ 1", o.Queries)
	case o.Singles < 0:
		return fmt.Errorf("singles %d, want ≥ 0", o.Singles)
	}
	return nil
}

// run trains the gorgonia MLP on the embedded digits, takes its per-example
// gradients from the graph, loads the same weights into the native
// models.MLP and compares factors, gradients and influence scores.
func run(ctx context.Context, opt options) (*report, error) {
	if err := opt.check(); err != nil {
		return nil, err
	}
	train, test, err := datasets.LoadSplit(ctx, "digits", datasets.SplitOptions{})
	if err != nil {
		return nil, err
	}
	sizes := []int{train.X.Cols, opt.Hidden, train.Classes}
	r := &report{Train: train.Len(), Test: test.Len(), TrainSet: train}

	// Train with gorgonia.
	nt := newNet(sizes, opt.Seed)
	if err := nt.train(train.X, train.Y, opt.L2, opt.Steps, opt.LR); err != nil {
		return nil, err
	}
	if r.TrainAcc, err = accuracy(nt, train); err != nil {
		return nil, err
	}
	if r.TestAcc, err = accuracy(nt, test); err != nil {
		return nil, err
	}

	// The same weights in the native model: w_l (in × out) transposed into
	// goinfluence's DOut × DIn layout, the bias as the last column.
	m, err := models.NewMLP(sizes, models.Tanh, opt.L2, 0)
	if err != nil {
		return nil, err
	}
	theta := m.Params()
	off := 0
	for l, ls := range m.Layers() {
		in := ls.DIn - 1
		for o := range ls.DOut {
			for i := range in {
				theta[off+o*ls.DIn+i] = nt.w[l][i*ls.DOut+o]
			}
			theta[off+o*ls.DIn+in] = nt.b[l][o]
		}
		off += ls.DIn * ls.DOut
	}
	r.Params = off
	r.NativeAcc = models.Accuracy(m, train.X, train.Y)

	// Factors at the true labels (training and query gradients) and at
	// labels sampled from the model (the fit set of EK-FAC, the true
	// Fisher), from both.
	q := test.Subset(firstN(min(opt.Queries, test.Len())))
	r.QuerySet = q
	g, err := nt.gradients(train.X, train.Y)
	if err != nil {
		return nil, err
	}
	native := m.Gradients(train.X, train.Y)
	r.AErr, r.SErr = factorErrs(g.Batch, native)
	r.LossErr = relErr(g.Losses, m.Losses(train.X, train.Y))

	sampled := models.SampleLabels(m, train.X, opt.Seed+1)
	gf, err := nt.gradients(train.X, sampled)
	if err != nil {
		return nil, err
	}
	nativeFit := m.Gradients(train.X, sampled)
	r.FitAErr, r.FitSErr = factorErrs(gf.Batch, nativeFit)

	gq, err := nt.gradients(q.X, q.Y)
	if err != nil {
		return nil, err
	}
	nativeQ := m.Gradients(q.X, q.Y)
	qa, qs := factorErrs(gq.Batch, nativeQ)
	r.AErr, r.SErr = max(r.AErr, qa), max(r.SErr, qs)

	// Per-example gradients against gorgonia's own weight gradients: the
	// sum over the training digits, and single digits in graphs of their
	// own.
	r.SumErr = sumErr(g)
	for i := range min(opt.Singles, train.Len()) {
		row := i * (train.Len() / max(1, opt.Singles))
		one, err := nt.gradients(train.X.Slice(row, row+1, 0, train.X.Cols), train.Y[row:row+1])
		if err != nil {
			return nil, err
		}
		for l := range g.Batch.Layers {
			gl := &g.Batch.Layers[l]
			gn := make([]float64, gl.Dim())
			gl.Gradient(row, gn)
			r.SingleErr = max(r.SingleErr, relErr(gn, one.Weight[l]))
		}
	}

	// Influence: EK-FAC fitted on each side's fit set, then scores of the
	// queries against the training digits (and self-influence); identity.
	be, err := linalg.Auto()
	if err != nil {
		return nil, err
	}
	scoreOpt := influence.FactorScoresOptions{
		ScoreOptions: ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}},
		Self:         true,
		DType:        influence.ScoresF64,
	}
	var files [2]*influence.ScoresFile
	for k, b := range [2][3]*gradients.Batch{{gf.Batch, gq.Batch, g.Batch}, {nativeFit, nativeQ, native}} {
		f, err := ekfac.Fit(ctx, ekfac.EKFAC, be, ekfac.BatchSource(b[0]), nil)
		if err != nil {
			return nil, err
		}
		if files[k], err = influence.FactorScores(ctx, be, f, b[1], b[2], scoreOpt); err != nil {
			return nil, err
		}
		r.FactorsLayers, r.FitExamples = len(f.Layers), f.N
	}
	r.EKFACErr = relErr(files[0].Scores64.Data, files[1].Scores64.Data)
	r.EKFACSelfErr = relErr(files[0].Self, files[1].Self)
	r.Scores = files[0].Scores64

	an := &influence.Analyzer{Method: influence.Identity(), Backend: be}
	ig, err := an.Scores(ctx, gq.Batch, g.Batch)
	if err != nil {
		return nil, err
	}
	in, err := an.Scores(ctx, nativeQ, native)
	if err != nil {
		return nil, err
	}
	r.IdentErr = relErr(ig.Data, in.Data)

	r.MaxErr = max(r.LossErr, r.AErr, r.SErr, r.FitAErr, r.FitSErr, r.SumErr, r.SingleErr, r.EKFACErr, r.EKFACSelfErr, r.IdentErr)
	if math.IsNaN(r.MaxErr) {
		r.MaxErr = math.Inf(1)
	}
	return r, nil
}

// agrees reports whether every error is within tolerance.
func (r *report) agrees() bool { return r.MaxErr <= tolerance }

func accuracy(nt *net, d *datasets.Dataset) (float64, error) {
	pred, err := nt.predict(d.X)
	if err != nil {
		return 0, err
	}
	ok := 0
	for i, p := range pred {
		if p == d.Y[i] {
			ok++
		}
	}
	return float64(ok) / float64(len(pred)), nil
}

// factorErrs returns the worst layer's error of A and of S.
func factorErrs(got, want *gradients.Batch) (aErr, sErr float64) {
	if got.N != want.N || len(got.Layers) != len(want.Layers) {
		return math.Inf(1), math.Inf(1)
	}
	for l := range got.Layers {
		g, w := &got.Layers[l], &want.Layers[l]
		if g.Name != w.Name || g.DIn != w.DIn || g.DOut != w.DOut || g.Tokens != w.Tokens {
			return math.Inf(1), math.Inf(1)
		}
		aErr = max(aErr, relErr(g.A, w.A))
		sErr = max(sErr, relErr(g.S, w.S))
	}
	return aErr, sErr
}

// sumErr compares Σ_n s_n a_nᵀ, layer by layer, with gorgonia's gradient of
// the summed loss.
func sumErr(g *grads) float64 {
	worst := 0.0
	for l := range g.Batch.Layers {
		gl := &g.Batch.Layers[l]
		sum := make([]float64, gl.Dim())
		gn := make([]float64, gl.Dim())
		for n := range g.Batch.N {
			gl.Gradient(n, gn)
			for i, v := range gn {
				sum[i] += v
			}
		}
		worst = max(worst, relErr(sum, g.Weight[l]))
	}
	return worst
}

// relErr returns max|got − want| / max|want| (+Inf for a length mismatch, a
// NaN, or a zero reference that got differs from).
func relErr(got, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	diff, scale := 0.0, 0.0
	for i := range got {
		d := math.Abs(got[i] - want[i])
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		diff, scale = max(diff, d), max(scale, math.Abs(want[i]))
	}
	if scale == 0 {
		if diff == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return diff / scale
}

func firstN(n int) []int {
	rows := make([]int, n)
	for i := range rows {
		rows[i] = i
	}
	return rows
}
