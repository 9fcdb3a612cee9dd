package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// EKFACOptions choose the model and size the example counts EKFAC times.
// Zero fields take the defaults of 'goinfluence bench ekfac', which depend
// on the model: those in parentheses are the one-layer case's, those after
// "mlp:" the MLP's.
type EKFACOptions struct {
	Backend linalg.Backend // default linalg.Auto()
	// Model is ModelLayer (the default: one synthetic layer with tokens)
	// or ModelMLP (an MLP with biases, no token axis).
	Model string
	// Layers are the MLP's widths, input first (mlp: 784, 512, 512, 10);
	// ModelLayer ignores them.
	Layers  []int
	Dim     int // layer size, d_in = d_out (default 2048; at least 2); mlp: the yardsticks' n only
	Tokens  int // token rows per example (default 64); mlp: ignored, no token axis
	Fit     int // examples the factors are fitted on (default 32; mlp: Train)
	Queries int // query examples (default 8; mlp: 500)
	Train   int // training examples scored (default 32; mlp: 5000)
	Chunk   int // examples per fit batch (default: as 'goinfluence fit', ekfac.ChunkBytes of values)
	// Precision is the precision of the fit and scoring stages:
	// PrecisionF64, PrecisionF32 or PrecisionBoth (the default), which
	// times the f64 fit under the stages' usual names, then the f32 fit
	// (ekfac.FitOptions.Precision F32), whose stage names end in " (f32)",
	// then the scoring of each precision on its own factors.
	Precision string
	// YardstickTime is the least time spent measuring each of Sgemm and
	// Dgemm at n = Dim (default 1 s).
	YardstickTime time.Duration
	// CPUProfile, when not nil, receives a CPU profile of the timed stages
	// alone (not the yardsticks or the making of the gradients).
	CPUProfile io.Writer
	// Progress, when not nil, receives a line per step.
	Progress io.Writer
}

// EKFACStage is the timing of one stage of EKFAC.
type EKFACStage struct {
	Stage      string  `json:"stage"`
	Seconds    float64 `json:"seconds"`
	GemmGFLOP  float64 `json:"gemm_gflop"`   // GEMM work in the stage
	GemmSecs   float64 `json:"gemm_seconds"` // time inside GEMM calls
	GemmRate   float64 `json:"gemm_gflops"`  // GemmGFLOP / GemmSecs
	RatioSgemm float64 `json:"ratio_to_sgemm"`
	RatioDgemm float64 `json:"ratio_to_dgemm"`
	EighSecs   float64 `json:"eigh_seconds"`

	// The MLP case only: the stage's GEMM flops at the yardsticks' rates
	// (its floor), and the stage's time over floor plus eigh time.
	FloorSgemm      float64 `json:"floor_sgemm_seconds,omitempty"`
	FloorDgemm      float64 `json:"floor_dgemm_seconds,omitempty"`
	RatioFloorSgemm float64 `json:"ratio_to_floor_sgemm,omitempty"`
	RatioFloorDgemm float64 `json:"ratio_to_floor_dgemm,omitempty"`
}

// EKFACResult is the outcome of EKFAC. Its JSON is that of
// 'goinfluence bench ekfac --json'.
type EKFACResult struct {
	Machine
	Backend string       `json:"backend"`
	Dim     int          `json:"dim"`
	Tokens  int          `json:"tokens"`
	Fit     int          `json:"fit"`
	Queries int          `json:"queries"`
	Train   int          `json:"train"`
	Sgemm   float64      `json:"sgemm_gflops"` // the yardsticks, n = Dim, same run
	Dgemm   float64      `json:"dgemm_gflops"`
	Stages  []EKFACStage `json:"stages"`

	// Precision is the precision asked for (f64, f32 or both), of the fit
	// and the scoring stages alike: each precision is timed end to end,
	// its scoring on its own fit. PlanF32 is the F32 cost model's choice
	// per layer (ekfac.Factors.PairwisePlan) when an f32 stage ran.
	Precision string          `json:"precision"`
	PlanF32   []EKFACPlanStep `json:"plan_f32,omitempty"`

	// The MLP case only (empty for the one layer, whose JSON predates them).
	Model   string       `json:"model,omitempty"`
	Layers  []int        `json:"layers,omitempty"`
	Floors  *EKFACFloors `json:"floors,omitempty"`
	PeakRSS int64        `json:"peak_rss_bytes,omitempty"` // VmHWM of the whole run
}

