package linalg

import (
	"errors"
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/lapack"
	lapackgonum "gonum.org/v1/gonum/lapack/gonum"
)

func init() {
	Register("cpu", 10, func() (Backend, error) { return CPU(), nil })
}

// CPU returns the pure-Go backend, built on gonum's BLAS and LAPACK. It
// always works and is the fallback of Default.
//
// GEMM runs on gonum's kernels, which compute the blocks of C on up to
// GOMAXPROCS goroutines but always sum along k in the same order on one
// goroutine, so results do not depend on GOMAXPROCS. Eigh uses gonum's
// QR-iteration Dsyev, which is serial and slow beyond a few hundred rows;
// prefer openblas there.
func CPU() Backend { return cpuBackend{} }

type cpuBackend struct{}

var (
	gblas   gonum.Implementation
	glapack lapackgonum.Implementation
)

func (cpuBackend) Name() string { return "cpu" }

func blasTrans(t Transpose) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

func (cpuBackend) Sgemm(tA, tB Transpose, alpha float32, a, b *Dense32, beta float32, c *Dense32) {
	m, n, k, ok := gemmStart("Sgemm", tA, tB, alpha, a, b, beta, c)
	if !ok {
		return
	}
	gblas.Sgemm(blasTrans(tA), blasTrans(tB), m, n, k, alpha, a.Data, a.Stride, b.Data, b.Stride, beta, c.Data, c.Stride)
}

func (cpuBackend) Dgemm(tA, tB Transpose, alpha float64, a, b *Dense64, beta float64, c *Dense64) {
	m, n, k, ok := gemmStart("Dgemm", tA, tB, alpha, a, b, beta, c)
	if !ok {
		return
	}
	gblas.Dgemm(blasTrans(tA), blasTrans(tB), m, n, k, alpha, a.Data, a.Stride, b.Data, b.Stride, beta, c.Data, c.Stride)
}

// covBlock is the height of the row bands in which CovAccumulate computes the
// upper triangle. It is fixed, not derived from GOMAXPROCS, so that results
// do not depend on the thread count.
const covBlock = 64

// CovAccumulate computes the upper triangle of XᵀX band by band with GEMM,
// which gonum runs in parallel (its Dsyrk is serial), then mirrors it so that
// c stays exactly symmetric.
func (cpuBackend) CovAccumulate(c *Dense64, x *Dense64) {
	checkDense("CovAccumulate", "C", c)
	checkDense("CovAccumulate", "X", x)
	n := covDims("CovAccumulate", c.Rows, c.Cols, x.Rows, x.Cols)
	m := x.Rows
	if n == 0 || m == 0 {
		return
	}
	for r0 := 0; r0 < n; r0 += covBlock {
		r1 := min(r0+covBlock, n)
		// C[r0:r1, r0:n] += X[:, r0:r1]ᵀ · X[:, r0:n]
		gblas.Dgemm(blas.Trans, blas.NoTrans, r1-r0, n-r0, m,
			1, x.Data[r0:], x.Stride, x.Data[r0:], x.Stride,
			1, c.Data[r0*c.Stride+r0:], c.Stride)
	}
	mirrorUpper(c)
}

// CovAccumulate32 forms XᵀX in float32 (upper triangle, as CovAccumulate) in
// a scratch matrix and adds it to c in float64. Within one call the sums are
// float32 sums over the m rows of x; across calls they are float64.
func (cpuBackend) CovAccumulate32(c *Dense64, x *Dense32) {
	checkDense("CovAccumulate32", "C", c)
	checkDense("CovAccumulate32", "X", x)
	n := covDims("CovAccumulate32", c.Rows, c.Cols, x.Rows, x.Cols)
	m := x.Rows
	if n == 0 || m == 0 {
		return
	}
	s := make([]float32, n*n)
	for r0 := 0; r0 < n; r0 += covBlock {
		r1 := min(r0+covBlock, n)
		gblas.Sgemm(blas.Trans, blas.NoTrans, r1-r0, n-r0, m,
			1, x.Data[r0:], x.Stride, x.Data[r0:], x.Stride,
			0, s[r0*n+r0:], n)
	}
	addUpper32(c, s)
}

// addUpper32 adds the upper triangle of the compact n×n s to c and mirrors.
func addUpper32(c *Dense64, s []float32) {
	n := c.Rows
	for i := 0; i < n; i++ {
		dst := c.Data[i*c.Stride+i : i*c.Stride+n]
		for j, v := range s[i*n+i : i*n+n] {
			dst[j] += float64(v)
		}
	}
	mirrorUpper(c)
}

// CholeskySolve reads only the lower triangle of a.
func (cpuBackend) CholeskySolve(a *Dense64, b *Dense64) error {
	n := solveDims("CholeskySolve", a, b)
	if n == 0 {
		return nil
	}
	l, err := lowerCopy("CholeskySolve", a)
	if err != nil {
		return err
	}
	if !glapack.Dpotrf(blas.Lower, n, l.Data, n) {
		return fmt.Errorf("linalg: CholeskySolve: %w (%d×%d)", ErrNotPositiveDefinite, n, n)
	}
	if b.Cols == 0 {
		return nil
	}
	glapack.Dpotrs(blas.Lower, n, b.Cols, l.Data, n, b.Data, b.Stride)
	return nil
}

var errNoConvergence = errors.New("linalg: Eigh: eigenvalue iteration did not converge")

// Eigh reads only the lower triangle of a.
func (cpuBackend) Eigh(a *Dense64) ([]float64, *Dense64, error) {
	v, err := eighInput(a)
	if err != nil {
		return nil, nil, err
	}
	n := a.Rows
	if n == 0 {
		return []float64{}, NewDense64(0, 0, nil), nil
	}
	w := make([]float64, n)
	work := make([]float64, 1)
	glapack.Dsyev(lapack.EVCompute, blas.Lower, n, v.Data, n, w, work, -1)
	work = make([]float64, int(work[0]))
	// In row-major storage Dsyev leaves the eigenvectors in the columns.
	if !glapack.Dsyev(lapack.EVCompute, blas.Lower, n, v.Data, n, w, work, len(work)) {
		return nil, nil, errNoConvergence
	}
	return w, v, nil
}

func (cpuBackend) F16ToF32(dst []float32, src []uint16)  { F16ToF32(dst, src) }
func (cpuBackend) BF16ToF32(dst []float32, src []uint16) { BF16ToF32(dst, src) }
func (cpuBackend) F32ToF16(dst []uint16, src []float32)  { F32ToF16(dst, src) }
func (cpuBackend) F32ToBF16(dst []uint16, src []float32) { F32ToBF16(dst, src) }
