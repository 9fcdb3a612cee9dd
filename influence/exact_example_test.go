package influence_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

// An i8 store scores exactly: each entry carries the integer sum its score
// was computed from, and the rows tied on score (ids 7 and 3 hold the same
// gradient) rank by id, so that a recomputation anywhere gives the same
// list. The query quantises to (127, −64, 0) with scale 1/127 (−63.5 rounds
// half to even), row 7 to (64, −127, 32) with scale 1/127: isum 16256 and
// score 16256/127², where the float score is 1.
func ExampleStreamScores_exact() {
	dir, err := os.MkdirTemp("", "exact")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	b, err := store.Create(filepath.Join(dir, "store"), store.Options{DType: gradients.I8, Layers: []store.LayerInfo{{Name: "w", Dim: 3}}})
	if err != nil {
		log.Fatal(err)
	}
	rows := []float32{
		0.5, -1, 0.25, // id 7
		2, 0, -2, // id 5
		0.5, -1, 0.25, // id 3
		-1, 1, 0, // id 9
	}
	if err := b.Add(ctx, []int64{7, 5, 3, 9}, rows); err != nil {
		log.Fatal(err)
	}
	if err := b.Close(); err != nil {
		log.Fatal(err)
	}
	s, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	query := linalg.NewDense32(1, 3, []float32{1, -0.5, 0})
	res, err := influence.StreamScores(ctx, linalg.CPU(), query, s, influence.StreamOptions{TopK: 4})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range res.Rankings[0].Helpful {
		fmt.Printf("id %d: isum %6d, score %.6f\n", e.ID, e.ISum, e.Score)
	}
	// Output:
	// id 5: isum  16129, score 2.000000
	// id 3: isum  16256, score 1.007874
	// id 7: isum  16256, score 1.007874
	// id 9: isum -24257, score -1.503937
}
