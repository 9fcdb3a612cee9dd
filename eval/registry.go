package eval

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
	"github.com/goinfluence/goinfluence/progress"
)

// ErrSkipped marks a method that does not apply to a task (too many
// parameters for a dense curvature, a method not built): test it with
// errors.Is; the quality table shows the reason instead of numbers.
var ErrSkipped = errors.New("skipped")

// MethodConfig holds the hyperparameters of the registered methods. Zero
// values take the defaults noted.
type MethodConfig struct {
	// Damping is the δ added to the fitted curvatures (diagonal, K-FAC,
	// EK-FAC, LoGra): "l2" (default) for the model's λ, which makes the
	// fitted Fisher + δI estimate the curvature the model was trained
	// with (the exact method's Hessian includes λI already); "heuristic"
	// for 0.1 × mean Λ per layer; or a number.
	Damping string `json:"damping"`
	// ExactDamping is added to the exact method's Hessian (default 0).
	ExactDamping float64 `json:"exact_damping"`
	// ExactMaxParams bounds the parameters for which the exact method
	// forms the dense P × P curvature (default 12000, 1.1 GB).
	ExactMaxParams int `json:"exact_max_params"`
	// LoGraK is k_in = k_out of the Kronecker projection before EK-FAC
	// (default 32).
	LoGraK int `json:"logra_k"`
	// TRAKDim is the SJLT projection dimension per layer of TRAK
	// (default 2048), TRAKDamping its δ as hessian.ParseDamping reads it
	// (default "heuristic": 0.1·trace(ΦᵀΦ)/k per model).
	TRAKDim     int    `json:"trak_dim"`
	TRAKDamping string `json:"trak_damping"`
	// CGTol and CGMaxIter stop CG on each query (defaults 1e-4 relative
	// residual and 300 iterations; missing the tolerance is an error).
	CGTol     float64 `json:"cg_tol"`
	CGMaxIter int     `json:"cg_max_iter"`
	// CGTruncate accepts CG's iterate after CGMaxIter iterations whatever
	// its residual (truncated CG); the row's notes give the residuals.
	CGTruncate bool `json:"cg_truncate,omitempty"`
	// LiSSADepth is the number of Neumann steps (default 300), each on the
	// curvature of LiSSABatch random training examples (default 256);
	// LiSSAScale is s (0: 2 × λ_max of the full curvature, estimated by 30
	// Lanczos steps).
	LiSSADepth int     `json:"lissa_depth"`
	LiSSABatch int     `json:"lissa_batch"`
	LiSSAScale float64 `json:"lissa_scale"`
	// ArnoldiIter Lanczos steps (default 200) find the ArnoldiTopK
	// (default 100) eigenpairs of largest magnitude.
	ArnoldiIter int `json:"arnoldi_iter"`
	ArnoldiTopK int `json:"arnoldi_topk"`
	// IterativeSelfMax bounds the training set for which CG and LiSSA
	// compute self-influence, one solve per training example (default
	// 2000); beyond it their AUC is not measured.
	IterativeSelfMax int `json:"iterative_self_max"`
	// IterativeMaxParams skips CG and LiSSA on models with more
	// parameters (default 20000): each query needs hundreds of
	// Hessian-vector products over the training set. On the 50,890-parameter
	// MNIST MLP a CG iteration for 500 queries took 9 s on two cores with
	// OpenBLAS, and no query had reached 1e-4 after 100 iterations
	// (bench/results/quality.md).
	// Negative means no limit.
	IterativeMaxParams int `json:"iterative_max_params"`
	// Seed seeds the sampled labels of the Fisher fits and the projections.
	Seed uint64 `json:"seed"`
}

func (c *MethodConfig) defaults() {
	c.Damping = cmp.Or(c.Damping, "l2")
	c.ExactMaxParams = cmp.Or(c.ExactMaxParams, 12000)
	c.LoGraK = cmp.Or(c.LoGraK, 32)
	c.TRAKDim = cmp.Or(c.TRAKDim, 2048)
	c.TRAKDamping = cmp.Or(c.TRAKDamping, "heuristic")
	c.CGTol = cmp.Or(c.CGTol, 1e-4)
	c.CGMaxIter = cmp.Or(c.CGMaxIter, 300)
	c.LiSSADepth = cmp.Or(c.LiSSADepth, 300)
	c.LiSSABatch = cmp.Or(c.LiSSABatch, 256)
	c.ArnoldiIter = cmp.Or(c.ArnoldiIter, 200)
	c.ArnoldiTopK = cmp.Or(c.ArnoldiTopK, 100)
	c.IterativeSelfMax = cmp.Or(c.IterativeSelfMax, 2000)
	c.IterativeMaxParams = cmp.Or(c.IterativeMaxParams, 20000)
}

