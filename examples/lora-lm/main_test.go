package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
)

// TestRunOnPlantedGradients runs the Go side on files laid out as train.py
// writes them, without torch: four DataNets whose entries' per-token LoRA
// gradients share a pattern per DataNet, and queries drawn from the same
// patterns. Every method must find the queries' DataNets, and both
// receipts must verify.
func TestRunOnPlantedGradients(t *testing.T) {
	dir := t.TempDir()
	nets := []string{"alpha", "beta", "gamma", "delta"}
	writeFixture(t, dir, nets, 12, 4)
	var out bytes.Buffer
	o := options{Work: dir, Python: "/nonexistent/python3", Show: 2, TopK: 5, TRAKK: 4, Fee: 1000, Out: &out}
	res, err := run(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if testing.Verbose() {
		t.Log(out.String())
	}
	if len(res.Rows) != 6 {
		t.Fatalf("%d rows of measures, want 2 query sets × 3 methods", len(res.Rows))
	}
	for _, r := range res.Rows {
		if r.Top1DataNet < 0.9 || r.Share < 0.5 {
			t.Errorf("%s on %s: top-1 DataNet %.3f, share %.3f: want ≥ 0.9 and ≥ 0.5 on planted data", r.Method, r.Queries, r.Top1DataNet, r.Share)
		}
	}
	for q, acc := range res.Receipt {
		if acc < 0.9 {
			t.Errorf("receipt top-1 DataNet on %s: %.3f, want ≥ 0.9", q, acc)
		}
	}
	for _, w := range []string{"| held-out entry | EK-FAC (i8 store) |", "| generated continuation | TRAK", "payout_root 0x", "goinfluence verify"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

// TestSkipWithoutTorch checks that a missing interpreter is a skip, not a
// failure, when train.py's outputs are absent.
func TestSkipWithoutTorch(t *testing.T) {
	var out bytes.Buffer
	_, err := run(context.Background(), options{Work: t.TempDir(), Python: filepath.Join(t.TempDir(), "no-python"), Out: &out})
	if !errors.Is(err, errSkip) {
		t.Fatalf("got %v, want errSkip", err)
	}
}

// writeFixture writes what train.py would: manifest, entries, queries, a
// checkpoint and four gradient files of two LoRA layers with 3 tokens.
func writeFixture(t *testing.T, dir string, nets []string, perNet, queriesPerNet int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	layers := []struct {
		name      string
		din, dout int
	}{{"blocks.0.q.lora_A", 8, 2}, {"blocks.0.q.lora_B", 2, 8}}
	const tokens = 3
	patterns := make([][][2][]float64, len(nets)) // net, layer, {a, s}
	for n := range nets {
		for _, l := range layers {
			p := [2][]float64{make([]float64, l.din), make([]float64, l.dout)}
			for i := range p[0] {
				p[0][i] = rng.NormFloat64()
			}
			for i := range p[1] {
				p[1][i] = rng.NormFloat64()
			}
			patterns[n] = append(patterns[n], p)
		}
	}
	batch := func(netOf []int, ids []int64) *gradients.Batch {
		b := &gradients.Batch{N: len(netOf), IDs: ids}
		for li, l := range layers {
			L := gradients.Layer{Name: l.name, DIn: l.din, DOut: l.dout, Tokens: tokens, TokenAxis: true}
			for _, n := range netOf {
				for range tokens {
					for _, v := range patterns[n][li][0] {
						L.A = append(L.A, v+0.3*rng.NormFloat64())
					}
					for _, v := range patterns[n][li][1] {
						L.S = append(L.S, v+0.3*rng.NormFloat64())
					}
				}
			}
			b.Layers = append(b.Layers, L)
		}
		return b
	}
	var trainNet, queryNet []int
	var trainIDs, queryIDs []int64
	var tl, ql strings.Builder
	for n, net := range nets {
		for i := range perNet {
			id := int64(len(trainNet))
			trainNet, trainIDs = append(trainNet, n), append(trainIDs, id)
			e, _ := json.Marshal(entry{ID: id, DataNet: net, Contributor: fmt.Sprintf("%s-%d", net, i%3+1), Text: fmt.Sprintf("%s entry %d", net, i)})
			tl.Write(append(e, '\n'))
		}
		for i := range queriesPerNet {
			id := int64(len(queryNet))
			queryNet, queryIDs = append(queryNet, n), append(queryIDs, id)
			e, _ := json.Marshal(entry{ID: id, DataNet: net, Text: "held out", Prompt: net + " prompt " + fmt.Sprint(i), Continuation: "continued"})
			ql.Write(append(e, '\n'))
		}
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		name string
		b    *gradients.Batch
	}{
		{"fit.safetensors", batch(trainNet, trainIDs)}, {"train.safetensors", batch(trainNet, trainIDs)},
		{"query-entries.safetensors", batch(queryNet, queryIDs)}, {"query-generated.safetensors", batch(queryNet, queryIDs)},
	} {
		if err := gradients.WriteFile(filepath.Join(dir, f.name), f.b, gradients.F32, nil); err != nil {
			t.Fatal(err)
		}
	}
	write("train.jsonl", []byte(tl.String()))
	write("queries.jsonl", []byte(ql.String()))
	write("lora.pt", []byte("checkpoint"))
	man, _ := json.Marshal(pyManifest{DataNets: nets, Layers: []string{layers[0].name, layers[1].name}, Torch: "none (fixture)",
		Base: map[string]float64{}, LoRA: map[string]float64{}, Timings: map[string]float64{}})
	write("manifest.json", man)
}
