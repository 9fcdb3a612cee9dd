package influence

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
	"github.com/goinfluence/goinfluence/quant"
)

// StoreMethod is how a StoreScorer preconditions queries before scoring
// them against stored rows: StoreIdentity, StoreFactors, StoreRawHessian,
// StoreTRAK or StoreTracIn. There is no default: scores without the
// preconditioner a caller meant are plain dot products that look like
// influence scores, so the choice is made, explicitly, at open.
type StoreMethod interface {
	storeMethod()
}

// StoreIdentity scores plain dot products ⟨g(q), φ(t)⟩ against one store:
// gradient similarity, or TracIn at one checkpoint.
type StoreIdentity struct{}

// StoreFactors preconditions the queries of one store with K-FAC, EK-FAC
// or diagonal factors fitted on gradients projected as the store's rows
// ('goinfluence fit' on the output of 'goinfluence project' with the
// store's projection).
type StoreFactors struct {
	Factors *ekfac.Factors
	Damping hessian.Damping
	// MemoryLimit bounds the preconditioned queries, as
	// ekfac.ScoreOptions.MemoryLimit.
	MemoryLimit int64
	// Precision of the queries' rotations (ekfac.ScoreOptions.Precision);
	// the rows of the store are scored as their dtype asks either way.
	Precision ekfac.Precision
}

// StoreRawHessian preconditions each store's queries with (H + δI)⁻¹,
// H = (1/N) ΦᵀΦ over the store's N rows Φ: the curvature of the projected
// gradients themselves. H is accumulated at open, one pass per store.
type StoreRawHessian struct {
	// Damping δ, or the heuristic 0.1·trace(H)/k.
	Damping hessian.Damping
}

// StoreTRAK scores TRAK over one store per checkpoint: each store's queries
// times (ΦᵀΦ + δI)⁻¹, summed over the stores and weighted per row by the
// mean of 1 − p(y_t) (see TRAKWeights). ΦᵀΦ is accumulated at open, one
// pass per store.
type StoreTRAK struct {
	// Damping δ > 0, or the heuristic 0.1·trace(ΦᵀΦ)/k.
	Damping hessian.Damping
	// Probs holds, per store, p(y_t) of each stored row's true label by
	// id (ReadProbs). Nil weighs every row 1/C for C stores.
	Probs []map[int64]float64
}

// StoreTracIn scores TracIn-CP over one store per checkpoint:
// Σ_c η_c ⟨g_c(q), φ_c(t)⟩.
type StoreTracIn struct {
	// LR holds the learning rate η_c of each checkpoint; nil means 1 each.
	LR []float64
}

func (StoreIdentity) storeMethod()   {}
func (StoreFactors) storeMethod()    {}
func (StoreRawHessian) storeMethod() {}
func (StoreTRAK) storeMethod()       {}
func (StoreTracIn) storeMethod()     {}

// StoreScorerOptions configure OpenStoreScorer.
type StoreScorerOptions struct {
	// Stores holds one store, or one per model checkpoint holding the same
	// ids in the same order (StoreTRAK, StoreTracIn, StoreRawHessian). They
	// stay open and belong to the caller.
	Stores []*store.Store
	// Method is the preconditioner; required.
	Method StoreMethod
	// TopK is the number of most helpful and most harmful rows kept per
	// query.
	TopK int
	// ChunkRows is the number of store rows read at a time (see
	// StreamOptions); results do not depend on it.
	ChunkRows int
	// FullScores also returns every score, n_query × rows, in
	// StoreResult.Scores: 4 bytes a score, held in memory.
	FullScores bool
	// MemoryLimit bounds, in bytes, the buffers of each Score sized from
	// the queries and the stores: the projected queries, the rankings and,
	// with FullScores, the score matrix. 0 means
	// linalg.DefaultMemoryLimit(), a negative value no limit (see
	// linalg.CheckMemory). StoreFactors has its own, for the
	// preconditioned queries.
	MemoryLimit int64
	// Progress, when set, is told of the stages of OpenStoreScorer that
	// read a whole store.
	Progress progress.Func
}

