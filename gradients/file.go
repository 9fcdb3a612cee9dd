package gradients

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// Format is the value of the "format" metadata key of a gradient file.
const Format = "goinfluence.gradients/v1"

var frameworkTag = map[string]bool{"pt": true, "np": true, "tf": true, "flax": true, "mlx": true, "paddle": true}

// DType is the element type of the values in a gradient file.
type DType string

// Element types a gradient file may hold.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
)

// I8 is the quantised dtype of a store (DESIGN §11, package quant): int8
// values with a float32 scale per row. A gradient file cannot hold it.
const I8 DType = "I8"

func (d DType) valid() bool { return d == F64 || d == F32 || d == F16 || d == BF16 }

// Size returns the bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	if d == I8 {
		return 1
	}
	if !d.valid() {
		return 0
	}
	return safetensors.DType(d).Size()
}

// LayerInfo describes one layer of a gradient file.
type LayerInfo struct {
	Name      string
	Factored  bool  // stored as activations a and output gradients s
	TokenAxis bool  // factored tensors are [n, T, d] rather than [n, d]
	Tokens    int   // token rows per example (1 without a token axis)
	DIn, DOut int   // factored layers only
	D         int   // flattened gradient length: DIn·DOut when factored
	DType     DType // element type of the layer's tensors
}

// File is an open gradient file. Its header is checked by Open; values are
// decoded, and checked to be finite, by Read.
type File struct {
	path   string
	st     *safetensors.File
	n      int
	layers []LayerInfo
	ids    []int64
	meta   map[string]string
	closed bool
}

// Open opens the gradient file at path, memory-mapping it, and checks its
// header: tensor names, dtypes, shapes and the layer metadata.
func Open(path string) (*File, error) {
	st, err := safetensors.Open(path)
	if err != nil {
		return nil, parseError(path, err)
	}
	f, err := build(st, path)
	if err != nil {
		st.Close()
		return nil, err
	}
	return f, nil
}

// parse is Open for a file held in memory; path only labels errors.
func parse(buf []byte, path string) (*File, error) {
	st, err := safetensors.Parse(buf)
	if err != nil {
		return nil, parseError(path, err)
	}
	return build(st, path)
}

// causeError gives a safetensors error the sentinel of this package while
// keeping its message.
type causeError struct{ cause, err error }

func (e causeError) Error() string   { return e.err.Error() }
func (e causeError) Unwrap() []error { return []error{e.cause, e.err} }

func parseError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var cause error
	switch {
	case errors.Is(err, safetensors.ErrTruncated):
		cause = ErrTruncated
	case errors.Is(err, safetensors.ErrDType):
		cause = ErrDType
	case errors.Is(err, safetensors.ErrFormat):
		cause = ErrFormat
	default: // I/O
		return &Error{Path: path, Example: -1, Err: err}
	}
	return &Error{Path: path, Field: "header", Example: -1, Err: causeError{cause, err}}
}

// fileError returns an *Error about the layer and field of file path, not
// tied to one example.
func fileError(path, layer, field string, cause error, format string, args ...any) error {
	return &Error{Path: path, Layer: layer, Field: field, Example: -1, Err: fmt.Errorf("%w: "+format, append([]any{cause}, args...)...)}
}

// group gathers the tensors of one layer.
type group struct{ a, s, grad *safetensors.Info }

