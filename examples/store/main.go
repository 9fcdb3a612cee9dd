// Store builds a gradient store of an MLP's training digits, projected
// (Kronecker, as LoGra does) and kept in f16 shards on disk, then streams it
// against a few test digits with EK-FAC fitted in the projected space.
//
//	go run ./examples/store -queries 3 -k 3
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/models"
)

func main() {
	queries := flag.Int("queries", 3, "test digits to explain")
	k := flag.Int("k", 3, "helpful and harmful training digits per test digit")
	flag.Parse()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "goinfluence-store")
	check(err)
	defer os.RemoveAll(dir)

	train, test, err := datasets.LoadSplit(ctx, "digits", datasets.SplitOptions{})
	check(err)
	m, err := models.NewMLP([]int{64, 32, 10}, models.ReLU, 1e-3, 0)
	check(err)
	check(models.TrainAdam(ctx, m, train.X, train.Y, nil, models.AdamOptions{Epochs: 40, BatchSize: 64, LR: 1e-2}))

	// The training gradients, as a file (ids are the rows), into the store.
	spec := gradients.Projection{Kind: gradients.Kronecker, KIn: 16, KOut: 8, Seed: 1}
	trainFile := filepath.Join(dir, "train.safetensors")
	check(gradients.WriteFile(trainFile, m.Gradients(train.X, train.Y), gradients.F32, nil))
	src, err := store.OpenSource(trainFile)
	check(err)
	defer src.Close()
	_, err = store.Build(ctx, filepath.Join(dir, "store"), src, spec, store.BuildOptions{DType: gradients.F16})
	check(err)

	// EK-FAC on projected gradients at labels sampled from the model.
	fit, err := spec.Apply(ctx, m.Gradients(train.X, models.SampleLabels(m, train.X, 1)))
	check(err)
	factors, err := ekfac.Fit(ctx, ekfac.EKFAC, nil, ekfac.BatchSource(fit), nil)
	check(err)

	s, err := store.Open(filepath.Join(dir, "store"))
	check(err)
	defer s.Close()
	scorer, err := influence.OpenStoreScorer(ctx, nil, influence.StoreScorerOptions{
		Stores: []*store.Store{s},
		Method: influence.StoreFactors{Factors: factors, Damping: hessian.Damping{Heuristic: true}},
		TopK:   *k,
	})
	check(err)
	q := test.Subset(firstN(min(*queries, test.Len())))
	res, err := scorer.Score(ctx, m.Gradients(q.X, q.Y))
	check(err)

	fmt.Printf("%d training digits in a %d-dimensional f16 store; %s.\n", s.Count(), s.Dim(), scorer.Method())
	for i, r := range res.Rankings {
		fmt.Printf("test digit #%d, label %d:\n", q.Index[i], q.Y[i])
		for _, e := range r.Helpful {
			fmt.Printf("  helpful  train digit #%-4d label %d  score %+.3g\n", train.Index[e.ID], train.Y[e.ID], e.Score)
		}
		for _, e := range r.Harmful {
			fmt.Printf("  harmful  train digit #%-4d label %d  score %+.3g\n", train.Index[e.ID], train.Y[e.ID], e.Score)
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

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