// StoreScorer scores query gradients against the rows of one or more
// stores. Opening it does the work that does not depend on the queries:
// checking the stores against each other and, for StoreRawHessian and
// StoreTRAK, the pass over each store that accumulates its curvature.
// Each Score then projects its queries the way each store's rows were
// built, preconditions them, streams the stores and ranks the rows.
//
// A StoreScorer is safe for concurrent use, given a backend that is (the
// cuda backend serialises device work; CholeskySolve does not modify its
// matrix): it is not modified after OpenStoreScorer, stores may be read
// from several goroutines, and Score keeps all of its state per call, so
// that a service can open it once and score requests from several
// goroutines with the results of sequential calls. It does not close the
// stores.
type StoreScorer struct {
	be      linalg.Backend
	stores  []*store.Store
	method  StoreMethod
	name    string
	systems []*linalg.Dense64 // per store: H + δI (raw) or ΦᵀΦ + δI (TRAK)
	deltas  []float64
	lrs     []float64
	weights []float32 // TRAK's per-row weights
	opt     StoreScorerOptions
}

// OpenStoreScorer checks the stores and the method and prepares the
// scoring. A nil backend means linalg.Auto()'s choice; a forced backend
// that cannot open is the error.
func OpenStoreScorer(ctx context.Context, be linalg.Backend, opt StoreScorerOptions) (*StoreScorer, error) {
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, fmt.Errorf("influence: OpenStoreScorer: %w", err)
	}
	s := &StoreScorer{be: be, stores: opt.Stores, method: opt.Method, opt: opt}
	if err := s.open(ctx); err != nil {
		return nil, fmt.Errorf("influence: OpenStoreScorer: %w", err)
	}
	return s, nil
}

func (s *StoreScorer) open(ctx context.Context) error {
	nc := len(s.stores)
	switch {
	case nc == 0:
		return errors.New("no stores")
	case s.method == nil:
		return errors.New("no method: choose StoreIdentity, StoreFactors, StoreRawHessian, StoreTRAK or StoreTracIn")
	case s.opt.TopK < 0:
		return fmt.Errorf("top-k %d < 0", s.opt.TopK)
	}
	for c, st := range s.stores {
		if st == nil {
			return fmt.Errorf("store %d is nil", c)
		}
		if c > 0 && st.Count() != s.stores[0].Count() {
			return fmt.Errorf("%s holds %d rows, %s %d: the stores of the checkpoints must hold the same examples",
				st.Dir(), st.Count(), s.stores[0].Dir(), s.stores[0].Count())
		}
	}
	progress := func(format string, args ...any) {
		s.opt.Progress.Report(fmt.Sprintf(format, args...), 0, 0)
	}
	switch m := s.method.(type) {
	case StoreIdentity:
		if nc > 1 {
			return fmt.Errorf("StoreIdentity takes one store, not %d: StoreTracIn sums over checkpoints", nc)
		}
		s.name = "identity"
	case StoreFactors:
		if nc > 1 {
			return fmt.Errorf("StoreFactors takes one store, not %d", nc)
		}
		if m.Factors == nil {
			return errors.New("StoreFactors without factors")
		}
		if err := factorsFit(m.Factors, s.stores[0]); err != nil {
			return err
		}
		s.name = string(m.Factors.Method)
	case StoreRawHessian:
		for _, st := range s.stores {
			progress("raw projected Hessian of %s (one pass)", st.Dir())
			h, err := ProjectedHessian(ctx, s.be, st, s.opt.ChunkRows)
			if err != nil {
				return err
			}
			delta := RawDamping(h, m.Damping)
			if delta < 0 || math.IsNaN(delta) || math.IsInf(delta, 0) {
				return fmt.Errorf("damping %v must be finite and ≥ 0", delta)
			}
			for i, v := range h.Data {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return fmt.Errorf("raw projected Hessian of %s: element (%d, %d) is %v", st.Dir(), i/h.Stride, i%h.Stride, v)
				}
			}
			for i := range h.Rows {
				h.Data[i*h.Stride+i] += delta
			}
			s.systems = append(s.systems, h)
			s.deltas = append(s.deltas, delta)
		}
		s.name = "raw projected Hessian"
	case StoreTRAK:
		if err := m.Damping.Check(true); err != nil {
			return fmt.Errorf("TRAK needs damping > 0 or the heuristic: %w", err)
		}
		if m.Probs != nil && len(m.Probs) != nc {
			return fmt.Errorf("TRAK: %d sets of probabilities for %d stores", len(m.Probs), nc)
		}
		for _, st := range s.stores {
			progress("TRAK, ΦᵀΦ of %s (one pass)", st.Dir())
			if st.Dim() > MaxTRAKDim {
				return fmt.Errorf("the store %s has dimension %d, more than %d: build it with a projection", st.Dir(), st.Dim(), MaxTRAKDim)
			}
			a, delta, err := trakSystem(ctx, s.be, st, m.Damping, s.opt.ChunkRows)
			if err != nil {
				return err
			}
			s.systems = append(s.systems, a)
			s.deltas = append(s.deltas, delta)
		}
		w, err := s.trakWeights(ctx, m.Probs)
		if err != nil {
			return err
		}
		s.weights = w
		s.name = "trak"
	case StoreTracIn:
		s.lrs = m.LR
		if s.lrs == nil {
			s.lrs = make([]float64, nc)
			for c := range s.lrs {
				s.lrs[c] = 1
			}
		}
		if len(s.lrs) != nc {
			return fmt.Errorf("TracIn: %d learning rates for %d stores", len(s.lrs), nc)
		}
		for c, lr := range s.lrs {
			if !(lr >= 0) || math.IsInf(lr, 0) {
				return fmt.Errorf("TracIn: learning rate %v of store %d is not a finite number ≥ 0", lr, c)
			}
		}
		s.name = "tracin-cp"
	default:
		return fmt.Errorf("unknown method %T", s.method)
	}
	if len(s.deltas) > 0 {
		ds := make([]string, len(s.deltas))
		for c, d := range s.deltas {
			ds[c] = fmt.Sprintf("%g", d)
		}
		s.name += ", δ = " + strings.Join(ds, ",")
	}
	return nil
}

