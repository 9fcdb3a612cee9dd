package eval

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/internal/atomicfile"
	"github.com/goinfluence/goinfluence/models"
)

// cacheVersion is part of every cache key: bump it when a change to the
// harness changes what a cached file would contain.
const cacheVersion = "goinfluence.eval/v1"

// DefaultCacheDir returns where evaluation results are cached unless told
// otherwise: $GOINFLUENCE_CACHE when set, else goinfluence/eval under the
// user cache directory ($XDG_CACHE_HOME or ~/.cache on Linux).
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("GOINFLUENCE_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("eval: no cache directory (set GOINFLUENCE_CACHE or pass one): %w", err)
	}
	return filepath.Join(d, "goinfluence", "eval"), nil
}

// cache stores trained models (safetensors checkpoints) and ground truths
// (JSON) under names derived from a hash of everything that determines
// them. A nil *cache stores nothing.
type cache struct {
	dir string
}

// key returns the hex SHA-256 (first 16 bytes) of the cache version, the
// parts given, each JSON-encoded.
func cacheKey(parts ...any) string {
	h := sha256.New()
	h.Write([]byte(cacheVersion))
	for _, p := range parts {
		b, err := json.Marshal(p)
		if err != nil {
			panic(fmt.Sprintf("eval: cache key: %v", err)) // only plain values are passed
		}
		h.Write([]byte{0})
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// fingerprint hashes a data set's features and labels, so that a change of
// the data (a different download, preparation or split) changes every key.
func fingerprint(ds ...*datasets.Dataset) string {
	h := sha256.New()
	var buf [8]byte
	for _, d := range ds {
		binary.LittleEndian.PutUint64(buf[:], uint64(d.X.Rows))
		h.Write(buf[:])
		binary.LittleEndian.PutUint64(buf[:], uint64(d.X.Cols))
		h.Write(buf[:])
		for i := 0; i < d.X.Rows; i++ {
			for _, v := range d.X.Row(i) {
				binary.LittleEndian.PutUint64(buf[:], math.Float64bits(v))
				h.Write(buf[:])
			}
		}
		for _, y := range d.Y {
			binary.LittleEndian.PutUint64(buf[:], uint64(y))
			h.Write(buf[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (c *cache) path(name, key, ext string) string {
	return filepath.Join(c.dir, name+"-"+key+ext)
}

// loadJSON decodes the cached file into v and reports whether there was one.
// A file that does not decode is treated as absent (it is rewritten).
func (c *cache) loadJSON(name, key string, v any) bool {
	if c == nil {
		return false
	}
	b, err := os.ReadFile(c.path(name, key, ".json"))
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

// storeJSON writes v atomically.
func (c *cache) storeJSON(name, key string, v any) error {
	if c == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	return c.write(c.path(name, key, ".json"), func(path string) error {
		return atomicfile.WriteFile(path, func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		})
	})
}

// loadModel returns the cached model, or nil.
func (c *cache) loadModel(name, key string) models.Model {
	if c == nil {
		return nil
	}
	m, err := models.Load(c.path(name, key, ".safetensors"))
	if err != nil {
		return nil
	}
	return m
}

func (c *cache) storeModel(name, key string, m models.Model) error {
	if c == nil {
		return nil
	}
	return c.write(c.path(name, key, ".safetensors"), func(path string) error { return models.Save(path, m) })
}

// write creates the cache directory and calls create, which writes path
// atomically (models.Save and atomicfile.WriteFile do), so that readers
// never see half a file.
func (c *cache) write(path string, create func(path string) error) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	if err := create(path); err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	return nil
}
