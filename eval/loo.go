package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
	"github.com/goinfluence/goinfluence/progress"
)

// LOOOptions configures LOO. Zero values take the defaults.
type LOOOptions struct {
	TestPoints int    // test points to explain (default 3)
	Remove     int    // training points removed per test point, by |score| (default 40)
	Seed       uint64 // picks the test points
	// Backend does the linear algebra of exact influence; nil means
	// linalg.Auto's choice. The model's own methods run on its backend
	// (models.SetBackend).
	Backend linalg.Backend
	// Scores, when set, replaces exact influence: it returns the scores of
	// the given test examples (rows) against every training example, with
	// the sign convention of package influence and query gradients of the
	// test loss. Method names it in the result.
	Scores func(ctx context.Context, queries *datasets.Dataset) (*linalg.Dense64, error)
	Method string
	// Progress is told after each retraining of the retrainings done and
	// their total (stage "retraining").
	Progress progress.Func
}

// LOOPoint is one removal: the predicted change of the test loss,
// +score/N, against the change measured by retraining without the point.
type LOOPoint struct {
	Test      int     `json:"test"`  // row of the test set
	Train     int     `json:"train"` // row of the training set
	Score     float64 `json:"score"`
	Predicted float64 `json:"predicted"`
	Actual    float64 `json:"actual"`
}

// LOOResult holds the correlations over all removals and per test point.
type LOOResult struct {
	Dataset   string     `json:"dataset"`
	Model     string     `json:"model"`
	L2        float64    `json:"l2"`
	NTrain    int        `json:"n_train"`
	Pearson   float64    `json:"pearson"`
	Spearman  float64    `json:"spearman"`
	PerTest   []LOOTest  `json:"per_test"`
	NPoints   int        `json:"points"`       // removals correlated
	Points    []LOOPoint `json:"removals"`     // every removal
	GradNorm  float64    `json:"grad_norm"`    // largest ‖∇R‖ at which a retrained model stopped
	Seconds   float64    `json:"seconds"`      // wall time of scoring and retraining
	Retrained int        `json:"retrainings"`  // number of models retrained
	Backend   string     `json:"backend"`      // linear-algebra backend used
	Method    string     `json:"method"`       // influence method validated
	TestIndex []int      `json:"test_indices"` // rows of the test set explained
}

// LOOTest is the correlation for one test point.
type LOOTest struct {
	Test     int     `json:"test"`
	Pearson  float64 `json:"pearson"`
	Spearman float64 `json:"spearman"`
}