// DefaultMethodConfig returns the configuration the zero MethodConfig
// stands for (Seed aside, which defaults to the task's).
func DefaultMethodConfig() MethodConfig {
	var c MethodConfig
	c.defaults()
	return c
}

// methodConfig fills c's zero fields with the defaults, the seed with the
// setup's.
func (t *Task) methodConfig(c MethodConfig) MethodConfig {
	c.defaults()
	c.Seed = cmp.Or(c.Seed, t.Setup.Seed)
	return c
}

// fittedDamping resolves Damping for a model.
func (c *MethodConfig) fittedDamping(m models.Model) (hessian.Damping, error) {
	if c.Damping == "l2" {
		return hessian.Damping{Value: m.L2()}, nil
	}
	return hessian.ParseDamping(c.Damping)
}

// Inputs is what a method may use to score: a trained model, the training
// set it was trained on (its labels, clean or noisy), the queries and how to
// get the checkpoints and independently trained models some methods need.
// Gradients are computed once and shared between methods.
type Inputs struct {
	Model   models.Model
	Train   *datasets.Dataset
	Queries *datasets.Dataset // nil when only self-influence is asked for
	Output  models.Output     // queries are scored with gradients of −f
	Backend linalg.Backend
	Config  MethodConfig
	// Snapshots returns the TracIn-CP checkpoints; Ensemble k models
	// trained independently on Train, the first being Model.
	Snapshots func(ctx context.Context) ([]Snapshot, error)
	Ensemble  func(ctx context.Context, k int) ([]models.Model, error)
	// Progress is told now and then by methods that iterate for long (CG,
	// LiSSA), with counts 0.
	Progress progress.Func

	query, train, fit *gradients.Batch
}

// QueryGradients returns ∇(−f) of the queries at Model.
func (in *Inputs) QueryGradients() *gradients.Batch {
	if in.query == nil {
		in.query = models.OutputGradients(in.Model, in.Queries.X, in.Queries.Y, in.Output)
	}
	return in.query
}

// TrainGradients returns the loss gradients of the training set at its
// labels.
func (in *Inputs) TrainGradients() *gradients.Batch {
	if in.train == nil {
		in.train = in.Model.Gradients(in.Train.X, in.Train.Y)
	}
	return in.train
}

// FitGradients returns the training gradients at labels drawn from the
// model (seed Config.Seed), the true-Fisher fit set of the fitted methods.
func (in *Inputs) FitGradients() *gradients.Batch {
	if in.fit == nil {
		in.fit = in.Model.Gradients(in.Train.X, models.SampleLabels(in.Model, in.Train.X, in.Config.Seed))
	}
	return in.fit
}

// MethodResult holds a method's n_query × n_train scores (when queries were
// given) and self-influence of every training example (when asked).
type MethodResult struct {
	Scores *linalg.Dense64
	Self   []float64
	// Notes are remarks for the table (how far a truncated solve got).
	Notes []string
}

// MethodSpec is a registered method of the quality table.
type MethodSpec struct {
	Key  string // command-line name, e.g. "ekfac"
	Name string // row name, e.g. "EK-FAC"
	// Missing, when not empty, says why the method cannot run in this
	// build; the table lists it as skipped.
	Missing string
	// Run scores in.Queries against in.Train (when Queries is not nil) and
	// computes self-influence (when self is set). It returns an error
	// wrapping ErrSkipped when the method does not apply to the model.
	Run func(ctx context.Context, in *Inputs, self bool) (*MethodResult, error)
	// Of and DType mark a store-backed variant: the method Of (a key)
	// computed through gradient stores of this dtype on disk instead of in
	// memory. Quality compares the i8 and f16 variants of a method when
	// both run (StoreComparison).
	Of    string
	DType gradients.DType
}

