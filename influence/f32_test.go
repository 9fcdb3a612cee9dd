package influence

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// TestFactorsF32 scores through an Analyzer with fitted factors at
// ekfac.F32: the scores and per-layer scores agree with F64 within 1e-4
// relative Frobenius error, and self-influence, always float64, exactly.
func TestFactorsF32(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(32, 1))
	factored := func(b *gradients.Batch) *gradients.Batch { b.Layers = b.Layers[:2]; return b }
	all := func(b *gradients.Batch) *gradients.Batch { return b }
	for _, tc := range []struct {
		method ekfac.Method
		layers func(*gradients.Batch) *gradients.Batch
	}{
		{ekfac.EKFAC, factored}, {ekfac.KFAC, factored}, {ekfac.Diagonal, all}, {ekfac.Identity, all},
	} {
		t.Run(string(tc.method), func(t *testing.T) {
			fit, query, train := tc.layers(randomBatch(rng, 30)), tc.layers(randomBatch(rng, 5)), tc.layers(randomBatch(rng, 8))
			f, err := ekfac.Fit(ctx, tc.method, linalg.CPU(), ekfac.BatchSource(fit), nil)
			if err != nil {
				t.Fatal(err)
			}
			opt := ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
			ref := &Analyzer{Method: Factors(f, opt), Backend: linalg.CPU()}
			opt.Precision = ekfac.F32
			an := &Analyzer{Method: Factors(f, opt), Backend: linalg.CPU()}
			want, err := ref.Scores(ctx, query, train)
			if err != nil {
				t.Fatal(err)
			}
			got, err := an.Scores(ctx, query, train)
			if err != nil {
				t.Fatal(err)
			}
			if e := relFrobenius(got, want); !(e <= 1e-4) {
				t.Errorf("scores: relative error %.3g", e)
			}
			if e := relFrobenius(got, want); e == 0 {
				t.Error("F32 scores are the F64 ones bit for bit: the float32 path was not taken")
			}
			wantL, err := ref.LayerScores(ctx, query, train)
			if err != nil {
				t.Fatal(err)
			}
			gotL, err := an.LayerScores(ctx, query, train)
			if err != nil {
				t.Fatal(err)
			}
			for li := range wantL {
				if e := relFrobenius(gotL[li], wantL[li]); !(e <= 1e-4) {
					t.Errorf("layer %d: relative error %.3g", li, e)
				}
			}
			wantS, err := ref.SelfInfluence(ctx, train)
			if err != nil {
				t.Fatal(err)
			}
			gotS, err := an.SelfInfluence(ctx, train)
			if err != nil {
				t.Fatal(err)
			}
			for i := range wantS {
				if gotS[i] != wantS[i] {
					t.Errorf("self-influence %d: %v, want %v", i, gotS[i], wantS[i])
				}
			}
		})
	}
}
