package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

// EKFACFloors are the MLP case's floors computed from the layer shapes
// alone (issue 15): the least GEMM work a pairwise scoring and a fit can
// do, and that work at the yardsticks' rates, next to the measured times.
// d_in counts the bias column.
type EKFACFloors struct {
	// Pairwise: 2·Q·N·Σ_layers d_out·d_in, the products of the queries'
	// preconditioned gradients with the training gradients.
	PairwiseGFLOP     float64 `json:"pairwise_gflop"`
	PairwiseSgemmSecs float64 `json:"pairwise_sgemm_seconds"`
	PairwiseDgemmSecs float64 `json:"pairwise_dgemm_seconds"`
	PairwiseSecs      float64 `json:"pairwise_seconds"` // the f64 scoring stage's time (0 if not run)
	PairwiseRatio     float64 `json:"pairwise_ratio"`   // PairwiseSecs / PairwiseSgemmSecs; goal ≤ 1.25
	// The f32 scoring stage's time and its ratio to the Sgemm floor, the
	// issue's goal (≤ 1.25); absent if it did not run.
	PairwiseF32Secs  float64 `json:"pairwise_f32_seconds,omitempty"`
	PairwiseF32Ratio float64 `json:"pairwise_f32_ratio,omitempty"`

	// Fit: covariances 2·F·Σ(d_in² + d_out²) (full products), the Λ pass's
	// rotations as much again, and its per-example outer products
	// 2·F·Σ d_out·d_in, for F fit examples.
	FitGFLOP     float64 `json:"fit_gemm_gflop"`
	FitSgemmSecs float64 `json:"fit_sgemm_seconds"`
	FitDgemmSecs float64 `json:"fit_dgemm_seconds"`
	EighSecs     float64 `json:"eigh_seconds"` // measured, not a floor
	FitSecs      float64 `json:"fit_seconds"`  // covariance + eigendecomposition + Λ
	FitGoalSecs  float64 `json:"fit_goal_seconds"`
	FitRatio     float64 `json:"fit_ratio"` // FitSecs / (FitSgemmSecs + EighSecs)
	// The f32 fit's time (stages ending in " (f32)"), its eigendecompositions
	// and its ratio to the same floor; absent if it did not run.
	FitF32Secs     float64 `json:"fit_f32_seconds,omitempty"`
	EighF32Secs    float64 `json:"eigh_f32_seconds,omitempty"`
	FitF32Ratio    float64 `json:"fit_f32_ratio,omitempty"`
	FitF32GoalSecs float64 `json:"fit_f32_goal_seconds,omitempty"`
}

// pairwiseStage names the MLP case's scoring stage.
const pairwiseStage = "pairwise scores"

// Defaults of the MLP case, issue 15's sizes.
var mlpWidths = []int{784, 512, 512, 10}

const (
	mlpTrain   = 5000
	mlpQueries = 500
)

// mlpDefaults sets the MLP case's zero fields and checks the widths; the
// sizes it shares with the one-layer case are checked by withDefaults.
func (o *EKFACOptions) mlpDefaults() error {
	if o.Layers == nil {
		o.Layers = mlpWidths
	}
	if len(o.Layers) < 2 {
		return fmt.Errorf("bench ekfac: mlp of %d widths, want ≥ 2 (input and output)", len(o.Layers))
	}
	for i, w := range o.Layers {
		if w < 1 {
			return fmt.Errorf("bench ekfac: mlp width %d is %d, want ≥ 1", i, w)
		}
	}
	if o.Train == 0 {
		o.Train = mlpTrain
	}
	if o.Fit == 0 && o.Train > 0 { // a bad Train is refused by name
		o.Fit = o.Train
	}
	if o.Queries == 0 {
		o.Queries = mlpQueries
	}
	if o.Tokens == 0 {
		o.Tokens = 1
	}
	return nil
}

