package store

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/atomicfile"
	"github.com/goinfluence/goinfluence/quant"
)

// Format is the value of the manifest's "format" field.
const Format = "goinfluence.store/v1"

// ManifestName is the name of the manifest file in a store directory.
const ManifestName = "manifest.json"

// DefaultShardRows is the number of rows per shard when Options.ShardRows
// is zero.
const DefaultShardRows = 65536

// maxManifest bounds the bytes read from a manifest, so that a hostile file
// cannot claim unbounded memory; it allows millions of shards.
const maxManifest = 256 << 20

// storable reports whether a store may hold rows of d: F16, BF16, F32 or
// I8 (gradients.DType). manifest.json writes it in lower case ("f16").
func storable(d gradients.DType) bool {
	return d == gradients.F16 || d == gradients.BF16 || d == gradients.F32 || d == gradients.I8
}

// dtypeWant lists the dtypes a store may hold, for messages.
const dtypeWant = "want f16, bf16, f32 or i8"

// scaleBytes is the bytes a row of dtype d has besides its values: the
// float32 scale of an i8 row.
func scaleBytes(d gradients.DType) int {
	if d == gradients.I8 {
		return 4
	}
	return 0
}

// dtypeName is d as manifest.json and the store's messages spell it.
func dtypeName(d gradients.DType) string { return strings.ToLower(string(d)) }

// LayerInfo places one layer's values in a row: values [Offset, Offset+Dim).
type LayerInfo struct {
	Name   string `json:"name"`
	Offset int    `json:"offset"`
	Dim    int    `json:"dim"`
}

// projectionJSON is a projection as manifest.json writes it: the kind by
// name ("none" for none) and the sizes that apply; the seed is the
// manifest's "seed" field.
type projectionJSON struct {
	Kind string `json:"kind"`
	K    int    `json:"k,omitempty"`     // output size of a dense projection
	KIn  int    `json:"k_in,omitempty"`  // per-layer input-side size of a factored projection
	KOut int    `json:"k_out,omitempty"` // per-layer output-side size of a factored projection
}

// ShardInfo is one committed shard.
type ShardInfo struct {
	File   string `json:"file"`
	Rows   int    `json:"rows"`
	SHA256 string `json:"sha256"` // lower-case hex digest of the whole file
}

// Manifest is the committed state of a store, as held in manifest.json.
type Manifest struct {
	Format string
	DType  gradients.DType // F16, BF16 or F32
	Dim    int
	Layers []LayerInfo
	// Projection made the stored rows from the full gradients (the zero
	// value: none). Queries are projected by it to be scored against the
	// rows. The store checks only that its sizes are not negative.
	Projection gradients.Projection
	Shards     []ShardInfo
	Count      int
}

// manifestJSON is the layout of manifest.json. The seed of the projection
// is a top-level int64 field: manifests written before the projection was
// one type keep opening, and new ones are written byte for byte as before.
type manifestJSON struct {
	Format     string         `json:"format"`
	DType      string         `json:"dtype"`
	Dim        int            `json:"dim"`
	Layers     []LayerInfo    `json:"layers"`
	Projection projectionJSON `json:"projection"`
	Seed       int64          `json:"seed"`
	Shards     []ShardInfo    `json:"shards"`
	Count      int            `json:"count"`
}

// MarshalJSON writes m as manifest.json holds it.
func (m Manifest) MarshalJSON() ([]byte, error) { return json.Marshal(m.toJSON()) }

// toJSON returns m in the layout of manifest.json.
func (m Manifest) toJSON() manifestJSON {
	p := projectionJSON{Kind: m.Projection.Kind.String(), K: m.Projection.K, KIn: m.Projection.KIn, KOut: m.Projection.KOut}
	return manifestJSON{Format: m.Format, DType: dtypeName(m.DType), Dim: m.Dim, Layers: m.Layers,
		Projection: p, Seed: int64(m.Projection.Seed), Shards: m.Shards, Count: m.Count}
}

