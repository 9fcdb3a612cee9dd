package eval

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

func TestAUC(t *testing.T) {
	tests := []struct {
		name   string
		scores []float64
		pos    []bool
		want   float64
	}{
		{"perfect", []float64{3, 2, 1, 0}, []bool{true, true, false, false}, 1},
		{"reversed", []float64{0, 1, 2, 3}, []bool{true, true, false, false}, 0},
		{"all tied", []float64{1, 1, 1, 1}, []bool{true, false, true, false}, 0.5},
		// Positive 0.9 beats the three negatives, 0.7 beats two of them: 5/6.
		{"interleaved", []float64{0.9, 0.8, 0.7, 0.6, 0.5}, []bool{true, false, true, false, false}, 5.0 / 6},
		// Positive 2 beats both negatives, positive 1 ties one (½) and beats one: 3.5/4.
		{"tie across classes", []float64{2, 1, 1, 0}, []bool{true, true, false, false}, 0.875},
		// Positive −1 beats no negative, positive 3 beats only 0: 1/6.
		{"unsorted", []float64{5, -1, 3, 4, 0}, []bool{false, true, true, false, false}, 1.0 / 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AUC(tc.scores, tc.pos); math.Abs(got-tc.want) > 1e-12 {
				t.Fatalf("AUC = %v, want %v", got, tc.want)
			}
			// The ROC curve runs from (0,0) to (1,1) and its trapezoid
			// area is the AUC (ties are the diagonal segments).
			fpr, tpr := ROC(tc.scores, tc.pos)
			n := len(fpr)
			if fpr[0] != 0 || tpr[0] != 0 || fpr[n-1] != 1 || tpr[n-1] != 1 {
				t.Fatalf("ROC from (%v,%v) to (%v,%v)", fpr[0], tpr[0], fpr[n-1], tpr[n-1])
			}
			area := 0.0
			for i := 1; i < n; i++ {
				area += (fpr[i] - fpr[i-1]) * (tpr[i] + tpr[i-1]) / 2
			}
			if math.Abs(area-tc.want) > 1e-12 {
				t.Fatalf("area under ROC = %v, want %v", area, tc.want)
			}
		})
	}
	for _, bad := range [][]bool{{true, true}, {false, false}} {
		if !math.IsNaN(AUC([]float64{1, 2}, bad)) {
			t.Errorf("AUC with one class empty is not NaN")
		}
	}
	if !math.IsNaN(AUC([]float64{1, math.NaN()}, []bool{true, false})) {
		t.Error("AUC with a NaN score is not NaN")
	}
}