// ekfacMLP is EKFAC's MLP case. The per-example gradients are those of an
// MLP with biases and ReLU, weights drawn He-normal from a fixed seed: a
// forward pass of normal inputs, labels sampled from the model's softmax,
// and the cross-entropy's output gradients backpropagated. They are kept
// factored, activations (with the bias's ones column) and output gradients
// per layer without a token axis, never flattened: 5,000 flattened
// 784-512-512-10 gradients would be 27 GB.
//
// Stages: the covariance pass, the eigendecompositions (Eigh timed apart)
// and the Λ pass over the fit set in chunks of Chunk examples, as 'goinfluence
// fit' does; then pairwise scores of the queries against the training
// examples through influence.FactorScores, the path of 'goinfluence score',
// which takes training examples a chunk at a time so that memory is bounded;
// in float64, float32 (ekfac.F32, whose per-layer plan is recorded) or both,
// as o.Precision asks.
// Each stage's GEMM flops are counted around the backend and set against
// the yardsticks (floor = flops / rate); Floors adds the floors issue 15
// states from the shapes.
func ekfacMLP(ctx context.Context, o EKFACOptions) (*EKFACResult, error) {
	progress := writerOrDiscard(o.Progress)
	raw, err := linalg.OrAuto(o.Backend)
	if err != nil {
		return nil, fmt.Errorf("bench ekfac: %w", err)
	}
	res := &EKFACResult{Machine: ThisMachine(), Backend: raw.Name(), Model: ModelMLP, Layers: o.Layers,
		Dim: o.Dim, Tokens: 1, Fit: o.Fit, Queries: o.Queries, Train: o.Train,
		Precision: o.Precision}

	fmt.Fprintf(progress, "measuring %s Sgemm and Dgemm at n=%d\n", raw.Name(), o.Dim)
	res.Sgemm = linalg.MeasureGemm(raw, o.Dim, false, o.YardstickTime)
	res.Dgemm = linalg.MeasureGemm(raw, o.Dim, true, o.YardstickTime)

	pool := max(o.Fit, o.Train)
	fmt.Fprintf(progress, "generating the gradients of %d examples of an MLP %s\n", pool+o.Queries, widthsString(o.Layers))
	all := mlpGradients(raw, o.Layers, pool+o.Queries, rand.New(rand.NewPCG(1, 2)))
	fit, tr, q := all.Slice(0, o.Fit), all.Slice(0, o.Train), all.Slice(pool, pool+o.Queries)

	be := &countingBackend{Backend: raw}
	var f, f32 *ekfac.Factors
	sopt := influence.FactorScoresOptions{ScoreOptions: ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}}}
	steps := o.fits(be, chunks(fit, o.Chunk), &f, &f32)
	if o.withF64() {
		steps = append(steps, step{pairwiseStage, func() error { _, err := influence.FactorScores(ctx, be, f, q, tr, sopt); return err }})
	}
	if o.withF32() {
		s32 := sopt
		s32.Precision = ekfac.F32
		steps = append(steps, step{pairwiseStage + f32Suffix, func() error { _, err := influence.FactorScores(ctx, be, f32, q, tr, s32); return err }})
	}
	if res.Stages, err = runSteps(ctx, be, steps, res.Sgemm, res.Dgemm, o.CPUProfile, progress); err != nil {
		return nil, err
	}
	if o.withF32() {
		res.PlanF32 = planF32(f32, q, tr, ekfac.ScoreOptions{Precision: ekfac.F32})
	}
	res.PeakRSS = kbField("/proc/self/status", "VmHWM")

	fl := &EKFACFloors{}
	var outer, square float64 // Σ d_out·d_in and Σ (d_in² + d_out²)
	for i := range o.Layers[1:] {
		din, dout := float64(o.Layers[i]+1), float64(o.Layers[i+1])
		outer += dout * din
		square += din*din + dout*dout
	}
	fl.PairwiseGFLOP = 2 * float64(o.Queries) * float64(o.Train) * outer / 1e9
	fl.FitGFLOP = 2 * float64(o.Fit) * (2*square + outer) / 1e9
	fl.PairwiseSgemmSecs, fl.PairwiseDgemmSecs = fl.PairwiseGFLOP/res.Sgemm, fl.PairwiseGFLOP/res.Dgemm
	fl.FitSgemmSecs, fl.FitDgemmSecs = fl.FitGFLOP/res.Sgemm, fl.FitGFLOP/res.Dgemm
	for i := range res.Stages {
		s := &res.Stages[i]
		s.FloorSgemm, s.FloorDgemm = s.GemmGFLOP/res.Sgemm, s.GemmGFLOP/res.Dgemm
		s.RatioFloorSgemm = s.Seconds / (s.FloorSgemm + s.EighSecs)
		s.RatioFloorDgemm = s.Seconds / (s.FloorDgemm + s.EighSecs)
		switch s.Stage {
		case pairwiseStage:
			fl.PairwiseSecs = s.Seconds
		case pairwiseStage + f32Suffix:
			fl.PairwiseF32Secs = s.Seconds
		default:
			if strings.HasSuffix(s.Stage, f32Suffix) {
				fl.FitF32Secs += s.Seconds
				fl.EighF32Secs += s.EighSecs
			} else {
				fl.FitSecs += s.Seconds
				fl.EighSecs += s.EighSecs
			}
		}
	}
	if fl.FitF32Secs > 0 {
		fl.FitF32GoalSecs = 2*fl.FitSgemmSecs + fl.EighF32Secs
		fl.FitF32Ratio = fl.FitF32Secs / (fl.FitSgemmSecs + fl.EighF32Secs)
	}
	fl.PairwiseRatio = fl.PairwiseSecs / fl.PairwiseSgemmSecs
	fl.PairwiseF32Ratio = fl.PairwiseF32Secs / fl.PairwiseSgemmSecs
	fl.FitGoalSecs = 2*fl.FitSgemmSecs + fl.EighSecs
	fl.FitRatio = fl.FitSecs / (fl.FitSgemmSecs + fl.EighSecs)
	res.Floors = fl
	return res, nil
}

