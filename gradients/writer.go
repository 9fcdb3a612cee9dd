package gradients

import (
	"errors"
	"fmt"
	"io"

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
	tensors, md, err := fileLayout(n, layers, dtype, withIDs, meta)
	if err != nil {
		return nil, withPath(err, path)
	}
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
	pieces, err := encodeBatch(b, w.dtype, w.ids, w.done)
	if err != nil {
		return withPath(err, w.path)
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

// withPath names path in err when it is an *Error.
func withPath(err error, path string) error {
	var e *Error
	if errors.As(err, &e) {
		e.Path = path
	}
	return err
}
