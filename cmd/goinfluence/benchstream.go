package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/atomicfile"
	"github.com/goinfluence/goinfluence/linalg"
)

// streamBench is the outcome of 'goinfluence bench stream'.
type streamBench struct {
	Date      string `json:"date"`
	CPUs      int    `json:"cpus"`
	Backend   string `json:"backend"`
	Rows      int    `json:"rows"`
	Dim       int    `json:"dim"`
	Queries   int    `json:"queries"`
	TopK      int    `json:"topk"`
	DType     string `json:"dtype"`
	ChunkRows int    `json:"chunk_rows"`

	StoreBytes   int64   `json:"store_bytes"`
	MemTotal     int64   `json:"mem_total_bytes"`
	StoreFitsRAM bool    `json:"store_fits_in_ram"` // the page cache was not dropped
	Reused       bool    `json:"reused_store"`
	BuildSecs    float64 `json:"build_seconds"` // not part of the stream timing

	StreamSecs float64 `json:"stream_seconds"` // without checking the shards' sha256
	// StreamVerifySecs is the same stream, run after the other, on the store
	// opened again with the default checks: each shard hashed before use.
	StreamVerifySecs float64   `json:"stream_verify_seconds"`
	VerifyCost       float64   `json:"verify_cost"`   // stream_verify_seconds / stream_seconds − 1
	StreamGFLOPS     float64   `json:"stream_gflops"` // 2·rows·queries·dim / stream_seconds
	SgemmSecs        float64   `json:"sgemm_seconds"` // the yardstick: the same products from memory
	SgemmGFLOPS      float64   `json:"sgemm_gflops"`
	SgemmRuns        []float64 `json:"sgemm_runs_gflops"` // before and after the stream; the best is the yardstick
	Ratio            float64   `json:"ratio"`             // stream_gflops / sgemm_gflops

	PeakRSS     int64  `json:"peak_rss_bytes"` // VmHWM over the stream
	PeakRSSNote string `json:"peak_rss_note"`
}