// factorsFit checks that factors were fitted on gradients of the store's
// layers as stored (projected as the store's rows).
func factorsFit(f *ekfac.Factors, st *store.Store) error {
	layers := st.Layers()
	if len(f.Layers) != len(layers) {
		return fmt.Errorf("the factors have %d layers, the store %s %d", len(f.Layers), st.Dir(), len(layers))
	}
	for i, l := range f.Layers {
		d := l.D
		if l.DIn > 0 || l.DOut > 0 {
			d = l.DIn * l.DOut
		}
		if l.Name != layers[i].Name || d != layers[i].Dim {
			return fmt.Errorf("the factors' layer %d is %q of dimension %d, the store %s's is %q of %d: factors must be fitted on gradients projected as the store's rows",
				i, l.Name, d, st.Dir(), layers[i].Name, layers[i].Dim)
		}
	}
	return nil
}

// trakWeights returns TRAK's row weights: from the probabilities, matched
// to each store's rows by id, or 1/C each without them.
func (s *StoreScorer) trakWeights(ctx context.Context, probs []map[int64]float64) ([]float32, error) {
	count := s.stores[0].Count()
	if probs == nil {
		w := make([]float32, count)
		for i := range w {
			w[i] = float32(1 / float64(len(s.stores)))
		}
		return w, nil
	}
	ps := make([][]float64, len(s.stores))
	for c, st := range s.stores {
		ids, err := st.IDs(ctx)
		if err != nil {
			return nil, err
		}
		p := make([]float64, count)
		for i, id := range ids {
			v, ok := probs[c][id]
			if !ok {
				return nil, fmt.Errorf("TRAK: the probabilities of store %d have none for id %d of %s", c, id, st.Dir())
			}
			p[i] = v
		}
		ps[c] = p
	}
	return TRAKWeights(ps)
}

// Method describes the preconditioning, with the damping used per store
// where there is one: "identity", "ekfac", "raw projected Hessian, δ = …",
// "trak, δ = …,…" or "tracin-cp".
func (s *StoreScorer) Method() string { return s.name }

// SignNote is the sign convention, as scores files record it in their
// "sign" metadata.
const SignNote = "positive = helpful: removing a training example raises the query loss by about score/N"

