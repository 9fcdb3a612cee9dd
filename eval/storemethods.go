package eval

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// Store-backed methods: the projected methods (TRAK-k, LoGra) computed the
// way a deployment computes them, through gradient stores on disk and
// influence.StoreScorer, rather than on the projected gradients in memory.
// Their f16 and i8 variants measure what the store's dtype costs in quality
// (DESIGN §11: the exact integer scoring of i8 stores must not lose LDS
// against f16); the Quality table compares each pair in StoreComparison.

// OverlapK is the number of most helpful training examples per query whose
// overlap StoreComparison reports.
const OverlapK = 10

// storeSkipSelf is why the store-backed methods give no AUC:
// self-influence would score every training example as a query against the
// stores, and the in-memory row of the same method measures it already.
const storeSkipSelf = "not measured through a store (self-influence of every training example); the in-memory row has it"

// storeTRAKRun is trakRun(k) through one store per model of the given dtype:
// the training gradients of the negative margin, projected with the seed
// per model of influence.TRAKOptions.SeedPerCheckpoint (which trakRun
// sets), stored with ids 0, 1, … in training order, and scored by
// influence.StoreTRAK with each model's p(y) of the training examples.
func storeTRAKRun(k int, dtype gradients.DType) func(context.Context, *Inputs, bool) (*MethodResult, error) {
	return func(ctx context.Context, in *Inputs, self bool) (*MethodResult, error) {
		if self {
			return nil, fmt.Errorf("%w: %s", ErrSkipped, storeSkipSelf)
		}
		if in.Queries == nil {
			return nil, fmt.Errorf("TRAK through a store: no queries")
		}
		ms, damping, err := in.trakEnsemble(ctx, k)
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "goinfluence-eval-store-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		var (
			stores  []*store.Store
			queries = make([]*gradients.Batch, len(ms))
			probs   = make([]map[int64]float64, len(ms))
			built   time.Duration
		)
		defer func() {
			for _, s := range stores {
				s.Close()
			}
		}()
		for c, m := range ms {
			spec := gradients.Projection{Kind: gradients.SJLT, K: in.Config.TRAKDim, Seed: in.Config.Seed + uint64(c)}
			train := models.OutputGradients(m, in.Train.X, in.Train.Y, models.Margin)
			s0 := time.Now()
			st, err := buildStore(ctx, in.Backend, filepath.Join(dir, fmt.Sprintf("model-%02d", c)), dtype, spec, train)
			if err != nil {
				return nil, fmt.Errorf("TRAK, model %d: %w", c, err)
			}
			built += time.Since(s0)
			stores = append(stores, st)
			queries[c] = models.OutputGradients(m, in.Queries.X, in.Queries.Y, in.Output)
			p := trueProbs(m, in.Train)
			probs[c] = make(map[int64]float64, len(p))
			for i, v := range p {
				probs[c][int64(i)] = v
			}
		}
		return storeScore(ctx, in, stores, influence.StoreTRAK{Damping: damping, Probs: probs}, queries, built)
	}
}

// storeLoGraRun is fittedRun(ekfac.EKFAC, true) through a store of the
// given dtype: EK-FAC factors fitted on the sampled-label gradients
// Kronecker-projected (k_in = k_out = Config.LoGraK) in memory, as
// fittedRun fits them, and the training gradients projected alike into the
// store, scored by influence.StoreFactors.
func storeLoGraRun(dtype gradients.DType) func(context.Context, *Inputs, bool) (*MethodResult, error) {
	return func(ctx context.Context, in *Inputs, self bool) (*MethodResult, error) {
		if self {
			return nil, fmt.Errorf("%w: %s", ErrSkipped, storeSkipSelf)
		}
		if in.Queries == nil {
			return nil, fmt.Errorf("LoGra through a store: no queries")
		}
		damp, err := in.Config.fittedDamping(in.Model)
		if err != nil {
			return nil, err
		}
		spec := gradients.Projection{Kind: gradients.Kronecker, KIn: in.Config.LoGraK, KOut: in.Config.LoGraK, Seed: in.Config.Seed}
		fit, err := spec.Apply(ctx, in.FitGradients())
		if err != nil {
			return nil, err
		}
		f, err := ekfac.Fit(ctx, ekfac.EKFAC, in.Backend, ekfac.BatchSource(fit), nil)
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "goinfluence-eval-store-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		s0 := time.Now()
		st, err := buildStore(ctx, in.Backend, filepath.Join(dir, "train"), dtype, spec, in.TrainGradients())
		if err != nil {
			return nil, err
		}
		defer st.Close()
		return storeScore(ctx, in, []*store.Store{st}, influence.StoreFactors{Factors: f, Damping: damp},
			[]*gradients.Batch{in.QueryGradients()}, time.Since(s0))
	}
}

