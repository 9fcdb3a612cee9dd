package store_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
)

func Example() {
	root, err := os.MkdirTemp("", "store")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	dir := filepath.Join(root, "grads")
	ctx := context.Background()

	// Five examples with 3-value rows (two layers), two rows per shard.
	b, err := store.Create(dir, store.Options{
		DType:     gradients.BF16,
		ShardRows: 2,
		Layers:    []store.LayerInfo{{Name: "fc.weight", Dim: 2}, {Name: "fc.bias", Dim: 1}},
	})
	if err != nil {
		log.Fatal(err)
	}
	ids := []int64{10, 11, 12, 13, 14}
	rows := []float32{
		1, 2, 3,
		0.5, -1, 0,
		4, 5, 6,
		-2, 0.25, 1,
		7, 8, 9,
	}
	if err := b.Add(ctx, ids, rows); err != nil {
		log.Fatal(err)
	}
	if err := b.Close(); err != nil { // commits the last, short shard
		log.Fatal(err)
	}

	s, err := store.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Verify(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("rows:", s.Count(), "dim:", s.Dim(), "dtype:", s.DType(), "shards:", len(s.Manifest().Shards))
	it := s.Chunks(3)
	for it.Next(ctx) {
		c := it.Chunk()
		fmt.Println("offset", c.Offset, "ids", c.IDs, "rows", c.Rows.Data)
	}
	if err := it.Err(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// rows: 5 dim: 3 dtype: BF16 shards: 3
	// offset 0 ids [10 11 12] rows [1 2 3 0.5 -1 0 4 5 6]
	// offset 3 ids [13 14] rows [-2 0.25 1 7 8 9]
}
