package ekfac

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// TestLoadEigenvectors: factors whose eigenvectors or eigenvalues were
// replaced are rejected on load, naming the layer and the tensor, where
// before issue 11 a file with random eigenvectors loaded and scored wrong;
// eigenvectors perturbed within EigenTol still load.
func TestLoadEigenvectors(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	batch := randomBatch(rng, 12, false)
	dir := t.TempDir()
	tests := []struct {
		name   string
		tamper func(ts []safetensors.Tensor)
		want   string // "" when the file must load
	}{
		{"untouched", func([]safetensors.Tensor) {}, ""},
		{"qa within tolerance", func(ts []safetensors.Tensor) {
			mapF64(ts, "enc.fc1.qa", func(i int, v float64) float64 { return v + 1e-9*float64(i%3-1) })
		}, ""},
		{"random qa", func(ts []safetensors.Tensor) {
			mapF64(ts, "enc.fc1.qa", func(int, float64) float64 { return rng.NormFloat64() })
		}, `layer "enc.fc1": tensor enc.fc1.qa is not orthonormal`},
		{"random qs", func(ts []safetensors.Tensor) {
			mapF64(ts, "head.qs", func(int, float64) float64 { return rng.NormFloat64() })
		}, `layer "head": tensor head.qs is not orthonormal`},
		{"qa off by 1e-5", func(ts []safetensors.Tensor) {
			mapF64(ts, "head.qa", func(i int, v float64) float64 { return v + 1e-5*float64(i%3-1) })
		}, `layer "head": tensor head.qa is not orthonormal`},
		{"qs columns swapped", func(ts []safetensors.Tensor) {
			const n = 3 // head: DOut
			q := make([]float64, n*n)
			mapF64(ts, "head.qs", func(i int, v float64) float64 { q[i] = v; return v })
			mapF64(ts, "head.qs", func(i int, v float64) float64 {
				switch r, c := i/n, i%n; c {
				case 0:
					return q[r*n+2]
				case 2:
					return q[r*n]
				}
				return v
			})
		}, `layer "head": tensor head.qs does not diagonalise head.s_cov into head.lambda_s`},
		{"lambda_a scaled", func(ts []safetensors.Tensor) {
			mapF64(ts, "enc.fc1.lambda_a", func(_ int, v float64) float64 { return 1000 * v })
		}, `layer "enc.fc1": tensor enc.fc1.qa does not diagonalise enc.fc1.a_cov into enc.fc1.lambda_a`},
		{"a_cov scaled", func(ts []safetensors.Tensor) {
			mapF64(ts, "head.a_cov", func(_ int, v float64) float64 { return 2 * v })
		}, `layer "head": tensor head.qa does not diagonalise head.a_cov`},
		{"negative lambda_s", func(ts []safetensors.Tensor) {
			mapF64(ts, "head.lambda_s", func(i int, v float64) float64 { return v - float64(i) })
		}, `layer "head": lambda_s has a negative entry`},
	}
	for _, method := range []Method{EKFAC, KFAC} {
		f, err := Fit(context.Background(), method, linalg.CPU(), BatchSource(batch), nil)
		if err != nil {
			t.Fatal(err)
		}
		good := filepath.Join(dir, string(method))
		if err := f.Save(good); err != nil {
			t.Fatal(err)
		}
		cases := tests
		if method == KFAC {
			cases = append(cases[:len(cases):len(cases)], struct {
				name   string
				tamper func(ts []safetensors.Tensor)
				want   string
			}{"K-FAC lambda not the outer product", func(ts []safetensors.Tensor) {
				mapF64(ts, "head.lambda", func(i int, v float64) float64 { return v * float64(1+i%2) })
			}, `layer "head": tensor head.lambda: K-FAC Λ[0,1]`})
		}
		for _, tc := range cases {
			t.Run(string(method)+"/"+tc.name, func(t *testing.T) {
				ts, meta := readTensors(t, good)
				tc.tamper(ts)
				bad := filepath.Join(dir, "bad")
				if err := safetensors.WriteFile(bad, ts, meta); err != nil {
					t.Fatal(err)
				}
				_, err := Load(bad)
				switch {
				case tc.want == "" && err != nil:
					t.Fatalf("Load: %v", err)
				case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
			})
		}
	}
}

// readTensors returns copies of the tensors and metadata of a file.
func readTensors(t testing.TB, path string) ([]safetensors.Tensor, map[string]string) {
	t.Helper()
	sf, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	var ts []safetensors.Tensor
	for _, name := range sf.Names() {
		info, _ := sf.Info(name)
		ts = append(ts, safetensors.Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), sf.Bytes(name)...)})
	}
	meta := map[string]string{}
	for k, v := range sf.Metadata {
		meta[k] = v
	}
	return ts, meta
}

// mapF64 replaces every element v of the F64 tensor name by fn(i, v), in
// order of i.
func mapF64(ts []safetensors.Tensor, name string, fn func(i int, v float64) float64) {
	for _, t := range ts {
		if t.Name != name {
			continue
		}
		old := append([]byte(nil), t.Data...)
		for i := 0; i < len(t.Data)/8; i++ {
			v := math.Float64frombits(binary.LittleEndian.Uint64(old[8*i:]))
			binary.LittleEndian.PutUint64(t.Data[8*i:], math.Float64bits(fn(i, v)))
		}
		return
	}
	panic("no tensor " + name)
}
