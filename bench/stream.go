package bench

import (
	"context"
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

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

// StreamOptions sizes the store and the queries Stream times. Zero fields
// take the defaults of 'goinfluence bench stream', except TopK, where 0
// keeps no rankings, as in influence.StreamOptions.
type StreamOptions struct {
	Backend   linalg.Backend  // default linalg.Auto()
	Rows      int             // store rows (default 200000)
	Dim       int             // row dimension (default 4096)
	Queries   int             // queries (default 512)
	TopK      int             // helpful and harmful entries kept per query
	DType     gradients.DType // store dtype (default f16)
	ChunkRows int             // store rows per chunk (default influence.DefaultChunkRows)
	// Dir is the store's directory. A store of the same shape there is
	// reused; another store there is an error (the benchmark never deletes
	// what it did not create); an empty or missing directory gets a new
	// store, which is kept. Empty Dir: a temporary directory, removed after.
	Dir string
	// CPUProfile, when not nil, receives a CPU profile of the timed stream
	// alone (not the build, the yardstick or the verified stream).
	CPUProfile io.Writer
	// Progress, when not nil, receives a line per step.
	Progress io.Writer
}

// StreamResult is the outcome of Stream. Its JSON is that of
// 'goinfluence bench stream --json'.
type StreamResult struct {
	Machine
	Backend   string `json:"backend"`
	Rows      int    `json:"rows"`
	Dim       int    `json:"dim"`
	Queries   int    `json:"queries"`
	TopK      int    `json:"topk"`
	DType     string `json:"dtype"`
	ChunkRows int    `json:"chunk_rows"`

	Dir          string  `json:"-"` // the store's directory, as given in the options
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

// flops returns the floating-point operations of one stream.
func (r *StreamResult) flops() float64 { return linalg.GemmFlops(r.Queries, r.Rows, r.Dim) }

// Stream times influence.StreamScores over a store of seeded random rows
// and, in the same run, the backend's Sgemm on the same products from an
// in-memory float32 buffer: the rate a perfect stream would reach. The
// store is built first (its time reported apart) or reused from Dir. The
// timed stream skips the shards' checksums; a second stream, on the store
// opened with the default checks, gives the cost of verifying. Peak RSS is
// the stream's own where Linux lets the high-water mark be reset.
func Stream(ctx context.Context, opt StreamOptions) (*StreamResult, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	progress := writerOrDiscard(o.Progress)
	be, err := linalg.OrAuto(o.Backend)
	if err != nil {
		return nil, fmt.Errorf("bench stream: %w", err)
	}
	res := &StreamResult{
		Machine: ThisMachine(), Backend: be.Name(), Dir: opt.Dir,
		Rows: o.Rows, Dim: o.Dim, Queries: o.Queries, TopK: o.TopK, DType: strings.ToLower(string(o.DType)), ChunkRows: o.ChunkRows,
	}

	path := o.Dir
	if path == "" {
		tmp, err := os.MkdirTemp("", "goinfluence-bench-stream-")
		if err != nil {
			return nil, fmt.Errorf("bench stream: %w", err)
		}
		defer os.RemoveAll(tmp)
		path = filepath.Join(tmp, "store")
	}
	reused, buildSecs, err := benchStore(ctx, path, o.DType, o.Rows, o.Dim, progress)
	if err != nil {
		return nil, err
	}
	res.Reused, res.BuildSecs = reused, buildSecs
	res.StoreBytes = dirBytes(path)
	res.MemTotal = kbField("/proc/meminfo", "MemTotal")
	res.StoreFitsRAM = res.MemTotal > 0 && res.StoreBytes < res.MemTotal

	q := linalg.NewDense32(o.Queries, o.Dim, nil)
	fillUniform(q.Data, rand.New(rand.NewPCG(2, 0)))
	flops := res.flops()

	// The yardstick is measured before and after the stream and the faster
	// run kept, so that the ratio does not flatter the stream.
	fmt.Fprintf(progress, "yardstick: %s Sgemm %d×%d×%d over %d rows from memory\n", be.Name(), o.Queries, min(yardRows, o.Rows), o.Dim, o.Rows)
	yard := func() {
		secs := sgemmYardstick(be, q, o.Rows)
		res.SgemmRuns = append(res.SgemmRuns, flops/secs/1e9)
		if res.SgemmSecs == 0 || secs < res.SgemmSecs {
			res.SgemmSecs = secs
		}
	}
	yard()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Measure the peak RSS of the stream alone: return the yardstick's
	// buffers and reset the high-water mark (Linux ≥ 4.0).
	runtime.GC()
	debug.FreeOSMemory()
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	fmt.Fprintf(progress, "streaming %d queries against %d rows, top-%d, chunks of %d\n", o.Queries, o.Rows, o.TopK, o.ChunkRows)
	sopt := influence.StreamOptions{TopK: o.TopK, ChunkRows: o.ChunkRows}
	ns, err := store.OpenWith(path, store.OpenOptions{NoVerify: true})
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return nil, fmt.Errorf("bench stream: CPU profile: %w", err)
		}
	}
	sr, err := influence.StreamScores(ctx, be, q, ns, sopt)
	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return nil, err
	}
	res.PeakRSS = kbField("/proc/self/status", "VmHWM")
	if hwmReset {
		res.PeakRSSNote = "VmHWM reset before the stream: the stream's peak, with the process's other live memory (queries, runtime) and the touched pages of the mapped shard"
	} else {
		res.PeakRSSNote = "VmHWM over the whole process (could not reset it): includes the store build and the yardstick"
	}
	res.StreamSecs = sr.Seconds
	res.StreamGFLOPS = flops / sr.Seconds / 1e9
	if sr.Rows != o.Rows {
		return nil, fmt.Errorf("bench stream: scored %d rows, the store has %d", sr.Rows, o.Rows)
	}
	fmt.Fprintf(progress, "streaming again, checking each shard's sha256 before use\n")
	vs, err := store.Open(path)
	if err != nil {
		return nil, err
	}
	defer vs.Close()
	vr, err := influence.StreamScores(ctx, be, q, vs, sopt)
	if err != nil {
		return nil, err
	}
	res.StreamVerifySecs = vr.Seconds
	res.VerifyCost = vr.Seconds/sr.Seconds - 1

	yard()
	res.SgemmGFLOPS = flops / res.SgemmSecs / 1e9
	res.Ratio = res.StreamGFLOPS / res.SgemmGFLOPS
	return res, nil
}

