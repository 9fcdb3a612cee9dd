package influence

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// Checkpoint is the gradients of one model checkpoint: Query and Train are
// per-example gradients (any layers, flattened in order), LR the learning
// rate η_c at that checkpoint (TracIn), and TrainProb p(y_t) of the true
// label for each training example (TRAK's Q_t = 1 − p).
type Checkpoint struct {
	Query, Train *gradients.Batch
	LR           float64
	TrainProb    []float64
}

// MaxTRAKDim bounds the gradient dimension k that TRAK forms a k × k matrix
// for; larger gradients must be projected first (TRAKOptions.Projection).
const MaxTRAKDim = 1 << 13

// TracInCP returns Σ_c η_c ⟨g_c(q), g_c(t)⟩ (n_query × n_train), the
// TracIn-CP scores of every query against every training example. The zero
// backend means linalg.Auto's choice. TrainProb is not used. A score that is NaN
// or ±Inf is a *NonFiniteError naming the query and the training example.
func TracInCP(ctx context.Context, be linalg.Backend, cps []Checkpoint) (*linalg.Dense64, error) {
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, fmt.Errorf("influence: TracInCP: %w", err)
	}
	nq, nt, err := checkCheckpoints(cps, false)
	if err != nil {
		return nil, fmt.Errorf("influence: TracInCP: %w", err)
	}
	if err := checkLR(cps); err != nil {
		return nil, fmt.Errorf("influence: TracInCP: %w", err)
	}
	out := linalg.NewDense64(nq, nt, nil)
	an := &Analyzer{Method: Identity(), Backend: be}
	for c := range cps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := an.Scores(ctx, cps[c].Query, cps[c].Train)
		if err != nil {
			return nil, fmt.Errorf("influence: TracInCP: checkpoint %d: %w", c, err)
		}
		lr := cps[c].LR
		for i, v := range s.Data {
			out.Data[i] += lr * v
		}
	}
	if err := CheckFinite(out, cps[0].Train.IDs); err != nil {
		return nil, fmt.Errorf("influence: TracInCP: %w", err)
	}
	return out, nil
}

// TracInCPSelf returns Σ_c η_c ‖g_c(t)‖², the TracIn-CP self-influence of
// every training example (Query and TrainProb are not used). A value that is
// NaN or ±Inf is a *NonFiniteError naming the example.
func TracInCPSelf(ctx context.Context, cps []Checkpoint) ([]float64, error) {
	if len(cps) == 0 || cps[0].Train == nil {
		return nil, fmt.Errorf("influence: TracInCPSelf: no checkpoints with training gradients")
	}
	if err := checkLR(cps); err != nil {
		return nil, fmt.Errorf("influence: TracInCPSelf: %w", err)
	}
	self := make([]float64, cps[0].Train.N)
	for c, cp := range cps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if cp.Train == nil || cp.Train.N != len(self) {
			return nil, fmt.Errorf("influence: TracInCPSelf: checkpoint %d has no training gradients for the %d examples of checkpoint 0", c, len(self))
		}
		for i, v := range squaredNorms(cp.Train) {
			self[i] += cp.LR * v
		}
	}
	if err := CheckFiniteSelf(self, cps[0].Train.IDs); err != nil {
		return nil, fmt.Errorf("influence: TracInCPSelf: %w", err)
	}
	return self, nil
}

// checkLR checks the checkpoints' learning rates: finite and ≥ 0.
func checkLR(cps []Checkpoint) error {
	for c := range cps {
		if lr := cps[c].LR; math.IsNaN(lr) || math.IsInf(lr, 0) || lr < 0 {
			return fmt.Errorf("checkpoint %d: learning rate %v must be finite and ≥ 0", c, lr)
		}
	}
	return nil
}

// checkQueries names the first query, and its column, holding a NaN or an
// infinity.
func checkQueries(q *linalg.Dense64) error {
	for i := range q.Rows {
		for j, v := range q.Row(i) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("query %d: %w: %v at column %d", i, linalg.ErrNotFinite, v, j)
			}
		}
	}
	return nil
}

