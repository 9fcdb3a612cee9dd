package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
	"github.com/goinfluence/goinfluence/progress"
)

// Defaults of CurvatureOptions.
const (
	// CurvatureL2 is the training penalty λ of the MLP. It regularises
	// training only: the curvature every method is compared on is the
	// Gauss–Newton matrix of the mean loss, without λI (see
	// CurvatureAccuracy).
	CurvatureL2         = 1e-3
	CurvatureEpochs     = 200
	CurvatureBatchSize  = 64
	CurvatureLR         = 1e-2
	CurvatureTestPoints = 20
)

// CurvatureOptions configures CurvatureAccuracy. Zero values take the
// defaults noted.
type CurvatureOptions struct {
	Hidden     []int             // hidden-layer widths; default [32] (an MLP 64-32-10)
	Activation models.Activation // hidden nonlinearity; the zero value is ReLU
	L2         float64           // training penalty λ; default CurvatureL2
	Epochs     int               // Adam epochs; default CurvatureEpochs
	BatchSize  int               // Adam minibatch; default CurvatureBatchSize
	LR         float64           // Adam step size; default CurvatureLR
	// Seed seeds the 80/20 split, the initial weights, the minibatch
	// shuffle and the choice of test points.
	Seed       uint64
	TestPoints int       // test points explained; default CurvatureTestPoints
	Dampings   []float64 // δ added to every curvature; default 1e-3, 1e-2, 1e-1
	// Backend does the linear algebra, the trained model's included; nil
	// means linalg.Auto's choice.
	Backend linalg.Backend
	// Samples selects the true Fisher the approximate methods are fitted
	// on. With 0 it is the exact expectation over the model's predictive
	// distribution (every class, weighted by its probability), which for
	// softmax cross-entropy is the Gauss–Newton matrix itself, so that only
	// the structure of each approximation is measured. With k > 0 they are
	// fitted on gradients at k labels drawn from the model per training
	// example, the usual Monte Carlo estimate, which adds sampling noise.
	Samples    int
	SampleSeed uint64 // draw k of every example uses SampleLabels with seed SampleSeed+k
	// Progress is told of the start of each stage (counts 0).
	Progress progress.Func
}

// CurvatureRow is how well one method's scores agree with exact influence
// under one reference curvature at one damping.
type CurvatureRow struct {
	Method    string  `json:"method"`    // identity, diagonal, kfac, ekfac or block (exact block-diagonal GGN)
	Damping   float64 `json:"damping"`   // δ
	Reference string  `json:"reference"` // "full" or "block" Gauss–Newton matrix
	// Pearson and Spearman are the correlations between the method's and
	// the reference's scores of every training example, averaged over the
	// test points; MinPearson is the worst test point.
	Pearson    float64 `json:"pearson"`
	Spearman   float64 `json:"spearman"`
	MinPearson float64 `json:"min_pearson"`
	// PooledPearson and PooledSpearman correlate all (test, train) pairs
	// at once.
	PooledPearson  float64 `json:"pooled_pearson"`
	PooledSpearman float64 `json:"pooled_spearman"`
}

// CurvatureResult is the outcome of CurvatureAccuracy.
type CurvatureResult struct {
	Dataset       string         `json:"dataset"`
	Model         string         `json:"model"` // e.g. "mlp 64-32-10 relu"
	Params        int            `json:"params"`
	L2            float64        `json:"l2"`
	Epochs        int            `json:"epochs"`
	BatchSize     int            `json:"batch_size"`
	LR            float64        `json:"lr"`
	NTrain        int            `json:"n_train"`
	NTest         int            `json:"n_test"`
	Seed          uint64         `json:"seed"`
	Fisher        string         `json:"fisher"` // "expected" or "sampled"
	Samples       int            `json:"samples,omitempty"`
	SampleSeed    uint64         `json:"sample_seed"`
	TrainAccuracy float64        `json:"train_accuracy"`
	TestAccuracy  float64        `json:"test_accuracy"`
	TestIndex     []int          `json:"test_indices"` // rows of the test set explained
	Dampings      []float64      `json:"dampings"`
	Rows          []CurvatureRow `json:"rows"`
	Backend       string         `json:"backend"`
	Seconds       float64        `json:"seconds"` // wall time, training included
}

// curvatureMethods are the approximate methods in the order of the tables.
var curvatureMethods = []ekfac.Method{ekfac.Identity, ekfac.Diagonal, ekfac.KFAC, ekfac.EKFAC}

