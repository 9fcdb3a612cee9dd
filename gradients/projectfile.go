package gradients

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/linalg"
)

// ProjectFileOptions configure Projection.ApplyFile.
type ProjectFileOptions struct {
	// Chunk is the number of examples read and projected at a time
	// (256 when zero); the result does not depend on it.
	Chunk int
	// Backend runs the products it can (see ApplyOn); nil means the host.
	Backend linalg.Backend
	// MemoryLimit bounds, in bytes, the buffers sized from the file's
	// header, all checked before any value is read: the projected examples
	// (held whole), a chunk of examples read, and for the dense kinds a
	// factored layer's flattened gradient. 0 means
	// linalg.DefaultMemoryLimit(), a negative value no limit (see
	// linalg.CheckMemory).
	MemoryLimit int64
	// Progress, when set, is called with the examples done and their
	// total: after each chunk, and first with none done once the header
	// checks pass (when the file has examples), so that a caller can
	// announce the work only when it starts.
	Progress func(done, total int)
}

// ApplyFile projects every example of f, a chunk at a time, into one
// Batch, as Apply would project them all at once. Everything that can be
// told from the header (memory, a dense layer given to Kronecker) is
// checked before any value is read, so that a file too large for the
// machine is refused in a moment instead of killing the process; errors
// name the file and the layer.
func (p Projection) ApplyFile(ctx context.Context, f *File, opt ProjectFileOptions) (*Batch, error) {
	switch {
	case opt.Chunk < 0:
		return nil, fmt.Errorf("gradients: ApplyFile: chunk %d < 0", opt.Chunk)
	case opt.Chunk == 0:
		opt.Chunk = 256
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if err := p.checkFile(f, opt.Chunk, opt.MemoryLimit); err != nil {
		return nil, err
	}
	n := f.N()
	if opt.Progress != nil && n > 0 {
		opt.Progress(0, n)
	}
	var res *Batch
	// One pass even with no examples, so that the layers are still there.
	for lo := 0; lo == 0 || lo < n; lo += opt.Chunk {
		hi := min(n, lo+opt.Chunk)
		b, err := f.Read(lo, hi)
		if err != nil {
			return nil, err
		}
		pb, err := p.ApplyWith(ctx, b, ApplyOptions{Backend: opt.Backend, MemoryLimit: opt.MemoryLimit})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.path, err)
		}
		res = appendBatch(res, pb, n)
		if opt.Progress != nil {
			opt.Progress(hi, n)
		}
	}
	return res, nil
}

// checkFile refuses, from f's header alone, a projection whose projected
// examples (held whole), flattened gradients or chunk of input examples
// would not fit in limit, and a dense layer given to Kronecker.
func (p Projection) checkFile(f *File, chunk int, limit int64) error {
	var per int64
	for _, l := range f.layers {
		if p.Kind == Kronecker {
			if !l.Factored {
				return fmt.Errorf("%s: layer %q is dense (grad of dimension %d), but kronecker needs factored layers (a and s)", f.path, l.Name, l.D)
			}
			per = linalg.AddBytes(per, linalg.Float64Bytes(l.Tokens, p.KIn), linalg.Float64Bytes(l.Tokens, p.KOut))
		} else {
			per = linalg.AddBytes(per, linalg.Float64Bytes(p.K))
		}
	}
	for _, l := range f.layers {
		if p.Kind != Kronecker && l.Factored {
			// The dense projections flatten an example to DOut × DIn.
			if err := linalg.CheckMemory(fmt.Sprintf("%s: layer %s: flattened gradient", f.path, l.Name),
				fmt.Sprintf("%d × %d float64", l.DOut, l.DIn), linalg.Float64Bytes(l.DOut, l.DIn), limit); err != nil {
				return err
			}
		}
	}
	if err := linalg.CheckMemory(fmt.Sprintf("%s: projected examples", f.path), fmt.Sprintf("%d × %d float64", f.N(), per/8),
		linalg.Float64Bytes(f.N(), max(1, int(per/8))), limit); err != nil {
		return err
	}
	return f.CheckRead(0, min(chunk, f.N()), limit)
}

// appendBatch appends the examples of b to acc (nil for the first), sizing
// acc's slices for n examples in all.
func appendBatch(acc, b *Batch, n int) *Batch {
	grow := func(v []float64) []float64 {
		if b.N == 0 {
			return make([]float64, 0)
		}
		return make([]float64, 0, len(v)/b.N*n)
	}
	if acc == nil {
		acc = &Batch{Layers: make([]Layer, len(b.Layers))}
		if b.IDs != nil {
			acc.IDs = make([]int64, 0, n)
		}
		for i, l := range b.Layers {
			if l.Factored() {
				l.A, l.S = grow(l.A), grow(l.S)
			} else {
				l.Grad = grow(l.Grad)
			}
			acc.Layers[i] = l
		}
	}
	acc.N += b.N
	if b.IDs != nil {
		acc.IDs = append(acc.IDs, b.IDs...)
	}
	for i := range b.Layers {
		dst, src := &acc.Layers[i], &b.Layers[i]
		if src.Factored() {
			dst.A = append(dst.A, src.A...)
			dst.S = append(dst.S, src.S...)
		} else {
			dst.Grad = append(dst.Grad, src.Grad...)
		}
	}
	return acc
}
