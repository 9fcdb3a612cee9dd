package ekfac

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// devScaler is the pure-Go backend with an accel.EKFACScaler that counts
// its calls and scales as a device would, or fails when fail is set.
type devScaler struct {
	linalg.Backend
	calls int
	fail  bool
}

func (d *devScaler) ScaleEKFAC(x, lambda []float64, delta float64) error {
	d.calls++
	if d.fail {
		return errors.New("device: out of memory")
	}
	for i := range x {
		x[i] *= 1 / (lambda[i%len(lambda)] + delta)
	}
	return nil
}

// TestPreconditionOnScaler checks that a backend that scales runs the
// EK-FAC and K-FAC scaling, one call per layer, with the host's result bit
// for bit, and that a failing one leaves the result unchanged.
func TestPreconditionOnScaler(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	fit, q := randomBatch(rng, 30, false), randomBatch(rng, 9, false)
	ctx := context.Background()
	for _, m := range []Method{EKFAC, KFAC} {
		f, err := Fit(ctx, m, linalg.CPU(), BatchSource(fit), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []hessian.Damping{{Heuristic: true}, {Value: 1e-3}} {
			want, err := f.Precondition(ctx, linalg.CPU(), q, ScoreOptions{Damping: d})
			if err != nil {
				t.Fatal(err)
			}
			for _, fail := range []bool{false, true} {
				dev := &devScaler{Backend: linalg.CPU(), fail: fail}
				got, err := f.Precondition(ctx, dev, q, ScoreOptions{Damping: d})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got.Data, want.Data) {
					t.Errorf("%s %v (fail %v): preconditioned gradients differ from the host's", m, d, fail)
				}
				if dev.calls != len(q.Layers) {
					t.Errorf("%s %v (fail %v): %d scaling calls, want one per layer (%d)", m, d, fail, dev.calls, len(q.Layers))
				}
			}
		}
	}
}

// TestNilBackend checks that every entry point taking a backend treats nil
// as linalg.Auto()'s choice, as the rest of the library does, with the
// results of that backend.
func TestNilBackend(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	fit, q := randomBatch(rng, 20, false), randomBatch(rng, 4, false)
	ctx := context.Background()
	be, err := linalg.Auto()
	if err != nil {
		t.Fatal(err)
	}
	want, err := Fit(ctx, EKFAC, be, BatchSource(fit), nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Fit(ctx, EKFAC, nil, BatchSource(fit), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.Layers[0].Lambda.Data, want.Layers[0].Lambda.Data) {
		t.Error("Fit with a nil backend differs from Fit on linalg.Auto()")
	}
	opt := ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
	if _, err := f.Precondition(ctx, nil, q, opt); err != nil {
		t.Errorf("Precondition: %v", err)
	}
	if _, err := f.LayerScores(ctx, nil, q, q, opt); err != nil {
		t.Errorf("LayerScores: %v", err)
	}
	c := NewCovariance(nil)
	if err := c.Add(fit); err != nil {
		t.Errorf("Covariance.Add: %v", err)
	}
}

// TestSentinels checks that errors.Is tells a bad damping from gradients
// that do not fit the factors.
func TestSentinels(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	fit := randomBatch(rng, 20, false)
	f, err := Fit(context.Background(), EKFAC, linalg.CPU(), BatchSource(fit), nil)
	if err != nil {
		t.Fatal(err)
	}
	other := randomBatch(rng, 2, true) // an extra dense layer
	_, parseErr := hessian.ParseDamping("-1")
	_, singular := f.Precondition(context.Background(), linalg.CPU(), fit, ScoreOptions{Damping: hessian.Damping{Value: -1e9}})
	_, mismatch := f.Precondition(context.Background(), linalg.CPU(), other, ScoreOptions{Damping: hessian.Damping{Heuristic: true}})
	for _, tc := range []struct {
		name string
		err  error
		is   error
	}{
		{"parse", parseErr, hessian.ErrDamping},
		{"Λ + δ not positive", singular, hessian.ErrDamping},
		{"layers", mismatch, ErrIncompatible},
	} {
		if !errors.Is(tc.err, tc.is) {
			t.Errorf("%s: %v, want an error matching %v", tc.name, tc.err, tc.is)
		}
	}
}
