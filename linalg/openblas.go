//go:build (linux || darwin) && (amd64 || arm64)

package linalg

import (
	"errors"
	"fmt"
	"math"
	"runtime"

	"github.com/ebitengine/purego"
)

func init() {
	Register("openblas", 20, func() (Backend, error) { return loadOpenBLAS(openBLASNames...) })
}

// openBLASNames are the libraries tried in turn; the first is named in errors.
var openBLASNames = func() []string {
	if runtime.GOOS == "darwin" {
		return []string{
			"libopenblas.0.dylib",
			"libopenblas.dylib",
			"/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
			"/usr/local/opt/openblas/lib/libopenblas.dylib",
		}
	}
	return []string{"libopenblas.so.0", "libopenblas.so"}
}()

// CBLAS enumerations.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
	cblasUpper    = 121
)

// openBLAS calls OpenBLAS through purego, so it needs no cgo. Integers are
// 32-bit: the LP64 build that distributions ship. The LAPACK routines take
// the Fortran ABI: every argument by pointer, column-major storage and a
// hidden length after the arguments for each character argument.
//
// Go pointers handed to C point into the Go heap, which does not move, and
// C keeps none of them after the call returns.
type openBLAS struct {
	sgemm func(order, tA, tB, m, n, k int32, alpha float32, a *float32, lda int32, b *float32, ldb int32, beta float32, c *float32, ldc int32)
	dgemm func(order, tA, tB, m, n, k int32, alpha float64, a *float64, lda int32, b *float64, ldb int32, beta float64, c *float64, ldc int32)
	ssyrk func(order, uplo, trans, n, k int32, alpha float32, a *float32, lda int32, beta float32, c *float32, ldc int32)
	dsyrk func(order, uplo, trans, n, k int32, alpha float64, a *float64, lda int32, beta float64, c *float64, ldc int32)

	dpotrf func(uplo *byte, n *int32, a *float64, lda, info *int32, uploLen uintptr)
	dpotrs func(uplo *byte, n, nrhs *int32, a *float64, lda *int32, b *float64, ldb, info *int32, uploLen uintptr)
	dsyevd func(jobz, uplo *byte, n *int32, a *float64, lda *int32, w, work *float64, lwork, iwork, liwork, info *int32, jobzLen, uploLen uintptr)

	// corename names the kernels OpenBLAS chose for this CPU, or those
	// that OPENBLAS_CORETYPE forced; nil where the library lacks it.
	corename func() string
}

// loadOpenBLAS opens the first of names that loads and binds its symbols.
func loadOpenBLAS(names ...string) (*openBLAS, error) {
	if len(names) == 0 {
		return nil, errors.New("linalg: openblas: no library name")
	}
	var (
		h     uintptr
		lib   string
		first error
	)
	for _, name := range names {
		var err error
		h, err = purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			lib = name
			break
		}
		if first == nil {
			first = err
		}
	}
	if h == 0 {
		return nil, fmt.Errorf("linalg: openblas: %s not found: %w", names[0], first)
	}
	o := new(openBLAS)
	syms := []struct {
		name string
		fn   any
	}{
		{"cblas_sgemm", &o.sgemm},
		{"cblas_dgemm", &o.dgemm},
		{"cblas_ssyrk", &o.ssyrk},
		{"cblas_dsyrk", &o.dsyrk},
		{"dpotrf_", &o.dpotrf},
		{"dpotrs_", &o.dpotrs},
		{"dsyevd_", &o.dsyevd},
	}
	for _, s := range syms {
		addr, err := purego.Dlsym(h, s.name)
		if err != nil {
			purego.Dlclose(h)
			return nil, fmt.Errorf("linalg: openblas: %s: missing symbol %s", lib, s.name)
		}
		purego.RegisterFunc(s.fn, addr)
	}
	if addr, err := purego.Dlsym(h, "openblas_get_corename"); err == nil {
		purego.RegisterFunc(&o.corename, addr)
	}
	return o, nil
}

