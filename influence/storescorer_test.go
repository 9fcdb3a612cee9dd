package influence

import (
	"context"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// projectedStore stores train projected by spec, with ids 1000+3i, and
// returns the store and the projected rows.
func projectedStore(t *testing.T, train *gradients.Batch, spec gradients.Projection) (*store.Store, *gradients.Batch) {
	t.Helper()
	b := *train
	b.IDs = make([]int64, b.N)
	for i := range b.IDs {
		b.IDs[i] = 1000 + 3*int64(i)
	}
	p, err := spec.ApplyOrKeep(context.Background(), &b, gradients.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var layers []store.LayerInfo
	for _, l := range p.Layers {
		layers = append(layers, store.LayerInfo{Name: l.Name, Dim: l.Dim()})
	}
	s := buildStore(t, store.Options{DType: gradients.F32, ShardRows: 7, Layers: layers, Projection: spec}, func(bl *store.Builder) error {
		return bl.AddBatch(context.Background(), p)
	})
	return s, p
}

// dots returns a × bᵀ of two flattened batches or matrices.
func dots(a, b *linalg.Dense64) *linalg.Dense64 {
	out := linalg.NewDense64(a.Rows, b.Rows, nil)
	for i := range a.Rows {
		for j := range b.Rows {
			var s float64
			for k, v := range a.Row(i) {
				s += v * b.At(j, k)
			}
			out.Set(i, j, s)
		}
	}
	return out
}

// closeTo checks got (float32 scores) against want to a relative tolerance
// of the largest score.
func closeTo(t *testing.T, got *linalg.Dense32, want *linalg.Dense64, tol float64) {
	t.Helper()
	if got.Rows != want.Rows || got.Cols != want.Cols {
		t.Fatalf("scores %d×%d, want %d×%d", got.Rows, got.Cols, want.Rows, want.Cols)
	}
	var scale, worst float64
	for i, w := range want.Data {
		scale = max(scale, math.Abs(w))
		worst = max(worst, math.Abs(float64(got.Data[i])-w))
	}
	if worst > tol*scale {
		t.Fatalf("scores differ by %g, more than %g × %g", worst, tol, scale)
	}
}

func TestStoreScorer(t *testing.T) {
	ctx := context.Background()
	be := linalg.Default()
	rng := rand.New(rand.NewPCG(31, 7))
	const nq, nt = 4, 40
	spec := gradients.Projection{Kind: gradients.SJLT, K: 4, Seed: 3}
	train := []*gradients.Batch{randomBatch(rng, nt), randomBatch(rng, nt)}
	query := []*gradients.Batch{randomBatch(rng, nq), randomBatch(rng, nq)}
	var stores []*store.Store
	var ptrain, pquery []*gradients.Batch
	for c := range train {
		s, p := projectedStore(t, train[c], spec)
		q, err := spec.Apply(ctx, query[c])
		if err != nil {
			t.Fatal(err)
		}
		stores, ptrain, pquery = append(stores, s), append(ptrain, p), append(pquery, q)
	}
	probs := make([]float64, nt)
	byID := map[int64]float64{}
	for i := range probs {
		probs[i] = rng.Float64()
		byID[1000+3*int64(i)] = probs[i]
	}

	flatTrain := ptrain[0].Flatten()
	phiT := flatTrain.T()
	h := dots(phiT, phiT) // ΦᵀΦ
	for i := range h.Data {
		h.Data[i] /= nt
	}
	factors, err := ekfac.Fit(ctx, ekfac.Diagonal, be, ekfac.BatchSource(ptrain[0]), nil)
	if err != nil {
		t.Fatal(err)
	}
	fdamp := hessian.Damping{Value: 0.3}

	identity, err := NewAnalyzer(Identity()).Scores(ctx, pquery[0], ptrain[0])
	if err != nil {
		t.Fatal(err)
	}
	raw, err := (&Analyzer{Method: Exact(h, 0.5), Backend: be}).Scores(ctx, pquery[0], ptrain[0])
	if err != nil {
		t.Fatal(err)
	}
	pre, err := factors.Precondition(ctx, be, pquery[0], ekfac.ScoreOptions{Damping: fdamp})
	if err != nil {
		t.Fatal(err)
	}
	diag := dots(pre, flatTrain)
	cps := []Checkpoint{{Query: pquery[0], Train: ptrain[0], LR: 0.5, TrainProb: probs}, {Query: pquery[1], Train: ptrain[1], LR: 2, TrainProb: probs}}
	trak, err := TRAK(ctx, be, cps, TRAKOptions{Damping: hessian.Damping{Value: 0.7}})
	if err != nil {
		t.Fatal(err)
	}
	tracin, err := TracInCP(ctx, be, cps)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		stores int
		method StoreMethod
		want   *linalg.Dense64
		desc   string
	}{
		{"identity", 1, StoreIdentity{}, identity, "identity"},
		{"factors", 1, StoreFactors{Factors: factors, Damping: fdamp}, diag, "diagonal"},
		{"raw Hessian", 1, StoreRawHessian{Damping: hessian.Damping{Value: 0.5}}, raw, "raw projected Hessian, δ = 0.5"},
		{"trak", 2, StoreTRAK{Damping: hessian.Damping{Value: 0.7}, Probs: []map[int64]float64{byID, byID}}, trak, "trak, δ = 0.7,0.7"},
		{"tracin-cp", 2, StoreTracIn{LR: []float64{0.5, 2}}, tracin, "tracin-cp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := OpenStoreScorer(ctx, be, StoreScorerOptions{Stores: stores[:tc.stores], Method: tc.method, TopK: 3, FullScores: true})
			if err != nil {
				t.Fatal(err)
			}
			if sc.Method() != tc.desc {
				t.Errorf("Method() = %q, want %q", sc.Method(), tc.desc)
			}
			res, err := sc.Score(ctx, query[:tc.stores]...)
			if err != nil {
				t.Fatal(err)
			}
			closeTo(t, res.Scores, tc.want, 1e-4)
			// The rankings are those of the scores returned.
			full := linalg.NewDense64(nq, nt, nil)
			for i, v := range res.Scores.Data {
				full.Data[i] = float64(v)
			}
			want := TopK(full, 3)
			for q := range want {
				for _, list := range [][]Entry{want[q].Helpful, want[q].Harmful} {
					for i := range list {
						list[i].ID = res.IDs[list[i].Index]
					}
				}
			}
			if !reflect.DeepEqual(res.Rankings, want) || res.Rows != nt || res.IDs[1] != 1003 {
				t.Errorf("rankings\n%v\nwant\n%v", res.Rankings, want)
			}
		})
	}
}

