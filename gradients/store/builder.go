package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// Options configure a new store.
type Options struct {
	DType      DType       // element type of the stored values
	ShardRows  int         // rows per shard; DefaultShardRows when zero
	Layers     []LayerInfo // the layers of a row, in order; offsets are computed
	Projection Projection  // how the rows were projected; Kind "none" when empty
	Seed       int64       // seed of the projection
}

// Builder appends rows to a store. It is not safe for concurrent use, and a
// store must have at most one Builder at a time.
//
// Ids should be unique across the store. The Builder checks only what is
// cheap: the ids of each call of Add or AddBatch are distinct.
type Builder struct {
	dir       string
	m         Manifest // committed state
	shardRows int
	rowBytes  int

	ids  []int64 // buffered rows, not yet committed
	data []byte  // their encoded values
	vals []float64
	sum  hash.Hash

	err    error // a failed commit: the Builder is unusable
	closed bool
}

// Create creates a store in dir, making the directory if needed, and returns
// a Builder to fill it. It fails with ErrExists if dir already holds a store
// or shard files. The empty store is committed at once, so that a build
// killed before its first shard can be resumed.
func Create(dir string, opt Options) (*Builder, error) {
	if opt.ShardRows == 0 {
		opt.ShardRows = DefaultShardRows
	}
	if opt.Projection.Kind == "" {
		opt.Projection.Kind = "none"
	}
	if opt.DType.Size() == 0 {
		return nil, &Error{Path: dir, Field: "dtype", Err: fmt.Errorf("%w: %q, want f16, bf16 or f32", ErrDType, opt.DType)}
	}
	if opt.ShardRows < 0 {
		return nil, &Error{Path: dir, Field: "shard rows", Err: fmt.Errorf("%w: %d", ErrShape, opt.ShardRows)}
	}
	m := Manifest{
		Format:     Format,
		DType:      opt.DType,
		Layers:     slices.Clone(opt.Layers),
		Projection: opt.Projection,
		Seed:       opt.Seed,
		Shards:     []ShardInfo{},
	}
	if err := checkLayers(m.Layers, -1, false); err != nil {
		err.(*Error).Path = dir
		return nil, err
	}
	for i := range m.Layers {
		m.Layers[i].Offset = m.Dim
		m.Dim += m.Layers[i].Dim
	}
	if err := m.validate(); err != nil {
		err.(*Error).Path = dir
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &Error{Path: dir, Err: err}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &Error{Path: dir, Err: err}
	}
	for _, e := range entries {
		if _, ok := shardIndex(e.Name()); ok || e.Name() == ManifestName {
			return nil, &Error{Path: filepath.Join(dir, e.Name()), Err: ErrExists}
		}
	}
	if err := writeManifest(dir, m); err != nil {
		return nil, err
	}
	return newBuilder(dir, m, opt.ShardRows), nil
}

// Resume opens the store in dir for appending, after checking it as Open
// does. It removes what a killed build left behind: temporary files and
// shards that the manifest does not name, which were never committed. New
// shards hold as many rows as the largest committed one, or
// DefaultShardRows when there is none; the shard size does not change the
// rows a reader sees.
func Resume(dir string) (*Builder, error) {
	s, err := Open(dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &Error{Path: dir, Err: err}
	}
	for _, e := range entries {
		i, isShard := shardIndex(e.Name())
		if isTemp(e.Name()) || (isShard && i >= len(s.m.Shards)) {
			path := filepath.Join(dir, e.Name())
			if err := os.Remove(path); err != nil {
				return nil, &Error{Path: path, Err: err}
			}
		}
	}
	rows := 0
	for _, sh := range s.m.Shards {
		rows = max(rows, sh.Rows)
	}
	if rows == 0 {
		rows = DefaultShardRows
	}
	return newBuilder(dir, s.m, rows), nil
}

func newBuilder(dir string, m Manifest, shardRows int) *Builder {
	return &Builder{dir: dir, m: m, shardRows: shardRows, rowBytes: m.Dim * m.DType.Size(), sum: sha256.New()}
}

// Committed returns the number of rows committed to shards: the rows a build
// killed now would keep.
func (b *Builder) Committed() int { return b.m.Count }

