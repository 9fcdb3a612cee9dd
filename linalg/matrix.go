package linalg

import "fmt"

// Dense64 is a row-major float64 matrix. Element (i, j) is Data[i*Stride+j].
// A Dense64 may be a view into a larger matrix when Stride > Cols.
type Dense64 struct {
	Rows, Cols, Stride int
	Data               []float64
}

// Dense32 is a row-major float32 matrix laid out like Dense64.
type Dense32 struct {
	Rows, Cols, Stride int
	Data               []float32
}

// NewDense64 returns an r×c matrix backed by data, or by a new zeroed slice
// when data is nil. It panics if data has the wrong length, as gonum's mat does:
// a mismatch here is a programming error, not bad input.
func NewDense64(r, c int, data []float64) *Dense64 {
	if r < 0 || c < 0 {
		panic(fmt.Sprintf("linalg: negative dimension %d×%d", r, c))
	}
	if data == nil {
		data = make([]float64, r*c)
	}
	if len(data) != r*c {
		panic(fmt.Sprintf("linalg: data length %d for %d×%d matrix", len(data), r, c))
	}
	return &Dense64{Rows: r, Cols: c, Stride: c, Data: data}
}

// NewDense32 is NewDense64 for float32.
func NewDense32(r, c int, data []float32) *Dense32 {
	if r < 0 || c < 0 {
		panic(fmt.Sprintf("linalg: negative dimension %d×%d", r, c))
	}
	if data == nil {
		data = make([]float32, r*c)
	}
	if len(data) != r*c {
		panic(fmt.Sprintf("linalg: data length %d for %d×%d matrix", len(data), r, c))
	}
	return &Dense32{Rows: r, Cols: c, Stride: c, Data: data}
}

// Dims returns the number of rows and columns.
func (m *Dense64) Dims() (r, c int) { return m.Rows, m.Cols }

// At returns element (i, j).
func (m *Dense64) At(i, j int) float64 { return m.Data[i*m.Stride+j] }

// Set sets element (i, j) to v.
func (m *Dense64) Set(i, j int, v float64) { m.Data[i*m.Stride+j] = v }

// Row returns row i as a slice that aliases the matrix.
func (m *Dense64) Row(i int) []float64 {
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
func (m *Dense64) Slice(r0, r1, c0, c1 int) *Dense64 {
	if r0 < 0 || r1 > m.Rows || r0 > r1 || c0 < 0 || c1 > m.Cols || c0 > c1 {
		panic(fmt.Sprintf("linalg: slice [%d:%d, %d:%d] of %d×%d", r0, r1, c0, c1, m.Rows, m.Cols))
	}
	if r0 == r1 || c0 == c1 {
		return &Dense64{Rows: r1 - r0, Cols: c1 - c0, Stride: max(m.Stride, 1)}
	}
	end := (r1-1)*m.Stride + c1
	return &Dense64{Rows: r1 - r0, Cols: c1 - c0, Stride: m.Stride, Data: m.Data[r0*m.Stride+c0 : end]}
}

// Clone returns a compact copy of m.
func (m *Dense64) Clone() *Dense64 {
	c := NewDense64(m.Rows, m.Cols, nil)
	for i := 0; i < m.Rows; i++ {
		copy(c.Row(i), m.Row(i))
	}
	return c
}

// T returns a compact transposed copy of m.
func (m *Dense64) T() *Dense64 {
	t := NewDense64(m.Cols, m.Rows, nil)
	for i := 0; i < m.Rows; i++ {
		for j, v := range m.Row(i) {
			t.Data[j*t.Stride+i] = v
		}
	}
	return t
}

// Dims returns the number of rows and columns.
func (m *Dense32) Dims() (r, c int) { return m.Rows, m.Cols }

// At returns element (i, j).
func (m *Dense32) At(i, j int) float32 { return m.Data[i*m.Stride+j] }

// Set sets element (i, j) to v.
func (m *Dense32) Set(i, j int, v float32) { m.Data[i*m.Stride+j] = v }

// Row returns row i as a slice that aliases the matrix.
func (m *Dense32) Row(i int) []float32 {
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
func (m *Dense32) Slice(r0, r1, c0, c1 int) *Dense32 {
	if r0 < 0 || r1 > m.Rows || r0 > r1 || c0 < 0 || c1 > m.Cols || c0 > c1 {
		panic(fmt.Sprintf("linalg: slice [%d:%d, %d:%d] of %d×%d", r0, r1, c0, c1, m.Rows, m.Cols))
	}
	if r0 == r1 || c0 == c1 {
		return &Dense32{Rows: r1 - r0, Cols: c1 - c0, Stride: max(m.Stride, 1)}
	}
	end := (r1-1)*m.Stride + c1
	return &Dense32{Rows: r1 - r0, Cols: c1 - c0, Stride: m.Stride, Data: m.Data[r0*m.Stride+c0 : end]}
}

// Clone returns a compact copy of m.
func (m *Dense32) Clone() *Dense32 {
	c := NewDense32(m.Rows, m.Cols, nil)
	for i := 0; i < m.Rows; i++ {
		copy(c.Row(i), m.Row(i))
	}
	return c
}

// To64 returns a compact float64 copy of m.
func (m *Dense32) To64() *Dense64 {
	c := NewDense64(m.Rows, m.Cols, nil)
	for i := 0; i < m.Rows; i++ {
		dst := c.Row(i)
		for j, v := range m.Row(i) {
			dst[j] = float64(v)
		}
	}
	return c
}

// To32 returns a compact float32 copy of m, rounding to nearest.
func (m *Dense64) To32() *Dense32 {
	c := NewDense32(m.Rows, m.Cols, nil)
	for i := 0; i < m.Rows; i++ {
		dst := c.Row(i)
		for j, v := range m.Row(i) {
			dst[j] = float32(v)
		}
	}
	return c
}
