// Datanets pays the contributors of two DataNets of handwritten digits for
// a stream of inferences, with receipts that are verified as they are
// written, and measures two ways of gaming the payments: copying one's data
// ten times, and selling the images of an honest contributor with wrong
// labels.
//
// The training digits are split into two DataNets by label ("digits-0-4",
// "digits-5-9") and among contributors: honest ones (some with a share of
// accidental label noise, so that earnings can be set against data
// quality), a copier whose examples are all included -copies times, and a
// label-flipper holding the images of honest-1 (its "twin") with each label
// moved to the next digit. A softmax regression is trained on everything,
// its per-example gradients go into an i8 store (exact integer scores), and
// the test digits arrive in batches of inferences, each attributed into a
// receipt that a second Attributor, opened from the files on disk,
// recomputes and verifies.
//
// The whole pipeline runs twice: in world A the copier contributes one copy
// of its data, in world B -copies copies, each world training its own model.
// Exact duplicates share one credit, so the copies should not pay.
//
// Credit goes to the most helpful examples only, and nothing is charged for
// harm: a contributor with many wrong labels is not paid less per example
// than a careful one (the table and the plot show it), since wrong labels
// make large gradients that help the test digits of the wrong class. The
// preconditioner matters: with plain gradient similarity (no Hessian) the
// label-flipper out-earns its twin many times over.
//
//	go run ./examples/datanets -plot earnings.png
package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/goinfluence/goinfluence/attribution"
	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// The names of the contributors who game the payments; the twin is the
// honest contributor whose images the flipper holds.
const (
	copier  = "copier"
	flipper = "flipper"
	twin    = "honest-1"
)

// options configure run.
type options struct {
	Seed      uint64    // the split among contributors and the label noise
	Noise     []float64 // one honest contributor per entry: the fraction of its labels that are wrong
	Copies    int       // copies of the copier's data in world B
	Batches   int       // batches of inferences
	BatchSize int       // inferences per batch
	TopK      int       // distinct examples credited per inference
	Fee       int64     // fee of each inference
	Dir       string    // where the worlds' files go
	Plot      string    // PNG of earnings against data quality; "" for none
	Out       io.Writer // the report
}

// earning is what one contributor holds and earns in one world.
type earning struct {
	Contributor string
	Examples    int      // registered rows, copies included
	Correct     float64  // fraction of its rows with the true label
	Paid        *big.Int // over all receipts
}

// perExample is the contributor's earnings per registered row.
func (e earning) perExample() float64 {
	f, _ := new(big.Float).SetInt(e.Paid).Float64()
	return f / float64(e.Examples)
}

// worldResult is one world's outcome.
type worldResult struct {
	Name     string
	Accuracy float64 // of the model on the test digits
	Receipts int     // written, checked and verified
	Earnings []earning
	// Quality is the per-contributor data-quality report over all the
	// inferences: negative-influence and self-influence outlier examples.
	Quality *attribution.QualityReport
}

func (w *worldResult) paid(contributor string) float64 {
	for _, e := range w.Earnings {
		if e.Contributor == contributor {
			f, _ := new(big.Float).SetInt(e.Paid).Float64()
			return f
		}
	}
	return 0
}

// result holds both worlds and the measured gaming ratios.
type result struct {
	A, B *worldResult
	// CopierRatio is the copier's earnings in world B over world A: what
	// the copies bought.
	CopierRatio float64
	// FlipperRatio is, per world, the flipper's earnings over its twin's.
	FlipperRatioA, FlipperRatioB float64
}

func main() {
	var o options
	noise := flag.String("noise", "0,0,0,0.1,0.2,0.4", "honest contributors' fractions of wrong labels, comma-separated (one contributor each)")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of the split among contributors and of the label noise")
	flag.IntVar(&o.Copies, "copies", 10, "copies of the copier's data in world B")
	flag.IntVar(&o.Batches, "batches", 4, "batches of inferences")
	flag.IntVar(&o.BatchSize, "batch", 50, "inferences (test digits) per batch")
	flag.IntVar(&o.TopK, "k", 10, "distinct training examples credited per inference")
	flag.Int64Var(&o.Fee, "fee", 1_000_000, "fee of each inference, in the smallest unit")
	flag.StringVar(&o.Plot, "plot", filepath.Join(os.TempDir(), "goinfluence-datanets.png"), "PNG of earnings against data quality")
	flag.Parse()
	for _, s := range strings.Split(*noise, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || f < 0 || f > 1 {
			log.Fatalf("-noise: %q is not a fraction in [0, 1]", s)
		}
		o.Noise = append(o.Noise, f)
	}
	dir, err := os.MkdirTemp("", "goinfluence-datanets")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	o.Dir, o.Out = dir, os.Stdout
	if _, err := run(context.Background(), o); err != nil {
		os.RemoveAll(dir)
		log.Fatal(err)
	}
}

