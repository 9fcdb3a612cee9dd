package store

import (
	"bytes"
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
	"strings"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// Options configure a new store.
type Options struct {
	DType     gradients.DType // element type of the stored values
	ShardRows int             // rows per shard; DefaultShardRows when zero
	Layers    []LayerInfo     // the layers of a row, in order; offsets are computed
	// Projection made the rows from the full gradients (zero: none). Its
	// seed is recorded as an int64: seeds must lie below 2⁶³.
	Projection gradients.Projection
}

// Builder appends rows to a store. It is not safe for concurrent use. A
// store has at most one Builder at a time: Create and Resume take the
// store's build lock (see LockName) and Close releases it.
//
// Ids are unique across the store: the Builder keeps the set of the ids
// committed and buffered, 8 bytes a row while ids arrive increasing and
// about 40 once they do not, and rejects an id it holds
// already, naming both places.
type Builder struct {
	dir       string
	m         Manifest // committed state
	shardRows int
	rowBytes  int

	ids    []int64   // buffered rows, not yet committed
	data   []byte    // their encoded values
	scales []float32 // their scales, for an i8 store
	vals   []float64
	sum    hash.Hash

	lock    *lock
	seen    idSet     // ids committed and buffered
	resumed []int64   // ids committed before Resume, in order
	skipped int       // of resumed, the rows Skip has matched
	segs    []segment // where the rows added came from

	err    error // a failed commit: the Builder is unusable
	closed bool
}

// segment records that the rows of the store from row on came from rows
// first, first+1, … of the input src, for naming them in errors.
type segment struct {
	row   int
	src   string
	first int
}

// Create creates a store in dir, making the directory if needed, and returns
// a Builder to fill it. It fails with ErrExists if dir already holds a store
// or shard files. The empty store is committed at once, so that a build
// killed before its first shard can be resumed.
func Create(dir string, opt Options) (*Builder, error) {
	if opt.ShardRows == 0 {
		opt.ShardRows = DefaultShardRows
	}
	if opt.Projection.Seed > math.MaxInt64 {
		return nil, &Error{Path: dir, Field: "projection", Err: fmt.Errorf("%w: seed %d: a store records seeds below 2⁶³", ErrFormat, opt.Projection.Seed)}
	}
	if !storable(opt.DType) {
		return nil, &Error{Path: dir, Field: "dtype", Err: fmt.Errorf("%w: %q, "+dtypeWant, ErrDType, dtypeName(opt.DType))}
	}
	if opt.ShardRows < 0 {
		return nil, &Error{Path: dir, Field: "shard rows", Err: fmt.Errorf("%w: %d", ErrShape, opt.ShardRows)}
	}
	m := Manifest{
		Format:     Format,
		DType:      opt.DType,
		Layers:     slices.Clone(opt.Layers),
		Projection: opt.Projection,
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
	// The lock comes before the look at the directory, so that of two
	// builds started together one is refused for the lock and the other
	// sees the store the first one made.
	l, err := acquireLock(dir)
	if err != nil {
		return nil, err
	}
	if err := createIn(dir, m); err != nil {
		l.release()
		return nil, err
	}
	b := newBuilder(dir, m, opt.ShardRows)
	b.lock = l
	return b, nil
}

// createIn commits the empty store m in dir, which must hold no store.
func createIn(dir string, m Manifest) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return &Error{Path: dir, Err: err}
	}
	for _, e := range entries {
		if _, ok := shardIndex(e.Name()); ok || e.Name() == ManifestName {
			return &Error{Path: filepath.Join(dir, e.Name()), Err: ErrExists}
		}
	}
	return writeManifest(dir, m)
}

// Resume opens the store in dir for appending, after checking it as Open
// does. It removes what a killed build left behind: temporary files and
// shards that the manifest does not name, which were never committed. New
// shards hold as many rows as the largest committed one, or
// DefaultShardRows when there is none; the shard size does not change the
// rows a reader sees.
//
// Resume reads the ids of the committed rows, for the uniqueness of ids and
// for Skip, which checks that the resumed input is the one the store was
// built from.
func Resume(dir string) (*Builder, error) {
	if _, err := os.Stat(dir); err != nil {
		// No directory, so no lock file: Open names what is missing.
		_, err := Open(dir)
		return nil, err
	}
	l, err := acquireLock(dir)
	if err != nil {
		return nil, err
	}
	b, err := resume(dir)
	if err != nil {
		l.release()
		return nil, err
	}
	b.lock = l
	return b, nil
}