// UnmarshalJSON reads a manifest.json, without validating it.
func (m *Manifest) UnmarshalJSON(buf []byte) error {
	var w manifestJSON
	if err := json.Unmarshal(buf, &w); err != nil {
		return err
	}
	mm, err := w.manifest()
	if err != nil {
		return err
	}
	*m = mm
	return nil
}

// manifest converts the JSON layout, naming the projection kind; the seed
// keeps its 64 bits.
func (w manifestJSON) manifest() (Manifest, error) {
	dt := gradients.DType(strings.ToUpper(w.DType))
	if w.DType != dtypeName(dt) || !storable(dt) {
		return Manifest{}, &Error{Field: "dtype", Err: fmt.Errorf("%w: %q, "+dtypeWant, ErrDType, w.DType)}
	}
	m := Manifest{Format: w.Format, DType: dt, Dim: w.Dim, Layers: w.Layers, Shards: w.Shards, Count: w.Count,
		Projection: gradients.Projection{K: w.Projection.K, KIn: w.Projection.KIn, KOut: w.Projection.KOut, Seed: uint64(w.Seed)}}
	switch {
	case w.Projection.Kind == "":
		return Manifest{}, manifestError("projection.kind", "empty; use \"none\" for unprojected rows")
	case strings.EqualFold(w.Projection.Kind, "none"):
	default:
		kind, err := gradients.ParseProjectionKind(w.Projection.Kind)
		if err != nil {
			return Manifest{}, manifestError("projection.kind", "%q: want none, rademacher, sjlt, gaussian or kronecker", w.Projection.Kind)
		}
		m.Projection.Kind = kind
	}
	return m, nil
}

// clone returns a deep copy of m.
func (m Manifest) clone() Manifest {
	m.Layers = slices.Clone(m.Layers)
	m.Shards = slices.Clone(m.Shards)
	return m
}

// shardName returns the file name of shard i.
func shardName(i int) string { return fmt.Sprintf("shard-%06d.safetensors", i) }

// shardIndex returns i for the file name shardName(i).
func shardIndex(name string) (int, bool) {
	num, ok := strings.CutPrefix(name, "shard-")
	if !ok {
		return 0, false
	}
	if num, ok = strings.CutSuffix(num, ".safetensors"); !ok || len(num) < 6 {
		return 0, false
	}
	i, err := strconv.Atoi(num)
	if err != nil || i < 0 || shardName(i) != name {
		return 0, false
	}
	return i, true
}

// manifestError returns an ErrFormat error naming a manifest field.
func manifestError(field, format string, args ...any) error {
	return &Error{Field: field, Err: fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)}
}