// run runs world A (one copy of the copier's data) and world B (o.Copies
// copies), prints world B's earnings and both gaming ratios, and plots
// world B's earnings against data quality.
func run(ctx context.Context, o options) (*result, error) {
	switch {
	case len(o.Noise) == 0:
		return nil, errors.New("no honest contributor")
	case o.Copies < 1 || o.Batches < 1 || o.BatchSize < 1 || o.TopK < 1 || o.Fee < 0:
		return nil, fmt.Errorf("copies %d, batches %d, batch size %d, top-k %d, fee %d: want ≥ 1 (fee ≥ 0)", o.Copies, o.Batches, o.BatchSize, o.TopK, o.Fee)
	}
	// 1437 training and 360 test digits, pixels in [0, 1].
	train, test, err := datasets.LoadSplit(ctx, "digits", datasets.SplitOptions{})
	if err != nil {
		return nil, err
	}
	if n := o.Batches * o.BatchSize; n > test.Len() {
		return nil, fmt.Errorf("%d inferences, there are %d test digits", n, test.Len())
	}
	res := &result{}
	if res.A, err = runWorld(ctx, o, "A", 1, train, test); err != nil {
		return nil, fmt.Errorf("world A: %w", err)
	}
	if res.B, err = runWorld(ctx, o, "B", o.Copies, train, test); err != nil {
		return nil, fmt.Errorf("world B: %w", err)
	}
	res.CopierRatio = res.B.paid(copier) / res.A.paid(copier)
	res.FlipperRatioA = res.A.paid(flipper) / res.A.paid(twin)
	res.FlipperRatioB = res.B.paid(flipper) / res.B.paid(twin)

	w := o.Out
	fmt.Fprintf(w, "\nearnings per contributor, world B (%d receipts of %d inferences, fee %d each):\n", res.B.Receipts, o.BatchSize, o.Fee)
	fmt.Fprintf(w, "  %-10s %8s %8s %14s %12s %14s\n", "contributor", "examples", "correct", "paid (B)", "per example", "paid (A)")
	for _, e := range res.B.Earnings {
		fmt.Fprintf(w, "  %-10s %8d %7.0f%% %14s %12.0f %14.0f\n", e.Contributor, e.Examples, 100*e.Correct, e.Paid, e.perExample(), res.A.paid(e.Contributor))
	}
	fmt.Fprintf(w, "\nworld B, ")
	if err := res.B.Quality.WriteTable(w); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "\ncopier earns %.3f× with %d copies of its data what it earns with one (claim: ≤ 1.1)\n", res.CopierRatio, o.Copies)
	fmt.Fprintf(w, "label-flipper earns %.3f× (world A) and %.3f× (world B) what its honest twin earns on the same images (claim: < 1)\n", res.FlipperRatioA, res.FlipperRatioB)
	if o.Plot != "" {
		if err := plotEarnings(o.Plot, res.B); err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "plot: %s\n", o.Plot)
	}
	return res, nil
}

// example is one registered training row.
type example struct {
	x            []float64
	label, truth int
	contributor  string
}

