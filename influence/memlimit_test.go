package influence

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// TestFactorScores holds FactorScores to the sum of the factors' per-layer
// scores, their rankings and the self-influence, each computed on its own.
func TestFactorScores(t *testing.T) {
	ctx := context.Background()
	be := linalg.Default()
	rng := rand.New(rand.NewPCG(5, 8))
	train, query := randomBatch(rng, 9), randomBatch(rng, 3)
	f, err := ekfac.Fit(ctx, ekfac.Diagonal, be, ekfac.BatchSource(train), nil)
	if err != nil {
		t.Fatal(err)
	}
	so := ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
	layers, err := f.LayerScores(ctx, be, query, train, so)
	if err != nil {
		t.Fatal(err)
	}
	total := linalg.NewDense64(query.N, train.N, nil)
	for _, l := range layers {
		for i, v := range l.Data {
			total.Data[i] += v
		}
	}
	self, err := f.SelfInfluence(ctx, be, train, so)
	if err != nil {
		t.Fatal(err)
	}
	file, err := FactorScores(ctx, be, f, query, train, FactorScoresOptions{ScoreOptions: so, TopK: 4, PerLayer: true, Self: true})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ToF32("scores", total)
	if !slices.Equal(file.Scores.Data, want.Data) {
		t.Errorf("scores %v, want %v", file.Scores.Data, want.Data)
	}
	if len(file.Layers) != len(train.Layers) || file.Layers[1].Name != "fc2" {
		t.Errorf("per-layer scores of %d layers, want %d named as train's", len(file.Layers), len(train.Layers))
	}
	if file.K != 4 || len(file.Rankings) != query.N || !slices.Equal(file.Rankings[2].Harmful, TopK(total, 4)[2].Harmful) {
		t.Errorf("rankings (K = %d) differ from TopK", file.K)
	}
	if !slices.Equal(file.Self, self) {
		t.Errorf("self-influence %v, want %v", file.Self, self)
	}
	// ScoresF64 keeps the float64 sums and layers as computed.
	file64, err := FactorScores(ctx, be, f, query, train, FactorScoresOptions{ScoreOptions: so, PerLayer: true, DType: ScoresF64})
	if err != nil {
		t.Fatal(err)
	}
	if file64.DType != ScoresF64 || file64.Scores != nil || !slices.Equal(file64.Scores64.Data, total.Data) {
		t.Errorf("F64 scores %v, want %v", file64.Scores64, total)
	}
	if file64.Layers[1].Scores != nil || !slices.Equal(file64.Layers[1].Scores64.Data, layers[1].Data) {
		t.Errorf("F64 layer scores %v, want %v", file64.Layers[1].Scores64, layers[1])
	}
	selfOnly, err := FactorScores(ctx, be, f, nil, train, FactorScoresOptions{ScoreOptions: so, Self: true})
	if err != nil || selfOnly.Scores != nil || !slices.Equal(selfOnly.Self, self) {
		t.Errorf("self-influence alone: %v", err)
	}
	for _, bad := range []FactorScoresOptions{{}, {TopK: -1, Self: true}, {Self: true, DType: 2}} {
		q := query
		if bad.TopK == 0 {
			q = nil
		}
		if _, err := FactorScores(ctx, be, f, q, train, bad); err == nil {
			t.Errorf("FactorScores(%+v) succeeded", bad)
		}
	}
}

// TestScoreMemoryLimits holds the scoring calls to refusing, before
// allocating, outputs sized from their inputs that are over their
// MemoryLimit, with a *linalg.MemoryError naming what and its size.
func TestScoreMemoryLimits(t *testing.T) {
	ctx := context.Background()
	be := linalg.Default()
	rng := rand.New(rand.NewPCG(9, 1))
	train, query := randomBatch(rng, 20), randomBatch(rng, 5)
	f := ekfac.IdentityFactors(train)
	s, _ := projectedStore(t, train, gradients.Projection{Kind: gradients.Rademacher, K: 3, Seed: 1})
	storeScore := func(topk int, full bool) func(int64) error {
		return func(limit int64) error {
			sc, err := OpenStoreScorer(ctx, be, StoreScorerOptions{Stores: []*store.Store{s}, Method: StoreIdentity{}, TopK: topk, FullScores: full, MemoryLimit: limit})
			if err != nil {
				return err
			}
			_, err = sc.Score(ctx, query)
			return err
		}
	}
	for _, tc := range []struct {
		name  string
		call  func(limit int64) error
		limit int64
		want  string
	}{
		// 5 × 20 float64 summed, float32 copy, 3 layers, 4 × 5 × 2 rankings.
		{"FactorScores", func(l int64) error {
			_, err := FactorScores(ctx, be, f, query, train, FactorScoresOptions{ScoreOptions: ekfac.ScoreOptions{MemoryLimit: l}, TopK: 2})
			return err
		}, 3000, "scores needs 3.83 KiB (5 queries × 20 training examples, 3 layers), over the memory limit of 2.93 KiB"},
		{"StoreScorer rankings", storeScore(20, false), 4000, "top-k rankings needs 4.69 KiB (5 queries × 20, both sides), over the memory limit of 3.91 KiB"},
		{"StoreScorer full scores", storeScore(1, true), 500, "full scores needs 560 B (5 queries × 20 rows, float32), over the memory limit of 500 B"},
		{"StoreScorer projected queries", storeScore(1, false), 200, "flattened gradient needs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(tc.limit)
			var me *linalg.MemoryError
			if !errors.As(err, &me) || me.Limit != tc.limit || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("limit %d: %v, want a *linalg.MemoryError containing %q", tc.limit, err, tc.want)
			}
			if err := tc.call(linalg.NoMemoryLimit); err != nil {
				t.Errorf("without a limit: %v", err)
			}
		})
	}
}

// TestStoreScorerMetadata holds Metadata to what each method's scores
// files record about it.
func TestStoreScorerMetadata(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(4, 4))
	spec := gradients.Projection{Kind: gradients.Rademacher, K: 3, Seed: 7}
	s, p := projectedStore(t, randomBatch(rng, 12), spec)
	for _, tc := range []struct {
		name   string
		stores []*store.Store
		method StoreMethod
		want   map[string]string
	}{
		{"identity", []*store.Store{s}, StoreIdentity{}, map[string]string{"method": "identity", "damping": "none", "topk": "5", "store_count": "12", "store_dtype": "f32"}},
		{"factors", []*store.Store{s}, StoreFactors{Factors: ekfac.IdentityFactors(p), Damping: hessian.Damping{Value: 0.5}},
			map[string]string{"method": "identity", "damping": "0.5"}},
		{"raw", []*store.Store{s}, StoreRawHessian{Damping: hessian.Damping{Heuristic: true}}, map[string]string{"damping": "heuristic"}},
		{"tracin", []*store.Store{s, s}, StoreTracIn{LR: []float64{0.5, 0.25}},
			map[string]string{"method": "tracin-cp", "lr": "0.5,0.25", "store": s.Dir() + "," + s.Dir(), "damping": "none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := OpenStoreScorer(ctx, nil, StoreScorerOptions{Stores: tc.stores, Method: tc.method, TopK: 5})
			if err != nil {
				t.Fatal(err)
			}
			meta := sc.Metadata()
			want := map[string]string{"projection": spec.String(), "projection_kind": "rademacher", "projection_seed": "7", "sign": SignNote}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				if meta[k] != v {
					t.Errorf("%s = %q, want %q", k, meta[k], v)
				}
			}
		})
	}
}
