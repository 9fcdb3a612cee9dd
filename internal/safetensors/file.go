package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/edsrzf/mmap-go"
)

// MaxHeader is the largest accepted JSON header, in bytes, as in the
// reference implementation; it bounds the memory a hostile file can claim.
const MaxHeader = 100_000_000

// metadataKey is the header entry holding string metadata, not a tensor.
const metadataKey = "__metadata__"

// Sentinel causes, matched with errors.Is.
var (
	ErrTruncated = errors.New("safetensors: truncated file")
	ErrFormat    = errors.New("safetensors: malformed file")
	ErrDType     = errors.New("safetensors: unsupported dtype")
)

// Info locates one tensor: Begin and End are byte offsets into the data
// buffer, which follows the header.
type Info struct {
	Name       string
	DType      DType
	Shape      []int
	Begin, End int64
}

// Len returns the number of elements, the product of the shape.
func (in Info) Len() int {
	if in.DType.Size() == 0 {
		return 0
	}
	return int(in.End-in.Begin) / in.DType.Size()
}

// File is a parsed safetensors file. Its tensors alias the parsed buffer.
type File struct {
	// Metadata is the header's "__metadata__" map, nil when absent.
	Metadata map[string]string

	buf   []byte // the whole file: header length, header and data
	data  []byte // the data buffer, after the header
	infos []Info // sorted by offset, then name
	index map[string]int
	mm    mmap.MMap
}

// Parse parses a safetensors file held in buf without copying tensor data:
// slices returned by Bytes alias buf.
func Parse(buf []byte) (*File, error) {
	if len(buf) < 8 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the 8-byte header length", ErrTruncated, len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	if n > MaxHeader {
		return nil, fmt.Errorf("%w: header length %d exceeds %d", ErrFormat, n, MaxHeader)
	}
	if n > uint64(len(buf)-8) {
		return nil, fmt.Errorf("%w: header length %d but only %d bytes follow", ErrTruncated, n, len(buf)-8)
	}
	f := &File{buf: buf, data: buf[8+n:]}
	if err := f.parseHeader(buf[8 : 8+n]); err != nil {
		return nil, err
	}
	return f, nil
}

// rawInfo is one tensor's header entry; pointers tell absent fields apart.
type rawInfo struct {
	DType   *string  `json:"dtype"`
	Shape   *[]int64 `json:"shape"`
	Offsets *[]int64 `json:"data_offsets"`
}

func (f *File) parseHeader(h []byte) error {
	dec := json.NewDecoder(bytes.NewReader(h))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("%w: header is not a JSON object", ErrFormat)
	}
	f.index = map[string]int{}
	seenMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: header JSON: %v", ErrFormat, err)
		}
		name, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%w: header JSON: key %v is not a string", ErrFormat, tok)
		}
		if _, dup := f.index[name]; dup || (name == metadataKey && seenMeta) {
			return fmt.Errorf("%w: duplicate header entry %q", ErrFormat, name)
		}
		if name == metadataKey {
			seenMeta = true
			if err := dec.Decode(&f.Metadata); err != nil {
				return fmt.Errorf("%w: %s must map strings to strings: %v", ErrFormat, metadataKey, err)
			}
			continue
		}
		var raw rawInfo
		var msg json.RawMessage
		if err := dec.Decode(&msg); err != nil {
			return fmt.Errorf("%w: header JSON: tensor %q: %v", ErrFormat, name, err)
		}
		d := json.NewDecoder(bytes.NewReader(msg))
		d.DisallowUnknownFields()
		if err := d.Decode(&raw); err != nil {
			return fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		info, err := checkInfo(name, raw)
		if err != nil {
			return err
		}
		f.index[name] = len(f.infos)
		f.infos = append(f.infos, info)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fmt.Errorf("%w: header JSON: %v", ErrFormat, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the header JSON object", ErrFormat)
	}
	return f.checkLayout()
}

// checkInfo validates one entry on its own: dtype, shape and byte count.
func checkInfo(name string, raw rawInfo) (Info, error) {
	info := Info{Name: name}
	switch {
	case raw.DType == nil:
		return info, fmt.Errorf("%w: tensor %q has no dtype", ErrFormat, name)
	case raw.Shape == nil:
		return info, fmt.Errorf("%w: tensor %q has no shape", ErrFormat, name)
	case raw.Offsets == nil:
		return info, fmt.Errorf("%w: tensor %q has no data_offsets", ErrFormat, name)
	}
	info.DType = DType(*raw.DType)
	size := info.DType.Size()
	if size == 0 {
		return info, fmt.Errorf("%w: tensor %q has dtype %q", ErrDType, name, *raw.DType)
	}
	count, err := numElements(*raw.Shape)
	if err != nil {
		return info, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
	}
	info.Shape = make([]int, len(*raw.Shape))
	for i, d := range *raw.Shape {
		info.Shape[i] = int(d)
	}
	off := *raw.Offsets
	if len(off) != 2 {
		return info, fmt.Errorf("%w: tensor %q: data_offsets has %d entries, want 2", ErrFormat, name, len(off))
	}
	info.Begin, info.End = off[0], off[1]
	if info.Begin < 0 || info.End < info.Begin {
		return info, fmt.Errorf("%w: tensor %q: invalid data_offsets [%d, %d]", ErrFormat, name, info.Begin, info.End)
	}
	if count > math.MaxInt64/int64(size) || info.End-info.Begin != count*int64(size) {
		return info, fmt.Errorf("%w: tensor %q: %d bytes for shape %v of %s", ErrFormat, name, info.End-info.Begin, info.Shape, info.DType)
	}
	return info, nil
}