// mlpGradients returns the factored per-example gradients of n examples of
// an MLP with the given widths (input first), biases and ReLU between
// layers: layer l's activations are its input with a ones column appended
// (n × (w_l + 1)) and its output gradients ∂L/∂(pre-activation)
// (n × w_{l+1}), L the cross-entropy of a label sampled from the model.
// The forward and backward products run on be.
func mlpGradients(be linalg.Backend, widths []int, n int, rng *rand.Rand) *gradients.Batch {
	nl := len(widths) - 1
	ws := make([]*linalg.Dense64, nl)
	for l := range ws {
		ws[l] = linalg.NewDense64(widths[l+1], widths[l]+1, nil)
		sd := math.Sqrt(2 / float64(widths[l]+1))
		for i := range ws[l].Data {
			ws[l].Data[i] = sd * rng.NormFloat64()
		}
	}
	acts := make([]*linalg.Dense64, nl) // inputs of each layer, ones column last
	pres := make([]*linalg.Dense64, nl) // pre-activations
	acts[0] = linalg.NewDense64(n, widths[0]+1, nil)
	for i := 0; i < n; i++ {
		row := acts[0].Row(i)
		for j := range widths[0] {
			row[j] = rng.NormFloat64()
		}
		row[widths[0]] = 1
	}
	for l := range nl {
		pres[l] = linalg.NewDense64(n, widths[l+1], nil)
		be.Dgemm(linalg.NoTrans, linalg.Trans, 1, acts[l], ws[l], 0, pres[l])
		if l+1 < nl {
			acts[l+1] = linalg.NewDense64(n, widths[l+1]+1, nil)
			for i := 0; i < n; i++ {
				row := acts[l+1].Row(i)
				for j, v := range pres[l].Row(i) {
					row[j] = max(v, 0)
				}
				row[widths[l+1]] = 1
			}
		}
	}
	outs := make([]*linalg.Dense64, nl)
	outs[nl-1] = softmaxGrad(pres[nl-1], rng)
	for l := nl - 1; l > 0; l-- {
		back := linalg.NewDense64(n, widths[l]+1, nil)
		be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, outs[l], ws[l], 0, back)
		outs[l-1] = linalg.NewDense64(n, widths[l], nil)
		for i := 0; i < n; i++ {
			row, pre := outs[l-1].Row(i), pres[l-1].Row(i)
			for j, v := range back.Row(i)[:widths[l]] {
				if pre[j] > 0 {
					row[j] = v
				}
			}
		}
	}
	b := &gradients.Batch{N: n}
	for l := range nl {
		b.Layers = append(b.Layers, gradients.Layer{Name: "fc" + strconv.Itoa(l+1),
			DIn: widths[l] + 1, DOut: widths[l+1], Tokens: 1, A: acts[l].Data, S: outs[l].Data})
	}
	return b
}

// softmaxGrad returns, row by row, softmax(z) − e_y with y drawn from
// softmax(z): the cross-entropy's gradient in the logits for a label
// sampled from the model.
func softmaxGrad(z *linalg.Dense64, rng *rand.Rand) *linalg.Dense64 {
	g := linalg.NewDense64(z.Rows, z.Cols, nil)
	for i := 0; i < z.Rows; i++ {
		row, p := z.Row(i), g.Row(i)
		top := math.Inf(-1)
		for _, v := range row {
			top = max(top, v)
		}
		var sum float64
		for j, v := range row {
			p[j] = math.Exp(v - top)
			sum += p[j]
		}
		u, y := rng.Float64(), len(p)-1
		for j := range p {
			p[j] /= sum
			if u -= p[j]; u < 0 && y == len(p)-1 {
				y = j
			}
		}
		p[y]--
	}
	return g
}