// CurvatureAccuracy measures how closely the approximate curvature methods
// reproduce exact influence on a small MLP whose Gauss–Newton matrix fits in
// memory. It trains the MLP on digits (pixels scaled to [0, 1], split 80/20
// by datasets.LoadSplit with opt.Seed) with Adam, and for TestPoints test points
// scores every training example with
//
//   - exact influence, P = (G + δI)⁻¹, with G the full Gauss–Newton matrix
//     of the mean training loss, (1/N) Σ_n J_nᵀ (diag p_n − p_n p_nᵀ) J_n,
//     and with its layer-block-diagonal part, the curvature the Kronecker
//     methods approximate;
//   - EK-FAC, K-FAC, diagonal and identity preconditioners fitted on the true
//     Fisher (see CurvatureOptions.Samples), whose expectation is G.
//
// The training penalty is left out of G because the fitted methods see only
// the per-example loss gradients; the same δ is added to every curvature.
// Query and training gradients are taken at the true labels. For each test
// point the scores of all training examples are correlated with the
// reference's, and the correlations averaged over the test points.
func CurvatureAccuracy(ctx context.Context, opt CurvatureOptions) (*CurvatureResult, error) {
	start := time.Now()
	be, err := linalg.OrAuto(opt.Backend)
	if err != nil {
		return nil, fmt.Errorf("eval: CurvatureAccuracy: %w", err)
	}
	opt.Backend = be
	m, train, test, err := trainDigitsMLP(ctx, &opt)
	if err != nil {
		return nil, err
	}
	res := &CurvatureResult{
		Dataset: train.Name, Model: models.Describe(m), Params: models.NumParams(m),
		L2: opt.L2, Epochs: opt.Epochs, BatchSize: opt.BatchSize, LR: opt.LR,
		NTrain: train.Len(), NTest: test.Len(), Seed: opt.Seed, SampleSeed: opt.SampleSeed,
		Dampings: opt.Dampings, Backend: be.Name(),
		TrainAccuracy: models.Accuracy(m, train.X, train.Y), TestAccuracy: models.Accuracy(m, test.X, test.Y),
	}

	tests := rand.New(rand.NewPCG(opt.Seed, 0x63757276)).Perm(test.Len())[:opt.TestPoints] // "curv"
	sort.Ints(tests)
	res.TestIndex = tests
	qx := test.Subset(tests)
	query := m.Gradients(qx.X, qx.Y)
	trainGrads := m.Gradients(train.X, train.Y)

	var fit []*gradients.Batch
	if opt.Samples == 0 {
		res.Fisher = "expected"
		fit = []*gradients.Batch{expectedFisher(m, train.X)}
	} else {
		res.Fisher, res.Samples = "sampled", opt.Samples
		for k := 0; k < opt.Samples; k++ {
			fit = append(fit, m.Gradients(train.X, models.SampleLabels(m, train.X, opt.SampleSeed+uint64(k))))
		}
	}

	opt.stage(fmt.Sprintf("exact Gauss–Newton matrix, %d × %d", res.Params, res.Params))
	full := m.Curvature(train.X, train.Y, nil)
	for i := 0; i < full.Rows; i++ {
		full.Data[i*full.Stride+i] -= opt.L2
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	refs := []struct {
		name string
		g    *linalg.Dense64
	}{{"block", blockDiagonal(full, m.Layers())}, {"full", full}}

	factors := make([]*ekfac.Factors, len(curvatureMethods))
	for i, method := range curvatureMethods {
		opt.stage(fmt.Sprintf("fitting %s on the %s Fisher", method, res.Fisher))
		if factors[i], err = ekfac.Fit(ctx, method, be, ekfac.BatchSource(fit...), nil); err != nil {
			return nil, fmt.Errorf("eval: fitting %s: %w", method, err)
		}
	}

	for _, delta := range opt.Dampings {
		opt.stage(fmt.Sprintf("scoring at δ = %g", delta))
		exact := make([]*linalg.Dense64, len(refs))
		for r, ref := range refs {
			an := &influence.Analyzer{Method: influence.Exact(ref.g, delta), Backend: be}
			if exact[r], err = an.Scores(ctx, query, trainGrads); err != nil {
				return nil, fmt.Errorf("eval: exact influence (%s GGN, δ = %g): %w", ref.name, delta, err)
			}
		}
		add := func(method string, s *linalg.Dense64, r int) {
			row := CurvatureRow{Method: method, Damping: delta, Reference: refs[r].name}
			row.Pearson, row.Spearman, row.MinPearson, row.PooledPearson, row.PooledSpearman = correlateRows(s, exact[r])
			res.Rows = append(res.Rows, row)
		}
		for i, f := range factors {
			an := &influence.Analyzer{
				Method:  influence.Factors(f, ekfac.ScoreOptions{Damping: hessian.Damping{Value: delta}}),
				Backend: be,
			}
			s, err := an.Scores(ctx, query, trainGrads)
			if err != nil {
				return nil, fmt.Errorf("eval: %s scores at δ = %g: %w", curvatureMethods[i], delta, err)
			}
			for r := range refs {
				add(string(curvatureMethods[i]), s, r)
			}
		}
		// How much of the gap to the full GGN the block-diagonal
		// approximation alone accounts for.
		add("block", exact[0], 1)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// trainDigitsMLP fills in opt's defaults and trains its MLP on the digits
// split of opt.Seed.
func trainDigitsMLP(ctx context.Context, opt *CurvatureOptions) (*models.MLP, *datasets.Dataset, *datasets.Dataset, error) {
	if err := opt.defaults(); err != nil {
		return nil, nil, nil, err
	}
	train, test, err := datasets.LoadSplit(ctx, "digits", datasets.SplitOptions{Seed: opt.Seed})
	if err != nil {
		return nil, nil, nil, err
	}
	if opt.TestPoints > test.Len() {
		return nil, nil, nil, fmt.Errorf("eval: %d test points requested, the test set has %d", opt.TestPoints, test.Len())
	}
	sizes := append(append([]int{train.X.Cols}, opt.Hidden...), train.Classes)
	m, err := models.NewMLP(sizes, opt.Activation, opt.L2, opt.Seed)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := models.SetBackend(m, opt.Backend); err != nil {
		return nil, nil, nil, err
	}
	opt.stage(fmt.Sprintf("training %s on %d examples with Adam (%d epochs)", models.Describe(m), train.Len(), opt.Epochs))
	if err := models.TrainAdam(ctx, m, train.X, train.Y, nil, models.AdamOptions{
		Epochs: opt.Epochs, BatchSize: opt.BatchSize, LR: opt.LR, Seed: opt.Seed,
	}); err != nil {
		return nil, nil, nil, fmt.Errorf("eval: training %s: %w", models.Describe(m), err)
	}
	return m, train, test, nil
}

func (o *CurvatureOptions) stage(s string) {
	o.Progress.Report(s, 0, 0)
}

func (o *CurvatureOptions) defaults() error {
	if o.Hidden == nil {
		o.Hidden = []int{32}
	}
	if o.L2 == 0 {
		o.L2 = CurvatureL2
	}
	if o.Epochs == 0 {
		o.Epochs = CurvatureEpochs
	}
	if o.BatchSize == 0 {
		o.BatchSize = CurvatureBatchSize
	}
	if o.LR == 0 {
		o.LR = CurvatureLR
	}
	if o.TestPoints == 0 {
		o.TestPoints = CurvatureTestPoints
	}
	if o.Dampings == nil {
		o.Dampings = []float64{1e-3, 1e-2, 1e-1}
	}
	switch {
	case !(o.L2 > 0) || math.IsInf(o.L2, 1):
		return fmt.Errorf("eval: l2 %v must be positive and finite", o.L2)
	case o.Epochs < 1 || o.BatchSize < 1 || o.TestPoints < 1:
		return fmt.Errorf("eval: epochs (%d), batch size (%d) and test points (%d) must be at least 1",
			o.Epochs, o.BatchSize, o.TestPoints)
	case o.Samples < 0:
		return fmt.Errorf("eval: %d samples per example", o.Samples)
	case len(o.Dampings) == 0:
		return fmt.Errorf("eval: no dampings given")
	}
	for _, d := range o.Dampings {
		if !(d > 0) || math.IsInf(d, 1) {
			return fmt.Errorf("eval: damping %v must be positive and finite (the GGN is singular)", d)
		}
	}
	return nil
}

// expectedFisher returns a fit set whose K-FAC covariances and EK-FAC and
// diagonal Λ are the expectations over labels drawn from the model: every
// example is repeated once per class c, with its output gradients at label c
// scaled by √(C·p_c), so that the fitters' average over the N·C rows is
// (1/N) Σ_n Σ_c p_c (·) exactly.
func expectedFisher(m *models.MLP, x *linalg.Dense64) *gradients.Batch {
	n, c := x.Rows, m.Classes()
	p := m.Probs(x)
	xr := linalg.NewDense64(n*c, x.Cols, nil)
	labels := make([]int, n*c)
	for i := 0; i < n; i++ {
		for k := 0; k < c; k++ {
			copy(xr.Row(i*c+k), x.Row(i))
			labels[i*c+k] = k
		}
	}
	b := m.Gradients(xr, labels)
	for li := range b.Layers {
		l := &b.Layers[li]
		for r := 0; r < n*c; r++ {
			w := math.Sqrt(float64(c) * p.At(r/c, r%c))
			s := l.S[r*l.DOut : (r+1)*l.DOut]
			for j := range s {
				s[j] *= w
			}
		}
	}
	return b
}

// blockDiagonal returns a copy of g with the blocks coupling different
// layers set to zero.
func blockDiagonal(g *linalg.Dense64, layers []models.LayerSpec) *linalg.Dense64 {
	out := linalg.NewDense64(g.Rows, g.Cols, nil)
	lo := 0
	for _, l := range layers {
		hi := lo + l.DIn*l.DOut
		for i := lo; i < hi; i++ {
			copy(out.Row(i)[lo:hi], g.Row(i)[lo:hi])
		}
		lo = hi
	}
	return out
}

// correlateRows correlates s with ref row by row and over all entries.
func correlateRows(s, ref *linalg.Dense64) (pearson, spearman, minPearson, pooledP, pooledS float64) {
	minPearson = math.Inf(1)
	var all, allRef []float64
	for i := 0; i < s.Rows; i++ {
		a, b := s.Row(i), ref.Row(i)
		p := Pearson(a, b)
		pearson += p
		spearman += Spearman(a, b)
		minPearson = math.Min(minPearson, p)
		all, allRef = append(all, a...), append(allRef, b...)
	}
	n := float64(s.Rows)
	return pearson / n, spearman / n, minPearson, Pearson(all, allRef), Spearman(all, allRef)
}

// Row returns the row for method, damping and reference, or nil.
func (r *CurvatureResult) Row(method string, damping float64, reference string) *CurvatureRow {
	for i := range r.Rows {
		if x := &r.Rows[i]; x.Method == method && x.Damping == damping && x.Reference == reference {
			return x
		}
	}
	return nil
}

// Markdown returns the result as two Markdown tables, Pearson then Spearman
// (each the mean over test points of the per-test-point correlation), with a
// column per damping and reference GGN and a row per method, under a line
// naming the model, data and seeds.
func (r *CurvatureResult) Markdown() string {
	var b strings.Builder
	fisher := "true Fisher in expectation"
	if r.Fisher == "sampled" {
		fisher = fmt.Sprintf("true Fisher, %d sampled label(s) per example, sample seed %d", r.Samples, r.SampleSeed)
	}
	fmt.Fprintf(&b, "%s (%d parameters, λ = %g) on %s, 80/20 split (%d train, %d test) with seed %d; "+
		"Adam %d epochs, batch %d, step %g, seed %d: train accuracy %.2f%%, test accuracy %.2f%%. "+
		"Fitted on the %s. Mean over %d test points of the correlation of every training example's score "+
		"with exact influence under the block-diagonal (block) or full Gauss–Newton matrix (without λI), δ added to every curvature.\n",
		r.Model, r.Params, r.L2, r.Dataset, r.NTrain, r.NTest, r.Seed,
		r.Epochs, r.BatchSize, r.LR, r.Seed, 100*r.TrainAccuracy, 100*r.TestAccuracy,
		fisher, len(r.TestIndex))
	methods := []string{"identity", "diagonal", "kfac", "ekfac", "block"}
	names := map[string]string{
		"identity": "identity", "diagonal": "diagonal", "kfac": "K-FAC", "ekfac": "EK-FAC",
		"block": "exact, block-diagonal GGN",
	}
	for _, t := range []struct {
		name string
		get  func(*CurvatureRow) float64
	}{
		{"Pearson", func(x *CurvatureRow) float64 { return x.Pearson }},
		{"Spearman", func(x *CurvatureRow) float64 { return x.Spearman }},
	} {
		fmt.Fprintf(&b, "\n| %s |", t.name)
		sep := "|---|"
		for _, d := range r.Dampings {
			fmt.Fprintf(&b, " δ = %g, block | δ = %g, full |", d, d)
			sep += "---:|---:|"
		}
		b.WriteString("\n" + sep + "\n")
		for _, m := range methods {
			fmt.Fprintf(&b, "| %s |", names[m])
			for _, d := range r.Dampings {
				for _, ref := range []string{"block", "full"} {
					if x := r.Row(m, d, ref); x != nil {
						fmt.Fprintf(&b, " %.3f |", t.get(x))
					} else {
						b.WriteString(" – |")
					}
				}
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