func build(st *safetensors.File, path string) (*File, error) {
	f := &File{path: path, st: st, n: -1, meta: st.Metadata}
	// Frameworks' own safetensors writers tag files "pt", "np" and so on;
	// those are gradient files too when their tensors say so.
	if v, ok := f.meta["format"]; ok && v != Format && !frameworkTag[v] {
		return nil, fileError(path, "", "metadata", ErrFormat, "format %q, want %q", v, Format)
	}
	groups := map[string]*group{}
	var ids *safetensors.Info
	for _, name := range st.Names() {
		in, _ := st.Info(name)
		if name == "ids" {
			ids = &in
			continue
		}
		dot := strings.LastIndexByte(name, '.')
		if dot <= 0 {
			return nil, fileError(path, "", "header", ErrFormat, "tensor %q is not ids, <layer>.a, <layer>.s or <layer>.grad", name)
		}
		layer, field := name[:dot], name[dot+1:]
		if strings.Contains(layer, ",") {
			return nil, fileError(path, layer, "", ErrFormat, "layer name contains a comma, which the layers metadata cannot list")
		}
		g := groups[layer]
		if g == nil {
			g = &group{}
			groups[layer] = g
		}
		switch field {
		case "a":
			g.a = &in
		case "s":
			g.s = &in
		case "grad":
			g.grad = &in
		default:
			return nil, fileError(path, layer, field, ErrFormat, "tensor %q is not ids, <layer>.a, <layer>.s or <layer>.grad", name)
		}
	}

	order, err := layerOrder(path, f.meta, groups)
	if err != nil {
		return nil, err
	}
	for _, name := range order {
		li, n, err := layerInfo(path, name, groups[name])
		if err != nil {
			return nil, err
		}
		if f.n >= 0 && n != f.n {
			return nil, fileError(path, name, "", ErrShape, "%d examples, but layer %q has %d", n, f.layers[0].Name, f.n)
		}
		f.n = n
		f.layers = append(f.layers, li)
	}

	if ids != nil {
		if ids.DType != safetensors.I64 {
			return nil, fileError(path, "", "ids", ErrDType, "dtype %s, want I64", ids.DType)
		}
		if len(ids.Shape) != 1 || (f.n >= 0 && ids.Shape[0] != f.n) {
			return nil, fileError(path, "", "ids", ErrShape, "shape %v, want [%d]", ids.Shape, max(f.n, 0))
		}
		f.n = ids.Shape[0]
		f.ids = make([]int64, f.n)
		if err := safetensors.DecodeInt64s(f.ids, ids.DType, st.Bytes("ids")); err != nil {
			return nil, fileError(path, "", "ids", ErrFormat, "%v", err)
		}
	}
	f.n = max(f.n, 0)
	return f, nil
}

