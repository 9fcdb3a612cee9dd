package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

func runProject(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("project", stderr)
	grads := fs.String("grads", "", "gradient file to project (required)")
	pf := addProjectionFlags(fs, "none: required here")
	out := fs.String("out", "", "write the projected gradients to this safetensors file (required)")
	dtype := fs.String("dtype", "f32", "element type of the file: f32, f64, f16 or bf16")
	chunk := fs.Int("chunk", 256, "examples read at a time (bounds memory; results do not depend on it)")
	mem := addMemLimit(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *grads == "" || *out == "":
		return fmt.Errorf("%w: project needs --grads and --out", errUsage)
	case *pf.kind == "" || strings.EqualFold(*pf.kind, "none"):
		return fmt.Errorf("%w: project: --kind is required (rademacher, sjlt, gaussian or kronecker)", errUsage)
	case *chunk < 1:
		return fmt.Errorf("%w: project: --chunk must be at least 1", errUsage)
	}
	if err := checkOutputs("project", paths("--out", *out), paths("--grads", *grads)); err != nil {
		return err
	}
	dt := gradients.DType(strings.ToUpper(*dtype))
	switch dt {
	case gradients.F32, gradients.F64, gradients.F16, gradients.BF16:
	default:
		return fmt.Errorf("%w: project: --dtype %q: want f32, f64, f16 or bf16", errUsage, *dtype)
	}
	p, err := pf.spec("project")
	if err != nil {
		return err
	}
	kind := p.Kind
	meta := map[string]string{}
	if kind == gradients.Kronecker {
		meta["projection_k_in"], meta["projection_k_out"] = strconv.Itoa(p.KIn), strconv.Itoa(p.KOut)
	} else {
		meta["projection_k"] = strconv.Itoa(p.K)
	}

	f, err := gradients.Open(*grads)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := checkProjectMemory(f, *grads, p, *chunk, mem.bytes()); err != nil {
		return err
	}
	if kind == gradients.Kronecker {
		// Caught here from the header, before any value is read.
		for _, l := range f.Layers() {
			if !l.Factored {
				return fmt.Errorf("project: %s: layer %q is dense (grad of dimension %d), but kronecker needs factored layers (a and s)", *grads, l.Name, l.D)
			}
		}
	}
	progress := newProgress(stderr)
	n := f.N()
	tick := progress.counter(fmt.Sprintf("project %s: %d examples of %s", kind, n, *grads))
	var res *gradients.Batch
	// One pass even with no examples, so that the layers are still written.
	for lo := 0; lo == 0 || lo < n; lo += *chunk {
		hi := min(n, lo+*chunk)
		b, err := f.Read(lo, hi)
		if err != nil {
			return err
		}
		pb, err := p.ApplyOn(ctx, linalg.Default(), b)
		if err != nil {
			return fmt.Errorf("project %s: %w", *grads, err)
		}
		res = appendBatch(res, pb, n)
		tick(hi, n)
	}
	inDim := 0
	for _, l := range f.Layers() {
		inDim += l.D
	}

	// The source's provenance (checkpoint, dataset…) still describes the
	// examples; format and layers are set by WriteFile.
	md := f.Metadata()
	maps.Copy(md, meta)
	md["projection"] = kind.String()
	md["projection_seed"] = strconv.FormatInt(int64(p.Seed), 10)
	md["projection_rng"] = "philox4x32-10, stream = layer<<2|role"
	md["projection_source"] = *grads
	if err := gradients.WriteFile(*out, res, dt, md); err != nil {
		return err
	}
	progress.stage(fmt.Sprintf("wrote %s: %d examples, %d layers, %d → %d dimensions, %s projection, %s",
		*out, res.N, len(res.Layers), inDim, res.Dim(), kind, dt))
	return nil
}

// appendBatch appends the examples of b to acc (nil for the first), sizing
// acc's slices for n examples in all.
func appendBatch(acc, b *gradients.Batch, n int) *gradients.Batch {
	grow := func(v []float64) []float64 {
		if b.N == 0 {
			return make([]float64, 0)
		}
		return make([]float64, 0, len(v)/b.N*n)
	}
	if acc == nil {
		acc = &gradients.Batch{Layers: make([]gradients.Layer, len(b.Layers))}
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
