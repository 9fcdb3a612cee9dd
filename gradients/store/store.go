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
	"slices"
	"sync/atomic"

	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// Store is an open store, for reading. Its methods may be called from
// several goroutines at once; each Iterator belongs to one goroutine.
type Store struct {
	dir    string
	m      Manifest // never modified after Open
	closed atomic.Bool
}

// Open opens the store in dir. It reads and validates the manifest and checks
// that every committed shard exists and has the tensors, dtype and shapes the
// manifest implies; the SHA-256 digests are checked by Verify. Files the
// manifest does not name, such as the leftovers of a killed build, are
// ignored.
func Open(dir string) (*Store, error) {
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
	return &Store{dir: dir, m: m}, nil
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
		{"grads", m.DType.tensor(), []int{s.Rows, m.Dim}},
		{"ids", safetensors.I64, []int{s.Rows}},
	}
	if n := len(f.Names()); n != len(want) {
		f.Close()
		return nil, &Error{Path: path, Err: fmt.Errorf("%w: %d tensors %q, want grads and ids", ErrFormat, n, f.Names())}
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
func (s *Store) DType() DType { return s.m.DType }

// Layers returns the layers, in row order.
func (s *Store) Layers() []LayerInfo { return slices.Clone(s.m.Layers) }

// Manifest returns a copy of the manifest.
func (s *Store) Manifest() Manifest { return s.m.clone() }

// IDs returns the ids of all rows, in order, reading only the shards' ids
// tensors.
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
		f, err := openShard(s.dir, &s.m, i)
		if err != nil {
			return nil, err
		}
		err = safetensors.DecodeInt64s(ids[off:off+sh.Rows], safetensors.I64, f.Bytes("ids"))
		f.Close()
		if err != nil {
			return nil, &Error{Path: filepath.Join(s.dir, sh.File), Field: "ids", Err: fmt.Errorf("%w: %v", ErrFormat, err)}
		}
		off += sh.Rows
	}
	return ids, nil
}

// Close releases the store. Iterators return fs.ErrClosed afterwards.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// Verify recomputes the SHA-256 of every shard file and compares it with the
// manifest. The error names the first shard that differs or cannot be read.
func (s *Store) Verify(ctx context.Context) error {
	if s.closed.Load() {
		return &Error{Path: s.dir, Err: fs.ErrClosed}
	}
	for _, sh := range s.m.Shards {
		path := filepath.Join(s.dir, sh.File)
		sum, err := fileSHA256(ctx, path)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return &Error{Path: path, Err: err}
		}
		if sum != sh.SHA256 {
			return &Error{Path: path, Field: "sha256", Err: fmt.Errorf("%w: manifest has %s, file has %s", ErrChecksum, sh.SHA256, sum)}
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
