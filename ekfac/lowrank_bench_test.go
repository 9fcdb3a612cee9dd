package ekfac

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// BenchmarkRankScores scores 500 queries against 5,000 training examples
// of the MNIST MLP's shapes (785 → 64 → 10, no token axis) at full rank
// and with rank-8 and rank-32 queries, in both precisions.
func BenchmarkRankScores(b *testing.B) {
	ctx := context.Background()
	be, err := linalg.Auto()
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	specs := []layerSpec{{name: "fc1", din: 785, dout: 64, tokens: 1}, {name: "fc2", din: 65, dout: 10, tokens: 1}}
	f, err := Fit(ctx, EKFAC, be, BatchSource(shapedBatch(rng, 2000, specs)), nil)
	if err != nil {
		b.Fatal(err)
	}
	q, tr := shapedBatch(rng, 500, specs), shapedBatch(rng, 5000, specs)
	for _, prec := range []Precision{F64, F32} {
		for _, r := range []int{0, 8, 32} {
			b.Run(fmt.Sprintf("%s/rank=%d", prec, r), func(b *testing.B) {
				for b.Loop() {
					if _, err := f.LayerScores(ctx, be, q, tr, ScoreOptions{Damping: hessian.Damping{Heuristic: true}, Rank: r, Precision: prec}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkFitF32 fits EK-FAC in F32 on 5,000 examples of an MLP
// 784-512-512-10 without a token axis (bench ekfac --model mlp's fit) in
// chunks of 64 MiB.
func BenchmarkFitF32(b *testing.B) {
	ctx := context.Background()
	be, err := linalg.Auto()
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	specs := []layerSpec{{name: "fc1", din: 785, dout: 512, tokens: 1}, {name: "fc2", din: 513, dout: 512, tokens: 1}, {name: "fc3", din: 513, dout: 10, tokens: 1}}
	fit := shapedBatch(rng, 5000, specs)
	parts := splitBatch(fit, 2950)
	for b.Loop() {
		if _, err := FitWithOptions(ctx, EKFAC, be, BatchSource(parts...), FitOptions{Precision: F32}); err != nil {
			b.Fatal(err)
		}
	}
}