// resume is Resume under the lock. The committed shards' checksums are not
// hashed: the ids are all it reads, and Skip and SameRow hold the inputs to
// the rows; readers check the checksums before using rows.
func resume(dir string) (*Builder, error) {
	s, err := OpenWith(dir, OpenOptions{NoVerify: true})
	if err != nil {
		return nil, err
	}
	ids, err := s.IDs(context.Background())
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
	b := newBuilder(dir, s.m, rows)
	b.resumed = ids
	for r, id := range ids {
		if b.seen.has(id) {
			first := slices.Index(ids, id)
			return nil, &Error{Path: dir, Field: "ids", Err: fmt.Errorf("%w: id %d: the store holds it twice, in %s and %s",
				ErrDuplicate, id, b.m.Shards[b.shardOf(first)].File, b.m.Shards[b.shardOf(r)].File)}
		}
		b.seen.add(id)
	}
	return b, nil
}

func newBuilder(dir string, m Manifest, shardRows int) *Builder {
	return &Builder{dir: dir, m: m, shardRows: shardRows, rowBytes: m.Dim * m.DType.Size(), sum: sha256.New()}
}

// Skip checks the input of a resumed build against the rows committed
// before Resume, so that a different input (another split, another file, or
// the files in another order) is not appended to the store silently. Call it
// for each input file src in order, with the file's ids in order (or as many
// of the first ones as remain committed); Skip compares them with the
// committed rows not yet skipped and returns how many it matched, the rows of
// src to skip before adding the rest. A difference is an error naming the
// first differing row of src and both ids.
func (b *Builder) Skip(src string, ids []int64) (int, error) {
	if err := b.usable(); err != nil {
		return 0, err
	}
	if b.m.Count > len(b.resumed) || len(b.ids) > 0 {
		return 0, &Error{Path: b.dir, Err: fmt.Errorf("%w: Skip after rows were added", ErrInput)}
	}
	n := min(len(ids), len(b.resumed)-b.skipped)
	want := b.resumed[b.skipped : b.skipped+n]
	for i, id := range ids[:n] {
		if id != want[i] {
			r := b.skipped + i
			return 0, &Error{Path: b.dir, Field: "ids", Err: fmt.Errorf("%w: row %d of %s has id %d, the store's row %d (in %s) has id %d",
				ErrInput, i, src, id, r, b.m.Shards[b.shardOf(r)].File, want[i])}
		}
	}
	if n > 0 {
		b.record(b.skipped, src, 0)
	}
	b.skipped += n
	return n, nil
}

// SameRow checks that example, a batch of one example of src (its row
// srcRow) prepared as the store's rows are (projected, when the store is),
// encodes to exactly the bytes of the committed store row row. Skip compares
// ids only, and two inputs can carry the same ids (two splits numbered from
// 0, a file regenerated from another checkpoint): comparing the content of
// the last row that Skip matched catches them for the cost of one row.
func (b *Builder) SameRow(src string, srcRow, row int, example *gradients.Batch) error {
	if err := b.usable(); err != nil {
		return err
	}
	if row < 0 || row >= b.m.Count {
		return &Error{Path: b.dir, Err: fmt.Errorf("%w: row %d is not committed (%d rows)", ErrInput, row, b.m.Count)}
	}
	if example == nil || example.N != 1 {
		return &Error{Path: b.dir, Err: fmt.Errorf("%w: SameRow wants a batch of one example", ErrShape)}
	}
	if err := b.checkLayers(len(example.Layers), func(i int) (string, int) {
		return example.Layers[i].Name, example.Layers[i].Dim()
	}); err != nil {
		return err
	}
	enc, scales, err := encodeRows(b.m.DType, b.m.Dim, example.Flatten().Data)
	if err != nil {
		return &Error{Path: b.dir, Err: fmt.Errorf("%w: row %d of %s: %w", ErrInput, srcRow, src, err)}
	}
	si := b.shardOf(row)
	local := row
	for _, sh := range b.m.Shards[:si] {
		local -= sh.Rows
	}
	f, err := openShard(b.dir, &b.m, si)
	if err != nil {
		return err
	}
	defer f.Close()
	stored := f.Bytes("grads")[local*len(enc) : (local+1)*len(enc)]
	same := bytes.Equal(stored, enc)
	if scales != nil {
		same = same && bytes.Equal(f.Bytes("scales")[4*local:4*local+4], encodeScales(scales))
	}
	if !same {
		return &Error{Path: b.dir, Field: "grads", Err: fmt.Errorf("%w: row %d of %s differs from the store's row %d (in %s), though their ids match: another input, or another projection",
			ErrInput, srcRow, src, row, b.m.Shards[si].File)}
	}
	return nil
}

