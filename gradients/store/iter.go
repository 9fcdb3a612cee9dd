package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/quant"
)

// Chunk is a run of consecutive rows of a store.
type Chunk struct {
	Offset int             // index in the store of the first row
	IDs    []int64         // the rows' ids
	Rows   *linalg.Dense32 // len(IDs) × Dim, compact unless read by NextInto; nil after NextRaw
	// Raw holds the rows as the shards store them, len(IDs) × Dim
	// little-endian values of the store's DType, row after row, after
	// NextRaw; nil after Next and NextInto.
	Raw []byte
	// Scales holds the scale of each row of an i8 store (DESIGN §11): the
	// raw int8 values of row i times Scales[i] are the float32 values of
	// Rows. Nil for the other dtypes.
	Scales []float32
}

// Iterator walks the rows of a store in chunks, in the manner of
// bufio.Scanner:
//
//	it := s.Chunks(1024)
//	for it.Next(ctx) {
//		c := it.Chunk()
//		…
//	}
//	if err := it.Err(); err != nil {
//		…
//	}
//
// Chunks may span shards, so every chunk but the last holds exactly the
// requested number of rows. One shard is memory-mapped at a time, and, on a
// store that checks its shards, the next one while it is checked.
type Iterator struct {
	s     *Store
	size  int // rows per chunk
	shard int // shard being read
	pos   int // next row within the shard
	off   int // index in the store of the next row
	f     *safetensors.File
	// spent is the shard the last chunk ended, kept mapped until the next
	// call because a chunk read by NextRaw may alias it.
	spent *safetensors.File

	// next is the shard after the one being read, mapped and checked on
	// another goroutine while this one is read.
	next *pendingShard

	data   []float32
	raw    []byte // NextRaw's buffer for chunks that span shards
	ids    []int64
	scales []float32 // of an i8 store
	chunk  Chunk
	err    error
	done   bool
}

// Chunks returns an iterator over the rows in chunks of the given number of
// rows; a size below 1 means one.
func (s *Store) Chunks(rows int) *Iterator {
	return &Iterator{s: s, size: max(rows, 1)}
}

// Next reads the next chunk, reporting whether there is one. It returns false
// at the end of the store or on an error, which Err then reports. The chunk's
// slices are reused: they are valid until the next call of Next.
func (it *Iterator) Next(ctx context.Context) bool {
	if it.data == nil && !it.done {
		// Sized for a full chunk once, and for no more than the store holds.
		it.data = make([]float32, min(it.size, it.s.m.Count)*it.s.m.Dim)
	}
	return it.read(ctx, it.data, it.s.m.Dim)
}

// NextInto is Next reading the rows into dst instead of the iterator's own
// buffer, row i at dst[i·stride:], so that a caller that needs the rows laid
// out its own way (padded, aligned) saves a copy. The values between rows
// are left as they were. dst must hold a full chunk: (size−1)·stride + Dim
// values, for the size passed to Chunks; stride must be at least Dim. The
// chunk's Rows alias dst.
func (it *Iterator) NextInto(ctx context.Context, dst []float32, stride int) bool {
	dim := it.s.m.Dim
	rows := min(it.size, it.s.m.Count-it.off)
	if !it.done && rows > 0 && (stride < dim || len(dst) < (rows-1)*stride+dim) {
		return it.fail(fmt.Errorf("store: NextInto: buffer of %d values with stride %d cannot hold %d rows of %d", len(dst), stride, rows, dim))
	}
	return it.read(ctx, dst, stride)
}

// NextRaw is Next without the widening: the chunk's rows are left as the
// shards store them, in Chunk().Raw (len(IDs) × Dim little-endian values of
// the store's DType), and Chunk().Rows is nil. A chunk that lies within one
// shard aliases the memory-mapped file, with no copy; one that spans shards
// is copied into a buffer of the iterator. Either way Raw must not be
// modified, and is valid until the next call of Next, NextInto, NextRaw or
// Close.
func (it *Iterator) NextRaw(ctx context.Context) bool {
	return it.read(ctx, nil, 0)
}

