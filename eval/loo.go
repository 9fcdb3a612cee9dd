package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// LOOOptions configures LOO. Zero values take the defaults.
type LOOOptions struct {
	TestPoints int    // test points to explain (default 3)
	Remove     int    // training points removed per test point, by |score| (default 40)
	Seed       uint64 // picks the test points
	// Progress, when set, is called after each retraining.
	Progress func(done, total int)
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
// example with the exact inverse Hessian, removes the Remove examples of
// largest |score| one at a time, retrains from the optimum to convergence
// and compares the measured change of the test loss with the prediction
// +score/N. The problem's model must be at its optimum; it is left there.
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
	be := linalg.Default()
	m := p.Model
	theta := append([]float64(nil), m.Params()...)
	defer copy(m.Params(), theta)

	tests := rand.New(rand.NewPCG(opt.Seed, 0x6c6f6f)).Perm(p.Test.Len())[:opt.TestPoints] // "loo"
	sort.Ints(tests)
	qx := p.Test.Subset(tests)

	h := m.Curvature(p.Train.X, p.Train.Y, nil)
	an := &influence.Analyzer{Method: influence.Exact(h, 0), Backend: be}
	scores, err := an.Scores(ctx, m.Gradients(qx.X, qx.Y), m.Gradients(p.Train.X, p.Train.Y))
	if err != nil {
		return nil, err
	}
	base := m.Losses(qx.X, qx.Y)

	res := &LOOResult{
		Dataset: p.Name, Model: m.Kind(), L2: m.L2(), NTrain: n,
		Backend: be.Name(), Method: "exact", TestIndex: tests,
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
			fit, err := models.FitNewton(ctx, m, p.Train.X, p.Train.Y, w, models.NewtonOptions{Backend: be})
			if err != nil {
				return nil, fmt.Errorf("eval: retraining without training example %d: %w", t, err)
			}
			res.GradNorm = math.Max(res.GradNorm, fit.GradNorm)
			after := m.Losses(qx.X.Slice(qi, qi+1, 0, qx.X.Cols), qx.Y[qi:qi+1])[0]
			pt := LOOPoint{Test: ti, Train: t, Score: row[t], Predicted: row[t] / float64(n), Actual: after - base[qi]}
			res.Points = append(res.Points, pt)
			pred, act = append(pred, pt.Predicted), append(act, pt.Actual)
			res.Retrained++
			if opt.Progress != nil {
				opt.Progress(res.Retrained, total)
			}
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