// record notes that the rows of the store from row on come from rows first,
// first+1, … of src, extending the last segment when it continues it.
func (b *Builder) record(row int, src string, first int) {
	if k := len(b.segs); k > 0 {
		last := b.segs[k-1]
		if last.src == src && last.first+(row-last.row) == first {
			return
		}
	}
	b.segs = append(b.segs, segment{row: row, src: src, first: first})
}

// shardOf returns the index of the committed shard holding row r.
func (b *Builder) shardOf(r int) int {
	for i, sh := range b.m.Shards {
		if r < sh.Rows {
			return i
		}
		r -= sh.Rows
	}
	return -1
}

// Manifest returns a copy of the committed state, for a caller that checks
// its input against a resumed store.
func (b *Builder) Manifest() Manifest { return b.m.clone() }

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
	return addRows(b, ctx, "", 0, ids, rows)
}

// AddBatch appends the flattened gradients of a batch, whose layers must be
// those of the store, by name and dimension, and whose examples must all
// have ids. A batch of projected gradients is a batch of dense layers of the
// projected sizes. See Add for the checks and commits.
func (b *Builder) AddBatch(ctx context.Context, batch *gradients.Batch) error {
	return b.AddBatchFrom(ctx, "", 0, batch)
}

// AddBatchFrom is AddBatch for a batch that holds rows first, first+1, … of
// the input file src, which errors then name, such as that of a repeated id.
func (b *Builder) AddBatchFrom(ctx context.Context, src string, first int, batch *gradients.Batch) error {
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
	return addRows(b, ctx, src, first, batch.IDs, batch.Flatten().Data)
}

