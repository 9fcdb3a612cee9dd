package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// readErr reads the whole store with Next and returns the iteration's error.
func readErr(s *Store, chunk int) error {
	it := s.Chunks(chunk)
	for it.Next(context.Background()) {
	}
	return it.Err()
}

// TestVerifyOnRead corrupts one shard of a store in the ways that keep its
// header valid, so that Open succeeds, and checks that reading the store
// fails on the shard's SHA-256 by default, with the shard and both digests
// named, and that NoVerify reads it without complaint.
func TestVerifyOnRead(t *testing.T) {
	const bad = "shard-000001.safetensors"
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string, data []byte) []byte
	}{
		{"flipped byte", func(t *testing.T, dir string, data []byte) []byte {
			data[len(data)-8*4-3] ^= 0x10
			return data
		}},
		{"NaN row", func(t *testing.T, dir string, data []byte) []byte {
			f, err := safetensors.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			g := f.Bytes("grads")
			for i := range testDim { // row 2 all NaN
				copy(g[(2*testDim+i)*4:], []byte{0, 0, 0xc0, 0x7f})
			}
			return data
		}},
		{"copy of another shard", func(t *testing.T, dir string, data []byte) []byte {
			other, err := os.ReadFile(filepath.Join(dir, "shard-000000.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			return other
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "s")
			ids, rows := randRows(12, 0, 9)
			build(t, dir, Options{DType: gradients.F32, ShardRows: 4, Layers: testLayers}, ids, rows)
			path := filepath.Join(dir, bad)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := open(t, dir).Manifest().Shards[1].SHA256
			if err := os.WriteFile(path, tc.corrupt(t, dir, data), 0o644); err != nil {
				t.Fatal(err)
			}

			s := open(t, dir)
			if !s.Verifies() {
				t.Fatal("Open: the store does not verify by default")
			}
			for _, chunk := range []int{1, 3, 12} {
				err := readErr(s, chunk)
				var e *Error
				if !errors.Is(err, ErrChecksum) || !errors.As(err, &e) || e.Path != path || !strings.Contains(err.Error(), want) {
					t.Fatalf("chunks of %d: error %v, want a checksum error naming %s and %s", chunk, err, path, want)
				}
			}
			it := s.Chunks(5)
			for it.NextRaw(context.Background()) {
			}
			if err := it.Err(); !errors.Is(err, ErrChecksum) {
				t.Errorf("NextRaw: %v, want a checksum error", err)
			}
			if _, err := s.IDs(context.Background()); !errors.Is(err, ErrChecksum) {
				t.Errorf("IDs: %v, want a checksum error", err)
			}

			ns, err := OpenWith(dir, OpenOptions{NoVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Close()
			if err := readErr(ns, 5); err != nil {
				t.Errorf("NoVerify: %v", err)
			}
		})
	}
}

// TestVerifyOnceConcurrent reads a store from several goroutines at once (run
// with -race): each shard is hashed once per Store and every reader sees the
// outcome, success or the same mismatch.
func TestVerifyOnceConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(20, 0, 3)
	build(t, dir, Options{DType: gradients.BF16, ShardRows: 3, Layers: testLayers}, ids, rows)
	read := func(s *Store) []error {
		errs := make([]error, 8)
		var wg sync.WaitGroup
		for g := range errs {
			wg.Go(func() { errs[g] = readErr(s, 1+g) })
		}
		wg.Wait()
		return errs
	}
	s := open(t, dir)
	for g, err := range read(s) {
		if err != nil {
			t.Fatalf("reader %d: %v", g, err)
		}
	}
	for i := range s.checks {
		if c := &s.checks[i]; !c.done || c.err != nil {
			t.Errorf("shard %d: checked %v, error %v", i, c.done, c.err)
		}
	}

	path := filepath.Join(dir, "shard-000004.safetensors")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	for g, err := range read(s) {
		if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), path) {
			t.Errorf("reader %d: %v, want a checksum error naming %s", g, err, path)
		}
	}
}

// TestVerifyCancelled checks that a check cut short by ctx is not taken for a
// success or a failure.
func TestVerifyCancelled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(6, 0, 3)
	build(t, dir, Options{DType: gradients.F16, ShardRows: 3, Layers: testLayers}, ids, rows)
	s := open(t, dir)
	f, err := openShard(dir, &s.m, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.checkShard(ctx, 0, f); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled check: %v", err)
	}
	if s.checks[0].done {
		t.Fatal("a cancelled check was remembered")
	}
	if err := s.checkShard(context.Background(), 0, f); err != nil || !s.checks[0].done {
		t.Fatalf("check: %v, remembered %v", err, s.checks[0].done)
	}
}