// Metadata returns what a scores file of this scorer's results records
// about how they were made: the stores (directories joined by commas, row
// count, dtype, projection), the method and its damping ("none" without
// one), the learning rates of StoreTracIn, K, the backend, the sign
// convention and what the rankings' indices are. Callers add what only
// they know, such as the paths of the queries and factors.
func (s *StoreScorer) Metadata() map[string]string {
	dirs := make([]string, len(s.stores))
	for c, st := range s.stores {
		dirs[c] = st.Dir()
	}
	m := s.stores[0].Manifest()
	meta := map[string]string{
		"store":           strings.Join(dirs, ","),
		"store_count":     strconv.Itoa(m.Count),
		"store_dtype":     strings.ToLower(string(m.DType)),
		"method":          s.name,
		"damping":         "none",
		"projection":      m.Projection.String(),
		"projection_kind": m.Projection.Kind.String(),
		"projection_seed": strconv.FormatInt(int64(m.Projection.Seed), 10),
		"backend":         s.be.Name(),
		"sign":            SignNote,
		"indices":         "topk.indices and bottomk.indices are store row indices; topk.ids and bottomk.ids the stored ids",
		"topk":            strconv.Itoa(min(s.opt.TopK, m.Count)),
	}
	switch meth := s.method.(type) {
	case StoreFactors:
		meta["damping"] = meth.Damping.String()
	case StoreRawHessian:
		meta["damping"] = meth.Damping.String()
	case StoreTRAK:
		meta["damping"] = meth.Damping.String()
	}
	if m.DType == gradients.I8 {
		meta["quantisation"] = quant.Version
		meta["ranking_order"] = "score descending, ties by id ascending; topk.isums and bottomk.isums are the exact integer sums (DESIGN §11)"
	}
	if s.lrs != nil {
		meta["lr"] = strings.Trim(strings.Join(strings.Fields(fmt.Sprint(s.lrs)), ","), "[]")
	}
	return meta
}

// Stores returns the stores scored, in order.
func (s *StoreScorer) Stores() []*store.Store { return s.stores }

// LR returns the learning rates of StoreTracIn, nil for other methods.
func (s *StoreScorer) LR() []float64 { return s.lrs }

// StoreResult is the outcome of StoreScorer.Score.
type StoreResult struct {
	// Rankings holds, per query, the TopK most helpful and most harmful
	// store rows; Entry.Index is the row and Entry.ID its id.
	Rankings []Ranking
	Rows     int     // store rows scored
	Seconds  float64 // wall time of the call
	// Kernel names what computed the exact integer sums of i8 stores
	// (StreamResult.Kernel); empty for float scores.
	Kernel string
	// Quantized holds, for i8 stores, each store's queries as they were
	// scored (StreamResult.Quantized); nil for float scores.
	Quantized []*QuantizedQueries
	// With FullScores: every score (n_query × Rows) and the rows' ids.
	Scores *linalg.Dense32
	IDs    []int64
}

// Score scores queries against the stores: queries[c] holds the query
// examples' full (unprojected) gradients at store c's checkpoint, with the
// layers of the gradients the store was built from; every queries[c] holds
// the same examples. Each is projected as store c's rows were, then
// preconditioned by the method. Score may be called from several
// goroutines at once.
func (s *StoreScorer) Score(ctx context.Context, queries ...*gradients.Batch) (*StoreResult, error) {
	res, err := s.score(ctx, queries)
	if err != nil {
		return nil, fmt.Errorf("influence: StoreScorer.Score: %w", err)
	}
	return res, nil
}

