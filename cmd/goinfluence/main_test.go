package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDemo(t *testing.T) {
	var out, errOut bytes.Buffer
	png := filepath.Join(t.TempDir(), "grid.png")
	if err := run(context.Background(), []string{"demo", "--queries", "2", "--k", "2", "--png", png}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	s := out.String()
	for _, want := range []string{"Test digit #", "most helpful", "most harmful", "██"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Errorf("PNG not written: %v", err)
	}
}

func TestValidateLOOJSON(t *testing.T) {
	t.Setenv("GOINFLUENCE_CACHE", t.TempDir())
	var out, errOut bytes.Buffer
	args := []string{"validate", "loo", "--dataset", "breast-cancer", "--test-points", "2", "--remove", "10", "--json"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var res struct {
		Pearson, Spearman float64
		Points            int
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out.String())
	}
	if res.Points != 20 || res.Pearson < 0.9 || res.Spearman < 0.9 {
		t.Errorf("got %+v", res)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"validate"}, "needs a protocol"},
		{[]string{"validate", "ldx"}, `unknown validation protocol "ldx" (have loo, lds, auc, quality, curvature, projection, rank)`},
		{[]string{"validate", "lds", "--method", "nope", "--no-cache"}, `unknown method "nope"`},
		{[]string{"validate", "lds", "--output", "nope"}, `unknown output "nope"`},
		{[]string{"validate", "auc", "--model", "cnn"}, `unknown model "cnn"`},
		{[]string{"validate", "loo", "--model", "mlp"}, "needs --model lr"},
		{[]string{"validate", "loo", "--dataset", "iris"}, `unknown dataset "iris"`},
		{[]string{"validate", "loo", "--remove", "x"}, "invalid value"},
		{[]string{"demo", "extra"}, `unexpected argument "extra"`},
		{[]string{"demo", "--k", "0"}, "at least 1"},
		{[]string{"bench", "gemm", "--sizes", "0"}, "bad size"},
		{[]string{"bench", "attribute", "--batches", "1,x"}, `bad count "x"`},
		{[]string{"bench", "attribute", "--rows", "0"}, "sizes must be positive"},
		{[]string{"bench", "ekfac", "--model", "cnn"}, `--model "cnn": want layer or mlp`},
		{[]string{"bench", "ekfac", "--model", "mlp", "--layers", "784"}, "want at least two widths"},
		{[]string{"bench", "ekfac", "--train", "-1"}, "sizes must be positive"},
		{[]string{"validate", "rank", "--model", "lr"}, `--model "lr": want mlp`},
		{[]string{"validate", "rank", "--ranks", "8,0"}, `--ranks "8,0"`},
		{[]string{"validate", "rank", "--precision", "f16"}, `unknown precision "f16"`},
		{[]string{"bench", "ekfac", "--precision", "f16"}, `--precision "f16": want f64, f32 or both`},
		// A method that fails is reported in its row and in the exit status.
		{[]string{"validate", "lds", "--dataset", "breast-cancer", "--method", "cg,identity", "--subsets", "4", "--no-cache",
			"--cg-max-iter", "1", "--cg-tol", "1e-15"}, "method(s) failed: cg"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error()+errOut.String(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Setenv("GOINFLUENCE_BACKEND", "nope")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"demo"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), `unknown backend "nope"`) {
		t.Errorf("forced unknown backend: %v", err)
	}
	t.Setenv("GOINFLUENCE_BACKEND", "")
	if err := run(context.Background(), []string{"demo", "-h"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestBenchGemm(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"bench", "gemm", "--sizes", "32", "--time", "1ms"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "cpu") || !strings.Contains(out.String(), "sgemm") {
		t.Errorf("bench table:\n%s", out.String())
	}
}

func TestBenchEKFACMLP(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"bench", "ekfac", "--model", "mlp", "--layers", "6,5,3", "--train", "7", "--queries", "2",
		"--dim", "16", "--time", "1ms", "--backend", "cpu"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, s := range []string{"MLP 6-5-3 with biases", "fit 7, pairwise scores 2 queries × 7 training examples", "pairwise 2·Q·N"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("bench table lacks %q:\n%s", s, out.String())
		}
	}
}

func TestBenchAttribute(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"bench", "attribute", "--rows", "500", "--dim", "32", "--batches", "1,3", "--contributors", "7",
		"--datanets", "2", "--repeats", "1", "--dir", t.TempDir(), "--backend", "cpu"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "against 500 × 32 i8") || !strings.Contains(out.String(), "outside") {
		t.Errorf("bench table:\n%s", out.String())
	}
}

