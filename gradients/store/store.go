package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// Store is an open store, for reading. Its methods may be called from
// several goroutines at once; each Iterator belongs to one goroutine.
type Store struct {
	dir    string
	m      Manifest // never modified after Open
	checks []shardCheck
	closed atomic.Bool
}

// OpenOptions configures OpenWith.
type OpenOptions struct {
	// NoVerify turns off the checking of every shard's SHA-256 before its
	// rows are first read. The check costs one sequential pass over each
	// shard per Store (bench/results/stream-verify-*.md); without it a
	// flipped byte, a NaN row or a shard swapped for another is scored
	// without complaint.
	NoVerify bool
}

// shardCheck is the outcome, computed once per Store, of comparing a shard's
// SHA-256 with the manifest.
type shardCheck struct {
	mu   sync.Mutex
	done bool  // the shard was hashed; err is the outcome
	err  error // a mismatch
}

// Open opens the store in dir with the default options: every shard's
// SHA-256 is checked against the manifest before any of its rows are read.
// It is OpenWith(dir, OpenOptions{}).
func Open(dir string) (*Store, error) { return OpenWith(dir, OpenOptions{}) }

// OpenWith opens the store in dir. It reads and validates the manifest and
// checks that every committed shard exists and has the tensors, dtype and
// shapes the manifest implies. Unless opt.NoVerify, each shard's SHA-256 is
// checked the first time an Iterator or IDs reaches it, over the mapped
// bytes that are then read, once per Store; Verify checks them all at once.
// Files the manifest does not name, such as the leftovers of a killed build,
// are ignored.
func OpenWith(dir string, opt OpenOptions) (*Store, error) {
	m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	for i := range m.Shards {
		f, err := openShard(dir, &m, i)
		if err != nil {
			return nil, err
		}
		f.Close()
	}
	s := &Store{dir: dir, m: m}
	if !opt.NoVerify {
		s.checks = make([]shardCheck, len(m.Shards))
	}
	return s, nil
}

// Verifies reports whether the store checks each shard's SHA-256 before
// reading it (see OpenOptions.NoVerify).
func (s *Store) Verifies() bool { return s.checks != nil }

// checkShard compares the SHA-256 of shard i, open as f, with the manifest,
// unless the store does not verify or has already done so. The digest is
// taken over f's mapped bytes, the ones the caller goes on to read, so that
// a file replaced between the check and the reading cannot slip through. A
// cancelled check is not remembered. The caller must catch memory faults
// (see catchFault).
func (s *Store) checkShard(ctx context.Context, i int, f *safetensors.File) error {
	if s.checks == nil {
		return nil
	}
	c := &s.checks[i]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return c.err
	}
	sum, err := bytesSHA256(ctx, f.Whole())
	if err != nil {
		return err
	}
	c.err = s.compareSum(i, sum)
	c.done = true
	return c.err
}