// read reads the next chunk: widened into data with the given row stride,
// or raw when data is nil. A shard is checked (Store.checkShard) when first
// mapped. The mapped bytes are read with panics on memory faults, here and
// in the widening's worker goroutines (linalg passes the setting on), so
// that a shard truncated under the mapping ends the iteration with an error
// naming it instead of killing the process with SIGBUS.
func (it *Iterator) read(ctx context.Context, data []float32, stride int) (ok bool) {
	if it.done {
		return false
	}
	defer panicOnFault()()
	defer func() {
		if r := recover(); r != nil {
			ok = it.fail(faultError(r, it.shardPath()))
		}
	}()
	it.closeSpent()
	if err := ctx.Err(); err != nil {
		return it.fail(err)
	}
	if it.s.closed.Load() {
		return it.fail(&Error{Path: it.s.dir, Err: fs.ErrClosed})
	}
	m := &it.s.m
	n := min(it.size, m.Count-it.off)
	if n == 0 {
		it.Close()
		return false
	}
	dim := m.Dim
	if it.ids == nil {
		it.ids = make([]int64, min(it.size, m.Count))
		if m.DType == gradients.I8 {
			it.scales = make([]float32, len(it.ids))
		}
	}
	rowBytes := dim * m.DType.Size()
	var raw []byte
	for filled := 0; filled < n; {
		if it.f == nil {
			f, err := it.open(ctx, it.shard)
			if err != nil {
				return it.fail(err)
			}
			it.f = f
			it.checkAhead(ctx, it.shard+1)
		}
		k := min(n-filled, m.Shards[it.shard].Rows-it.pos)
		grads := it.f.Bytes("grads")[it.pos*rowBytes : (it.pos+k)*rowBytes]
		var scales []float32
		if it.scales != nil {
			scales = it.scales[filled : filled+k]
			decodeScales(scales, it.f.Bytes("scales")[it.pos*4:(it.pos+k)*4])
		}
		switch {
		case data == nil && k == n:
			raw = grads // the whole chunk in one shard: no copy
		case data == nil:
			if it.raw == nil {
				it.raw = make([]byte, min(it.size, m.Count)*rowBytes)
			}
			raw = it.raw[:n*rowBytes]
			copy(raw[filled*rowBytes:], grads)
		case stride == dim && scales == nil:
			it.decode(data[filled*dim:(filled+k)*dim], grads)
		default:
			for r := range k {
				row := data[(filled+r)*stride : (filled+r)*stride+dim]
				if scales != nil {
					quant.Dequantize(row, int8s(grads[r*rowBytes:(r+1)*rowBytes]), scales[r])
					continue
				}
				it.decode(row, grads[r*rowBytes:(r+1)*rowBytes])
			}
		}
		idBytes := it.f.Bytes("ids")[it.pos*8 : (it.pos+k)*8]
		if err := safetensors.DecodeInt64s(it.ids[filled:filled+k], safetensors.I64, idBytes); err != nil {
			// Unreachable for a checked shard: kept to never return garbage.
			return it.fail(&Error{Path: filepath.Join(it.s.dir, m.Shards[it.shard].File), Field: "ids", Err: fmt.Errorf("%w: %v", ErrFormat, err)})
		}
		filled += k
		it.pos += k
		if it.pos == m.Shards[it.shard].Rows {
			if filled == n {
				it.spent = it.f // the chunk may alias it: unmapped at the next call
			} else {
				it.f.Close()
			}
			it.f = nil
			it.shard++
			it.pos = 0
		}
	}
	it.chunk = Chunk{Offset: it.off, IDs: it.ids[:n], Raw: raw}
	if it.scales != nil {
		it.chunk.Scales = it.scales[:n]
	}
	if data != nil {
		it.chunk.Rows = &linalg.Dense32{Rows: n, Cols: dim, Stride: stride, Data: data[:(n-1)*stride+dim]}
	}
	it.off += n
	return true
}

// pendingShard is a shard being mapped and checked ahead of its use.
type pendingShard struct {
	shard  int
	cancel context.CancelFunc
	done   chan struct{} // closed when f or err is set
	f      *safetensors.File
	err    error
}

