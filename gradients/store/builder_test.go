package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goinfluence/goinfluence/gradients"
)

// TestBuildLock checks that a store has one Builder at a time: a second
// Create or Resume is refused with the holder named, readers are not, and
// Close hands the lock on.
func TestBuildLock(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "s")
	opt := Options{DType: gradients.F32, ShardRows: 4, Layers: testLayers}
	ids, rows := randRows(10, 0, 1)
	b, err := Create(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, ids[:6], rows[:6*testDim]); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("locked by pid %d on host %s since ", os.Getpid(), host)
	for name, second := range map[string]func() (*Builder, error){
		"create": func() (*Builder, error) { return Create(dir, opt) },
		"resume": func() (*Builder, error) { return Resume(dir) },
	} {
		b2, err := second()
		if err == nil {
			b2.Close()
			t.Fatalf("%s while a build holds the store: no error", name)
		}
		var se *Error
		if !errors.Is(err, ErrLocked) || !errors.As(err, &se) || se.Path != dir || !strings.Contains(err.Error(), holder) {
			t.Errorf("%s while a build holds the store: %v, want %q naming %s", name, err, holder, dir)
		}
	}
	// Readers ignore the lock and its file, and the refused Resume removed
	// nothing of the running build.
	s := open(t, dir)
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Count() != 4 {
		t.Fatalf("store holds %d rows, want 4", s.Count())
	}
	if err := b.Add(ctx, ids[6:], rows[6*testDim:]); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b, err = Resume(dir)
	if err != nil {
		t.Fatalf("Resume after Close: %v", err)
	}
	if b.Committed() != 10 {
		t.Errorf("resumed with %d rows, want 10", b.Committed())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, LockName)); err != nil {
		t.Errorf("lock file: %v", err)
	}
	got, _ := readAll(t, open(t, dir), 3)
	if !slices.Equal(got, ids) {
		t.Errorf("ids %v, want %v", got, ids)
	}
	// A failed Create releases the lock it took.
	if _, err := Create(dir, opt); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over a store: %v, want ErrExists", err)
	}
	b, err = Resume(dir)
	if err != nil {
		t.Fatalf("Resume after a failed Create: %v", err)
	}
	b.Close()
}

const lockEnv = "GOINFLUENCE_STORE_LOCK_DIR"

// TestHelperHoldLock is the subprocess of TestBuildLockKilled: it creates a
// store and holds its build lock until it is killed.
func TestHelperHoldLock(t *testing.T) {
	dir := os.Getenv(lockEnv)
	if dir == "" {
		t.Skip("subprocess of TestBuildLockKilled")
	}
	b, err := Create(dir, Options{DType: gradients.F16, ShardRows: killShard, Layers: []LayerInfo{{Name: "w", Dim: killDim}}})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644)
	time.Sleep(30 * time.Second) // should the parent not kill us
	b.Close()
}

// TestBuildLockKilled checks that the lock of a build killed with SIGKILL
// is free again: the kernel drops it with the process.
func TestBuildLockKilled(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL on windows")
	}
	if os.Getenv(lockEnv) != "" {
		t.Skip("in the subprocess")
	}
	dir := filepath.Join(t.TempDir(), "s")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockEnv+"="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the subprocess did not create the store in 20s")
		}
	}
	_, err := Resume(dir)
	if want := fmt.Sprintf("locked by pid %d on host ", cmd.Process.Pid); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), "TestHelperHoldLock") {
		t.Fatalf("Resume while the subprocess holds the lock: %v, want %q and its command", err, want)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	b, err := Resume(dir)
	if err != nil {
		t.Fatalf("Resume after the holder was killed: %v", err)
	}
	if err := b.Add(context.Background(), []int64{0}, killRow(0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	checkKillStore(t, open(t, dir))
}

// TestSkip checks that a resumed build is given the input it was built
// from: the committed ids, in order, are the first ids of the input.
func TestSkip(t *testing.T) {
	ids, rows := randRows(10, 100, 2)
	other := slices.Clone(ids)
	other[5] = 7
	tests := []struct {
		name  string
		files [][]int64 // the ids of the input files, in order
		skip  []int     // rows Skip matches in each
		want  string    // error, if any
	}{
		{"same", [][]int64{ids}, []int{6}, ""},
		{"same in two files", [][]int64{ids[:4], ids[4:]}, []int{4, 2}, ""},
		{"prefix only", [][]int64{ids[:6]}, []int{6}, ""},
		{"short input", [][]int64{ids[:3]}, []int{3}, ""},
		{"another id", [][]int64{other}, nil, "row 5 of f0 has id 7, the store's row 5 (in shard-000001.safetensors) has id 105"},
		{"another file", [][]int64{ids[6:]}, nil, "row 0 of f0 has id 106, the store's row 0 (in shard-000000.safetensors) has id 100"},
		{"another order", [][]int64{ids[4:], ids[:4]}, nil, "row 0 of f0 has id 104"},
		{"second file differs", [][]int64{ids[:4], ids[5:]}, []int{4}, "row 0 of f1 has id 105, the store's row 4 (in shard-000001.safetensors) has id 104"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "s")
			build(t, dir, Options{DType: gradients.F32, ShardRows: 4, Layers: testLayers}, ids[:6], rows[:6*testDim])
			b, err := Resume(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			for i, f := range tc.files {
				n, err := b.Skip(fmt.Sprintf("f%d", i), f)
				if err != nil {
					if tc.want == "" || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("Skip: %v, want %q", err, tc.want)
					}
					return
				}
				if n != tc.skip[i] {
					t.Errorf("Skip of file %d matched %d rows, want %d", i, n, tc.skip[i])
				}
			}
			if tc.want != "" {
				t.Fatalf("no error, want %q", tc.want)
			}
		})
	}
}

