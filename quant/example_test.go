package quant_test

import (
	"fmt"

	"github.com/goinfluence/goinfluence/quant"
)

func Example() {
	query := []float32{0.5, -1.0, 0.25, 0.75}
	row := []float32{2.0, 0.5, -4.0, 1.0}

	q := make([]int8, len(query))
	t := make([]int8, len(row))
	sq, err := quant.Quantize(q, query)
	if err != nil {
		panic(err)
	}
	st, err := quant.Quantize(t, row)
	if err != nil {
		panic(err)
	}
	fmt.Println("query:", q, "scale", sq)
	fmt.Println("row:  ", t, "scale", st)

	// Every kernel gives the same integer sum, so the score is the same
	// whichever the CPU runs.
	k, err := quant.Default()
	if err != nil {
		panic(err)
	}
	isum := make([]int32, 1)
	k.Gemm(isum, q, 1, t, 1, len(q))
	fmt.Println("isum:", isum[0])
	fmt.Println("score:", quant.Score(isum[0], sq, st))
	// Output:
	// query: [64 -127 32 95] scale 0.007874016
	// row:   [64 16 -127 32] scale 0.031496063
	// isum: 1040
	// score: 0.2579205
}