// EKFACPlanStep is the F32 scoring path's choice for one layer, from
// ekfac.LayerPlan, in GFLOP.
type EKFACPlanStep struct {
	Layer       string  `json:"layer"`
	Algorithm   string  `json:"algorithm"` // "bilinear" or "materialise"
	Rotation    float64 `json:"rotation_gflop"`
	Bilinear    float64 `json:"bilinear_gflop"`
	Materialise float64 `json:"materialise_gflop"`
}

// The models EKFAC times.
const (
	ModelLayer = "layer"
	ModelMLP   = "mlp"
)

// The precisions of EKFAC's scoring stages.
const (
	PrecisionF64  = "f64"
	PrecisionF32  = "f32"
	PrecisionBoth = "both"
)

// EKFAC times the stages of EK-FAC. The one-layer case (ModelLayer) runs
// one synthetic layer of seeded random activations and output gradients:
// covariance, eigendecomposition, Λ, scoring queries against training
// examples, and self-influence. The MLP case (ModelMLP) is described at
// ekfacMLP: the fit and the pairwise scores of an MLP, each stage against
// the floor of its GEMMs at the yardsticks' rates. Each
// stage's GEMM-like calls (Dgemm, Sgemm, covariance XᵀX counted as a full
// product) are timed and their flops counted, so that the rate inside them
// can be compared with the yardstick: the same backend's Sgemm and Dgemm on
// Dim×Dim×Dim products, measured in the same run. The rest of a stage's time
// is the work around the products.
func EKFAC(ctx context.Context, opt EKFACOptions) (*EKFACResult, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Model == ModelMLP {
		return ekfacMLP(ctx, o)
	}
	progress := writerOrDiscard(o.Progress)
	raw, err := linalg.OrAuto(o.Backend)
	if err != nil {
		return nil, fmt.Errorf("bench ekfac: %w", err)
	}
	res := &EKFACResult{Machine: ThisMachine(), Backend: raw.Name(),
		Dim: o.Dim, Tokens: o.Tokens, Fit: o.Fit, Queries: o.Queries, Train: o.Train,
		Precision: o.Precision}

	fmt.Fprintf(progress, "measuring %s Sgemm and Dgemm at n=%d\n", raw.Name(), o.Dim)
	res.Sgemm = linalg.MeasureGemm(raw, o.Dim, false, o.YardstickTime)
	res.Dgemm = linalg.MeasureGemm(raw, o.Dim, true, o.YardstickTime)

	rng := rand.New(rand.NewPCG(1, 2))
	batch := func(n int) *gradients.Batch {
		l := gradients.Layer{Name: "layer", DIn: o.Dim, DOut: o.Dim, Tokens: o.Tokens, TokenAxis: true,
			A: make([]float64, n*o.Tokens*o.Dim), S: make([]float64, n*o.Tokens*o.Dim)}
		for i := range l.A {
			l.A[i] = rng.NormFloat64()
			l.S[i] = 1e-2 * rng.NormFloat64()
		}
		return &gradients.Batch{N: n, Layers: []gradients.Layer{l}}
	}
	fmt.Fprintf(progress, "generating %d fit, %d query and %d training examples of a %d×%d layer with %d tokens\n",
		o.Fit, o.Queries, o.Train, o.Dim, o.Dim, o.Tokens)
	fit, q, tr := batch(o.Fit), batch(o.Queries), batch(o.Train)
	parts := chunks(fit, o.Chunk)

	be := &countingBackend{Backend: raw}
	var f, f32 *ekfac.Factors
	sopt := ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
	steps := o.fits(be, parts, &f, &f32)
	if o.withF64() {
		steps = append(steps,
			step{"score", func() error { _, err := f.LayerScores(ctx, be, q, tr, sopt); return err }},
			step{"self-influence", func() error { _, err := f.SelfInfluence(ctx, be, tr, sopt); return err }})
	}
	if o.withF32() {
		s32 := sopt
		s32.Precision = ekfac.F32
		steps = append(steps, step{"score" + f32Suffix, func() error { _, err := f32.LayerScores(ctx, be, q, tr, s32); return err }})
	}
	if res.Stages, err = runSteps(ctx, be, steps, res.Sgemm, res.Dgemm, o.CPUProfile, progress); err != nil {
		return nil, err
	}
	if o.withF32() {
		res.PlanF32 = planF32(f32, q, tr, ekfac.ScoreOptions{Precision: ekfac.F32})
	}
	return res, nil
}

