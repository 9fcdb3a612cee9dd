package bench

import (
	"context"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/goinfluence/goinfluence/attribution"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/quant"
)

// AttributeOptions sizes what Attribute times. Zero fields take the
// defaults of 'goinfluence bench attribute'.
type AttributeOptions struct {
	Backend linalg.Backend // default linalg.Auto()
	// Rows × Dim is the i8 store of random rows (default 1,000,000 × 1024).
	Rows, Dim int
	// Batches are the numbers of inferences per Attribute call (default 1,
	// 64, 512).
	Batches []int
	// Contributors and DataNets of the generated registry, which spreads
	// the rows over them round robin (default 1000 and 10).
	Contributors, DataNets int
	TopK                   int // distinct examples credited per inference (default attribution.DefaultTopK)
	Repeats                int // timed runs of each batch size, after one untimed (default 3)
	// Dir holds the store, in the directory 'bench exact' uses for the
	// same shape (I8-<rows>x<dim>), reused when it is there; empty: a
	// temporary directory, removed after.
	Dir      string
	Progress io.Writer
}

// AttributeResult is the outcome of Attribute. Times are the median of the
// runs.
type AttributeResult struct {
	Machine
	Backend      string  `json:"backend"`
	Kernel       string  `json:"kernel"` // the int8 kernel (quant.Default)
	Rows         int     `json:"rows"`
	Dim          int     `json:"dim"`
	Contributors int     `json:"contributors"`
	DataNets     int     `json:"datanets"`
	TopK         int     `json:"topk"`
	OpenSecs     float64 `json:"open_seconds"` // NewAttributor: ids checked, inputs hashed
	// Batches holds one row per batch size.
	Batches []AttributeBatch `json:"batches"`
}

// AttributeBatch is one batch size's row of the table.
type AttributeBatch struct {
	Inferences int       `json:"inferences"`
	Secs       float64   `json:"seconds"`         // Attribute, end to end
	ScoreSecs  float64   `json:"scoring_seconds"` // the StoreScorer's Score inside it
	PerSec     float64   `json:"inferences_per_second"`
	Outside    float64   `json:"outside_scoring_share"` // median over runs of 1 − scoring/total
	Runs       []float64 `json:"runs"`
	ScoreRuns  []float64 `json:"scoring_runs"`
}

func (o AttributeOptions) withDefaults() (AttributeOptions, error) {
	if err := setDefaults("bench attribute", []intOption{
		{"Rows", &o.Rows, 1_000_000},
		{"Dim", &o.Dim, 1024},
		{"Contributors", &o.Contributors, 1000},
		{"DataNets", &o.DataNets, 10},
		{"TopK", &o.TopK, attribution.DefaultTopK},
		{"Repeats", &o.Repeats, 3},
	}); err != nil {
		return o, err
	}
	if o.Dim > quant.MaxDim {
		return o, fmt.Errorf("bench attribute: dimension above %d", quant.MaxDim)
	}
	return o, setBatches("bench attribute", "inferences", &o.Batches, []int{1, 64, 512})
}

