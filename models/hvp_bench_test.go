package models

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// BenchmarkHVPSoftmax times the curvature-vector product of MNIST-sized
// softmax regression (784 features, 10 classes, 5000 examples) for one
// vector and for a block of 16, on the default backend.
func BenchmarkHVPSoftmax(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := NewSoftmax(784, 10, 1e-2)
	for i := range m.Params() {
		m.Params()[i] = 0.01 * rng.NormFloat64()
	}
	const n = 5000
	x := linalg.NewDense64(n, 784, nil)
	for i := range x.Data {
		x.Data[i] = rng.Float64()
	}
	y := make([]int, n)
	for i := range y {
		y[i] = rng.IntN(10)
	}
	h, err := NewHVP(m, x, y, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range []int{1, 16} {
		b.Run(fmt.Sprintf("vectors=%d", k), func(b *testing.B) {
			v := linalg.NewDense64(k, h.Dim(), nil)
			for i := range v.Data {
				v.Data[i] = rng.NormFloat64()
			}
			out := linalg.NewDense64(k, h.Dim(), nil)
			for b.Loop() {
				if err := h.ApplyMany(context.Background(), v, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