// squaredNorms returns ‖G_n‖²_F summed over layers for every example:
// Σ_{t,u} (s_tᵀs_u)(a_tᵀa_u) for factored layers, without forming G_n.
func squaredNorms(b *gradients.Batch) []float64 {
	out := make([]float64, b.N)
	for li := range b.Layers {
		l := &b.Layers[li]
		if !l.Factored() {
			for n := range out {
				for _, v := range l.Grad[n*l.D : (n+1)*l.D] {
					out[n] += v * v
				}
			}
			continue
		}
		for n := range out {
			a, s := l.Acts(n), l.Outs(n)
			for t := 0; t < l.Tokens; t++ {
				for u := 0; u < l.Tokens; u++ {
					out[n] += floats.Dot(s.Row(t), s.Row(u)) * floats.Dot(a.Row(t), a.Row(u))
				}
			}
		}
	}
	return out
}

// TRAKOptions configures TRAK.
type TRAKOptions struct {
	// Damping is the δ added to ΦᵀΦ per checkpoint: a value, or the
	// heuristic 0.1·trace(ΦᵀΦ)/k. The zero value is δ = 0, which TRAK
	// refuses: ΦᵀΦ is singular whenever k exceeds the training examples.
	Damping hessian.Damping
	// Projection is applied to the query and training gradients of every
	// checkpoint before scoring (a dense kind such as Rademacher with K).
	// Kind 0 uses the gradients as they are.
	Projection gradients.Projection
	// SeedPerCheckpoint projects checkpoint c with seed Projection.Seed+c
	// instead of the same seed for all checkpoints.
	SeedPerCheckpoint bool
}

// TRAK returns the TRAK scores (n_query × n_train)
//
//	(1/C) Σ_c φ_q,c (Φ_cᵀΦ_c + δI)⁻¹ Φ_cᵀ,
//
// with Φ_c the n_train × k matrix of (projected) training gradients of
// checkpoint c and φ_q,c the query's, each column t multiplied by the mean
// over checkpoints of Q_t = 1 − p_c(y_t). ΦᵀΦ is not normalised by the number
// of training examples. The zero backend means linalg.Auto's choice. LR is not
// used. A score that is NaN or ±Inf is a *NonFiniteError naming the query
// and the training example.
func TRAK(ctx context.Context, be linalg.Backend, cps []Checkpoint, opt TRAKOptions) (*linalg.Dense64, error) {
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, fmt.Errorf("influence: TRAK: %w", err)
	}
	nq, nt, err := checkCheckpoints(cps, true)
	if err != nil {
		return nil, fmt.Errorf("influence: TRAK: %w", err)
	}
	if err := opt.Damping.Check(true); err != nil {
		return nil, fmt.Errorf("influence: TRAK: %w", err)
	}
	out := linalg.NewDense64(nq, nt, nil)
	for c := range cps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := trakCheckpoint(ctx, be, &cps[c], c, opt, out); err != nil {
			return nil, fmt.Errorf("influence: TRAK: checkpoint %d: %w", c, err)
		}
	}
	// Mean over checkpoints of the scores and of Q_t.
	q := make([]float64, nt)
	for c := range cps {
		for t, p := range cps[c].TrainProb {
			q[t] += 1 - p
		}
	}
	inv := 1 / float64(len(cps))
	for i := 0; i < nq; i++ {
		row := out.Row(i)
		for t := range row {
			row[t] *= inv * (q[t] * inv)
		}
	}
	if err := CheckFinite(out, cps[0].Train.IDs); err != nil {
		return nil, fmt.Errorf("influence: TRAK: %w", err)
	}
	return out, nil
}

