package gradients

import (
	"strings"
	"testing"
)

func TestProjectionSpec(t *testing.T) {
	layers := []LayerInfo{
		{Name: "fc1", Factored: true, DIn: 5, DOut: 4, D: 20},
		{Name: "head", D: 12},
	}
	tests := []struct {
		name    string
		p       Projection
		str     string
		dims    []int
		errPart string
	}{
		{"none", Projection{}, "none", []int{20, 12}, ""},
		{"none ignores seed", Projection{Seed: 9}, "none", []int{20, 12}, ""},
		{"rademacher", Projection{Kind: Rademacher, K: 7, Seed: 3}, "rademacher k=7 seed=3", []int{7, 7}, ""},
		{"sjlt", Projection{Kind: SJLT, K: 2, Seed: 1}, "sjlt k=2 seed=1", []int{2, 2}, ""},
		{"kronecker", Projection{Kind: Kronecker, KIn: 3, KOut: 2, Seed: 5}, "kronecker k_in=3 k_out=2 seed=5", nil,
			`layer "head" is dense (grad of dimension 12), but kronecker needs factored layers`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.p.None() && tc.p.Kind.String() != "none" {
				t.Errorf("Kind.String() of none = %q", tc.p.Kind.String())
			}
			if got := tc.p.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
			dims, err := tc.p.Dims(layers)
			if tc.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errPart) {
					t.Fatalf("Dims: %v, want an error containing %q", err, tc.errPart)
				}
				if dims, err = tc.p.Dims(layers[:1]); err != nil || dims[0] != 6 {
					t.Fatalf("Dims of the factored layer: %v, %v, want [6]", dims, err)
				}
				return
			}
			if err != nil || len(dims) != len(tc.dims) || dims[0] != tc.dims[0] || dims[1] != tc.dims[1] {
				t.Errorf("Dims = %v, %v, want %v", dims, err, tc.dims)
			}
		})
	}
}

func TestProjectionEqual(t *testing.T) {
	r := Projection{Kind: Rademacher, K: 7, Seed: 3}
	tests := []struct {
		name string
		a, b Projection
		want bool
	}{
		{"same", r, r, true},
		{"other seed", r, Projection{Kind: Rademacher, K: 7, Seed: 4}, false},
		{"other k", r, Projection{Kind: Rademacher, K: 8, Seed: 3}, false},
		{"other kind", r, Projection{Kind: Gaussian, K: 7, Seed: 3}, false},
		{"none and none, seeds differ", Projection{Seed: 1}, Projection{Seed: 2}, true},
		{"none and projected", Projection{}, r, false},
	}
	for _, tc := range tests {
		if got := tc.a.Equal(tc.b); got != tc.want {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.want)
		}
	}
}
