package gradients

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// TestMemoryLimits holds each call that allocates from header-sized shapes
// to refusing, before allocating, a call over its MemoryLimit with a
// *linalg.MemoryError naming what would be allocated and its size, and to
// working with no limit.
func TestMemoryLimits(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "g.safetensors")
	b := testBatch(6, false)
	if err := WriteFile(path, b, F32, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dense := Projection{Kind: SJLT, K: 4, Seed: 1}
	out := filepath.Join(t.TempDir(), "projected")
	kron := Projection{Kind: Kronecker, KIn: 2, KOut: 2, Seed: 1}
	// One example holds 3·13 + 3·11 + 300 + 7 + 5 = 384 values: 3072 bytes.
	for _, tc := range []struct {
		name  string
		call  func(limit int64) error
		limit int64
		want  []string // substrings of the refusal
	}{
		{"ReadLimit", func(l int64) error { _, err := f.ReadLimit(0, 6, l); return err }, 4 << 10,
			[]string{path + ": 6 examples needs 18 KiB (float64), over the memory limit of 4 KiB"}},
		{"CheckRead", func(l int64) error { return f.CheckRead(1, 3, l) }, 6000,
			[]string{path + ": 2 examples needs 6 KiB (float64)"}},
		{"ApplyWith flattened gradient", func(l int64) error {
			_, err := dense.ApplyWith(ctx, b, ApplyOptions{MemoryLimit: l})
			return err
		}, 1000, []string{`layer "enc.fc1"`, "flattened gradient needs", "6 × 11 × 13 float64"}},
		{"ProjectFile flattened gradient", func(l int64) error {
			_, err := dense.ProjectFile(ctx, f, out, F32, nil, ProjectFileOptions{MemoryLimit: l})
			return err
		}, 1000, []string{path + ": layer enc.fc1: flattened gradient needs 1.12 KiB (11 × 13 float64)"}},
		{"ProjectFile kronecker dense layer", func(l int64) error {
			_, err := kron.ProjectFile(ctx, f, out, F32, nil, ProjectFileOptions{Chunk: 2, MemoryLimit: l})
			return err
		}, 2000, []string{path + ": layer \"enc.bias\" is dense"}},
		{"ProjectFile kronecker projected chunk", func(l int64) error {
			_, err := kron.ProjectFile(ctx, testFactoredFile(t), out, F32, nil, ProjectFileOptions{Chunk: 4, MemoryLimit: l})
			return err
		}, 100, []string{"projected examples needs 512 B (4 × 16 float64), over the memory limit of 100 B"}},
		{"ProjectFile chunk read", func(l int64) error {
			_, err := dense.ProjectFile(ctx, f, out, F32, nil, ProjectFileOptions{Chunk: 3, MemoryLimit: l})
			return err
		}, 5000, []string{path + ": 3 examples needs 9 KiB (float64)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(tc.limit)
			if err == nil {
				t.Fatalf("limit %d: no error", tc.limit)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(tc.want[0], "is dense") {
				return // refused from the header, not for memory
			}
			var me *linalg.MemoryError
			if !errors.As(err, &me) || me.Limit != tc.limit || me.Bytes <= tc.limit {
				t.Errorf("error %v: want a *linalg.MemoryError over the limit %d", err, tc.limit)
			}
			if err := tc.call(linalg.NoMemoryLimit); err != nil {
				t.Errorf("without a limit: %v", err)
			}
		})
	}
}

// testFactoredFile writes the factored layers of testBatch(6) and opens
// them.
func testFactoredFile(t *testing.T) *File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f.safetensors")
	if err := WriteFile(path, testBatch(6, true), F32, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestProjectFile holds ProjectFile to WriteFile of Apply's result on the
// whole file, byte for byte, whatever the chunk, and checks that a failed
// projection leaves no file.
func TestProjectFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "g.safetensors")
	b := testBatch(7, false)
	if err := WriteFile(path, b, F64, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, err := f.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{"projection": "test"}
	for _, p := range []Projection{{Kind: Rademacher, K: 5, Seed: 2}, {Kind: SJLT, K: 6, Seed: 3}, {Kind: Gaussian, K: 3, Seed: 4}} {
		want, err := p.Apply(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		wantPath := filepath.Join(dir, "want")
		if err := WriteFile(wantPath, want, F32, meta); err != nil {
			t.Fatal(err)
		}
		wantBytes, err := os.ReadFile(wantPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{0, 1, 3, 7, 100} {
			var calls [][2]int
			out := filepath.Join(dir, "got")
			layers, err := p.ProjectFile(ctx, f, out, F32, meta, ProjectFileOptions{Chunk: chunk, Progress: func(_ string, done, total int) { calls = append(calls, [2]int{done, total}) }})
			if err != nil {
				t.Fatalf("%s, chunk %d: %v", p.Kind, chunk, err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantBytes) || len(layers) != len(want.Layers) {
				t.Errorf("%s, chunk %d: file differs from WriteFile of Apply's result", p.Kind, chunk)
			}
			if len(calls) == 0 || calls[0] != [2]int{0, 7} || calls[len(calls)-1] != [2]int{7, 7} {
				t.Errorf("%s, chunk %d: progress %v, want (0, 7) first and (7, 7) last", p.Kind, chunk, calls)
			}
		}
	}
	if _, err := (Projection{Kind: SJLT, K: 2}).ProjectFile(ctx, f, filepath.Join(dir, "x"), F32, nil, ProjectFileOptions{Chunk: -1}); err == nil {
		t.Error("chunk -1: no error")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := (Projection{Kind: SJLT, K: 2}).ProjectFile(cancelled, f, filepath.Join(dir, "y"), F32, nil, ProjectFileOptions{Chunk: 2}); err == nil {
		t.Error("cancelled: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "y")); !os.IsNotExist(err) {
		t.Errorf("a cancelled projection left its file: %v", err)
	}
}