// fits returns the fit stages o asks for: in float64 into *f, and in
// float32 (FitOptions.Precision F32, stage names ending in f32Suffix) into
// *f32, whose factors the f32 scoring stage uses, so that each precision
// is timed end to end.
func (o EKFACOptions) fits(be linalg.Backend, parts []*gradients.Batch, f, f32 **ekfac.Factors) []step {
	var steps []step
	if o.withF64() {
		steps = append(steps, fitSteps(be, parts, f, ekfac.F64, "")...)
	}
	if o.withF32() {
		steps = append(steps, fitSteps(be, parts, f32, ekfac.F32, f32Suffix)...)
	}
	return steps
}

// f32Suffix names the f32 scoring stages: "pairwise scores (f32)".
const f32Suffix = " (f32)"

// withF64 and withF32 report whether the f64 and f32 scoring stages run.
func (o EKFACOptions) withF64() bool { return o.Precision != PrecisionF32 }
func (o EKFACOptions) withF32() bool { return o.Precision != PrecisionF64 }

// planF32 converts f's F32 plan for scoring q against t.
func planF32(f *ekfac.Factors, q, t *gradients.Batch, opt ekfac.ScoreOptions) []EKFACPlanStep {
	var out []EKFACPlanStep
	for _, p := range f.PairwisePlan(q, t, opt) {
		out = append(out, EKFACPlanStep{Layer: p.Layer, Algorithm: string(p.Algorithm),
			Rotation: p.Rotation / 1e9, Bilinear: p.Bilinear / 1e9, Materialise: p.Materialise / 1e9})
	}
	return out
}

// writePlan writes the F32 plan as a table, if there is one.
func writePlan(ew *errWriter, plan []EKFACPlanStep) {
	if len(plan) == 0 {
		return
	}
	ew.printf("f32 cost model per layer (GFLOP; rotation shared by both):\n")
	ew.printf("  %-10s %-12s %10s %10s %12s\n", "layer", "algorithm", "rotation", "bilinear", "materialise")
	for _, p := range plan {
		ew.printf("  %-10s %-12s %10.2f %10.2f %12.2f\n", p.Layer, p.Algorithm, p.Rotation, p.Bilinear, p.Materialise)
	}
}

// chunks splits b into batches of at most n examples, views of b; n ≤ 0
// takes as many as ekfac.ChunkBytes of float64 values hold, as
// ekfac.FileSource does for 'goinfluence fit'.
func chunks(b *gradients.Batch, n int) []*gradients.Batch {
	if n <= 0 {
		n = ekfac.ChunkExamples(gradients.ExampleBytes(b.LayerInfos()))
	}
	var parts []*gradients.Batch
	for lo := 0; lo < b.N; lo += n {
		parts = append(parts, b.Slice(lo, min(lo+n, b.N)))
	}
	return parts
}

// step is one timed stage of EKFAC.
type step struct {
	name string
	fn   func() error
}

