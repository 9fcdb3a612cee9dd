package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
)

// DefaultChunk is the number of examples Build reads and projects at a time
// when BuildOptions.Chunk is zero. It bounds memory; the store does not
// depend on it.
const DefaultChunk = 4096

// Source is the input of Build: gradient files read in order, chunk by
// chunk, as one sequence of examples. A file without ids gives its examples
// their positions in the sequence as ids, so that a store always has ids
// and a resumed build can check them.
type Source struct {
	paths []string
	files []*gradients.File
	n     int
}

// SameFileError reports one gradient file given twice to OpenSource: its
// examples would be stored twice.
type SameFileError struct{ A, B string }

func (e *SameFileError) Error() string {
	return fmt.Sprintf("%s and %s are the same file: its examples would be stored twice", e.A, e.B)
}

// OpenSource opens gradient files as one Source. Every header is checked,
// and the files must have the same layers (names, order, kinds and shapes;
// token counts may differ), before anything is read. The same file twice,
// through a link too, is a *SameFileError.
func OpenSource(paths ...string) (*Source, error) {
	if len(paths) == 0 {
		return nil, errors.New("store: OpenSource: no gradient files")
	}
	for i := range paths {
		for j := range i {
			if sameFile(paths[j], paths[i]) {
				return nil, &SameFileError{A: paths[j], B: paths[i]}
			}
		}
	}
	s := &Source{paths: paths}
	for _, path := range paths {
		f, err := gradients.Open(path)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, f)
		if err := sameLayers(paths[0], s.files[0].Layers(), path, f.Layers()); err != nil {
			s.Close()
			return nil, err
		}
		s.n += f.N()
	}
	return s, nil
}

// Len returns the number of examples of all files.
func (s *Source) Len() int { return s.n }

// Layers returns the layers of the files' examples.
func (s *Source) Layers() []gradients.LayerInfo { return s.files[0].Layers() }

// Files returns the open files, in order, for callers that check them
// further (their sizes against a memory budget). They belong to s.
func (s *Source) Files() []*gradients.File { return s.files }

// Paths returns the files' paths, in order.
func (s *Source) Paths() []string { return s.paths }

// Close closes the files.
func (s *Source) Close() error {
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	s.files = nil
	return first
}

// read returns examples [lo, hi) of file fi, whose first example is example
// pos of the source, with ids.
func (s *Source) read(fi, pos, lo, hi int) (*gradients.Batch, error) {
	b, err := s.files[fi].Read(lo, hi)
	if err != nil {
		return nil, err
	}
	if s.files[fi].IDs() == nil {
		b.IDs = positions(pos+lo, hi-lo)
	}
	return b, nil
}

// ids returns the ids of the first n examples of file fi, which starts at
// example pos of the source.
func (s *Source) ids(fi, pos, n int) []int64 {
	if ids := s.files[fi].IDs(); ids != nil {
		return ids[:n]
	}
	return positions(pos, n)
}

func positions(from, n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(from + i)
	}
	return ids
}

// BuildOptions configure Build.
type BuildOptions struct {
	// DType of the stored rows; F16 when empty. When resuming, empty means
	// the store's, and another is a *MismatchError.
	DType gradients.DType
	// ShardRows per shard file of a new store (DefaultShardRows when zero);
	// a resumed store keeps its own.
	ShardRows int
	// Chunk is the number of examples read and projected at a time
	// (DefaultChunk when zero). The store does not depend on it.
	Chunk int
	// MemoryLimit bounds, in bytes, the float64 values of a chunk of
	// examples read from each file, checked from the headers before
	// anything is written, and the projection's buffers
	// (gradients.ApplyOptions): 0 means linalg.DefaultMemoryLimit(), a
	// negative value no limit (see linalg.CheckMemory).
	MemoryLimit int64
	// Backend projects the rows when it can (accel.Projector, such as the
	// cuda backend), bit for bit as the host does; nil means the host.
	Backend linalg.Backend

	// Resume continues the store in dir, which must exist: the rows it
	// holds must be the first examples of the source, id for id and, for
	// the last of them, byte for byte (Builder.Skip, Builder.SameRow); the
	// rest are added. Without Resume, dir must not hold a store.
	Resume bool
	// CheckProjection makes a resumed build check that the projection
	// asked for is the store's (a *MismatchError otherwise). Without it a
	// resumed build projects as the store was built, whatever was asked.
	CheckProjection bool

	// Start, when set, is called once before the first row is added, with
	// the store's manifest (its dtype and projection are those of a resumed
	// store) and the number of rows committed before.
	Start func(m Manifest, resumed int)
	// Progress is told, after each chunk, of the examples of the source
	// done (skipped ones included) and their total, with the stage
	// "N rows committed".
	Progress progress.Func
}