// trakCheckpoint adds φ_q (ΦᵀΦ + δI)⁻¹ Φᵀ of checkpoint c to out.
func trakCheckpoint(ctx context.Context, be linalg.Backend, cp *Checkpoint, c int, opt TRAKOptions, out *linalg.Dense64) error {
	query, train := cp.Query, cp.Train
	if opt.Projection.Kind != 0 {
		p := opt.Projection
		if opt.SeedPerCheckpoint {
			p.Seed += uint64(c)
		}
		var err error
		if query, err = p.ApplyWith(ctx, query, gradients.ApplyOptions{Backend: be}); err != nil {
			return fmt.Errorf("projecting query gradients: %w", err)
		}
		if train, err = p.ApplyWith(ctx, train, gradients.ApplyOptions{Backend: be}); err != nil {
			return fmt.Errorf("projecting training gradients: %w", err)
		}
	}
	k := train.Dim()
	if k > MaxTRAKDim {
		return fmt.Errorf("gradient dimension %d exceeds %d; set TRAKOptions.Projection", k, MaxTRAKDim)
	}
	phi := train.Flatten()
	h := linalg.NewDense64(k, k, nil)
	be.CovAccumulate(h, phi)
	damping := RawDamping(h, opt.Damping)
	if err := ctx.Err(); err != nil {
		return err
	}
	// P = φ_q (ΦᵀΦ + δI)⁻¹ (the Hessian is symmetric), then P Φᵀ.
	pq, err := Exact(h, damping).Precondition(ctx, be, query)
	if err != nil {
		return err
	}
	be.Dgemm(linalg.NoTrans, linalg.Trans, 1, pq, phi, 1, out)
	return nil
}

// checkCheckpoints validates cps and returns the numbers of query and
// training examples, which all checkpoints must share. With probs it also
// checks TrainProb.
func checkCheckpoints(cps []Checkpoint, probs bool) (nq, nt int, err error) {
	if len(cps) == 0 {
		return 0, 0, fmt.Errorf("no checkpoints")
	}
	for c := range cps {
		cp := &cps[c]
		if cp.Query == nil || cp.Train == nil {
			return 0, 0, fmt.Errorf("checkpoint %d: missing query or training gradients", c)
		}
		if cp.Query.N < 1 || cp.Train.N < 1 {
			return 0, 0, fmt.Errorf("checkpoint %d: %d query and %d training examples, want at least one of each", c, cp.Query.N, cp.Train.N)
		}
		if c == 0 {
			nq, nt = cp.Query.N, cp.Train.N
		} else if cp.Query.N != nq || cp.Train.N != nt {
			return 0, 0, fmt.Errorf("checkpoint %d has %d query and %d training examples, checkpoint 0 has %d and %d", c, cp.Query.N, cp.Train.N, nq, nt)
		}
		if err := compatible(cp.Query, cp.Train); err != nil {
			return 0, 0, fmt.Errorf("checkpoint %d: %w", c, err)
		}
		if err := cp.Query.Validate(); err != nil {
			return 0, 0, fmt.Errorf("checkpoint %d: query gradients: %w", c, err)
		}
		if err := cp.Train.Validate(); err != nil {
			return 0, 0, fmt.Errorf("checkpoint %d: training gradients: %w", c, err)
		}
		if !probs {
			continue
		}
		if len(cp.TrainProb) != cp.Train.N {
			return 0, 0, fmt.Errorf("checkpoint %d: %d training probabilities for %d training examples", c, len(cp.TrainProb), cp.Train.N)
		}
		for t, p := range cp.TrainProb {
			if !(p >= 0 && p <= 1) {
				return 0, 0, fmt.Errorf("checkpoint %d: training example %d: probability %v of the true label is not in [0, 1]", c, t, p)
			}
		}
	}
	return nq, nt, nil
}