// runBenchStream times influence.StreamScores over a store of random rows and,
// in the same run, the backend's Sgemm on the same products from an in-memory
// float32 buffer: the rate a perfect stream would reach. The store is built
// first (its time reported apart) or reused from --dir.
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
	dt := store.DType(*dtype)
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
	res := streamBench{
		Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Backend: be.Name(),
		Rows: *rows, Dim: *dim, Queries: *nq, TopK: *topk, DType: string(dt), ChunkRows: *chunk,
	}

	path := *dir
	if path == "" {
		tmp, err := os.MkdirTemp("", "goinfluence-bench-stream-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		path = filepath.Join(tmp, "store")
	}
	s, reused, buildSecs, err := benchStore(ctx, path, dt, *rows, *dim, stderr)
	if err != nil {
		return err
	}
	defer s.Close()
	res.Reused, res.BuildSecs = reused, buildSecs
	res.StoreBytes = dirBytes(path)
	res.MemTotal = meminfo("MemTotal")
	res.StoreFitsRAM = res.MemTotal > 0 && res.StoreBytes < res.MemTotal

	q := linalg.NewDense32(*nq, *dim, nil)
	fillUniform(q.Data, rand.New(rand.NewPCG(2, 0)))
	flops := linalg.GemmFlops(*nq, *rows, *dim)

	// The yardstick is measured before and after the stream and the faster
	// run kept, so that the ratio does not flatter the stream.
	fmt.Fprintf(stderr, "yardstick: %s Sgemm %d×%d×%d over %d rows from memory\n", be.Name(), *nq, min(yardRows, *rows), *dim, *rows)
	yard := func() float64 {
		secs := sgemmYardstick(be, q, *rows)
		res.SgemmRuns = append(res.SgemmRuns, flops/secs/1e9)
		if res.SgemmSecs == 0 || secs < res.SgemmSecs {
			res.SgemmSecs = secs
		}
		return secs
	}
	yard()
	if err := ctx.Err(); err != nil {
		return err
	}

	// Measure the peak RSS of the stream alone: return the yardstick's
	// buffers and reset the high-water mark (Linux ≥ 4.0).
	runtime.GC()
	debug.FreeOSMemory()
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	fmt.Fprintf(stderr, "streaming %d queries against %d rows, top-%d, chunks of %d\n", *nq, *rows, *topk, *chunk)
	var prof *atomicfile.File
	if *cpuProfile != "" {
		prof, err = atomicfile.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer prof.Cleanup() // unless committed below
		if err := pprof.StartCPUProfile(prof); err != nil {
			return err
		}
	}
	// The timed stream skips the checksums, as the earlier results did; the
	// verified stream follows.
	ns, err := store.OpenWith(path, store.OpenOptions{NoVerify: true})
	if err != nil {
		return err
	}
	defer ns.Close()
	sr, err := influence.StreamScores(ctx, be, q, ns, influence.StreamOptions{TopK: *topk, ChunkRows: *chunk})
	if prof != nil {
		pprof.StopCPUProfile()
		if err == nil {
			err = prof.Commit()
		}
	}
	if err != nil {
		return err
	}
	res.PeakRSS = procStatus("VmHWM")
	if hwmReset {
		res.PeakRSSNote = "VmHWM reset before the stream: the stream's peak, with the process's other live memory (queries, runtime) and the touched pages of the mapped shard"
	} else {
		res.PeakRSSNote = "VmHWM over the whole process (could not reset it): includes the store build and the yardstick"
	}
	res.StreamSecs = sr.Seconds
	res.StreamGFLOPS = flops / sr.Seconds / 1e9
	if sr.Rows != *rows {
		return fmt.Errorf("bench stream: scored %d rows, the store has %d", sr.Rows, *rows)
	}
	fmt.Fprintf(stderr, "streaming again, checking each shard's sha256 before use\n")
	vs, err := store.Open(path)
	if err != nil {
		return err
	}
	defer vs.Close()
	vr, err := influence.StreamScores(ctx, be, q, vs, influence.StreamOptions{TopK: *topk, ChunkRows: *chunk})
	if err != nil {
		return err
	}
	res.StreamVerifySecs = vr.Seconds
	res.VerifyCost = vr.Seconds/sr.Seconds - 1

	yard()
	res.SgemmGFLOPS = flops / res.SgemmSecs / 1e9
	res.Ratio = res.StreamGFLOPS / res.SgemmGFLOPS

	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	gb := func(b int64) float64 { return float64(b) / (1 << 30) }
	fmt.Fprintf(stdout, "StreamScores: %d queries × %d rows × %d (%s store, %.2f GiB, %s), top-%d, chunks of %d; backend %s, %d CPUs\n",
		*nq, *rows, *dim, dt, gb(res.StoreBytes), map[bool]string{true: "fits in RAM, page cache not dropped", false: "larger than RAM"}[res.StoreFitsRAM],
		*topk, *chunk, be.Name(), res.CPUs)
	if res.Reused {
		fmt.Fprintf(stdout, "store reused from %s\n", path)
	} else {
		fmt.Fprintf(stdout, "store built in %.1f s (not timed below)\n", res.BuildSecs)
	}
	fmt.Fprintf(stdout, "%-28s %9s %9s\n", "", "time s", "GFLOP/s")
	fmt.Fprintf(stdout, "%-28s %9.2f %9.1f\n", "StreamScores (end to end)", res.StreamSecs, res.StreamGFLOPS)
	fmt.Fprintf(stdout, "%-28s %9.2f %9.1f   (sha256 of each shard before use: %+.1f%%)\n", "StreamScores, verified", res.StreamVerifySecs, flops/res.StreamVerifySecs/1e9, 100*res.VerifyCost)
	fmt.Fprintf(stdout, "%-28s %9.2f %9.1f   (runs %s)\n", "Sgemm from memory (best)", res.SgemmSecs, res.SgemmGFLOPS, fmtRates(res.SgemmRuns))
	fmt.Fprintf(stdout, "ratio stream / Sgemm: %.3f\n", res.Ratio)
	fmt.Fprintf(stdout, "peak RSS: %.2f GiB (%s)\n", gb(res.PeakRSS), res.PeakRSSNote)
	return nil
}

