package store

import (
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// decodeRaw widens raw little-endian values of dtype d.
func decodeRaw(d gradients.DType, raw []byte) []float32 {
	out := make([]float32, len(raw)/d.Size())
	switch d {
	case gradients.F16:
		linalg.F16BytesToF32(out, raw)
	case gradients.BF16:
		linalg.BF16BytesToF32(out, raw)
	default:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	}
	return out
}

// TestNextRaw reads the rows undecoded, for chunks within a shard (which
// alias the mapped file), ending on a shard's last row (whose file must stay
// mapped until the next call) and spanning shards (copied), and checks that
// widening them gives Next's rows bit for bit.
func TestNextRaw(t *testing.T) {
	ctx := context.Background()
	ids, rows := randRows(23, 5, 12)
	for _, dt := range []gradients.DType{gradients.F32, gradients.F16, gradients.BF16} {
		dir := filepath.Join(t.TempDir(), "s")
		build(t, dir, Options{DType: dt, ShardRows: 4, Layers: testLayers}, ids, rows)
		s := open(t, dir)
		rowBytes := testDim * dt.Size()
		for _, chunk := range []int{1, 2, 3, 4, 5, 8, 100} {
			wantIDs, want := readAll(t, s, chunk)
			var gotIDs []int64
			var got []float32
			it := s.Chunks(chunk)
			for it.NextRaw(ctx) {
				c := it.Chunk()
				n := len(c.IDs)
				if c.Rows != nil || len(c.Raw) != n*rowBytes || c.Offset != len(gotIDs) {
					t.Fatalf("%s chunk %d: offset %d, %d raw bytes for %d rows (Rows %v)", dt, chunk, c.Offset, len(c.Raw), n, c.Rows)
				}
				within := c.Offset/4 == (c.Offset+n-1)/4
				copied := it.raw != nil && unsafe.SliceData(c.Raw) == unsafe.SliceData(it.raw)
				if within == copied {
					t.Errorf("%s chunk %d at %d: within one shard %v, copied %v", dt, chunk, c.Offset, within, copied)
				}
				// One shard mapped at a time: the one being read, or the
				// one the chunk finished.
				if it.f != nil && it.spent != nil {
					t.Errorf("%s chunk %d at %d: two shards mapped", dt, chunk, c.Offset)
				}
				if end := c.Offset + n; end%4 == 0 && within && it.spent == nil {
					t.Errorf("%s chunk %d at %d: the shard the chunk aliases is unmapped", dt, chunk, c.Offset)
				}
				gotIDs = append(gotIDs, c.IDs...)
				got = append(got, decodeRaw(dt, c.Raw)...)
			}
			if err := it.Err(); err != nil {
				t.Fatal(err)
			}
			if it.f != nil || it.spent != nil {
				t.Errorf("%s chunk %d: a shard is still mapped at the end", dt, chunk)
			}
			if !slices.Equal(gotIDs, wantIDs) {
				t.Fatalf("%s chunk %d: ids %v, want %v", dt, chunk, gotIDs, wantIDs)
			}
			sameBits(t, got, want)
		}

		// Next and NextRaw mix on one iterator; Close unmaps.
		it := s.Chunks(4)
		var got []float32
		for i := 0; ; i++ {
			var ok bool
			if i%2 == 0 {
				ok = it.NextRaw(ctx)
			} else {
				ok = it.Next(ctx)
			}
			if !ok {
				break
			}
			if c := it.Chunk(); c.Raw != nil {
				got = append(got, decodeRaw(dt, c.Raw)...)
			} else {
				got = append(got, c.Rows.Data...)
			}
			if i == 3 {
				break
			}
		}
		_, want := readAll(t, s, 4)
		sameBits(t, got, want[:len(got)])
		if err := it.Close(); err != nil || it.f != nil || it.spent != nil || it.NextRaw(ctx) {
			t.Errorf("%s: Close left a shard mapped or the iterator running: %v", dt, err)
		}
	}

	// A closed store is an error, as for Next.
	dir := filepath.Join(t.TempDir(), "s")
	build(t, dir, Options{DType: gradients.F16, ShardRows: 4, Layers: testLayers}, ids, rows)
	s := open(t, dir)
	s.Close()
	if it := s.Chunks(3); it.NextRaw(ctx) || it.Err() == nil {
		t.Errorf("NextRaw on a closed store: %v", it.Err())
	}
}
