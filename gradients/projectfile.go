package gradients

import (
	"context"
	"fmt"
	"slices"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
)

// ProjectFileOptions configure Projection.ProjectFile.
type ProjectFileOptions struct {
	// Chunk is the number of examples read and projected at a time
	// (256 when zero); the result does not depend on it.
	Chunk int
	// Backend runs the products it can (see ApplyOptions); nil means the host.
	Backend linalg.Backend
	// MemoryLimit bounds, in bytes, the buffers sized from the file's
	// header, all checked before any value is read: a chunk of examples
	// read and projected, and for the dense kinds a
	// factored layer's flattened gradient. 0 means
	// linalg.DefaultMemoryLimit(), a negative value no limit (see
	// linalg.CheckMemory).
	MemoryLimit int64
	// Progress is told of the examples done and their total (stage
	// "project"): after each chunk, and first with none done once the
	// header checks pass (when the file has examples), so that a caller
	// can announce the work only when it starts.
	Progress progress.Func
}

// ProjectFile projects every example of f, a chunk at a time, into a new
// gradient file at path of the given dtype and metadata (as WriteFile
// writes it), each projected chunk written as it comes (Writer): memory
// holds a chunk, never the whole file, and the file appears only once
// complete. Everything that can be told from the header (memory, a dense
// layer given to Kronecker) is checked before any value is read; errors
// name the file and the layer. It returns the layers written.
func (p Projection) ProjectFile(ctx context.Context, f *File, path string, dtype DType, meta map[string]string, opt ProjectFileOptions) ([]LayerInfo, error) {
	switch {
	case opt.Chunk < 0:
		return nil, fmt.Errorf("gradients: ProjectFile: chunk %d < 0", opt.Chunk)
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
	if n > 0 {
		opt.Progress.Report("project", 0, n)
	}
	var w *Writer
	defer func() {
		if w != nil {
			w.Abort() // after Close, a no-op
		}
	}()
	// One pass even with no examples, so that the layers are still written.
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
		if w == nil {
			if w, err = NewWriter(path, n, pb.LayerInfos(), dtype, pb.IDs != nil, meta); err != nil {
				return nil, err
			}
		}
		if err := w.Write(pb); err != nil {
			return nil, err
		}
		opt.Progress.Report("project", hi, n)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return slices.Clone(w.layers), nil
}

// checkFile refuses, from f's header alone, a projection whose chunk of
// projected examples, flattened gradients or chunk of input examples would
// not fit in limit, and a dense layer given to Kronecker.
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
	rows := min(chunk, f.N())
	if err := linalg.CheckMemory(fmt.Sprintf("%s: projected examples", f.path), fmt.Sprintf("%d × %d float64", rows, per/8),
		linalg.Float64Bytes(rows, max(1, int(per/8))), limit); err != nil {
		return err
	}
	return f.CheckRead(0, min(chunk, f.N()), limit)
}
