package models

import (
	"context"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// countingBackend is the pure-Go backend counting the calls that reach it.
type countingBackend struct {
	linalg.Backend
	calls int
}

func (c *countingBackend) Dgemm(tA, tB linalg.Transpose, alpha float64, a, b *linalg.Dense64, beta float64, m *linalg.Dense64) {
	c.calls++
	c.Backend.Dgemm(tA, tB, alpha, a, b, beta, m)
}

func (c *countingBackend) CovAccumulate(m, x *linalg.Dense64) {
	c.calls++
	c.Backend.CovAccumulate(m, x)
}

// TestSetBackend checks that a model's methods, and the HVP built on it,
// run on the backend set with SetBackend rather than on linalg.Default.
func TestSetBackend(t *testing.T) {
	mlp, err := NewMLP([]int{3, 4, 2}, ReLU, 0.1, 1)
	if err != nil {
		t.Fatal(err)
	}
	x := linalg.NewDense64(5, 3, []float64{1, 2, 3, -1, 0, 1, 2, 2, -2, 0, 1, 0, 3, -1, 1})
	y := []int{0, 1, 1, 0, 1}
	tests := []struct {
		name string
		m    Model
		use  func(m Model) error
	}{
		{"softmax Objective", NewSoftmax(3, 2, 0.1), func(m Model) error { m.Objective(x, y, nil, make([]float64, NumParams(m))); return nil }},
		{"logistic Curvature", NewLogistic(3, 0.1), func(m Model) error { m.Curvature(x, y, nil); return nil }},
		{"mlp Curvature", mlp, func(m Model) error { m.Curvature(x, y, nil); return nil }},
		{"mlp HVP", mlp, func(m Model) error {
			h, err := NewHVP(m, x, y, nil)
			if err != nil {
				return err
			}
			return h.Apply(context.Background(), make([]float64, h.Dim()), make([]float64, h.Dim()))
		}},
		{"softmax FitNewton", NewSoftmax(3, 2, 0.1), func(m Model) error {
			_, err := FitNewton(context.Background(), m, x, y, nil, NewtonOptions{})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := &countingBackend{Backend: linalg.CPU()}
			if err := SetBackend(tc.m, be); err != nil {
				t.Fatal(err)
			}
			defer SetBackend(tc.m, nil)
			if err := tc.use(tc.m); err != nil {
				t.Fatal(err)
			}
			if be.calls == 0 {
				t.Errorf("no call reached the model's backend")
			}
		})
	}
	if err := SetBackend(nil, linalg.CPU()); err == nil {
		t.Error("SetBackend of a foreign model succeeded")
	}
}
