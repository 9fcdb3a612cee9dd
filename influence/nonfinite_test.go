package influence

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// TestTopKNaN: a NaN is never ranked, however many of them a row holds and
// wherever they sit; before issue 11 a leading NaN stuck in the heap and
// TopK of the first row returned [0.5, NaN].
func TestTopKNaN(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name             string
		row              []float64
		k                int
		helpful, harmful []int
	}{
		{"leading NaN", []float64{nan, 0.5, -1, 3, 2, -0.2}, 2, []int{3, 4}, []int{2, 5}},
		{"trailing NaN", []float64{0.5, -1, 3, 2, -0.2, nan}, 2, []int{2, 3}, []int{1, 4}},
		{"NaNs between", []float64{nan, 1, nan, -1, nan}, 3, []int{1, 3}, []int{3, 1}},
		{"all NaN", []float64{nan, nan}, 1, []int{}, []int{}},
		{"infinities", []float64{math.Inf(-1), nan, 0, math.Inf(1)}, 1, []int{3}, []int{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := linalg.NewDense64(1, len(tc.row), tc.row)
			r := TopK(s, tc.k)[0]
			check := func(side string, got []Entry, want []int) {
				if len(got) != len(want) {
					t.Fatalf("%s: %v, want indices %v", side, got, want)
				}
				for i, e := range got {
					if e.Index != want[i] || e.Score != tc.row[want[i]] {
						t.Fatalf("%s: %v, want indices %v", side, got, want)
					}
				}
			}
			check("helpful", r.Helpful, tc.helpful)
			check("harmful", r.Harmful, tc.harmful)
			if err := CheckFinite(s, nil); err == nil {
				t.Errorf("CheckFinite accepted %v", tc.row)
			}
		})
	}
}

// TestScoresNonFinite: a training example whose gradient is finite but huge
// (activations and output gradients of 1e300: G = s aᵀ overflows) makes
// Scores, LayerScores and SelfInfluence fail naming the example, for every
// method, rather than hand NaN or Inf to a ranking.
func TestScoresNonFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	ctx := context.Background()
	fit, query, train := randomBatch(rng, 20), randomBatch(rng, 3), randomBatch(rng, 6)
	for _, b := range []*gradients.Batch{fit, query, train} {
		b.Layers = b.Layers[:2] // EK-FAC needs factored layers
	}
	train.IDs = []int64{100, 101, 102, 103, 104, 105}
	l := &train.Layers[1] // fc2, one token row
	for i := range l.DIn {
		l.A[4*l.DIn+i] *= 1e300
	}
	for i := range l.DOut {
		l.S[4*l.DOut+i] *= 1e300
	}
	f, err := ekfac.Fit(ctx, ekfac.EKFAC, linalg.CPU(), ekfac.BatchSource(fit), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Method{Identity(), Factors(f, ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}})} {
		t.Run(m.Name(), func(t *testing.T) {
			an := &Analyzer{Method: m, Backend: linalg.CPU()}
			check := func(what string, err error, query int, layer string) {
				t.Helper()
				var nf *NonFiniteError
				if !errors.As(err, &nf) {
					t.Fatalf("%s: error %v, want a *NonFiniteError", what, err)
				}
				if nf.Index != 4 || nf.ID != 104 || nf.Query != query || nf.Layer != layer {
					t.Fatalf("%s: %+v, want query %d, example 4, id 104, layer %q", what, nf, query, layer)
				}
				if !strings.Contains(err.Error(), "training example 4 (id 104)") {
					t.Fatalf("%s: %q does not name the example", what, err)
				}
			}
			_, err := an.Scores(ctx, query, train)
			check("Scores", err, 0, "fc2")
			_, err = an.LayerScores(ctx, query, train)
			check("LayerScores", err, 0, "fc2")
			_, err = an.SelfInfluence(ctx, train)
			check("SelfInfluence", err, -1, "")
		})
	}
}

// TestStreamNonFinite: a store row of finite but huge values overflows its
// float32 scores; the stream fails naming the query, the row and its id, on
// the host, and on a streaming backend with and without the Scores callback.
func TestStreamNonFinite(t *testing.T) {
	const n, dim, bad = 50, 8, 5
	i := 0
	s := testStore(t, gradients.F32, 16, n, dim, 3, func(rng *rand.Rand) float32 {
		i++
		if (i-1)/dim == bad {
			return 1e30
		}
		return normal(rng)
	})
	q := linalg.NewDense32(2, dim, nil)
	for j := range q.Data {
		q.Data[j] = 1e10
	}
	for _, tc := range []struct {
		name     string
		be       linalg.Backend
		callback bool
	}{
		{"host", linalg.CPU(), false},
		{"host/callback", linalg.CPU(), true},
		{"device", newFakeStreamer(t), false},
		{"device/callback", newFakeStreamer(t), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runStream(t, tc.be, []*linalg.Dense32{q}, []*store.Store{s}, StreamOptions{TopK: 3}, tc.callback)
			var nf *NonFiniteError
			if !errors.As(err, &nf) || nf.Index != bad || nf.ID != 1000+3*bad || nf.Query != 0 || !math.IsInf(nf.Score, 1) {
				t.Fatalf("error %v, want a *NonFiniteError for query 0, row %d, id %d, +Inf", err, bad, 1000+3*bad)
			}
		})
	}
}
