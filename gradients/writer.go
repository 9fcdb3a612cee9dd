package gradients

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// Writer writes a gradient file a batch at a time, so that files larger
// than memory can be written (exporting a data set, projecting one chunk by
// chunk). The file is the one WriteFile would write for the whole batch,
// byte for byte, and appears at its path only when Close finds all its
// examples written; a failed or abandoned Writer leaves the path untouched.
//
//	w, err := gradients.NewWriter(path, n, layers, gradients.F16, true, nil)
//	…
//	for each chunk { if err := w.Write(chunk); err != nil { w.Abort(); … } }
//	err = w.Close()
type Writer struct {
	path    string
	n, done int
	layers  []LayerInfo
	dtype   DType
	ids     bool
	a       *safetensors.Appender
	err     error
}

// NewWriter starts the gradient file at path for n examples of the given
// layers (as File.Layers reports them: name, factored or dense, token axis
// and tokens, dimensions; their DType is ignored) stored as dtype, with an
// ids tensor when withIDs. The "format" and "layers" metadata keys are set
// as by WriteFile; other keys of meta are stored as given.
func NewWriter(path string, n int, layers []LayerInfo, dtype DType, withIDs bool, meta map[string]string) (*Writer, error) {
	fail := func(layer string, format string, args ...any) error {
		return &Error{Path: path, Layer: layer, Example: -1, Err: fmt.Errorf(format, args...)}
	}
	if !dtype.valid() {
		return nil, fail("", "%w: %q, want F64, F32, F16 or BF16", ErrDType, dtype)
	}
	if n < 0 {
		return nil, fail("", "%w: %d examples", ErrShape, n)
	}
	dt := safetensors.DType(dtype)
	var tensors []safetensors.Tensor
	if withIDs {
		tensors = append(tensors, safetensors.Tensor{Name: "ids", DType: safetensors.I64, Shape: []int{n}})
	}
	names := make([]string, len(layers))
	for i, l := range layers {
		if l.Name == "" || strings.Contains(l.Name, ",") {
			return nil, fail(l.Name, "%w: layer name must be non-empty and free of commas", ErrFormat)
		}
		names[i] = l.Name
		switch {
		case !l.Factored:
			if l.D < 1 {
				return nil, fail(l.Name, "%w: dense layer of dimension %d", ErrShape, l.D)
			}
			tensors = append(tensors, safetensors.Tensor{Name: l.Name + ".grad", DType: dt, Shape: []int{n, l.D}})
		case l.DIn < 1 || l.DOut < 1 || l.Tokens < 1:
			return nil, fail(l.Name, "%w: factored layer %d×%d with %d tokens", ErrShape, l.DOut, l.DIn, l.Tokens)
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
	a, err := safetensors.Create(path, tensors, md)
	if err != nil {
		return nil, &Error{Path: path, Example: -1, Err: err}
	}
	return &Writer{path: path, n: n, layers: append([]LayerInfo(nil), layers...), dtype: dtype, ids: withIDs, a: a}, nil
}

// Write appends the examples of b, which must have the writer's layers, in
// order, with the same shapes, and ids exactly when the writer stores them.
// Values are checked as WriteFile checks them; an error names the example
// by its index in the file. After an error the Writer only aborts.
func (w *Writer) Write(b *Batch) error {
	if w.err != nil {
		return w.err
	}
	if err := w.write(b); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *Writer) write(b *Batch) error {
	fail := func(layer, field string, example int, format string, args ...any) error {
		return &Error{Path: w.path, Layer: layer, Field: field, Example: example, Err: fmt.Errorf(format, args...)}
	}
	if b == nil {
		return fail("", "", -1, "%w: nil batch", ErrShape)
	}
	if w.done+b.N > w.n {
		return fail("", "", w.done, "%w: %d examples written past the file's %d", ErrShape, w.done+b.N, w.n)
	}
	if err := b.Validate(); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Path = w.path
			if e.Example >= 0 {
				e.Example += w.done
			}
		}
		return err
	}
	if (b.IDs != nil) != w.ids {
		return fail("", "ids", w.done, "%w: batch ids present %v, the file's %v", ErrShape, b.IDs != nil, w.ids)
	}
	if len(b.Layers) != len(w.layers) {
		return fail("", "", w.done, "%w: %d layers, the file has %d", ErrShape, len(b.Layers), len(w.layers))
	}
	for i, want := range w.layers {
		l := &b.Layers[i]
		same := l.Name == want.Name && l.Factored() == want.Factored
		if same && want.Factored {
			same = l.DIn == want.DIn && l.DOut == want.DOut && l.Tokens == want.Tokens
		} else if same {
			same = l.D == want.D
		}
		if !same {
			return fail(l.Name, "", w.done, "%w: layer %d is %q %d×%d (%d tokens, dense %d), the file's %q %d×%d (%d tokens, dense %d)",
				ErrShape, i, l.Name, l.DOut, l.DIn, l.Tokens, l.D, want.Name, want.DOut, want.DIn, want.Tokens, want.D)
		}
	}
	// Encode everything before appending anything, so that a range error
	// leaves the file as it was.
	var pieces [][]byte
	if w.ids {
		data, _ := safetensors.EncodeInt64s(safetensors.I64, b.IDs)
		pieces = append(pieces, data)
	}
	dt := safetensors.DType(w.dtype)
	add := func(l *Layer, field string, v []float64) error {
		data, err := safetensors.EncodeFloat64s(dt, v)
		var re *safetensors.RangeError
		if errors.As(err, &re) {
			per := max(len(v)/max(b.N, 1), 1)
			return fail(l.Name, field, w.done+re.Index/per, "%w: %g at offset %d overflows %s", ErrRange, re.Value, re.Index%per, w.dtype)
		}
		if err != nil {
			return fail(l.Name, field, -1, "%w: %v", ErrDType, err)
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
			return err
		}
	}
	for i, p := range pieces {
		if err := w.a.Append(i, p); err != nil {
			return &Error{Path: w.path, Example: w.done, Err: err}
		}
	}
	w.done += b.N
	return nil
}