// buildStore projects train with spec, as the in-memory methods project it
// (the backend computes projections bit for bit as the host does), and
// stores the projected rows in a new store of the dtype in dir with ids 0,
// 1, … in training order, so that the scores' columns are the training
// examples. The store is returned open.
func buildStore(ctx context.Context, be linalg.Backend, dir string, dtype gradients.DType, spec gradients.Projection, train *gradients.Batch) (*store.Store, error) {
	p, err := spec.ApplyWith(ctx, train, gradients.ApplyOptions{Backend: be})
	if err != nil {
		return nil, err
	}
	p.IDs = make([]int64, p.N)
	for i := range p.IDs {
		p.IDs[i] = int64(i)
	}
	layers := make([]store.LayerInfo, len(p.Layers))
	for i := range p.Layers {
		layers[i] = store.LayerInfo{Name: p.Layers[i].Name, Dim: p.Layers[i].Dim()}
	}
	b, err := store.Create(dir, store.Options{DType: dtype, Layers: layers, Projection: spec})
	if err != nil {
		return nil, err
	}
	if err := b.AddBatch(ctx, p); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.Close(); err != nil {
		return nil, err
	}
	return store.Open(dir)
}

// storeScore scores the full gradients queries[c] against stores[c] with
// the method, every score kept (FullScores), and returns them as the
// method's n_query × n_train matrix. The notes give the wall times of the
// store build (built) and of the scorer's open and score, and the kernel of
// an i8 store's integer sums.
func storeScore(ctx context.Context, in *Inputs, stores []*store.Store, m influence.StoreMethod, queries []*gradients.Batch, built time.Duration) (*MethodResult, error) {
	s0 := time.Now()
	sc, err := influence.OpenStoreScorer(ctx, in.Backend, influence.StoreScorerOptions{Stores: stores, Method: m, FullScores: true})
	if err != nil {
		return nil, err
	}
	opened := time.Since(s0)
	res, err := sc.Score(ctx, queries...)
	if err != nil {
		return nil, err
	}
	n := in.Train.Len()
	if res.Scores.Rows != in.Queries.Len() || res.Scores.Cols != n {
		return nil, fmt.Errorf("store scores %d×%d for %d queries and %d training examples", res.Scores.Rows, res.Scores.Cols, in.Queries.Len(), n)
	}
	for i, id := range res.IDs {
		if id != int64(i) {
			// Unreachable: the stores were built in training order.
			return nil, fmt.Errorf("store row %d holds id %d, want the training examples in order", i, id)
		}
	}
	out := &MethodResult{Scores: linalg.NewDense64(res.Scores.Rows, n, nil)}
	for i, v := range res.Scores.Data {
		out.Scores.Data[i] = float64(v)
	}
	note := fmt.Sprintf("%s store: build %.2f s, scorer open %.2f s, score %.2f s", strings.ToLower(string(stores[0].DType())), built.Seconds(), opened.Seconds(), res.Seconds)
	if res.Kernel != "" {
		note += ", int8 kernel " + res.Kernel
	}
	out.Notes = append(out.Notes, note)
	return out, nil
}

// TopOverlap returns, per query (row), the fraction of the k highest
// scores' columns of a that are among the k highest of b: |top_k(a) ∩
// top_k(b)| / k, the most helpful training examples by score descending,
// ties by column ascending (the ranking order of i8 stores, DESIGN §11).
// a and b must have the same shape; k is capped at the number of columns.
func TopOverlap(a, b *linalg.Dense64, k int) ([]float64, error) {
	if a.Rows != b.Rows || a.Cols != b.Cols {
		return nil, fmt.Errorf("eval: TopOverlap: scores %d×%d and %d×%d", a.Rows, a.Cols, b.Rows, b.Cols)
	}
	k = min(k, a.Cols)
	if k < 1 {
		return nil, fmt.Errorf("eval: TopOverlap: k = %d with %d columns", k, a.Cols)
	}
	out := make([]float64, a.Rows)
	for q := range out {
		ta, tb := topColumns(a.Row(q), k), topColumns(b.Row(q), k)
		n := 0
		for _, j := range ta {
			if slices.Contains(tb, j) {
				n++
			}
		}
		out[q] = float64(n) / float64(k)
	}
	return out, nil
}

// topColumns returns the columns of the k highest values of row, by value
// descending, ties by column ascending; a NaN ranks below every number.
func topColumns(row []float64, k int) []int {
	idx := make([]int, len(row))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int {
		a, b := row[i], row[j]
		switch {
		case math.IsNaN(a) != math.IsNaN(b):
			if math.IsNaN(a) {
				return 1
			}
			return -1
		case a > b:
			return -1
		case a < b:
			return 1
		}
		return cmp.Compare(i, j)
	})
	return idx[:k]
}
