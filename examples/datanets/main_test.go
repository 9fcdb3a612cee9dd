package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestGamingClaims runs both worlds in full and asserts the measured
// gaming claims: ten copies of a contributor's data earn it at most 1.1
// times what one copy earns (exact duplicates share one credit, and the
// copies change the model and its curvature, which the ratio also
// measures), and a contributor selling an honest contributor's images with
// wrong labels earns less than that contributor. Each world trains its
// own model; two seeds of the split guard against a lucky one.
func TestGamingClaims(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		dir := t.TempDir()
		o := options{Seed: seed, Noise: []float64{0, 0, 0, 0.1, 0.2, 0.4}, Copies: 10, Batches: 4, BatchSize: 50,
			TopK: 10, Fee: 1_000_000, Dir: dir, Plot: filepath.Join(dir, "earnings.png"), Out: io.Discard}
		if testing.Verbose() {
			o.Out = os.Stdout
		}
		res, err := run(context.Background(), o)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		t.Logf("seed %d: copier ×%d / ×1 = %.3f; flipper / twin = %.3f (A), %.3f (B)", seed, o.Copies, res.CopierRatio, res.FlipperRatioA, res.FlipperRatioB)
		if !(res.CopierRatio <= 1.1) {
			t.Errorf("seed %d: the copier earns %.3f× with %d copies what it earns with one, want ≤ 1.1", seed, res.CopierRatio, o.Copies)
		}
		if !(res.FlipperRatioA < 1) || !(res.FlipperRatioB < 1) {
			t.Errorf("seed %d: the label-flipper earns %.3f× (A), %.3f× (B) what its twin earns, want < 1", seed, res.FlipperRatioA, res.FlipperRatioB)
		}
		for _, w := range []*worldResult{res.A, res.B} {
			if w.Receipts != o.Batches {
				t.Errorf("seed %d, world %s: %d receipts verified, want %d", seed, w.Name, w.Receipts, o.Batches)
			}
		}
		if fi, err := os.Stat(o.Plot); err != nil || fi.Size() == 0 {
			t.Errorf("seed %d: no plot: %v", seed, err)
		}
	}
}