// parseManifest decodes and validates a manifest. Errors are *Error values
// naming the field at fault; the caller fills in the path.
func parseManifest(buf []byte) (Manifest, error) {
	var w manifestJSON
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Manifest{}, &Error{Err: fmt.Errorf("%w: %v", ErrFormat, err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, &Error{Err: fmt.Errorf("%w: trailing data after the JSON object", ErrFormat)}
	}
	m, err := w.manifest()
	if err != nil {
		return Manifest{}, err
	}
	return m, m.validate()
}

// validate checks the manifest's internal consistency: everything but the
// shard files themselves.
func (m *Manifest) validate() error {
	if m.Format != Format {
		return manifestError("format", "%q, want %q", m.Format, Format)
	}
	if !storable(m.DType) {
		return &Error{Field: "dtype", Err: fmt.Errorf("%w: %q, "+dtypeWant, ErrDType, dtypeName(m.DType))}
	}
	if m.Dim < 1 || m.Dim > math.MaxInt32 {
		return manifestError("dim", "%d out of range", m.Dim)
	}
	if m.DType == gradients.I8 && m.Dim > quant.MaxDim {
		return manifestError("dim", "%d: an i8 store holds rows of at most %d values, whose integer sums fit in int32", m.Dim, quant.MaxDim)
	}
	if err := checkLayers(m.Layers, m.Dim, true); err != nil {
		return err
	}
	if p := m.Projection; p.K < 0 || p.KIn < 0 || p.KOut < 0 {
		return manifestError("projection", "negative size in %+v", p)
	}
	rowBytes := m.Dim*m.DType.Size() + scaleBytes(m.DType)
	total := 0
	for i, s := range m.Shards {
		field := fmt.Sprintf("shards[%d]", i)
		if s.File != shardName(i) {
			return manifestError(field+".file", "%q, want %q", s.File, shardName(i))
		}
		if s.Rows < 1 || s.Rows > math.MaxInt/(rowBytes+8) {
			return manifestError(field+".rows", "%d out of range", s.Rows)
		}
		if len(s.SHA256) != 64 || strings.ToLower(s.SHA256) != s.SHA256 {
			return manifestError(field+".sha256", "%q is not a lower-case hex SHA-256", s.SHA256)
		}
		if _, err := hex.DecodeString(s.SHA256); err != nil {
			return manifestError(field+".sha256", "%q is not a lower-case hex SHA-256", s.SHA256)
		}
		if s.Rows > math.MaxInt-total {
			return manifestError(field+".rows", "total row count overflows")
		}
		total += s.Rows
	}
	if m.Count != total {
		return manifestError("count", "%d, but the shards hold %d rows", m.Count, total)
	}
	return nil
}

// checkLayers checks that layers tile [0, dim) in order. Offsets are checked
// only when given, as in a manifest; options leave them to be computed.
func checkLayers(layers []LayerInfo, dim int, offsets bool) error {
	if len(layers) == 0 {
		return manifestError("layers", "no layers")
	}
	seen := make(map[string]bool, len(layers))
	off := 0
	for i, l := range layers {
		field := fmt.Sprintf("layers[%d]", i)
		if l.Name == "" || seen[l.Name] {
			return manifestError(field+".name", "%q is empty or listed twice", l.Name)
		}
		seen[l.Name] = true
		if offsets && l.Offset != off {
			return manifestError(field+".offset", "%d, want %d", l.Offset, off)
		}
		if l.Dim < 1 || l.Dim > math.MaxInt32-off {
			return manifestError(field+".dim", "%d out of range", l.Dim)
		}
		off += l.Dim
	}
	if dim >= 0 && off != dim {
		return manifestError("layers", "layer dims sum to %d, want dim %d", off, dim)
	}
	return nil
}

// readManifest reads and validates the manifest of the store in dir.
func readManifest(dir string) (Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, &Error{Path: path, Err: pathless(err)}
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return Manifest{}, &Error{Path: path, Err: err}
	}
	if len(buf) > maxManifest {
		return Manifest{}, &Error{Path: path, Err: fmt.Errorf("%w: larger than %d bytes", ErrFormat, maxManifest)}
	}
	m, err := parseManifest(buf)
	if err != nil {
		err.(*Error).Path = path
		return Manifest{}, err
	}
	return m, nil
}

// writeManifest replaces the manifest of the store in dir atomically (see
// package atomicfile), so that a killed build leaves the old one intact.
func writeManifest(dir string, m Manifest) error {
	path := filepath.Join(dir, ManifestName)
	buf, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return &Error{Path: path, Err: err}
	}
	buf = append(buf, '\n')
	err = atomicfile.WriteFile(path, func(w io.Writer) error {
		_, err := w.Write(buf)
		return err
	})
	if err != nil {
		return &Error{Path: path, Err: pathless(err)}
	}
	return nil
}

// pathless strips the *fs.PathError from err, whose path an Error names.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// isTemp reports whether name is a temporary file of a store write: a shard
// or a manifest that was never renamed into place.
func isTemp(name string) bool {
	return strings.HasPrefix(name, "."+ManifestName+".tmp") ||
		(strings.HasPrefix(name, ".shard-") && strings.Contains(name, ".safetensors.tmp"))
}