// Buffered returns the number of rows added but not yet committed.
func (b *Builder) Buffered() int { return len(b.ids) }

// Add appends rows, len(ids)·Dim values laid out row-major, and commits a
// shard whenever enough rows are buffered. Rows holding a NaN, an infinity
// or a value the dtype cannot hold are an error naming the id, as are
// repeated ids; the rows of a call are then rejected whole. The context is
// checked before the rows are taken and between shard commits; rows taken
// but not committed when it ends stay buffered for the next Add or Close.
func (b *Builder) Add(ctx context.Context, ids []int64, rows []float32) error {
	return addRows(b, ctx, ids, rows)
}

// AddBatch appends the flattened gradients of a batch, whose layers must be
// those of the store, by name and dimension, and whose examples must all
// have ids. A batch of projected gradients is a batch of dense layers of the
// projected sizes. See Add for the checks and commits.
func (b *Builder) AddBatch(ctx context.Context, batch *gradients.Batch) error {
	if err := b.usable(); err != nil {
		return err
	}
	if batch == nil {
		return &Error{Path: b.dir, Err: fmt.Errorf("%w: nil batch", ErrShape)}
	}
	if len(batch.IDs) != batch.N {
		return &Error{Path: b.dir, Field: "ids", Err: fmt.Errorf("%w: %d ids for %d examples", ErrShape, len(batch.IDs), batch.N)}
	}
	if err := b.checkLayers(len(batch.Layers), func(i int) (string, int) {
		return batch.Layers[i].Name, batch.Layers[i].Dim()
	}); err != nil {
		return err
	}
	if err := batch.Validate(); err != nil {
		var ge *gradients.Error
		if errors.As(err, &ge) && ge.Example >= 0 && ge.Example < batch.N {
			err = fmt.Errorf("id %d: %w", batch.IDs[ge.Example], err)
		}
		return &Error{Path: b.dir, Err: err}
	}
	return addRows(b, ctx, batch.IDs, batch.Flatten().Data)
}

