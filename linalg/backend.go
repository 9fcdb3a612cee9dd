package linalg

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
)

// Transpose says whether a GEMM operand is used as stored or transposed.
type Transpose bool

const (
	NoTrans Transpose = false
	Trans   Transpose = true
)

// ErrNotPositiveDefinite is returned by CholeskySolve when the matrix has no
// Cholesky factor (it is not symmetric positive definite to working precision).
var ErrNotPositiveDefinite = errors.New("linalg: matrix is not positive definite")

// ErrNotFinite is returned by CholeskySolve and Eigh when the part of the
// matrix they read holds a NaN or an infinity. LAPACK routines do not all
// detect such input, so it is checked up front.
var ErrNotFinite = errors.New("linalg: matrix has a non-finite element")

// Backend is the set of dense kernels the rest of the library runs on. Every
// implementation must return the same results as the float64 reference to
// rounding, whatever its thread count: work may be split over output blocks,
// never over a reduction in a way that depends on the number of workers.
//
// Shape mismatches are programming errors and panic, as in gonum's mat.
type Backend interface {
	// Name identifies the backend ("cpu", "openblas", "cuda").
	Name() string

	// Sgemm computes C = alpha·op(A)·op(B) + beta·C in float32.
	Sgemm(tA, tB Transpose, alpha float32, a, b *Dense32, beta float32, c *Dense32)
	// Dgemm computes C = alpha·op(A)·op(B) + beta·C in float64.
	Dgemm(tA, tB Transpose, alpha float64, a, b *Dense64, beta float64, c *Dense64)

	// CovAccumulate adds XᵀX to the symmetric n×n matrix c, where x is
	// m×n (one sample a row). Both triangles of c are updated. Sums are
	// unnormalised so that batches add up.
	CovAccumulate(c *Dense64, x *Dense64)
	// CovAccumulate32 is CovAccumulate for float32 samples; the products are
	// accumulated in float32 within a call and added to c in float64.
	CovAccumulate32(c *Dense64, x *Dense32)

	// CholeskySolve solves A·X = B for symmetric positive definite A (n×n),
	// overwriting b (n×k) with X. A is not modified. It returns
	// ErrNotPositiveDefinite (wrapped) when A has no Cholesky factor.
	CholeskySolve(a *Dense64, b *Dense64) error
	// Eigh returns the eigenvalues of the symmetric matrix a in ascending
	// order and a matrix whose columns are the matching orthonormal
	// eigenvectors. Only the values of a are read; a is not modified.
	Eigh(a *Dense64) (values []float64, vectors *Dense64, err error)

	// F16ToF32, BF16ToF32, F32ToF16 and F32ToBF16 convert element by element;
	// dst and src have the same length. Narrowing rounds to nearest even.
	F16ToF32(dst []float32, src []uint16)
	BF16ToF32(dst []float32, src []uint16)
	F32ToF16(dst []uint16, src []float32)
	F32ToBF16(dst []uint16, src []float32)
}

// Driver opens a backend. It returns an error when the backend cannot run on
// this machine (library missing, no device).
type Driver func() (Backend, error)

var (
	regMu    sync.Mutex
	registry = map[string]*registered{}
)

type registered struct {
	open     Driver
	priority int
	once     sync.Once
	b        Backend
	err      error
}

// Register makes a backend available to Open and Auto under name. Higher
// priority wins in Auto. Backends register themselves in an init function,
// as database/sql drivers do. Register panics if name is taken.
func Register(name string, priority int, open Driver) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("linalg: Register called twice for backend " + name)
	}
	registry[name] = &registered{open: open, priority: priority}
}

// Backends returns the names of the registered backends, best first.
func Backends() []string {
	regMu.Lock()
	defer regMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		pi, pj := registry[names[i]].priority, registry[names[j]].priority
		if pi != pj {
			return pi > pj
		}
		return names[i] < names[j]
	})
	return names
}

// Open returns the named backend. It is opened (its library loaded) once;
// later calls return the same backend or the same error.
func Open(name string) (Backend, error) {
	regMu.Lock()
	r, ok := registry[name]
	regMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("linalg: unknown backend %q (have %v)", name, Backends())
	}
	r.once.Do(func() { r.b, r.err = r.open() })
	return r.b, r.err
}

// EnvBackend is the environment variable that forces a backend in Auto.
const EnvBackend = "GOINFLUENCE_BACKEND"

// Auto returns the best backend that opens on this machine: the one named by
// $GOINFLUENCE_BACKEND when set (an error if it cannot open), else the
// registered backend of highest priority that opens. The pure-Go CPU backend
// always opens, so Auto without the variable never fails.
func Auto() (Backend, error) {
	if name := os.Getenv(EnvBackend); name != "" && name != "auto" {
		b, err := Open(name)
		if err != nil {
			return nil, fmt.Errorf("linalg: %s=%s: %w", EnvBackend, name, err)
		}
		return b, nil
	}
	var errs []error
	for _, name := range Backends() {
		b, err := Open(name)
		if err == nil {
			return b, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("linalg: no backend opens: %w", errors.Join(errs...))
}

// Default returns the backend Auto picks, for callers that have nowhere to
// put an error: library functions taking an optional backend resolve a nil
// one with Default (or OrAuto) once, where they are called, and pass it
// down, so that the backend a program chose governs all of the work.
//
// Without $GOINFLUENCE_BACKEND, Auto cannot fail (the pure-Go CPU backend
// always opens) and neither can Default. A forced backend that cannot open
// is an error everywhere, never a silent fallback to another backend (which
// would run a GPU job on the CPU without a word), so Default then panics
// with Auto's error. Programs that honour the variable call Auto once at
// start-up to report it as an error instead, as the goinfluence command
// does; after that Default cannot fail in them.
func Default() Backend {
	b, err := Auto()
	if err != nil {
		panic(err)
	}
	return b
}

// OrAuto returns be, or, when be is nil, the backend Auto picks: the way a
// function that takes an optional backend and returns an error resolves it
// at its entry, so that a forced backend that cannot open is returned as
// that function's error.
func OrAuto(be Backend) (Backend, error) {
	if be != nil {
		return be, nil
	}
	return Auto()
}
