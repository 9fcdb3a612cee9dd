package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"slices"
	"sort"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// Row is one stored row read by RowsAt: its values as the shard stores
// them (Dim little-endian values of the store's DType), copied, and for an
// i8 store its scale.
type Row struct {
	Index int
	ID    int64
	Raw   []byte
	Scale float32
}

// RowsAt reads the rows of the given indices (in any order, repeats
// allowed), each shard they fall in mapped once and checked as an
// Iterator checks it. It returns them in the order asked. An index out of
// range is an error naming it.
func (s *Store) RowsAt(ctx context.Context, indices []int) ([]Row, error) {
	if s.closed.Load() {
		return nil, &Error{Path: s.dir, Err: fs.ErrClosed}
	}
	starts := make([]int, len(s.m.Shards)+1)
	for i, sh := range s.m.Shards {
		starts[i+1] = starts[i] + sh.Rows
	}
	order := make([]int, len(indices))
	for k, idx := range indices {
		if idx < 0 || idx >= s.m.Count {
			return nil, &Error{Path: s.dir, Err: fmt.Errorf("%w: row %d of a store of %d rows", ErrShape, idx, s.m.Count)}
		}
		order[k] = k
	}
	slices.SortFunc(order, func(a, b int) int { return indices[a] - indices[b] })
	out := make([]Row, len(indices))
	rowBytes := s.m.Dim * s.m.DType.Size()
	for lo := 0; lo < len(order); {
		shard := sort.SearchInts(starts, indices[order[lo]]+1) - 1
		hi := lo
		for hi < len(order) && indices[order[hi]] < starts[shard+1] {
			hi++
		}
		if err := s.readRows(ctx, shard, starts[shard], rowBytes, indices, order[lo:hi], out); err != nil {
			return nil, err
		}
		lo = hi
	}
	return out, nil
}

// readRows copies the rows of shard i, which starts at store row first,
// for the positions ks of indices into out.
func (s *Store) readRows(ctx context.Context, i, first, rowBytes int, indices, ks []int, out []Row) error {
	return s.withShard(ctx, i, func(f *safetensors.File) error {
		grads, ids := f.Bytes("grads"), f.Bytes("ids")
		var scales []byte
		if s.m.DType == gradients.I8 {
			scales = f.Bytes("scales")
		}
		for _, k := range ks {
			local := indices[k] - first
			r := Row{Index: indices[k], Raw: slices.Clone(grads[local*rowBytes : (local+1)*rowBytes])}
			r.ID = int64(binary.LittleEndian.Uint64(ids[local*8:]))
			if scales != nil {
				var sc [1]float32
				decodeScales(sc[:], scales[local*4:local*4+4])
				r.Scale = sc[0]
			}
			out[k] = r
		}
		return nil
	})
}
