package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from this run (pure-Go backend on amd64 only)")

// goldenSteps is the pipeline whose every output TestGolden holds to the
// files in testdata/golden: a digits MLP, its gradient files, factors of
// every method, in-memory scores, projections, a projected f16 store and
// the store scores of every method (EK-FAC in the projected space, the raw
// projected Hessian, TRAK and TracIn-CP). Paths are relative to the test's
// directory, so that the metadata that records them is the same each run.
var goldenSteps = []struct {
	args []string
	outs []string // files the step writes and the golden holds
}{
	{[]string{"train", "--dataset", "digits", "--model", "mlp", "--hidden", "12", "--epochs", "15", "--seed", "3", "--out", "m.st"}, []string{"m.st"}},
	{[]string{"grads", "--checkpoint", "m.st", "--dataset", "digits", "--split", "train", "--labels", "sampled", "--sample-seed", "4", "--first", "150", "--out", "fit.st"}, []string{"fit.st"}},
	{[]string{"grads", "--checkpoint", "m.st", "--dataset", "digits", "--split", "train", "--first", "90", "--out", "train.st", "--probs-out", "probs.st"}, []string{"train.st", "probs.st"}},
	{[]string{"grads", "--checkpoint", "m.st", "--dataset", "digits", "--split", "test", "--first", "7", "--out", "query.st"}, []string{"query.st"}},
	{[]string{"fit", "--grads", "fit.st", "--method", "ekfac", "--chunk", "40", "--out", "ekfac.st"}, []string{"ekfac.st"}},
	{[]string{"fit", "--grads", "fit.st", "--method", "kfac", "--out", "kfac.st"}, []string{"kfac.st"}},
	{[]string{"fit", "--grads", "fit.st", "--method", "diagonal", "--out", "diag.st"}, []string{"diag.st"}},
	{[]string{"score", "--factors", "ekfac.st", "--train", "train.st", "--query", "query.st", "--self", "--topk", "5", "--per-layer", "--out", "scores-ekfac.st"}, []string{"scores-ekfac.st"}},
	{[]string{"score", "--factors", "kfac.st", "--train", "train.st", "--query", "query.st", "--damping", "0.01", "--topk", "5", "--out", "scores-kfac.st"}, []string{"scores-kfac.st"}},
	{[]string{"score", "--factors", "diag.st", "--train", "train.st", "--query", "query.st", "--self", "--out", "scores-diag.st"}, []string{"scores-diag.st"}},
	{[]string{"score", "--factors", "ekfac.st", "--train", "train.st", "--query", "query.st", "--rank", "1", "--topk", "3", "--out", "scores-rank1.st"}, []string{"scores-rank1.st"}},
	{[]string{"project", "--grads", "train.st", "--kind", "sjlt", "--k", "24", "--seed", "5", "--out", "proj-sjlt.st"}, []string{"proj-sjlt.st"}},
	{[]string{"project", "--grads", "fit.st", "--kind", "kronecker", "--k-in", "8", "--k-out", "4", "--seed", "5", "--out", "proj-fit.st"}, []string{"proj-fit.st"}},
	{[]string{"fit", "--grads", "proj-fit.st", "--method", "ekfac", "--out", "proj-ekfac.st"}, []string{"proj-ekfac.st"}},
	{[]string{"store", "build", "--grads", "train.st", "--kind", "kronecker", "--k-in", "8", "--k-out", "4", "--seed", "5", "--shard-rows", "32", "--out", "store"},
		[]string{"store/manifest.json", "store/shard-000000.safetensors", "store/shard-000001.safetensors", "store/shard-000002.safetensors"}},
	{[]string{"store", "build", "--grads", "train.st", "--kind", "rademacher", "--k", "40", "--seed", "6", "--dtype", "f32", "--out", "store-rad"},
		[]string{"store-rad/manifest.json", "store-rad/shard-000000.safetensors"}},
	{[]string{"store", "score", "--store", "store", "--query", "query.st", "--factors", "proj-ekfac.st", "--topk", "5", "--scores-out", "all-ekfac.st", "--out", "top-ekfac.st"}, []string{"top-ekfac.st", "all-ekfac.st"}},
	{[]string{"store", "score", "--store", "store-rad", "--query", "query.st", "--hessian", "raw", "--topk", "4", "--scores-out", "all-raw.st", "--out", "top-raw.st"}, []string{"top-raw.st", "all-raw.st"}},
	{[]string{"store", "score", "--store", "store,store-rad", "--query", "query.st,query.st", "--hessian", "trak", "--trak-probs", "probs.st,probs.st", "--topk", "4", "--out", "top-trak.st"}, []string{"top-trak.st"}},
	{[]string{"store", "score", "--store", "store,store-rad", "--query", "query.st,query.st", "--lr", "0.5,0.25", "--topk", "4", "--out", "top-tracin.st"}, []string{"top-tracin.st"}},
}

