package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/models"
)

// runOK runs the command line and fails the test on error, returning stdout.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("goinfluence %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// readGrads opens a gradient file and returns its header and every example.
func readGrads(t *testing.T, path string) (*gradients.File, *gradients.Batch) {
	t.Helper()
	f, err := gradients.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	b, err := f.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return f, b
}

func ids(d *datasets.Dataset) []int64 {
	v := make([]int64, d.Len())
	for i, r := range d.Index {
		v[i] = int64(r)
	}
	return v
}

// TestTrainGradsMLP runs the pipeline of issue 3 from a checkpoint: an MLP
// trained on digits, then gradient files of its training split at sampled
// labels (for curvature) and of its test split at true labels (queries).
func TestTrainGradsMLP(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "mlp.safetensors")
	trainArgs := []string{"train", "--dataset", "digits", "--model", "mlp", "--hidden", "16", "--epochs", "3", "--out", ckpt}
	out := runOK(t, trainArgs...)
	for _, want := range []string{"mlp 64-16-10 relu", "on digits, split seed 0", "test accuracy", "objective"} {
		if !strings.Contains(out, want) {
			t.Errorf("train output lacks %q:\n%s", want, out)
		}
	}
	// Adam is seeded, so training again gives the same checkpoint.
	ckpt2 := filepath.Join(dir, "mlp2.safetensors")
	runOK(t, append(trainArgs[:len(trainArgs)-1], ckpt2)...)
	if !sameBytes(t, ckpt, ckpt2) {
		t.Error("same seeds gave different checkpoints")
	}

	path := func(name string) string { return filepath.Join(dir, name+".safetensors") }
	grads := func(out, split, labels string, extra ...string) {
		t.Helper()
		runOK(t, append([]string{"grads", "--checkpoint", ckpt, "--dataset", "digits", "--split", split,
			"--labels", labels, "--sample-seed", "7", "--dtype", "f32", "--out", path(out)}, extra...)...)
	}
	grads("train-sampled", "train", "sampled")
	grads("train-true", "train", "true")
	grads("test-true", "test", "true")
	grads("test-true-again", "test", "true")
	grads("test-first", "test", "true", "--first", "5")
	grads("all", "all", "true")
	// A checkpoint saved without a provenance record (by a library user,
	// or before the record existed) takes any split, with a warning.
	legacy := filepath.Join(dir, "legacy.safetensors")
	if m, err := models.Load(ckpt); err != nil {
		t.Fatal(err)
	} else if err := models.Save(legacy, m); err != nil {
		t.Fatal(err)
	}
	grads("test-seed1", "test", "true", "--split-seed", "1", "--checkpoint", legacy)

	train, test, err := datasets.LoadSplit(context.Background(), "digits", datasets.SplitOptions{Seed: 0})
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.Load(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file   string
		d      *datasets.Dataset
		labels []int
		meta   map[string]string
	}{
		{"train-sampled", train, models.SampleLabels(m, train.X, 7),
			map[string]string{"split": "train", "labels": "sampled", "sample_seed": "7", "split_seed": "0"}},
		{"train-true", train, train.Y, map[string]string{"split": "train", "labels": "true"}},
		{"test-true", test, test.Y, map[string]string{"split": "test", "labels": "true"}},
		{"test-first", test.Subset([]int{0, 1, 2, 3, 4}), test.Y[:5], map[string]string{"split": "test"}},
		{"all", datasets.Concat(train, test), append(slices.Clone(train.Y), test.Y...), map[string]string{"split": "all"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			f, got := readGrads(t, path(tc.file))
			if f.N() != tc.d.Len() {
				t.Fatalf("N = %d, want %d", f.N(), tc.d.Len())
			}
			want := []gradients.LayerInfo{
				{Name: "fc1", Factored: true, Tokens: 1, DIn: 65, DOut: 16, D: 65 * 16, DType: gradients.F32},
				{Name: "fc2", Factored: true, Tokens: 1, DIn: 17, DOut: 10, D: 17 * 10, DType: gradients.F32},
			}
			if !slices.Equal(f.Layers(), want) {
				t.Errorf("layers %+v, want %+v", f.Layers(), want)
			}
			if !slices.Equal(f.IDs(), ids(tc.d)) {
				t.Error("IDs are not the split's dataset indices")
			}
			md := f.Metadata()
			tc.meta["checkpoint"], tc.meta["dataset"], tc.meta["model"] = ckpt, "digits", "mlp"
			for k, v := range tc.meta {
				if md[k] != v {
					t.Errorf("metadata %q = %q, want %q", k, md[k], v)
				}
			}
			// The file must hold the loaded model's gradients at the file's
			// labels, up to rounding to float32.
			ref := m.Gradients(tc.d.X, tc.labels)
			for l := range ref.Layers {
				r, g := &ref.Layers[l], &got.Layers[l]
				for _, p := range [][2][]float64{{r.A, g.A}, {r.S, g.S}} {
					for i, w := range p[0] {
						if math.Abs(p[1][i]-w) > 0x1p-24*math.Abs(w)+0x1p-149 {
							t.Fatalf("layer %s: value %d is %v, want %v within float32 rounding", r.Name, i, p[1][i], w)
						}
					}
				}
			}
		})
	}

	// Activations do not depend on the labels; output gradients do.
	_, sampled := readGrads(t, path("train-sampled"))
	_, truth := readGrads(t, path("train-true"))
	for l := range sampled.Layers {
		if !slices.Equal(sampled.Layers[l].A, truth.Layers[l].A) {
			t.Errorf("layer %s: activations differ between sampled and true labels", sampled.Layers[l].Name)
		}
		if slices.Equal(sampled.Layers[l].S, truth.Layers[l].S) {
			t.Errorf("layer %s: output gradients at sampled labels equal those at true labels", sampled.Layers[l].Name)
		}
	}

	if !sameBytes(t, path("test-true"), path("test-true-again")) {
		t.Error("same arguments gave different gradient files")
	}
	if f, _ := readGrads(t, path("test-seed1")); slices.Equal(f.IDs(), ids(test)) {
		t.Error("--split-seed 1 gave the rows of split seed 0")
	}
}