// contributions splits the training digits among the contributors of a
// world whose copier includes its data copies times.
func contributions(o options, train *datasets.Dataset, copies int) []example {
	rng := rand.New(rand.NewPCG(o.Seed, 1))
	perm := rng.Perm(train.Len())
	parts := len(o.Noise) + 1 // the honest contributors, then the copier
	var out, twinRows []example
	for p := range parts {
		name := copier
		if p < len(o.Noise) {
			name = "honest-" + strconv.Itoa(p+1)
		}
		var rows []example
		for _, i := range perm[p*len(perm)/parts : (p+1)*len(perm)/parts] {
			e := example{x: train.X.Row(i), label: train.Y[i], truth: train.Y[i], contributor: name}
			if p < len(o.Noise) && rng.Float64() < o.Noise[p] {
				// Accidental noise: any other label.
				e.label = (e.truth + 1 + rng.IntN(train.Classes-1)) % train.Classes
			}
			rows = append(rows, e)
		}
		if name == twin {
			twinRows = rows
		}
		n := 1
		if name == copier {
			n = copies
		}
		for range n {
			out = append(out, rows...)
		}
	}
	for _, e := range twinRows {
		e.contributor, e.label = flipper, (e.truth+1)%train.Classes
		out = append(out, e)
	}
	return out
}

// runWorld trains a model on the world's data, builds its store, registry
// and checkpoint, and attributes the test digits batch by batch.
func runWorld(ctx context.Context, o options, name string, copies int, train, test *datasets.Dataset) (*worldResult, error) {
	dir := filepath.Join(o.Dir, "world-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	exs := contributions(o, train, copies)
	x := linalg.NewDense64(len(exs), train.X.Cols, nil)
	y := make([]int, len(exs))
	ids := make([]int64, len(exs))
	for i, e := range exs {
		copy(x.Row(i), e.x)
		y[i], ids[i] = e.label, int64(i)
	}

	// Train to the optimum (influence functions assume a minimiser), with
	// the quickstart's λ.
	const l2 = 1e-2
	m := models.NewSoftmax(train.X.Cols, train.Classes, l2)
	if _, err := models.FitNewton(ctx, m, x, y, nil, models.NewtonOptions{}); err != nil {
		return nil, err
	}
	checkpoint := filepath.Join(dir, "model.safetensors")
	if err := models.SaveWithMetadata(checkpoint, m, map[string]string{"data": "examples/datanets world " + name}); err != nil {
		return nil, err
	}

	// Per-example training gradients, unprojected (650 values each), into
	// an i8 store: exact integer scores that any verifier recomputes.
	g := m.Gradients(x, y)
	g.IDs = ids
	storeDir := filepath.Join(dir, "store")
	b, err := store.Create(storeDir, store.Options{DType: gradients.I8, Layers: []store.LayerInfo{{Name: g.Layers[0].Name, Dim: g.Dim()}}})
	if err != nil {
		return nil, err
	}
	if err := b.AddBatch(ctx, g); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.Close(); err != nil {
		return nil, err
	}
	registry := filepath.Join(dir, "registry.csv")
	if err := writeRegistry(registry, exs); err != nil {
		return nil, err
	}

	// The payer's Attributor and, opened afresh from the same files, the
	// verifier's.
	cfg := attribution.Config{TopK: o.TopK, Split: attribution.SplitConfig{
		Shares: attribution.Shares{Contributors: 7000, Owner: 1000, Stakers: 1000, Platform: 1000}}}
	in := attribution.Inputs{Checkpoint: checkpoint, Registry: registry}
	payer, closePayer, err := openAttributor(ctx, storeDir, cfg, in, l2)
	if err != nil {
		return nil, err
	}
	defer closePayer()
	verifier, closeVerifier, err := openAttributor(ctx, storeDir, cfg, in, l2)
	if err != nil {
		return nil, err
	}
	defer closeVerifier()

	// The inferences: test digits, each query the gradient of its loss at
	// its label (score > 0: the training example helped).
	queries := m.Gradients(test.X, test.Y)
	paid := map[string]*big.Int{}
	w := &worldResult{Name: name, Accuracy: models.Accuracy(m, test.X, test.Y)}
	for bi := range o.Batches {
		lo, hi := bi*o.BatchSize, (bi+1)*o.BatchSize
		infs := make([]attribution.Inference, 0, hi-lo)
		for i := lo; i < hi; i++ {
			infs = append(infs, attribution.Inference{ID: "test-digit-" + strconv.Itoa(test.Index[i]), Fee: big.NewInt(o.Fee)})
		}
		q := queries.Slice(lo, hi)
		r, err := payer.Attribute(ctx, infs, q)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, fmt.Sprintf("receipt-%d.json", bi))
		if err := attribution.WriteReceipt(path, r); err != nil {
			return nil, err
		}
		// What a verifier does: read the published receipt, then check it
		// on its own and recompute it from the inputs (Verify does both).
		got, err := attribution.ReadReceipt(path)
		if err != nil {
			return nil, err
		}
		if err := verifier.Verify(ctx, got, q); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, p := range got.Payouts {
			v, _ := new(big.Int).SetString(p.Amount, 10)
			if t := paid[p.Contributor]; t != nil {
				t.Add(t, v)
			} else {
				paid[p.Contributor] = v
			}
		}
		w.Receipts++
	}
	fmt.Fprintf(o.Out, "world %s: %d training rows (copier ×%d), model %.1f%% accurate on the test digits; %d receipts written, checked and verified\n",
		name, len(exs), copies, 100*w.Accuracy, w.Receipts)
	if w.Quality, err = payer.Quality(ctx, attribution.QualityOptions{}, queries.Slice(0, o.Batches*o.BatchSize)); err != nil {
		return nil, err
	}

	held := map[string][2]int{} // rows, rows with the true label
	for _, e := range exs {
		h := held[e.contributor]
		h[0]++
		if e.label == e.truth {
			h[1]++
		}
		held[e.contributor] = h
	}
	for _, c := range slices.Sorted(maps.Keys(held)) {
		p := paid[c]
		if p == nil {
			p = new(big.Int)
		}
		w.Earnings = append(w.Earnings, earning{Contributor: c, Examples: held[c][0], Correct: float64(held[c][1]) / float64(held[c][0]), Paid: p})
	}
	return w, nil
}