// withDefaults returns o with its zero fields set, or an error naming the
// first field out of range.
func (o StreamOptions) withDefaults() (StreamOptions, error) {
	if err := setDefaults("bench stream", []intOption{
		{"Rows", &o.Rows, 200000},
		{"Dim", &o.Dim, 4096},
		{"Queries", &o.Queries, 512},
		{"ChunkRows", &o.ChunkRows, influence.DefaultChunkRows},
	}); err != nil {
		return o, err
	}
	if o.TopK < 0 {
		return o, fmt.Errorf("bench stream: TopK %d, want ≥ 0", o.TopK)
	}
	if o.DType == "" {
		o.DType = gradients.F16
	}
	if o.DType != gradients.F16 && o.DType != gradients.BF16 && o.DType != gradients.F32 {
		return o, fmt.Errorf("bench stream: dtype %q, want f16, bf16 or f32", strings.ToLower(string(o.DType)))
	}
	return o, nil
}

// WriteTable writes r as the table 'goinfluence bench stream' prints.
func (r *StreamResult) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	flops := r.flops()
	gb := func(b int64) float64 { return float64(b) / (1 << 30) }
	fits := "larger than RAM"
	if r.StoreFitsRAM {
		fits = "fits in RAM, page cache not dropped"
	}
	ew.printf("StreamScores: %d queries × %d rows × %d (%s store, %.2f GiB, %s), top-%d, chunks of %d; backend %s, %d CPUs\n",
		r.Queries, r.Rows, r.Dim, r.DType, gb(r.StoreBytes), fits, r.TopK, r.ChunkRows, r.Backend, r.CPUs)
	if r.Reused {
		ew.printf("store reused from %s\n", r.Dir)
	} else {
		ew.printf("store built in %.1f s (not timed below)\n", r.BuildSecs)
	}
	ew.printf("%-28s %9s %9s\n", "", "time s", "GFLOP/s")
	ew.printf("%-28s %9.2f %9.1f\n", "StreamScores (end to end)", r.StreamSecs, r.StreamGFLOPS)
	ew.printf("%-28s %9.2f %9.1f   (sha256 of each shard before use: %+.1f%%)\n", "StreamScores, verified", r.StreamVerifySecs, flops/r.StreamVerifySecs/1e9, 100*r.VerifyCost)
	ew.printf("%-28s %9.2f %9.1f   (runs %s)\n", "Sgemm from memory (best)", r.SgemmSecs, r.SgemmGFLOPS, fmtRates(r.SgemmRuns))
	ew.printf("ratio stream / Sgemm: %.3f\n", r.Ratio)
	ew.printf("peak RSS: %.2f GiB (%s)\n", gb(r.PeakRSS), r.PeakRSSNote)
	return ew.err
}