// TRAKQueries returns one checkpoint's queries for StreamCheckpoints:
// φ_q (ΦᵀΦ + δI)⁻¹, with Φ the rows of the store s (the checkpoint's
// projected training gradients) and query the queries projected as the
// store's rows (n_query × k). ΦᵀΦ is accumulated over the store as
// ProjectedHessian does, in one pass. damping is δ or the heuristic
// 0.1·trace(ΦᵀΦ)/k, and the δ used is returned. Together with TRAKWeights,
// StreamCheckpoints then gives the scores of TRAK over the stores' rows.
func TRAKQueries(ctx context.Context, be linalg.Backend, s *store.Store, query *linalg.Dense64, damping hessian.Damping, chunkRows int) (*linalg.Dense64, float64, error) {
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, 0, fmt.Errorf("influence: TRAKQueries: %w", err)
	}
	k := s.Dim()
	switch {
	case query.Cols != k:
		return nil, 0, fmt.Errorf("influence: TRAKQueries: queries have dimension %d, the store %s %d", query.Cols, s.Dir(), k)
	case k > MaxTRAKDim:
		return nil, 0, fmt.Errorf("influence: TRAKQueries: the store %s has dimension %d, more than %d: build it with a projection", s.Dir(), k, MaxTRAKDim)
	case damping.Check(false) != nil:
		return nil, 0, fmt.Errorf("influence: TRAKQueries: %w", damping.Check(false))
	}
	if err := checkQueries(query); err != nil {
		return nil, 0, fmt.Errorf("influence: TRAKQueries: %w", err)
	}
	a, delta, err := trakSystem(ctx, be, s, damping, chunkRows)
	if err != nil {
		return nil, 0, err
	}
	x, err := trakSolve(be, s, a, delta, query)
	return x, delta, err
}

// trakSystem returns ΦᵀΦ + δI over the rows of s, and δ (d resolved
// against ΦᵀΦ): the one pass over the store of TRAK.
func trakSystem(ctx context.Context, be linalg.Backend, s *store.Store, d hessian.Damping, chunkRows int) (*linalg.Dense64, float64, error) {
	h, err := ProjectedHessian(ctx, be, s, chunkRows)
	if err != nil {
		return nil, 0, err
	}
	n := float64(s.Count())
	for i := range h.Data {
		h.Data[i] *= n // ΦᵀΦ, as TRAK forms it: not normalised
	}
	damping := RawDamping(h, d)
	for i := range h.Rows {
		h.Data[i*h.Stride+i] += damping
	}
	return h, damping, nil
}

// trakSolve returns query (ΦᵀΦ + δI)⁻¹ for the matrix a of trakSystem,
// which it does not modify.
func trakSolve(be linalg.Backend, s *store.Store, a *linalg.Dense64, damping float64, query *linalg.Dense64) (*linalg.Dense64, error) {
	x := query.T()
	if err := be.CholeskySolve(a, x); err != nil {
		return nil, fmt.Errorf("influence: TRAKQueries: ΦᵀΦ + %g·I of %s: %w (increase the damping)", damping, s.Dir(), err)
	}
	return x.T(), nil
}

// TRAKWeights returns the column weights that turn the sum over checkpoints
// of StreamCheckpoints into TRAK's scores: (1/C)·mean_c(1 − p_c(y_t)), from
// probs[c][t] = p_c(y_t), the probability checkpoint c gives training
// example t's true label.
func TRAKWeights(probs [][]float64) ([]float32, error) {
	if len(probs) == 0 {
		return nil, fmt.Errorf("influence: TRAKWeights: no checkpoints")
	}
	nt := len(probs[0])
	sum := make([]float64, nt)
	for c, p := range probs {
		if len(p) != nt {
			return nil, fmt.Errorf("influence: TRAKWeights: checkpoint %d has %d probabilities, checkpoint 0 has %d", c, len(p), nt)
		}
		for t, v := range p {
			if !(v >= 0 && v <= 1) {
				return nil, fmt.Errorf("influence: TRAKWeights: checkpoint %d: training example %d: probability %v of the true label is not in [0, 1]", c, t, v)
			}
			sum[t] += 1 - v
		}
	}
	inv := 1 / float64(len(probs))
	w := make([]float32, nt)
	for t, v := range sum {
		w[t] = float32(inv * (v * inv))
	}
	return w, nil
}