// openAttributor opens the store and the registry from disk and an
// Attributor over them, preconditioning the queries with (H + λI)⁻¹, H the
// mean outer product of the stored gradients.
func openAttributor(ctx context.Context, storeDir string, cfg attribution.Config, in attribution.Inputs, l2 float64) (*attribution.Attributor, func(), error) {
	s, err := store.Open(storeDir)
	if err != nil {
		return nil, nil, err
	}
	reg, err := attribution.ReadRegistry(in.Registry)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	a, err := attribution.NewAttributor(ctx, nil, influence.StoreScorerOptions{
		Stores: []*store.Store{s},
		Method: influence.StoreRawHessian{Damping: hessian.Damping{Value: l2}},
	}, reg, cfg, in)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return a, func() { s.Close() }, nil
}

// writeRegistry writes the registry CSV: each row's contributor, its
// DataNet (by its label) and the SHA-256 of its content, the features as
// little-endian float64 then the label, so that copies share a hash and a
// relabelled image does not.
func writeRegistry(path string, exs []example) error {
	regs := make([]attribution.Registration, len(exs))
	for i, e := range exs {
		buf := make([]byte, 0, 8*len(e.x)+8)
		for _, v := range e.x {
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
		}
		buf = binary.LittleEndian.AppendUint64(buf, uint64(e.label))
		net := "digits-0-4"
		if e.label >= 5 {
			net = "digits-5-9"
		}
		regs[i] = attribution.Registration{ID: int64(i), Contributor: e.contributor, DataNet: net, ContentSHA256: fmt.Sprintf("%x", sha256.Sum256(buf))}
	}
	return attribution.WriteRegistry(path, regs)
}

// plotEarnings writes a PNG of each contributor's earnings per example
// against the fraction of its labels that are correct.
func plotEarnings(path string, w *worldResult) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("world %s: earnings against data quality", w.Name)
	p.X.Label.Text = "fraction of correct labels"
	p.Y.Label.Text = "paid per example held"
	p.Add(plotter.NewGrid())
	var xy plotter.XYLabels
	for _, e := range w.Earnings {
		xy.XYs = append(xy.XYs, plotter.XY{X: e.Correct, Y: e.perExample()})
		xy.Labels = append(xy.Labels, e.Contributor)
	}
	s, err := plotter.NewScatter(xy.XYs)
	if err != nil {
		return err
	}
	l, err := plotter.NewLabels(xy)
	if err != nil {
		return err
	}
	p.Add(s, l)
	p.X.Min, p.X.Max = -0.05, 1.15
	if err := p.Save(6*vg.Inch, 4*vg.Inch, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}
