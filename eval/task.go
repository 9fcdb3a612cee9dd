package eval

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
	"github.com/goinfluence/goinfluence/progress"
)

// Setup names everything that determines a trained model of the
// evaluation harness: the data, the model family and its training. Two
// equal setups train bit-identical models, which is what lets ground truths
// be cached under a hash of the setup.
type Setup struct {
	// Dataset is "breast-cancer", "digits" or "mnist". The built-in sets
	// are split 80/20 by datasets.LoadSplit with Seed; MNIST comes split 5000/500.
	Dataset string `json:"dataset"`
	// Model is "lr" (logistic regression for two classes, softmax
	// regression otherwise; trained to its optimum by Newton's method) or
	// "mlp" (ReLU MLP trained by Adam for a fixed schedule).
	Model string `json:"model"`
	// L2 is the penalty λ on the mean loss.
	L2 float64 `json:"l2"`
	// Hidden are the MLP's hidden widths.
	Hidden []int `json:"hidden,omitempty"`
	// Epochs, BatchSize and LR are the Adam schedule: the MLP's training,
	// and for "lr" the first-order run whose checkpoints TracIn-CP uses.
	Epochs    int     `json:"epochs"`
	BatchSize int     `json:"batch_size"`
	LR        float64 `json:"lr"`
	// Checkpoints is the number of TracIn-CP checkpoints, saved at evenly
	// spaced epochs of the Adam run (the last at its end).
	Checkpoints int `json:"checkpoints"`
	// Seed seeds the split of the built-in data sets, the MLP's initial
	// weights and the minibatch order.
	Seed uint64 `json:"seed"`
	// NTrain and NTest, when positive, keep only the first NTrain training
	// and NTest test examples of the split (for quick runs).
	NTrain int `json:"n_train,omitempty"`
	NTest  int `json:"n_test,omitempty"`
}

// Default hyperparameters of DefaultSetup.
const (
	// MNISTL2 is λ of MNIST softmax regression (dattri's benchmark has the
	// same model and data but trains it by SGD without a penalty). At this
	// strength the Hessian's smallest eigenvalues are λ in the directions of
	// pixels that never light up, and first-order influence tracks
	// retraining closely (LOO, LDS).
	MNISTL2 = 1e-2
	// MNISTMLPL2 is λ of the MNIST MLP.
	MNISTMLPL2 = 1e-3
)

// DefaultSetup returns the harness's documented defaults for a data set and
// model family ("lr" or "mlp").
func DefaultSetup(dataset, model string) (Setup, error) {
	s := Setup{Dataset: dataset, Model: model, Seed: 1, Checkpoints: 10, BatchSize: 64}
	switch dataset {
	case "breast-cancer", "digits", "mnist":
	default:
		return s, fmt.Errorf("eval: unknown dataset %q (have breast-cancer, digits, mnist)", dataset)
	}
	switch model {
	case "lr":
		s.L2 = map[string]float64{"breast-cancer": BreastCancerL2, "digits": DigitsL2, "mnist": MNISTL2}[dataset]
		s.Epochs, s.LR = 10, 1e-2
	case "mlp":
		switch dataset {
		case "mnist":
			s.Hidden, s.L2, s.Epochs, s.LR = []int{64}, MNISTMLPL2, 20, 1e-3
		default:
			s.Hidden, s.L2, s.Epochs, s.LR = []int{32}, 1e-3, 30, 1e-2
		}
	default:
		return s, fmt.Errorf("eval: unknown model %q (have lr, mlp)", model)
	}
	return s, nil
}