// Methods returns the registry, in the order of the quality table.
func Methods() []MethodSpec {
	return []MethodSpec{
		{Key: "exact", Name: "exact (Cholesky)", Run: runExact},
		{Key: "cg", Name: "CG", Run: iterativeRun("cg")},
		{Key: "lissa", Name: "LiSSA", Run: iterativeRun("lissa")},
		{Key: "arnoldi", Name: "Arnoldi", Run: iterativeRun("arnoldi")},
		{Key: "datainf", Name: "DataInf", Run: iterativeRun("datainf")},
		{Key: "tracin", Name: "TracIn-CP", Run: runTracIn},
		{Key: "identity", Name: "identity", Run: fittedRun(ekfac.Identity, false)},
		{Key: "diagonal", Name: "diagonal", Run: fittedRun(ekfac.Diagonal, false)},
		{Key: "kfac", Name: "K-FAC", Run: fittedRun(ekfac.KFAC, false)},
		{Key: "ekfac", Name: "EK-FAC", Run: fittedRun(ekfac.EKFAC, false)},
		{Key: "trak-1", Name: "TRAK-1", Run: trakRun(1)},
		{Key: "trak-10", Name: "TRAK-10", Run: trakRun(10)},
		{Key: "logra", Name: "LoGra (EK-FAC, Kronecker-projected)", Run: fittedRun(ekfac.EKFAC, true)},
		{Key: "trak-10-f16", Name: "TRAK-10, f16 store", Run: storeTRAKRun(10, gradients.F16), Of: "trak-10", DType: gradients.F16},
		{Key: "trak-10-i8", Name: "TRAK-10, i8 store", Run: storeTRAKRun(10, gradients.I8), Of: "trak-10", DType: gradients.I8},
		{Key: "logra-f16", Name: "LoGra, f16 store", Run: storeLoGraRun(gradients.F16), Of: "logra", DType: gradients.F16},
		{Key: "logra-i8", Name: "LoGra, i8 store", Run: storeLoGraRun(gradients.I8), Of: "logra", DType: gradients.I8},
	}
}

// LookupMethod returns the registered method with the given key.
func LookupMethod(key string) (MethodSpec, error) {
	var keys []string
	for _, m := range Methods() {
		if m.Key == key {
			return m, nil
		}
		keys = append(keys, m.Key)
	}
	return MethodSpec{}, fmt.Errorf("eval: unknown method %q (have %s)", key, strings.Join(keys, ", "))
}

// analyzerRun runs an influence.Method built from the inputs through an
// Analyzer.
func analyzerRun(ctx context.Context, in *Inputs, self bool, m influence.Method) (*MethodResult, error) {
	var query *gradients.Batch
	if in.Queries != nil {
		query = in.QueryGradients()
	}
	return score(ctx, &influence.Analyzer{Method: m, Backend: in.Backend}, query, in.TrainGradients(), self)
}

