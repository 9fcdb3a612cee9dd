package models_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/models"
)

// TestExampleGradients compares ExampleGradients with the model's own
// Gradients on the rows and labels it should use, as 'goinfluence grads'
// wrote them before the call existed.
func TestExampleGradients(t *testing.T) {
	_, test := digits(t)
	m := models.NewSoftmax(test.X.Cols, test.Classes, 1e-3)
	if _, err := models.FitNewton(context.Background(), m, test.X, test.Y, nil, models.NewtonOptions{}); err != nil {
		t.Fatal(err)
	}
	head := test.Subset([]int{0, 1, 2, 3, 4})
	for _, tc := range []struct {
		name   string
		opt    models.GradOptions
		labels []int // of head
		ids    []int64
	}{
		{"true labels", models.GradOptions{First: 5}, head.Y, []int64{0, 1, 2, 3, 4}},
		{"sampled labels", models.GradOptions{First: 5, Labels: models.SampledLabels, Seed: 3},
			models.SampleLabels(m, head.X, 3), []int64{0, 1, 2, 3, 4}},
		{"ids and probabilities", models.GradOptions{First: 5, IDs: test.Index, Probs: true}, head.Y, toInt64(head.Index)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, probs, err := models.ExampleGradients(context.Background(), m, test.X, test.Y, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			want := m.Gradients(head.X, tc.labels)
			if b.N != 5 || len(b.Layers) != len(want.Layers) {
				t.Fatalf("batch of %d examples, %d layers; want 5, %d", b.N, len(b.Layers), len(want.Layers))
			}
			for l := range want.Layers {
				if !slices.Equal(b.Layers[l].A, want.Layers[l].A) || !slices.Equal(b.Layers[l].S, want.Layers[l].S) || !slices.Equal(b.Layers[l].Grad, want.Layers[l].Grad) {
					t.Errorf("layer %d differs from Gradients at the expected labels", l)
				}
			}
			if !slices.Equal(b.IDs, tc.ids) {
				t.Errorf("IDs %v, want %v", b.IDs, tc.ids)
			}
			if !tc.opt.Probs {
				if probs != nil {
					t.Error("probabilities returned without Probs")
				}
				return
			}
			p := m.Probs(head.X)
			for i, y := range head.Y {
				if probs[i] != p.At(i, y) {
					t.Errorf("p(y) of row %d = %v, want %v", i, probs[i], p.At(i, y))
				}
			}
		})
	}
}

func toInt64(v []int) []int64 {
	w := make([]int64, len(v))
	for i, x := range v {
		w[i] = int64(x)
	}
	return w
}

func TestExampleGradientsErrors(t *testing.T) {
	_, test := digits(t)
	m := models.NewSoftmax(test.X.Cols, test.Classes, 1e-3)
	narrow := models.NewSoftmax(test.X.Cols-1, test.Classes, 1e-3)
	for _, tc := range []struct {
		name  string
		model models.Model
		opt   models.GradOptions
		want  string
	}{
		{"bad labels", m, models.GradOptions{Labels: 7}, "Labels Labels(7)"},
		{"first too many", m, models.GradOptions{First: test.Len() + 1}, "First 361"},
		{"negative first", m, models.GradOptions{First: -1}, "First -1"},
		{"ids", m, models.GradOptions{IDs: []int{1}}, "1 IDs for 360 rows"},
		{"other features", narrow, models.GradOptions{}, "features"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := models.ExampleGradients(context.Background(), tc.model, test.X, test.Y, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
