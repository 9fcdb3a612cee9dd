package ekfac

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// FuzzDecode feeds arbitrary bytes to the factors-file decoder: it must
// return factors or an error, never panic, and accepted factors must be
// consistent enough to precondition with.
//
// Random bytes almost never get past the safetensors header, so the corpus
// is seeded with real factors files of every method, fitted on small random
// gradients in several layouts (token axes or not, one layer or several,
// dense layers), and with hand-tampered variants of them that reach each of
// decode's checks: the mutator then starts from files the decoder reads to
// the end.
func FuzzDecode(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := safetensors.Parse(data)
		if err != nil {
			return
		}
		fac, err := decode(sf)
		if err != nil {
			return
		}
		// Identity factors hold no tensors, so their metadata can declare
		// any shape: precondition only what a small file can describe.
		const maxDim = 1 << 12
		dim := 0
		for i, lf := range fac.Layers {
			if fac.Method != Identity && lf.Lambda == nil {
				t.Fatalf("layer %d has no Λ", i)
			}
			if fac.Method.needsCovariance() && (lf.QA == nil || lf.QS == nil || len(lf.LambdaA) != lf.DIn || len(lf.LambdaS) != lf.DOut) {
				t.Fatalf("layer %d: K-FAC/EK-FAC factors without eigenbases", i)
			}
			_ = fac.LayerDamping(i, hessian.Damping{Heuristic: true})
			if lf.D > maxDim || lf.DIn > maxDim || lf.DOut > maxDim {
				return
			}
			dim += max(lf.D, lf.DIn*lf.DOut)
		}
		if dim > maxDim {
			return
		}
		b := &gradients.Batch{N: 1}
		for _, lf := range fac.Layers {
			if lf.D > 0 {
				b.Layers = append(b.Layers, gradients.Layer{Name: lf.Name, D: lf.D, Grad: ones(lf.D)})
			} else {
				b.Layers = append(b.Layers, gradients.Layer{Name: lf.Name, DIn: lf.DIn, DOut: lf.DOut, Tokens: 1, A: ones(lf.DIn), S: ones(lf.DOut)})
			}
		}
		if _, err := fac.Precondition(context.Background(), linalg.CPU(), b, ScoreOptions{Damping: hessian.Damping{Heuristic: true}}); err != nil {
			t.Logf("Precondition: %v", err) // allowed: zero damping of a zero Λ, say
		}
	})
}

func ones(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// fuzzSeeds returns the bytes of real factors files of every method in
// several layouts, and tampered variants of them.
func fuzzSeeds(f *testing.F) [][]byte {
	rng := rand.New(rand.NewPCG(71, 72))
	fill := func(k int) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = float64(float32(rng.NormFloat64()))
		}
		return v
	}
	const n = 6
	layouts := map[string]func() *gradients.Batch{
		"tokens+layers": func() *gradients.Batch { return randomBatch(rng, n, false) },
		"one layer": func() *gradients.Batch {
			return &gradients.Batch{N: n, Layers: []gradients.Layer{{Name: "fc", DIn: 3, DOut: 2, Tokens: 1, A: fill(n * 3), S: fill(n * 2)}}}
		},
		"one token layer": func() *gradients.Batch {
			return &gradients.Batch{N: n, Layers: []gradients.Layer{{Name: "blk.0.attn:q", DIn: 2, DOut: 2, Tokens: 2, TokenAxis: true, A: fill(n * 2 * 2), S: fill(n * 2 * 2)}}}
		},
		"dense": func() *gradients.Batch { return randomBatch(rng, n, true) },
	}
	var seeds [][]byte
	save := func(fac *Factors) []byte {
		ts, meta := encodeFactors(f, fac)
		return writeSeed(f, ts, meta)
	}
	var base *Factors // EK-FAC, several layers with token axes
	for _, name := range []string{"tokens+layers", "one layer", "one token layer", "dense"} {
		for _, m := range []Method{EKFAC, KFAC, Diagonal, Identity} {
			if name == "dense" && m.needsCovariance() {
				continue
			}
			fac, err := Fit(context.Background(), m, linalg.CPU(), BatchSource(layouts[name]()), nil)
			if err != nil {
				f.Fatal(err)
			}
			if name == "tokens+layers" && m == EKFAC {
				base = fac
			}
			seeds = append(seeds, save(fac))
		}
	}
	// Tampered variants of the EK-FAC file, each aimed at one check.
	tamper := []func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor{
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			meta["method"] = "kfac"
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			meta["method"] = "diagonal"
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor { meta["n"] = "0"; return ts },
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			meta["shapes"] = "enc.fc1:6x4:3;head:3x5:1" // DIn and DOut swapped
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			meta["layers"] = "head"
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor { return ts[1:] },
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "extra", DType: safetensors.F64, Shape: []int{1}, Data: make([]byte, 8)})
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			mapF64(ts, "head.qa", func(i int, _ float64) float64 { return float64(rng.IntN(3) - 1) })
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			mapF64(ts, "head.qs", func(i int, _ float64) float64 { return float64(b2i(i%4 == 0)) }) // the identity
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			mapF64(ts, "head.lambda_a", func(_ int, v float64) float64 { return -v })
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			mapF64(ts, "enc.fc1.lambda", func(i int, v float64) float64 { return []float64{v, math.NaN(), math.Inf(1), -1}[i%4] })
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			mapF64(ts, "head.a_cov", func(i int, v float64) float64 { return v + float64(i%2) })
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			// Every tensor as F32: rounding within EigenTol.
			for i, t := range ts {
				v := make([]float64, len(t.Data)/8)
				if err := safetensors.DecodeFloat64s(v, t.DType, t.Data); err != nil {
					f.Fatal(err)
				}
				var err error
				ts[i].DType = safetensors.F32
				if ts[i].Data, err = safetensors.EncodeFloat64s(safetensors.F32, v); err != nil {
					f.Fatal(err)
				}
			}
			return ts
		},
		func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			meta["method"] = "identity"
			meta["shapes"] = "x:70000x70000:1"
			meta["layers"] = "x"
			return nil
		},
	}
	for _, fn := range tamper {
		ts, meta := encodeFactors(f, base)
		seeds = append(seeds, writeSeed(f, fn(ts, meta), meta))
	}
	// Byte-level damage: truncated, and a header length past the end.
	good := seeds[0]
	seeds = append(seeds, good[:len(good)/2], append([]byte{0xff, 0xff, 0, 0, 0, 0, 0, 0}, good[8:]...))
	return seeds
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// encodeFactors returns the tensors and metadata Save writes for fac.
func encodeFactors(f *testing.F, fac *Factors) ([]safetensors.Tensor, map[string]string) {
	p := f.TempDir() + "/factors"
	if err := fac.Save(p); err != nil {
		f.Fatal(err)
	}
	return readTensors(f, p)
}

func writeSeed(f *testing.F, ts []safetensors.Tensor, meta map[string]string) []byte {
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, meta); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}
