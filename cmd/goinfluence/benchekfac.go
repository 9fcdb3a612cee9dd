package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// stageTiming is one stage of 'goinfluence bench ekfac'.
type stageTiming struct {
	Stage      string  `json:"stage"`
	Seconds    float64 `json:"seconds"`
	GemmGFLOP  float64 `json:"gemm_gflop"`   // GEMM work in the stage
	GemmSecs   float64 `json:"gemm_seconds"` // time inside GEMM calls
	GemmRate   float64 `json:"gemm_gflops"`  // GemmGFLOP / GemmSecs
	RatioSgemm float64 `json:"ratio_to_sgemm"`
	RatioDgemm float64 `json:"ratio_to_dgemm"`
	EighSecs   float64 `json:"eigh_seconds"`
}

func runBenchEKFAC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench ekfac", stderr)
	dim := fs.Int("dim", 2048, "layer size: d_in = d_out")
	tokens := fs.Int("tokens", 64, "token rows per example")
	nFit := fs.Int("fit", 32, "fit examples")
	nQuery := fs.Int("queries", 8, "query examples")
	nTrain := fs.Int("train", 32, "training examples scored")
	chunk := fs.Int("chunk", 8, "examples per fit batch")
	backend := fs.String("backend", "auto", "backend: auto, cpu or openblas")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dim < 2 || *tokens < 1 || *nFit < 1 || *nQuery < 1 || *nTrain < 1 || *chunk < 1 {
		return fmt.Errorf("%w: bench ekfac: sizes must be positive", errUsage)
	}
	raw, err := openBackend(*backend)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "measuring %s Sgemm and Dgemm at n=%d\n", raw.Name(), *dim)
	sRate := linalg.MeasureGemm(raw, *dim, false, time.Second)
	dRate := linalg.MeasureGemm(raw, *dim, true, time.Second)

	rng := rand.New(rand.NewPCG(1, 2))
	batch := func(n int) *gradients.Batch {
		l := gradients.Layer{Name: "layer", DIn: *dim, DOut: *dim, Tokens: *tokens, TokenAxis: true,
			A: make([]float64, n**tokens**dim), S: make([]float64, n**tokens**dim)}
		for i := range l.A {
			l.A[i] = rng.NormFloat64()
			l.S[i] = 1e-2 * rng.NormFloat64()
		}
		return &gradients.Batch{N: n, Layers: []gradients.Layer{l}}
	}
	fmt.Fprintf(stderr, "generating %d fit, %d query and %d training examples of a %d×%d layer with %d tokens\n",
		*nFit, *nQuery, *nTrain, *dim, *dim, *tokens)
	fit, q, tr := batch(*nFit), batch(*nQuery), batch(*nTrain)
	var parts []*gradients.Batch
	for lo := 0; lo < fit.N; lo += *chunk {
		parts = append(parts, fit.Slice(lo, min(lo+*chunk, fit.N)))
	}

	be := &countingBackend{Backend: raw}
	var stages []stageTiming
	measure := func(name string, fn func() error) error {
		be.reset()
		t0 := time.Now()
		if err := fn(); err != nil {
			return err
		}
		st := stageTiming{Stage: name, Seconds: time.Since(t0).Seconds(), GemmGFLOP: be.flops / 1e9, GemmSecs: be.gemm.Seconds(), EighSecs: be.eigh.Seconds()}
		if st.GemmSecs > 0 {
			st.GemmRate = st.GemmGFLOP / st.GemmSecs
			st.RatioSgemm, st.RatioDgemm = st.GemmRate/sRate, st.GemmRate/dRate
		}
		stages = append(stages, st)
		fmt.Fprintf(stderr, "%s: %.2f s\n", name, st.Seconds)
		return nil
	}
	cov := ekfac.NewCovariance(be)
	var eig *ekfac.Eigen
	var f *ekfac.Factors
	opt := ekfac.ScoreOptions{Damping: ekfac.Damping{Heuristic: true}}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"covariance", func() error {
			for _, p := range parts {
				if err := cov.Add(p); err != nil {
					return err
				}
			}
			return nil
		}},
		{"eigendecomposition", func() (err error) { eig, err = cov.Eigen(); return err }},
		{"lambda (EK-FAC)", func() error {
			lam, err := ekfac.NewLambda(ekfac.EKFAC, be, eig)
			if err != nil {
				return err
			}
			for _, p := range parts {
				if err := lam.Add(p); err != nil {
					return err
				}
			}
			f, err = lam.Factors()
			return err
		}},
		{"score", func() error { _, err := f.LayerScores(ctx, be, q, tr, opt); return err }},
		{"self-influence", func() error { _, err := f.SelfInfluence(ctx, be, tr, opt); return err }},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := measure(s.name, s.fn); err != nil {
			return err
		}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			Date    string        `json:"date"`
			CPUs    int           `json:"cpus"`
			Backend string        `json:"backend"`
			Dim     int           `json:"dim"`
			Tokens  int           `json:"tokens"`
			Fit     int           `json:"fit"`
			Queries int           `json:"queries"`
			Train   int           `json:"train"`
			Sgemm   float64       `json:"sgemm_gflops"`
			Dgemm   float64       `json:"dgemm_gflops"`
			Stages  []stageTiming `json:"stages"`
		}{time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), raw.Name(), *dim, *tokens, *nFit, *nQuery, *nTrain, sRate, dRate, stages})
	}
	fmt.Fprintf(stdout, "EK-FAC on a %d×%d layer, %d tokens/example: fit %d, score %d queries × %d training examples; backend %s, %d CPUs\n",
		*dim, *dim, *tokens, *nFit, *nQuery, *nTrain, raw.Name(), runtime.NumCPU())
	fmt.Fprintf(stdout, "yardstick (same run, n=%d): Sgemm %.1f GFLOP/s, Dgemm %.1f GFLOP/s\n", *dim, sRate, dRate)
	fmt.Fprintf(stdout, "%-20s %8s %10s %9s %10s %8s %8s %8s\n", "stage", "time s", "GEMM GFLOP", "GEMM s", "GEMM GF/s", "/Sgemm", "/Dgemm", "eigh s")
	for _, s := range stages {
		fmt.Fprintf(stdout, "%-20s %8.2f %10.1f %9.2f %10.1f %8.2f %8.2f %8.2f\n",
			s.Stage, s.Seconds, s.GemmGFLOP, s.GemmSecs, s.GemmRate, s.RatioSgemm, s.RatioDgemm, s.EighSecs)
	}
	return nil
}