func (s *StoreScorer) score(ctx context.Context, queries []*gradients.Batch) (*StoreResult, error) {
	start := time.Now()
	if len(queries) != len(s.stores) {
		return nil, fmt.Errorf("%d query batches for %d stores: give one per store", len(queries), len(s.stores))
	}
	pre := make([]*linalg.Dense32, len(s.stores))
	for c, st := range s.stores {
		q, err := s.precondition(ctx, c, queries[c])
		if err != nil {
			return nil, err
		}
		if q.Cols != st.Dim() {
			// Unreachable after CheckInput; kept so that a mismatch is an
			// error and not a wrong answer.
			return nil, fmt.Errorf("%s: query rows of dimension %d, the store's are %d", st.Dir(), q.Cols, st.Dim())
		}
		if c > 0 && q.Rows != pre[0].Rows {
			return nil, fmt.Errorf("%d queries for %s, %d for %s: the queries of every store must be the same examples",
				q.Rows, st.Dir(), pre[0].Rows, s.stores[0].Dir())
		}
		pre[c] = q.To32()
	}
	nq, count := pre[0].Rows, s.stores[0].Count()
	if err := checkStoreScoreMemory(nq, count, s.opt.TopK, s.opt.FullScores, s.opt.MemoryLimit); err != nil {
		return nil, err
	}
	opt := StreamOptions{TopK: s.opt.TopK, ChunkRows: s.opt.ChunkRows, Weights: s.weights}
	out := &StoreResult{}
	if s.opt.FullScores {
		if count > 0 && nq > math.MaxInt/4/count {
			return nil, fmt.Errorf("%d × %d scores do not fit in memory", nq, count)
		}
		out.Scores = linalg.NewDense32(nq, count, nil)
		out.IDs = make([]int64, count)
		// Blocks cover disjoint columns, so this is safe even if the
		// callback were called concurrently.
		opt.Scores = func(offset int, ids []int64, block *linalg.Dense32) error {
			if offset < 0 || offset+len(ids) > count || block.Rows != nq || block.Cols != len(ids) {
				return fmt.Errorf("score block %d×%d for rows [%d, %d) of %d queries × %d rows",
					block.Rows, block.Cols, offset, offset+len(ids), nq, count)
			}
			for q := range nq {
				copy(out.Scores.Row(q)[offset:offset+len(ids)], block.Row(q))
			}
			copy(out.IDs[offset:], ids)
			return nil
		}
	}
	res, err := StreamCheckpoints(ctx, s.be, pre, s.stores, opt)
	if err != nil {
		return nil, err
	}
	if res.Rows != count || len(res.Rankings) != nq {
		return nil, fmt.Errorf("%s: scored %d rows for %d queries, want %d rows for %d", s.stores[0].Dir(), res.Rows, len(res.Rankings), count, nq)
	}
	out.Rankings, out.Rows, out.Kernel, out.Quantized = res.Rankings, res.Rows, res.Kernel, res.Quantized
	out.Seconds = time.Since(start).Seconds()
	return out, nil
}

// precondition checks store c's queries against the store, projects them
// as its rows and applies the method.
func (s *StoreScorer) precondition(ctx context.Context, c int, q *gradients.Batch) (*linalg.Dense64, error) {
	st := s.stores[c]
	if q == nil {
		return nil, fmt.Errorf("no queries for %s", st.Dir())
	}
	m := st.Manifest()
	if err := m.CheckInput(q.LayerInfos()); err != nil {
		return nil, fmt.Errorf("queries against %s: %w", st.Dir(), err)
	}
	p, err := m.Projection.ApplyOrKeep(ctx, q, gradients.ApplyOptions{Backend: s.be, MemoryLimit: s.opt.MemoryLimit})
	if err != nil {
		return nil, fmt.Errorf("queries for %s: %w", st.Dir(), err)
	}
	switch meth := s.method.(type) {
	case StoreFactors:
		out, err := meth.Factors.Precondition(ctx, s.be, p, ekfac.ScoreOptions{Damping: meth.Damping, MemoryLimit: meth.MemoryLimit, Precision: meth.Precision})
		if err != nil {
			return nil, fmt.Errorf("queries (projected as %s) with the factors: %w", st.Dir(), err)
		}
		return out, nil
	case StoreRawHessian:
		x := p.Flatten().T()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.be.CholeskySolve(s.systems[c], x); err != nil {
			return nil, fmt.Errorf("raw projected Hessian of %s: H + %g·I: %w (increase the damping)", st.Dir(), s.deltas[c], err)
		}
		return x.T(), nil
	case StoreTRAK:
		flat := p.Flatten()
		if err := checkQueries(flat); err != nil {
			return nil, fmt.Errorf("TRAK: %w", err)
		}
		return trakSolve(s.be, st, s.systems[c], s.deltas[c], flat)
	case StoreTracIn:
		flat := p.Flatten()
		for i := range flat.Data {
			flat.Data[i] *= s.lrs[c]
		}
		return flat, nil
	}
	return p.Flatten(), nil // StoreIdentity
}

// checkStoreScoreMemory refuses the buffers of a Score sized from the
// number of queries and stored rows: the top-k rankings (ids, indices and
// scores of both sides) and, with full scores, the float32 score matrix
// with its ids.
func checkStoreScoreMemory(nq, count, topk int, full bool, limit int64) error {
	k := min(topk, count)
	if err := linalg.CheckMemory("top-k rankings", fmt.Sprintf("%d queries × %d, both sides", nq, k),
		linalg.Float64Bytes(6, nq, k), limit); err != nil {
		return err
	}
	if !full {
		return nil
	}
	need := linalg.AddBytes(linalg.Float64Bytes(nq, count)/2, linalg.Float64Bytes(count))
	return linalg.CheckMemory("full scores", fmt.Sprintf("%d queries × %d rows, float32", nq, count), need, limit)
}
