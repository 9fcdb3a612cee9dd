// Quickstart trains softmax regression on the embedded handwritten digits,
// computes exact influence scores of every training digit on a few test
// digits, and prints the most helpful and most harmful training digits for
// each.
//
//	go run ./examples/quickstart -queries 3 -k 5
package main

import (
	"context"
	"flag"
	"fmt"
	"log"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

func main() {
	queries := flag.Int("queries", 3, "test digits to explain")
	k := flag.Int("k", 3, "helpful and harmful training digits to show per test digit")
	flag.Parse()
	ctx := context.Background()

	// 1797 8×8 digits, pixels scaled to [0, 1]; 80 % train, 20 % test.
	train, test, err := datasets.LoadSplit(ctx, "digits", datasets.SplitOptions{})
	if err != nil {
		log.Fatal(err)
	}
	// The fastest backend present (OpenBLAS, CUDA or pure Go); GOINFLUENCE_BACKEND forces one.
	be, err := linalg.Auto()
	if err != nil {
		log.Fatal(err)
	}

	// Train to the optimum: influence functions assume a minimiser.
	m := models.NewSoftmax(train.X.Cols, train.Classes, 1e-2)
	if _, err := models.FitNewton(ctx, m, train.X, train.Y, nil, models.NewtonOptions{Backend: be}); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Softmax regression on %d digits, %.1f%% accurate on %d held-out digits (backend %s).\n",
		train.Len(), 100*models.Accuracy(m, test.X, test.Y), test.Len(), be.Name())
	test = test.Subset(firstN(min(*queries, test.Len())))

	// score(q, t) = ⟨H⁻¹∇L(q), ∇L(t)⟩ with the exact Hessian H (λI included).
	an := &influence.Analyzer{Method: influence.Exact(m.Curvature(train.X, train.Y, nil), 0), Backend: be}
	scores, err := an.Scores(ctx, m.Gradients(test.X, test.Y), m.Gradients(train.X, train.Y))
	if err != nil {
		log.Fatal(err)
	}

	fmt.Println("Score > 0: helpful (removing that training digit would raise the test")
	fmt.Printf("digit's loss by about score/%d); score < 0: harmful.\n", train.Len())
	probs := m.Probs(test.X)
	for q, r := range influence.TopK(scores, *k) {
		fmt.Printf("\ntest digit #%d, label %d (model gives it p = %.2f):\n", test.Index[q], test.Y[q], probs.At(q, test.Y[q]))
		for _, e := range r.Helpful {
			fmt.Printf("  helpful  train digit #%-4d label %d  score %+9.3f\n", train.Index[e.Index], train.Y[e.Index], e.Score)
		}
		for _, e := range r.Harmful {
			fmt.Printf("  harmful  train digit #%-4d label %d  score %+9.3f\n", train.Index[e.Index], train.Y[e.Index], e.Score)
		}
	}
}

func firstN(n int) []int {
	rows := make([]int, n)
	for i := range rows {
		rows[i] = i
	}
	return rows
}
