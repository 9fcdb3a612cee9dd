package hessian

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
)

// Damping is the δ of (H + δI)⁻¹, for every method of the library: an
// absolute value, or, with Heuristic, a tenth of the mean eigenvalue of the
// curvature it damps (DampingFromTrace): 0.1 × mean(Λ) per layer for
// K-FAC and EK-FAC, 0.1 × trace/k for a projected Hessian. The zero value
// is an explicit δ = 0, never a default in disguise.
type Damping struct {
	Heuristic bool
	Value     float64
}

// ErrDamping marks a damping that is not a finite number ≥ 0 or
// "heuristic", or that leaves the damped curvature not positive definite.
var ErrDamping = errors.New("bad damping")

// ParseDamping parses a number ≥ 0 or "heuristic", as the command line
// gives it.
func ParseDamping(s string) (Damping, error) {
	if s == "heuristic" {
		return Damping{Heuristic: true}, nil
	}
	var v float64
	if _, err := fmt.Sscan(s, &v); err != nil || v < 0 || v != v || v > 1e300 {
		return Damping{}, fmt.Errorf("%w: %q: want a finite number ≥ 0 or \"heuristic\"", ErrDamping, s)
	}
	return Damping{Value: v}, nil
}

// Check returns an error matching ErrDamping unless d is the heuristic or
// a finite value ≥ 0 (> 0 when positive: for a curvature that may be
// singular, as TRAK's ΦᵀΦ is).
func (d Damping) Check(positive bool) error {
	v := d.Value
	switch {
	case d.Heuristic:
		return nil
	case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
		return fmt.Errorf("%w: %v, want a finite δ ≥ 0 or the heuristic", ErrDamping, d)
	case positive && v == 0:
		return fmt.Errorf("%w: %v, want a finite δ > 0 or the heuristic", ErrDamping, d)
	}
	return nil
}

// Resolve returns δ for a curvature of the given trace and dimension: the
// value, or the heuristic DampingFromTrace(trace, dim).
func (d Damping) Resolve(trace float64, dim int) float64 {
	if d.Heuristic {
		return DampingFromTrace(trace, dim)
	}
	return d.Value
}

func (d Damping) String() string {
	if d.Heuristic {
		return "heuristic"
	}
	return fmt.Sprint(d.Value)
}

// DampingFromTrace returns the heuristic δ = 0.1 × trace/dim, a tenth of the
// mean eigenvalue.
func DampingFromTrace(trace float64, dim int) float64 {
	return 0.1 * trace / float64(max(dim, 1))
}

// Tracer is an Operator that knows its exact trace (Dense does).
type Tracer interface {
	Trace() float64
}

const traceStream = 0x7472616365 // "trace"

// Trace returns trace(H): exactly when op is a Tracer or probes ≥ Dim (one
// product per unit vector, in a block), otherwise by Hutchinson's estimator
// E[zᵀHz] over probes seeded Rademacher vectors z, whose standard error is
// about ‖H‖_F·√(2/probes).
func Trace(ctx context.Context, op Operator, probes int, seed uint64) (float64, error) {
	if t, ok := op.(Tracer); ok {
		return t.Trace(), nil
	}
	dim := op.Dim()
	if probes < 1 {
		return 0, fmt.Errorf("hessian: trace: %d probes, need ≥ 1", probes)
	}
	exact := probes >= dim
	if exact {
		probes = dim
	}
	z := linalg.NewDense64(probes, dim, nil)
	if exact {
		for i := 0; i < dim; i++ {
			z.Set(i, i, 1)
		}
	} else {
		rng := rand.New(rand.NewPCG(seed, traceStream))
		for i := range z.Data {
			z.Data[i] = float64(1 - 2*int(rng.Uint64()&1))
		}
	}
	hz := linalg.NewDense64(probes, dim, nil)
	if err := ApplyMany(ctx, op, z, hz); err != nil {
		return 0, fmt.Errorf("hessian: trace: %w", err)
	}
	var t float64
	for i := 0; i < probes; i++ {
		t += floats.Dot(z.Row(i), hz.Row(i))
	}
	if !exact {
		t /= float64(probes)
	}
	if !finite(t) {
		return 0, fmt.Errorf("hessian: trace: %w: %v", ErrNotFinite, t)
	}
	return t, nil
}

// HeuristicDamping returns 0.1 × trace(H)/Dim with the trace from Trace.
func HeuristicDamping(ctx context.Context, op Operator, probes int, seed uint64) (float64, error) {
	t, err := Trace(ctx, op, probes, seed)
	if err != nil {
		return 0, err
	}
	return DampingFromTrace(t, op.Dim()), nil
}
