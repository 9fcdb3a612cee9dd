package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// writeGrads writes n examples of a factored layer (3×2) and a dense one
// (4) to a gradient file; ids, when not nil, are the file's ids.
func writeGrads(t testing.TB, path string, n int, ids []int64, seed uint64) *gradients.Batch {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	fill := func(k int) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	b := &gradients.Batch{N: n, IDs: ids, Layers: []gradients.Layer{
		{Name: "fc", DIn: 3, DOut: 2, Tokens: 1, A: fill(n * 3), S: fill(n * 2)},
		{Name: "head", D: 4, Grad: fill(n * 4)},
	}}
	if err := gradients.WriteFile(path, b, gradients.F32, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuild(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p1, p2 := filepath.Join(dir, "a.st"), filepath.Join(dir, "b.st")
	writeGrads(t, p1, 7, nil, 1)                              // ids 0…6 by position
	writeGrads(t, p2, 5, []int64{100, 101, 102, 103, 104}, 2) // its own ids
	var inputs []*gradients.Batch                             // as the files hold them
	for _, p := range []string{p1, p2} {
		f, err := gradients.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	wantIDs := []int64{0, 1, 2, 3, 4, 5, 6, 100, 101, 102, 103, 104}
	tests := []struct {
		name string
		spec gradients.Projection
		dim  int
	}{
		{"none", gradients.Projection{}, 6 + 4},
		{"sjlt", gradients.Projection{Kind: gradients.SJLT, K: 3, Seed: 9}, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := OpenSource(p1, p2)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			out := filepath.Join(t.TempDir(), "s")
			var calls int
			sum, err := Build(ctx, out, src, tc.spec, BuildOptions{DType: gradients.F32, ShardRows: 4, Chunk: 3,
				Progress: func(string, int, int) { calls++ }})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Added != 12 || sum.Resumed != 0 || sum.Manifest.Count != 12 || sum.Manifest.Dim != tc.dim || !sum.Manifest.Projection.Equal(tc.spec) || calls != 3+2 {
				t.Fatalf("summary %+v after %d progress calls", sum, calls)
			}
			s := open(t, out)
			ids, rows := readAll(t, s, 5)
			if !slices.Equal(ids, wantIDs) {
				t.Errorf("ids %v, want %v", ids, wantIDs)
			}
			// The rows are the inputs projected as a whole.
			var want []float64
			for _, b := range inputs {
				p, err := tc.spec.ApplyOrKeep(ctx, b, gradients.ApplyOptions{})
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, p.Flatten().Data...)
			}
			for i, w := range want {
				if float32(w) != rows[i] {
					t.Fatalf("row %d column %d: %v, want %v", i/tc.dim, i%tc.dim, rows[i], float32(w))
				}
			}

			// A killed build resumed: the store cut back to its first
			// shard, then built on to the same bytes.
			resumed := filepath.Join(t.TempDir(), "r")
			src1, err := OpenSource(p1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Build(ctx, resumed, src1, tc.spec, BuildOptions{DType: gradients.F32, ShardRows: 4}); err != nil {
				t.Fatal(err)
			}
			src1.Close()
			var started int
			sum, err = Build(ctx, resumed, src, tc.spec, BuildOptions{Resume: true, CheckProjection: true,
				Start: func(m Manifest, n int) { started = n }})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Resumed != 7 || sum.Added != 5 || started != 7 {
				t.Errorf("resumed %+v, Start saw %d", sum, started)
			}
			if ids2, rows2 := readAll(t, open(t, resumed), 5); !slices.Equal(ids2, ids) || !slices.Equal(rows2, rows) {
				t.Errorf("resumed store differs from the one-shot build")
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p1, p2 := filepath.Join(dir, "a.st"), filepath.Join(dir, "b.st")
	writeGrads(t, p1, 4, nil, 1)
	writeGrads(t, p2, 4, nil, 2) // the same ids by position, other values
	built := filepath.Join(dir, "built")
	src, err := OpenSource(p1)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rad := gradients.Projection{Kind: gradients.Rademacher, K: 2, Seed: 1}
	if _, err := Build(ctx, built, src, rad, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	other, err := OpenSource(p2)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tests := []struct {
		name string
		src  *Source
		spec gradients.Projection
		opt  BuildOptions
		is   error
		want string
	}{
		{"over a store", src, rad, BuildOptions{}, ErrExists, "manifest.json"},
		// Checked from the headers before anything else, the store
		// included: a chunk of 4 examples of 9 values.
		{"chunk over the memory limit", src, rad, BuildOptions{Chunk: 4, MemoryLimit: 100}, linalg.ErrMemoryLimit,
			p1 + ": 4 examples needs 288 B (float64), over the memory limit of 100 B"},
		{"kronecker on a dense layer", src, gradients.Projection{Kind: gradients.Kronecker, KIn: 2, KOut: 2}, BuildOptions{}, nil,
			`layer "head" is dense (grad of dimension 4), but kronecker needs factored layers`},
		{"resume other projection", src, gradients.Projection{Kind: gradients.Rademacher, K: 2, Seed: 2}, BuildOptions{Resume: true, CheckProjection: true}, nil,
			"projection rademacher k=2 seed=2 asked for, the store holds rademacher k=2 seed=1"},
		{"resume other dtype", src, rad, BuildOptions{Resume: true, DType: gradients.F32}, nil, "dtype f32 asked for, the store holds f16"},
		{"resume other rows, same ids", other, rad, BuildOptions{Resume: true}, ErrInput, "differs from the store's row 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := built
			if !tc.opt.Resume && tc.is == nil {
				out = filepath.Join(t.TempDir(), "s")
			}
			_, err := Build(ctx, out, tc.src, tc.spec, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Build: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := OpenSource(p1, filepath.Join(dir, ".", "a.st")); err == nil {
		t.Fatal("OpenSource of one file twice: no error")
	} else if se := (*SameFileError)(nil); !errors.As(err, &se) {
		t.Fatalf("OpenSource of one file twice: %v, want a *SameFileError", err)
	}
}
