package quant

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// refGemm is the reference: the sums in int64, then wrapped to int32 as the
// kernels specify beyond the exact range.
func refGemm(a []int8, m int, b []int8, n, dim int) []int32 {
	out := make([]int32, m*n)
	for i := range m {
		for r := range n {
			var s int64
			for j := range dim {
				s += int64(a[i*dim+j]) * int64(b[r*dim+j])
			}
			out[i*n+r] = int32(s)
		}
	}
	return out
}

// randInt8 returns n values drawn from [−128, 127], never all zero for n > 0.
func randInt8(rnd *rand.Rand, n int) []int8 {
	x := make([]int8, n)
	for j := range x {
		x[j] = int8(rnd.IntN(256) - 128)
	}
	if n > 0 {
		x[rnd.IntN(n)] = int8(1 + rnd.IntN(127))
	}
	return x
}

func fill(n int, v int8) []int8 {
	x := make([]int8, n)
	for j := range x {
		x[j] = v
	}
	return x
}

// gemm runs k and checks that it writes exactly the m×n values of out.
func gemm(t *testing.T, k Kernel, a []int8, m int, b []int8, n, dim int) []int32 {
	t.Helper()
	const guard = 0x5a5a5a5a
	out := make([]int32, m*n+1)
	for j := range out {
		out[j] = guard
	}
	k.Gemm(out[:m*n], a, m, b, n, dim)
	if out[m*n] != guard {
		t.Fatalf("%s: wrote past out[%d]", k.Name(), m*n)
	}
	return out[:m*n]
}

// firstDiff describes the first difference between got and want.
func firstDiff(got, want []int32, n int) string {
	for j := range want {
		if got[j] != want[j] {
			return fmt.Sprintf("out[%d][%d] = %d, want %d", j/n, j%n, got[j], want[j])
		}
	}
	return ""
}

func TestKernelsRandom(t *testing.T) {
	ms := []int{1, 2, 3, 4, 5, 7, 8, 13, 64}
	ns := []int{1, 2, 5, 6, 7, 13, 100}
	dims := []int{1, 3, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4096, 4097}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, k := range Kernels() {
		t.Run(k.Name(), func(t *testing.T) {
			for _, dim := range dims {
				for _, m := range ms {
					for _, n := range ns {
						if testing.Short() && m*n*dim > 1<<20 {
							continue
						}
						a := randInt8(rnd, m*dim)
						b := randInt8(rnd, n*dim)
						want := refGemm(a, m, b, n, dim)
						got := gemm(t, k, a, m, b, n, dim)
						if d := firstDiff(got, want, n); d != "" {
							t.Fatalf("m=%d n=%d dim=%d: %s", m, n, dim, d)
						}
					}
				}
			}
		})
	}
}

func TestKernelsExtremes(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	signs := func(n int, v int8) []int8 {
		x := make([]int8, n)
		for j := range x {
			x[j] = v
			if rnd.IntN(2) == 0 {
				x[j] = -v
			}
		}
		return x
	}
	type tc struct {
		name      string
		m, n, dim int
		a, b      func(n int) []int8
	}
	cases := []tc{
		{"all 127", 7, 9, 4097, func(n int) []int8 { return fill(n, 127) }, func(n int) []int8 { return fill(n, 127) }},
		{"127 by -127", 7, 9, 4097, func(n int) []int8 { return fill(n, 127) }, func(n int) []int8 { return fill(n, -127) }},
		{"random ±127", 13, 11, 1000, func(n int) []int8 { return signs(n, 127) }, func(n int) []int8 { return signs(n, 127) }},
		{"-128 by 127", 6, 5, 129, func(n int) []int8 { return fill(n, -128) }, func(n int) []int8 { return fill(n, 127) }},
		// (−128)² summed over MaxDim passes 2³¹: the kernels wrap as Go's
		// int32 adds do.
		{"all -128 wrap", 7, 9, MaxDim, func(n int) []int8 { return fill(n, -128) }, func(n int) []int8 { return fill(n, -128) }},
		{"all -128 small", 7, 9, 255, func(n int) []int8 { return fill(n, -128) }, func(n int) []int8 { return fill(n, -128) }},
		{"MaxDim all 127", 7, 9, MaxDim, func(n int) []int8 { return fill(n, 127) }, func(n int) []int8 { return fill(n, 127) }},
		{"MaxDim all -127 by 127", 1, 9, MaxDim, func(n int) []int8 { return fill(n, -127) }, func(n int) []int8 { return fill(n, 127) }},
	}
	goK := goKernel{}
	for _, c := range cases {
		a, b := c.a(c.m*c.dim), c.b(c.n*c.dim)
		want := refGemm(a, c.m, b, c.n, c.dim)
		if d := firstDiff(gemm(t, goK, a, c.m, b, c.n, c.dim), want, c.n); d != "" {
			t.Fatalf("%s: go kernel: %s", c.name, d)
		}
		for _, k := range Kernels() {
			if d := firstDiff(gemm(t, k, a, c.m, b, c.n, c.dim), want, c.n); d != "" {
				t.Errorf("%s: %s: %s", c.name, k.Name(), d)
			}
		}
	}
}

