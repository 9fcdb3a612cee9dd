package main

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// TestScorePrecision runs score --precision f32 against f64 for every
// method: the scores agree within 1e-4, stderr names each layer's
// algorithm, the metadata records the precision, and --self falls back to
// f64 saying so.
func TestScorePrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(32, 3))
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	for name, b := range map[string]*gradients.Batch{"fit": randomGrads(rng, 30), "train": randomGrads(rng, 9), "query": randomGrads(rng, 4)} {
		if err := gradients.WriteFile(p(name), b, gradients.F32, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, method := range []string{"ekfac", "kfac", "diagonal", "identity"} {
		t.Run(method, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := run(ctx, []string{"fit", "--grads", p("fit"), "--method", method, "--out", p("factors-" + method)}, &out, &errOut); err != nil {
				t.Fatalf("fit: %v\n%s", err, errOut.String())
			}
			score := func(out string, extra ...string) string {
				t.Helper()
				var stdout, stderr bytes.Buffer
				args := append([]string{"score", "--factors", p("factors-" + method), "--train", p("train"), "--query", p("query"), "--out", p(out)}, extra...)
				if err := run(ctx, args, &stdout, &stderr); err != nil {
					t.Fatalf("score %v: %v\n%s", extra, err, stderr.String())
				}
				return stderr.String()
			}
			score("s64")
			log := score("s32", "--precision", "f32")
			for _, layer := range []string{"block.0.attn", "head"} {
				if !strings.Contains(log, "f32 layer "+layer+": ") {
					t.Errorf("stderr does not give the plan of layer %s:\n%s", layer, log)
				}
			}
			want, got := readTensor(t, p("s64"), "scores"), readTensor(t, p("s32"), "scores")
			if e := rel(got, want); !(e <= 1e-4) {
				t.Errorf("f32 scores: relative error %.3g", e)
			}
			if m := readMeta(t, p("s32")); m["precision"] != "f32" {
				t.Errorf("metadata precision %q, want f32", m["precision"])
			}
			if m := readMeta(t, p("s64")); m["precision"] != "" {
				t.Errorf("f64 metadata has precision %q", m["precision"])
			}
			if log := score("r32", "--precision", "f32", "--rank", "1"); !strings.Contains(log, "f32 layer head: lowrank (GFLOP: low-rank ") {
				t.Errorf("stderr does not give the low-rank plan of layer head:\n%s", log)
			}
			if log := score("self", "--precision", "f32", "--self"); !strings.Contains(log, "scoring in f64") {
				t.Errorf("--self with f32 does not say it scores in f64:\n%s", log)
			}
		})
	}
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"score", "--factors", p("factors-ekfac"), "--train", p("train"), "--query", p("query"), "--precision", "f16", "--out", p("x")}, &out, &errOut)
	if !errors.Is(err, errUsage) {
		t.Errorf("--precision f16: %v, want a usage error", err)
	}
}

// TestFitPrecision runs fit --precision f32 against f64 (the default, and
// given explicitly) for each method that fits: every factor agrees within
// 1e-4, f64 factors are the same bit for bit with and without the flag, and
// only f32 is recorded in the metadata.
func TestFitPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(32, 4))
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	if err := gradients.WriteFile(p("fit"), randomGrads(rng, 40), gradients.F32, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fit := func(out string, extra ...string) *ekfac.Factors {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := run(ctx, append([]string{"fit", "--grads", p("fit"), "--chunk", "7", "--out", p(out)}, extra...), &stdout, &stderr); err != nil {
			t.Fatalf("fit %v: %v\n%s", extra, err, stderr.String())
		}
		f, err := ekfac.Load(p(out))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, method := range []string{"ekfac", "kfac", "diagonal"} {
		t.Run(method, func(t *testing.T) {
			def := fit(method+"-default", "--method", method)
			f64 := fit(method+"-f64", "--method", method, "--precision", "f64")
			f32 := fit(method+"-f32", "--method", method, "--precision", "f32")
			for li := range def.Layers {
				d, w, g := &def.Layers[li], &f64.Layers[li], &f32.Layers[li]
				for _, c := range []struct {
					name          string
					def, f64, f32 []float64
				}{
					{"Λ", d.Lambda.Data, w.Lambda.Data, g.Lambda.Data},
					{"λ_A", d.LambdaA, w.LambdaA, g.LambdaA},
					{"λ_S", d.LambdaS, w.LambdaS, g.LambdaS},
				} {
					for i := range c.def {
						if c.def[i] != c.f64[i] {
							t.Fatalf("layer %s: %s[%d] = %v with --precision f64, %v by default", d.Name, c.name, i, c.f64[i], c.def[i])
						}
					}
					if len(c.f64) > 0 {
						if e := rel(c.f32, c.f64); !(e <= 1e-4) {
							t.Errorf("layer %s: f32 %s relative error %.3g", d.Name, c.name, e)
						}
					}
				}
			}
			if got := def.Meta["precision"]; got != "" {
				t.Errorf("f64 metadata has precision %q", got)
			}
			if got := f32.Meta["precision"]; got != "f32" {
				t.Errorf("metadata precision %q, want f32", got)
			}
		})
	}
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"fit", "--grads", p("fit"), "--precision", "bf16", "--out", p("x")}, &out, &errOut); !errors.Is(err, errUsage) {
		t.Errorf("--precision bf16: %v, want a usage error", err)
	}
}

func readMeta(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Metadata
}
