package gradients

import (
	"context"
	"errors"
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
		{"ApplyFile flattened gradient", func(l int64) error {
			_, err := dense.ApplyFile(ctx, f, ProjectFileOptions{MemoryLimit: l})
			return err
		}, 1000, []string{path + ": layer enc.fc1: flattened gradient needs 1.12 KiB (11 × 13 float64)"}},
		{"ApplyFile kronecker dense layer", func(l int64) error {
			_, err := kron.ApplyFile(ctx, f, ProjectFileOptions{Chunk: 2, MemoryLimit: l})
			return err
		}, 2000, []string{path + ": layer \"enc.bias\" is dense"}},
		{"ApplyFile kronecker projected examples", func(l int64) error {
			_, err := kron.ApplyFile(ctx, testFactoredFile(t), ProjectFileOptions{MemoryLimit: l})
			return err
		}, 100, []string{"projected examples needs 768 B (6 × 16 float64), over the memory limit of 100 B"}},
		{"ApplyFile chunk read", func(l int64) error {
			_, err := dense.ApplyFile(ctx, f, ProjectFileOptions{Chunk: 3, MemoryLimit: l})
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

// TestApplyFile holds ApplyFile to Apply's result on the whole file, bit
// for bit, whatever the chunk.
func TestApplyFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "g.safetensors")
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
	for _, p := range []Projection{{Kind: Rademacher, K: 5, Seed: 2}, {Kind: SJLT, K: 6, Seed: 3}, {Kind: Gaussian, K: 3, Seed: 4}} {
		want, err := p.Apply(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{0, 1, 3, 7, 100} {
			var calls [][2]int
			got, err := p.ApplyFile(ctx, f, ProjectFileOptions{Chunk: chunk, Progress: func(done, total int) { calls = append(calls, [2]int{done, total}) }})
			if err != nil {
				t.Fatalf("%s, chunk %d: %v", p.Kind, chunk, err)
			}
			sameBatch(t, p.Kind.String(), got, want)
			if len(calls) == 0 || calls[0] != [2]int{0, 7} || calls[len(calls)-1] != [2]int{7, 7} {
				t.Errorf("%s, chunk %d: progress %v, want (0, 7) first and (7, 7) last", p.Kind, chunk, calls)
			}
		}
	}
	if _, err := (Projection{Kind: SJLT, K: 2}).ApplyFile(ctx, f, ProjectFileOptions{Chunk: -1}); err == nil {
		t.Error("chunk -1: no error")
	}
}