// countingBackend times a backend's GEMM-like calls and counts their flops.
type countingBackend struct {
	linalg.Backend
	mu    sync.Mutex
	flops float64
	gemm  time.Duration
	eigh  time.Duration
}

func (c *countingBackend) reset() {
	c.mu.Lock()
	c.flops, c.gemm, c.eigh = 0, 0, 0
	c.mu.Unlock()
}

// timeGemm runs fn, a product of m×k by k×n, and counts its time and flops.
func (c *countingBackend) timeGemm(m, n, k int, fn func()) {
	t0 := time.Now()
	fn()
	d := time.Since(t0)
	c.mu.Lock()
	c.flops += linalg.GemmFlops(m, n, k)
	c.gemm += d
	c.mu.Unlock()
}

// inner returns k of op(A) for A with r rows and cols columns.
func inner(t linalg.Transpose, r, cols int) int {
	if t {
		return r
	}
	return cols
}

func (c *countingBackend) Dgemm(tA, tB linalg.Transpose, alpha float64, a, b *linalg.Dense64, beta float64, cm *linalg.Dense64) {
	c.timeGemm(cm.Rows, cm.Cols, inner(tA, a.Rows, a.Cols), func() { c.Backend.Dgemm(tA, tB, alpha, a, b, beta, cm) })
}

func (c *countingBackend) Sgemm(tA, tB linalg.Transpose, alpha float32, a, b *linalg.Dense32, beta float32, cm *linalg.Dense32) {
	c.timeGemm(cm.Rows, cm.Cols, inner(tA, a.Rows, a.Cols), func() { c.Backend.Sgemm(tA, tB, alpha, a, b, beta, cm) })
}

// CovAccumulate counts the full product XᵀX, the work a GEMM would do.
func (c *countingBackend) CovAccumulate(cm *linalg.Dense64, x *linalg.Dense64) {
	c.timeGemm(x.Cols, x.Cols, x.Rows, func() { c.Backend.CovAccumulate(cm, x) })
}

func (c *countingBackend) Eigh(a *linalg.Dense64) ([]float64, *linalg.Dense64, error) {
	t0 := time.Now()
	w, v, err := c.Backend.Eigh(a)
	c.mu.Lock()
	c.eigh += time.Since(t0)
	c.mu.Unlock()
	return w, v, err
}