// widthsString writes widths as 784-512-512-10.
func widthsString(widths []int) string {
	s := make([]string, len(widths))
	for i, w := range widths {
		s[i] = strconv.Itoa(w)
	}
	return strings.Join(s, "-")
}

// writeMLPTable is WriteTable for the MLP case.
func (r *EKFACResult) writeMLPTable(w io.Writer) error {
	ew := &errWriter{w: w}
	params := 0
	for i := range r.Layers[1:] {
		params += (r.Layers[i] + 1) * r.Layers[i+1]
	}
	fl := r.Floors
	ew.printf("EK-FAC on an MLP %s with biases (%d parameters), no token axis: fit %d, pairwise scores %d queries × %d training examples; backend %s, %d CPUs\n",
		widthsString(r.Layers), params, r.Fit, r.Queries, r.Train, r.Backend, r.CPUs)
	ew.printf("yardstick (same run, n=%d): Sgemm %.1f GFLOP/s, Dgemm %.1f GFLOP/s; floor = the stage's GEMM flops at that rate (+ eigh time)\n", r.Dim, r.Sgemm, r.Dgemm)
	ew.printf("%-21s %8s %10s %8s %9s %8s %8s %8s %8s %8s\n",
		"stage", "time s", "GEMM GFLOP", "GEMM s", "GEMM GF/s", "eigh s", "floor S", "×floor S", "floor D", "×floor D")
	row := func(name string, secs, gflop, gemm, rate, eigh, fs, rs, fd, rd float64) {
		ew.printf("%-21s %8.2f %10.1f %8.2f %9.1f %8.2f %8.2f %8.2f %8.2f %8.2f\n", name, secs, gflop, gemm, rate, eigh, fs, rs, fd, rd)
	}
	for _, s := range r.Stages {
		row(s.Stage, s.Seconds, s.GemmGFLOP, s.GemmSecs, s.GemmRate, s.EighSecs, s.FloorSgemm, s.RatioFloorSgemm, s.FloorDgemm, s.RatioFloorDgemm)
	}
	ew.printf("issue 15 floors, from the shapes (d_in counts the bias):\n")
	ew.printf("  pairwise 2·Q·N·Σ d_out·d_in = %.1f GFLOP: %.2f s at Sgemm, %.2f s at Dgemm (goal ≤ 1.25 × the Sgemm floor)\n",
		fl.PairwiseGFLOP, fl.PairwiseSgemmSecs, fl.PairwiseDgemmSecs)
	if fl.PairwiseSecs > 0 {
		ew.printf("    f64 scoring took %.2f s = %.2f × the Sgemm floor\n", fl.PairwiseSecs, fl.PairwiseRatio)
	}
	if fl.PairwiseF32Secs > 0 {
		ew.printf("    f32 scoring took %.2f s = %.2f × the Sgemm floor\n", fl.PairwiseF32Secs, fl.PairwiseF32Ratio)
	}
	ew.printf("  fit GEMMs (covariances, rotations, outer products) = %.1f GFLOP: %.2f s at Sgemm, %.2f s at Dgemm; eigh %.2f s\n",
		fl.FitGFLOP, fl.FitSgemmSecs, fl.FitDgemmSecs, fl.EighSecs)
	ew.printf("  fit took %.2f s = %.2f × (Sgemm floor + eigh); goal ≤ 2 × floor + eigh = %.2f s\n", fl.FitSecs, fl.FitRatio, fl.FitGoalSecs)
	if fl.FitF32Secs > 0 {
		ew.printf("  f32 fit took %.2f s = %.2f × (Sgemm floor + eigh); goal ≤ 2 × floor + eigh = %.2f s\n", fl.FitF32Secs, fl.FitF32Ratio, fl.FitF32GoalSecs)
	}
	ew.printf("  fit and scoring precision %s\n", r.Precision)
	writePlan(ew, r.PlanF32)
	ew.printf("peak RSS %.2f GiB (VmHWM, whole run)\n", float64(r.PeakRSS)/(1<<30))
	return ew.err
}