// TestGolden runs goldenSteps and compares every output with the committed
// one. On the pure-Go backend on amd64 the comparison is byte for byte:
// gonum sums in the same order on every such machine, so any change in the
// bytes is a change in behaviour, which moving code between packages must
// not make. On other backends (OpenBLAS under any kernel, another
// architecture) the products sum in another order, the training drifts in
// the last bits and eigenvectors may change sign, so only the scores are
// compared, to a tolerance. Run with -update, under GOINFLUENCE_BACKEND=cpu,
// to record a deliberate change.
func TestGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("golden pipeline skipped in -short mode")
	}
	golden, err := filepath.Abs(filepath.Join("testdata", "golden"))
	if err != nil {
		t.Fatal(err)
	}
	exact := linalg.Default().Name() == "cpu" && runtime.GOARCH == "amd64"
	if *update && !exact {
		t.Fatalf("-update records the pure-Go backend's bytes on amd64: run with GOINFLUENCE_BACKEND=cpu (now %s on %s)", linalg.Default().Name(), runtime.GOARCH)
	}
	t.Chdir(t.TempDir())
	ctx := context.Background()
	for _, step := range goldenSteps {
		var stdout, stderr bytes.Buffer
		if err := run(ctx, step.args, &stdout, &stderr); err != nil {
			t.Fatalf("goinfluence %s: %v\n%s", strings.Join(step.args, " "), err, stderr.String())
		}
		for _, out := range step.outs {
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("goinfluence %s: %v", strings.Join(step.args, " "), err)
			}
			path := filepath.Join(golden, filepath.FromSlash(out))
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s: %v (record with go test -run TestGolden -update under GOINFLUENCE_BACKEND=cpu)", out, err)
			}
			switch {
			case exact && strings.HasSuffix(out, ".st"):
				if err := sameTensors(got, want); err != nil {
					t.Errorf("%s: %v", out, err)
				}
			case exact:
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the golden file (%d bytes, golden %d): %s", out, len(got), len(want), firstDifference(got, want))
				}
			case isScores(out):
				if err := closeScores(got, want, 1e-3); err != nil {
					t.Errorf("%s: %v", out, err)
				}
			}
		}
	}
}

// isScores reports whether out is a scores file, the outputs compared on
// every backend.
func isScores(out string) bool {
	return strings.HasPrefix(out, "scores-") || strings.HasPrefix(out, "top-") || strings.HasPrefix(out, "all-")
}

// volatile holds the metadata keys that differ from run to run: the time a
// factors file was fitted.
var volatile = map[string]bool{"created": true}

// sameTensors compares two safetensors files tensor by tensor, byte for
// byte, and their metadata but for the volatile keys.
func sameTensors(got, want []byte) error {
	g, err := safetensors.Parse(got)
	if err != nil {
		return err
	}
	w, err := safetensors.Parse(want)
	if err != nil {
		return err
	}
	for k, v := range w.Metadata {
		if !volatile[k] && g.Metadata[k] != v {
			return fmt.Errorf("metadata %s = %q, golden %q", k, g.Metadata[k], v)
		}
	}
	if len(g.Metadata) != len(w.Metadata) {
		return fmt.Errorf("metadata %v, golden %v", g.Metadata, w.Metadata)
	}
	if gn, wn := strings.Join(g.Names(), ","), strings.Join(w.Names(), ","); gn != wn {
		return fmt.Errorf("tensors %s, golden %s", gn, wn)
	}
	for _, name := range w.Names() {
		gi, _ := g.Info(name)
		wi, _ := w.Info(name)
		if gi.DType != wi.DType || fmt.Sprint(gi.Shape) != fmt.Sprint(wi.Shape) {
			return fmt.Errorf("%s: %s %v, golden %s %v", name, gi.DType, gi.Shape, wi.DType, wi.Shape)
		}
		if gb, wb := g.Bytes(name), w.Bytes(name); !bytes.Equal(gb, wb) {
			return fmt.Errorf("%s differs from the golden tensor: %s", name, firstDifference(gb, wb))
		}
	}
	return nil
}

// firstDifference describes where two byte slices first differ.
func firstDifference(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("first at byte %d", i)
		}
	}
	return "one is a prefix of the other"
}

// closeScores compares the float tensors of two scores files to a relative
// tolerance of their largest value, and their integer tensors exactly,
// except for rankings (topk.*, bottomk.*), whose order may change between
// near ties; their scores are compared as floats.
func closeScores(got, want []byte, tol float64) error {
	g, err := safetensors.Parse(got)
	if err != nil {
		return err
	}
	w, err := safetensors.Parse(want)
	if err != nil {
		return err
	}
	if gn, wn := strings.Join(g.Names(), ","), strings.Join(w.Names(), ","); gn != wn {
		return fmt.Errorf("tensors %s, golden %s", gn, wn)
	}
	for _, name := range w.Names() {
		info, _ := w.Info(name)
		if info.DType == safetensors.I64 {
			ranking := strings.HasPrefix(name, "topk.") || strings.HasPrefix(name, "bottomk.")
			if !ranking && !bytes.Equal(g.Bytes(name), w.Bytes(name)) {
				return fmt.Errorf("%s differs", name)
			}
			continue
		}
		gv, err := g.Float64s(name)
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		wv, err := w.Float64s(name)
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		if len(gv) != len(wv) {
			return fmt.Errorf("%s: %d values, golden %d", name, len(gv), len(wv))
		}
		scale := 0.0
		for _, v := range wv {
			scale = max(scale, math.Abs(v))
		}
		for i := range wv {
			if d := math.Abs(gv[i] - wv[i]); d > tol*scale {
				return fmt.Errorf("%s[%d] = %g, golden %g (tolerance %g of %g)", name, i, gv[i], wv[i], tol, scale)
			}
		}
	}
	return nil
}
