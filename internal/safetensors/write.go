package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/goinfluence/goinfluence/internal/atomicfile"
)

// Tensor is a tensor to write: Data holds its little-endian values.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Write writes tensors, laid out in the given order, and metadata in
// safetensors format. Everything is validated before the first byte is
// written.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	header, err := encodeHeader(tensors, metadata)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(header); err != nil {
		return err
	}
	for _, t := range tensors {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// encodeHeader returns the JSON header padded with spaces to a multiple of 8
// bytes, checking that each tensor's data fits its shape. Metadata keys are
// sorted so that equal inputs give equal files.
func encodeHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	header, sizes, err := layoutHeader(tensors, metadata)
	if err != nil {
		return nil, err
	}
	for i, t := range tensors {
		if sizes[i] != int64(len(t.Data)) {
			return nil, fmt.Errorf("%w: tensor %q: %d bytes for shape %v of %s", ErrFormat, t.Name, len(t.Data), t.Shape, t.DType)
		}
	}
	return header, nil
}

// layoutHeader returns the header of tensors of the given names, dtypes and
// shapes, their data laid out in order, and the byte size of each; Data is
// not read.
func layoutHeader(tensors []Tensor, metadata map[string]string) ([]byte, []int64, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	sep := func() {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, nil, fmt.Errorf("%w: metadata %q: %q is not valid UTF-8", ErrFormat, k, v)
		}
	}
	if len(metadata) > 0 {
		writeString(&buf, metadataKey)
		buf.WriteString(":{")
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(&buf, k)
			buf.WriteByte(':')
			writeString(&buf, metadata[k])
		}
		buf.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	sizes := make([]int64, 0, len(tensors))
	var off int64
	for _, t := range tensors {
		if t.Name == metadataKey {
			return nil, nil, fmt.Errorf("%w: tensor name %q is reserved", ErrFormat, t.Name)
		}
		if !utf8.ValidString(t.Name) {
			// JSON would silently replace the bad bytes.
			return nil, nil, fmt.Errorf("%w: tensor name %q is not valid UTF-8", ErrFormat, t.Name)
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("%w: duplicate tensor %q", ErrFormat, t.Name)
		}
		seen[t.Name] = true
		size := t.DType.Size()
		if size == 0 {
			return nil, nil, fmt.Errorf("%w: tensor %q has dtype %q", ErrDType, t.Name, t.DType)
		}
		shape := make([]int64, len(t.Shape))
		for i, d := range t.Shape {
			shape[i] = int64(d)
		}
		count, err := numElements(shape)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, t.Name, err)
		}
		if count > math.MaxInt64/int64(size) {
			return nil, nil, fmt.Errorf("%w: tensor %q: shape %v of %s overflows", ErrFormat, t.Name, t.Shape, t.DType)
		}
		sizes = append(sizes, count*int64(size))
		sep()
		writeString(&buf, t.Name)
		fmt.Fprintf(&buf, `:{"dtype":"%s","shape":[`, t.DType)
		for i, d := range t.Shape {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(strconv.Itoa(d))
		}
		end := off + sizes[len(sizes)-1]
		fmt.Fprintf(&buf, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	return buf.Bytes(), sizes, nil
}

// writeString writes s as a JSON string.
func writeString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always marshals
	buf.Write(b)
}

// WriteFile writes tensors and metadata to path atomically (see package
// atomicfile): a failure leaves any existing file at path untouched.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	if _, err := encodeHeader(tensors, metadata); err != nil {
		return err // fail before creating anything
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		return Write(w, tensors, metadata)
	})
}
