package models

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// hvpSetup returns a model of c with random parameters and n random examples
// whose weights are random, some of them zero.
func hvpSetup(c gcCase, n int, seed uint64) (Model, *linalg.Dense64, []int, []float64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	m := c.model()
	for i := range m.Params() {
		m.Params()[i] = 0.7 * rng.NormFloat64()
	}
	x := linalg.NewDense64(n, c.features, nil)
	for i := range x.Data {
		x.Data[i] = rng.NormFloat64()
	}
	y := make([]int, n)
	w := make([]float64, n)
	for i := range y {
		y[i] = rng.IntN(c.classes)
		if i%5 != 3 {
			w[i] = 0.2 + 2*rng.Float64()
		}
	}
	return m, x, y, w
}

func TestHVPMatchesCurvature(t *testing.T) {
	for _, c := range gcCases {
		for _, n := range []int{37, blockRows + 77} {
			m, x, y, w := hvpSetup(c, n, uint64(n))
			h, err := NewHVP(m, x, y, w)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			cur := m.Curvature(x, y, w)
			p := NumParams(m)
			if h.Dim() != p {
				t.Fatalf("%s: Dim %d, want %d", c.name, h.Dim(), p)
			}
			rng := rand.New(rand.NewPCG(uint64(p), 3))
			const k = 3
			v := linalg.NewDense64(k, p, nil)
			for i := range v.Data {
				v.Data[i] = rng.NormFloat64()
			}
			want := linalg.NewDense64(k, p, nil)
			linalg.CPU().Dgemm(linalg.NoTrans, linalg.NoTrans, 1, v, cur, 0, want)
			// A block product, then one vector at a time from a padded view.
			got := linalg.NewDense64(k, p, nil)
			if err := h.ApplyMany(context.Background(), v, got); err != nil {
				t.Fatal(err)
			}
			padded := linalg.NewDense64(k, p+2, nil)
			for i := 0; i < k; i++ {
				copy(padded.Row(i), v.Row(i))
			}
			one := make([]float64, p)
			for i := 0; i < k; i++ {
				if e := relErr(got.Row(i), want.Row(i)); e > 1e-12 {
					t.Errorf("%s n=%d: ApplyMany row %d: relative error %.2g", c.name, n, i, e)
				}
				if err := h.Apply(context.Background(), padded.Slice(i, i+1, 0, p).Row(0), one); err != nil {
					t.Fatal(err)
				}
				if e := relErr(one, want.Row(i)); e > 1e-12 {
					t.Errorf("%s n=%d: Apply %d: relative error %.2g", c.name, n, i, e)
				}
				// A vector's product must not depend on the others of its block.
				if !slices.Equal(one, got.Row(i)) {
					t.Errorf("%s n=%d: vector %d alone and in a block of %d differ (relative %.2g)", c.name, n, i, k, relErr(one, got.Row(i)))
				}
			}
			// And in a larger block, each vector at another place.
			const big = 7
			vb := linalg.NewDense64(big, p, nil)
			for i := range vb.Data {
				vb.Data[i] = rng.NormFloat64()
			}
			for i := 0; i < k; i++ {
				copy(vb.Row(big-1-2*i), v.Row(i))
			}
			gb := linalg.NewDense64(big, p, nil)
			if err := h.ApplyMany(context.Background(), vb, gb); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < k; i++ {
				if !slices.Equal(gb.Row(big-1-2*i), got.Row(i)) {
					t.Errorf("%s n=%d: vector %d at row %d of %d and at row %d of %d differ", c.name, n, i, big-1-2*i, big, i, k)
				}
			}
			if n == 37 {
				t.Logf("%s: P=%d, relative error %.2g", c.name, p, relErr(got.Row(0), want.Row(0)))
			}
		}
	}
}

func TestHVPErrors(t *testing.T) {
	m := NewSoftmax(3, 4, 0.1)
	x := linalg.NewDense64(2, 3, []float64{1, 2, 3, 4, 5, 6})
	cases := []struct {
		name string
		m    Model
		x    *linalg.Dense64
		y    []int
		w    []float64
		want string
	}{
		{"features", m, linalg.NewDense64(2, 2, nil), []int{0, 1}, nil, "features"},
		{"label", m, x, []int{0, 4}, nil, "label 4"},
		{"weight", m, x, []int{0, 1}, []float64{1, -1}, "weight"},
		{"empty", m, linalg.NewDense64(0, 3, nil), nil, nil, "no examples"},
		{"model", fakeModel{mustMLP([]int{3, 4}, ReLU, 0.1, 1)}, x, []int{0, 1}, nil, "no Hessian-vector product"},
	}
	for _, c := range cases {
		_, err := NewHVP(c.m, c.x, c.y, c.w)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	h, err := NewHVP(m, x, []int{0, 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v := make([]float64, h.Dim())
	if err := h.Apply(ctx, v, make([]float64, h.Dim())); err == nil {
		t.Error("Apply on a cancelled context succeeded")
	}
	if err := h.ApplyMany(context.Background(), linalg.NewDense64(2, h.Dim(), nil), linalg.NewDense64(1, h.Dim(), nil)); err == nil {
		t.Error("ApplyMany with mismatched blocks succeeded")
	}
}