// LOO validates exact influence against leave-one-out retraining (Koh &
// Liang 2017): for each of a few test points it scores every training
// example with the exact inverse Hessian (or opt.Scores), removes the Remove
// examples of largest |score| one at a time, retrains from the optimum to
// convergence and compares the measured change of the test loss with the
// prediction +score/N. Retraining is warm started: Newton steps with the
// inverse Hessian at the optimum, computed once (see models.FitWarm). The
// problem's model must be at its optimum; it is left there.
func LOO(ctx context.Context, p *Problem, opt LOOOptions) (*LOOResult, error) {
	if opt.TestPoints == 0 {
		opt.TestPoints = 3
	}
	if opt.Remove == 0 {
		opt.Remove = 40
	}
	n := p.Train.Len()
	if opt.TestPoints < 1 || opt.TestPoints > p.Test.Len() {
		return nil, fmt.Errorf("eval: %d test points requested, the test set has %d", opt.TestPoints, p.Test.Len())
	}
	if opt.Remove < 2 || opt.Remove > n {
		return nil, fmt.Errorf("eval: %d removals requested per test point; need 2 to %d", opt.Remove, n)
	}
	start := time.Now()
	be, err := linalg.OrAuto(opt.Backend)
	if err != nil {
		return nil, fmt.Errorf("eval: LOO: %w", err)
	}
	m := p.Model
	theta := append([]float64(nil), m.Params()...)
	defer copy(m.Params(), theta)

	tests := rand.New(rand.NewPCG(opt.Seed, 0x6c6f6f)).Perm(p.Test.Len())[:opt.TestPoints] // "loo"
	sort.Ints(tests)
	qx := p.Test.Subset(tests)

	h := m.Curvature(p.Train.X, p.Train.Y, nil)
	method := "exact"
	var scores *linalg.Dense64
	if opt.Scores != nil {
		method = opt.Method
		scores, err = opt.Scores(ctx, qx)
		if err == nil && (scores.Rows != len(tests) || scores.Cols != n) {
			err = fmt.Errorf("eval: LOO: %s returned %d×%d scores for %d test and %d training examples", method, scores.Rows, scores.Cols, len(tests), n)
		}
	} else {
		an := &influence.Analyzer{Method: influence.Exact(h, 0), Backend: be}
		scores, err = an.Scores(ctx, m.Gradients(qx.X, qx.Y), m.Gradients(p.Train.X, p.Train.Y))
	}
	if err != nil {
		return nil, err
	}
	pre, err := models.NewPreconditioner(ctx, be, h)
	if err != nil {
		return nil, err
	}
	base := m.Losses(qx.X, qx.Y)

	res := &LOOResult{
		Dataset: p.Name, Model: m.Kind(), L2: m.L2(), NTrain: n,
		Backend: be.Name(), Method: method, TestIndex: tests,
	}
	w := make([]float64, n)
	total := opt.TestPoints * opt.Remove
	for qi, ti := range tests {
		row := scores.Row(qi)
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return math.Abs(row[order[a]]) > math.Abs(row[order[b]]) })
		var pred, act []float64
		for _, t := range order[:opt.Remove] {
			for i := range w {
				w[i] = 1
			}
			w[t] = 0
			copy(m.Params(), theta)
			fit, err := models.FitWarm(ctx, m, p.Train.X, p.Train.Y, w, pre)
			if err != nil {
				return nil, fmt.Errorf("eval: retraining without training example %d: %w", t, err)
			}
			res.GradNorm = math.Max(res.GradNorm, fit.GradNorm)
			after := m.Losses(qx.X.Slice(qi, qi+1, 0, qx.X.Cols), qx.Y[qi:qi+1])[0]
			pt := LOOPoint{Test: ti, Train: t, Score: row[t], Predicted: row[t] / float64(n), Actual: after - base[qi]}
			res.Points = append(res.Points, pt)
			pred, act = append(pred, pt.Predicted), append(act, pt.Actual)
			res.Retrained++
			opt.Progress.Report("retraining", res.Retrained, total)
		}
		res.PerTest = append(res.PerTest, LOOTest{Test: ti, Pearson: Pearson(pred, act), Spearman: Spearman(pred, act)})
	}
	pred, act := make([]float64, len(res.Points)), make([]float64, len(res.Points))
	for i, pt := range res.Points {
		pred[i], act[i] = pt.Predicted, pt.Actual
	}
	res.Pearson, res.Spearman = Pearson(pred, act), Spearman(pred, act)
	res.NPoints = len(res.Points)
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// Defaults of LOOTruthOptions.
const DefaultRemovals = 100

// LOOTruthOptions configures the leave-one-out ground truth of the quality
// table. Zero values take the defaults.
type LOOTruthOptions struct {
	Removals int    `json:"removals"` // training examples removed, one at a time (default 100)
	Seed     uint64 `json:"seed"`     // draws them uniformly at random
}

// LOOTruth is the retraining side of the table's LOO column: for each of a
// few random training examples, the outputs of every test point after
// retraining without it (its weight set to 0, the objective still divided by
// N). Unlike LOO, which removes the points a method scores highest, the
// removals do not depend on any method, so every method is scored on the
// same retrainings.
type LOOTruth struct {
	Setup   Setup           `json:"setup"`
	Options LOOTruthOptions `json:"options"`
	NTrain  int             `json:"n_train"`
	Removed []int           `json:"removed"` // training rows
	// Base[o][q] is output o of test point q with every example; Outputs[o][k][q]
	// after removing Removed[k].
	Base    map[models.Output][]float64   `json:"base"`
	Outputs map[models.Output][][]float64 `json:"outputs"`
	Seconds float64                       `json:"seconds"`
}