// TestTrainGradsLogistic trains logistic regression on breast cancer to its
// optimum, where the mean per-example gradient balances the penalty.
func TestTrainGradsLogistic(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "logistic.safetensors")
	out := runOK(t, "train", "--dataset", "breast-cancer", "--model", "logistic", "--l2", "1e-2", "--split-seed", "3", "--out", ckpt)
	if !strings.Contains(out, "logistic 30-2 (λ = 0.01) on breast-cancer, split seed 3: 455 training, 114 test examples") {
		t.Errorf("train output:\n%s", out)
	}
	gpath := filepath.Join(dir, "grads.safetensors")
	runOK(t, "grads", "--checkpoint", ckpt, "--dataset", "breast-cancer", "--split", "train", "--split-seed", "3", "--dtype", "f64", "--out", gpath)
	f, b := readGrads(t, gpath)
	want := []gradients.LayerInfo{{Name: "linear", Factored: true, Tokens: 1, DIn: 31, DOut: 1, D: 31, DType: gradients.F64}}
	if f.N() != 455 || !slices.Equal(f.Layers(), want) {
		t.Fatalf("N = %d, layers %+v", f.N(), f.Layers())
	}
	train, _, err := datasets.LoadSplit(context.Background(), "breast-cancer", datasets.SplitOptions{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.IDs(), ids(train)) {
		t.Error("IDs are not the training split's dataset indices")
	}
	m, err := models.Load(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	// ∇R = (1/N) Σ_n g_n + λθ vanishes at the optimum Newton's method found.
	g := b.Flatten()
	for j, th := range m.Params() {
		s := 0.0
		for n := 0; n < g.Rows; n++ {
			s += g.At(n, j)
		}
		if r := s/float64(g.Rows) + m.L2()*th; math.Abs(r) > 1e-8 {
			t.Errorf("∂R/∂θ_%d = %g from the file's gradients, want 0", j, r)
		}
	}
}

func TestTrainGradsErrors(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "bc.safetensors")
	runOK(t, "train", "--dataset", "breast-cancer", "--model", "logistic", "--out", ckpt)
	junk := filepath.Join(dir, "junk.safetensors")
	if err := os.WriteFile(junk, []byte("not a checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.safetensors")
	grads := func(args ...string) []string {
		return append([]string{"grads", "--checkpoint", ckpt, "--dataset", "breast-cancer", "--split", "test", "--out", out}, args...)
	}
	train := func(args ...string) []string {
		return append([]string{"train", "--dataset", "digits", "--model", "mlp", "--out", out}, args...)
	}
	tests := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"train no out", []string{"train", "--dataset", "digits", "--model", "mlp"}, "--out is required", true},
		{"train no model", []string{"train", "--dataset", "digits", "--out", out}, "--model is required", true},
		{"train bad model", train("--model", "tree"), `--model "tree"`, true},
		{"train no dataset", []string{"train", "--model", "mlp", "--out", out}, "--dataset is required", true},
		{"train unknown dataset", train("--dataset", "iris"), `unknown dataset "iris"`, true},
		{"train logistic digits", train("--model", "logistic"), "digits has 10 classes", true},
		{"train bad hidden", train("--hidden", "32,x"), `--hidden: "x"`, true},
		{"train zero hidden", train("--hidden", "0"), `--hidden: "0"`, true},
		{"train bad activation", train("--activation", "gelu"), `--activation "gelu"`, true},
		{"train zero epochs", train("--epochs", "0"), "--epochs and --batch", true},
		{"train bad lr", train("--lr", "-1"), "--lr -1", true},
		{"train bad l2", train("--l2", "NaN"), "--l2 NaN", true},
		{"train extra", train("extra"), `unexpected argument "extra"`, true},
		{"grads no out", []string{"grads", "--checkpoint", ckpt, "--dataset", "digits", "--split", "train"}, "--out is required", true},
		{"grads no checkpoint", []string{"grads", "--dataset", "digits", "--split", "train", "--out", out}, "--checkpoint is required", true},
		{"grads no split", grads("--split", ""), "--split is required", true},
		{"grads unknown dataset", grads("--dataset", "iris"), `unknown dataset "iris"`, true},
		{"grads bad split", grads("--split", "val"), `--split "val"`, true},
		{"grads bad dtype", grads("--dtype", "f8"), `--dtype "f8"`, true},
		{"grads bad labels", grads("--labels", "soft"), `--labels "soft"`, true},
		{"grads first 0", grads("--first", "0"), "--first 0 must be at least 1", true},
		{"grads first too many", grads("--first", "115"), "--first 115, but the test split of breast-cancer has 114", true},
		{"grads wrong dataset", grads("--dataset", "digits"), "was trained on breast-cancer (split seed 0, 455 train / 114 test); --dataset digits asks for another data set", false},
		{"grads missing checkpoint", grads("--checkpoint", filepath.Join(dir, "none.safetensors")), "none.safetensors", false},
		{"grads junk checkpoint", grads("--checkpoint", junk), "junk.safetensors", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if errors.Is(err, errUsage) != tc.usage {
				t.Errorf("errors.Is(err, errUsage) = %v, want %v", !tc.usage, tc.usage)
			}
		})
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed command left %s behind (%v)", out, err)
	}
}

func sameBytes(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}
