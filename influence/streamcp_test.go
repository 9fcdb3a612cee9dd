package influence

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// batchStore writes the flattened gradients of b to a new store, ids
// 1000+3i.
func batchStore(t *testing.T, b *gradients.Batch, dt gradients.DType, shardRows int) *store.Store {
	t.Helper()
	var layers []store.LayerInfo
	for _, l := range b.Layers {
		layers = append(layers, store.LayerInfo{Name: l.Name, Dim: l.Dim()})
	}
	withIDs := *b
	withIDs.IDs = make([]int64, b.N)
	for i := range withIDs.IDs {
		withIDs.IDs[i] = 1000 + 3*int64(i)
	}
	return buildStore(t, store.Options{DType: dt, ShardRows: shardRows, Layers: layers}, func(bl *store.Builder) error {
		return bl.AddBatch(context.Background(), &withIDs)
	})
}

// TestStreamTRAK holds TRAK streamed over one store per checkpoint
// (TRAKQueries, TRAKWeights, StreamCheckpoints) to the in-memory TRAK, and
// TracIn-CP streamed (queries times η_c) to TracInCP, with checkpoints of
// different shard sizes; every chunk size gives the same bits.
func TestStreamTRAK(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(21, 5))
	const nq, nt = 5, 2500 // three Sgemm blocks, the last one short
	cps := randomCheckpoints(rng, 3, nq, nt)
	for _, be := range streamBackends(t) {
		stores := make([]*store.Store, len(cps))
		trakQ := make([]*linalg.Dense32, len(cps))
		tracQ := make([]*linalg.Dense32, len(cps))
		probs := make([][]float64, len(cps))
		for c, cp := range cps {
			stores[c] = batchStore(t, cp.Train, gradients.F32, []int{700, 4096, 1}[c%2])
			q, _, err := TRAKQueries(ctx, be, stores[c], cp.Query.Flatten(), hessian.Damping{Heuristic: true}, 1024)
			if err != nil {
				t.Fatal(err)
			}
			trakQ[c] = q.To32()
			g := cp.Query.Flatten()
			for i := range g.Data {
				g.Data[i] *= cp.LR
			}
			tracQ[c] = g.To32()
			probs[c] = cp.TrainProb
		}
		w, err := TRAKWeights(probs)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name    string
			queries []*linalg.Dense32
			weights []float32
			want    func() (*linalg.Dense64, error)
		}{
			{"TRAK", trakQ, w, func() (*linalg.Dense64, error) {
				return TRAK(ctx, be, cps, TRAKOptions{Damping: hessian.Damping{Heuristic: true}})
			}},
			{"TracIn-CP", tracQ, nil, func() (*linalg.Dense64, error) { return TracInCP(ctx, be, cps) }},
		} {
			want, err := tc.want()
			if err != nil {
				t.Fatal(err)
			}
			var first *collected
			for _, chunk := range []int{1, 2048, 0} {
				got, cb := collect(t, nq, nt)
				res, err := StreamCheckpoints(ctx, be, tc.queries, stores, StreamOptions{TopK: 7, ChunkRows: chunk, Weights: tc.weights, Scores: cb})
				if err != nil {
					t.Fatalf("%s %s chunk %d: %v", be.Name(), tc.name, chunk, err)
				}
				if first == nil {
					first = got
					var maxAbs, maxErr float64
					for i, v := range want.Data {
						maxAbs = max(maxAbs, math.Abs(v))
						maxErr = max(maxErr, math.Abs(float64(got.scores.Data[i])-v))
					}
					if maxErr > 1e-5*maxAbs {
						t.Fatalf("%s %s: streamed scores differ from the in-memory ones by %g (largest score %g)", be.Name(), tc.name, maxErr, maxAbs)
					}
					full := linalg.NewDense64(nq, nt, nil)
					for i, v := range got.scores.Data {
						full.Data[i] = float64(v)
					}
					for i, r := range TopK(full, 7) {
						for j, e := range r.Helpful {
							if g := res.Rankings[i].Helpful[j]; g.Index != e.Index || g.ID != 1000+3*int64(e.Index) {
								t.Fatalf("%s %s: query %d helpful %d is row %d (id %d), want %d", be.Name(), tc.name, i, j, g.Index, g.ID, e.Index)
							}
						}
					}
				} else if i, ok := sameBits(got.scores.Data, first.scores.Data); !ok {
					t.Fatalf("%s %s: chunk %d changes score %d", be.Name(), tc.name, chunk, i)
				}
			}
		}
	}
}

func TestStreamCheckpointsErrors(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(8, 9))
	a := randomBatch(rng, 30)
	sa := batchStore(t, a, gradients.F16, 7)
	sb := batchStore(t, randomBatch(rng, 31), gradients.F32, 0)
	// Same count as sa, other ids.
	c := randomBatch(rng, 30)
	c.IDs = make([]int64, 30)
	for i := range c.IDs {
		c.IDs[i] = int64(i)
	}
	var layers []store.LayerInfo
	for _, l := range c.Layers {
		layers = append(layers, store.LayerInfo{Name: l.Name, Dim: l.Dim()})
	}
	sc := buildStore(t, store.Options{DType: gradients.F32, Layers: layers}, func(bl *store.Builder) error {
		return bl.AddBatch(ctx, c)
	})

	q := testQueries(2, a.Dim(), 3)
	for _, tc := range []struct {
		name    string
		queries []*linalg.Dense32
		stores  []*store.Store
		opt     StreamOptions
		message string
	}{
		{"count", []*linalg.Dense32{q, q}, []*store.Store{sa, sb}, StreamOptions{}, "has 31 rows"},
		{"ids", []*linalg.Dense32{q, q}, []*store.Store{sa, sc}, StreamOptions{}, "has id 0"},
		{"queries", []*linalg.Dense32{q}, []*store.Store{sa, sc}, StreamOptions{}, "1 query matrices for 2 stores"},
		{"query rows", []*linalg.Dense32{q, testQueries(3, a.Dim(), 3)}, []*store.Store{sa, sc}, StreamOptions{}, "3 queries"},
		{"weights", []*linalg.Dense32{q}, []*store.Store{sa}, StreamOptions{Weights: make([]float32, 29)}, "29 weights for 30"},
		{"weight NaN", []*linalg.Dense32{q}, []*store.Store{sa}, StreamOptions{Weights: append(make([]float32, 29), float32(math.NaN()))}, "store row 29"},
		{"none", nil, nil, StreamOptions{}, "no stores"},
	} {
		_, err := StreamCheckpoints(ctx, linalg.CPU(), tc.queries, tc.stores, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.message) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.message)
		}
	}
	if _, _, err := TRAKQueries(ctx, nil, sa, linalg.NewDense64(1, a.Dim()+1, nil), hessian.Damping{Heuristic: true}, 0); err == nil {
		t.Error("TRAKQueries accepted queries of another dimension")
	}
	if _, err := TRAKWeights([][]float64{{0.5, 1.5}}); err == nil || !strings.Contains(err.Error(), "example 1") {
		t.Errorf("TRAKWeights with a probability of 1.5: %v", err)
	}
}