func (s *Setup) check() error {
	switch {
	case s.Model != "lr" && s.Model != "mlp":
		return fmt.Errorf("eval: unknown model %q (have lr, mlp)", s.Model)
	case !(s.L2 > 0) || math.IsInf(s.L2, 1):
		return fmt.Errorf("eval: l2 %v must be positive and finite", s.L2)
	case s.Epochs < 1 || s.BatchSize < 1 || !(s.LR > 0):
		return fmt.Errorf("eval: Adam schedule of %d epochs, batch %d, step %v", s.Epochs, s.BatchSize, s.LR)
	case s.Checkpoints < 1 || s.Checkpoints > s.Epochs:
		return fmt.Errorf("eval: %d checkpoints over %d epochs", s.Checkpoints, s.Epochs)
	case s.NTrain < 0 || s.NTest < 0:
		return fmt.Errorf("eval: negative subsample %d/%d", s.NTrain, s.NTest)
	case s.Model == "mlp" && len(s.Hidden) == 0:
		return fmt.Errorf("eval: an mlp needs hidden widths")
	}
	return nil
}

// Describe names the setup's model, e.g. "softmax regression (λ = 0.01)" or
// "MLP 784-64-10 ReLU (λ = 0.001, Adam 20 epochs)".
func (s *Setup) Describe() string {
	if s.Model == "lr" {
		return fmt.Sprintf("linear (logistic/softmax) regression, λ = %g, Newton to ‖∇R‖ ≤ 1e-10", s.L2)
	}
	w := make([]string, len(s.Hidden))
	for i, h := range s.Hidden {
		w[i] = strconv.Itoa(h)
	}
	return fmt.Sprintf("MLP hidden %s ReLU, λ = %g, Adam %d epochs, batch %d, step %g",
		strings.Join(w, "-"), s.L2, s.Epochs, s.BatchSize, s.LR)
}

// TaskOptions configures NewTask.
type TaskOptions struct {
	// CacheDir holds cached models and ground truths; empty means
	// DefaultCacheDir. NoCache disables the cache.
	CacheDir string
	NoCache  bool
	// Workers bounds the goroutines retraining in parallel; 0 means
	// GOMAXPROCS. Results do not depend on it.
	Workers int
	// MNISTDir, when set, holds mnist_train.csv and mnist_test.csv (see
	// datasets.MNIST).
	MNISTDir string
	// Backend does the linear algebra of scoring; nil means linalg.Auto's
	// choice, resolved by NewTask.
	Backend linalg.Backend
	// Progress is told of the start of each stage (counts 0), from one
	// goroutine at a time.
	Progress progress.Func
}

// Task is a setup made concrete: the data split and the model trained on
// it, with the cache its ground truths and derived models live in. Its
// methods train whatever they need on first use: ground truths for LDS,
// LOO and noisy-label AUC, TracIn-CP checkpoints, TRAK ensembles.
type Task struct {
	Setup       Setup
	Train, Test *datasets.Dataset
	// Model is the reference model, trained on Train.
	Model   models.Model
	Backend linalg.Backend

	opts    TaskOptions
	cache   *cache
	dataKey string
	trained atomic.Int64

	mu     sync.Mutex // guards worlds and pre
	progMu sync.Mutex // serialises Progress calls from workers
	worlds map[string]*world
	pre    *models.Preconditioner // (H + 0)⁻¹ at the reference optimum, for warm-started retraining
}

// world is one labelling of the training set (clean, or with flipped
// labels) and the models trained on it.
type world struct {
	name     string
	key      string // cache key of the labelling
	train    *datasets.Dataset
	model    models.Model
	snaps    []Snapshot
	ensemble []models.Model
}

// Snapshot is a model saved during training, with the step size in force
// (TracIn-CP's η).
type Snapshot struct {
	Model models.Model
	LR    float64
}