// TestValidateProtocols runs lds, auc and quality on the small built-in
// data sets with few retrainings, through the command line.
func TestValidateProtocols(t *testing.T) {
	cache := t.TempDir()
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want []string // in stdout
		plot string
	}{
		{"lds", []string{"validate", "lds", "--dataset", "breast-cancer", "--method", "exact,identity", "--subsets", "10",
			"--plot", filepath.Join(dir, "lds.png")}, []string{"LDS on breast-cancer", "exact (Cholesky)", "identity"}, "lds.png"},
		{"auc", []string{"validate", "auc", "--dataset", "digits", "--n-train", "500", "--method", "ekfac",
			"--plot", filepath.Join(dir, "roc.png")}, []string{"noisy-label AUC on digits", "EK-FAC"}, "roc.png"},
		{"quality", []string{"validate", "quality", "--dataset", "breast-cancer", "--method", "exact,cg,tracin,trak-1",
			"--subsets", "8", "--removals", "6", "--trak-dim", "64", "--out-json", filepath.Join(dir, "q.json")},
			[]string{"| method | LOO (Pearson) |", "| TracIn-CP |", "| CG |", "| TRAK-1 |"}, "q.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := run(context.Background(), append(tc.args, "--cache", cache), &out, &errOut); err != nil {
				t.Fatalf("%v\n%s", err, errOut.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if st, err := os.Stat(filepath.Join(dir, tc.plot)); err != nil || st.Size() < 200 {
				t.Errorf("%s not written: %v", tc.plot, err)
			}
			if !strings.Contains(errOut.String(), "training the lr model") && !strings.Contains(errOut.String(), "LDS") {
				t.Errorf("no progress lines on stderr:\n%s", errOut.String())
			}
		})
	}
	// The JSON result of quality holds the numbers, exact's above 0.8.
	b, err := os.ReadFile(filepath.Join(dir, "q.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Rows []struct {
			Key     string
			LDS     *float64 `json:"lds"`
			LOOP    *float64 `json:"loo_pearson"`
			AUC     *float64 `json:"auc"`
			Skipped string
		}
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 4 || res.Rows[0].Key != "exact" || res.Rows[0].LDS == nil || *res.Rows[0].LDS < 0.8 ||
		res.Rows[0].LOOP == nil || *res.Rows[0].LOOP < 0.95 ||
		res.Rows[1].LDS == nil || math.Abs(*res.Rows[1].LDS-*res.Rows[0].LDS) > 0.01 {
		t.Errorf("quality JSON: %s", b)
	}
	// A second lds run finds its ground truth in the cache.
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"validate", "lds", "--dataset", "breast-cancer", "--subsets", "10", "--cache", cache, "--json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var again struct{ Retrained int }
	if err := json.Unmarshal(out.Bytes(), &again); err != nil || again.Retrained != 0 {
		t.Errorf("second lds run retrained %d models (%v)", again.Retrained, err)
	}
}

// TestValidateRank runs 'validate rank' on a few digits through the
// command line, as JSON.
func TestValidateRank(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"validate", "rank", "--n-train", "200", "--n-test", "10", "--ranks", "2,32", "--no-cache", "--json"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var res struct {
		Dataset, Model string
		Rows           []struct {
			Rank    int
			Pearson float64
			Exact   bool
		}
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	// 64-32-10: rank 32 keeps both layers whole.
	if res.Dataset != "digits" || res.Model != "mlp 64-32-10 relu" || len(res.Rows) != 3 ||
		res.Rows[1].Rank != 2 || res.Rows[1].Exact || !res.Rows[2].Exact || res.Rows[2].Pearson < 1-1e-6 {
		t.Errorf("result %s", out.String())
	}
}
