package ekfac

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// FuzzDecode feeds arbitrary bytes to the factors-file decoder: it must
// return factors or an error, never panic, and accepted factors must be
// consistent enough to precondition with.
func FuzzDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(71, 72))
	dir := f.TempDir()
	for _, m := range []Method{EKFAC, KFAC, Diagonal, Identity} {
		fac, err := Fit(context.Background(), m, linalg.CPU(), BatchSource(randomBatch(rng, 6, m == Diagonal || m == Identity)), nil)
		if err != nil {
			f.Fatal(err)
		}
		p := filepath.Join(dir, string(m))
		if err := fac.Save(p); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
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
		for i, lf := range fac.Layers {
			if fac.Method != Identity && lf.Lambda == nil {
				t.Fatalf("layer %d has no Λ", i)
			}
			_ = fac.LayerDamping(i, Damping{Heuristic: true})
		}
	})
}
