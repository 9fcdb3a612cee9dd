package quant

import (
	"fmt"
	"math"
)

// MaxDim is the longest row whose integer sums fit in int32:
// 127²·MaxDim < 2³¹.
const MaxDim = 133000

// The build fails if the largest exact sum, 127²·MaxDim, overflows int32.
const _ int32 = 127 * 127 * MaxDim

// Version names the quantisation and scoring rule of this package, as run
// manifests record it.
const Version = "i8/v1"

// Quantize quantises the row x into q, which must have len(x) elements, and
// returns its scale, as the package documentation specifies. x must be
// finite (the callers check); a NaN or an infinity is an error naming the
// column.
func Quantize(q []int8, x []float32) (float32, error) {
	if len(q) != len(x) {
		return 0, fmt.Errorf("quant: Quantize: %d values into %d", len(x), len(q))
	}
	var m float32
	for j, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, fmt.Errorf("quant: Quantize: column %d is %v", j, v)
		}
		m = max(m, abs32(v))
	}
	if m == 0 {
		clear(q)
		return 0, nil
	}
	scale := float32(float64(m) / 127)
	if scale == 0 {
		// m is a subnormal under 127·2⁻¹⁵⁰: every value rounds to 0 at
		// any scale float32 can hold.
		clear(q)
		return 0, nil
	}
	s := float64(scale)
	for j, v := range x {
		r := math.RoundToEven(float64(v) / s)
		q[j] = int8(max(-127, min(127, r)))
	}
	return scale, nil
}

// Quantize64 is Quantize for float64 values, which are first rounded to
// float32: the rule is defined on the float32 rows.
func Quantize64(q []int8, x []float64) (float32, error) {
	x32 := make([]float32, len(x))
	for j, v := range x {
		x32[j] = float32(v)
	}
	return Quantize(q, x32)
}

// Score is the float32 score of an integer sum isum of a query with scale
// sq and a row with scale st: float32(float64(isum)·float64(sq)·float64(st)),
// evaluated left to right.
func Score(isum int32, sq, st float32) float32 {
	p := float64(isum) * float64(sq)
	return float32(p * float64(st))
}

// Dequantize writes q·scale into x, in float32: the value a quantised row
// stands for, for the uses of a store that need floats (curvature, checks).
func Dequantize(x []float32, q []int8, scale float32) {
	for j, v := range q {
		x[j] = float32(v) * scale
	}
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