// layerOrder returns the layer names in the order of the "layers" metadata,
// which must list exactly the layers present, or else in lexical order.
func layerOrder(path string, meta map[string]string, groups map[string]*group) ([]string, error) {
	list, ok := meta["layers"]
	if !ok {
		return slices.Sorted(maps.Keys(groups)), nil
	}
	var order []string
	if list != "" {
		order = strings.Split(list, ",")
	}
	var missing, extra []string
	listed := map[string]bool{}
	for _, name := range order {
		if listed[name] {
			return nil, fileError(path, name, "metadata", ErrFormat, "layer listed twice in the layers metadata")
		}
		listed[name] = true
		if groups[name] == nil {
			missing = append(missing, name)
		}
	}
	for name := range groups {
		if !listed[name] {
			extra = append(extra, name)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		slices.Sort(extra)
		return nil, fileError(path, "", "metadata", ErrFormat, "layers metadata lists layers without tensors %q and omits layers %q", missing, extra)
	}
	return order, nil
}

// layerInfo checks the tensors of one layer and returns its description and
// example count.
func layerInfo(path, name string, g *group) (LayerInfo, int, error) {
	li := LayerInfo{Name: name}
	tensorDType := func(field string, in *safetensors.Info) (DType, error) {
		d := DType(in.DType)
		if !d.valid() {
			return "", fileError(path, name, field, ErrDType, "dtype %s, want F64, F32, F16 or BF16", in.DType)
		}
		return d, nil
	}
	if g.grad != nil {
		if g.a != nil || g.s != nil {
			return li, 0, fileError(path, name, "grad", ErrFormat, "layer has both a dense grad and factored a/s tensors")
		}
		var err error
		if li.DType, err = tensorDType("grad", g.grad); err != nil {
			return li, 0, err
		}
		if len(g.grad.Shape) != 2 || g.grad.Shape[1] < 1 {
			return li, 0, fileError(path, name, "grad", ErrShape, "shape %v, want [n, D] with D ≥ 1", g.grad.Shape)
		}
		li.D = g.grad.Shape[1]
		return li, g.grad.Shape[0], nil
	}
	switch {
	case g.a == nil:
		return li, 0, fileError(path, name, "a", ErrFormat, "missing tensor %q to go with %q", name+".a", name+".s")
	case g.s == nil:
		return li, 0, fileError(path, name, "s", ErrFormat, "missing tensor %q to go with %q", name+".s", name+".a")
	}
	li.Factored = true
	da, err := tensorDType("a", g.a)
	if err != nil {
		return li, 0, err
	}
	ds, err := tensorDType("s", g.s)
	if err != nil {
		return li, 0, err
	}
	if da != ds {
		return li, 0, fileError(path, name, "s", ErrDType, "dtype %s differs from a's %s", ds, da)
	}
	li.DType = da
	sa, ss := g.a.Shape, g.s.Shape
	for _, t := range []struct {
		field string
		shape []int
	}{{"a", sa}, {"s", ss}} {
		if len(t.shape) != 2 && len(t.shape) != 3 || slices.Contains(t.shape[1:], 0) {
			return li, 0, fileError(path, name, t.field, ErrShape, "shape %v, want [n, T, d] or [n, d] with T, d ≥ 1", t.shape)
		}
	}
	if len(sa) != len(ss) || sa[0] != ss[0] || len(sa) == 3 && sa[1] != ss[1] {
		return li, 0, fileError(path, name, "s", ErrShape, "shape %v does not match a's %v in n, T or rank", ss, sa)
	}
	li.Tokens = 1
	if len(sa) == 3 {
		li.TokenAxis, li.Tokens = true, sa[1]
	}
	li.DIn, li.DOut = sa[len(sa)-1], ss[len(ss)-1]
	// Guard sizes derived later; with n = 0 the dims are not bounded by the
	// file's length.
	if li.Tokens > math.MaxInt/li.DIn || li.Tokens > math.MaxInt/li.DOut || li.DIn > math.MaxInt/li.DOut {
		return li, 0, fileError(path, name, "", ErrShape, "dimensions T=%d d_in=%d d_out=%d too large", li.Tokens, li.DIn, li.DOut)
	}
	li.D = li.DIn * li.DOut
	return li, sa[0], nil
}

// N returns the number of examples.
func (f *File) N() int { return f.n }

// Layers returns the layers in file order.
func (f *File) Layers() []LayerInfo { return slices.Clone(f.layers) }

// IDs returns the example identifiers, or nil if the file has none.
func (f *File) IDs() []int64 { return slices.Clone(f.ids) }

// Metadata returns the file's header metadata.
func (f *File) Metadata() map[string]string { return maps.Clone(f.meta) }

// Read decodes examples [lo, hi) into a Batch. A NaN or infinite value is an
// error naming its layer, field and example index in the file.
func (f *File) Read(lo, hi int) (*Batch, error) {
	if f.closed {
		return nil, &Error{Path: f.path, Example: -1, Err: fs.ErrClosed}
	}
	if lo < 0 || hi > f.n || lo > hi {
		return nil, fileError(f.path, "", "", ErrShape, "examples [%d, %d) outside [0, %d)", lo, hi, f.n)
	}
	b := &Batch{N: hi - lo, Layers: make([]Layer, len(f.layers))}
	if f.ids != nil {
		b.IDs = slices.Clone(f.ids[lo:hi])
	}
	var err error
	for i, li := range f.layers {
		l := &b.Layers[i]
		l.Name = li.Name
		if !li.Factored {
			l.D = li.D
			if l.Grad, err = f.decode(li, "grad", lo, hi, li.D); err != nil {
				return nil, err
			}
			continue
		}
		l.DIn, l.DOut, l.Tokens, l.TokenAxis = li.DIn, li.DOut, li.Tokens, li.TokenAxis
		if l.A, err = f.decode(li, "a", lo, hi, li.Tokens*li.DIn); err != nil {
			return nil, err
		}
		if l.S, err = f.decode(li, "s", lo, hi, li.Tokens*li.DOut); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// decode returns examples [lo, hi) of a layer's tensor, per values each.
func (f *File) decode(li LayerInfo, field string, lo, hi, per int) ([]float64, error) {
	dt := safetensors.DType(li.DType)
	row := per * dt.Size()
	raw := f.st.Bytes(li.Name + "." + field)[lo*row : hi*row]
	v := make([]float64, (hi-lo)*per)
	if err := safetensors.DecodeFloat64s(v, dt, raw); err != nil {
		return nil, fileError(f.path, li.Name, field, ErrFormat, "%v", err)
	}
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, &Error{Path: f.path, Layer: li.Name, Field: field, Example: lo + i/per,
				Err: fmt.Errorf("%w: %v at offset %d", ErrNonFinite, x, i%per)}
		}
	}
	return v, nil
}

// ReadBytes returns the bytes of the float64 slices Read(lo, hi) would
// allocate, computed from the header alone (saturating at math.MaxInt64), so
// that callers can check it against a memory limit before reading.
func (f *File) ReadBytes(lo, hi int) int64 {
	per := ExampleBytes(f.layers)
	n := int64(max(hi-lo, 0))
	if n > 0 && per > math.MaxInt64/n {
		return math.MaxInt64
	}
	return per * n
}

// ExampleBytes returns the bytes of one example's values over layers as
// float64 (math.MaxInt64 if that overflows): token rows of activations and
// output gradients, or the dense gradient.
func ExampleBytes(layers []LayerInfo) int64 {
	var per int64
	for _, li := range layers {
		if li.Factored {
			per = linalg.AddBytes(per, linalg.Float64Bytes(li.Tokens, li.DIn), linalg.Float64Bytes(li.Tokens, li.DOut))
		} else {
			per = linalg.AddBytes(per, linalg.Float64Bytes(li.D))
		}
	}
	return per
}

// ReadLimit is Read refusing, before decoding, examples [lo, hi) whose
// float64 values need more than limit bytes (see linalg.CheckMemory for 0
// and negative limits): the sizes come from the header, which can ask for
// far more memory than the machine has. The error is a
// *linalg.MemoryError naming the file and the examples.
func (f *File) ReadLimit(lo, hi int, limit int64) (*Batch, error) {
	if err := f.CheckRead(lo, hi, limit); err != nil {
		return nil, err
	}
	return f.Read(lo, hi)
}

// CheckRead returns the error ReadLimit(lo, hi, limit) would refuse with,
// or nil, without reading: for callers that check every input before
// writing anything.
func (f *File) CheckRead(lo, hi int, limit int64) error {
	return linalg.CheckMemory(fmt.Sprintf("%s: %d examples", f.path, hi-lo), "float64", f.ReadBytes(lo, hi), limit)
}

// ReadAll decodes every example.
func (f *File) ReadAll() (*Batch, error) { return f.Read(0, f.n) }

// Close releases the file. Batches already read stay valid.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	return f.st.Close()
}

