package influence

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/linalg"
)

// TestStreamCorruptShard writes a NaN into a row of a shard after the build:
// StreamScores fails on the shard's checksum by default and, on a store
// opened without verification, on the row's non-finite score, naming its
// index and id, instead of dropping the row from the top-k.
func TestStreamCorruptShard(t *testing.T) {
	const dim, row = 8, 1500 // row 1500 is row 500 of the second shard
	s := testStore(t, gradients.F32, 1000, 3000, dim, 1, normal)
	path := filepath.Join(s.Dir(), "shard-000001.safetensors")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hlen := int(binary.LittleEndian.Uint64(data))
	// grads come first in the data buffer (they are larger than ids at the
	// same position in the sorted layout).
	binary.LittleEndian.PutUint32(data[8+hlen+(row-1000)*dim*4+3*4:], 0x7fc00000)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	q := testQueries(3, dim, 2)
	for _, be := range streamBackends(t) {
		vs, err := store.Open(s.Dir())
		if err != nil {
			t.Fatal(err)
		}
		defer vs.Close()
		_, err = StreamScores(context.Background(), be, q, vs, StreamOptions{TopK: 5})
		if !errors.Is(err, store.ErrChecksum) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: verified store: %v, want a checksum error naming %s", be.Name(), err, path)
		}

		ns, err := store.OpenWith(s.Dir(), store.OpenOptions{NoVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		for _, opt := range []StreamOptions{{TopK: 5}, {TopK: 0}, {TopK: 5, Scores: func(int, []int64, *linalg.Dense32) error { return nil }}} {
			_, err = StreamScores(context.Background(), be, q, ns, opt)
			var nf *NonFiniteError
			if !errors.Is(err, linalg.ErrNotFinite) || !errors.As(err, &nf) || nf.Index != 1500 || nf.ID != 5500 {
				t.Errorf("%s: unverified store, top-%d: %v, want a non-finite score at store row 1500, id 5500", be.Name(), opt.TopK, err)
			}
		}
	}
}

// TestStreamTruncatedShard truncates the store's shard while StreamScores
// reads it, from the Scores callback of the first chunk: the reading
// goroutine, which widens the rows ahead, must end the stream with an error
// naming the shard, not kill the process with SIGBUS.
func TestStreamTruncatedShard(t *testing.T) {
	const dim = 16
	q := testQueries(2, dim, 2)
	for _, be := range streamBackends(t) {
		s := testStore(t, gradients.F16, 8192, 8192, dim, 1, normal)
		path := filepath.Join(s.Dir(), "shard-000000.safetensors")
		truncated := false
		opt := StreamOptions{TopK: 3, ChunkRows: 1024, Scores: func(offset int, _ []int64, _ *linalg.Dense32) error {
			if !truncated {
				truncated = true
				return os.Truncate(path, 4096)
			}
			return nil
		}}
		_, err := StreamScores(context.Background(), be, q, s, opt)
		if !errors.Is(err, store.ErrFault) || !strings.Contains(err.Error(), path) {
			t.Fatalf("%s: %v, want ErrFault naming %s", be.Name(), err, path)
		}
	}
}
