package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// wideGrads writes a gradient file of n examples of one factored layer fc1
// with the given input width and two outputs, in F16.
func wideGrads(t testing.TB, path string, n, dIn int) {
	t.Helper()
	b := &gradients.Batch{N: n, Layers: []gradients.Layer{
		{Name: "fc1", DIn: dIn, DOut: 2, Tokens: 1, A: make([]float64, n*dIn), S: make([]float64, n*2)},
	}}
	for i := range b.Layers[0].A {
		b.Layers[0].A[i] = float64(i%7) / 8
	}
	for i := range b.Layers[0].S {
		b.Layers[0].S[i] = 0.25
	}
	if err := gradients.WriteFile(path, b, gradients.F16, nil); err != nil {
		t.Fatal(err)
	}
}

// TestFitMemLimit holds fit to refusing covariances that do not fit in the
// memory limit with an error naming the layer and --mem-limit. Before the
// limit, the 3,000,000-wide layer killed the process with "fatal error:
// runtime: out of memory" (72 TB for A), and a --mem-limit flag did not
// exist.
func TestFitMemLimit(t *testing.T) {
	dir := t.TempDir()
	huge, small := filepath.Join(dir, "huge.safetensors"), filepath.Join(dir, "small.safetensors")
	wideGrads(t, huge, 1, 3_000_000)
	wideGrads(t, small, 3, 400) // A is 400² float64 = 1.22 MiB
	for _, tc := range []struct {
		name string
		args []string
		want []string // substrings of the error; none: success
	}{
		{"3000000 wide, default limit", []string{"--grads", huge, "--method", "ekfac"},
			[]string{"fit: ", "layer fc1: covariance A needs 65.5 TiB (3000000² float64), over the memory limit of ", "(--mem-limit)"}},
		{"3000000 wide, kfac, 1TiB", []string{"--grads", huge, "--method", "kfac", "--mem-limit", "1TiB"},
			[]string{"layer fc1: covariance A needs 65.5 TiB", "limit of 1 TiB (--mem-limit)"}},
		{"400 wide, 1MiB", []string{"--grads", small, "--method", "ekfac", "--mem-limit", "1MiB"},
			[]string{"layer fc1: covariance A needs 1.22 MiB (400² float64), over the memory limit of 1 MiB (--mem-limit)"}},
		{"400 wide, chunk over 9KB", []string{"--grads", small, "--method", "diagonal", "--mem-limit", "9KB"},
			[]string{"a chunk of 3 examples needs 9.42 KiB", "(--mem-limit)"}},
		{"400 wide, default", []string{"--grads", small, "--method", "ekfac"}, nil},
		{"400 wide, no limit", []string{"--grads", small, "--method", "ekfac", "--mem-limit", "0"}, nil},
		{"400 wide, 8MiB", []string{"--grads", small, "--method", "kfac", "--mem-limit", "8MiB"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"fit", "--backend", "cpu", "--out", filepath.Join(dir, "f-"+strings.ReplaceAll(tc.name, " ", "_"))}, tc.args...)
			err := run(context.Background(), args, &out, &errOut)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("run(%q): %v", args, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("run(%q) succeeded, want an error", args)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !errors.Is(err, linalg.ErrMemoryLimit) {
				t.Errorf("error %v does not match linalg.ErrMemoryLimit", err)
			}
		})
	}
}

func TestMemLimitFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "auto", want: 0},
		{in: "none", want: linalg.NoMemoryLimit},
		{in: "0", want: linalg.NoMemoryLimit},
		{in: "512MiB", want: 512 << 20},
		{in: "4GiB", want: 4 << 30},
		{in: "1.5TB", want: 1.5e12},
		{in: "-1", bad: true},
		{in: "lots", bad: true},
		{in: "", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var m memLimit
			err := m.Set(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("Set(%q) = nil, want an error", tc.in)
				}
				return
			}
			if err != nil || m.bytes() != tc.want {
				t.Fatalf("Set(%q): %d, %v, want %d", tc.in, m.bytes(), err, tc.want)
			}
		})
	}
}

// TestMemLimitCommands holds every command with --mem-limit to refusing,
// with an error naming the flag, inputs whose header-sized buffers exceed
// it, and to working on the same inputs without the flag.
func TestMemLimitCommands(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	wideGrads(t, p("g"), 3, 400)
	ctx := context.Background()
	setup := [][]string{
		{"fit", "--grads", p("g"), "--method", "identity", "--out", p("factors")},
		{"store", "build", "--grads", p("g"), "--out", p("store"), "--kind", "rademacher", "--k", "16"},
	}
	for _, args := range setup {
		var out, errOut bytes.Buffer
		if err := run(ctx, args, &out, &errOut); err != nil {
			t.Fatalf("run(%q): %v", args, err)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"score", []string{"score", "--factors", p("factors"), "--train", p("g"), "--query", p("g"), "--out", p("scores")}},
		{"project", []string{"project", "--grads", p("g"), "--kind", "sjlt", "--k", "8", "--out", p("proj")}},
		{"store build", []string{"store", "build", "--grads", p("g"), "--out", p("store2")}},
		{"store score", []string{"store", "score", "--store", p("store"), "--query", p("g"), "--topk", "2", "--out", p("sscores")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append(slicesClone(tc.args), "--mem-limit", "1KiB")
			err := run(ctx, args, &out, &errOut)
			if !errors.Is(err, linalg.ErrMemoryLimit) || !strings.Contains(err.Error(), "over the memory limit of 1 KiB (--mem-limit)") {
				t.Fatalf("run(%q) = %v, want a memory-limit error naming --mem-limit", args, err)
			}
			if err := run(ctx, append(slicesClone(tc.args), "--mem-limit", "auto"), &out, &errOut); err != nil {
				t.Fatalf("without a small limit: %v", err)
			}
		})
	}
}

func slicesClone(v []string) []string { return append([]string(nil), v...) }

// TestHugeLayer runs the commands on the 12 MB file of the issue: one
// example of a layer with 3,000,000 inputs and 3,000,000 outputs (F16),
// whose covariances and flattened gradient need tens of TiB. Each must
// refuse it quickly with a memory-limit error instead of dying.
func TestHugeLayer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "huge.safetensors")
	const w = 3_000_000
	b := &gradients.Batch{N: 1, Layers: []gradients.Layer{
		{Name: "fc1", DIn: w, DOut: w, Tokens: 1, A: make([]float64, w), S: make([]float64, w)},
	}}
	if err := gradients.WriteFile(path, b, gradients.F16, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"fit", "--grads", path, "--method", "ekfac", "--out", filepath.Join(dir, "f")}, "layer fc1: covariance A needs 65.5 TiB (3000000² float64)"},
		{[]string{"fit", "--grads", path, "--method", "diagonal", "--out", filepath.Join(dir, "f")}, "layer fc1: Λ needs 65.5 TiB (3000000 × 3000000 float64)"},
		{[]string{"project", "--grads", path, "--kind", "sjlt", "--k", "8", "--out", filepath.Join(dir, "p")}, "layer fc1: flattened gradient needs 65.5 TiB"},
		{[]string{"store", "build", "--grads", path, "--kind", "rademacher", "--k", "8", "--out", filepath.Join(dir, "s")}, "flattened gradient needs 65.5 TiB"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errOut)
			if !errors.Is(err, linalg.ErrMemoryLimit) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%q) = %v, want a memory-limit error containing %q", tc.args, err, tc.want)
			}
		})
	}
}