// ReadFile reads every example of the gradient file at path.
func ReadFile(path string) (*Batch, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadAll()
}

// ReadFileLimit is ReadFile refusing, before decoding, a file whose
// examples need more than limit bytes as float64 (see linalg.CheckMemory
// for the meaning of 0 and negative limits). The error matches
// linalg.ErrMemoryLimit and names the file.
func ReadFileLimit(path string, limit int64) (*Batch, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadLimit(0, f.n, limit)
}

// WriteFile validates b and writes it to path as a gradient file of the given
// dtype, atomically: an existing file at path is replaced only once the new
// one is complete. Factored layers get a token axis when TokenAxis is set or
// Tokens ≠ 1. The "format" and "layers" metadata keys describe the file
// written and override those of meta; other keys of meta are stored as given.
// Narrowing to F32, F16 or BF16 rounds to nearest even; a value beyond the
// dtype's range is an ErrRange error.
func WriteFile(path string, b *Batch, dtype DType, meta map[string]string) error {
	tensors, md, err := encode(b, dtype, meta)
	if err != nil {
		return withPath(err, path)
	}
	if err := safetensors.WriteFile(path, tensors, md); err != nil {
		return &Error{Path: path, Example: -1, Err: err}
	}
	return nil
}

// encode returns the tensors and metadata of the gradient file holding b:
// fileLayout's tensors with encodeBatch's data, as a Writer writes them.
func encode(b *Batch, dtype DType, meta map[string]string) ([]safetensors.Tensor, map[string]string, error) {
	if !dtype.valid() {
		return nil, nil, fileError("", "", "", ErrDType, "%q, want F64, F32, F16 or BF16", dtype)
	}
	if b == nil {
		return nil, nil, fileError("", "", "", ErrShape, "nil batch")
	}
	if err := b.Validate(); err != nil {
		return nil, nil, err
	}
	tensors, md, err := fileLayout(b.N, b.LayerInfos(), dtype, b.IDs != nil, meta)
	if err != nil {
		return nil, nil, err
	}
	data, err := encodeBatch(b, dtype, b.IDs != nil, 0)
	if err != nil {
		return nil, nil, err
	}
	for i := range tensors {
		tensors[i].Data = data[i]
	}
	return tensors, md, nil
}

