package hessian

import (
	"errors"
	"fmt"
	"math"

	"github.com/goinfluence/goinfluence/linalg"
)

// Report describes one solve: how far each right-hand side got and what the
// method learnt about the spectrum.
type Report struct {
	// Method is "cg", "lissa", "arnoldi", "nystrom" or "datainf".
	Method string
	// Iterations holds, per right-hand side, the CG iterations or LiSSA steps
	// it ran (the most over repeats); for Arnoldi the one entry is the
	// Krylov dimension reached.
	Iterations []int
	// Residuals holds, per right-hand side, the final relative residual
	// ‖b − (H+δI)x‖/‖b‖: computed afresh for CG; for LiSSA the last step's
	// ‖x_J − x_{J−1}‖/‖b‖, an upper bound on it when the steps are full-batch
	// (the residual of x_J is (I − (H+δI)/s) times that step).
	Residuals []float64
	// Eigenvalues holds the eigenvalues of H (without δ) that Arnoldi or
	// Nyström kept, largest magnitude first.
	Eigenvalues []float64
	// Damping holds DataInf's λ_l, one per layer.
	Damping []float64
	// HVPs counts Hessian-vector products (a block of k counts k).
	HVPs int
}

// Sentinel errors wrapped by *Error; test for them with errors.Is.
var (
	// ErrIndefinite: the operator plus damping is not positive definite
	// along some direction (non-positive curvature, or an eigenvalue λ+δ ≤ 0).
	ErrIndefinite = errors.New("operator is not positive definite")
	// ErrDiverged: LiSSA's iterates grow (its scale is too small).
	ErrDiverged = errors.New("iteration diverged")
	// ErrNotConverged: the tolerance was not met in the allowed iterations.
	ErrNotConverged = errors.New("did not converge")
	// ErrNotFinite: an input or an intermediate value is NaN or infinite.
	ErrNotFinite = errors.New("non-finite value")
)

// Error is a failed solve: which method, which right-hand side (a row of the
// block) and which step.
type Error struct {
	Method string
	RHS    int // row of the right-hand side; −1 when not about one
	Step   int // 1-based iteration; 0 when not inside the iteration
	Err    error
}

func (e *Error) Error() string {
	s := "hessian: " + e.Method
	if e.RHS >= 0 {
		s += fmt.Sprintf(": right-hand side %d", e.RHS)
	}
	if e.Step > 0 {
		s += fmt.Sprintf(": step %d", e.Step)
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func newError(method string, rhs, step int, err error) *Error {
	return &Error{Method: method, RHS: rhs, Step: step, Err: err}
}

// checkRHS validates a block of right-hand sides against the operator.
func checkRHS(method string, op Operator, b *linalg.Dense64) error {
	if op == nil {
		return newError(method, -1, 0, errors.New("no operator"))
	}
	if b.Cols != op.Dim() {
		return newError(method, -1, 0, fmt.Errorf("right-hand sides have dimension %d, operator %d", b.Cols, op.Dim()))
	}
	for i := 0; i < b.Rows; i++ {
		if j, v, ok := firstNonFinite(b.Row(i)); ok {
			return newError(method, i, 0, fmt.Errorf("%w: element %d is %v", ErrNotFinite, j, v))
		}
	}
	return nil
}

// checkDamping rejects a negative or non-finite δ.
func checkDamping(method string, d float64) error {
	if d < 0 || math.IsNaN(d) || math.IsInf(d, 0) {
		return newError(method, -1, 0, fmt.Errorf("%w: damping %v must be finite and ≥ 0", ErrDamping, d))
	}
	return nil
}

func firstNonFinite(v []float64) (int, float64, bool) {
	for j, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return j, x, true
		}
	}
	return 0, 0, false
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// axpy computes y += alpha·x.
func axpy(alpha float64, x, y []float64) {
	for i, v := range x {
		y[i] += alpha * v
	}
}
