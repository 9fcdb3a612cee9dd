package gradients

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// devProjector is the pure-Go backend with an accel.Projector that counts
// its calls and computes on the host, or fails when fail is set.
type devProjector struct {
	linalg.Backend
	calls int
	fail  bool
}

func (d *devProjector) run(kind ProjectionKind, dst, x []float64, dim, k int, seed uint64, stream uint32) error {
	d.calls++
	if d.fail {
		return errors.New("device: out of memory")
	}
	pr := newProjector(kind, k, seed, stream)
	return pr.project(context.Background(), x, dim, dst)
}

func (d *devProjector) ProjectRademacher(dst, x []float64, dim, k int, seed uint64, stream uint32) error {
	return d.run(Rademacher, dst, x, dim, k, seed, stream)
}

func (d *devProjector) ProjectSJLT(dst, x []float64, dim, k int, seed uint64, stream uint32) error {
	return d.run(SJLT, dst, x, dim, k, seed, stream)
}

// TestApplyWithBackend checks that a backend with accel.Projector runs the
// Rademacher, SJLT and Kronecker products, with the host's result, that
// Gaussian stays on the host, and that a failing device falls back to it.
func TestApplyWithBackend(t *testing.T) {
	b := mixed(5)
	fact := mixed(5)
	fact.Layers = []Layer{fact.Layers[0], fact.Layers[2]}
	tests := []struct {
		p     Projection
		b     *Batch
		calls int // device calls per Apply
	}{
		{Projection{Kind: Rademacher, K: 7, Seed: 3}, b, 4},
		{Projection{Kind: SJLT, K: 5, Seed: 4}, b, 4},
		{Projection{Kind: Kronecker, KIn: 2, KOut: 3, Seed: 5}, fact, 4},
		{Projection{Kind: Gaussian, K: 3, Seed: 6}, b, 0},
	}
	for _, tc := range tests {
		want, err := tc.p.Apply(context.Background(), tc.b)
		if err != nil {
			t.Fatal(err)
		}
		for _, fail := range []bool{false, true} {
			dev := &devProjector{Backend: linalg.CPU(), fail: fail}
			got, err := tc.p.ApplyWith(context.Background(), tc.b, ApplyOptions{Backend: dev})
			if err != nil {
				t.Fatalf("%v (fail %v): %v", tc.p.Kind, fail, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%v (fail %v): result differs from the host's", tc.p.Kind, fail)
			}
			if dev.calls != tc.calls {
				t.Errorf("%v (fail %v): %d device calls, want %d", tc.p.Kind, fail, dev.calls, tc.calls)
			}
		}
	}
}
