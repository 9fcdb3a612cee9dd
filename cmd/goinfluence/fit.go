package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/internal/progress"
	"github.com/goinfluence/goinfluence/linalg"
)

// pathList is a flag that may be repeated or given as a comma-separated list.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*p = append(*p, s)
		}
	}
	return nil
}

func runFit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fit", stderr)
	var grads pathList
	fs.Var(&grads, "grads", "gradient file(s) of the fit set (repeat the flag or separate with commas); sampled labels give the true Fisher")
	method := fs.String("method", "ekfac", "curvature: ekfac, kfac, diagonal or identity")
	out := fs.String("out", "", "factors file to write (safetensors)")
	chunk := fs.Int("chunk", 0, "examples read at a time (bounds memory; 0: as many as 64 MiB of float64 values hold); the factors differ between chunk sizes by rounding only")
	backend := fs.String("backend", "auto", "linear-algebra backend: auto, cpu, openblas or cuda")
	precisionFlag := fs.String("precision", "f64", "products of the covariance and Λ passes in f64 or f32 (f32: float32 GEMMs added into float64 sums; eigendecompositions and the factors file stay f64). f64 is the default: factors that do not depend on the BLAS kernel beyond float64 rounding; f32 is several times faster and within 1e-4 relative")
	mem := addMemLimit(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(grads) == 0 || *out == "" {
		return fmt.Errorf("%w: fit needs --grads and --out", errUsage)
	}
	if err := checkOutputs("fit", paths("--out", *out), paths("--grads", grads...)); err != nil {
		return err
	}
	m, err := ekfac.ParseMethod(*method)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *chunk < 0 {
		return fmt.Errorf("%w: fit: --chunk must be 0 (by size) or at least 1", errUsage)
	}
	precision, err := ekfac.ParsePrecision(*precisionFlag)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	be, err := openBackend(*backend)
	if err != nil {
		return err
	}
	start := time.Now()
	prog := progress.New(stderr)
	last := ""
	f, err := ekfac.FitWithOptions(ctx, m, be, ekfac.FileSourceLimit(*chunk, mem.bytes(), grads...), ekfac.FitOptions{
		MemoryLimit: mem.bytes(),
		Precision:   precision,
		Progress: func(stage string, _, _ int) {
			if stage != last {
				prog.Stage(fmt.Sprintf("fit %s: %s", m, stage))
				last = stage
			}
		},
	})
	if err != nil {
		return withMemFlag("fit", err)
	}
	f.Meta = map[string]string{
		"grads":   grads.String(),
		"backend": be.Name(),
		"created": time.Now().UTC().Format(time.RFC3339),
	}
	if precision == ekfac.F32 {
		// Only f32 is recorded, so that f64 files are what they were.
		f.Meta["precision"] = precision.String()
	}
	if err := f.Save(*out); err != nil {
		return err
	}
	prog.Stage(fmt.Sprintf("fit %s: %d examples, %d layers, %.1f s on %s; wrote %s",
		m, f.N, len(f.Layers), time.Since(start).Seconds(), be.Name(), *out))
	return nil
}

// openBackend opens a backend by name; "auto" (or "") picks the best
// present, honouring GOINFLUENCE_BACKEND.
func openBackend(name string) (linalg.Backend, error) {
	if name == "" || name == "auto" {
		return linalg.Auto()
	}
	be, err := linalg.Open(name)
	if err != nil {
		return nil, fmt.Errorf("--backend %s: %w", name, err)
	}
	return be, nil
}