// NewTask loads and prepares the data of s and trains (or loads from the
// cache) the reference model.
func NewTask(ctx context.Context, s Setup, opt TaskOptions) (*Task, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	be, err := linalg.OrAuto(opt.Backend)
	if err != nil {
		return nil, fmt.Errorf("eval: NewTask: %w", err)
	}
	t := &Task{Setup: s, opts: opt, Backend: be, worlds: map[string]*world{}}
	if !opt.NoCache {
		dir := opt.CacheDir
		if dir == "" {
			var err error
			if dir, err = DefaultCacheDir(); err != nil {
				return nil, err
			}
		}
		t.cache = &cache{dir: dir}
	}
	t.stage(fmt.Sprintf("loading %s", s.Dataset))
	train, test, err := datasets.LoadSplit(ctx, s.Dataset, datasets.SplitOptions{Seed: s.Seed, MNISTDir: opt.MNISTDir})
	if err != nil {
		return nil, err
	}
	if s.NTrain > 0 && s.NTrain < train.Len() {
		train = train.Subset(seq(s.NTrain))
	}
	if s.NTest > 0 && s.NTest < test.Len() {
		test = test.Subset(seq(s.NTest))
	}
	t.Train, t.Test = train, test
	t.dataKey = fingerprint(train, test)
	clean := &world{name: "clean", key: cacheKey("clean"), train: train}
	if err := t.ensureModel(ctx, clean, nil); err != nil {
		return nil, err
	}
	t.Model = clean.model
	t.worlds["clean"] = clean
	return t, nil
}

// Retrained returns the number of models this task has trained so far;
// everything loaded from the cache counts nothing.
func (t *Task) Retrained() int { return int(t.trained.Load()) }

// Problem returns the task as a Problem for LOO; the model must be convex.
func (t *Task) Problem() (*Problem, error) {
	if t.Setup.Model != "lr" {
		return nil, fmt.Errorf("eval: LOO retrains to the optimum and needs a convex model, not %s", t.Setup.Model)
	}
	return &Problem{Name: t.Setup.Dataset, Train: t.Train, Test: t.Test, Model: t.Model}, nil
}

// ModelName describes the trained model, e.g. "softmax" or "mlp 784-64-10 relu".
func (t *Task) ModelName() string {
	if m, ok := t.Model.(*models.MLP); ok {
		return models.Describe(m)
	}
	return t.Model.Kind()
}

func (t *Task) stage(s string) {
	if t.opts.Progress != nil {
		t.progMu.Lock()
		defer t.progMu.Unlock()
		t.opts.Progress(s, 0, 0)
	}
}