// score runs an on query (when not nil) against train, and on train's
// self-influence when self is set.
func score(ctx context.Context, an *influence.Analyzer, query, train *gradients.Batch, self bool) (*MethodResult, error) {
	res := &MethodResult{}
	var err error
	if query != nil {
		if res.Scores, err = an.Scores(ctx, query, train); err != nil {
			return nil, err
		}
	}
	if self {
		if res.Self, err = an.SelfInfluence(ctx, train); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// residualNote summarises a truncated solve's final relative residuals.
func residualNote(rep *hessian.Report, tol float64) string {
	if rep == nil || len(rep.Residuals) == 0 {
		return "no report"
	}
	r := slices.Clone(rep.Residuals)
	slices.Sort(r)
	above := 0
	for _, v := range r {
		if v > tol {
			above++
		}
	}
	return fmt.Sprintf("truncated at %d iterations: relative residual median %.2g, max %.2g; %d of %d above %g",
		slices.Max(rep.Iterations), r[len(r)/2], r[len(r)-1], above, len(r), tol)
}

// runExact solves with the dense curvature of the model (the Hessian of a
// regression, the Gauss–Newton matrix of an MLP, both with λI) by Cholesky.
func runExact(ctx context.Context, in *Inputs, self bool) (*MethodResult, error) {
	if p := models.NumParams(in.Model); p > in.Config.ExactMaxParams {
		return nil, fmt.Errorf("%w: n/a, %d parameters: a dense %d² curvature exceeds the limit of %d parameters", ErrSkipped, p, p, in.Config.ExactMaxParams)
	}
	h := in.Model.Curvature(in.Train.X, in.Train.Y, nil)
	return analyzerRun(ctx, in, self, influence.Exact(h, in.Config.ExactDamping))
}

// iterativeRun solves with the model's curvature (Hessian or Gauss–Newton
// matrix, λI included) known only through Hessian-vector products
// (models.HVP): CG to Config.CGTol, LiSSA over sampled mini-batch
// curvatures, Arnoldi's projected inverse on the top eigenpairs; DataInf
// uses the training gradients' closed form instead, damped per layer as
// the fitted methods are. The exact damping Config.ExactDamping is added to
// the curvature of the first three.
func iterativeRun(kind string) func(context.Context, *Inputs, bool) (*MethodResult, error) {
	return func(ctx context.Context, in *Inputs, self bool) (*MethodResult, error) {
		c := &in.Config
		if p := models.NumParams(in.Model); (kind == "cg" || kind == "lissa") && c.IterativeMaxParams > 0 && p > c.IterativeMaxParams {
			return nil, fmt.Errorf("%w: n/a, %d parameters exceed the limit of %d for per-query Hessian-vector-product solves (raise it to run)", ErrSkipped, p, c.IterativeMaxParams)
		}
		if self && (kind == "cg" || kind == "lissa") && in.Train.Len() > c.IterativeSelfMax {
			return nil, fmt.Errorf("%w: self-influence needs a solve per training example (%d > %d)", ErrSkipped, in.Train.Len(), c.IterativeSelfMax)
		}
		var m influence.Method
		if kind == "datainf" {
			damp, err := c.fittedDamping(in.Model)
			if err != nil {
				return nil, err
			}
			m = influence.DataInf(in.TrainGradients(), hessian.DataInfOptions{
				Damping: hessian.Damping{Heuristic: damp.Heuristic, Value: damp.Value}})
			return analyzerRun(ctx, in, self, m)
		}
		op, err := models.NewHVP(in.Model, in.Train.X, in.Train.Y, nil)
		if err != nil {
			return nil, err
		}
		switch kind {
		case "cg":
			opt := hessian.CGOptions{Tol: c.CGTol, MaxIter: c.CGMaxIter, Truncate: c.CGTruncate}
			if in.Progress != nil {
				opt.Progress = func(stage string, it, total int) {
					if it%10 == 0 {
						in.Progress.Report(fmt.Sprintf("CG: iteration %d of at most %d, %s %g", it, total, stage, c.CGTol), 0, 0)
					}
				}
			}
			cg := influence.CG(op, c.ExactDamping, opt)
			res, err := analyzerRun(ctx, in, self, cg)
			if err == nil && c.CGTruncate {
				res.Notes = append(res.Notes, residualNote(cg.Report(), c.CGTol))
			}
			return res, err
		case "arnoldi":
			m = influence.Arnoldi(op, c.ExactDamping, hessian.ArnoldiOptions{Iterations: c.ArnoldiIter, TopK: c.ArnoldiTopK, Seed: c.Seed})
		case "lissa":
			opt := hessian.LiSSAOptions{Scale: c.LiSSAScale, Depth: c.LiSSADepth, Seed: c.Seed, Backend: in.Backend}
			if in.Progress != nil {
				opt.Progress = func(_ string, step, depth int) {
					if step%50 == 0 {
						in.Progress.Report(fmt.Sprintf("LiSSA: step %d of %d", step, depth), 0, 0)
					}
				}
			}
			if n := in.Train.Len(); c.LiSSABatch < n {
				opt.Sample = func(seed uint64) (hessian.Operator, error) {
					rows := rand.New(rand.NewPCG(seed, 0x6c69737361)).Perm(n)[:c.LiSSABatch] // "lissa"
					b := in.Train.Subset(rows)
					return models.NewHVP(in.Model, b.X, b.Y, nil)
				}
			}
			m = influence.LiSSA(op, c.ExactDamping, opt)
		}
		return analyzerRun(ctx, in, self, m)
	}
}

// fittedRun fits the method's factors on the sampled-label gradients (in a
// Kronecker-projected space with k_in = k_out = Config.LoGraK when
// projected) and scores with them.
func fittedRun(method ekfac.Method, projected bool) func(context.Context, *Inputs, bool) (*MethodResult, error) {
	return func(ctx context.Context, in *Inputs, self bool) (*MethodResult, error) {
		damp, err := in.Config.fittedDamping(in.Model)
		if err != nil {
			return nil, err
		}
		fit, train := in.FitGradients(), in.TrainGradients()
		var query *gradients.Batch
		if in.Queries != nil {
			query = in.QueryGradients()
		}
		if projected {
			p := gradients.Projection{Kind: gradients.Kronecker, KIn: in.Config.LoGraK, KOut: in.Config.LoGraK, Seed: in.Config.Seed}
			bs := []*gradients.Batch{fit, train, query}
			for i, b := range bs {
				if b == nil {
					continue
				}
				if bs[i], err = p.Apply(ctx, b); err != nil {
					return nil, err
				}
			}
			fit, train, query = bs[0], bs[1], bs[2]
		}
		f, err := ekfac.Fit(ctx, method, in.Backend, ekfac.BatchSource(fit), nil)
		if err != nil {
			return nil, err
		}
		an := &influence.Analyzer{Method: influence.Factors(f, ekfac.ScoreOptions{Damping: damp}), Backend: in.Backend}
		return score(ctx, an, query, train, self)
	}
}

// runTracIn is TracIn-CP over the snapshots: query gradients of −f and
// training loss gradients at each checkpoint, weighted by its step size.
func runTracIn(ctx context.Context, in *Inputs, self bool) (*MethodResult, error) {
	snaps, err := in.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	res := &MethodResult{}
	cps := make([]influence.Checkpoint, len(snaps))
	for c, s := range snaps {
		cps[c] = influence.Checkpoint{Train: s.Model.Gradients(in.Train.X, in.Train.Y), LR: s.LR}
		if in.Queries != nil {
			cps[c].Query = models.OutputGradients(s.Model, in.Queries.X, in.Queries.Y, in.Output)
		}
	}
	if self {
		if res.Self, err = influence.TracInCPSelf(ctx, cps); err != nil {
			return nil, err
		}
	}
	if in.Queries != nil {
		if res.Scores, err = influence.TracInCP(ctx, in.Backend, cps); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// trakEnsemble returns the k models of TRAK (Inputs.Ensemble) and its
// damping, Config.TRAKDamping: what trakRun and storeTRAKRun share.
func (in *Inputs) trakEnsemble(ctx context.Context, k int) ([]models.Model, hessian.Damping, error) {
	ms, err := in.Ensemble(ctx, k)
	if err != nil {
		return nil, hessian.Damping{}, err
	}
	damping, err := hessian.ParseDamping(in.Config.TRAKDamping)
	if err != nil {
		return nil, hessian.Damping{}, fmt.Errorf("TRAK: %w", err)
	}
	return ms, damping, nil
}

// trakRun is TRAK over k independently trained models: SJLT projections of
// dimension Config.TRAKDim per layer with a seed per model, query gradients
// of −f and training gradients of the negative margin (TRAK's model output,
// so that Q = 1 − p turns them into loss gradients). Self-influence scores
// each training example's own loss gradient.
func trakRun(k int) func(context.Context, *Inputs, bool) (*MethodResult, error) {
	return func(ctx context.Context, in *Inputs, self bool) (*MethodResult, error) {
		ms, damping, err := in.trakEnsemble(ctx, k)
		if err != nil {
			return nil, err
		}
		opt := influence.TRAKOptions{
			Damping:           damping,
			Projection:        gradients.Projection{Kind: gradients.SJLT, K: in.Config.TRAKDim, Seed: in.Config.Seed},
			SeedPerCheckpoint: true,
		}
		res := &MethodResult{}
		run := func(query func(m models.Model) *gradients.Batch) (*linalg.Dense64, error) {
			cps := make([]influence.Checkpoint, len(ms))
			for c, m := range ms {
				cps[c] = influence.Checkpoint{
					Query:     query(m),
					Train:     models.OutputGradients(m, in.Train.X, in.Train.Y, models.Margin),
					TrainProb: trueProbs(m, in.Train),
				}
			}
			return influence.TRAK(ctx, in.Backend, cps, opt)
		}
		if in.Queries != nil {
			if res.Scores, err = run(func(m models.Model) *gradients.Batch {
				return models.OutputGradients(m, in.Queries.X, in.Queries.Y, in.Output)
			}); err != nil {
				return nil, err
			}
		}
		if self {
			all, err := run(func(m models.Model) *gradients.Batch { return m.Gradients(in.Train.X, in.Train.Y) })
			if err != nil {
				return nil, err
			}
			res.Self = make([]float64, in.Train.Len())
			for i := range res.Self {
				res.Self[i] = all.At(i, i)
			}
		}
		return res, nil
	}
}

// trueProbs returns p(y_n | x_n) of every example.
func trueProbs(m models.Model, d *datasets.Dataset) []float64 {
	p := m.Probs(d.X)
	out := make([]float64, d.Len())
	for i := range out {
		out[i] = p.At(i, d.Y[i])
	}
	return out
}