// AddFile appends every example of a gradient file, reading it in pieces of
// bounded size. The file's layers must be those of the store and it must hold
// ids.
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
		if err := b.AddBatchFrom(ctx, path, lo, batch); err != nil {
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

// addRows checks and encodes rows, float32 or float64, the rows first,
// first+1, … of src, buffers them and commits every full shard.
func addRows[T float32 | float64](b *Builder, ctx context.Context, src string, first int, ids []int64, rows []T) error {
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
	for i, x := range rows {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return &Error{Path: b.dir, Err: fmt.Errorf("%w: id %d: %v at column %d", ErrNonFinite, ids[i/dim], f, i%dim)}
		}
	}
	// The ids join the set now and leave it again if the call fails.
	for i, id := range ids {
		if b.seen.has(id) {
			err := b.duplicate(id, src, first, ids[:i])
			b.seen.undo(ids[:i])
			return err
		}
		b.seen.add(id)
	}
	// Encode in pieces so that widening float32 input needs little scratch.
	base := len(b.data)
	piece := max(1, 4096/dim) * dim
	for lo := 0; lo < len(rows); lo += piece {
		v := widen(&b.vals, rows[lo:min(lo+piece, len(rows))])
		enc, scales, err := encodeRows(b.m.DType, dim, v)
		if err != nil {
			b.data = b.data[:base]
			if b.scales != nil {
				b.scales = b.scales[:base/b.rowBytes]
			}
			var re *safetensors.RangeError
			if errors.As(err, &re) {
				i := lo + re.Index
				what := dtypeName(b.m.DType)
				if b.m.DType == gradients.I8 {
					what = "float32, which i8 rows are quantised from"
				}
				err = fmt.Errorf("%w: id %d: %g at column %d overflows %s", ErrRange, ids[i/dim], re.Value, i%dim, what)
			}
			b.seen.undo(ids)
			return &Error{Path: b.dir, Err: err}
		}
		b.data = append(b.data, enc...)
		b.scales = append(b.scales, scales...)
	}
	b.record(b.m.Count+len(b.ids), src, first)
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

// duplicate returns the error for id, row first+len(prev) of src, which the
// store holds already: among prev, the earlier ids of the same call, among
// the buffered rows, or in a committed shard. Finding where reads the ids of
// the committed shards again, which only an error pays for.
func (b *Builder) duplicate(id int64, src string, first int, prev []int64) error {
	here := b.describe(src, first+len(prev))
	there := ""
	if i := slices.Index(prev, id); i >= 0 {
		there = b.describe(src, first+i)
	} else if i := slices.Index(b.ids, id); i >= 0 {
		there = b.place(b.m.Count + i)
	} else if r := b.committedRow(id); r >= 0 {
		there = b.place(r)
	} else {
		there = "an id already in the store"
	}
	return &Error{Path: b.dir, Field: "ids", Err: fmt.Errorf("%w: id %d: %s duplicates %s", ErrDuplicate, id, here, there)}
}

// describe names row i of the input src, or of the current call when src is
// not named.
func (b *Builder) describe(src string, i int) string {
	if src == "" {
		return fmt.Sprintf("row %d of this call", i)
	}
	return fmt.Sprintf("row %d of %s", i, src)
}

// place names row r of the store: by its input when known, and by its
// shard when committed.
func (b *Builder) place(r int) string {
	var parts []string
	if k, _ := slices.BinarySearchFunc(b.segs, r+1, func(s segment, r int) int { return s.row - r }); k > 0 && b.segs[k-1].src != "" {
		s := b.segs[k-1]
		parts = append(parts, b.describe(s.src, s.first+r-s.row))
	}
	if r < b.m.Count {
		if len(parts) == 0 {
			return "an id already in " + b.m.Shards[b.shardOf(r)].File
		}
		parts = append(parts, "in "+b.m.Shards[b.shardOf(r)].File)
	} else if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("row %d of the store, not yet committed", r))
	}
	return strings.Join(parts, ", ")
}

// committedRow returns the row of the store holding id, or -1.
func (b *Builder) committedRow(id int64) int {
	if i := slices.Index(b.resumed, id); i >= 0 {
		return i
	}
	r := 0
	for i, sh := range b.m.Shards {
		if r+sh.Rows <= len(b.resumed) {
			r += sh.Rows
			continue
		}
		f, err := openShard(b.dir, &b.m, i)
		if err != nil {
			return -1
		}
		ids := make([]int64, sh.Rows)
		err = safetensors.DecodeInt64s(ids, safetensors.I64, f.Bytes("ids"))
		f.Close()
		if err != nil {
			return -1
		}
		if j := slices.Index(ids, id); j >= 0 {
			return r + j
		}
		r += sh.Rows
	}
	return -1
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
		{Name: "grads", DType: safetensors.DType(b.m.DType), Shape: []int{n, b.m.Dim}, Data: b.data[:n*b.rowBytes]},
		{Name: "ids", DType: safetensors.I64, Shape: []int{n}, Data: ids},
	}
	if b.m.DType == gradients.I8 {
		scales := safetensors.Tensor{Name: "scales", DType: safetensors.F32, Shape: []int{n}, Data: encodeScales(b.scales[:n])}
		tensors = slices.Insert(tensors, 1, scales)
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
	if b.scales != nil {
		b.scales = b.scales[:copy(b.scales, b.scales[n:])]
	}
	return nil
}

// Close commits the buffered rows as a last, possibly short, shard. The
// Builder cannot be used afterwards; Resume continues the store.
//
// Close releases the build lock, also after an error.
func (b *Builder) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	defer b.lock.release()
	if b.err != nil {
		return b.err
	}
	if len(b.ids) > 0 {
		return b.commit(len(b.ids))
	}
	return nil
}
