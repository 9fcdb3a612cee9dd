package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestQuantize(t *testing.T) {
	sub := math.Float32frombits(1) // the least subnormal, 2⁻¹⁴⁹
	for _, c := range []struct {
		name  string
		x     []float32
		q     []int8
		scale float32
	}{
		// A row whose largest magnitude is 127 has scale 1, so the values
		// themselves are rounded, ties to even.
		{"ties to even", []float32{127, 0.5, 1.5, 2.5, -0.5, -2.5, -3.5, 126.5}, []int8{127, 0, 2, 2, 0, -2, -4, 126}, 1},
		{"near ties", []float32{127, 0.49999997, 0.50000006, -1.4999999, -1.5000001}, []int8{127, 0, 1, -1, -2}, 1},
		{"negative max", []float32{-127, 63.5, 64.5, 1}, []int8{-127, 64, 64, 1}, 1},
		{"max maps to ±127", []float32{3, -3, 1.5, -1.5}, []int8{127, -127, 64, -64}, float32(3.0 / 127)},
		{"one value", []float32{-0.001}, []int8{-127}, float32(0.001 / 127)},
		{"zero row", []float32{0, 0, float32(math.Copysign(0, -1))}, []int8{0, 0, 0}, 0},
		{"empty", nil, nil, 0},
		// A subnormal maximum under 127·2⁻¹⁵⁰ gives a scale of 0 in
		// float32, and so the zero row; at 127·2⁻¹⁴⁹ the scale is 2⁻¹⁴⁹.
		{"subnormal max to zero", []float32{sub, -sub}, []int8{0, 0}, 0},
		{"subnormal max", []float32{127 * sub, 3 * sub, -5 * sub}, []int8{127, 3, -5}, sub},
		{"huge", []float32{math.MaxFloat32, -math.MaxFloat32 / 4}, []int8{127, -32}, float32(math.MaxFloat32 / 127.0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := make([]int8, len(c.x))
			for j := range q {
				q[j] = 99 // stale values must go
			}
			scale, err := Quantize(q, c.x)
			if err != nil {
				t.Fatal(err)
			}
			if scale != c.scale || !slices.Equal(q, c.q) {
				t.Errorf("Quantize(%v) = %v, %v; want %v, %v", c.x, q, scale, c.q, c.scale)
			}
		})
	}
}

func TestQuantizeErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		q    []int8
		x    []float32
		want string
	}{
		{"NaN", make([]int8, 4), []float32{1, 2, 3, float32(math.NaN())}, "column 3 is NaN"},
		{"+Inf", make([]int8, 2), []float32{float32(math.Inf(1)), 2}, "column 0 is +Inf"},
		{"-Inf", make([]int8, 3), []float32{1, float32(math.Inf(-1)), 2}, "column 1 is -Inf"},
		{"length", make([]int8, 2), []float32{1, 2, 3}, "3 values into 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Quantize(c.q, c.x)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one that says %q", err, c.want)
			}
		})
	}
}

// refQuantize is the rule of DESIGN §11 written afresh: the scale from the
// float64 maximum, the quotient rounded half to even by hand.
func refQuantize(x []float32) ([]int8, float32) {
	var m float64
	for _, v := range x {
		m = math.Max(m, math.Abs(float64(v)))
	}
	q := make([]int8, len(x))
	scale := float32(m / 127)
	if scale == 0 {
		return q, 0
	}
	for j, v := range x {
		y := float64(v) / float64(scale)
		f := math.Floor(y)
		switch d := y - f; {
		case d > 0.5:
			f++
		case d == 0.5 && math.Mod(f, 2) != 0:
			f++
		}
		q[j] = int8(math.Min(127, math.Max(-127, f)))
	}
	return q, scale
}

func TestQuantizeRandom(t *testing.T) {
	rnd := rand.New(rand.NewPCG(9, 10))
	for trial := range 2000 {
		n := 1 + rnd.IntN(300)
		x := make([]float32, n)
		mag := math.Ldexp(1, rnd.IntN(80)-40)
		for j := range x {
			switch trial % 3 {
			case 0:
				x[j] = float32(rnd.NormFloat64() * mag)
			case 1:
				// Halves, with a largest magnitude of 127: every value a
				// tie or an integer.
				x[j] = float32(rnd.IntN(509)-254) / 2
			default:
				x[j] = float32((rnd.Float64()*2 - 1) * mag)
			}
		}
		if trial%3 == 1 {
			x[rnd.IntN(n)] = 127 * float32(1-2*rnd.IntN(2))
		}
		wantQ, wantS := refQuantize(x)
		q := make([]int8, n)
		s, err := Quantize(q, x)
		if err != nil {
			t.Fatal(err)
		}
		if s != wantS || !slices.Equal(q, wantQ) {
			t.Fatalf("trial %d: Quantize(%v) = %v, %v; want %v, %v", trial, x, q, s, wantQ, wantS)
		}
		x64 := make([]float64, n)
		for j, v := range x {
			x64[j] = float64(v)
		}
		q64 := make([]int8, n)
		if s64, err := Quantize64(q64, x64); err != nil || s64 != s || !slices.Equal(q64, q) {
			t.Fatalf("trial %d: Quantize64 = %v, %v, %v; want %v, %v", trial, q64, s64, err, q, s)
		}
	}
}

func TestScore(t *testing.T) {
	for _, c := range []struct {
		isum   int32
		sq, st float32
		want   float32
	}{
		{0, 1, 1, 0},
		{1, 1, 1, 1},
		{-7, 0.5, 0.25, -0.875},
		{127 * 127 * MaxDim, 1, 1, float32(127 * 127 * MaxDim)},
		{math.MinInt32, 1, 2, -(1 << 32)},
		{12345, 0, 3, 0},
	} {
		if got := Score(c.isum, c.sq, c.st); got != c.want {
			t.Errorf("Score(%d, %v, %v) = %v, want %v", c.isum, c.sq, c.st, got, c.want)
		}
	}
	// The rule fixes the order of the float64 products, left to right.
	rnd := rand.New(rand.NewPCG(11, 12))
	for range 10000 {
		isum := int32(rnd.Uint32())
		sq := float32(rnd.NormFloat64() * 1e-3)
		st := float32(rnd.NormFloat64() * 1e-2)
		want := float32(float64(isum) * float64(sq) * float64(st))
		if got := Score(isum, sq, st); got != want {
			t.Fatalf("Score(%d, %v, %v) = %v, want %v", isum, sq, st, got, want)
		}
	}
}

func TestDequantize(t *testing.T) {
	x := []float32{0.3, -1.2, 0.9, 0}
	q := make([]int8, len(x))
	s, err := Quantize(q, x)
	if err != nil {
		t.Fatal(err)
	}
	y := make([]float32, len(x))
	Dequantize(y, q, s)
	for j := range x {
		if d := math.Abs(float64(y[j] - x[j])); d > float64(s)/2*(1+1e-6) {
			t.Errorf("x[%d] = %v comes back as %v: off by %v, more than half the scale %v", j, x[j], y[j], d, s)
		}
		if y[j] != float32(q[j])*s {
			t.Errorf("y[%d] = %v, want %v·%v", j, y[j], q[j], s)
		}
	}
}
