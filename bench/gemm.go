package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/goinfluence/goinfluence/linalg"
)

// GemmOptions selects the products Gemm measures.
type GemmOptions struct {
	// Sizes are the square sizes n of the n×n×n products (default 256,
	// 512, 1024, 2048).
	Sizes []int
	// MinTime is the least time spent on each measurement (default 1 s);
	// the best repeat is kept.
	MinTime time.Duration
	// Backends names the backends to measure (default linalg.Backends()).
	// One that does not open is reported to Progress and skipped.
	Backends []string
	// Progress, when not nil, receives a line per skipped backend.
	Progress io.Writer
}

// GemmRate is one measured rate.
type GemmRate struct {
	Backend string  `json:"backend"`
	Op      string  `json:"op"` // sgemm or dgemm
	N       int     `json:"n"`
	GFLOPS  float64 `json:"gflops"`
	Ratio   float64 `json:"ratio_to_cpu"` // rate over the pure-Go backend's on the same shape
}

// GemmResult is the outcome of Gemm. Its JSON is that of
// 'goinfluence bench gemm --json'.
type GemmResult struct {
	Machine
	Rates []GemmRate
}

// MarshalJSON writes r as it has always been written: date, cpus, goarch
// and rates, the fields scripts and bench/results/gemm-*.json hold.
func (r *GemmResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Date   string     `json:"date"`
		CPUs   int        `json:"cpus"`
		GOARCH string     `json:"goarch"`
		Rates  []GemmRate `json:"rates"`
	}{r.Date, r.CPUs, r.GOARCH, r.Rates})
}

// Gemm measures Sgemm and Dgemm on square products for every backend. The
// yardstick is the pure-Go backend ("cpu") on the same shape in the same
// run: each rate's Ratio is its rate over cpu's, or 0 where cpu was not
// measured.
func Gemm(ctx context.Context, opt GemmOptions) (*GemmResult, error) {
	sizes := opt.Sizes
	if len(sizes) == 0 {
		sizes = []int{256, 512, 1024, 2048}
	}
	for _, n := range sizes {
		if n < 1 {
			return nil, fmt.Errorf("bench gemm: size %d, want ≥ 1", n)
		}
	}
	minTime := opt.MinTime
	if minTime <= 0 {
		minTime = time.Second
	}
	names := opt.Backends
	if len(names) == 0 {
		names = linalg.Backends()
	}
	progress := writerOrDiscard(opt.Progress)
	res := &GemmResult{Machine: ThisMachine()}
	cpuRate := map[string]float64{}
	for _, name := range names {
		be, err := linalg.Open(name)
		if err != nil {
			fmt.Fprintf(progress, "backend %s not available: %v\n", name, err)
			continue
		}
		for _, op := range []string{"sgemm", "dgemm"} {
			for _, n := range sizes {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				g := linalg.MeasureGemm(be, n, op == "dgemm", minTime)
				res.Rates = append(res.Rates, GemmRate{Backend: name, Op: op, N: n, GFLOPS: g})
				if name == "cpu" {
					cpuRate[fmt.Sprint(op, n)] = g
				}
			}
		}
	}
	for i := range res.Rates {
		if c := cpuRate[fmt.Sprint(res.Rates[i].Op, res.Rates[i].N)]; c > 0 {
			res.Rates[i].Ratio = res.Rates[i].GFLOPS / c
		}
	}
	return res, nil
}

// WriteTable writes r as the table 'goinfluence bench gemm' prints.
func (r *GemmResult) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("GEMM rates, %d CPUs, %s/%s, %s\n", r.CPUs, r.GOOS, r.GOARCH, r.Day())
	ew.printf("%-10s %-6s %6s %10s %8s\n", "backend", "op", "n", "GFLOP/s", "vs cpu")
	for _, g := range r.Rates {
		ew.printf("%-10s %-6s %6d %10.1f %8.2f\n", g.Backend, g.Op, g.N, g.GFLOPS, g.Ratio)
	}
	return ew.err
}

// errWriter keeps the first error of a run of writes, so that a table is
// written without checking every line.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func writerOrDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
