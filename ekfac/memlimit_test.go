package ekfac

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// TestFitMemoryLimit holds FitWithOptions to refusing, before allocating,
// factors that do not fit in MemoryLimit, naming the layer and the part.
func TestFitMemoryLimit(t *testing.T) {
	b := &gradients.Batch{N: 2, Layers: []gradients.Layer{
		{Name: "fc1", DIn: 100, DOut: 3, Tokens: 1, A: make([]float64, 200), S: make([]float64, 6)},
	}}
	for i := range b.Layers[0].A {
		b.Layers[0].A[i] = float64(i % 5)
	}
	for i := range b.Layers[0].S {
		b.Layers[0].S[i] = 1
	}
	for _, tc := range []struct {
		method Method
		limit  int64
		want   string // "" for success
	}{
		{EKFAC, 50 << 10, "layer fc1: covariance A needs 78.1 KiB (100² float64), over the memory limit of 50 KiB"},
		{KFAC, 100 << 10, "layer fc1: eigendecomposition of covariance A needs 312 KiB (4 × 100² float64)"},
		{Diagonal, 2 << 10, "layer fc1: Λ needs 2.34 KiB (3 × 100 float64)"},
		{EKFAC, 1 << 20, ""},
		{EKFAC, linalg.NoMemoryLimit, ""},
		{Diagonal, 0, ""},
	} {
		_, err := FitWithOptions(context.Background(), tc.method, linalg.CPU(), BatchSource(b), FitOptions{MemoryLimit: tc.limit})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s, limit %d: %v", tc.method, tc.limit, err)
			}
			continue
		}
		if !errors.Is(err, linalg.ErrMemoryLimit) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s, limit %d: err = %v, want %q", tc.method, tc.limit, err, tc.want)
		}
	}
}
