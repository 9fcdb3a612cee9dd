package influence_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

// dense returns a batch of one dense two-weight layer, one example per pair
// of values.
func dense(v ...float64) *gradients.Batch {
	return &gradients.Batch{N: len(v) / 2, Layers: []gradients.Layer{{Name: "w", D: 2, Grad: v}}}
}

// TracIn-CP sums, over checkpoints, the learning rate times the dot
// product of the query's and each training example's gradients there.
func ExampleTracInCP() {
	cps := []influence.Checkpoint{
		{Query: dense(1, 0), Train: dense(2, 0, 0, 1, -1, 0), LR: 0.5},
		{Query: dense(1, 1), Train: dense(1, 1, 0, 2, -1, -1), LR: 0.1},
	}
	scores, err := influence.TracInCP(context.Background(), linalg.CPU(), cps)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.2f\n", scores.Row(0))
	// Output:
	// [1.20 0.20 -0.70]
}

// TRAK preconditions the query's gradient with (ΦᵀΦ + δI)⁻¹ of the training
// gradients Φ, scores it against them and weighs example t by 1 − p(y_t).
func ExampleTRAK() {
	cps := []influence.Checkpoint{{
		Query:     dense(1, 0),
		Train:     dense(2, 0, 0, 1, -1, 0),
		TrainProb: []float64{0.5, 0.9, 0.2},
	}}
	scores, err := influence.TRAK(context.Background(), linalg.CPU(), cps, influence.TRAKOptions{Damping: hessian.Damping{Value: 0.1}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.3f\n", scores.Row(0))
	// Output:
	// [0.196 0.000 -0.157]
}

// StreamScores streams a store, chunk by chunk, against queries already
// projected and preconditioned as the store's rows (here: none), keeping
// the top-k of each query.
func ExampleStreamScores() {
	dir, err := os.MkdirTemp("", "stream")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	b, err := store.Create(filepath.Join(dir, "s"), store.Options{DType: gradients.F32, Layers: []store.LayerInfo{{Name: "w", Dim: 2}}})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Add(context.Background(), []int64{7, 8, 9}, []float32{2, 0, 0, 1, -1, 0}); err != nil {
		log.Fatal(err)
	}
	if err := b.Close(); err != nil {
		log.Fatal(err)
	}
	s, err := store.Open(filepath.Join(dir, "s"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	q := linalg.NewDense32(1, 2, []float32{1, 0.5})
	res, err := influence.StreamScores(context.Background(), linalg.CPU(), q, s, influence.StreamOptions{TopK: 1})
	if err != nil {
		log.Fatal(err)
	}
	r := res.Rankings[0]
	fmt.Printf("%d rows; most helpful id %d (%.1f), most harmful id %d (%.1f)\n",
		res.Rows, r.Helpful[0].ID, r.Helpful[0].Score, r.Harmful[0].ID, r.Harmful[0].Score)
	// Output:
	// 3 rows; most helpful id 7 (2.0), most harmful id 9 (-1.0)
}
