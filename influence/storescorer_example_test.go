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
)

// A store of four training gradients (a two-weight layer, ids 10 to 13),
// built from a gradient file, scored against one query with the raw
// projected Hessian: the scorer is opened once (one pass over the store for
// H) and may then serve any number of Score calls, from any goroutine.
func ExampleStoreScorer() {
	dir, err := os.MkdirTemp("", "storescorer")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	dense := func(ids []int64, grads ...float64) *gradients.Batch {
		return &gradients.Batch{N: len(grads) / 2, IDs: ids, Layers: []gradients.Layer{{Name: "w", D: 2, Grad: grads}}}
	}
	train := filepath.Join(dir, "train.st")
	if err := gradients.WriteFile(train, dense([]int64{10, 11, 12, 13}, 1, 0, 0, 1, -1, 0.5, 2, 2), gradients.F32, nil); err != nil {
		log.Fatal(err)
	}

	// Build: the flags of 'goinfluence store build', as a library call.
	src, err := store.OpenSource(train)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	if _, err := store.Build(ctx, filepath.Join(dir, "store"), src, gradients.Projection{}, store.BuildOptions{DType: gradients.F32}); err != nil {
		log.Fatal(err)
	}
	s, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Score: the preconditioner is chosen, explicitly, at open.
	scorer, err := influence.OpenStoreScorer(ctx, nil, influence.StoreScorerOptions{
		Stores: []*store.Store{s},
		Method: influence.StoreRawHessian{Damping: hessian.Damping{Value: 0.1}},
		TopK:   2,
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := scorer.Score(ctx, dense(nil, 1, 0.2))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(scorer.Method())
	for _, e := range res.Rankings[0].Helpful {
		fmt.Printf("helpful: id %d, score %.3f\n", e.ID, e.Score)
	}
	for _, e := range res.Rankings[0].Harmful {
		fmt.Printf("harmful: id %d, score %.3f\n", e.ID, e.Score)
	}
	// Output:
	// raw projected Hessian, δ = 0.1
	// helpful: id 13, score 0.913
	// helpful: id 10, score 0.828
	// harmful: id 12, score -1.014
	// harmful: id 11, score -0.371
}