func TestFlipLabels(t *testing.T) {
	train, _, err := datasets.LoadSplit(context.Background(), "digits", datasets.SplitOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	noisy, flipped := FlipLabels(train, 0.1, 7)
	again, _ := FlipLabels(train, 0.1, 7)
	k := 0
	for i := range flipped {
		if flipped[i] {
			k++
			if noisy.Y[i] == train.Y[i] {
				t.Fatalf("example %d flipped to its own label", i)
			}
		} else if noisy.Y[i] != train.Y[i] {
			t.Fatalf("example %d changed without being flipped", i)
		}
		if noisy.Y[i] != again.Y[i] {
			t.Fatal("flipping is not reproducible for a seed")
		}
	}
	if want := int(0.1*float64(train.Len()) + 0.5); k != want {
		t.Fatalf("%d labels flipped, want %d", k, want)
	}
}

// TestOutputGradients checks ∇(−f) of every output against central
// differences of f along random directions, for the three model families.
func TestOutputGradients(t *testing.T) {
	train, _, err := datasets.LoadSplit(context.Background(), "digits", datasets.SplitOptions{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	d := train.Subset([]int{0, 1, 2, 3, 4, 5})
	bin := &datasets.Dataset{Name: "bin", X: d.X, Y: []int{0, 1, 1, 0, 1, 0}, Classes: 2, Index: d.Index}
	mlp, err := models.NewMLP([]int{64, 7, 10}, models.Tanh, 1e-3, 3)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		m    models.Model
		d    *datasets.Dataset
	}{
		{"logistic", models.NewLogistic(64, 1e-2), bin},
		{"softmax", models.NewSoftmax(64, 10, 1e-2), d},
		{"mlp", mlp, d},
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for _, tc := range tests {
		for i := range tc.m.Params() {
			tc.m.Params()[i] += 0.3 * rng.NormFloat64()
		}
		for _, o := range models.Outputs {
			t.Run(tc.name+"/"+string(o), func(t *testing.T) {
				g := models.OutputGradients(tc.m, tc.d.X, tc.d.Y, o).Flatten()
				theta := tc.m.Params()
				v := make([]float64, len(theta))
				for i := range v {
					v[i] = rng.NormFloat64()
				}
				const h = 1e-5
				f := func(s float64) []float64 {
					orig := append([]float64(nil), theta...)
					defer copy(theta, orig)
					for i := range theta {
						theta[i] += s * v[i]
					}
					return models.OutputValues(tc.m, tc.d.X, tc.d.Y, []models.Output{o})[o]
				}
				fp, fm := f(h), f(-h)
				for n := 0; n < tc.d.Len(); n++ {
					fd := -(fp[n] - fm[n]) / (2 * h)
					an := 0.0
					for i, gi := range g.Row(n) {
						an += gi * v[i]
					}
					if math.Abs(fd-an) > 1e-6*math.Max(1, math.Abs(fd)) {
						t.Errorf("example %d: ⟨∇(−f), v⟩ = %.10g, finite difference %.10g", n, an, fd)
					}
				}
			})
		}
	}
}

// quick returns a small setup on a built-in data set.
func quick(t *testing.T, dataset, model string) Setup {
	t.Helper()
	s, err := DefaultSetup(dataset, model)
	if err != nil {
		t.Fatal(err)
	}
	if model == "mlp" {
		s.Hidden, s.NTrain, s.NTest, s.Epochs, s.Checkpoints = []int{16}, 300, 40, 8, 4
	}
	return s
}

// TestLDSAndAUCThresholds holds exact influence to real thresholds on the
// built-in data, with few subsets. Measured values (m = 20 subsets, output
// margin): breast-cancer LDS 0.921, digits 0.989; digits noisy-label AUC of
// exact self-influence 0.996. Identity, which ignores the curvature, must
// stay below exact on LDS.
func TestLDSAndAUCThresholds(t *testing.T) {
	tests := []struct {
		dataset string
		minLDS  float64
		minAUC  float64 // 0: not measured
	}{
		{"breast-cancer", 0.88, 0},
		{"digits", 0.97, 0.97},
	}
	for _, tc := range tests {
		t.Run(tc.dataset, func(t *testing.T) {
			ctx := context.Background()
			task, err := NewTask(ctx, quick(t, tc.dataset, "lr"), TaskOptions{CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			res, err := task.Quality(ctx, QualityOptions{
				Methods: []string{"exact", "identity"},
				LDS:     LDSOptions{Subsets: 20},
				LOO:     LOOTruthOptions{Removals: 20},
				NoAUC:   tc.minAUC == 0,
			})
			if err != nil {
				t.Fatal(err)
			}
			exact, identity := res.Rows[0], res.Rows[1]
			t.Logf("%s: exact LOO %s LDS %s AUC %s; identity LDS %s", tc.dataset,
				fmtOpt(exact.LOO), fmtOpt(exact.LDS), fmtOpt(exact.AUC), fmtOpt(identity.LDS))
			if exact.LDS == nil || *exact.LDS < tc.minLDS {
				t.Errorf("exact LDS %s < %.2f", fmtOpt(exact.LDS), tc.minLDS)
			}
			if exact.LOO == nil || *exact.LOO < 0.97 {
				t.Errorf("exact LOO Pearson %s < 0.97", fmtOpt(exact.LOO))
			}
			if identity.LDS == nil || *identity.LDS > *exact.LDS-0.05 {
				t.Errorf("identity LDS %s not below exact %s", fmtOpt(identity.LDS), fmtOpt(exact.LDS))
			}
			if tc.minAUC > 0 && (exact.AUC == nil || *exact.AUC < tc.minAUC) {
				t.Errorf("exact noisy-label AUC %s < %.2f", fmtOpt(exact.AUC), tc.minAUC)
			}
		})
	}
}

// TestCacheRoundTrip runs a table twice on one cache directory: the
// second run must retrain nothing and give the same numbers.
func TestCacheRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opt := QualityOptions{
		Methods: []string{"exact", "ekfac", "tracin"},
		LDS:     LDSOptions{Subsets: 8}, LOO: LOOTruthOptions{Removals: 6},
	}
	var first *QualityResult
	for run := 0; run < 2; run++ {
		task, err := NewTask(ctx, quick(t, "breast-cancer", "lr"), TaskOptions{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		res, err := task.Quality(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		if run == 0 {
			// reference, LDS subsets, LOO removals, noisy model, two TracIn runs
			if want := 1 + 8 + 6 + 1 + 2; task.Retrained() != want {
				t.Fatalf("first run trained %d models, want %d", task.Retrained(), want)
			}
			first = res
			continue
		}
		if task.Retrained() != 0 || res.Retrained != 0 {
			t.Fatalf("second run trained %d models", task.Retrained())
		}
		for i, row := range res.Rows {
			a, b := first.Rows[i], row
			if *a.LDS != *b.LDS || *a.LOO != *b.LOO || *a.AUC != *b.AUC {
				t.Errorf("%s: %+v then %+v", row.Method, a, b)
			}
		}
	}
	// A different option is a different ground truth.
	task, err := NewTask(ctx, quick(t, "breast-cancer", "lr"), TaskOptions{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := task.LDSTruth(ctx, LDSOptions{Subsets: 8, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if task.Retrained() != 8 {
		t.Fatalf("new subset seed retrained %d models, want 8", task.Retrained())
	}
}

// TestDeterministicAcrossWorkers computes LDS ground truths with one
// worker and GOMAXPROCS 1, then with four workers: bit-identical, for the
// convex model and the MLP.
func TestDeterministicAcrossWorkers(t *testing.T) {
	for _, model := range []string{"lr", "mlp"} {
		t.Run(model, func(t *testing.T) {
			ctx := context.Background()
			s := quick(t, "digits", model)
			if model == "lr" {
				s.NTrain = 400
			}
			opt := LDSOptions{Subsets: 4, Seeds: 2}
			var outs []map[models.Output][][]float64
			for _, cfg := range []struct{ procs, workers int }{{1, 1}, {4, 4}} {
				prev := runtime.GOMAXPROCS(cfg.procs)
				task, err := NewTask(ctx, s, TaskOptions{NoCache: true, Workers: cfg.workers})
				if err == nil {
					var tr *LDSTruth
					if tr, err = task.LDSTruth(ctx, opt); err == nil {
						outs = append(outs, tr.Outputs)
					}
				}
				runtime.GOMAXPROCS(prev)
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, o := range models.Outputs {
				for j := range outs[0][o] {
					for q, v := range outs[0][o][j] {
						if w := outs[1][o][j][q]; v != w {
							t.Fatalf("%s subset %d test %d: %v with one worker, %v with four", o, j, q, v, w)
						}
					}
				}
			}
		})
	}
}

// TestMLPQuality runs the MLP path end to end on a small digits split
// (300 training examples, a 64-16-10 MLP): exact GGN influence, EK-FAC and
// TRAK must predict the retrained MLPs' margins and find flipped labels.
func TestMLPQuality(t *testing.T) {
	ctx := context.Background()
	task, err := NewTask(ctx, quick(t, "digits", "mlp"), TaskOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := task.Quality(ctx, QualityOptions{
		Methods: []string{"exact", "ekfac", "trak-1"},
		LDS:     LDSOptions{Subsets: 12}, NoLOO: true,
		Config:  MethodConfig{TRAKDim: 256},
		PlotDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows[0].Skipped != "" {
		t.Errorf("exact skipped on a %d-parameter MLP: %s", res.Params, res.Rows[0].Skipped)
	}
	// Measured: LDS exact 0.378, EK-FAC 0.570, TRAK-1 0.363; AUC 0.941,
	// 0.928, 0.971.
	minLDS := map[string]float64{"exact": 0.28, "ekfac": 0.45, "trak-1": 0.25}
	for _, row := range res.Rows {
		t.Logf("%s: LDS %s AUC %s", row.Method, fmtOpt(row.LDS), fmtOpt(row.AUC))
		if row.LDS == nil || *row.LDS < minLDS[row.Key] {
			t.Errorf("%s: LDS %s < %.2f", row.Method, fmtOpt(row.LDS), minLDS[row.Key])
		}
		if row.AUC == nil || *row.AUC < 0.85 {
			t.Errorf("%s: AUC %s < 0.85", row.Method, fmtOpt(row.AUC))
		}
	}
	if len(res.Plots) != 2 {
		t.Fatalf("plots %v", res.Plots)
	}
	for _, p := range res.Plots {
		if st, err := os.Stat(p); err != nil || st.Size() < 1000 {
			t.Errorf("plot %s not written: %v", p, err)
		}
	}
	// Exact is skipped, with its reason, when the model is too large.
	_, err = task.Scores(ctx, "exact", nil, models.Margin, MethodConfig{ExactMaxParams: 100})
	if !errors.Is(err, ErrSkipped) {
		t.Errorf("exact on %d parameters with a limit of 100: %v", res.Params, err)
	}
	if _, err := task.Scores(ctx, "cg", nil, models.Margin, MethodConfig{}); err != nil && !errors.Is(err, ErrSkipped) {
		t.Errorf("cg: %v", err)
	}
}

// TestMNIST loads MNIST (skipping when it cannot be fetched) and, with
// GOINFLUENCE_MNIST_QUALITY=1, measures exact influence of softmax
// regression on it against the goals.
func TestMNIST(t *testing.T) {
	ctx := context.Background()
	train, test, err := datasets.LoadSplit(ctx, "mnist", datasets.SplitOptions{})
	if errors.Is(err, datasets.ErrUnavailable) {
		t.Skipf("MNIST not available: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != 5000 || test.Len() != 500 || train.X.Cols != 784 {
		t.Fatalf("MNIST %d/%d × %d", train.Len(), test.Len(), train.X.Cols)
	}
	for _, v := range train.X.Data {
		if v < 0 || v > 1 {
			t.Fatalf("pixel %v outside [0, 1]", v)
		}
	}
	if os.Getenv("GOINFLUENCE_MNIST_QUALITY") != "1" {
		t.Skip("set GOINFLUENCE_MNIST_QUALITY=1 to measure the MNIST table")
	}
	s, _ := DefaultSetup("mnist", "lr")
	task, err := NewTask(ctx, s, TaskOptions{Progress: func(s string, _, _ int) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := task.Quality(ctx, QualityOptions{Methods: []string{"exact"}, NoAUC: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.Markdown())
	if r := res.Rows[0]; r.LOO == nil || *r.LOO < 0.90 || r.LDS == nil || *r.LDS < 0.82 {
		t.Errorf("exact: LOO %s (goal 0.90), LDS %s (goal 0.82)", fmtOpt(r.LOO), fmtOpt(r.LDS))
	}
}

// TestPlotLDS writes the scatter of a hand-made ground truth.
func TestPlotLDS(t *testing.T) {
	truth := &LDSTruth{
		Subsets: [][]int{{0}, {1}, {0, 1}},
		Outputs: map[models.Output][][]float64{models.Margin: {{1, 0}, {2, 1}, {3, 2}}},
	}
	scores := linalg.NewDense64(2, 2, []float64{1, 2, 0.5, 0.25})
	r, err := LDS(truth, scores, models.Margin)
	if err != nil {
		t.Fatal(err)
	}
	// Test 0: predictions 1, 2, 3 against 1, 2, 3; test 1: 0.5, 0.25, 0.75 against 0, 1, 2.
	if r.PerTest[0] != 1 || math.Abs(r.PerTest[1]-0.5) > 1e-12 || math.Abs(r.Mean-0.75) > 1e-12 {
		t.Fatalf("LDS %v per test %v", r.Mean, r.PerTest)
	}
	out := filepath.Join(t.TempDir(), "lds.png")
	if err := PlotLDS(out, truth, scores, models.Margin, r, "test"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Size() < 1000 {
		t.Fatalf("plot not written: %v", err)
	}
}

// TestQualityMethodFails checks that a method that stops with an error
// (CG held to an unreachable tolerance) costs the table its row only.
func TestQualityMethodFails(t *testing.T) {
	ctx := context.Background()
	task, err := NewTask(ctx, quick(t, "breast-cancer", "lr"), TaskOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := task.Quality(ctx, QualityOptions{
		Methods: []string{"cg", "identity"},
		LDS:     LDSOptions{Subsets: 6}, NoLOO: true, NoAUC: true,
		Config: MethodConfig{CGTol: 1e-15, CGMaxIter: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	cg, id := res.Rows[0], res.Rows[1]
	if cg.Failed == "" || cg.LDS != nil {
		t.Errorf("CG after one iteration: failed %q, LDS %s", cg.Failed, fmtOpt(cg.LDS))
	}
	if id.Failed != "" || id.LDS == nil {
		t.Errorf("identity after a failed method: failed %q, LDS %s", id.Failed, fmtOpt(id.LDS))
	}
	if md := res.Markdown(); !strings.Contains(md, "| CG | – | – | – | – | failed: ") {
		t.Errorf("table does not show the failure:\n%s", md)
	}
	// Truncated, the same solve scores and says how far it got.
	res, err = task.Quality(ctx, QualityOptions{
		Methods: []string{"cg"},
		LDS:     LDSOptions{Subsets: 6}, NoLOO: true, NoAUC: true,
		Config: MethodConfig{CGTol: 1e-15, CGMaxIter: 1, CGTruncate: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cg := res.Rows[0]; cg.Failed != "" || cg.LDS == nil || len(cg.Notes) != 1 || !strings.Contains(cg.Notes[0], "truncated at 1 iterations") {
		t.Errorf("truncated CG: failed %q, LDS %s, notes %q", cg.Failed, fmtOpt(cg.LDS), cg.Notes)
	}
}