func fmtRates(r []float64) string {
	s := make([]string, len(r))
	for i, v := range r {
		s[i] = strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strings.Join(s, ", ")
}

// benchStore opens the store in dir when it has the wanted shape, or builds
// one there from seeded random rows. A store of another shape is an error:
// the benchmark never deletes what it did not create.
func benchStore(ctx context.Context, dir string, dt store.DType, rows, dim int, stderr io.Writer) (s *store.Store, reused bool, secs float64, err error) {
	if _, err := os.Stat(filepath.Join(dir, store.ManifestName)); err == nil {
		s, err := store.Open(dir)
		if err != nil {
			return nil, false, 0, err
		}
		if s.Count() == rows && s.Dim() == dim && s.DType() == dt {
			return s, true, 0, nil
		}
		s.Close()
		return nil, false, 0, fmt.Errorf("bench stream: %s holds a %d×%d %s store, not %d×%d %s: choose another --dir",
			dir, s.Count(), s.Dim(), s.DType(), rows, dim, dt)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, 0, err
	}
	fmt.Fprintf(stderr, "building a %d×%d %s store in %s\n", rows, dim, dt, dir)
	start := time.Now()
	b, err := store.Create(dir, store.Options{DType: dt, Layers: []store.LayerInfo{{Name: "random", Dim: dim}}, Seed: 1})
	if err != nil {
		return nil, false, 0, err
	}
	rng := rand.New(rand.NewPCG(1, 0))
	piece := max(1, (16<<20)/(4*dim)) // rows of about 16 MiB of float32
	ids := make([]int64, 0, piece)
	vals := make([]float32, piece*dim)
	for lo := 0; lo < rows; lo += piece {
		n := min(piece, rows-lo)
		ids = ids[:0]
		for i := range n {
			ids = append(ids, int64(lo+i))
		}
		fillUniform(vals[:n*dim], rng)
		if err := b.Add(ctx, ids, vals[:n*dim]); err != nil {
			b.Close()
			return nil, false, 0, err
		}
	}
	if err := b.Close(); err != nil {
		return nil, false, 0, err
	}
	secs = time.Since(start).Seconds()
	s, err = store.Open(dir)
	return s, false, secs, err
}

// fillUniform fills v with values uniform in [-1, 1).
func fillUniform(v []float32, rng *rand.Rand) {
	for i := range v {
		v[i] = 2*rng.Float32() - 1
	}
}

// yardRows is the number of rows of the yardstick's buffer.
const yardRows = 8192

// sgemmYardstick times the products StreamScores forms, queries × chunk ×
// dim repeated over rows, from an in-memory float32 buffer, after one
// untimed call.
func sgemmYardstick(be linalg.Backend, q *linalg.Dense32, rows int) float64 {
	// The same shape whatever --chunk: a buffer of yardRows rows, larger
	// than any cache, so that the yardstick is Sgemm at its best shape from
	// memory and does not move with the stream's chunk.
	chunk := min(yardRows, rows)
	buf := linalg.NewDense32(chunk, q.Cols, nil)
	fillUniform(buf.Data, rand.New(rand.NewPCG(3, 0)))
	c := linalg.NewDense32(q.Rows, chunk, nil)
	be.Sgemm(linalg.NoTrans, linalg.Trans, 1, q, buf, 0, c)
	start := time.Now()
	for lo := 0; lo < rows; lo += chunk {
		n := min(chunk, rows-lo)
		be.Sgemm(linalg.NoTrans, linalg.Trans, 1, q, buf.Slice(0, n, 0, q.Cols), 0, c.Slice(0, q.Rows, 0, n))
	}
	return time.Since(start).Seconds()
}

// dirBytes returns the total size of the regular files in dir.
func dirBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
	}
	return n
}

// procStatus returns a "kB" field of /proc/self/status in bytes, or 0 where
// there is none (not Linux).
func procStatus(field string) int64 { return kbField("/proc/self/status", field) }

// meminfo returns a "kB" field of /proc/meminfo in bytes, or 0.
func meminfo(field string) int64 { return kbField("/proc/meminfo", field) }

func kbField(path, field string) int64 {
	buf, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(buf))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}
