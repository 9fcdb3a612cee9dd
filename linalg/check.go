package linalg

import (
	"fmt"
	"math"
)

// checkDense panics unless m is a well-formed matrix: a stride that can
// hold a row and enough data for the last row.
func checkDense[T Float](op, name string, m *Dense[T]) {
	if m == nil {
		panic(fmt.Sprintf("linalg: %s: %s is nil", op, name))
	}
	checkLayout(op, name, m.Rows, m.Cols, m.Stride, len(m.Data))
}

// gemmStart validates a GEMM and handles the cases with no product to
// form; it returns m, n, k and whether a product remains to be computed.
func gemmStart[T Float](op string, tA, tB Transpose, alpha T, a, b *Dense[T], beta T, c *Dense[T]) (m, n, k int, ok bool) {
	checkDense(op, "A", a)
	checkDense(op, "B", b)
	checkDense(op, "C", c)
	m, n, k = gemmDims(op, tA, tB, a.Rows, a.Cols, b.Rows, b.Cols, c.Rows, c.Cols)
	if m == 0 || n == 0 {
		return m, n, k, false
	}
	if k == 0 || alpha == 0 {
		scale(c, beta)
		return m, n, k, false
	}
	return m, n, k, true
}

func checkLayout(op, name string, r, c, stride, n int) {
	if r < 0 || c < 0 {
		panic(fmt.Sprintf("linalg: %s: %s has negative dimension %d×%d", op, name, r, c))
	}
	if r == 0 || c == 0 {
		return
	}
	if stride < c {
		panic(fmt.Sprintf("linalg: %s: %s is %d×%d with stride %d", op, name, r, c, stride))
	}
	if need := (r-1)*stride + c; n < need {
		panic(fmt.Sprintf("linalg: %s: %s is %d×%d (stride %d) but has %d elements, need %d", op, name, r, c, stride, n, need))
	}
}

// gemmDims checks the shapes of a GEMM and returns its m, n and k.
func gemmDims(op string, tA, tB Transpose, ar, ac, br, bc, cr, cc int) (m, n, k int) {
	m, k = ar, ac
	if tA {
		m, k = ac, ar
	}
	kb, n := br, bc
	if tB {
		kb, n = bc, br
	}
	if k != kb {
		panic(fmt.Sprintf("linalg: %s: op(A) is %d×%d but op(B) is %d×%d", op, m, k, kb, n))
	}
	if cr != m || cc != n {
		panic(fmt.Sprintf("linalg: %s: op(A)·op(B) is %d×%d but C is %d×%d", op, m, n, cr, cc))
	}
	return m, n, k
}

// covDims checks that c is n×n for an m×n x and returns n.
func covDims(op string, cr, cc, xr, xc int) int {
	if cr != cc || cc != xc {
		panic(fmt.Sprintf("linalg: %s: C is %d×%d but X is %d×%d; want C %d×%d", op, cr, cc, xr, xc, xc, xc))
	}
	return xc
}

// solveDims checks that a is square and b has as many rows.
func solveDims(op string, a, b *Dense64) int {
	checkDense(op, "A", a)
	checkDense(op, "B", b)
	if a.Rows != a.Cols {
		panic(fmt.Sprintf("linalg: %s: A is %d×%d, not square", op, a.Rows, a.Cols))
	}
	if b.Rows != a.Rows {
		panic(fmt.Sprintf("linalg: %s: A is %d×%d but B is %d×%d", op, a.Rows, a.Cols, b.Rows, b.Cols))
	}
	return a.Rows
}

// scale sets c = beta·c. As in BLAS, beta == 0 ignores the old contents of
// c, NaNs included.
func scale[T Float](c *Dense[T], beta T) {
	if beta == 1 {
		return
	}
	for i := 0; i < c.Rows; i++ {
		row := c.Row(i)
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// eighInput validates the argument of Eigh and returns its lower-triangle
// copy (see lowerCopy).
func eighInput(a *Dense64) (*Dense64, error) {
	checkDense("Eigh", "A", a)
	if a.Rows != a.Cols {
		panic(fmt.Sprintf("linalg: Eigh: A is %d×%d, not square", a.Rows, a.Cols))
	}
	return lowerCopy("Eigh", a)
}

// lowerCopy returns a compact n×n copy of the lower triangle of a with the
// strict upper triangle zero, so that only the lower triangle is ever read.
// It returns an error wrapping ErrNotFinite if that triangle holds a NaN or
// an infinity.
func lowerCopy(op string, a *Dense64) (*Dense64, error) {
	n := a.Rows
	l := NewDense64(n, n, nil)
	for i := 0; i < n; i++ {
		src := a.Data[i*a.Stride : i*a.Stride+i+1]
		for j, v := range src {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("linalg: %s: %w: A[%d,%d] = %v", op, ErrNotFinite, i, j, v)
			}
		}
		copy(l.Data[i*n:], src)
	}
	return l, nil
}

// mirrorUpper copies the strict upper triangle of the square c to its lower.
// It goes tile by tile: a column of a wide matrix touches one page per
// value, and walking whole columns made the copy cost more than the
// covariance products it follows.
func mirrorUpper(c *Dense64) {
	n := c.Rows
	for i0 := 0; i0 < n; i0 += transposeTile {
		i1 := min(i0+transposeTile, n)
		for j0 := 0; j0 < i1; j0 += transposeTile {
			j1 := min(j0+transposeTile, n)
			for i := max(i0, 1); i < i1; i++ {
				row := c.Data[i*c.Stride : i*c.Stride+min(j1, i)]
				for j := j0; j < len(row); j++ {
					row[j] = c.Data[j*c.Stride+i]
				}
			}
		}
	}
}

// transposeTile is the side of the tiles in which mirrorUpper and
// transposeInto copy: 64 × 64 float64 values, 32 KiB.
const transposeTile = 64

// transposeInto writes the transpose of the row-major r×c src (leading
// dimension lds) into dst (leading dimension ldd).
func transposeInto(dst []float64, ldd int, src []float64, lds, r, c int) {
	for i0 := 0; i0 < r; i0 += transposeTile {
		i1 := min(i0+transposeTile, r)
		for j0 := 0; j0 < c; j0 += transposeTile {
			j1 := min(j0+transposeTile, c)
			for i := i0; i < i1; i++ {
				row := src[i*lds+j0 : i*lds+j1]
				for j, v := range row {
					dst[(j0+j)*ldd+i] = v
				}
			}
		}
	}
}
