package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/progress"
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
	prog := progress.New(stderr)
	var tick func(done, total int)
	announce := func(_ string, done, total int) { // once the header checks pass
		if tick == nil {
			tick = prog.Counter(fmt.Sprintf("project %s: %d examples of %s", kind, total, *grads))
		}
		tick(done, total)
	}
	// The source's provenance (checkpoint, dataset…) still describes the
	// examples; format and layers are set by the writer.
	md := f.Metadata()
	maps.Copy(md, meta)
	md["projection"] = kind.String()
	md["projection_seed"] = strconv.FormatInt(int64(p.Seed), 10)
	md["projection_rng"] = "philox4x32-10, stream = layer<<2|role"
	md["projection_source"] = *grads
	layers, err := p.ProjectFile(ctx, f, *out, dt, md,
		gradients.ProjectFileOptions{Chunk: *chunk, Backend: linalg.Default(), MemoryLimit: mem.bytes(), Progress: announce})
	if err != nil {
		if errors.Is(err, linalg.ErrMemoryLimit) {
			return withMemFlag("project", err)
		}
		return fmt.Errorf("project: %w", err)
	}
	inDim, outDim := 0, 0
	for _, l := range f.Layers() {
		inDim += l.D
	}
	for _, l := range layers {
		outDim += l.D
	}
	prog.Stage(fmt.Sprintf("wrote %s: %d examples, %d layers, %d → %d dimensions, %s projection, %s",
		*out, f.N(), len(layers), inDim, outDim, kind, dt))
	return nil
}