// LOOTruth retrains without each of opt.Removals random training examples:
// the convex model warm started from its optimum to ‖∇R‖ ≤ 1e-10, the MLP
// from the setup's initialisation with the same minibatches (the removed
// example weighted 0). Cached like LDSTruth.
func (t *Task) LOOTruth(ctx context.Context, opt LOOTruthOptions) (*LOOTruth, error) {
	if opt.Removals == 0 {
		opt.Removals = DefaultRemovals
	}
	n := t.Train.Len()
	if opt.Removals < 3 || opt.Removals > n {
		return nil, fmt.Errorf("eval: %d LOO removals; need 3 to %d", opt.Removals, n)
	}
	key := t.key("loo", opt)
	var truth LOOTruth
	if t.cache.loadJSON("loo", key, &truth) && len(truth.Removed) == opt.Removals && truth.valid(t.Test.Len()) {
		return &truth, nil
	}
	clean := t.worlds["clean"]
	removed := rand.New(rand.NewPCG(opt.Seed, 0x6c6f6f74)).Perm(n)[:opt.Removals] // "loot"
	truth = LOOTruth{Setup: t.Setup, Options: opt, NTrain: n, Removed: removed,
		Base: models.OutputValues(t.Model, t.Test.X, t.Test.Y, models.Outputs), Outputs: map[models.Output][][]float64{}}
	start := time.Now()
	t.stage(fmt.Sprintf("LOO: retraining without each of %d random training examples (%d workers)", opt.Removals, t.workers()))
	results := make([]map[models.Output][]float64, opt.Removals)
	var done atomic.Int64
	err := forEach(ctx, opt.Removals, t.workers(), func(k int) error {
		w := make([]float64, n)
		for i := range w {
			w[i] = 1
		}
		w[removed[k]] = 0
		m, err := t.retrain(ctx, clean, nil, w, 0)
		if err != nil {
			return fmt.Errorf("eval: LOO without training example %d: %w", removed[k], err)
		}
		results[k] = models.OutputValues(m, t.Test.X, t.Test.Y, models.Outputs)
		t.tick("LOO", done.Add(1), opt.Removals)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, o := range models.Outputs {
		rows := make([][]float64, opt.Removals)
		for k := range rows {
			rows[k] = results[k][o]
		}
		truth.Outputs[o] = rows
	}
	truth.Seconds = time.Since(start).Seconds()
	return &truth, t.cache.storeJSON("loo", key, &truth)
}

func (tr *LOOTruth) valid(nTest int) bool {
	for _, o := range models.Outputs {
		if len(tr.Base[o]) != nTest || len(tr.Outputs[o]) != len(tr.Removed) {
			return false
		}
		for _, r := range tr.Outputs[o] {
			if len(r) != nTest {
				return false
			}
		}
	}
	return true
}

// LOOScore is how well a method's scores predict leave-one-out retraining.
type LOOScore struct {
	Output models.Output `json:"output"`
	// Pearson and Spearman correlate, per test point, the predicted change
	// of −f, score/N, with the measured one over the removals; they are
	// averaged over the test points where they are defined.
	Pearson  float64   `json:"pearson"`
	Spearman float64   `json:"spearman"`
	PerTest  []float64 `json:"per_test_pearson"`
}

// LOOCorrelation scores a method against a LOO ground truth; scores is its
// n_test × n_train matrix for output o.
func LOOCorrelation(truth *LOOTruth, scores *linalg.Dense64, o models.Output) (*LOOScore, error) {
	rows, ok := truth.Outputs[o]
	if !ok {
		return nil, fmt.Errorf("eval: LOO ground truth has no output %q", o)
	}
	base := truth.Base[o]
	if scores.Rows != len(base) || scores.Cols != truth.NTrain {
		return nil, fmt.Errorf("eval: scores are %d×%d, the LOO ground truth has %d test and %d training examples",
			scores.Rows, scores.Cols, len(base), truth.NTrain)
	}
	res := &LOOScore{Output: o, PerTest: make([]float64, len(base))}
	spearman := make([]float64, len(base))
	pred, act := make([]float64, len(truth.Removed)), make([]float64, len(truth.Removed))
	for q := range base {
		for k, i := range truth.Removed {
			pred[k] = scores.At(q, i) / float64(truth.NTrain)
			act[k] = -(rows[k][q] - base[q]) // change of −f
		}
		res.PerTest[q], spearman[q] = Pearson(pred, act), Spearman(pred, act)
	}
	res.Pearson, res.Spearman = meanDefined(res.PerTest), meanDefined(spearman)
	return res, nil
}