// fileLayout returns the tensors (names, dtypes and shapes; no data) and the
// metadata of a gradient file of n examples of the given layers: ids first
// when withIDs, then each layer's a and s (with a token axis when the layer
// has one or more than one token) or grad. The "format" and "layers" keys
// override those of meta. Errors are *Error values without a path.
func fileLayout(n int, layers []LayerInfo, dtype DType, withIDs bool, meta map[string]string) ([]safetensors.Tensor, map[string]string, error) {
	if !dtype.valid() {
		return nil, nil, fileError("", "", "", ErrDType, "%q, want F64, F32, F16 or BF16", dtype)
	}
	if n < 0 {
		return nil, nil, fileError("", "", "", ErrShape, "%d examples", n)
	}
	dt := safetensors.DType(dtype)
	var tensors []safetensors.Tensor
	if withIDs {
		tensors = append(tensors, safetensors.Tensor{Name: "ids", DType: safetensors.I64, Shape: []int{n}})
	}
	names := make([]string, len(layers))
	for i, l := range layers {
		if l.Name == "" || strings.Contains(l.Name, ",") {
			return nil, nil, fileError("", l.Name, "", ErrFormat, "layer name must be non-empty and free of commas")
		}
		names[i] = l.Name
		switch {
		case !l.Factored:
			if l.D < 1 {
				return nil, nil, fileError("", l.Name, "", ErrShape, "dense layer of dimension %d", l.D)
			}
			tensors = append(tensors, safetensors.Tensor{Name: l.Name + ".grad", DType: dt, Shape: []int{n, l.D}})
		case l.DIn < 1 || l.DOut < 1 || l.Tokens < 1:
			return nil, nil, fileError("", l.Name, "", ErrShape, "factored layer %d×%d with %d tokens", l.DOut, l.DIn, l.Tokens)
		case l.TokenAxis || l.Tokens != 1:
			tensors = append(tensors,
				safetensors.Tensor{Name: l.Name + ".a", DType: dt, Shape: []int{n, l.Tokens, l.DIn}},
				safetensors.Tensor{Name: l.Name + ".s", DType: dt, Shape: []int{n, l.Tokens, l.DOut}})
		default:
			tensors = append(tensors,
				safetensors.Tensor{Name: l.Name + ".a", DType: dt, Shape: []int{n, l.DIn}},
				safetensors.Tensor{Name: l.Name + ".s", DType: dt, Shape: []int{n, l.DOut}})
		}
	}
	md := maps.Clone(meta)
	if md == nil {
		md = map[string]string{}
	}
	md["format"] = Format
	md["layers"] = strings.Join(names, ",")
	return tensors, md, nil
}

// encodeBatch returns the data of the valid batch b in fileLayout's order,
// each value narrowed to dtype. first is the index in the file of b's first
// example, which a range error names.
func encodeBatch(b *Batch, dtype DType, withIDs bool, first int) ([][]byte, error) {
	var pieces [][]byte
	if withIDs {
		data, _ := safetensors.EncodeInt64s(safetensors.I64, b.IDs) // I64 holds any int64
		pieces = append(pieces, data)
	}
	add := func(l *Layer, field string, v []float64) error {
		data, err := safetensors.EncodeFloat64s(safetensors.DType(dtype), v)
		var re *safetensors.RangeError
		if errors.As(err, &re) {
			per := max(len(v)/max(b.N, 1), 1)
			return &Error{Layer: l.Name, Field: field, Example: first + re.Index/per,
				Err: fmt.Errorf("%w: %g at offset %d overflows %s", ErrRange, re.Value, re.Index%per, dtype)}
		}
		if err != nil {
			return fileError("", l.Name, field, ErrDType, "%v", err)
		}
		pieces = append(pieces, data)
		return nil
	}
	for i := range b.Layers {
		l := &b.Layers[i]
		var err error
		if l.Factored() {
			if err = add(l, "a", l.A); err == nil {
				err = add(l, "s", l.S)
			}
		} else {
			err = add(l, "grad", l.Grad)
		}
		if err != nil {
			return nil, err
		}
	}
	return pieces, nil
}
