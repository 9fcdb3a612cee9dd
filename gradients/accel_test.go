package gradients

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// deviceMark is what devProjector writes for every projected value, so that
// a test can tell the device's results from the host's.
const deviceMark = 7

// devProjector is the pure-Go backend with an accel.Projector that counts
// its calls and writes deviceMark, or fails when fail is set.
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
	if len(dst) != len(x)/dim*k {
		return errors.New("device: dst of the wrong size")
	}
	for i := range dst {
		dst[i] = deviceMark
	}
	return nil
}

func (d *devProjector) ProjectRademacher(dst, x []float64, dim, k int, seed uint64, stream uint32) error {
	return d.run(Rademacher, dst, x, dim, k, seed, stream)
}

func (d *devProjector) ProjectSJLT(dst, x []float64, dim, k int, seed uint64, stream uint32) error {
	return d.run(SJLT, dst, x, dim, k, seed, stream)
}

// TestApplyWithBackend checks that a backend with accel.Projector runs the
// Rademacher, SJLT and Kronecker products (its values are the result), that
// Gaussian stays on the host, and that a failing device falls back to the
// host's result.
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
			onDevice := tc.calls > 0 && !fail
			if !onDevice && !reflect.DeepEqual(got, want) {
				t.Errorf("%v (fail %v): result differs from the host's", tc.p.Kind, fail)
			}
			if onDevice {
				for _, l := range got.Layers {
					for _, v := range append(append(slices.Clone(l.Grad), l.A...), l.S...) {
						if v != deviceMark {
							t.Fatalf("%v: layer %s holds %v, not the device's values", tc.p.Kind, l.Name, v)
						}
					}
				}
			}
			if dev.calls != tc.calls {
				t.Errorf("%v (fail %v): %d device calls, want %d", tc.p.Kind, fail, dev.calls, tc.calls)
			}
		}
	}
}
