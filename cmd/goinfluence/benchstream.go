package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/goinfluence/goinfluence/bench"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/atomicfile"
)

// runBenchStream is 'goinfluence bench stream': see bench.Stream.
func runBenchStream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench stream", stderr)
	rows := fs.Int("rows", 200000, "store rows")
	dim := fs.Int("dim", 4096, "row dimension")
	nq := fs.Int("queries", 512, "queries")
	topk := fs.Int("topk", 50, "helpful and harmful entries kept per query")
	dtype := fs.String("dtype", "f16", "store dtype: f16, bf16 or f32")
	chunk := fs.Int("chunk", influence.DefaultChunkRows, "store rows per chunk")
	dir := fs.String("dir", "", "store directory, reused when it holds a store of the same shape (default: a temporary directory, removed after)")
	backend := fs.String("backend", "auto", "backend: auto, cpu or openblas")
	asJSON := fs.Bool("json", false, "print JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the stream (not the build or the yardstick) to `file`")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rows < 1 || *dim < 1 || *nq < 1 || *topk < 0 || *chunk < 1 {
		return fmt.Errorf("%w: bench stream: sizes must be positive", errUsage)
	}
	dt := gradients.DType(strings.ToUpper(*dtype))
	if dt.Size() == 0 {
		return fmt.Errorf("%w: bench stream: --dtype %q, want f16, bf16 or f32", errUsage, *dtype)
	}
	var storeDir []atomicfile.Path
	if *dir != "" {
		storeDir = storeDirFiles("--dir", *dir)
	}
	if err := checkOutputs("bench stream", paths("--cpuprofile", *cpuProfile), storeDir); err != nil {
		return err
	}
	be, err := openBackend(*backend)
	if err != nil {
		return err
	}
	opt := bench.StreamOptions{Backend: be, Rows: *rows, Dim: *dim, Queries: *nq, TopK: *topk,
		DType: dt, ChunkRows: *chunk, Dir: *dir, Progress: stderr}
	var res *bench.StreamResult
	if err := withProfile(*cpuProfile, func(prof io.Writer) (err error) {
		opt.CPUProfile = prof
		res, err = bench.Stream(ctx, opt)
		return err
	}); err != nil {
		return err
	}
	return printBench(stdout, *asJSON, res)
}

// withProfile runs run with a writer for a CPU profile to path, created
// atomically and kept only when run succeeds; with no path, a nil writer.
func withProfile(path string, run func(prof io.Writer) error) error {
	if path == "" {
		return run(nil)
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	defer f.Cleanup() // unless committed below
	if err := run(f); err != nil {
		return err
	}
	return f.Commit()
}