// open maps shard i and checks it, or takes it from checkAhead.
func (it *Iterator) open(ctx context.Context, i int) (*safetensors.File, error) {
	if p := it.next; p != nil && p.shard == i {
		it.next = nil
		<-p.done
		p.cancel()
		// A check cancelled with the context of an earlier call is
		// made again with this call's.
		if !errors.Is(p.err, context.Canceled) && !errors.Is(p.err, context.DeadlineExceeded) || ctx.Err() != nil {
			return p.f, p.err
		}
	}
	f, err := openShard(it.s.dir, &it.s.m, i)
	if err != nil {
		return nil, err
	}
	if err := it.s.checkShard(ctx, i, f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkAhead maps shard i and checks its SHA-256 on another goroutine, so
// that the hashing of one shard overlaps the reading, and the caller's work
// on the rows, of the one before: only the first shard of a stream then
// waits for its check. The rows read are still those of the mapping that
// was checked. Nothing is done when the store does not check its shards or
// has checked shard i already.
func (it *Iterator) checkAhead(ctx context.Context, i int) {
	if i >= len(it.s.m.Shards) || it.s.checks == nil || it.s.checked(i) {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &pendingShard{shard: i, cancel: cancel, done: make(chan struct{})}
	it.next = p
	path := filepath.Join(it.s.dir, it.s.m.Shards[i].File)
	go func() {
		defer close(p.done)
		defer panicOnFault()()
		defer func() {
			if r := recover(); r != nil {
				if p.f != nil {
					p.f.Close()
					p.f = nil
				}
				p.err = faultError(r, path)
			}
		}()
		f, err := openShard(it.s.dir, &it.s.m, i)
		if err != nil {
			p.err = err
			return
		}
		p.f = f
		if err := it.s.checkShard(ctx, i, f); err != nil {
			f.Close()
			p.f, p.err = nil, err
		}
	}()
}

// shardPath returns the path of the shard being read.
func (it *Iterator) shardPath() string {
	if it.shard >= len(it.s.m.Shards) {
		return it.s.dir
	}
	return filepath.Join(it.s.dir, it.s.m.Shards[it.shard].File)
}

// decode widens the little-endian values in src to float32.
func (it *Iterator) decode(dst []float32, src []byte) {
	le := binary.LittleEndian
	dt := it.s.m.DType
	if dt == gradients.F32 {
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
		return
	}
	if dt == gradients.F16 {
		linalg.F16BytesToF32(dst, src[:2*len(dst)])
	} else {
		linalg.BF16BytesToF32(dst, src[:2*len(dst)])
	}
}

func (it *Iterator) fail(err error) bool {
	it.err = err
	it.Close()
	return false
}

// Chunk returns the chunk read by the last successful call of Next,
// NextInto or NextRaw.
func (it *Iterator) Chunk() Chunk { return it.chunk }

// Err returns the error that ended the iteration, or nil at the end of the
// store.
func (it *Iterator) Err() error { return it.err }

// Close ends the iteration early, releasing the mapped shard. It is called
// by Next at the end of the store and on an error.
func (it *Iterator) Close() error {
	it.done = true
	err := it.closeSpent()
	if p := it.next; p != nil {
		it.next = nil
		p.cancel()
		<-p.done
		if p.f != nil {
			err = errors.Join(err, p.f.Close())
		}
	}
	if it.f != nil {
		err = errors.Join(err, it.f.Close())
		it.f = nil
	}
	return err
}

// closeSpent unmaps the shard that the last chunk finished.
func (it *Iterator) closeSpent() error {
	if it.spent == nil {
		return nil
	}
	err := it.spent.Close()
	it.spent = nil
	return err
}

// Guard calls fn, which reads the rows of the last chunks the iterators
// returned by NextRaw (they alias the mapped shards), with panics on memory
// faults on the calling goroutine, and returns fn's error or, when a shard
// shrank under its mapping, an *Error naming it (ErrFault) instead of the
// SIGBUS that would kill the process. Whatever fn starts on other
// goroutines must pass the fault on to this one (as linalg's conversions
// do).
func Guard(fn func() error, its ...*Iterator) (err error) {
	defer panicOnFault()()
	defer func() {
		if r := recover(); r != nil {
			err = faultError(r, faultPath(r, its))
		}
	}()
	return fn()
}

// faultPath returns the path of the shard mapped by one of the iterators
// that holds the faulting address of r, or the store directories when none
// does.
func faultPath(r any, its []*Iterator) string {
	a, ok := r.(interface{ Addr() uintptr })
	if !ok {
		return ""
	}
	addr := a.Addr()
	var dirs []string
	for _, it := range its {
		// it.spent is the shard before it.shard (see read).
		for i, f := range []*safetensors.File{it.f, it.spent} {
			if f == nil || len(f.Whole()) == 0 {
				continue
			}
			b := f.Whole()
			lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
			if shard := it.shard - i; addr >= lo && addr-lo < uintptr(len(b)) && shard >= 0 && shard < len(it.s.m.Shards) {
				return filepath.Join(it.s.dir, it.s.m.Shards[shard].File)
			}
		}
		dirs = append(dirs, it.s.dir)
	}
	return strings.Join(dirs, ", ")
}
