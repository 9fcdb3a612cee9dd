package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
)

// projectSource writes a gradient file of five examples with two factored
// layers and, unless factoredOnly, a dense one, and returns its path.
func projectSource(t *testing.T, factoredOnly bool) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	fill := func(m int) []float64 {
		v := make([]float64, m)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	const n = 5
	b := &gradients.Batch{N: n, IDs: []int64{3, 1, 4, 1, 5}, Layers: []gradients.Layer{
		{Name: "fc1", DIn: 6, DOut: 4, Tokens: 2, TokenAxis: true, A: fill(n * 2 * 6), S: fill(n * 2 * 4)},
		{Name: "fc2", DIn: 4, DOut: 3, Tokens: 1, A: fill(n * 4), S: fill(n * 3)},
	}}
	if !factoredOnly {
		b.Layers = append(b.Layers, gradients.Layer{Name: "head.bias", D: 3, Grad: fill(n * 3)})
	}
	path := filepath.Join(t.TempDir(), "grads.safetensors")
	if err := gradients.WriteFile(path, b, gradients.F64, map[string]string{"dataset": "digits"}); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProjectMatchesApply(t *testing.T) {
	src := projectSource(t, false)
	srcFactored := projectSource(t, true)
	tests := []struct {
		args []string
		p    gradients.Projection
		meta map[string]string
	}{
		{[]string{"--kind", "rademacher", "--k", "130"}, gradients.Projection{Kind: gradients.Rademacher, K: 130, Seed: 42},
			map[string]string{"projection_k": "130"}},
		{[]string{"--kind", "sjlt", "--k", "8"}, gradients.Projection{Kind: gradients.SJLT, K: 8, Seed: 42},
			map[string]string{"projection_k": "8"}},
		{[]string{"--kind", "gaussian", "--k", "5"}, gradients.Projection{Kind: gradients.Gaussian, K: 5, Seed: 42},
			map[string]string{"projection_k": "5"}},
		{[]string{"--kind", "kronecker", "--k", "3", "--k-out", "2"}, gradients.Projection{Kind: gradients.Kronecker, KIn: 3, KOut: 2, Seed: 42},
			map[string]string{"projection_k_in": "3", "projection_k_out": "2"}},
	}
	for _, tc := range tests {
		t.Run(tc.p.Kind.String(), func(t *testing.T) {
			in := src
			if tc.p.Kind == gradients.Kronecker {
				in = srcFactored
			}
			out := filepath.Join(t.TempDir(), "proj.safetensors")
			var stdout, stderr bytes.Buffer
			// Chunks of two examples, to show that reading in chunks changes
			// nothing.
			args := append([]string{"project", "--grads", in, "--seed", "42", "--out", out, "--dtype", "f64", "--chunk", "2"}, tc.args...)
			if err := run(context.Background(), args, &stdout, &stderr); err != nil {
				t.Fatalf("%v\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "wrote "+out) {
				t.Errorf("progress on stderr:\n%s", stderr.String())
			}
			b, err := gradients.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := tc.p.Apply(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			f, err := gradients.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := f.ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if got.N != want.N || len(got.Layers) != len(want.Layers) || len(got.IDs) != len(want.IDs) {
				t.Fatalf("got N=%d layers=%d ids=%v, want N=%d layers=%d ids=%v", got.N, len(got.Layers), got.IDs, want.N, len(want.Layers), want.IDs)
			}
			for i := range got.IDs {
				if got.IDs[i] != want.IDs[i] {
					t.Errorf("ids %v, want %v", got.IDs, want.IDs)
					break
				}
			}
			for li := range want.Layers {
				g, w := &got.Layers[li], &want.Layers[li]
				if g.Name != w.Name || g.Dim() != w.Dim() || g.Tokens != w.Tokens && w.Factored() {
					t.Fatalf("layer %d: %q dim %d, want %q dim %d", li, g.Name, g.Dim(), w.Name, w.Dim())
				}
				for _, pair := range [][2][]float64{{g.Grad, w.Grad}, {g.A, w.A}, {g.S, w.S}} {
					for i := range pair[1] {
						if math.Float64bits(pair[0][i]) != math.Float64bits(pair[1][i]) {
							t.Fatalf("layer %q value %d: %v, want %v", w.Name, i, pair[0][i], pair[1][i])
						}
					}
				}
			}
			md := f.Metadata()
			tc.meta["projection"] = tc.p.Kind.String()
			tc.meta["projection_seed"] = "42"
			tc.meta["projection_source"] = in
			tc.meta["dataset"] = "digits"
			for key, v := range tc.meta {
				if md[key] != v {
					t.Errorf("metadata %s = %q, want %q", key, md[key], v)
				}
			}
		})
	}
}

func TestProjectErrors(t *testing.T) {
	src := projectSource(t, false)
	out := filepath.Join(t.TempDir(), "out.safetensors")
	tests := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"no grads", []string{"--kind", "sjlt", "--k", "4", "--out", out}, true, "needs --grads and --out"},
		{"no out", []string{"--grads", src, "--kind", "sjlt", "--k", "4"}, true, "needs --grads and --out"},
		{"same file", []string{"--grads", src, "--out", src, "--kind", "sjlt", "--k", "4"}, true, "--out " + src + " is the same file as --grads " + src},
		{"no kind", []string{"--grads", src, "--out", out, "--k", "4"}, true, "--kind is required"},
		{"bad kind", []string{"--grads", src, "--out", out, "--kind", "countsketch", "--k", "4"}, true, `unknown kind "countsketch"`},
		{"no k", []string{"--grads", src, "--out", out, "--kind", "rademacher"}, true, "rademacher needs --k"},
		{"k-in on dense kind", []string{"--grads", src, "--out", out, "--kind", "gaussian", "--k", "4", "--k-in", "2"}, true, "are for kronecker"},
		{"kronecker without k", []string{"--grads", src, "--out", out, "--kind", "kronecker", "--k-in", "2"}, true, "kronecker needs --k-in and --k-out"},
		{"k too large", []string{"--grads", src, "--out", out, "--kind", "sjlt", "--k", "16777217"}, true, "above 16777216"},
		{"bad dtype", []string{"--grads", src, "--out", out, "--kind", "sjlt", "--k", "4", "--dtype", "f8"}, true, `--dtype "f8"`},
		{"bad chunk", []string{"--grads", src, "--out", out, "--kind", "sjlt", "--k", "4", "--chunk", "0"}, true, "--chunk must be at least 1"},
		{"bad seed", []string{"--grads", src, "--out", out, "--kind", "sjlt", "--k", "4", "--seed", "-1"}, true, "invalid value"},
		{"stray argument", []string{"--grads", src, "--out", out, "--kind", "sjlt", "--k", "4", "extra"}, true, `unexpected argument "extra"`},
		{"missing file", []string{"--grads", filepath.Join(t.TempDir(), "none"), "--out", out, "--kind", "sjlt", "--k", "4"}, false, "no such file"},
		{"kronecker on dense layer", []string{"--grads", src, "--out", out, "--kind", "kronecker", "--k", "2"}, false,
			`layer "head.bias" is dense (grad of dimension 3), but kronecker needs factored layers`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"project"}, tc.args...), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if errors.Is(err, errUsage) != tc.usage {
				t.Errorf("usage error = %v, want %v: %v", errors.Is(err, errUsage), tc.usage, err)
			}
		})
	}
}
