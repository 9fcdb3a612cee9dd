package store

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// refQuantize is the rule of DESIGN §11 written out on its own: the scale
// from the row's largest magnitude, each value divided in float64, rounded
// half to even and clamped.
func refQuantize(x []float32) ([]int8, float32) {
	var m float64
	for _, v := range x {
		m = math.Max(m, math.Abs(float64(v)))
	}
	q := make([]int8, len(x))
	if m == 0 {
		return q, 0
	}
	s := float32(m / 127)
	for j, v := range x {
		r := math.RoundToEven(float64(v) / float64(s))
		q[j] = int8(math.Max(-127, math.Min(127, r)))
	}
	return q, s
}

// TestI8RoundTrip builds i8 stores of random rows with several shard sizes
// and checks the shards' bytes and scales against the rule, and that every
// way of reading (Next, NextInto, NextRaw, any chunk) gives the same rows.
func TestI8RoundTrip(t *testing.T) {
	const n = 37
	ids, rows := randRows(n, 500, 7)
	// A row of zeros, a row with exact halves and a row of one tiny value
	// exercise the edges of the rule.
	copy(rows[3*testDim:4*testDim], make([]float32, testDim))
	half := []float32{127, 0.5, 1.5, 2.5, -0.5, -2.5, -127, 126.5, 3, 4, 5, 6, 7}
	copy(rows[5*testDim:6*testDim], half)
	for j := range testDim {
		rows[8*testDim+j] = 0
	}
	rows[8*testDim+2] = 1e-40
	wantQ := make([]int8, 0, n*testDim)
	wantS := make([]float32, n)
	for r := range n {
		q, s := refQuantize(rows[r*testDim : (r+1)*testDim])
		wantQ = append(wantQ, q...)
		wantS[r] = s
	}
	if got := wantQ[5*testDim : 5*testDim+6]; !slices.Equal(got, []int8{127, 0, 2, 2, 0, -2}) {
		t.Fatalf("reference rule: %v", got)
	}
	for _, shardRows := range []int{1, 5, 100} {
		dir := filepath.Join(t.TempDir(), "s")
		build(t, dir, Options{DType: gradients.I8, ShardRows: shardRows, Layers: testLayers}, ids, rows)
		s := open(t, dir)
		if s.DType() != gradients.I8 {
			t.Fatalf("dtype %s", s.DType())
		}
		// The shards themselves: grads I8, scales F32, ids I64.
		var fileQ []int8
		var fileS []float32
		for i := range s.Manifest().Shards {
			f, err := openShard(dir, &s.m, i)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Names(); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"grads", "ids", "scales"}) {
				t.Fatalf("shard %d tensors %v", i, got)
			}
			fileQ = append(fileQ, int8s(slices.Clone(f.Bytes("grads")))...)
			sb := f.Bytes("scales")
			for k := 0; k < len(sb); k += 4 {
				fileS = append(fileS, math.Float32frombits(binary.LittleEndian.Uint32(sb[k:])))
			}
			f.Close()
		}
		if !slices.Equal(fileQ, wantQ) {
			t.Fatalf("shard rows %d: quantised values differ from the rule", shardRows)
		}
		for r := range wantS {
			if math.Float32bits(fileS[r]) != math.Float32bits(wantS[r]) {
				t.Fatalf("shard rows %d: scale of row %d = %v, want %v", shardRows, r, fileS[r], wantS[r])
			}
		}
		wantRows := make([]float32, len(wantQ))
		for i, q := range wantQ {
			wantRows[i] = float32(q) * wantS[i/testDim]
		}
		for _, chunk := range []int{1, 4, 64} {
			gotIDs, got := readAll(t, s, chunk)
			if !slices.Equal(gotIDs, ids) {
				t.Fatalf("chunk %d: ids differ", chunk)
			}
			sameBits(t, got, wantRows)
			var rawQ []int8
			var rawS []float32
			it := s.Chunks(chunk)
			for it.NextRaw(context.Background()) {
				c := it.Chunk()
				if len(c.Raw) != len(c.IDs)*testDim || len(c.Scales) != len(c.IDs) {
					t.Fatalf("raw chunk of %d ids: %d bytes, %d scales", len(c.IDs), len(c.Raw), len(c.Scales))
				}
				rawQ = append(rawQ, Int8s(c.Raw)...)
				rawS = append(rawS, c.Scales...)
			}
			if err := it.Err(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rawQ, wantQ) || !slices.Equal(rawS, wantS) {
				t.Fatalf("chunk %d: raw rows or scales differ", chunk)
			}
		}
	}
}

