package linalg

import "fmt"

// Float is the element type of a Dense matrix.
type Float interface{ ~float32 | ~float64 }

// Dense is a row-major matrix. Element (i, j) is Data[i*Stride+j]. A Dense
// may be a view into a larger matrix when Stride > Cols.
type Dense[T Float] struct {
	Rows, Cols, Stride int
	Data               []T
}

// Dense64 is a float64 matrix, the type of references and curvature.
type Dense64 = Dense[float64]

// Dense32 is a float32 matrix, the type of the hot paths.
type Dense32 = Dense[float32]

// NewDense returns an r×c matrix backed by data, or by a new zeroed slice
// when data is nil. It panics if data has the wrong length, as gonum's mat
// does: a mismatch here is a programming error, not bad input.
func NewDense[T Float](r, c int, data []T) *Dense[T] {
	if r < 0 || c < 0 {
		panic(fmt.Sprintf("linalg: negative dimension %d×%d", r, c))
	}
	if data == nil {
		data = make([]T, r*c)
	}
	if len(data) != r*c {
		panic(fmt.Sprintf("linalg: data length %d for %d×%d matrix", len(data), r, c))
	}
	return &Dense[T]{Rows: r, Cols: c, Stride: c, Data: data}
}

// NewDense64 is NewDense for float64.
func NewDense64(r, c int, data []float64) *Dense64 { return NewDense(r, c, data) }

// NewDense32 is NewDense for float32.
func NewDense32(r, c int, data []float32) *Dense32 { return NewDense(r, c, data) }

// Dims returns the number of rows and columns.
func (m *Dense[T]) Dims() (r, c int) { return m.Rows, m.Cols }

// At returns element (i, j).
func (m *Dense[T]) At(i, j int) T { return m.Data[i*m.Stride+j] }

// Set sets element (i, j) to v.
func (m *Dense[T]) Set(i, j int, v T) { m.Data[i*m.Stride+j] = v }

// Row returns row i as a slice that aliases the matrix.
func (m *Dense[T]) Row(i int) []T {
	if m.Cols == 0 {
		// An empty view has no data to slice.
		if i < 0 || i >= m.Rows {
			panic(fmt.Sprintf("linalg: row %d of %d×%d", i, m.Rows, m.Cols))
		}
		return nil
	}
	return m.Data[i*m.Stride : i*m.Stride+m.Cols]
}

// Slice returns the view of rows [r0, r1) and columns [c0, c1).
func (m *Dense[T]) Slice(r0, r1, c0, c1 int) *Dense[T] {
	if r0 < 0 || r1 > m.Rows || r0 > r1 || c0 < 0 || c1 > m.Cols || c0 > c1 {
		panic(fmt.Sprintf("linalg: slice [%d:%d, %d:%d] of %d×%d", r0, r1, c0, c1, m.Rows, m.Cols))
	}
	if r0 == r1 || c0 == c1 {
		return &Dense[T]{Rows: r1 - r0, Cols: c1 - c0, Stride: max(m.Stride, 1)}
	}
	end := (r1-1)*m.Stride + c1
	return &Dense[T]{Rows: r1 - r0, Cols: c1 - c0, Stride: m.Stride, Data: m.Data[r0*m.Stride+c0 : end]}
}

// Clone returns a compact copy of m.
func (m *Dense[T]) Clone() *Dense[T] { return convert[T](m) }

// T returns a compact transposed copy of m.
func (m *Dense[T]) T() *Dense[T] {
	t := NewDense[T](m.Cols, m.Rows, nil)
	for i := 0; i < m.Rows; i++ {
		for j, v := range m.Row(i) {
			t.Data[j*t.Stride+i] = v
		}
	}
	return t
}

// To64 returns a compact float64 copy of m.
func (m *Dense[T]) To64() *Dense64 { return convert[float64](m) }

// To32 returns a compact float32 copy of m, rounding to nearest.
func (m *Dense[T]) To32() *Dense32 { return convert[float32](m) }

func convert[D, S Float](m *Dense[S]) *Dense[D] {
	c := NewDense[D](m.Rows, m.Cols, nil)
	for i := 0; i < m.Rows; i++ {
		dst := c.Row(i)
		for j, v := range m.Row(i) {
			dst[j] = D(v)
		}
	}
	return c
}