// BuildSummary is the outcome of Build.
type BuildSummary struct {
	Manifest Manifest // the store's, as committed at the end
	Resumed  int      // rows committed before the build (Resume)
	Added    int      // rows the build added
}

// MismatchError reports that a resumed build asks for another dtype or
// projection than the store holds.
type MismatchError struct {
	Path        string // the manifest
	Field       string // "dtype" or "projection"
	Asked, Have string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s: %s %s asked for, the store holds %s", e.Path, e.Field, e.Asked, e.Have)
}

// Build adds the examples of src, projected by spec (none: the full
// flattened gradients), to the store in dir: a new store, or with
// opt.Resume the continuation of one a killed build left. Examples are read
// and projected opt.Chunk at a time and committed shard by shard; rows
// buffered when Build stops (an error, ctx cancelled) are committed too, so
// that resuming loses none of them.
//
// Errors name what and where: the input file and examples, the store file,
// or the manifest and field. A new store over an existing one is ErrExists.
func Build(ctx context.Context, dir string, src *Source, spec gradients.Projection, opt BuildOptions) (BuildSummary, error) {
	switch {
	case opt.Chunk < 0:
		return BuildSummary{}, fmt.Errorf("store: Build: chunk %d < 0", opt.Chunk)
	case opt.Chunk == 0:
		opt.Chunk = DefaultChunk
	}
	for _, f := range src.files {
		if err := f.CheckRead(0, min(opt.Chunk, f.N()), opt.MemoryLimit); err != nil {
			return BuildSummary{}, err
		}
	}
	var b *Builder
	var err error
	if opt.Resume {
		if b, err = Resume(dir); err != nil {
			return BuildSummary{}, err
		}
		if err := checkResume(b, src, spec, opt); err != nil {
			b.Close()
			return BuildSummary{}, err
		}
	} else {
		if opt.DType == "" {
			opt.DType = gradients.F16
		}
		dims, err := spec.Dims(src.Layers())
		if err != nil {
			return BuildSummary{}, fmt.Errorf("%s: %w", src.paths[0], err)
		}
		layers := make([]LayerInfo, len(dims))
		for i, l := range src.Layers() {
			layers[i] = LayerInfo{Name: l.Name, Dim: dims[i]}
		}
		if b, err = Create(dir, Options{DType: opt.DType, ShardRows: opt.ShardRows, Layers: layers, Projection: spec}); err != nil {
			return BuildSummary{}, err
		}
	}
	m := b.Manifest()
	spec = m.Projection
	resumed := b.Committed()
	from, err := skipCommitted(ctx, b, src, spec)
	if err != nil {
		b.Close()
		return BuildSummary{}, err
	}
	if opt.Start != nil {
		opt.Start(m, resumed)
	}
	buildErr := func() error {
		pos := 0 // position in the source of the file's first example
		for fi, f := range src.files {
			n := f.N()
			for lo := from[fi]; lo < n; lo += opt.Chunk {
				hi := min(n, lo+opt.Chunk)
				batch, err := src.read(fi, pos, lo, hi)
				if err != nil {
					return err
				}
				if batch, err = spec.ApplyOrKeep(ctx, batch, gradients.ApplyOptions{Backend: opt.Backend, MemoryLimit: opt.MemoryLimit}); err != nil {
					return fmt.Errorf("%s: %w", src.paths[fi], err)
				}
				if err := b.AddBatchFrom(ctx, src.paths[fi], lo, batch); err != nil {
					return fmt.Errorf("%s: examples [%d, %d): %w", src.paths[fi], lo, hi, err)
				}
				opt.Progress.Report(fmt.Sprintf("%d rows committed", b.Committed()), pos+hi, src.n)
			}
			pos += n
		}
		return nil
	}()
	// Close commits the rows buffered so far even after an error (an
	// interrupt, a bad value), so that a resumed build loses none of them.
	closeErr := b.Close()
	if buildErr != nil {
		return BuildSummary{}, buildErr
	}
	if closeErr != nil {
		return BuildSummary{}, closeErr
	}
	m = b.Manifest()
	return BuildSummary{Manifest: m, Resumed: resumed, Added: m.Count - resumed}, nil
}