// checked reports whether shard i has been checked.
func (s *Store) checked(i int) bool {
	c := &s.checks[i]
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// remember records the outcome of a check of shard i made by Verify.
func (s *Store) remember(i int, err error) {
	if s.checks == nil {
		return
	}
	c := &s.checks[i]
	c.mu.Lock()
	c.done, c.err = true, err
	c.mu.Unlock()
}

// compareSum returns the error for a shard i whose file has the digest sum,
// nil when it is the manifest's.
func (s *Store) compareSum(i int, sum string) error {
	sh := s.m.Shards[i]
	if sum == sh.SHA256 {
		return nil
	}
	return &Error{Path: filepath.Join(s.dir, sh.File), Field: "sha256", Err: fmt.Errorf("%w: manifest has %s, file has %s", ErrChecksum, sh.SHA256, sum)}
}

// bytesSHA256 returns the hex SHA-256 of b, hashing it in blocks and
// checking ctx between them.
func bytesSHA256(ctx context.Context, b []byte) (string, error) {
	const block = 4 << 20
	h := sha256.New()
	for len(b) > 0 {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := min(len(b), block)
		h.Write(b[:n])
		b = b[n:]
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ErrFault is the cause of the error for a memory-mapped shard that could not
// be read: the file shrank (was truncated or rewritten in place) while it
// was mapped, which would otherwise kill the process with SIGBUS.
var ErrFault = errors.New("memory fault reading the mapped file (did it shrink while in use?)")

// faultError turns the value recovered from a panic into the error for a
// memory fault in the mapped shard at path, and panics again with any value
// that is not a memory fault. Mapped reads run with
// debug.SetPanicOnFault(true), which makes the fault a runtime.Error with an
// Addr method on the goroutine that touched the memory.
func faultError(r any, path string) error {
	re, ok := r.(runtime.Error)
	if !ok {
		panic(r)
	}
	a, ok := re.(interface{ Addr() uintptr })
	if !ok {
		panic(r)
	}
	return &Error{Path: path, Err: fmt.Errorf("%w: at address %#x", ErrFault, a.Addr())}
}

// panicOnFault turns debug.SetPanicOnFault on for the calling goroutine and
// returns the function that restores the previous setting, for
// defer panicOnFault()().
func panicOnFault() func() {
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}

// openShard memory-maps shard i and checks it against the manifest.
func openShard(dir string, m *Manifest, i int) (*safetensors.File, error) {
	s := m.Shards[i]
	path := filepath.Join(dir, s.File)
	f, err := safetensors.Open(path)
	if err != nil {
		err = pathless(err)
		if errors.Is(err, safetensors.ErrFormat) || errors.Is(err, safetensors.ErrTruncated) || errors.Is(err, safetensors.ErrDType) {
			err = fmt.Errorf("%w: %w", ErrFormat, err)
		}
		return nil, &Error{Path: path, Err: err}
	}
	want := []struct {
		name  string
		dtype safetensors.DType
		shape []int
	}{
		{"grads", safetensors.DType(m.DType), []int{s.Rows, m.Dim}},
		{"ids", safetensors.I64, []int{s.Rows}},
	}
	names := "grads and ids"
	if m.DType == gradients.I8 {
		want = append(want, struct {
			name  string
			dtype safetensors.DType
			shape []int
		}{"scales", safetensors.F32, []int{s.Rows}})
		names = "grads, scales and ids"
	}
	if n := len(f.Names()); n != len(want) {
		f.Close()
		return nil, &Error{Path: path, Err: fmt.Errorf("%w: %d tensors %q, want %s", ErrFormat, n, f.Names(), names)}
	}
	for _, w := range want {
		in, ok := f.Info(w.name)
		switch {
		case !ok:
			err = fmt.Errorf("%w: no tensor", ErrFormat)
		case in.DType != w.dtype:
			err = fmt.Errorf("%w: %s, want %s", ErrDType, in.DType, w.dtype)
		case !slices.Equal(in.Shape, w.shape):
			err = fmt.Errorf("%w: shape %v, want %v", ErrShape, in.Shape, w.shape)
		}
		if err != nil {
			f.Close()
			return nil, &Error{Path: path, Field: w.name, Err: err}
		}
	}
	return f, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Count returns the number of rows.
func (s *Store) Count() int { return s.m.Count }

// Dim returns the length of a row.
func (s *Store) Dim() int { return s.m.Dim }

// DType returns the element type of the stored values.
func (s *Store) DType() gradients.DType { return s.m.DType }

// Layers returns the layers, in row order.
func (s *Store) Layers() []LayerInfo { return slices.Clone(s.m.Layers) }

// Manifest returns a copy of the manifest.
func (s *Store) Manifest() Manifest { return s.m.clone() }

// IDs returns the ids of all rows, in order, reading only the shards' ids
// tensors (and, unless the store was opened with NoVerify, hashing the
// shards not yet checked).
func (s *Store) IDs(ctx context.Context) ([]int64, error) {
	if s.closed.Load() {
		return nil, &Error{Path: s.dir, Err: fs.ErrClosed}
	}
	ids := make([]int64, s.m.Count)
	off := 0
	for i, sh := range s.m.Shards {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.readIDs(ctx, i, ids[off:off+sh.Rows]); err != nil {
			return nil, err
		}
		off += sh.Rows
	}
	return ids, nil
}

// readIDs decodes the ids of shard i into dst, after checking the shard.
func (s *Store) readIDs(ctx context.Context, i int, dst []int64) error {
	return s.withShard(ctx, i, func(f *safetensors.File) error {
		if err := safetensors.DecodeInt64s(dst, safetensors.I64, f.Bytes("ids")); err != nil {
			return &Error{Path: filepath.Join(s.dir, s.m.Shards[i].File), Field: "ids", Err: fmt.Errorf("%w: %v", ErrFormat, err)}
		}
		return nil
	})
}

// withShard maps shard i, checks it (Store.checkShard) and calls fn on it,
// with a memory fault in the mapped bytes turned into an error naming the
// shard.
func (s *Store) withShard(ctx context.Context, i int, fn func(f *safetensors.File) error) (err error) {
	path := filepath.Join(s.dir, s.m.Shards[i].File)
	defer panicOnFault()()
	defer func() {
		if r := recover(); r != nil {
			err = faultError(r, path)
		}
	}()
	f, err := openShard(s.dir, &s.m, i)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.checkShard(ctx, i, f); err != nil {
		return err
	}
	return fn(f)
}

// Close releases the store. Iterators return fs.ErrClosed afterwards.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// Verify recomputes now the SHA-256 of every shard file and compares it with
// the manifest, whatever has been checked before. The error names the first
// shard that differs or cannot be read. The outcomes spare the iterators
// of a store that verifies their own check.
func (s *Store) Verify(ctx context.Context) error {
	if s.closed.Load() {
		return &Error{Path: s.dir, Err: fs.ErrClosed}
	}
	for i, sh := range s.m.Shards {
		path := filepath.Join(s.dir, sh.File)
		sum, err := fileSHA256(ctx, path)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return &Error{Path: path, Err: err}
		}
		err = s.compareSum(i, sum)
		s.remember(i, err)
		if err != nil {
			return err
		}
	}
	return nil
}

// fileSHA256 returns the hex SHA-256 of the file at path, reading it in
// blocks and checking ctx between them.
func fileSHA256(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", pathless(err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