func (t *Task) workers() int {
	if t.opts.Workers > 0 {
		return t.opts.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// key returns the cache key of a derived result: the setup, the data and
// the parts given.
func (t *Task) key(parts ...any) string {
	return cacheKey(append([]any{t.Setup, t.dataKey}, parts...)...)
}

// ensureModel trains (or loads) w's model. The clean reference starts from
// scratch; a noisy world's convex model starts from the clean optimum.
func (t *Task) ensureModel(ctx context.Context, w *world, from models.Model) error {
	key := t.key("model", w.key)
	if m := t.cache.loadModel("model", key); m != nil && compatibleModel(m, t) {
		w.model = m
		return nil
	}
	t.stage(fmt.Sprintf("training the %s model on the %s labels (%d examples)", t.Setup.Model, w.name, w.train.Len()))
	start := time.Now()
	var m models.Model
	var err error
	if t.Setup.Model == "lr" {
		if from != nil {
			m = cloneModel(from)
		} else {
			m = t.newModel(0)
		}
		_, err = models.FitNewton(ctx, m, w.train.X, w.train.Y, nil, models.NewtonOptions{})
	} else {
		m, err = t.trainAdam(ctx, w.train.X, w.train.Y, nil, 0, nil)
	}
	if err != nil {
		return fmt.Errorf("eval: training on the %s labels: %w", w.name, err)
	}
	t.trained.Add(1)
	t.stage(fmt.Sprintf("trained in %.1f s: train accuracy %.4f, test accuracy %.4f", time.Since(start).Seconds(),
		models.Accuracy(m, w.train.X, w.train.Y), models.Accuracy(m, t.Test.X, t.Test.Y)))
	w.model = m
	return t.cache.storeModel("model", key, m)
}

// compatibleModel reports whether a cached model has the task's shape.
func compatibleModel(m models.Model, t *Task) bool {
	want := t.newModel(0)
	return m.Kind() == want.Kind() && slices.Equal(m.Layers(), want.Layers()) && m.L2() == want.L2()
}

// newModel returns an untrained model of the task's family; r offsets the
// MLP's initialisation seed.
func (t *Task) newModel(r uint64) models.Model {
	d, c := t.Train.X.Cols, t.Train.Classes
	if t.Setup.Model == "lr" {
		if c == 2 {
			return models.NewLogistic(d, t.Setup.L2)
		}
		return models.NewSoftmax(d, c, t.Setup.L2)
	}
	sizes := append(append([]int{d}, t.Setup.Hidden...), c)
	m, err := models.NewMLP(sizes, models.ReLU, t.Setup.L2, t.Setup.Seed+r)
	if err != nil {
		panic(err) // Setup.check and the data rule the errors out
	}
	return m
}

// trainAdam trains a fresh model of the task's family with the setup's Adam
// schedule, initialised (an MLP) and shuffled with seed Seed+r, on (x, y, w):
// the MLP's training, and the convex model's first-order run for TracIn-CP.
// snap, when not nil, receives the parameters after each epoch.
func (t *Task) trainAdam(ctx context.Context, x *linalg.Dense64, y []int, w []float64, r uint64, snap func(epoch int, m models.Model)) (models.Model, error) {
	m := t.newModel(r)
	opt := models.AdamOptions{Epochs: t.Setup.Epochs, BatchSize: t.Setup.BatchSize, LR: t.Setup.LR, Seed: t.Setup.Seed + r}
	if snap != nil {
		opt.EpochEnd = func(epoch int) error { snap(epoch, m); return nil }
	}
	if err := models.TrainAdam(ctx, m, x, y, w, opt); err != nil {
		return nil, err
	}
	return m, nil
}

// retrain trains a model on rows of the training set of w (all rows when
// rows is nil) with example weights wt (nil for ones): a convex model warm
// started from w's optimum and converged, an MLP from scratch with seed
// offset r.
func (t *Task) retrain(ctx context.Context, w *world, rows []int, wt []float64, r uint64) (models.Model, error) {
	x, y := w.train.X, w.train.Y
	if rows != nil {
		sub := w.train.Subset(rows)
		x, y = sub.X, sub.Y
	}
	defer t.trained.Add(1)
	if t.Setup.Model == "mlp" {
		return t.trainAdam(ctx, x, y, wt, r, nil)
	}
	pre, err := t.preconditioner(ctx, w)
	if err != nil {
		return nil, err
	}
	m := cloneModel(w.model)
	if _, err := models.FitWarm(ctx, m, x, y, wt, pre); err != nil {
		return nil, err
	}
	return m, nil
}

// preconditioner returns the inverse Hessian at the optimum of the clean
// world, computed once; other worlds fall back to Newton's method.
func (t *Task) preconditioner(ctx context.Context, w *world) (*models.Preconditioner, error) {
	if w.name != "clean" {
		return nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pre != nil {
		return t.pre, nil
	}
	t.stage(fmt.Sprintf("inverting the %d × %d Hessian at the optimum for warm-started retraining", models.NumParams(w.model), models.NumParams(w.model)))
	h := w.model.Curvature(w.train.X, w.train.Y, nil)
	p, err := models.NewPreconditioner(ctx, t.Backend, h)
	if err != nil {
		return nil, err
	}
	t.pre = p
	return p, nil
}

// cloneModel returns a copy of m with its own parameters.
func cloneModel(m models.Model) models.Model {
	var c models.Model
	switch v := m.(type) {
	case *models.Logistic:
		c = models.NewLogistic(v.Layers()[0].DIn-1, v.L2())
	case *models.Softmax:
		c = models.NewSoftmax(v.Layers()[0].DIn-1, v.Classes(), v.L2())
	case *models.MLP:
		var err error
		if c, err = models.NewMLP(v.Sizes(), v.Activation(), v.L2(), 0); err != nil {
			panic(err)
		}
	default:
		panic(fmt.Sprintf("eval: cannot copy a %T", m))
	}
	copy(c.Params(), m.Params())
	return c
}

// forEach runs f(i) for i in [0, n) on up to workers goroutines and returns
// the first error. Each f must write only its own results, so that they do
// not depend on the number of workers.
func forEach(ctx context.Context, n, workers int, f func(i int) error) error {
	workers = max(1, min(workers, n))
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