// Core returns the name of the kernels OpenBLAS runs ("Haswell",
// "SkylakeX", …), which decide the order in which it sums products, or ""
// where the library does not say.
func (o *openBLAS) Core() string {
	if o.corename == nil {
		return ""
	}
	return o.corename()
}

func (*openBLAS) Name() string { return "openblas" }

// i32 converts a dimension for C, panicking where the LP64 interface cannot
// describe it.
func i32(op string, v int) int32 {
	if v > math.MaxInt32 {
		panic(fmt.Sprintf("linalg: %s: dimension %d too large for 32-bit BLAS", op, v))
	}
	return int32(v)
}

func cblasOp(t Transpose) int32 {
	if t {
		return cblasTrans
	}
	return cblasNoTrans
}

func (o *openBLAS) Sgemm(tA, tB Transpose, alpha float32, a, b *Dense32, beta float32, c *Dense32) {
	m, n, k, ok := gemmStart("Sgemm", tA, tB, alpha, a, b, beta, c)
	if !ok {
		return
	}
	o.sgemm(cblasRowMajor, cblasOp(tA), cblasOp(tB), i32("Sgemm", m), i32("Sgemm", n), i32("Sgemm", k),
		alpha, &a.Data[0], i32("Sgemm", a.Stride), &b.Data[0], i32("Sgemm", b.Stride),
		beta, &c.Data[0], i32("Sgemm", c.Stride))
	runtime.KeepAlive(a.Data)
	runtime.KeepAlive(b.Data)
	runtime.KeepAlive(c.Data)
}

func (o *openBLAS) Dgemm(tA, tB Transpose, alpha float64, a, b *Dense64, beta float64, c *Dense64) {
	m, n, k, ok := gemmStart("Dgemm", tA, tB, alpha, a, b, beta, c)
	if !ok {
		return
	}
	o.dgemm(cblasRowMajor, cblasOp(tA), cblasOp(tB), i32("Dgemm", m), i32("Dgemm", n), i32("Dgemm", k),
		alpha, &a.Data[0], i32("Dgemm", a.Stride), &b.Data[0], i32("Dgemm", b.Stride),
		beta, &c.Data[0], i32("Dgemm", c.Stride))
	runtime.KeepAlive(a.Data)
	runtime.KeepAlive(b.Data)
	runtime.KeepAlive(c.Data)
}

// CovAccumulate updates the upper triangle with dsyrk and mirrors it.
func (o *openBLAS) CovAccumulate(c *Dense64, x *Dense64) {
	checkDense("CovAccumulate", "C", c)
	checkDense("CovAccumulate", "X", x)
	n := covDims("CovAccumulate", c.Rows, c.Cols, x.Rows, x.Cols)
	if n == 0 || x.Rows == 0 {
		return
	}
	o.dsyrk(cblasRowMajor, cblasUpper, cblasTrans, i32("CovAccumulate", n), i32("CovAccumulate", x.Rows),
		1, &x.Data[0], i32("CovAccumulate", x.Stride), 1, &c.Data[0], i32("CovAccumulate", c.Stride))
	runtime.KeepAlive(x.Data)
	runtime.KeepAlive(c.Data)
	mirrorUpper(c)
}

// CovAccumulate32 forms XᵀX in float32 with ssyrk into a scratch matrix and
// adds it to c in float64.
func (o *openBLAS) CovAccumulate32(c *Dense64, x *Dense32) {
	checkDense("CovAccumulate32", "C", c)
	checkDense("CovAccumulate32", "X", x)
	n := covDims("CovAccumulate32", c.Rows, c.Cols, x.Rows, x.Cols)
	if n == 0 || x.Rows == 0 {
		return
	}
	s := make([]float32, n*n)
	o.ssyrk(cblasRowMajor, cblasUpper, cblasTrans, i32("CovAccumulate32", n), i32("CovAccumulate32", x.Rows),
		1, &x.Data[0], i32("CovAccumulate32", x.Stride), 0, &s[0], i32("CovAccumulate32", n))
	runtime.KeepAlive(x.Data)
	runtime.KeepAlive(s)
	addUpper32(c, s)
}

