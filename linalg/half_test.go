package linalg

import (
	"math"
	"testing"
)

// f16Ref returns the value of binary16 bits, computed from the definition.
func f16Ref(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, frac := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * math.Ldexp(1024+frac, exp-25)
}

func TestF16AllBits(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	f := make([]float32, len(src))
	back := make([]uint16, len(src))
	F16ToF32(f, src)
	F32ToF16(back, f)
	for i, h := range src {
		want := f16Ref(h)
		if math.IsNaN(want) {
			// NaNs come back quiet, with sign and payload kept.
			if !math.IsNaN(float64(f[i])) || math.Signbit(float64(f[i])) != (h&0x8000 != 0) {
				t.Fatalf("%#04x: got %v, want NaN of the same sign", h, f[i])
			}
			if back[i] != h|0x0200 {
				t.Fatalf("%#04x: round trip gave %#04x, want %#04x", h, back[i], h|0x0200)
			}
			continue
		}
		if float64(f[i]) != want || math.Signbit(float64(f[i])) != (h&0x8000 != 0) {
			t.Fatalf("%#04x: got %v, want %v", h, f[i], want)
		}
		if back[i] != h {
			t.Fatalf("%#04x: round trip gave %#04x", h, back[i])
		}
		if F16Float32(h) != f[i] || F16Bits(f[i]) != h {
			t.Fatalf("%#04x: scalar helpers disagree with the slice functions", h)
		}
	}
}

func TestBF16AllBits(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	f := make([]float32, len(src))
	back := make([]uint16, len(src))
	BF16ToF32(f, src)
	F32ToBF16(back, f)
	for i, h := range src {
		if got, want := math.Float32bits(f[i]), uint32(h)<<16; got != want {
			t.Fatalf("%#04x: got bits %#08x, want %#08x", h, got, want)
		}
		want := h
		if h&0x7fff > 0x7f80 {
			want |= 0x0040 // quieted NaN
		}
		if back[i] != want {
			t.Fatalf("%#04x: round trip gave %#04x, want %#04x", h, back[i], want)
		}
	}
}

func TestBF16Rounding(t *testing.T) {
	for _, tc := range []struct {
		in   uint32 // float32 bits
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // 1 + 2⁻⁸: tie, to even (down)
		{0x3f818000, 0x3f82}, // tie, to even (up)
		{0x3f808001, 0x3f81}, // just above the tie
		{0x3f807fff, 0x3f80}, // just below the tie
		{0xbf808000, 0xbf80}, // negative tie
		{0xbf818000, 0xbf82},
		{0x3f7fffff, 0x3f80}, // rounds up into the next binade
		{0x00008000, 0x0000}, // subnormal tie, to even (zero)
		{0x00018000, 0x0002}, // subnormal tie, to even (up)
		{0x007fffff, 0x0080}, // largest subnormal rounds to the least normal
		{0x80000000, 0x8000}, // −0
		{0x7f7f7fff, 0x7f7f}, // stays the largest finite bfloat16
		{0x7f7f8000, 0x7f80}, // tie above the largest finite: to even, Inf
		{0x7f7fffff, 0x7f80}, // largest float32 overflows
		{0xff7fffff, 0xff80},
		{0x7f800000, 0x7f80}, // +Inf
		{0xff800000, 0xff80}, // −Inf
		{0x7fc00000, 0x7fc0}, // quiet NaN
		{0xffc00001, 0xffc0}, // negative NaN, low payload dropped
		{0x7f800001, 0x7fc0}, // signalling NaN with only low payload: still NaN
		{0x7fa00000, 0x7fe0}, // signalling NaN keeps its high payload, quieted
	} {
		f := math.Float32frombits(tc.in)
		if got := BF16Bits(f); got != tc.want {
			t.Errorf("BF16Bits(%#08x) = %#04x, want %#04x", tc.in, got, tc.want)
		}
		dst := make([]uint16, 1)
		F32ToBF16(dst, []float32{f})
		if dst[0] != tc.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", tc.in, dst[0], tc.want)
		}
	}
}