// AddFile appends every example of a gradient file, reading it in pieces of
// bounded size. The file's layers must be those of the store and it must hold
// ids; ids are checked to be distinct within each piece only.
func (b *Builder) AddFile(ctx context.Context, path string) error {
	if err := b.usable(); err != nil {
		return err
	}
	f, err := gradients.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.N() > 0 && f.IDs() == nil {
		return &Error{Path: path, Field: "ids", Err: fmt.Errorf("%w: the file has no ids", ErrShape)}
	}
	layers := f.Layers()
	if err := b.checkLayers(len(layers), func(i int) (string, int) { return layers[i].Name, layers[i].D }); err != nil {
		err.(*Error).Path = path
		return err
	}
	// Pieces of about 32 MiB of flattened float64 gradients.
	piece := max(1, (32<<20)/(8*b.m.Dim))
	for lo := 0; lo < f.N(); lo += piece {
		batch, err := f.Read(lo, min(lo+piece, f.N()))
		if err != nil {
			return err
		}
		if err := b.AddBatch(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// checkLayers compares n layers, given by name and dimension, with the
// store's.
func (b *Builder) checkLayers(n int, layer func(i int) (string, int)) error {
	if n != len(b.m.Layers) {
		return &Error{Path: b.dir, Field: "layers", Err: fmt.Errorf("%w: %d layers, the store has %d", ErrShape, n, len(b.m.Layers))}
	}
	for i, want := range b.m.Layers {
		name, dim := layer(i)
		if name != want.Name || dim != want.Dim {
			return &Error{Path: b.dir, Field: fmt.Sprintf("layers[%d]", i),
				Err: fmt.Errorf("%w: layer %q of dimension %d, the store has %q of dimension %d", ErrShape, name, dim, want.Name, want.Dim)}
		}
	}
	return nil
}

func (b *Builder) usable() error {
	if b.closed {
		return &Error{Path: b.dir, Err: fs.ErrClosed}
	}
	return b.err
}

// addRows checks and encodes rows, float32 or float64, buffers them and
// commits every full shard.
func addRows[T float32 | float64](b *Builder, ctx context.Context, ids []int64, rows []T) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dim := b.m.Dim
	if len(rows) != len(ids)*dim {
		return &Error{Path: b.dir, Err: fmt.Errorf("%w: %d values for %d ids of dimension %d", ErrShape, len(rows), len(ids), dim)}
	}
	if len(ids) == 0 {
		return nil
	}
	seen := make(map[int64]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; dup {
			return &Error{Path: b.dir, Field: "ids", Err: fmt.Errorf("%w: id %d", ErrDuplicate, id)}
		}
		seen[id] = struct{}{}
	}
	for i, x := range rows {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return &Error{Path: b.dir, Err: fmt.Errorf("%w: id %d: %v at column %d", ErrNonFinite, ids[i/dim], f, i%dim)}
		}
	}
	// Encode in pieces so that widening float32 input needs little scratch.
	base := len(b.data)
	piece := max(1, 4096/dim) * dim
	for lo := 0; lo < len(rows); lo += piece {
		v := widen(&b.vals, rows[lo:min(lo+piece, len(rows))])
		enc, err := safetensors.EncodeFloat64s(b.m.DType.tensor(), v)
		if err != nil {
			b.data = b.data[:base]
			var re *safetensors.RangeError
			if errors.As(err, &re) {
				i := lo + re.Index
				err = fmt.Errorf("%w: id %d: %g at column %d overflows %s", ErrRange, ids[i/dim], re.Value, i%dim, b.m.DType)
			}
			return &Error{Path: b.dir, Err: err}
		}
		b.data = append(b.data, enc...)
	}
	b.ids = append(b.ids, ids...)
	for len(b.ids) >= b.shardRows {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.commit(b.shardRows); err != nil {
			return err
		}
	}
	return nil
}

// widen returns v as float64, using scratch when v is not float64 already.
func widen[T float32 | float64](scratch *[]float64, v []T) []float64 {
	if f, ok := any(v).([]float64); ok {
		return f
	}
	*scratch = slices.Grow((*scratch)[:0], len(v))[:len(v)]
	for i, x := range v {
		(*scratch)[i] = float64(x)
	}
	return *scratch
}

// commit writes the first n buffered rows as the next shard and then
// replaces the manifest: the shard counts as committed only once the new
// manifest is in place. On failure the Builder becomes unusable, since the
// files on disk may be ahead of it; Resume recovers the store.
func (b *Builder) commit(n int) error {
	i := len(b.m.Shards)
	name := shardName(i)
	path := filepath.Join(b.dir, name)
	ids, _ := safetensors.EncodeInt64s(safetensors.I64, b.ids[:n]) // I64 holds any int64
	tensors := []safetensors.Tensor{
		{Name: "grads", DType: b.m.DType.tensor(), Shape: []int{n, b.m.Dim}, Data: b.data[:n*b.rowBytes]},
		{Name: "ids", DType: safetensors.I64, Shape: []int{n}, Data: ids},
	}
	meta := map[string]string{"format": Format}
	// The writer is deterministic, so hashing what it would write gives the
	// digest of the file without reading it back.
	b.sum.Reset()
	if err := safetensors.Write(b.sum, tensors, meta); err != nil {
		b.err = &Error{Path: path, Err: err}
		return b.err
	}
	digest := hex.EncodeToString(b.sum.Sum(nil))
	if err := safetensors.WriteFile(path, tensors, meta); err != nil {
		b.err = &Error{Path: path, Err: err}
		return b.err
	}
	next := b.m.clone()
	next.Shards = append(next.Shards, ShardInfo{File: name, Rows: n, SHA256: digest})
	next.Count += n
	if err := writeManifest(b.dir, next); err != nil {
		b.err = err
		return err
	}
	b.m = next
	b.ids = b.ids[:copy(b.ids, b.ids[n:])]
	b.data = b.data[:copy(b.data, b.data[n*b.rowBytes:])]
	return nil
}

// Close commits the buffered rows as a last, possibly short, shard. The
// Builder cannot be used afterwards; Resume continues the store.
func (b *Builder) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.err != nil {
		return b.err
	}
	if len(b.ids) > 0 {
		return b.commit(len(b.ids))
	}
	return nil
}