// Attribute times attribution.Attributor.Attribute end to end (scoring,
// credits, splits, the receipt and its Merkle trees) on batches of
// inferences against an i8 store of random rows, with a registry of every
// row (each with its own content hash, so that the duplicate lookups run)
// and random query gradients, scored as plain dot products (no projection,
// StoreIdentity). The yardstick is the scoring inside the same calls
// (Attributor.AttributeTimed): the share of the time outside it is what
// attribution adds to scoring.
func Attribute(ctx context.Context, opt AttributeOptions) (*AttributeResult, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	progress := writerOrDiscard(o.Progress)
	be, kern, err := exactSetup("bench attribute", o.Backend)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "goinfluence-bench-attribute-")
	if err != nil {
		return nil, fmt.Errorf("bench attribute: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := o.Dir
	if dir == "" {
		dir = tmp
	}
	s, err := openBenchStore(ctx, dir, gradients.I8, o.Rows, o.Dim, progress)
	if err != nil {
		return nil, err
	}
	defer s.Close()

	// The registry and the checkpoint are files, as the run manifest
	// hashes them; the checkpoint's bytes do not matter here.
	fmt.Fprintf(progress, "registry of %d rows, %d contributors, %d DataNets\n", o.Rows, o.Contributors, o.DataNets)
	reg, regPath, err := benchRegistry(tmp, o.Rows, o.Contributors, o.DataNets)
	if err != nil {
		return nil, err
	}
	ckpt := filepath.Join(tmp, "checkpoint")
	if err := os.WriteFile(ckpt, []byte("bench attribute"), 0o644); err != nil {
		return nil, err
	}
	start := time.Now()
	cfg := attribution.Config{TopK: o.TopK, Split: attribution.SplitConfig{
		Shares: attribution.Shares{Contributors: 7000, Owner: 1000, Stakers: 1000, Platform: 1000}}}
	a, err := attribution.NewAttributor(ctx, be, influence.StoreScorerOptions{Stores: []*store.Store{s}, Method: influence.StoreIdentity{}},
		reg, cfg, attribution.Inputs{Checkpoint: ckpt, Registry: regPath})
	if err != nil {
		return nil, err
	}
	res := &AttributeResult{Machine: ThisMachine(), Backend: be.Name(), Kernel: kern.Name(), Rows: o.Rows, Dim: o.Dim,
		Contributors: o.Contributors, DataNets: o.DataNets, TopK: o.TopK, OpenSecs: time.Since(start).Seconds()}

	layer := s.Manifest().Layers[0].Name
	fee := new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil)
	for _, n := range o.Batches {
		rng := rand.New(rand.NewPCG(3, uint64(n)))
		g := make([]float64, n*o.Dim)
		for i := range g {
			g[i] = 2*rng.Float64() - 1
		}
		q := &gradients.Batch{N: n, Layers: []gradients.Layer{{Name: layer, D: o.Dim, Grad: g}}}
		infs := make([]attribution.Inference, n)
		for i := range infs {
			infs[i] = attribution.Inference{ID: "inference-" + strconv.Itoa(i), Fee: fee}
		}
		row := AttributeBatch{Inferences: n}
		var shares []float64
		if err := repeatRuns(ctx, progress, fmt.Sprintf("%d inferences", n), o.Repeats, func(timed bool) error {
			r, t, err := a.AttributeTimed(ctx, infs, q)
			if err != nil {
				return err
			}
			if len(r.Inferences) != n {
				return fmt.Errorf("bench attribute: a receipt of %d inferences for %d", len(r.Inferences), n)
			}
			if timed {
				row.Runs = append(row.Runs, t.Total.Seconds())
				row.ScoreRuns = append(row.ScoreRuns, t.Scoring.Seconds())
				shares = append(shares, 1-t.Scoring.Seconds()/t.Total.Seconds())
			}
			return nil
		}); err != nil {
			return nil, err
		}
		row.Secs, row.ScoreSecs, row.Outside = median(row.Runs), median(row.ScoreRuns), median(shares)
		row.PerSec = float64(n) / row.Secs
		res.Batches = append(res.Batches, row)
	}
	return res, nil
}

// benchRegistry writes the registry CSV of ids 0 … rows−1 into dir, row i
// registered to contributor i mod contributors and DataNet i mod datanets
// with a content hash of its own, and reads it back.
func benchRegistry(dir string, rows, contributors, datanets int) (*attribution.Registry, string, error) {
	cs, ds := names("contributor-", contributors), names("datanet-", datanets)
	regs := make([]attribution.Registration, rows)
	for i := range regs {
		regs[i] = attribution.Registration{ID: int64(i), Contributor: cs[i%contributors], DataNet: ds[i%datanets], ContentSHA256: fmt.Sprintf("%064x", i)}
	}
	path := filepath.Join(dir, "registry.csv")
	if err := attribution.WriteRegistry(path, regs); err != nil {
		return nil, "", err
	}
	reg, err := attribution.ReadRegistry(path)
	if err != nil {
		return nil, "", err
	}
	return reg, path, nil
}

// names returns prefix0 … prefix(n−1).
func names(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = prefix + strconv.Itoa(i)
	}
	return s
}

// WriteTable writes r as 'goinfluence bench attribute' prints it.
func (r *AttributeResult) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("Attributed inferences (Attribute: scoring, credits, splits, receipt) against %d × %d i8, top-%d;\n", r.Rows, r.Dim, r.TopK)
	ew.printf("%d contributors, %d DataNets; %s kernel, backend %s, %d CPUs; median of runs\n", r.Contributors, r.DataNets, r.Kernel, r.Backend, r.CPUs)
	ew.printf("NewAttributor: %.3f s\n", r.OpenSecs)
	ew.printf("  %10s %10s %10s %10s %9s  %s\n", "inferences", "total s", "scoring s", "inf/s", "outside", "runs (s)")
	for _, b := range r.Batches {
		ew.printf("  %10d %10.3f %10.3f %10.1f %8.2f%%  %s\n", b.Inferences, b.Secs, b.ScoreSecs, b.PerSec, 100*b.Outside, fmtSecs(b.Runs))
	}
	return ew.err
}