// TestI8Errors checks the refusals particular to i8 stores.
func TestI8Errors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	b, err := Create(dir, Options{DType: gradients.I8, Layers: testLayers})
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]float64, testDim)
	rows[4] = 1e39 // finite in float64, infinite in float32
	rows[1] = 0.25
	err = addRows(b, context.Background(), "", 0, []int64{9}, rows)
	if !errors.Is(err, ErrRange) || !containsAll(err.Error(), "id 9", "column 4", "float32") {
		t.Errorf("overflowing float32: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Rows too long for int32 sums are refused at creation.
	_, err = Create(filepath.Join(t.TempDir(), "big"), Options{DType: gradients.I8, Layers: []LayerInfo{{Name: "w", Dim: 133001}}})
	if err == nil || !containsAll(err.Error(), "133001", "int32") {
		t.Errorf("dim 133001: %v", err)
	}
	// A shard without its scales is refused on open.
	ids, rs := randRows(4, 0, 3)
	dir = filepath.Join(t.TempDir(), "s2")
	build(t, dir, Options{DType: gradients.I8, Layers: testLayers}, ids, rs)
	path := filepath.Join(dir, shardName(0))
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tensors := []safetensors.Tensor{
		{Name: "grads", DType: safetensors.I8, Shape: []int{4, testDim}, Data: slices.Clone(f.Bytes("grads"))},
		{Name: "ids", DType: safetensors.I64, Shape: []int{4}, Data: slices.Clone(f.Bytes("ids"))},
	}
	f.Close()
	if err := safetensors.WriteFile(path, tensors, map[string]string{"format": Format}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrFormat) || !containsAll(err.Error(), "scales", shardName(0)) {
		t.Errorf("shard without scales: %v", err)
	}
}

// TestI8Resume checks that a resumed i8 build recognises its own rows
// (SameRow compares values and scale) and refuses other rows under the
// same ids.
func TestI8Resume(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(6, 0, 4)
	build(t, dir, Options{DType: gradients.I8, ShardRows: 4, Layers: testLayers}, ids, rows)
	b, err := Resume(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	one := func(r []float32) *gradients.Batch {
		x := make([]float64, testDim)
		for i, v := range r[:testDim] {
			x[i] = float64(v)
		}
		return &gradients.Batch{N: 1, IDs: []int64{5}, Layers: []gradients.Layer{
			{Name: testLayers[0].Name, D: 5, Grad: x[:5]},
			{Name: testLayers[1].Name, D: 8, Grad: x[5:]},
		}}
	}
	if err := b.SameRow("in", 5, 5, one(rows[5*testDim:])); err != nil {
		t.Errorf("the same row: %v", err)
	}
	other := slices.Clone(rows[5*testDim : 6*testDim])
	other[0] *= 2 // changes the scale or a value
	if err := b.SameRow("in", 5, 5, one(other)); !errors.Is(err, ErrInput) {
		t.Errorf("another row under the same id: %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestRowsAt reads rows by index, in any order and across shards, and
// checks them against an iterator's.
func TestRowsAt(t *testing.T) {
	for _, dt := range []gradients.DType{gradients.I8, gradients.F16} {
		ids, rows := randRows(23, 40, 9)
		dir := filepath.Join(t.TempDir(), "s")
		build(t, dir, Options{DType: dt, ShardRows: 5, Layers: testLayers}, ids, rows)
		s := open(t, dir)
		var raw []byte
		var scales []float32
		it := s.Chunks(100)
		for it.NextRaw(context.Background()) {
			raw = append(raw, it.Chunk().Raw...)
			scales = append(scales, it.Chunk().Scales...)
		}
		idx := []int{22, 0, 7, 7, 5, 4, 13}
		got, err := s.RowsAt(context.Background(), idx)
		if err != nil {
			t.Fatal(err)
		}
		rb := testDim * dt.Size()
		for k, r := range got {
			i := idx[k]
			if r.Index != i || r.ID != ids[i] || string(r.Raw) != string(raw[i*rb:(i+1)*rb]) || (dt == gradients.I8 && r.Scale != scales[i]) {
				t.Fatalf("%s: row %d: %+v", dt, i, r)
			}
		}
		if _, err := s.RowsAt(context.Background(), []int{23}); !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "row 23") {
			t.Errorf("%s: index out of range: %v", dt, err)
		}
	}
}
