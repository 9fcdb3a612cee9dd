package hessian_test

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// Solve (H + δI)x = b for two right-hand sides at once, and compare with the
// top eigenvalue Arnoldi finds, which is what LiSSA's scale must exceed.
func ExampleCG() {
	h := linalg.NewDense64(3, 3, []float64{
		4, 1, 0,
		1, 3, 1,
		0, 1, 2,
	})
	op, err := hessian.NewDense(h, nil)
	if err != nil {
		panic(err)
	}
	b := linalg.NewDense64(2, 3, []float64{
		1, 0, 0,
		1, 2, 3,
	})
	ctx := context.Background()
	x, rep, err := hessian.CG(ctx, op, 0.5, b, hessian.CGOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Printf("x0 = %.4f\nx1 = %.4f\niterations %v\n", x.Row(0), x.Row(1), rep.Iterations)

	lr, _, err := hessian.Arnoldi(ctx, nil, op, hessian.ArnoldiOptions{Iterations: 3, TopK: 1, Seed: 1})
	if err != nil {
		panic(err)
	}
	fmt.Printf("λ_max = %.4f\n", lr.Values[0])
	// Output:
	// x0 = [0.2394 -0.0772 0.0309]
	// x1 = [0.1776 0.2008 1.1197]
	// iterations [3 3]
	// λ_max = 4.7321
}
