package cuda

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

// The CPU references of the kernels against the code whose results the
// kernels must reproduce. The GPU tests then hold the kernels to the
// references.

func TestPhiloxKnownAnswers(t *testing.T) {
	for _, tc := range []struct {
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{[4]uint32{}, [2]uint32{}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{[4]uint32{^uint32(0), ^uint32(0), ^uint32(0), ^uint32(0)}, [2]uint32{^uint32(0), ^uint32(0)}, [4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
	} {
		if got := philox4x32(tc.ctr, tc.key[0], tc.key[1]); got != tc.want {
			t.Errorf("philox(%x, %x) = %x, want %x", tc.ctr, tc.key, got, tc.want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		c := [4]uint32{rng.Uint32(), rng.Uint32(), rng.Uint32(), rng.Uint32()}
		seed := rng.Uint64()
		k0, k1 := philoxKey(seed)
		if got, want := philox4x32(c, k0, k1), gradients.Philox4x32(c, gradients.Key(seed)); got != want {
			t.Fatalf("philox(%x, seed %#x) = %x, gradients says %x", c, seed, got, want)
		}
	}
}

// gradValues returns n values with zeros, tiny and large magnitudes mixed
// in, so that sums round differently in any other order.
func gradValues(rng *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		switch rng.IntN(8) {
		case 0:
			x[i] = 0
		case 1:
			x[i] = rng.NormFloat64() * 1e8
		case 2:
			x[i] = rng.NormFloat64() * 1e-8
		default:
			x[i] = rng.NormFloat64()
		}
	}
	return x
}

func sameFloat64s(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			t.Fatalf("%s: element %d = %v, want %v (not bit-identical)", what, i, got[i], want[i])
		}
	}
}

// TestRefProjectionsMatchGradients: dense Rademacher and SJLT on dense
// layers, and both Kronecker sides on a factored layer, bit for bit; the
// layer index enters through the stream.
func TestRefProjectionsMatchGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, seed = 5, 0x1234_5678_9abc_def0
	dense := func(name string, d int) gradients.Layer {
		return gradients.Layer{Name: name, D: d, Grad: gradValues(rng, n*d)}
	}
	b := &gradients.Batch{N: n, Layers: []gradients.Layer{dense("a", 300), dense("b", 7), dense("c", 129)}}
	for _, k := range []int{1, 100, 128, 129, 300} {
		for _, kind := range []gradients.ProjectionKind{gradients.Rademacher, gradients.SJLT} {
			out, err := gradients.Projection{Kind: kind, K: k, Seed: seed}.Apply(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			for li, l := range b.Layers {
				got := make([]float64, n*k)
				if kind == gradients.Rademacher {
					refRademacher(got, l.Grad, l.D, k, seed, uint32(li)<<2)
				} else {
					refSJLT(got, l.Grad, l.D, k, seed, uint32(li)<<2|3)
				}
				sameFloat64s(t, kind.String()+" layer "+l.Name, got, out.Layers[li].Grad)
			}
		}
	}

	const din, dout, tokens = 37, 150, 3
	f := gradients.Layer{Name: "f", DIn: din, DOut: dout, Tokens: tokens, TokenAxis: true,
		A: gradValues(rng, n*tokens*din), S: gradValues(rng, n*tokens*dout)}
	first := gradients.Layer{Name: "x", DIn: 2, DOut: 3, Tokens: tokens, TokenAxis: true,
		A: gradValues(rng, n*tokens*2), S: gradValues(rng, n*tokens*3)}
	fb := &gradients.Batch{N: n, Layers: []gradients.Layer{first, f}}
	p := gradients.Projection{Kind: gradients.Kronecker, KIn: 20, KOut: 140, Seed: seed}
	out, err := p.Apply(context.Background(), fb)
	if err != nil {
		t.Fatal(err)
	}
	a := make([]float64, n*tokens*p.KIn)
	refRademacher(a, f.A, din, p.KIn, seed, 1<<2|1)
	sameFloat64s(t, "Kronecker input side", a, out.Layers[1].A)
	s := make([]float64, n*tokens*p.KOut)
	refRademacher(s, f.S, dout, p.KOut, seed, 1<<2|2)
	sameFloat64s(t, "Kronecker output side", s, out.Layers[1].S)

	bucket, neg := refSJLTHash(1000, 77, seed, 9<<2|3)
	gb, gs := gradients.SJLTBuckets(77, 1000, seed, 9<<2|3)
	for i := range bucket {
		if int(bucket[i]) != gb[i] || (neg[i] == 1) != (gs[i] < 0) {
			t.Fatalf("SJLT input %d: bucket %d sign %d, gradients %d %v", i, bucket[i], neg[i], gb[i], gs[i])
		}
	}
}

// TestSJLTOrder checks the stable bucket sort that sjlt_gather_f64 uses.
func TestSJLTOrder(t *testing.T) {
	bucket := []int32{2, 0, 2, 1, 0, 2}
	order, start := sjltOrder(bucket, 4)
	if !slices.Equal(order, []int64{1, 4, 3, 0, 2, 5}) || !slices.Equal(start, []int64{0, 2, 3, 6, 6}) {
		t.Errorf("order %v start %v", order, start)
	}
}

func TestRefScaleEKFACMatchesEKFAC(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n, d, delta = 4, 33, 1e-3
	g := gradValues(rng, n*d)
	lambda := make([]float64, d)
	for i := range lambda {
		lambda[i] = math.Abs(rng.NormFloat64()) * math.Exp2(float64(rng.IntN(30)-15))
	}
	f := &ekfac.Factors{Method: ekfac.Diagonal, N: n, M: n, Layers: []ekfac.LayerFactors{{Name: "l", D: d, Lambda: linalg.NewDense64(1, d, lambda)}}}
	b := &gradients.Batch{N: n, Layers: []gradients.Layer{{Name: "l", D: d, Grad: g}}}
	want, err := f.Precondition(context.Background(), linalg.CPU(), b, ekfac.ScoreOptions{Damping: hessian.Damping{Value: delta}})
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Clone(g)
	refScaleEKFAC(got, lambda, delta)
	sameFloat64s(t, "ScaleEKFAC", got, want.Data)

	x32 := make([]float32, len(g))
	for i := range g {
		x32[i] = float32(g[i])
	}
	got32 := slices.Clone(x32)
	refScaleEKFAC32(got32, lambda, delta)
	for i, v := range got32 {
		if w := float32(float64(x32[i]) * (1 / (lambda[i%d] + delta))); math.Float32bits(v) != math.Float32bits(w) {
			t.Fatalf("ScaleEKFAC32 element %d = %v, want %v", i, v, w)
		}
	}
}

// TestRefTopKMatchesInfluence compares with influence.TopK on rows full of
// ties (few distinct values, ±0 and ±Inf), highest and lowest.
func TestRefTopKMatchesInfluence(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	levels := []float32{float32(math.Inf(-1)), -2.5, -1, float32(math.Copysign(0, -1)), 0, 1e-40, 1, 3, float32(math.Inf(1))}
	for _, cols := range []int{1, 2, 17, 300, 2000} {
		rows := 3
		s32 := linalg.NewDense32(rows, cols, nil)
		for i := range s32.Data {
			if rng.IntN(3) == 0 {
				s32.Data[i] = float32(rng.NormFloat64())
			} else {
				s32.Data[i] = levels[rng.IntN(len(levels))]
			}
		}
		for _, k := range []int{1, 5, 64, 1024} {
			want := influence.TopK(s32.To64(), k)
			for r := range rows {
				for _, lowest := range []bool{false, true} {
					idx, val := refTopK(s32.Row(r), k, lowest, 0)
					w := want[r].Helpful
					if lowest {
						w = want[r].Harmful
					}
					if len(idx) != len(w) {
						t.Fatalf("cols %d k %d: %d entries, influence has %d", cols, k, len(idx), len(w))
					}
					for p := range w {
						if int(idx[p]) != w[p].Index || math.Float64bits(float64(val[p])) != math.Float64bits(w[p].Score) {
							t.Fatalf("cols %d k %d lowest %v row %d: entry %d = (%d, %v), influence (%d, %v)",
								cols, k, lowest, r, p, idx[p], val[p], w[p].Index, w[p].Score)
						}
					}
				}
			}
		}
	}
}

// TestRefTopKChunks checks that NaNs rank last, and that the top-k of a row
// is the top-k of the top-k lists of its chunks (with their offsets), which
// is how a streamed store merges.
func TestRefTopKChunks(t *testing.T) {
	nan := float32(math.NaN())
	idx, _ := refTopK([]float32{nan, 1, nan, -1}, 4, false, 10)
	if !slices.Equal(idx, []int64{11, 13, 10, 12}) {
		t.Errorf("NaN order (highest) %v", idx)
	}
	idx, _ = refTopK([]float32{nan, 1, nan, -1}, 3, true, 0)
	if !slices.Equal(idx, []int64{3, 1, 0}) {
		t.Errorf("NaN order (lowest) %v", idx)
	}

	rng := rand.New(rand.NewPCG(9, 10))
	row := make([]float32, 1000)
	for i := range row {
		row[i] = float32(rng.IntN(50))
	}
	for _, lowest := range []bool{false, true} {
		const k = 40
		wantIdx, _ := refTopK(row, k, lowest, 0)
		var cand []uint64
		for lo := 0; lo < len(row); lo += 300 {
			hi := min(lo+300, len(row))
			ci, cv := refTopK(row[lo:hi], k, lowest, int64(lo))
			for p := range ci {
				cand = append(cand, topkKey(cv[p], uint64(ci[p]), lowest))
			}
		}
		slices.Sort(cand)
		slices.Reverse(cand)
		for p := range k {
			if g := int64(0xFFFFFFFF - uint32(cand[p])); g != wantIdx[p] {
				t.Fatalf("lowest %v: merged entry %d is %d, want %d", lowest, p, g, wantIdx[p])
			}
		}
	}
}

func TestRefConversionsMatchLinalg(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		if got, want := refF16(h), math.Float32bits(linalg.F16Float32(h)); got != want {
			t.Fatalf("f16 %#04x: %#08x, linalg %#08x", h, got, want)
		}
		if got, want := refBF16(h), math.Float32bits(linalg.BF16Float32(h)); got != want {
			t.Fatalf("bf16 %#04x: %#08x, linalg %#08x", h, got, want)
		}
	}
}