// fmtRates formats rates to one decimal.
func fmtRates(r []float64) string { return fmtFloats(r, 1) }

// fmtFloats formats v with prec decimals, separated by commas.
func fmtFloats(v []float64, prec int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', prec, 64)
	}
	return strings.Join(s, ", ")
}

// benchStore opens the store in dir when it has the wanted shape, or builds
// one there from seeded random rows. A store of another shape is an error:
// the benchmark never deletes what it did not create.
func benchStore(ctx context.Context, dir string, dt gradients.DType, rows, dim int, progress io.Writer) (reused bool, secs float64, err error) {
	if _, err := os.Stat(filepath.Join(dir, store.ManifestName)); err == nil {
		s, err := store.Open(dir)
		if err != nil {
			return false, 0, err
		}
		defer s.Close()
		if s.Count() == rows && s.Dim() == dim && s.DType() == dt {
			return true, 0, nil
		}
		return false, 0, fmt.Errorf("bench stream: %s holds a %d×%d %s store, not %d×%d %s: choose another --dir",
			dir, s.Count(), s.Dim(), strings.ToLower(string(s.DType())), rows, dim, strings.ToLower(string(dt)))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, 0, err
	}
	fmt.Fprintf(progress, "building a %d×%d %s store in %s\n", rows, dim, dt, dir)
	start := time.Now()
	b, err := store.Create(dir, store.Options{DType: dt, Layers: []store.LayerInfo{{Name: "random", Dim: dim}}, Projection: gradients.Projection{Seed: 1}})
	if err != nil {
		return false, 0, err
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
			return false, 0, err
		}
	}
	if err := b.Close(); err != nil {
		return false, 0, err
	}
	return false, time.Since(start).Seconds(), nil
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
	// The same shape whatever the stream's chunk: a buffer of yardRows
	// rows, larger than any cache, so that the yardstick is Sgemm at its
	// best shape from memory and does not move with the stream's chunk.
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

// intOption is a size of a benchmark's options: its name, the field and
// the default of a zero field.
type intOption struct {
	name string
	v    *int
	def  int
}

// setDefaults sets each zero option to its default and refuses one below 1,
// naming it.
func setDefaults(bench string, opts []intOption) error {
	for _, f := range opts {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 1 {
			return fmt.Errorf("%s: %s %d, want ≥ 1", bench, f.name, *f.v)
		}
	}
	return nil
}
