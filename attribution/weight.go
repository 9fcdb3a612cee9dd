package attribution

import (
	"fmt"
	"math"
	"math/big"
)

// WeightBits is the number of fractional bits of a Weight: a weight is a
// non-negative influence score in units of 2^-WeightBits.
const WeightBits = 32

// Weight converts a finite influence score ≥ 0 to the fixed-point integer
// floor(score·2^WeightBits), computed exactly from the float64 value of score
// (no rounding other than the floor). It returns an error for a negative,
// NaN or infinite score; -0 gives 0.
func Weight(score float64) (*big.Int, error) {
	if math.IsNaN(score) || math.IsInf(score, 0) || score < 0 {
		return nil, fmt.Errorf("attribution: weight of score %v: want a finite score ≥ 0", score)
	}
	f := new(big.Float).SetFloat64(score) // exact: precision 53
	f.SetMantExp(f, WeightBits)           // exact: only the exponent changes
	w, _ := f.Int(nil)                    // truncates toward zero: the floor, as f ≥ 0
	return w, nil
}