// The row-major lower triangle that CholeskySolve and Eigh read is, seen
// column-major, the upper triangle, hence uplo 'U' in the LAPACK calls.

// CholeskySolve reads only the lower triangle of a.
func (o *openBLAS) CholeskySolve(a *Dense64, b *Dense64) error {
	n := solveDims("CholeskySolve", a, b)
	if n == 0 {
		return nil
	}
	l, err := lowerCopy("CholeskySolve", a)
	if err != nil {
		return err
	}
	uplo := byte('U')
	nn := i32("CholeskySolve", n)
	var info int32
	o.dpotrf(&uplo, &nn, &l.Data[0], &nn, &info, 1)
	switch {
	case info > 0:
		return fmt.Errorf("linalg: CholeskySolve: %w (%d×%d, leading minor %d)", ErrNotPositiveDefinite, n, n, info)
	case info < 0:
		panic(fmt.Sprintf("linalg: openblas: dpotrf argument %d invalid", -info))
	}
	k := b.Cols
	if k == 0 {
		return nil
	}
	// LAPACK wants B column-major: transpose into scratch and back.
	bc := make([]float64, n*k)
	transposeInto(bc, n, b.Data, b.Stride, n, k)
	nrhs := i32("CholeskySolve", k)
	o.dpotrs(&uplo, &nn, &nrhs, &l.Data[0], &nn, &bc[0], &nn, &info, 1)
	runtime.KeepAlive(l.Data)
	runtime.KeepAlive(bc)
	if info < 0 {
		panic(fmt.Sprintf("linalg: openblas: dpotrs argument %d invalid", -info))
	}
	transposeInto(b.Data, b.Stride, bc, n, k, n)
	return nil
}

// Eigh reads only the lower triangle of a.
func (o *openBLAS) Eigh(a *Dense64) ([]float64, *Dense64, error) {
	s, err := eighInput(a)
	if err != nil {
		return nil, nil, err
	}
	n := a.Rows
	if n == 0 {
		return []float64{}, NewDense64(0, 0, nil), nil
	}
	jobz, uplo := byte('V'), byte('U')
	nn := i32("Eigh", n)
	w := make([]float64, n)
	var (
		info   int32
		lwork  = int32(-1)
		liwork = int32(-1)
		qwork  [1]float64
		qiwork [1]int32
		sd, wd = &s.Data[0], &w[0]
	)
	o.dsyevd(&jobz, &uplo, &nn, sd, &nn, wd, &qwork[0], &lwork, &qiwork[0], &liwork, &info, 1, 1)
	if info != 0 {
		panic(fmt.Sprintf("linalg: openblas: dsyevd workspace query: info %d", info))
	}
	work := make([]float64, max(1, int(qwork[0])))
	iwork := make([]int32, max(1, int(qiwork[0])))
	lwork, liwork = i32("Eigh", len(work)), i32("Eigh", len(iwork))
	o.dsyevd(&jobz, &uplo, &nn, sd, &nn, wd, &work[0], &lwork, &iwork[0], &liwork, &info, 1, 1)
	runtime.KeepAlive(s.Data)
	runtime.KeepAlive(w)
	runtime.KeepAlive(work)
	runtime.KeepAlive(iwork)
	switch {
	case info > 0:
		return nil, nil, errNoConvergence
	case info < 0:
		panic(fmt.Sprintf("linalg: openblas: dsyevd argument %d invalid", -info))
	}
	// Column-major eigenvectors are the rows of s read row-major;
	// transposing makes them the columns of v.
	v := NewDense64(n, n, nil)
	transposeInto(v.Data, n, s.Data, n, n, n)
	return w, v, nil
}

func (*openBLAS) F16ToF32(dst []float32, src []uint16)  { F16ToF32(dst, src) }
func (*openBLAS) BF16ToF32(dst []float32, src []uint16) { BF16ToF32(dst, src) }
func (*openBLAS) F32ToF16(dst []uint16, src []float32)  { F32ToF16(dst, src) }
func (*openBLAS) F32ToBF16(dst []uint16, src []float32) { F32ToBF16(dst, src) }