// fitSteps returns the stages of an EK-FAC fit over parts on be in
// precision prec: covariance, eigendecomposition and Λ, the last setting
// *f; their names end in suffix.
func fitSteps(be linalg.Backend, parts []*gradients.Batch, f **ekfac.Factors, prec ekfac.Precision, suffix string) []step {
	cov := ekfac.NewCovariance(be)
	cov.Precision = prec
	var eig *ekfac.Eigen
	return []step{
		{"covariance" + suffix, func() error {
			for _, p := range parts {
				if err := cov.Add(p); err != nil {
					return err
				}
			}
			return nil
		}},
		{"eigendecomposition" + suffix, func() (err error) { eig, err = cov.Eigen(); return err }},
		{"lambda (EK-FAC)" + suffix, func() error {
			lam, err := ekfac.NewLambda(ekfac.EKFAC, be, eig)
			if err != nil {
				return err
			}
			lam.Precision = prec
			for _, p := range parts {
				if err := lam.Add(p); err != nil {
					return err
				}
			}
			*f, err = lam.Factors()
			return err
		}},
	}
}

// runSteps runs the steps in order, each timed with be's GEMM and Eigh
// counters reset before it, and returns their timings with the GEMM rates
// as ratios to the yardsticks sgemm and dgemm (GFLOP/s). A CPU profile of
// the steps goes to prof when it is not nil.
func runSteps(ctx context.Context, be *countingBackend, steps []step, sgemm, dgemm float64, prof, progress io.Writer) ([]EKFACStage, error) {
	if prof != nil {
		if err := pprof.StartCPUProfile(prof); err != nil {
			return nil, fmt.Errorf("bench ekfac: CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var out []EKFACStage
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		be.reset()
		t0 := time.Now()
		if err := s.fn(); err != nil {
			return nil, fmt.Errorf("bench ekfac: %s: %w", s.name, err)
		}
		st := EKFACStage{Stage: s.name, Seconds: time.Since(t0).Seconds(),
			GemmGFLOP: be.flops / 1e9, GemmSecs: be.gemm.Seconds(), EighSecs: be.eigh.Seconds()}
		if st.GemmSecs > 0 {
			st.GemmRate = st.GemmGFLOP / st.GemmSecs
			st.RatioSgemm, st.RatioDgemm = st.GemmRate/sgemm, st.GemmRate/dgemm
		}
		out = append(out, st)
		fmt.Fprintf(progress, "%s: %.2f s\n", s.name, st.Seconds)
	}
	return out, nil
}

// withDefaults returns o with its zero fields set, or an error naming the
// first field out of range.
func (o EKFACOptions) withDefaults() (EKFACOptions, error) {
	switch o.Model {
	case "", ModelLayer:
		o.Model = ModelLayer
	case ModelMLP:
		if err := o.mlpDefaults(); err != nil {
			return o, err
		}
	default:
		return o, fmt.Errorf("bench ekfac: model %q, want %s or %s", o.Model, ModelLayer, ModelMLP)
	}
	for _, f := range []struct {
		name       string
		v          *int
		def, least int
	}{
		{"Dim", &o.Dim, 2048, 2},
		{"Tokens", &o.Tokens, 64, 1},
		{"Fit", &o.Fit, 32, 1},
		{"Queries", &o.Queries, 8, 1},
		{"Train", &o.Train, 32, 1},
		{"Chunk", &o.Chunk, 0, 0},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < f.least {
			return o, fmt.Errorf("bench ekfac: %s %d, want ≥ %d", f.name, *f.v, f.least)
		}
	}
	switch o.Precision {
	case "":
		o.Precision = PrecisionBoth
	case PrecisionF64, PrecisionF32, PrecisionBoth:
	default:
		return o, fmt.Errorf("bench ekfac: precision %q, want %s, %s or %s", o.Precision, PrecisionF64, PrecisionF32, PrecisionBoth)
	}
	if o.YardstickTime <= 0 {
		o.YardstickTime = time.Second
	}
	return o, nil
}

// WriteTable writes r as the table 'goinfluence bench ekfac' prints.
func (r *EKFACResult) WriteTable(w io.Writer) error {
	if r.Model == ModelMLP {
		return r.writeMLPTable(w)
	}
	ew := &errWriter{w: w}
	ew.printf("EK-FAC on a %d×%d layer, %d tokens/example: fit %d, score %d queries × %d training examples; backend %s, %d CPUs\n",
		r.Dim, r.Dim, r.Tokens, r.Fit, r.Queries, r.Train, r.Backend, r.CPUs)
	ew.printf("yardstick (same run, n=%d): Sgemm %.1f GFLOP/s, Dgemm %.1f GFLOP/s\n", r.Dim, r.Sgemm, r.Dgemm)
	ew.printf("%-20s %8s %10s %9s %10s %8s %8s %8s\n", "stage", "time s", "GEMM GFLOP", "GEMM s", "GEMM GF/s", "/Sgemm", "/Dgemm", "eigh s")
	for _, s := range r.Stages {
		ew.printf("%-20s %8.2f %10.1f %9.2f %10.1f %8.2f %8.2f %8.2f\n",
			s.Stage, s.Seconds, s.GemmGFLOP, s.GemmSecs, s.GemmRate, s.RatioSgemm, s.RatioDgemm, s.EighSecs)
	}
	ew.printf("fit and scoring precision %s\n", r.Precision)
	writePlan(ew, r.PlanF32)
	return ew.err
}

// countingBackend times a backend's GEMM-like calls and counts their flops.
type countingBackend struct {
	linalg.Backend
	mu    sync.Mutex
	flops float64
	gemm  time.Duration
	eigh  time.Duration
}

func (c *countingBackend) reset() {
	c.mu.Lock()
	c.flops, c.gemm, c.eigh = 0, 0, 0
	c.mu.Unlock()
}

// timeGemm runs fn, a product of m×k by k×n, and counts its time and flops.
func (c *countingBackend) timeGemm(m, n, k int, fn func()) {
	t0 := time.Now()
	fn()
	d := time.Since(t0)
	c.mu.Lock()
	c.flops += linalg.GemmFlops(m, n, k)
	c.gemm += d
	c.mu.Unlock()
}

// inner returns k of op(A) for A with r rows and cols columns.
func inner(t linalg.Transpose, r, cols int) int {
	if t {
		return r
	}
	return cols
}

func (c *countingBackend) Dgemm(tA, tB linalg.Transpose, alpha float64, a, b *linalg.Dense64, beta float64, cm *linalg.Dense64) {
	c.timeGemm(cm.Rows, cm.Cols, inner(tA, a.Rows, a.Cols), func() { c.Backend.Dgemm(tA, tB, alpha, a, b, beta, cm) })
}

func (c *countingBackend) Sgemm(tA, tB linalg.Transpose, alpha float32, a, b *linalg.Dense32, beta float32, cm *linalg.Dense32) {
	c.timeGemm(cm.Rows, cm.Cols, inner(tA, a.Rows, a.Cols), func() { c.Backend.Sgemm(tA, tB, alpha, a, b, beta, cm) })
}

// CovAccumulate counts the full product XᵀX, the work a GEMM would do.
func (c *countingBackend) CovAccumulate(cm *linalg.Dense64, x *linalg.Dense64) {
	c.timeGemm(x.Cols, x.Cols, x.Rows, func() { c.Backend.CovAccumulate(cm, x) })
}

func (c *countingBackend) CovAccumulate32(cm *linalg.Dense64, x *linalg.Dense32) {
	c.timeGemm(x.Cols, x.Cols, x.Rows, func() { c.Backend.CovAccumulate32(cm, x) })
}

func (c *countingBackend) Eigh(a *linalg.Dense64) ([]float64, *linalg.Dense64, error) {
	t0 := time.Now()
	w, v, err := c.Backend.Eigh(a)
	c.mu.Lock()
	c.eigh += time.Since(t0)
	c.mu.Unlock()
	return w, v, err
}
