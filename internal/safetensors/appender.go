package safetensors

import (
	"encoding/binary"
	"fmt"

	"github.com/goinfluence/goinfluence/internal/atomicfile"
)

// Appender writes a safetensors file whose tensors are known by name, dtype
// and shape before their data: the header is written first and each
// tensor's data appended piece by piece, in any interleaving of tensors, so
// that a file larger than memory can be written. The file appears at its
// path, atomically, only when Commit finds every tensor complete; until then
// it is a temporary file beside it, removed by Abort.
type Appender struct {
	f      *atomicfile.File
	names  []string
	start  []int64 // file offset of each tensor's data
	size   []int64 // bytes of each tensor
	filled []int64 // bytes appended to each tensor
	err    error
}

// Create lays out tensors (their Data is not read) and metadata as Write
// would and writes the header to a temporary file beside path.
func Create(path string, tensors []Tensor, metadata map[string]string) (*Appender, error) {
	header, sizes, err := layoutHeader(tensors, metadata)
	if err != nil {
		return nil, err
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	if _, err := f.Write(append(n[:], header...)); err != nil {
		f.Cleanup()
		return nil, err
	}
	a := &Appender{f: f, size: sizes, filled: make([]int64, len(tensors))}
	off := int64(8 + len(header))
	for i, t := range tensors {
		a.names = append(a.names, t.Name)
		a.start = append(a.start, off)
		off += sizes[i]
	}
	return a, nil
}

// Append writes data after what has been appended to tensor i (in the
// order given to Create). Data past the tensor's size is an error.
func (a *Appender) Append(i int, data []byte) error {
	if a.err != nil {
		return a.err
	}
	if i < 0 || i >= len(a.size) {
		return fmt.Errorf("safetensors: append to tensor %d of %d", i, len(a.size))
	}
	if a.filled[i]+int64(len(data)) > a.size[i] {
		return fmt.Errorf("%w: tensor %q: %d bytes appended past its %d", ErrFormat, a.names[i], a.filled[i]+int64(len(data)), a.size[i])
	}
	if _, err := a.f.WriteAt(data, a.start[i]+a.filled[i]); err != nil {
		a.err = err
		return err
	}
	a.filled[i] += int64(len(data))
	return nil
}

// Commit puts the file in place once every tensor has all its bytes; a
// tensor short of them is an error naming it, and the file is not written.
func (a *Appender) Commit() error {
	if a.err != nil {
		a.f.Cleanup()
		return a.err
	}
	for i := range a.size {
		if a.filled[i] != a.size[i] {
			a.f.Cleanup()
			return fmt.Errorf("%w: tensor %q: %d of its %d bytes written", ErrTruncated, a.names[i], a.filled[i], a.size[i])
		}
	}
	return a.f.Commit()
}

// Abort removes the temporary file; the path is left as it was. It is safe
// after Commit, which it then leaves alone.
func (a *Appender) Abort() { a.f.Cleanup() }