func TestStoreScorerErrors(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 3))
	s, _ := projectedStore(t, randomBatch(rng, 10), gradients.Projection{Kind: gradients.Rademacher, K: 3, Seed: 1})
	s2, _ := projectedStore(t, randomBatch(rng, 11), gradients.Projection{})
	tests := []struct {
		name string
		opt  StoreScorerOptions
		want string
	}{
		{"no method", StoreScorerOptions{Stores: []*store.Store{s}}, "no method"},
		{"no stores", StoreScorerOptions{Method: StoreIdentity{}}, "no stores"},
		{"identity over checkpoints", StoreScorerOptions{Stores: []*store.Store{s, s}, Method: StoreIdentity{}}, "StoreTracIn"},
		{"stores of other rows", StoreScorerOptions{Stores: []*store.Store{s, s2}, Method: StoreTracIn{}}, "must hold the same examples"},
		{"trak without damping", StoreScorerOptions{Stores: []*store.Store{s}, Method: StoreTRAK{}}, "damping > 0"},
		{"tracin bad lr", StoreScorerOptions{Stores: []*store.Store{s}, Method: StoreTracIn{LR: []float64{-1}}}, "not a finite number ≥ 0"},
		{"unprojected factors", StoreScorerOptions{Stores: []*store.Store{s}, Method: StoreFactors{Factors: ekfac.IdentityFactors(randomBatch(rng, 2))}}, "projected as the store's rows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OpenStoreScorer(ctx, nil, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("OpenStoreScorer: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	sc, err := OpenStoreScorer(ctx, nil, StoreScorerOptions{Stores: []*store.Store{s}, Method: StoreIdentity{}, TopK: 2})
	if err != nil {
		t.Fatal(err)
	}
	other := randomBatch(rng, 2)
	other.Layers = other.Layers[1:]
	if _, err := sc.Score(ctx, other); err == nil || !strings.Contains(err.Error(), "2 layers, the store has 3") {
		t.Fatalf("Score of queries with other layers: %v", err)
	}
}

// TestStoreScorerConcurrent scores from several goroutines at once, each
// call with its own queries, and wants the results of sequential calls.
func TestStoreScorerConcurrent(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(8, 8))
	spec := gradients.Projection{Kind: gradients.Rademacher, K: 5, Seed: 2}
	s1, _ := projectedStore(t, randomBatch(rng, 30), spec)
	s2, _ := projectedStore(t, randomBatch(rng, 30), spec)
	sc, err := OpenStoreScorer(ctx, nil, StoreScorerOptions{Stores: []*store.Store{s1, s2}, Method: StoreTRAK{Damping: hessian.Damping{Heuristic: true}},
		TopK: 4, ChunkRows: 1, FullScores: true})
	if err != nil {
		t.Fatal(err)
	}
	const calls = 8
	queries := make([][]*gradients.Batch, calls)
	want := make([]*StoreResult, calls)
	for i := range queries {
		queries[i] = []*gradients.Batch{randomBatch(rng, 1+i%3), nil}
		queries[i][1] = randomBatch(rng, 1+i%3)
		if want[i], err = sc.Score(ctx, queries[i]...); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]*StoreResult, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = sc.Score(ctx, queries[i]...)
		}()
	}
	wg.Wait()
	for i := range calls {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !reflect.DeepEqual(got[i].Rankings, want[i].Rankings) || !reflect.DeepEqual(got[i].Scores, want[i].Scores) || !reflect.DeepEqual(got[i].IDs, want[i].IDs) {
			t.Errorf("call %d: concurrent results differ from sequential ones", i)
		}
	}
}