// Close puts the file in place when every example has been written, and
// otherwise removes it and returns an error saying how many were.
func (w *Writer) Close() error {
	if w.err != nil {
		w.a.Abort()
		return w.err
	}
	if w.done != w.n {
		w.a.Abort()
		w.err = &Error{Path: w.path, Example: -1, Err: fmt.Errorf("%w: %d of %d examples written", ErrShape, w.done, w.n)}
		return w.err
	}
	if err := w.a.Commit(); err != nil {
		w.err = &Error{Path: w.path, Example: -1, Err: err}
		return w.err
	}
	w.err = errors.New("gradients: Writer closed")
	return nil
}

// Abort abandons the file: the path is left as it was.
func (w *Writer) Abort() {
	w.a.Abort()
	if w.err == nil {
		w.err = errors.New("gradients: Writer aborted")
	}
}

// Parse checks the header of a gradient file held in memory, as Open checks
// a file on disk; buf must not change while the File is in use.
func Parse(buf []byte) (*File, error) { return parse(buf, "") }

// NewReader reads the gradient file of size bytes that r holds. The bytes
// are read into memory first (use Open for a file on disk, which maps it),
// after checking size against limit (as for ReadFileLimit: 0 for the
// machine's default, negative for none).
func NewReader(r io.ReaderAt, size int64, limit int64) (*File, error) {
	if size < 0 {
		return nil, &Error{Example: -1, Err: fmt.Errorf("%w: size %d", ErrFormat, size)}
	}
	if err := linalg.CheckMemory("gradient file", fmt.Sprintf("%d bytes", size), size, limit); err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	if _, err := r.ReadAt(buf, 0); err != nil && !(errors.Is(err, io.EOF) && size == 0) {
		return nil, &Error{Example: -1, Err: fmt.Errorf("%w: reading %d bytes: %v", ErrFormat, size, err)}
	}
	return parse(buf, "")
}