// checkResume checks a resumed store against what the build asks for: the
// dtype and projection where given, the layers, and that the source holds
// at least the store's rows. skipCommitted then checks the ids.
func checkResume(b *Builder, src *Source, spec gradients.Projection, opt BuildOptions) error {
	m := b.Manifest()
	manifest := filepath.Join(b.dir, ManifestName)
	if opt.CheckProjection && !spec.Equal(m.Projection) {
		return &MismatchError{Path: manifest, Field: "projection", Asked: spec.String(), Have: m.Projection.String()}
	}
	if opt.DType != "" && opt.DType != m.DType {
		return &MismatchError{Path: manifest, Field: "dtype", Asked: dtypeName(opt.DType), Have: dtypeName(m.DType)}
	}
	if err := m.CheckInput(src.Layers()); err != nil {
		return fmt.Errorf("%s against %s: %w", src.paths[0], manifest, err)
	}
	if m.Count > src.n {
		return fmt.Errorf("%s holds %d rows, more than the %d examples of the inputs: not the same inputs", b.dir, m.Count, src.n)
	}
	return nil
}

// skipCommitted matches the rows a resumed store committed with the first
// examples of src, by id and, for the last row of each file, by content,
// and returns per file the first example still to add.
func skipCommitted(ctx context.Context, b *Builder, src *Source, spec gradients.Projection) ([]int, error) {
	skip := b.Committed()
	from := make([]int, len(src.files))
	for fi, pos := 0, 0; fi < len(src.files) && pos < skip; fi++ {
		f := src.files[fi]
		need := min(f.N(), skip-pos)
		ids := src.ids(fi, pos, need)
		var err error
		if from[fi], err = b.Skip(src.paths[fi], ids); err != nil {
			return nil, err
		}
		last, err := src.read(fi, pos, need-1, need)
		if err != nil {
			return nil, err
		}
		if last, err = spec.ApplyOrKeep(ctx, last, gradients.ApplyOptions{}); err != nil {
			return nil, fmt.Errorf("%s: %w", src.paths[fi], err)
		}
		if err := b.SameRow(src.paths[fi], need-1, pos+need-1, last); err != nil {
			return nil, err
		}
		pos += f.N()
	}
	return from, nil
}

// CheckInput checks that gradients with the given layers, projected by the
// store's projection, have the store's layers: the same names in the same
// order, of the same dimensions. Queries and resumed inputs must pass it.
func (m Manifest) CheckInput(layers []gradients.LayerInfo) error {
	dims, err := m.Projection.Dims(layers)
	if err != nil {
		return err
	}
	if len(layers) != len(m.Layers) {
		return fmt.Errorf("%d layers, the store has %d", len(layers), len(m.Layers))
	}
	for i, w := range m.Layers {
		if layers[i].Name != w.Name {
			return fmt.Errorf("layer %d is %q, the store's is %q", i, layers[i].Name, w.Name)
		}
		if dims[i] != w.Dim {
			return fmt.Errorf("layer %q has dimension %d as stored, the store's has %d", w.Name, dims[i], w.Dim)
		}
	}
	return nil
}

// sameFile reports whether two paths name one file, through links too.
func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}

// sameLayers checks that two gradient files have the same layers: names,
// order, kind and shapes (token counts may differ).
func sameLayers(pathA string, a []gradients.LayerInfo, pathB string, b []gradients.LayerInfo) error {
	if len(a) != len(b) {
		return fmt.Errorf("%s has %d layers, %s has %d", pathB, len(b), pathA, len(a))
	}
	shape := func(l gradients.LayerInfo) string {
		if l.Factored {
			return fmt.Sprintf("factored %d×%d", l.DOut, l.DIn)
		}
		return fmt.Sprintf("dense %d", l.D)
	}
	for i := range a {
		if a[i].Name != b[i].Name || shape(a[i]) != shape(b[i]) {
			return fmt.Errorf("%s: layer %d is %q (%s), in %s it is %q (%s)", pathB, i, b[i].Name, shape(b[i]), pathA, a[i].Name, shape(a[i]))
		}
	}
	return nil
}
