package ekfac_test

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// Fit EK-FAC on the per-example gradients of one layer (3 inputs with the
// bias column, 2 outputs, 4 token rows an example), then score.
func ExampleFit() {
	rng := rand.New(rand.NewPCG(1, 2))
	batch := func(n int) *gradients.Batch {
		l := gradients.Layer{Name: "fc", DIn: 3, DOut: 2, Tokens: 4, TokenAxis: true,
			A: make([]float64, n*4*3), S: make([]float64, n*4*2)}
		for i := range l.A {
			l.A[i] = rng.NormFloat64()
		}
		for i := range l.S {
			l.S[i] = rng.NormFloat64()
		}
		return &gradients.Batch{N: n, Layers: []gradients.Layer{l}}
	}
	ctx := context.Background()
	be := linalg.CPU()
	f, err := ekfac.Fit(ctx, ekfac.EKFAC, be, ekfac.BatchSource(batch(50), batch(30)), nil)
	if err != nil {
		panic(err)
	}
	opt := ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
	train := batch(5)
	self, err := f.SelfInfluence(ctx, be, train, opt)
	if err != nil {
		panic(err)
	}
	fmt.Println(f.Method, f.N, "examples,", f.Layers[0].M, "token rows")
	fmt.Println("Λ is", f.Layers[0].Lambda.Rows, "×", f.Layers[0].Lambda.Cols)
	fmt.Println("self-influence positive:", self[0] > 0 && self[4] > 0)
	// Output:
	// ekfac 80 examples, 320 token rows
	// Λ is 2 × 3
	// self-influence positive: true
}