// numElements returns the product of shape, rejecting negative dimensions
// and products that overflow int.
func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || d > math.MaxInt {
			return 0, fmt.Errorf("invalid dimension %d in shape %v", d, shape)
		}
		if d == 0 {
			n = 0
		}
	}
	if n == 0 {
		return 0, nil
	}
	for _, d := range shape {
		if n > math.MaxInt/d {
			return 0, fmt.Errorf("shape %v has too many elements", shape)
		}
		n *= d
	}
	return n, nil
}

// checkLayout requires the tensors to tile the data buffer exactly, as the
// reference implementation does: no gap, no overlap, nothing left over.
func (f *File) checkLayout() error {
	slices.SortFunc(f.infos, func(a, b Info) int {
		if a.Begin != b.Begin {
			return cmpInt64(a.Begin, b.Begin)
		}
		if a.End != b.End {
			return cmpInt64(a.End, b.End)
		}
		return strings.Compare(a.Name, b.Name)
	})
	var end int64
	for i, in := range f.infos {
		f.index[in.Name] = i
		switch {
		case in.Begin < end:
			return fmt.Errorf("%w: tensor %q at [%d, %d] overlaps %q", ErrFormat, in.Name, in.Begin, in.End, f.infos[i-1].Name)
		case in.Begin > end:
			return fmt.Errorf("%w: gap in the data buffer at [%d, %d] before tensor %q", ErrFormat, end, in.Begin, in.Name)
		case in.End > int64(len(f.data)):
			return fmt.Errorf("%w: tensor %q ends at byte %d of a %d-byte data buffer", ErrTruncated, in.Name, in.End, len(f.data))
		}
		end = in.End
	}
	if end != int64(len(f.data)) {
		return fmt.Errorf("%w: %d bytes after the last tensor", ErrFormat, int64(len(f.data))-end)
	}
	return nil
}

func cmpInt64(a, b int64) int {
	if a < b {
		return -1
	}
	return 1
}

// Open memory-maps the file at path, falling back to reading it into memory
// where mapping fails, and parses it. Errors are *fs.PathError. Call Close
// when done.
func Open(path string) (*File, error) {
	mm, buf, err := load(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(buf)
	if err != nil {
		if mm != nil {
			mm.Unmap()
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f.mm = mm
	return f, nil
}

func load(path string) (mmap.MMap, []byte, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.Mode().IsRegular() && st.Size() > 0 && st.Size() <= math.MaxInt {
		if mm, err := mmap.Map(fd, mmap.RDONLY, 0); err == nil {
			return mm, mm, nil
		}
	}
	buf, err := io.ReadAll(fd)
	return nil, buf, err
}

// Close releases the file's memory mapping, if any. Slices returned by Bytes
// must not be used afterwards.
func (f *File) Close() error {
	f.buf, f.data = nil, nil
	if f.mm == nil {
		return nil
	}
	err := f.mm.Unmap()
	f.mm = nil
	return err
}

// Whole returns the whole file as parsed or mapped, header included, so
// that a checksum of the file can be taken over the very bytes the tensors
// alias. It is nil once the file is closed and must not be modified.
func (f *File) Whole() []byte { return f.buf }

// Names returns the tensor names in the order of their data.
func (f *File) Names() []string {
	names := make([]string, len(f.infos))
	for i, in := range f.infos {
		names[i] = in.Name
	}
	return names
}

// Info returns the description of the named tensor.
func (f *File) Info(name string) (Info, bool) {
	i, ok := f.index[name]
	if !ok {
		return Info{}, false
	}
	in := f.infos[i]
	in.Shape = slices.Clone(in.Shape)
	return in, true
}

// Bytes returns the raw little-endian data of the named tensor, aliasing the
// parsed buffer, or nil if there is no such tensor or the file is closed.
func (f *File) Bytes(name string) []byte {
	i, ok := f.index[name]
	if !ok || f.data == nil {
		return nil
	}
	in := f.infos[i]
	return f.data[in.Begin:in.End:in.End]
}

// Float64s returns the values of a float tensor converted to float64.
func (f *File) Float64s(name string) ([]float64, error) {
	in, b, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !in.DType.IsFloat() {
		return nil, fmt.Errorf("%w: tensor %q has dtype %s, want a float dtype", ErrDType, name, in.DType)
	}
	v := make([]float64, in.Len())
	return v, DecodeFloat64s(v, in.DType, b)
}

// Int64s returns the values of an integer tensor converted to int64.
func (f *File) Int64s(name string) ([]int64, error) {
	in, b, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !in.DType.IsInt() {
		return nil, fmt.Errorf("%w: tensor %q has dtype %s, want an integer dtype", ErrDType, name, in.DType)
	}
	v := make([]int64, in.Len())
	if err := DecodeInt64s(v, in.DType, b); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return v, nil
}

func (f *File) lookup(name string) (Info, []byte, error) {
	i, ok := f.index[name]
	if !ok {
		return Info{}, nil, fmt.Errorf("safetensors: no tensor %q", name)
	}
	if f.data == nil && f.infos[i].End > 0 {
		return Info{}, nil, fmt.Errorf("safetensors: tensor %q read after Close", name)
	}
	in := f.infos[i]
	return in, f.Bytes(name), nil
}