// TestDuplicateIDs checks that ids are unique across the store: across
// calls, shards and resumed builds, with both places named.
func TestDuplicateIDs(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	fileA, fileB := filepath.Join(root, "a.safetensors"), filepath.Join(root, "b.safetensors")
	ba, bb := testBatch(6, 0), testBatch(5, 20)
	bb.IDs[3] = 4
	for path, batch := range map[string]*gradients.Batch{fileA: ba, fileB: bb} {
		if err := gradients.WriteFile(path, batch, gradients.F32, nil); err != nil {
			t.Fatal(err)
		}
	}
	row := func(id int64) []float32 { _, r := randRows(1, int(id), uint64(id)); return r }
	rows := func(ids ...int64) []float32 {
		var v []float32
		for _, id := range ids {
			v = append(v, row(id)...)
		}
		return v
	}
	tests := []struct {
		name  string
		steps func(b *Builder) error
		want  string
	}{
		{"within a call", func(b *Builder) error { return b.Add(ctx, []int64{1, 2, 1}, rows(1, 2, 1)) },
			"id 1: row 2 of this call duplicates row 0 of this call"},
		{"buffered", func(b *Builder) error {
			b.Add(ctx, []int64{1, 2}, rows(1, 2))
			return b.Add(ctx, []int64{3, 2}, rows(3, 2))
		}, "id 2: row 1 of this call duplicates row 1 of the store, not yet committed"},
		{"committed", func(b *Builder) error {
			b.Add(ctx, []int64{1, 2, 3, 4, 5}, rows(1, 2, 3, 4, 5))
			return b.Add(ctx, []int64{9, 3}, rows(9, 3))
		}, "id 3: row 1 of this call duplicates an id already in shard-000000"},
		{"the same file twice", func(b *Builder) error {
			b.AddFile(ctx, fileA)
			return b.AddFile(ctx, fileA)
		}, "id 0: row 0 of " + fileA + " duplicates row 0 of " + fileA + ", in shard-000000"},
		{"across files", func(b *Builder) error {
			b.AddFile(ctx, fileA)
			return b.AddFile(ctx, fileB)
		}, "id 4: row 3 of " + fileB + " duplicates row 4 of " + fileA},
		{"a failed call leaves no ids", func(b *Builder) error {
			if err := b.Add(ctx, []int64{1, 2, 2}, rows(1, 2, 2)); !errors.Is(err, ErrDuplicate) {
				return fmt.Errorf("first call: %v", err)
			}
			return b.Add(ctx, []int64{1, 2}, rows(1, 2))
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Create(filepath.Join(t.TempDir(), "s"), Options{DType: gradients.F32, ShardRows: 4, Layers: testLayers})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			err = tc.steps(b)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}

	// After Resume, the ids of the shards committed before count too.
	dir := filepath.Join(root, "s")
	b, err := Create(dir, Options{DType: gradients.F32, ShardRows: 4, Layers: testLayers})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddFile(ctx, fileA); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = Resume(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Add(ctx, []int64{30, 5}, rows(30, 5))
	if want := "id 5: row 1 of this call duplicates an id already in shard-000001"; !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), want) {
		t.Fatalf("after Resume: %v, want %q", err, want)
	}
	if n, err := b.Skip(fileA, ba.IDs); err != nil || n != 6 {
		t.Fatalf("Skip: %d, %v", n, err)
	}
	err = b.AddFile(ctx, fileB)
	if want := "id 4: row 3 of " + fileB + " duplicates row 4 of " + fileA + ", in shard-000001"; !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), want) {
		t.Fatalf("after Resume and Skip: %v, want %q", err, want)
	}
}
