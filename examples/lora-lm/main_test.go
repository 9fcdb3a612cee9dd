package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
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
		if r.Top1DataNet < 0.9 || r.Top1Example < 0.9 || r.Share < 0.5 {
			t.Errorf("%s on %s: top-1 DataNet %.3f, top-1 example %.3f, share %.3f: want ≥ 0.9, ≥ 0.9 and ≥ 0.5 on planted data",
				r.Method, r.Queries, r.Top1DataNet, r.Top1Example, r.Share)
		}
	}
	if len(res.Receipt) != 2 || len(res.Receipts) != 2 {
		t.Fatalf("receipt measures %v, files %v: want one per query set", res.Receipt, res.Receipts)
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
	_, err := run(context.Background(), options{Work: t.TempDir(), Python: filepath.Join(t.TempDir(), "no-python"), TRAKK: 4, Out: &out})
	if !errors.Is(err, errSkip) {
		t.Fatalf("got %v, want errSkip", err)
	}
}

// writeFixture writes what train.py would: manifest, entries, queries, a
// checkpoint and four gradient files of two LoRA layers with 3 tokens.
// Training ids start at 1000 and query ids at 500, so that a row index
// taken for an id finds no entry.
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
			id := int64(1000 + len(trainNet))
			trainNet, trainIDs = append(trainNet, n), append(trainIDs, id)
			e, _ := json.Marshal(entry{ID: id, DataNet: net, Contributor: fmt.Sprintf("%s-%d", net, i%3+1), Text: fmt.Sprintf("%s entry %d", net, i)})
			tl.Write(append(e, '\n'))
		}
		for i := range queriesPerNet {
			id := int64(500 + len(queryNet))
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

// TestMeasure checks the measures against their definitions (README): a
// DataNet's influence is the sum of its entries' positive scores; top-1
// DataNet, top-1 example (highest positive score) and share of the query's
// DataNet, averaged over the queries.
func TestMeasure(t *testing.T) {
	byID := map[int64]entry{10: {ID: 10, DataNet: "a"}, 11: {ID: 11, DataNet: "a"}, 20: {ID: 20, DataNet: "b"}}
	ids := []int64{20, 10, 11} // columns; not in id order
	for _, c := range []struct {
		name                   string
		row                    []float32
		net                    string
		top1Net, top1Ex, share float64
	}{
		// a: 2 + 2 = 4 beats b: 3, although b holds the best entry.
		{"sum beats best entry", []float32{3, 2, 2}, "a", 1, 0, 4.0 / 7},
		{"negative scores ignored", []float32{1, -5, 4}, "a", 1, 1, 0.8},
		{"query of the other DataNet", []float32{1, -5, 4}, "b", 0, 0, 0.2},
		{"nothing helpful", []float32{0, -1, -2}, "b", 0, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := measure(linalg.NewDense32(1, 3, c.row), ids, byID, []entry{{DataNet: c.net}})
			if err != nil {
				t.Fatal(err)
			}
			if m.Top1DataNet != c.top1Net || m.Top1Example != c.top1Ex || math.Abs(m.Share-c.share) > 1e-12 {
				t.Errorf("top-1 DataNet %v, top-1 example %v, share %v; want %v, %v, %v", m.Top1DataNet, m.Top1Example, m.Share, c.top1Net, c.top1Ex, c.share)
			}
		})
	}
	if _, err := measure(linalg.NewDense32(1, 1, []float32{1}), []int64{99}, byID, []entry{{DataNet: "a"}}); err == nil {
		t.Error("a store id missing from train.jsonl passed")
	}
}

// TestRefusesMismatchedInputs checks that inputs train.py did not write
// together are errors, not panics or measures of the wrong rows.
func TestRefusesMismatchedInputs(t *testing.T) {
	for _, c := range []struct {
		name, file, want string
		edit             func(string) string
	}{
		{"queries reordered", "queries.jsonl", "queries.jsonl line 1", func(s string) string {
			lines := strings.Split(s, "\n")
			lines[0], lines[1] = lines[1], lines[0]
			return strings.Join(lines, "\n")
		}},
		{"manifest without layers", "manifest.json", "want at least one of each", func(s string) string {
			return strings.Replace(s, `"layers":["blocks.0.q.lora_A","blocks.0.q.lora_B"]`, `"layers":[]`, 1)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFixture(t, dir, []string{"alpha", "beta"}, 6, 2)
			path := filepath.Join(dir, c.file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			edited := c.edit(string(b))
			if edited == string(b) {
				t.Fatalf("%s unchanged by the edit", c.file)
			}
			if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			_, err = run(context.Background(), options{Work: dir, Python: "/nonexistent/python3", Show: 2, TopK: 5, TRAKK: 4, Fee: 1000, Out: &out})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}