func TestF16Rounding(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00},
		{1 + 0x1p-11, 0x3c00},   // tie, to even (down)
		{1 + 3*0x1p-11, 0x3c02}, // tie, to even (up)
		{1 + 0x1p-11 + 0x1p-20, 0x3c01},
		{65504, 0x7bff}, // largest finite
		{65519.99, 0x7bff},
		{65520, 0x7c00}, // tie above the largest finite: Inf
		{-1e6, 0xfc00},
		{0x1p-24, 0x0001}, // least subnormal
		{0x1p-25, 0x0000}, // tie, to even (zero)
		{3 * 0x1p-25, 0x0002},
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
	} {
		if got := F16Bits(tc.in); got != tc.want {
			t.Errorf("F16Bits(%v) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
	if h := F16Bits(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x03ff == 0 {
		t.Errorf("F16Bits(NaN) = %#04x, not a NaN", h)
	}
}

func TestConversionLengthPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"F16ToF32":  func() { F16ToF32(make([]float32, 1), make([]uint16, 2)) },
		"BF16ToF32": func() { BF16ToF32(make([]float32, 3), make([]uint16, 2)) },
		"F32ToF16":  func() { F32ToF16(make([]uint16, 0), make([]float32, 2)) },
		"F32ToBF16": func() { F32ToBF16(make([]uint16, 1), nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic on length mismatch", name)
				}
			}()
			f()
		}()
	}
}

// TestHalfBytes checks the byte-level decoders, aligned (zero-copy view) and
// misaligned (copy), against the scalar conversions on every bit pattern.
func TestHalfBytes(t *testing.T) {
	n := 1 << 16
	buf := make([]byte, 2*n+1)
	for _, off := range []int{0, 1} {
		src := buf[off : off+2*n]
		for i := 0; i < n; i++ {
			src[2*i], src[2*i+1] = byte(i), byte(i>>8)
		}
		f16, bf16 := make([]float32, n), make([]float32, n)
		F16BytesToF32(f16, src)
		BF16BytesToF32(bf16, src)
		for i := 0; i < n; i++ {
			w16, wbf := F16Float32(uint16(i)), BF16Float32(uint16(i))
			if math.Float32bits(f16[i]) != math.Float32bits(w16) || math.Float32bits(bf16[i]) != math.Float32bits(wbf) {
				t.Fatalf("offset %d, bits %#04x: got %v, %v want %v, %v", off, i, f16[i], bf16[i], w16, wbf)
			}
		}
	}
}

// TestWidenKernels holds the vector widening kernels, where the CPU has
// them, to the scalar conversions bit for bit (NaN payloads included), for
// every bit pattern and for lengths and offsets that leave scalar tails.
func TestWidenKernels(t *testing.T) {
	t.Logf("vector widening: f16 %v, bf16 %v", hasF16CKernel(), hasBF16Kernel())
	all := make([]uint16, 1<<16)
	for i := range all {
		all[i] = uint16(i*40503 + 7) // every pattern once, out of order
	}
	for _, tc := range []struct {
		name   string
		conv   func([]float32, []uint16)
		scalar func(uint16) float32
	}{
		{"F16ToF32", F16ToF32, F16Float32},
		{"BF16ToF32", BF16ToF32, BF16Float32},
	} {
		for _, span := range [][2]int{{0, 1 << 16}, {1, 1<<16 - 3}, {5, 36}, {3, 3}, {7, 71}, {0, 31}, {0, 32}, {2, 97}} {
			src := all[span[0]:span[1]]
			dst := make([]float32, len(src)+1)
			dst[len(src)] = 42 // must survive
			tc.conv(dst[:len(src)], src)
			for i, h := range src {
				if got, want := math.Float32bits(dst[i]), math.Float32bits(tc.scalar(h)); got != want {
					t.Fatalf("%s on [%d:%d]: %#04x gave %#08x, want %#08x", tc.name, span[0], span[1], h, got, want)
				}
			}
			if dst[len(src)] != 42 {
				t.Fatalf("%s on [%d:%d] wrote past the end", tc.name, span[0], span[1])
			}
		}
	}
}
