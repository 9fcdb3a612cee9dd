package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

// TestCheckpointPipeline runs TRAK and TracIn-CP from the command line: an
// MLP saves checkpoints while it trains, each checkpoint's training
// gradients go into a projected store (own seed per checkpoint) and its
// p(y) into a probability file, and store score over the three stores must
// equal influence.TRAK and influence.TracInCP on the same gradients.
func TestCheckpointPipeline(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	out := runOK(t, "train", "--dataset", "digits", "--model", "mlp", "--hidden", "8", "--epochs", "3",
		"--checkpoint-every", "1", "--lr", "0.01", "--out", p("m.safetensors"))
	var ckpts []string
	for e := 1; e <= 3; e++ {
		path := p(fmt.Sprintf("m-epoch%04d.safetensors", e))
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("checkpoint of epoch %d: %v\n%s", e, err, out)
		}
		ckpts = append(ckpts, path)
	}
	if !strings.Contains(out, "3 checkpoints") {
		t.Errorf("train output does not list the checkpoints:\n%s", out)
	}
	const k, seed0 = 48, 7
	cps := make([]influence.Checkpoint, len(ckpts))
	var stores, queries, probs []string
	for c, ck := range ckpts {
		tr, q, pr, st := p(fmt.Sprintf("train%d", c)), p(fmt.Sprintf("query%d", c)), p(fmt.Sprintf("probs%d", c)), p(fmt.Sprintf("store%d", c))
		runOK(t, "grads", "--checkpoint", ck, "--dataset", "digits", "--split", "train", "--first", "300", "--probs-out", pr, "--out", tr)
		runOK(t, "grads", "--checkpoint", ck, "--dataset", "digits", "--split", "test", "--first", "4", "--out", q)
		runOK(t, "store", "build", "--grads", tr, "--out", st, "--dtype", "f32", "--shard-rows", "128",
			"--kind", "rademacher", "--k", fmt.Sprint(k), "--seed", fmt.Sprint(seed0+c))
		stores, queries, probs = append(stores, st), append(queries, q), append(probs, pr)
		_, train := readGrads(t, tr)
		_, query := readGrads(t, q)
		pv := readTensor(t, pr, "probs")
		cps[c] = influence.Checkpoint{Query: query, Train: train, LR: 0.01, TrainProb: pv}
		if len(pv) != train.N {
			t.Fatalf("%s: %d probabilities for %d examples", pr, len(pv), train.N)
		}
	}
	ctx := context.Background()
	be := linalg.CPU()
	proj := gradients.Projection{Kind: gradients.Rademacher, K: k, Seed: seed0}
	wantTRAK, err := influence.TRAK(ctx, be, cps, influence.TRAKOptions{Projection: proj, SeedPerCheckpoint: true, Damping: hessian.Damping{Heuristic: true}})
	if err != nil {
		t.Fatal(err)
	}
	// TracIn-CP on the projected gradients, as the stores hold them.
	projected := make([]influence.Checkpoint, len(cps))
	for c, cp := range cps {
		pc := proj
		pc.Seed += uint64(c)
		q, err1 := pc.Apply(ctx, cp.Query)
		tr, err2 := pc.Apply(ctx, cp.Train)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		projected[c] = influence.Checkpoint{Query: q, Train: tr, LR: []float64{0.5, 1, 2}[c]}
	}
	wantTracIn, err := influence.TracInCP(ctx, be, projected)
	if err != nil {
		t.Fatal(err)
	}
	trainIDs := cps[0].Train.IDs
	list := func(v []string) string { return strings.Join(v, ",") }
	for _, tc := range []struct {
		name string
		args []string
		want *linalg.Dense64
	}{
		{"trak", []string{"--hessian", "trak", "--trak-probs", list(probs)}, wantTRAK},
		{"tracin-cp", []string{"--lr", "0.5,1,2"}, wantTracIn},
	} {
		args := append([]string{"store", "score", "--store", list(stores), "--query", list(queries), "--topk", "5",
			"--chunk", "100", "--scores-out", p("full"), "--out", p("scores"), "--backend", "cpu"}, tc.args...)
		runOK(t, args...)
		checkScoresFile(t, p("scores"), p("full"), tc.want, trainIDs, 5, 1e-4)
	}

	for _, tc := range []struct {
		args    []string
		message string
	}{
		{[]string{"--query", queries[0]}, "1 --query files for 3 stores"},
		{[]string{"--query", list(queries), "--trak-probs", probs[0], "--hessian", "trak"}, "1 --trak-probs files"},
		{[]string{"--query", list(queries), "--lr", "1,2"}, "2 values for 3 stores"},
		{[]string{"--query", list(queries), "--trak-probs", list(probs)}, "needs --hessian trak"},
		{[]string{"--query", list(queries), "--hessian", "trak", "--trak-probs", list([]string{probs[0], probs[1], queries[2]})}, "probs"},
	} {
		var o, e bytes.Buffer
		err := run(ctx, append([]string{"store", "score", "--store", list(stores), "--out", p("x")}, tc.args...), &o, &e)
		if err == nil || !strings.Contains(err.Error(), tc.message) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args, err, tc.message)
		}
	}
}
