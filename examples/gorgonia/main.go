// Command gorgonia trains an MLP with gorgonia, takes its per-example
// gradients from gorgonia's graph, and scores training digits with
// goinfluence: the interop a gorgonia user needs, checked against
// goinfluence's native MLP loaded with the same weights.
//
// The network (64-32-10, tanh, biases, softmax cross-entropy) is trained on
// the digits that goinfluence embeds, by full-batch Adam in a gorgonia
// graph. A second graph over the training digits computes the summed loss
// L = Σ_n ℓ_n and G.Grad(L, weights…); after that every pre-activation node
// z_l = h_l·w_l + b_l has a derivative node, whose value is S_l = ∂L/∂z_l:
// row n is ∂ℓ_n/∂z_{l,n}, since no other example's loss depends on it. With
// A_l = [h_l, 1] (the layer's input and a bias column) these are exactly
// the factored per-example gradients of a gradients.Batch, G_n = s_n a_nᵀ.
//
// The program checks, in float64 throughout:
//   - the factors A and S (at the true labels and at labels sampled from the
//     model) and the per-example losses against models.MLP holding the
//     same weights;
//   - Σ_n s_n a_nᵀ against gorgonia's gradient of L with respect to the
//     weights, and s_n a_nᵀ against the gradient of one example's loss in a
//     graph of its own;
//   - EK-FAC (fitted on each side's gradients at sampled labels) and
//     identity influence scores of test digits on training digits, and
//     EK-FAC self-influence.
//
// It prints the errors (max |difference| / max |reference|), the most
// helpful training digits of a few test digits, and exits with status 1
// when an error exceeds 1e-9.
//
// This directory is a module of its own, so that goinfluence itself never
// depends on gorgonia. The dependency pins recent Go needs: gorgonia v0.9.18
// and tensor v0.9.24 (the latest releases) build with Go 1.26 but panic at
// start-up through go4.org/unsafe/assume-no-moving-gc, whose version they
// require trusts only Go ≤ 1.19; go.mod pins that module at
// v0.0.0-20231121144256-b99613f794b6, which asks the runtime whether heap
// objects can move instead (see README.md).
//
//	cd examples/gorgonia && go run .
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/goinfluence/goinfluence/influence"
)

func main() {
	opt := options{Seed: 1}
	flag.IntVar(&opt.Hidden, "hidden", 32, "hidden units")
	flag.IntVar(&opt.Steps, "steps", 300, "full-batch Adam steps")
	flag.Float64Var(&opt.LR, "lr", 0.02, "Adam learning rate")
	flag.Float64Var(&opt.L2, "l2", 1e-4, "L2 penalty of the training objective")
	flag.IntVar(&opt.Queries, "queries", 3, "test digits to explain")
	flag.IntVar(&opt.Singles, "singles", 4, "training digits whose gradient is also taken from a graph of their own")
	k := flag.Int("k", 3, "most helpful training digits to show per test digit")
	flag.Parse()
	if *k < 0 {
		log.Fatalf("-k %d, want ≥ 0", *k)
	}

	r, err := run(context.Background(), opt)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("gorgonia MLP %d-%d-%d (tanh, %d parameters): %.1f%% accurate on %d training digits, %.1f%% on %d test digits\n",
		r.TrainSet.X.Cols, opt.Hidden, r.TrainSet.Classes, r.Params, 100*r.TrainAcc, r.Train, 100*r.TestAcc, r.Test)
	fmt.Printf("native models.MLP with the same weights: %.1f%% accurate on the training digits\n", 100*r.NativeAcc)
	fmt.Println("agreement, max |gorgonia − reference| / max |reference|:")
	for _, e := range []struct {
		what string
		err  float64
	}{
		{"per-example losses vs native", r.LossErr},
		{"activations A vs native", r.AErr},
		{"output gradients S vs native", r.SErr},
		{"A, S at sampled labels vs native", max(r.FitAErr, r.FitSErr)},
		{"Σ_n s_n a_nᵀ vs gorgonia ∂L/∂W", r.SumErr},
		{"s_n a_nᵀ vs gorgonia ∂ℓ_n/∂W", r.SingleErr},
		{"EK-FAC scores vs native", r.EKFACErr},
		{"EK-FAC self-influence vs native", r.EKFACSelfErr},
		{"identity scores vs native", r.IdentErr},
	} {
		fmt.Printf("  %-34s %.2e\n", e.what, e.err)
	}
	fmt.Printf("EK-FAC on %d layers fitted on %d digits at sampled labels; score > 0: helpful\n", r.FactorsLayers, r.FitExamples)
	for q, rk := range influence.TopK(r.Scores, *k) {
		fmt.Printf("test digit #%d, label %d:\n", r.QuerySet.Index[q], r.QuerySet.Y[q])
		for _, e := range rk.Helpful {
			fmt.Printf("  helpful  train digit #%-4d label %d  score %+.4g\n", r.TrainSet.Index[e.Index], r.TrainSet.Y[e.Index], e.Score)
		}
	}
	if !r.agrees() {
		fmt.Printf("FAIL: largest error %.2e exceeds %.0e\n", r.MaxErr, tolerance)
		os.Exit(1)
	}
	fmt.Printf("gorgonia and goinfluence agree: largest error %.2e (tolerance %.0e)\n", r.MaxErr, tolerance)
}
