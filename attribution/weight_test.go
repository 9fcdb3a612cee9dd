package attribution

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestWeight(t *testing.T) {
	pow := func(e uint) *big.Int { return new(big.Int).Lsh(big.NewInt(1), e) }
	e30, _ := new(big.Int).SetString("1000000000000000019884624838656", 10) // the float64 nearest 1e30
	e30.Lsh(e30, WeightBits)
	maxF32 := new(big.Int).Lsh(big.NewInt(1<<24-1), 104+WeightBits) // (2^24−1)·2^104
	for _, tc := range []struct {
		score float64
		want  *big.Int
	}{
		{0, big.NewInt(0)},
		{math.Copysign(0, -1), big.NewInt(0)},
		{1, pow(32)},
		{0.5, pow(31)},
		{1.5, big.NewInt(3 << 31)},
		{0x1p-32, big.NewInt(1)},
		{0x1p-33, big.NewInt(0)},
		{0x1.8p-32, big.NewInt(1)}, // 1.5 units: floor
		{0x1.fffffffffffffp-33, big.NewInt(0)},
		{0.1, big.NewInt(429496729)}, // 0.1·2^32 = 429496729.6…
		{1e30, e30},
		{math.MaxFloat32, maxF32},
		{math.SmallestNonzeroFloat64, big.NewInt(0)},
		{math.MaxFloat64, new(big.Int).Lsh(new(big.Int).Sub(pow(53), big.NewInt(1)), 1024-53+WeightBits)},
	} {
		got, err := Weight(tc.score)
		if err != nil {
			t.Errorf("Weight(%g): %v", tc.score, err)
			continue
		}
		if got.Cmp(tc.want) != 0 {
			t.Errorf("Weight(%g) = %v, want %v", tc.score, got, tc.want)
		}
	}
	for _, bad := range []float64{-1, -math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1), math.Inf(-1)} {
		if w, err := Weight(bad); err == nil {
			t.Errorf("Weight(%g) = %v, want an error", bad, w)
		}
	}
}

// TestWeightRandom compares Weight on random float32 scores with a reference
// in math/big.Rat: floor(num·2^32 / den) of the exact rational value.
func TestWeightRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		var f float32
		switch i % 3 {
		case 0: // any finite non-negative float32, by bits
			for {
				f = math.Float32frombits(rng.Uint32() &^ (1 << 31))
				if !math.IsInf(float64(f), 0) && !math.IsNaN(float64(f)) {
					break
				}
			}
		case 1: // typical scores
			f = float32(rng.ExpFloat64() * math.Pow(10, float64(rng.IntN(13)-6)))
		case 2: // near multiples of 2^-32
			f = float32(float64(rng.IntN(1<<20)) * 0x1p-32 * (1 + (rng.Float64()-0.5)*1e-6))
		}
		got, err := Weight(float64(f))
		if err != nil {
			t.Fatalf("Weight(%g): %v", f, err)
		}
		r := new(big.Rat).SetFloat64(float64(f))
		num := new(big.Int).Lsh(r.Num(), WeightBits)
		want := num.Quo(num, r.Denom())
		if got.Cmp(want) != 0 {
			t.Fatalf("Weight(%g) = %v, want %v", f, got, want)
		}
	}
}
