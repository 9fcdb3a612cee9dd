package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// Defaults of LDSOptions, the TRAK protocol's.
const (
	DefaultSubsets = 100
	DefaultAlpha   = 0.5
)

// LDSOptions configures the retraining side of the linear datamodeling
// score. Zero values take the defaults.
type LDSOptions struct {
	Subsets int     `json:"subsets"` // m, the number of random training subsets (default 100)
	Alpha   float64 `json:"alpha"`   // subset size as a fraction of the training set (default 0.5)
	// Seeds is the number of trainings averaged per subset (default 1),
	// with initialisation and minibatch seeds Setup.Seed+r, r < Seeds. A
	// convex model has one optimum, so it is trained once whatever Seeds.
	Seeds int    `json:"seeds"`
	Seed  uint64 `json:"seed"` // draws the subsets
}

func (o *LDSOptions) defaults(convex bool) error {
	if o.Subsets == 0 {
		o.Subsets = DefaultSubsets
	}
	if o.Alpha == 0 {
		o.Alpha = DefaultAlpha
	}
	if o.Seeds == 0 || convex {
		o.Seeds = 1
	}
	switch {
	case o.Subsets < 3:
		return fmt.Errorf("eval: LDS needs at least 3 subsets, not %d", o.Subsets)
	case !(o.Alpha > 0 && o.Alpha < 1):
		return fmt.Errorf("eval: LDS subset fraction %v outside (0, 1)", o.Alpha)
	case o.Seeds < 1:
		return fmt.Errorf("eval: %d seeds per subset", o.Seeds)
	}
	return nil
}

// LDSTruth is the retraining side of LDS: m random subsets of the training
// set and, for each, the measured outputs of every test point after training
// on the subset alone, for every Output. It is all that scoring a method
// needs, and is cached.
type LDSTruth struct {
	Setup   Setup      `json:"setup"`
	Options LDSOptions `json:"options"`
	// Subsets holds the sorted training rows of each subset.
	Subsets [][]int `json:"subsets"`
	// Outputs[o][j][q] is output o of test point q after training on
	// subset j, averaged over the seeds.
	Outputs map[models.Output][][]float64 `json:"outputs"`
	// Seconds is the wall time of the retraining.
	Seconds float64 `json:"seconds"`
}

// LDSTruth draws the subsets of opt and trains a model on each (warm
// started from the optimum for the convex model; from the setup's
// initialisation with its Adam schedule for the MLP, once per seed),
// recording every test point's outputs. The result is cached under the
// setup, the data and opt, so a second call retrains nothing. Retraining
// runs on up to TaskOptions.Workers goroutines; the result does not depend
// on their number.
func (t *Task) LDSTruth(ctx context.Context, opt LDSOptions) (*LDSTruth, error) {
	if err := opt.defaults(t.Setup.Model == "lr"); err != nil {
		return nil, err
	}
	key := t.key("lds", opt)
	var truth LDSTruth
	if t.cache.loadJSON("lds", key, &truth) && truth.valid(opt.Subsets, t.Test.Len()) {
		return &truth, nil
	}
	clean := t.worlds["clean"]
	n := t.Train.Len()
	size := int(math.Round(opt.Alpha * float64(n)))
	if size < 1 || size >= n {
		return nil, fmt.Errorf("eval: LDS subsets of %d of %d training examples", size, n)
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x6c6473)) // "lds"
	truth = LDSTruth{Setup: t.Setup, Options: opt, Subsets: make([][]int, opt.Subsets), Outputs: map[models.Output][][]float64{}}
	for j := range truth.Subsets {
		s := rng.Perm(n)[:size]
		slices.Sort(s)
		truth.Subsets[j] = s
	}
	start := time.Now()
	jobs := opt.Subsets * opt.Seeds
	t.stage(fmt.Sprintf("LDS: training %d models on random %d-example subsets (%d workers)", jobs, size, t.workers()))
	results := make([]map[models.Output][]float64, jobs)
	var done atomic.Int64
	err := forEach(ctx, jobs, t.workers(), func(i int) error {
		m, err := t.retrain(ctx, clean, truth.Subsets[i/opt.Seeds], nil, uint64(i%opt.Seeds))
		if err != nil {
			return fmt.Errorf("eval: LDS subset %d: %w", i/opt.Seeds, err)
		}
		results[i] = models.OutputValues(m, t.Test.X, t.Test.Y, models.Outputs)
		t.tick("LDS", done.Add(1), jobs)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, o := range models.Outputs {
		rows := make([][]float64, opt.Subsets)
		for j := range rows {
			rows[j] = make([]float64, t.Test.Len())
			for r := 0; r < opt.Seeds; r++ {
				for q, v := range results[j*opt.Seeds+r][o] {
					rows[j][q] += v / float64(opt.Seeds)
				}
			}
		}
		truth.Outputs[o] = rows
	}
	truth.Seconds = time.Since(start).Seconds()
	return &truth, t.cache.storeJSON("lds", key, &truth)
}

func (tr *LDSTruth) valid(m, nTest int) bool {
	if len(tr.Subsets) != m {
		return false
	}
	for _, o := range models.Outputs {
		rows := tr.Outputs[o]
		if len(rows) != m {
			return false
		}
		for _, r := range rows {
			if len(r) != nTest {
				return false
			}
		}
	}
	return true
}

// tick reports progress of a stage of n jobs at every tenth.
func (t *Task) tick(stage string, done int64, n int) {
	if step := max(1, n/10); int(done)%step == 0 || int(done) == n {
		t.stage(fmt.Sprintf("%s: %d/%d trained", stage, done, n))
	}
}

// LDSResult is the linear datamodeling score of one method.
type LDSResult struct {
	Output models.Output `json:"output"`
	// Mean is the Spearman correlation over the subsets between the
	// predicted Σ_{i∈S} score(q, i) and the measured output, averaged over
	// the test points q for which it is defined.
	Mean    float64   `json:"lds"`
	PerTest []float64 `json:"per_test"` // NaN where a test point's outputs or predictions are constant
}

// LDS scores a method: scores is its n_test × n_train matrix, computed with
// query gradients of −f for the output o (see Output).
func LDS(truth *LDSTruth, scores *linalg.Dense64, o models.Output) (*LDSResult, error) {
	act, ok := truth.Outputs[o]
	if !ok {
		return nil, fmt.Errorf("eval: LDS ground truth has no output %q", o)
	}
	if len(act) == 0 || scores.Rows != len(act[0]) {
		return nil, fmt.Errorf("eval: %d rows of scores for %d test points", scores.Rows, len(act[0]))
	}
	pred := LDSPredictions(truth, scores)
	res := &LDSResult{Output: o, PerTest: make([]float64, scores.Rows)}
	a := make([]float64, len(act))
	for q := range res.PerTest {
		for j := range act {
			a[j] = act[j][q]
		}
		res.PerTest[q] = Spearman(pred[q], a)
	}
	res.Mean = meanDefined(res.PerTest)
	return res, nil
}

// LDSPredictions returns, for every test point q and subset j, the
// datamodel prediction Σ_{i∈S_j} scores[q][i].
func LDSPredictions(truth *LDSTruth, scores *linalg.Dense64) [][]float64 {
	pred := make([][]float64, scores.Rows)
	for q := range pred {
		row := scores.Row(q)
		pred[q] = make([]float64, len(truth.Subsets))
		for j, s := range truth.Subsets {
			var v float64
			for _, i := range s {
				v += row[i]
			}
			pred[q][j] = v
		}
	}
	return pred
}
