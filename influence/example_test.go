package influence_test

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

// Two training examples of a one-weight "layer" and one query. With H = 2 the
// first training gradient agrees with the query (helpful, positive score);
// the second opposes it (harmful, negative).
func ExampleAnalyzer_Scores() {
	layer := func(s ...float64) *gradients.Batch {
		a := make([]float64, len(s))
		for i := range a {
			a[i] = 1
		}
		return &gradients.Batch{N: len(s), Layers: []gradients.Layer{{Name: "w", DIn: 1, DOut: 1, Tokens: 1, A: a, S: s}}}
	}
	h := linalg.NewDense64(1, 1, []float64{2})
	an := influence.NewAnalyzer(influence.Exact(h, 0))
	scores, err := an.Scores(context.Background(), layer(1), layer(4, -2))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%.3f\n", scores.Row(0))
	top := influence.TopK(scores, 1)[0]
	fmt.Println("most helpful:", top.Helpful[0].Index, "most harmful:", top.Harmful[0].Index)
	// Output:
	// [2.000 -1.000]
	// most helpful: 0 most harmful: 1
}