// TestCheckAhead reads a store whose next shard is checked on another
// goroutine while the current one is read: a check cancelled with the
// context of one call is made again by the next call with its own, the rows
// come out whole and in order, and closing the iterator with a check in
// flight waits for it and leaves nothing mapped.
func TestCheckAhead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(12, 0, 11)
	build(t, dir, Options{DType: gradients.F32, ShardRows: 4, Layers: testLayers}, ids, rows)

	s := open(t, dir)
	it := s.Chunks(2)
	ctx, cancel := context.WithCancel(context.Background())
	if !it.Next(ctx) {
		t.Fatalf("first chunk: %v", it.Err())
	}
	got := slices.Clone(it.Chunk().Rows.Data)
	gotIDs := slices.Clone(it.Chunk().IDs)
	cancel() // the check of shard 1, in flight or done, was made with ctx
	for it.Next(context.Background()) {
		got = append(got, it.Chunk().Rows.Data...)
		gotIDs = append(gotIDs, it.Chunk().IDs...)
	}
	if err := it.Err(); err != nil {
		t.Fatalf("after a cancelled check ahead: %v", err)
	}
	if !slices.Equal(gotIDs, ids) || !slices.Equal(got, rows) {
		t.Fatalf("rows or ids differ from those built")
	}
	for i := range s.m.Shards {
		if !s.checked(i) {
			t.Errorf("shard %d was read unchecked", i)
		}
	}

	s = open(t, dir)
	it = s.Chunks(1)
	if !it.Next(context.Background()) {
		t.Fatal(it.Err())
	}
	if it.next == nil {
		t.Fatal("no check of shard 1 started while shard 0 is read")
	}
	p := it.next
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	default:
		t.Fatal("Close returned with the check ahead still running")
	}
	if p.f != nil && p.f.Whole() != nil {
		t.Error("Close left the shard checked ahead mapped")
	}
}

// TestTruncatedWhileMapped truncates a shard under an iterator that has it
// mapped: reading on must end with an ErrFault naming the shard, not kill
// the process with SIGBUS. The f16 case with large chunks widens on worker
// goroutines (linalg's parallel conversion), which must pass the fault on.
func TestTruncatedWhileMapped(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	tests := []struct {
		name  string
		dt    gradients.DType
		rows  int
		chunk int
		read  func(it *Iterator) bool
	}{
		{"Next f32", gradients.F32, 3000, 100, func(it *Iterator) bool { return it.Next(context.Background()) }},
		{"NextInto bf16", gradients.BF16, 3000, 100, func(it *Iterator) bool {
			return it.NextInto(context.Background(), make([]float32, 100*16), 16)
		}},
		{"NextRaw f16 spanning", gradients.F16, 3000, 1100, func(it *Iterator) bool { return it.NextRaw(context.Background()) }},
		{"Next f16 parallel widening", gradients.F16, 40000, 11000, func(it *Iterator) bool { return it.Next(context.Background()) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "s")
			ids, rows := randRows(tc.rows, 0, 5)
			build(t, dir, Options{DType: tc.dt, ShardRows: tc.rows * 2 / 3, Layers: testLayers}, ids, rows)
			s := open(t, dir)
			it := s.Chunks(tc.chunk)
			defer it.Close()
			if !tc.read(it) {
				t.Fatalf("first chunk: %v", it.Err())
			}
			path := filepath.Join(dir, "shard-000000.safetensors")
			if err := os.Truncate(path, 4096); err != nil {
				t.Fatal(err)
			}
			for tc.read(it) {
			}
			err := it.Err()
			var e *Error
			if !errors.Is(err, ErrFault) || !errors.As(err, &e) || e.Path != path {
				t.Fatalf("reading a truncated shard: %v, want ErrFault naming %s", err, path)
			}
		})
	}
}

// TestTruncatedAfterOpen truncates a shard between Open and the reading: the
// shard is mapped afresh, so its size no longer matches its header.
func TestTruncatedAfterOpen(t *testing.T) {
	for _, opt := range []OpenOptions{{}, {NoVerify: true}} {
		dir := filepath.Join(t.TempDir(), "s")
		ids, rows := randRows(300, 0, 5)
		build(t, dir, Options{DType: gradients.F16, ShardRows: 200, Layers: testLayers}, ids, rows)
		s, err := OpenWith(dir, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		path := filepath.Join(dir, "shard-000001.safetensors")
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, st.Size()-100); err != nil {
			t.Fatal(err)
		}
		err = readErr(s, 64)
		var e *Error
		if err == nil || !errors.As(err, &e) || e.Path != path {
			t.Errorf("%+v: reading a truncated shard: %v, want an error naming %s", opt, err, path)
		}
	}
}

// TestGuard truncates the shard that a raw chunk aliases before the chunk is
// read, as a consumer of NextRaw (a device stream) would: Guard must return
// ErrFault naming the shard.
func TestGuard(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(3000, 0, 5)
	build(t, dir, Options{DType: gradients.F16, ShardRows: 3000, Layers: testLayers}, ids, rows)
	s := open(t, dir)
	its := []*Iterator{s.Chunks(1000), s.Chunks(3000)}
	for _, it := range its {
		defer it.Close()
		if !it.NextRaw(context.Background()) {
			t.Fatal(it.Err())
		}
	}
	if err := Guard(func() error { return nil }, its...); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shard-000000.safetensors")
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	var sum byte
	err := Guard(func() error {
		for _, b := range its[1].Chunk().Raw {
			sum += b
		}
		return nil
	}, its...)
	var e *Error
	if !errors.Is(err, ErrFault) || !errors.As(err, &e) || e.Path != path {
		t.Fatalf("Guard over a truncated shard: %v, want ErrFault naming %s", err, path)
	}
	// A panic that is not a memory fault goes through.
	defer func() {
		if r := recover(); r != "boom" {
			t.Errorf("recovered %v, want boom", r)
		}
	}()
	Guard(func() error { panic("boom") }, its...)
}
