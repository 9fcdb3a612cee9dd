package eval

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/models"
)

func ptr(v float64) *float64 { return &v }

// smallQuality is a constructed quality result with a measured, a skipped
// and a failed row.
func smallQuality() *QualityResult {
	return &QualityResult{
		Setup:   Setup{Dataset: "digits"},
		Options: QualityOptions{Output: models.Margin},
		Model:   "softmax", NTrain: 100, NTest: 10, Backend: "cpu",
		Rows: []QualityRow{
			{Key: "exact", Method: "exact (Cholesky)", LOO: ptr(0.98765), LDS: ptr(0.5), AUC: ptr(0.91234), Seconds: 1.5, SelfSeconds: 0.25},
			{Key: "identity", Method: "identity", Seconds: 2},
			{Key: "cg", Method: "CG", Skipped: "too many parameters"},
			{Key: "lissa", Method: "LiSSA", Failed: "diverged"},
		},
		Retrained: 12, TruthSeconds: 3.25,
	}
}

func TestQualityWriteText(t *testing.T) {
	const rest = "" +
		"identity                                      –   (2.00 s)\n" +
		"CG                                       skipped: too many parameters\n" +
		"LiSSA                                    failed: diverged\n" +
		"ground truth: 12 models trained this run (0 = all from the cache), 3.2 s\n"
	tests := []struct {
		protocol Protocol
		want     string
	}{
		{ProtocolLDS, "LDS on digits, softmax (N = 100, 10 test points, output margin, backend cpu)\n" +
			"exact (Cholesky)                         0.5000   (1.75 s)\n" + rest},
		{ProtocolAUC, "noisy-label AUC on digits, softmax (N = 100, 10 test points, output margin, backend cpu)\n" +
			"exact (Cholesky)                         0.9123   (1.75 s)\n" + rest},
		{ProtocolLOO, "LOO on digits, softmax (N = 100, 10 test points, output margin, backend cpu)\n" +
			"exact (Cholesky)                         0.9877   (1.75 s)\n" + rest},
	}
	for _, tc := range tests {
		t.Run(string(tc.protocol), func(t *testing.T) {
			var b strings.Builder
			if err := smallQuality().WriteText(&b, tc.protocol); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
		})
	}
	if err := smallQuality().WriteText(io.Discard, "ldx"); err == nil || !strings.Contains(err.Error(), `unknown protocol "ldx"`) {
		t.Errorf("unknown protocol: %v", err)
	}
	if got := smallQuality().Failed(); !reflect.DeepEqual(got, []string{"lissa"}) {
		t.Errorf("Failed() = %v, want [lissa]", got)
	}
}

// errWriter fails every write, standing in for a closed pipe.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }

func TestWriteText(t *testing.T) {
	loo := &LOOResult{
		Dataset: "breast-cancer", Model: "logistic", L2: 0.01, NTrain: 455, Backend: "cpu", Method: "exact",
		PerTest: []LOOTest{{Test: 3, Pearson: 0.99, Spearman: 0.95}, {Test: 17, Pearson: 0.985, Spearman: 0.9}},
		Pearson: 0.9876, Spearman: 0.93, Points: make([]LOOPoint, 20), Retrained: 20, GradNorm: 3e-9, Seconds: 1.23,
	}
	curv := &CurvatureResult{
		Dataset: "digits", Model: "mlp 64-32-10 relu", Params: 2410, L2: 1e-3, NTrain: 1437, NTest: 360, Seed: 2,
		Fisher: "sampled", Samples: 1, TrainAccuracy: 0.99, TestAccuracy: 0.975, TestIndex: []int{1, 2}, Backend: "cpu", Seconds: 4.56,
		Rows: []CurvatureRow{{Method: "ekfac", Damping: 0.01, Reference: "block", Pearson: 0.9, Spearman: 0.8, MinPearson: 0.7, PooledPearson: 0.95, PooledSpearman: 0.85}},
	}
	proj := &ProjectionResult{Model: "mlp 64-32-10 relu", Seed: 1, ProjSeed: 5, Damping: "heuristic", TestIndex: []int{4},
		Rows: []ProjectionRow{{K: 16, Pearson: 0.9, Spearman: 0.8, Pooled: 0.85}}}
	tests := []struct {
		name  string
		write func(io.Writer) error
		want  string
	}{
		{"loo", loo.WriteText, "" +
			"LOO validation of exact influence, breast-cancer logistic (λ = 0.01, N = 455, backend cpu)\n" +
			"test          Pearson   Spearman\n" +
			"3              0.9900     0.9500\n" +
			"17             0.9850     0.9000\n" +
			"all            0.9876     0.9300   (20 points, 20 retrainings, max ‖∇R‖ 3e-09, 1.2 s)\n"},
		{"curvature", curv.WriteText, "" +
			"mlp 64-32-10 relu (2410 parameters, λ = 0.001) on digits: 1437 train, 360 test, seed 2; train accuracy 99.00%, test accuracy 97.50%\n" +
			"approximations fitted on the true Fisher, 1 sampled label(s) per example; correlations with exact influence, mean over 2 test points (backend cpu, 4.6 s)\n" +
			"method           δ GGN      Pearson  Spearman     min P  pooled P  pooled S\n" +
			"ekfac         0.01 block     0.9000    0.8000    0.7000    0.9500    0.8500\n"},
		{"projection", proj.WriteText, "" +
			"mlp 64-32-10 relu on digits, split seed 1, projection seed 5, damping heuristic; mean over 1 test points.\n\n" +
			"| k_in = k_out | Spearman | Pearson | pooled Spearman |\n|---:|---:|---:|---:|\n" +
			"| 16 | 0.800 | 0.900 | 0.850 |\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := tc.write(&b); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
			if err := tc.write(errWriter{}); err == nil {
				t.Error("write error not returned")
			}
		})
	}
}

func TestParseMethods(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", nil, ""},
		{"all", nil, ""},
		{"exact, ekfac,,identity", []string{"exact", "ekfac", "identity"}, ""},
		{"exact,nope", nil, `unknown method "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMethods(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if keys := MethodKeys(); !strings.HasPrefix(keys, Methods()[0].Key+", ") {
		t.Errorf("MethodKeys() = %q", keys)
	}
}

// TestRunBadSpec checks that the entry points refuse bad parameters before
// training anything.
func TestRunBadSpec(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"dataset", func() error { _, err := OpenTask(ctx, TaskSpec{Dataset: "iris", Model: "lr"}); return err }, `unknown dataset "iris"`},
		{"negative", func() error {
			_, err := OpenTask(ctx, TaskSpec{Dataset: "digits", Model: "lr", NTrain: -1})
			return err
		}, "n-train -1"},
		{"loo mlp", func() error {
			_, err := RunLOO(ctx, LOORun{Task: TaskSpec{Dataset: "digits", Model: "mlp"}})
			return err
		}, "needs model lr"},
		{"loo method", func() error {
			_, err := RunLOO(ctx, LOORun{Task: TaskSpec{Dataset: "digits", Model: "lr"}, Method: "nope"})
			return err
		}, `unknown method "nope"`},
		{"quality", func() error {
			_, err := RunQuality(ctx, QualityRun{Task: TaskSpec{Dataset: "digits", Model: "cnn"}})
			return err
		}, `unknown model "cnn"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