// TestKernelsUnaligned reads rows that start at odd offsets, as the rows
// of a memory-mapped shard may.
func TestKernelsUnaligned(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for _, k := range Kernels() {
		for _, sh := range []struct{ m, n, dim, offA, offB int }{
			{1, 13, 129, 1, 3},
			{7, 9, 4097, 1, 3},
			{13, 6, 65, 5, 7},
			{64, 100, 63, 63, 1},
		} {
			abuf := randInt8(rnd, sh.offA+sh.m*sh.dim)
			bbuf := randInt8(rnd, sh.offB+sh.n*sh.dim)
			a, b := abuf[sh.offA:], bbuf[sh.offB:]
			want := refGemm(a, sh.m, b, sh.n, sh.dim)
			if d := firstDiff(gemm(t, k, a, sh.m, b, sh.n, sh.dim), want, sh.n); d != "" {
				t.Errorf("%s %+v: %s", k.Name(), sh, d)
			}
		}
	}
}

// TestKernelsSplit checks that any split of the rows of a and b gives the
// same integers as the whole product, as callers that share the rows
// between goroutines rely on.
func TestKernelsSplit(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	const m, n, dim = 29, 37, 321
	a := randInt8(rnd, m*dim)
	b := randInt8(rnd, n*dim)
	for _, k := range Kernels() {
		whole := gemm(t, k, a, m, b, n, dim)
		if d := firstDiff(whole, refGemm(a, m, b, n, dim), n); d != "" {
			t.Fatalf("%s: %s", k.Name(), d)
		}
		for _, split := range [][2]int{{1, 1}, {5, 7}, {6, 4}, {13, 36}, {28, 2}} {
			got := make([]int32, m*n)
			for i0 := 0; i0 < m; i0 += split[0] {
				i1 := min(i0+split[0], m)
				for r0 := 0; r0 < n; r0 += split[1] {
					r1 := min(r0+split[1], n)
					blk := gemm(t, k, a[i0*dim:i1*dim], i1-i0, b[r0*dim:r1*dim], r1-r0, dim)
					for i := i0; i < i1; i++ {
						copy(got[i*n+r0:i*n+r1], blk[(i-i0)*(r1-r0):(i-i0+1)*(r1-r0)])
					}
				}
			}
			if d := firstDiff(got, whole, n); d != "" {
				t.Errorf("%s split %v: %s", k.Name(), split, d)
			}
		}
	}
}

func TestKernelsEmpty(t *testing.T) {
	for _, k := range Kernels() {
		k.Gemm(nil, nil, 0, make([]int8, 5*3), 5, 3)
		k.Gemm(nil, make([]int8, 4*3), 4, nil, 0, 3)
		out := []int32{7, 7, 7, 7, 7, 7}
		k.Gemm(out, nil, 2, nil, 3, 0)
		if !slices.Equal(out, make([]int32, 6)) {
			t.Errorf("%s: dim 0 gives %v, want zeros", k.Name(), out)
		}
	}
}

func TestKernelsShortPanics(t *testing.T) {
	for _, k := range Kernels() {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic on a short b", k.Name())
				}
			}()
			k.Gemm(make([]int32, 4), make([]int8, 2*8), 2, make([]int8, 2*8-1), 2, 8)
		}()
	}
}

func TestKernelNames(t *testing.T) {
	ks := Kernels()
	if ks[len(ks)-1].Name() != "go" {
		t.Errorf("last kernel is %q, want go", ks[len(ks)-1].Name())
	}
	var names []string
	for _, k := range ks {
		names = append(names, k.Name())
	}
	t.Logf("kernels: %v", names)
	for _, c := range []struct {
		env, want string
		err       bool
	}{
		{env: "", want: ks[0].Name()},
		{env: "go", want: "go"},
		{env: "avx2", want: "avx2", err: !slices.Contains(names, "avx2")},
		{env: "vnni", want: "vnni", err: !slices.Contains(names, "vnni")},
		{env: "bogus", err: true},
	} {
		t.Run("env="+c.env, func(t *testing.T) {
			t.Setenv(EnvKernel, c.env)
			k, err := Default()
			if c.err {
				if err == nil {
					t.Fatalf("Default() = %s, want an error", k.Name())
				}
				if !strings.Contains(err.Error(), EnvKernel) || !strings.Contains(err.Error(), c.env) {
					t.Errorf("error %q names neither the variable nor the kernel", err)
				}
				if _, err := ByName(c.env); err == nil {
					t.Errorf("ByName(%q) gives no error", c.env)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Name() != c.want {
				t.Errorf("Default() = %s, want %s", k.Name(), c.want)
			}
			if c.env != "" {
				k, err := ByName(c.env)
				if err != nil || k.Name() != c.env {
					t.Errorf("ByName(%q) = %v, %v", c.env, k, err)
				}
			}
		})
	}
}
