package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
)

// FuzzStore fuzzes a one-shard store, the manifest and the shard's bytes
// together, through Open, Verify, IDs and reading every chunk in each of the
// three ways, with and without the checks on read: whatever the bytes, the
// store either reads or fails with an error, and never panics. The seeds
// are a real store and mutations that keep the header parseable.
func FuzzStore(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "s")
	ids, rows := randRows(5, 0, 1)
	build(f, dir, Options{DType: gradients.F16, ShardRows: 8, Layers: testLayers}, ids, rows)
	manifest, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		f.Fatal(err)
	}
	shard, err := os.ReadFile(filepath.Join(dir, shardName(0)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(manifest, shard)
	flipped := append([]byte(nil), shard...)
	flipped[len(flipped)-3] ^= 0x7c // an f16 exponent: an Inf or NaN
	f.Add(manifest, flipped)
	f.Add(manifest, shard[:len(shard)-7])
	f.Add(manifest, append(append([]byte(nil), shard...), 0))
	f.Add(manifest[:len(manifest)/2], shard)
	f.Add([]byte(`{}`), []byte{})

	f.Fuzz(func(t *testing.T, manifest, shard []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "manifest.json"), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, shardName(0)), shard, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, opt := range []OpenOptions{{}, {NoVerify: true}} {
			s, err := OpenWith(dir, opt)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Open error %v is not an *Error", err)
				}
				return
			}
			verr := s.Verify(ctx)
			s.IDs(ctx)
			for _, chunk := range []int{1, 3, 1 << 20} {
				for mode := range 3 {
					it := s.Chunks(chunk)
					n := 0
					for {
						var ok bool
						switch mode {
						case 0:
							ok = it.Next(ctx)
						case 1:
							rows := min(chunk, s.Count())
							ok = it.NextInto(ctx, make([]float32, rows*(s.Dim()+1)), s.Dim()+1)
						default:
							ok = it.NextRaw(ctx)
						}
						if !ok {
							break
						}
						n += len(it.Chunk().IDs)
					}
					err := it.Err()
					if err == nil && n != s.Count() {
						t.Fatalf("read %d rows of %d", n, s.Count())
					}
					if verr != nil && s.Verifies() && err == nil && s.Count() > 0 {
						t.Fatalf("Verify failed (%v) but the checked read succeeded", verr)
					}
				}
			}
			s.Close()
		}
	})
}
