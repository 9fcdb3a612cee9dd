package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/linalg"
)

// These tests run each benchmark at tiny sizes and check the harness: that
// every number it reports is there and sane, and that the JSON keeps the
// field names scripts and bench/results/ rely on. They check no timing.

// positive reports whether v is a finite number above zero.
func positive(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }

// jsonKeys returns the top-level keys of v's JSON, in order.
func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	buf, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	var keys []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tok := tok.(type) {
		case json.Delim:
			if tok == '{' || tok == '[' {
				depth++
			} else {
				depth--
			}
		case string:
			if depth == 1 && dec.More() {
				keys = append(keys, tok)
				// Skip the value.
				var raw json.RawMessage
				if err := dec.Decode(&raw); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return keys
}

func cpuBackend(t *testing.T) linalg.Backend {
	t.Helper()
	be, err := linalg.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func TestGemm(t *testing.T) {
	var progress bytes.Buffer
	res, err := Gemm(context.Background(), GemmOptions{Sizes: []int{16, 32}, MinTime: time.Millisecond,
		Backends: []string{"cpu", "no-such-backend"}, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "backend no-such-backend not available") {
		t.Errorf("progress does not report the missing backend:\n%s", progress.String())
	}
	if len(res.Rates) != 4 {
		t.Fatalf("%d rates, want 4 (sgemm and dgemm at two sizes)", len(res.Rates))
	}
	for _, r := range res.Rates {
		if r.Backend != "cpu" || !positive(r.GFLOPS) || r.Ratio != 1 {
			t.Errorf("rate %+v: want cpu, a positive rate and ratio 1 to itself", r)
		}
	}
	if want := []string{"date", "cpus", "goarch", "rates"}; !slices.Equal(jsonKeys(t, res), want) {
		t.Errorf("JSON keys %v, want %v", jsonKeys(t, res), want)
	}
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(table.String(), "\n"); lines != 2+len(res.Rates) {
		t.Errorf("table has %d lines, want %d:\n%s", lines, 2+len(res.Rates), table.String())
	}
}

func TestEKFAC(t *testing.T) {
	res, err := EKFAC(context.Background(), EKFACOptions{Backend: cpuBackend(t), Dim: 12, Tokens: 3,
		Fit: 6, Queries: 2, Train: 5, Chunk: 4, YardstickTime: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !positive(res.Sgemm) || !positive(res.Dgemm) {
		t.Errorf("yardsticks Sgemm %g, Dgemm %g GFLOP/s", res.Sgemm, res.Dgemm)
	}
	want := []string{"covariance", "eigendecomposition", "lambda (EK-FAC)",
		"covariance (f32)", "eigendecomposition (f32)", "lambda (EK-FAC) (f32)", "score", "self-influence", "score (f32)"}
	if len(res.Stages) != len(want) {
		t.Fatalf("%d stages, want %d", len(res.Stages), len(want))
	}
	for i, s := range res.Stages {
		if s.Stage != want[i] || !positive(s.Seconds) || s.GemmSecs > s.Seconds || s.EighSecs > s.Seconds {
			t.Errorf("stage %d: %+v", i, s)
		}
		if s.GemmSecs > 0 && (!positive(s.GemmGFLOP) || !positive(s.RatioSgemm) || !positive(s.RatioDgemm)) {
			t.Errorf("stage %s: GEMM time without flops or ratios: %+v", s.Stage, s)
		}
	}
	if res.Stages[0].GemmGFLOP <= 0 {
		t.Errorf("covariance counted no GEMM work: %+v", res.Stages[0])
	}
	if res.Stages[1].EighSecs <= 0 {
		t.Errorf("eigendecomposition timed no Eigh: %+v", res.Stages[1])
	}
	// One factored layer of 12×12 with 3 tokens, 5 training examples and
	// 2 queries: bilinear 2·5·3·12·2·12 + 2·5·3·2·12 = 9360 flops against
	// materialise 2·5·3·12·12 + 2·2·5·12·12 = 7200.
	wantPlan := []EKFACPlanStep{{Layer: "layer", Algorithm: "materialise",
		Rotation: 2 * 5 * 3 * (144 + 144) / 1e9, Bilinear: 9360 / 1e9, Materialise: 7200 / 1e9}}
	if !slices.Equal(res.PlanF32, wantPlan) {
		t.Errorf("f32 plan %+v, want %+v", res.PlanF32, wantPlan)
	}
	if res.Precision != PrecisionBoth {
		t.Errorf("precision %q", res.Precision)
	}
	wantKeys := []string{"date", "cpus", "backend", "dim", "tokens", "fit", "queries", "train", "sgemm_gflops", "dgemm_gflops", "stages",
		"precision", "plan_f32"}
	if got := jsonKeys(t, res); !slices.Equal(got, wantKeys) {
		t.Errorf("JSON keys %v, want %v", got, wantKeys)
	}
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"EK-FAC on a 12×12 layer", "self-influence", "score (f32)", "f32 cost model per layer", "bilinear"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
}

// TestEKFACPrecision checks that Precision f64 and f32 run only their own
// scoring stages, and that the plan comes with the f32 stage alone.
func TestEKFACPrecision(t *testing.T) {
	for _, tc := range []struct {
		model, precision string
		want             []string
	}{
		{ModelLayer, PrecisionF64, []string{"covariance", "eigendecomposition", "lambda (EK-FAC)", "score", "self-influence"}},
		{ModelLayer, PrecisionF32, []string{"covariance (f32)", "eigendecomposition (f32)", "lambda (EK-FAC) (f32)", "score (f32)"}},
		{ModelMLP, PrecisionF64, []string{"covariance", "eigendecomposition", "lambda (EK-FAC)", "pairwise scores"}},
		{ModelMLP, PrecisionF32, []string{"covariance (f32)", "eigendecomposition (f32)", "lambda (EK-FAC) (f32)", "pairwise scores (f32)"}},
	} {
		t.Run(tc.model+"/"+tc.precision, func(t *testing.T) {
			res, err := EKFAC(context.Background(), EKFACOptions{Backend: cpuBackend(t), Model: tc.model, Layers: []int{6, 4, 3},
				Dim: 8, Tokens: 2, Fit: 5, Queries: 2, Train: 4, Chunk: 3, Precision: tc.precision, YardstickTime: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range res.Stages {
				got = append(got, s.Stage)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("stages %v, want %v", got, tc.want)
			}
			if (len(res.PlanF32) > 0) != (tc.precision == PrecisionF32) {
				t.Errorf("f32 plan %+v with precision %s", res.PlanF32, tc.precision)
			}
			if fl := res.Floors; fl != nil && (fl.PairwiseF32Secs > 0) != (tc.precision == PrecisionF32) {
				t.Errorf("floors %+v with precision %s", fl, tc.precision)
			}
		})
	}
}

func TestStream(t *testing.T) {
	const rows, dim = 2000, 64
	dir := filepath.Join(t.TempDir(), "store")
	opt := StreamOptions{Backend: cpuBackend(t), Rows: rows, Dim: dim, Queries: 3, TopK: 4, ChunkRows: 1024, Dir: dir}
	for _, reuse := range []bool{false, true} {
		var profile bytes.Buffer
		opt.CPUProfile = &profile
		res, err := Stream(context.Background(), opt)
		if err != nil {
			t.Fatal(err)
		}
		if res.Reused != reuse || res.Rows != rows || res.DType != "f16" || res.Dir != dir {
			t.Errorf("reuse %v: result %+v", reuse, res)
		}
		if !reuse && !positive(res.BuildSecs) {
			t.Errorf("built store: build_seconds %g", res.BuildSecs)
		}
		if res.StoreBytes < rows*dim*2 {
			t.Errorf("store of %d bytes, want at least %d", res.StoreBytes, rows*dim*2)
		}
		for name, v := range map[string]float64{"stream_seconds": res.StreamSecs, "stream_verify_seconds": res.StreamVerifySecs,
			"stream_gflops": res.StreamGFLOPS, "sgemm_seconds": res.SgemmSecs, "sgemm_gflops": res.SgemmGFLOPS} {
			if !positive(v) {
				t.Errorf("%s = %g", name, v)
			}
		}
		if !(res.Ratio > 0) {
			t.Errorf("ratio %g, want > 0", res.Ratio)
		}
		if len(res.SgemmRuns) != 2 || res.SgemmGFLOPS != max(res.SgemmRuns[0], res.SgemmRuns[1]) {
			t.Errorf("yardstick %g GFLOP/s from runs %v: want the better of two", res.SgemmGFLOPS, res.SgemmRuns)
		}
		if res.VerifyCost <= -1 || res.PeakRSSNote == "" {
			t.Errorf("verify cost %g, peak RSS note %q", res.VerifyCost, res.PeakRSSNote)
		}
		if profile.Len() == 0 {
			t.Error("no CPU profile written")
		}
		var table bytes.Buffer
		if err := res.WriteTable(&table); err != nil {
			t.Fatal(err)
		}
		if reuse != strings.Contains(table.String(), "store reused from "+dir) {
			t.Errorf("reuse %v, table:\n%s", reuse, table.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, store.ManifestName)); err != nil {
		t.Errorf("the store in Dir was not kept: %v", err)
	}
	wantKeys := []string{"date", "cpus", "backend", "rows", "dim", "queries", "topk", "dtype", "chunk_rows",
		"store_bytes", "mem_total_bytes", "store_fits_in_ram", "reused_store", "build_seconds",
		"stream_seconds", "stream_verify_seconds", "verify_cost", "stream_gflops", "sgemm_seconds", "sgemm_gflops",
		"sgemm_runs_gflops", "ratio", "peak_rss_bytes", "peak_rss_note"}
	if got := jsonKeys(t, &StreamResult{}); !slices.Equal(got, wantKeys) {
		t.Errorf("JSON keys %v, want %v", got, wantKeys)
	}
}

func TestEKFACMLP(t *testing.T) {
	var progress bytes.Buffer
	res, err := EKFAC(context.Background(), EKFACOptions{Backend: cpuBackend(t), Model: ModelMLP, Layers: []int{7, 5, 6, 3},
		Dim: 16, Fit: 9, Queries: 3, Train: 8, Chunk: 4, YardstickTime: time.Millisecond, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != ModelMLP || !slices.Equal(res.Layers, []int{7, 5, 6, 3}) || res.Fit != 9 || res.Train != 8 || res.Queries != 3 {
		t.Errorf("result describes %q %v, fit %d, train %d, queries %d", res.Model, res.Layers, res.Fit, res.Train, res.Queries)
	}
	want := []string{"covariance", "eigendecomposition", "lambda (EK-FAC)",
		"covariance (f32)", "eigendecomposition (f32)", "lambda (EK-FAC) (f32)", "pairwise scores", "pairwise scores (f32)"}
	if len(res.Stages) != len(want) {
		t.Fatalf("%d stages, want %d", len(res.Stages), len(want))
	}
	for i, s := range res.Stages {
		if s.Stage != want[i] || !positive(s.Seconds) || s.GemmSecs > s.Seconds || s.EighSecs > s.Seconds ||
			!positive(s.RatioFloorSgemm) || !positive(s.RatioFloorDgemm) {
			t.Errorf("stage %d: %+v", i, s)
		}
		if i != 1 && i != 4 && (!positive(s.GemmGFLOP) || !positive(s.FloorSgemm) || !positive(s.FloorDgemm)) {
			t.Errorf("stage %s counted no GEMM work: %+v", s.Stage, s)
		}
	}
	// The floors from the shapes, d_in counting the bias: Σ d_out·d_in =
	// 5·8 + 6·6 + 3·7 = 97, Σ (d_in² + d_out²) = 89 + 72 + 58 = 219.
	fl := res.Floors
	if want := 2 * 3 * 8 * 97 / 1e9; math.Abs(fl.PairwiseGFLOP-want) > 1e-15 {
		t.Errorf("pairwise floor %g GFLOP, want %g", fl.PairwiseGFLOP, want)
	}
	if want := 2 * 9 * (2*219 + 97) / 1e9; math.Abs(fl.FitGFLOP-want) > 1e-15 {
		t.Errorf("fit floor %g GFLOP, want %g", fl.FitGFLOP, want)
	}
	// The fit's counted GEMMs are the floor's: full covariance products,
	// the two rotations and one outer product per example and layer.
	if fit := res.Stages[0].GemmGFLOP + res.Stages[2].GemmGFLOP; math.Abs(fit-fl.FitGFLOP) > 1e-12 {
		t.Errorf("fit stages counted %g GFLOP, the floor is %g", fit, fl.FitGFLOP)
	}
	// Scoring counts the pairwise products and the queries' and training
	// examples' rotations on top, in either precision.
	if !positive(fl.FitF32Secs) || !positive(fl.FitF32Ratio) {
		t.Errorf("f32 fit: %g s, ratio %g", fl.FitF32Secs, fl.FitF32Ratio)
	}
	for _, s := range res.Stages[6:] {
		if s.GemmGFLOP <= fl.PairwiseGFLOP {
			t.Errorf("%s counted %g GFLOP, not above the pairwise floor %g", s.Stage, s.GemmGFLOP, fl.PairwiseGFLOP)
		}
	}
	if len(res.PlanF32) != 3 || res.PlanF32[0].Layer != "fc1" || res.PlanF32[2].Layer != "fc3" {
		t.Errorf("f32 plan %+v, want one step per layer", res.PlanF32)
	}
	for _, p := range res.PlanF32 {
		if cheaper := map[bool]string{true: "bilinear", false: "materialise"}[p.Bilinear < p.Materialise]; p.Algorithm != cheaper ||
			!positive(p.Rotation) || !positive(p.Bilinear) || !positive(p.Materialise) {
			t.Errorf("f32 plan step %+v", p)
		}
	}
	for name, v := range map[string]float64{"pairwise Sgemm": fl.PairwiseSgemmSecs, "pairwise Dgemm": fl.PairwiseDgemmSecs,
		"pairwise time": fl.PairwiseSecs, "pairwise ratio": fl.PairwiseRatio, "fit Sgemm": fl.FitSgemmSecs,
		"pairwise f32 time": fl.PairwiseF32Secs, "pairwise f32 ratio": fl.PairwiseF32Ratio,
		"fit Dgemm": fl.FitDgemmSecs, "eigh": fl.EighSecs, "fit time": fl.FitSecs, "fit goal": fl.FitGoalSecs, "fit ratio": fl.FitRatio} {
		if !positive(v) {
			t.Errorf("%s %g", name, v)
		}
	}
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"MLP 7-5-6-3 with biases (97 parameters)", "pairwise scores (f32)", "goal ≤ 1.25",
		"f32 scoring took", "f32 cost model per layer"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
	wantKeys := []string{"date", "cpus", "backend", "dim", "tokens", "fit", "queries", "train", "sgemm_gflops", "dgemm_gflops", "stages",
		"precision", "plan_f32", "model", "layers", "floors"}
	if got := jsonKeys(t, res); !slices.Equal(got[:len(wantKeys)], wantKeys) {
		t.Errorf("JSON keys %v, want %v first", got, wantKeys)
	}
}

// TestMLPGradients checks the synthetic MLP's gradients against one
// example's gradient worked out by hand from the same draws: shapes, the
// ones column, the ReLU mask and the softmax gradient summing to zero.
func TestMLPGradients(t *testing.T) {
	b := mlpGradients(cpuBackend(t), []int{4, 6, 3}, 5, rand.New(rand.NewPCG(3, 4)))
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	fc1, fc2 := &b.Layers[0], &b.Layers[1]
	if fc1.DIn != 5 || fc1.DOut != 6 || fc2.DIn != 7 || fc2.DOut != 3 || fc1.Tokens != 1 || fc1.TokenAxis {
		t.Fatalf("layers %+v %+v", fc1, fc2)
	}
	for n := range b.N {
		a1, a2, s1, s2 := fc1.Acts(n).Row(0), fc2.Acts(n).Row(0), fc1.Outs(n).Row(0), fc2.Outs(n).Row(0)
		if a1[4] != 1 || a2[6] != 1 {
			t.Errorf("example %d: bias columns %g, %g", n, a1[4], a2[6])
		}
		var sum float64
		for _, v := range s2 {
			sum += v
		}
		if math.Abs(sum) > 1e-12 || slices.Min(s2) >= -0 {
			t.Errorf("example %d: output gradient %v is not softmax − one-hot", n, s2)
		}
		for j, v := range a2[:6] {
			// ReLU: a dead unit has input 0 and passes no gradient.
			if v < 0 || (v == 0 && s1[j] != 0) {
				t.Errorf("example %d: unit %d: activation %g, gradient %g", n, j, v, s1[j])
			}
		}
	}
}

// TestOptionErrors checks that options out of range are refused with the
// field that is wrong, before anything is measured or built.
func TestOptionErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"gemm size", func() error { _, err := Gemm(ctx, GemmOptions{Sizes: []int{8, 0}}); return err }, "size 0"},
		{"ekfac dim", func() error { _, err := EKFAC(ctx, EKFACOptions{Dim: 1}); return err }, "Dim 1, want ≥ 2"},
		{"ekfac chunk", func() error { _, err := EKFAC(ctx, EKFACOptions{Chunk: -1}); return err }, "Chunk -1"},
		{"ekfac model", func() error { _, err := EKFAC(ctx, EKFACOptions{Model: "cnn"}); return err }, `model "cnn"`},
		{"ekfac precision", func() error { _, err := EKFAC(ctx, EKFACOptions{Precision: "f16"}); return err }, `precision "f16"`},
		{"ekfac mlp widths", func() error {
			_, err := EKFAC(ctx, EKFACOptions{Model: ModelMLP, Layers: []int{784}})
			return err
		}, "mlp of 1 widths"},
		{"ekfac mlp width", func() error {
			_, err := EKFAC(ctx, EKFACOptions{Model: ModelMLP, Layers: []int{784, 0, 10}})
			return err
		}, "mlp width 1 is 0"},
		{"ekfac mlp train", func() error { _, err := EKFAC(ctx, EKFACOptions{Model: ModelMLP, Train: -2}); return err }, "Train -2"},
		{"stream rows", func() error { _, err := Stream(ctx, StreamOptions{Rows: -5}); return err }, "Rows -5"},
		{"stream topk", func() error { _, err := Stream(ctx, StreamOptions{TopK: -1}); return err }, "TopK -1"},
		{"stream dtype", func() error { _, err := Stream(ctx, StreamOptions{DType: "f8"}); return err }, `dtype "f8"`},
		{"stream other store", func() error {
			dir := filepath.Join(t.TempDir(), "store")
			opt := StreamOptions{Backend: cpuBackend(t), Rows: 10, Dim: 4, Queries: 1, Dir: dir}
			if _, err := Stream(ctx, opt); err != nil {
				return err
			}
			opt.Dim = 8
			_, err := Stream(ctx, opt)
			return err
		}, "holds a 10×4 f16 store, not 10×8 f16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestMachine(t *testing.T) {
	m := ThisMachine()
	if _, err := time.Parse(time.RFC3339, m.Date); err != nil {
		t.Errorf("date %q: %v", m.Date, err)
	}
	if m.CPUs < 1 || m.GOARCH == "" || m.GoVersion == "" || len(m.Day()) != len("2006-01-02") {
		t.Errorf("machine %+v, day %q", m, m.Day())
	}
	status := "Name:\tbench.test\nVmHWM:\t  1234 kB\n"
	if v, ok := procField(strings.NewReader(status), "VmHWM"); !ok || v != "1234 kB" {
		t.Errorf("procField: %q, %v", v, ok)
	}
	if _, ok := procField(strings.NewReader(status), "VmRSS"); ok {
		t.Error("procField found a field that is not there")
	}
}

// TestExact runs the exact-scoring benchmark on small stores, twice on the
// same directory (the second reuses the stores), and checks that every
// figure was measured and the table names them.
func TestExact(t *testing.T) {
	dir := t.TempDir()
	opt := ExactOptions{Backend: cpuBackend(t), SingleRows: 3000, SingleDim: 96, BatchRows: 1500, BatchDim: 200,
		BatchQueries: 5, Batches: []int{1, 4}, TopK: 3, Repeats: 2, Dir: dir}
	for range 2 {
		res, err := Exact(context.Background(), opt)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]float64{"one query": res.OneQuerySecs, "pass": res.PassSecs, "ratio": res.OneQueryRatio,
			"i8": res.I8GOPS, "kernel": res.KernelGOPS, "f16": res.F16GFLOPS, "i8/kernel": res.RatioKernel, "i8/f16": res.RatioF16} {
			if !positive(v) {
				t.Errorf("%s = %g", name, v)
			}
		}
		if len(res.OneQueryRuns) != 2 || len(res.Throughput) != 2 || res.Throughput[1].Queries != 4 || !positive(res.Throughput[1].F16PerSec) {
			t.Errorf("runs %v, throughput %+v", res.OneQueryRuns, res.Throughput)
		}
		if res.SingleBytes != 3000*96 || res.Kernel == "" {
			t.Errorf("single bytes %d, kernel %q", res.SingleBytes, res.Kernel)
		}
		var b bytes.Buffer
		if err := res.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"plain pass", "int8 kernel, in-memory rows", "f16 stream", "inferences per second"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("table lacks %q:\n%s", want, b.String())
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 4 {
		t.Errorf("%d stores in the directory (%v), want 4", len(entries), err)
	}
}

func TestAttribute(t *testing.T) {
	dir := t.TempDir()
	opt := AttributeOptions{Backend: cpuBackend(t), Rows: 2000, Dim: 64, Batches: []int{1, 7}, Contributors: 30, DataNets: 3,
		TopK: 4, Repeats: 2, Dir: dir}
	for range 2 { // the second run reuses the store
		res, err := Attribute(context.Background(), opt)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Batches) != 2 || res.Batches[1].Inferences != 7 || res.Kernel == "" || res.Rows != 2000 || res.TopK != 4 {
			t.Fatalf("result %+v", res)
		}
		for _, b := range res.Batches {
			if !positive(b.Secs) || !positive(b.ScoreSecs) || !positive(b.PerSec) || len(b.Runs) != 2 || len(b.ScoreRuns) != 2 ||
				!(b.Outside >= 0 && b.Outside < 1) || b.ScoreSecs > b.Secs {
				t.Errorf("batch %+v", b)
			}
		}
		if want := []string{"date", "cpus", "backend", "kernel", "rows", "dim", "contributors", "datanets", "topk", "open_seconds", "batches"}; !slices.Equal(jsonKeys(t, res), want) {
			t.Errorf("JSON keys %v, want %v", jsonKeys(t, res), want)
		}
		var b bytes.Buffer
		if err := res.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"inferences", "outside", "against 2000 × 64 i8"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("table lacks %q:\n%s", want, b.String())
			}
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 || entries[0].Name() != "I8-2000x64" {
		t.Errorf("directory holds %v (%v), want the one store I8-2000x64", entries, err)
	}
	if _, err := Attribute(context.Background(), AttributeOptions{Rows: -1}); err == nil {
		t.Error("negative rows: no error")
	}
}
