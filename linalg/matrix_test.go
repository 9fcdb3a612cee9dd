package linalg

import "testing"

func TestNewDensePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"negative64": func() { NewDense64(-1, 2, nil) },
		"length64":   func() { NewDense64(2, 2, make([]float64, 3)) },
		"negative32": func() { NewDense32(1, -2, nil) },
		"length32":   func() { NewDense32(2, 3, make([]float32, 7)) },
		"slice":      func() { NewDense64(3, 3, nil).Slice(0, 4, 0, 1) },
		"slice32":    func() { NewDense32(3, 3, nil).Slice(2, 1, 0, 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestDense64(t *testing.T) {
	m := NewDense64(3, 4, []float64{
		0, 1, 2, 3,
		4, 5, 6, 7,
		8, 9, 10, 11,
	})
	if r, c := m.Dims(); r != 3 || c != 4 || m.Stride != 4 {
		t.Fatalf("Dims = %d, %d, stride %d", r, c, m.Stride)
	}
	v := m.Slice(1, 3, 1, 3)
	if v.Rows != 2 || v.Cols != 2 || v.Stride != 4 {
		t.Fatalf("view is %d×%d stride %d", v.Rows, v.Cols, v.Stride)
	}
	for _, tc := range []struct {
		i, j int
		want float64
	}{{0, 0, 5}, {0, 1, 6}, {1, 0, 9}, {1, 1, 10}} {
		if got := v.At(tc.i, tc.j); got != tc.want {
			t.Errorf("view.At(%d, %d) = %v, want %v", tc.i, tc.j, got, tc.want)
		}
	}
	v.Set(1, 1, -10)
	if m.At(2, 2) != -10 {
		t.Error("Set on a view did not write through")
	}
	if r := v.Row(1); len(r) != 2 || r[0] != 9 || r[1] != -10 {
		t.Errorf("view.Row(1) = %v", r)
	}
	c := v.Clone()
	if c.Stride != 2 || c.At(1, 1) != -10 {
		t.Errorf("Clone = %+v", c)
	}
	c.Set(0, 0, 100)
	if m.At(1, 1) == 100 {
		t.Error("Clone aliases the original")
	}
	tr := m.T()
	if tr.Rows != 4 || tr.Cols != 3 || tr.At(3, 1) != 7 || tr.At(2, 2) != -10 {
		t.Errorf("T = %+v", tr)
	}
	f := v.To32()
	if f.Stride != 2 || f.At(1, 0) != 9 {
		t.Errorf("To32 = %+v", f)
	}
	if g := f.To64(); g.At(1, 1) != -10 {
		t.Errorf("To64 = %+v", g)
	}
}

func TestDense32(t *testing.T) {
	m := NewDense32(2, 3, nil)
	for i := range m.Data {
		m.Data[i] = float32(i)
	}
	v := m.Slice(0, 2, 1, 3)
	if v.At(1, 1) != 5 || len(v.Row(0)) != 2 {
		t.Fatalf("view = %+v", v)
	}
	v.Set(0, 0, -1)
	if m.At(0, 1) != -1 {
		t.Error("Set on a view did not write through")
	}
	if c := v.Clone(); c.Stride != 2 || c.At(1, 0) != 4 {
		t.Errorf("Clone = %+v", c)
	}
}

// TestEmptyViews checks that views with no rows or columns work everywhere
// a matrix does.
func TestEmptyViews(t *testing.T) {
	m := NewDense64(3, 4, nil)
	for _, v := range []*Dense64{m.Slice(0, 3, 2, 2), m.Slice(1, 1, 0, 4), m.Slice(3, 3, 4, 4)} {
		for i := 0; i < v.Rows; i++ {
			if len(v.Row(i)) != 0 {
				t.Errorf("row %d of a %d×%d view is not empty", i, v.Rows, v.Cols)
			}
		}
		if c := v.Clone(); c.Rows != v.Rows || c.Cols != v.Cols {
			t.Errorf("Clone of %d×%d is %d×%d", v.Rows, v.Cols, c.Rows, c.Cols)
		}
		if tr := v.T(); tr.Rows != v.Cols || tr.Cols != v.Rows {
			t.Errorf("T of %d×%d is %d×%d", v.Rows, v.Cols, tr.Rows, tr.Cols)
		}
		if f := v.To32().To64(); f.Rows != v.Rows {
			t.Errorf("To32/To64 of %d×%d is %d×%d", v.Rows, v.Cols, f.Rows, f.Cols)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Row out of range of an empty view did not panic")
		}
	}()
	m.Slice(0, 3, 1, 1).Row(3)
}
