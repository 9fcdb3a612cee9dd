package attribution

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

// world is a small attribution setting on disk: an i8 store of random
// gradients, a registry, a checkpoint file and queries.
type world struct {
	dir        string
	ids        []int64
	rows       []float32
	dim        int
	registry   string
	checkpoint string
	queries    *gradients.Batch
}

const worldDim = 24

func newWorld(t testing.TB, n, nq int) *world {
	t.Helper()
	w := &world{dir: t.TempDir(), dim: worldDim}
	rng := rand.New(rand.NewPCG(1, 2))
	w.ids = make([]int64, n)
	w.rows = make([]float32, n*w.dim)
	for i := range w.ids {
		w.ids[i] = int64(100 + 3*i)
	}
	for i := range w.rows {
		w.rows[i] = float32(rng.NormFloat64())
	}
	// Rows 5 and 6 are copies of row 4 (the same content).
	copy(w.rows[5*w.dim:6*w.dim], w.rows[4*w.dim:5*w.dim])
	copy(w.rows[6*w.dim:7*w.dim], w.rows[4*w.dim:5*w.dim])
	regs := make([]Registration, n)
	for i, id := range w.ids {
		content := fmt.Sprintf("%064x", i)
		if i == 5 || i == 6 {
			content = fmt.Sprintf("%064x", 4)
		}
		regs[i] = Registration{ID: id, Contributor: fmt.Sprintf("contributor-%d", i%5), DataNet: fmt.Sprintf("net-%d", i%2), ContentSHA256: content}
	}
	w.registry = filepath.Join(w.dir, "registry.csv")
	w.checkpoint = filepath.Join(w.dir, "model.ckpt")
	if err := WriteRegistry(w.registry, regs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.checkpoint, []byte("weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.build(t, "store", 16)
	// Queries near some rows, so that scores are strongly positive.
	q := make([]float64, nq*w.dim)
	for i := range nq {
		src := (7 * i) % n
		for j := range w.dim {
			q[i*w.dim+j] = float64(w.rows[src*w.dim+j]) + 0.3*rng.NormFloat64()
		}
	}
	w.queries = &gradients.Batch{N: nq, Layers: []gradients.Layer{{Name: "g", D: w.dim, Grad: q}}}
	return w
}

func (w *world) build(t testing.TB, name string, shardRows int) string {
	t.Helper()
	dir := filepath.Join(w.dir, name)
	b, err := store.Create(dir, store.Options{DType: gradients.I8, ShardRows: shardRows, Layers: []store.LayerInfo{{Name: "g", Dim: w.dim}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(context.Background(), w.ids, w.rows); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

var testConfig = Config{TopK: 4, Split: SplitConfig{Shares: Shares{Contributors: 7000, Owner: 1000, Stakers: 1000, Platform: 1000}}}

func (w *world) attributor(t testing.TB, storeDir string, be linalg.Backend, chunk int, cfg Config) *Attributor {
	t.Helper()
	s, err := store.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	reg, err := ReadRegistry(w.registry)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAttributor(context.Background(), be, influence.StoreScorerOptions{Stores: []*store.Store{s}, Method: influence.StoreIdentity{}, ChunkRows: chunk},
		reg, cfg, Inputs{Checkpoint: w.checkpoint, Registry: w.registry})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func inferences(n int, fee int64) []Inference {
	infs := make([]Inference, n)
	for i := range infs {
		infs[i] = Inference{ID: fmt.Sprintf("inf-%d", i), Fee: big.NewInt(fee + int64(i))}
	}
	return infs
}

// TestAttributeVerify attributes a batch, checks the receipt on its own
// and against its inputs under other thread counts, chunk sizes and
// backends, and checks that duplicates share one credit.
func TestAttributeVerify(t *testing.T) {
	w := newWorld(t, 60, 5)
	ctx := context.Background()
	a := w.attributor(t, filepath.Join(w.dir, "store"), linalg.CPU(), 0, testConfig)
	r, err := a.Attribute(ctx, inferences(5, 1_000_003), w.queries)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(r); err != nil {
		t.Fatal(err)
	}
	if len(r.Payouts) == 0 || r.Manifest.Quantisation != "i8/v1" {
		t.Fatalf("payouts %v, quantisation %q", r.Payouts, r.Manifest.Quantisation)
	}
	path := filepath.Join(w.dir, "receipt.json")
	if err := WriteReceipt(path, r); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReceipt(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(back); err != nil {
		t.Fatalf("receipt read back: %v", err)
	}
	bes := []linalg.Backend{linalg.CPU()}
	if be, err := linalg.Open("openblas"); err == nil {
		bes = append(bes, be)
	}
	for _, be := range bes {
		for _, procs := range []int{1, 3} {
			for _, chunk := range []int{0, 7} {
				old := runtime.GOMAXPROCS(procs)
				v := w.attributor(t, filepath.Join(w.dir, "store"), be, chunk, testConfig)
				err := v.Verify(ctx, back, w.queries)
				runtime.GOMAXPROCS(old)
				if err != nil {
					t.Errorf("%s, GOMAXPROCS %d, chunk %d: %v", be.Name(), procs, chunk, err)
				}
			}
		}
	}
	// Another shard size: the store's manifest differs, and Verify says so,
	// but nothing else: every record and both roots recompute the same.
	other := w.build(t, "store-resharded", 5)
	err = w.attributor(t, other, linalg.CPU(), 0, testConfig).Verify(ctx, back, w.queries)
	if err == nil || !strings.Contains(err.Error(), "store_manifest_sha256") || strings.Contains(err.Error(), "inference") || strings.Contains(err.Error(), "root") {
		t.Errorf("resharded store: %v", err)
	}
}

// TestVerifyNamesChanges alters one thing at a time and checks that Check
// or Verify fails naming it.
func TestVerifyNamesChanges(t *testing.T) {
	w := newWorld(t, 60, 4)
	ctx := context.Background()
	a := w.attributor(t, filepath.Join(w.dir, "store"), linalg.CPU(), 0, testConfig)
	r, err := a.Attribute(ctx, inferences(4, 999_999), w.queries)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(w.dir, "receipt.json")
	if err := WriteReceipt(path, r); err != nil {
		t.Fatal(err)
	}
	fresh := func() *Receipt {
		r, err := ReadReceipt(path)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// One score changed: the record root no longer matches.
	r1 := fresh()
	r1.Inferences[1].TopK[0].Score *= 1.5
	if err := Check(r1); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "record_root") {
		t.Errorf("altered score: %v", err)
	}
	// Recomputing the record root too still fails against the inputs,
	// naming the inference and field.
	pt, rt, _ := r1.roots()
	r1.PayoutRoot, r1.RecordRoot = rootOf(pt), rootOf(rt)
	if err := a.Verify(ctx, r1, w.queries); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "inference 1 (inf-1)") || !strings.Contains(err.Error(), "topk") {
		t.Errorf("altered score, roots recomputed: %v", err)
	}
	// One payout changed.
	r2 := fresh()
	v, _ := new(big.Int).SetString(r2.Payouts[0].Amount, 10)
	r2.Payouts[0].Amount = v.Add(v, big.NewInt(1)).String()
	if err := Check(r2); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "payout of \""+r2.Payouts[0].Contributor+"\"") {
		t.Errorf("altered payout: %v", err)
	}
	// One registry line changed: the registry's hash and the records.
	reg, _ := os.ReadFile(w.registry)
	lines := strings.Split(string(reg), "\n")
	lines[1] = strings.Replace(lines[1], "contributor-0", "mallory", 1)
	if err := os.WriteFile(w.registry, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	err = w.attributor(t, filepath.Join(w.dir, "store"), linalg.CPU(), 0, testConfig).Verify(ctx, fresh(), w.queries)
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "registry_sha256") {
		t.Errorf("altered registry: %v", err)
	}
	os.WriteFile(w.registry, reg, 0o644)
	// One shard byte changed: the store refuses the shard, naming it.
	shard := filepath.Join(w.dir, "store", "shard-000001.safetensors")
	b, _ := os.ReadFile(shard)
	b[len(b)-9] ^= 1
	if err := os.WriteFile(shard, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(filepath.Join(w.dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	regs, _ := ReadRegistry(w.registry)
	_, err = NewAttributor(ctx, linalg.CPU(), influence.StoreScorerOptions{Stores: []*store.Store{s}, Method: influence.StoreIdentity{}}, regs, testConfig,
		Inputs{Checkpoint: w.checkpoint, Registry: w.registry})
	if !errors.Is(err, store.ErrChecksum) || !strings.Contains(err.Error(), "shard-000001") {
		t.Errorf("altered shard: %v", err)
	}
}

// TestDuplicatesShareCredit checks that the three copies of one content
// are credited once, their weight split between their contributors.
func TestDuplicatesShareCredit(t *testing.T) {
	w := newWorld(t, 60, 1)
	// The query is row 4 itself: rows 4, 5 and 6 (one content) score
	// highest.
	q := make([]float64, w.dim)
	for j := range q {
		q[j] = float64(w.rows[4*w.dim+j])
	}
	w.queries = &gradients.Batch{N: 1, Layers: []gradients.Layer{{Name: "g", D: w.dim, Grad: q}}}
	a := w.attributor(t, filepath.Join(w.dir, "store"), linalg.CPU(), 0, testConfig)
	r, err := a.Attribute(context.Background(), inferences(1, 10_000), w.queries)
	if err != nil {
		t.Fatal(err)
	}
	top := r.Inferences[0].TopK
	if len(top) != 4 || top[0].ID != w.ids[4] {
		t.Fatalf("top-k %v: want 4 entries led by id %d", top, w.ids[4])
	}
	for _, e := range top[1:] {
		if e.ID == w.ids[5] || e.ID == w.ids[6] {
			t.Fatalf("a copy of id %d credited again: %v", w.ids[4], top)
		}
	}
}

// TestNearDuplicates checks that a slightly perturbed copy of an example
// (another content hash) is credited apart without NearDuplicate and
// shares the credit with it above the cosine threshold.
func TestNearDuplicates(t *testing.T) {
	w := newWorld(t, 60, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	for j := range w.dim {
		w.rows[8*w.dim+j] = w.rows[3*w.dim+j] * float32(1+0.01*rng.NormFloat64())
	}
	dir := w.build(t, "near", 16)
	q := make([]float64, w.dim)
	for j := range q {
		q[j] = float64(w.rows[3*w.dim+j])
	}
	w.queries = &gradients.Batch{N: 1, Layers: []gradients.Layer{{Name: "g", D: w.dim, Grad: q}}}
	for _, nd := range []float64{0, 0.99} {
		cfg := testConfig
		cfg.NearDuplicate = nd
		r, err := w.attributor(t, dir, linalg.CPU(), 0, cfg).Attribute(context.Background(), inferences(1, 10_000), w.queries)
		if err != nil {
			t.Fatal(err)
		}
		var both int
		for _, e := range r.Inferences[0].TopK {
			if e.ID == w.ids[3] || e.ID == w.ids[8] {
				both++
			}
		}
		if want := map[float64]int{0: 2, 0.99: 1}[nd]; both != want {
			t.Errorf("near-duplicate cosine %v: %d of the pair credited, want %d: %v", nd, both, want, r.Inferences[0].TopK)
		}
		if err := Check(r); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQuality checks the data-quality report: an example twenty times
// larger than the rest is its contributor's one outlier, and the queries'
// harmful examples are counted.
func TestQuality(t *testing.T) {
	w := newWorld(t, 60, 6)
	for j := range w.dim {
		w.rows[10*w.dim+j] *= 20 // row 10 belongs to contributor-0
	}
	dir := w.build(t, "outlier", 16)
	rep, err := w.attributor(t, dir, linalg.CPU(), 0, testConfig).Quality(context.Background(), QualityOptions{}, w.queries)
	if err != nil {
		t.Fatal(err)
	}
	negative, examples := 0, 0
	for _, c := range rep.Contributors {
		want := 0
		if c.Contributor == "contributor-0" {
			want = 1
		}
		if c.Outliers != want {
			t.Errorf("%s: %d outliers, want %d", c.Contributor, c.Outliers, want)
		}
		negative += c.Negative
		examples += c.Examples
	}
	if negative == 0 || examples != 60 || rep.Queries != 6 {
		t.Errorf("report %+v", rep)
	}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil || !strings.Contains(b.String(), "contributor-0") {
		t.Errorf("table %q, %v", b.String(), err)
	}

	// AttributeWithQuality scores once and gives Attribute's receipt and
	// Quality's report.
	a := w.attributor(t, dir, linalg.CPU(), 0, testConfig)
	want, err := a.Attribute(context.Background(), inferences(6, 7), w.queries)
	if err != nil {
		t.Fatal(err)
	}
	got, both, err := a.AttributeWithQuality(context.Background(), inferences(6, 7), QualityOptions{}, w.queries)
	if err != nil {
		t.Fatal(err)
	}
	if got.PayoutRoot != want.PayoutRoot || got.RecordRoot != want.RecordRoot {
		t.Error("AttributeWithQuality's receipt differs from Attribute's")
	}
	if !reflect.DeepEqual(both, rep) {
		t.Errorf("AttributeWithQuality's report %+v, Quality's %+v", both, rep)
	}
	if _, _, err := a.AttributeWithQuality(context.Background(), inferences(6, 7), QualityOptions{OutlierShare: 2}, w.queries); err == nil {
		t.Error("outlier share 2 accepted")
	}
}

// TestAttributeTimed checks that AttributeTimed returns Attribute's receipt
// and timings that fit inside each other (no timing is asserted).
func TestAttributeTimed(t *testing.T) {
	w := newWorld(t, 60, 5)
	ctx := context.Background()
	a := w.attributor(t, filepath.Join(w.dir, "store"), linalg.CPU(), 0, testConfig)
	want, err := a.Attribute(ctx, inferences(5, 7), w.queries)
	if err != nil {
		t.Fatal(err)
	}
	got, tm, err := a.AttributeTimed(ctx, inferences(5, 7), w.queries)
	if err != nil {
		t.Fatal(err)
	}
	if got.PayoutRoot != want.PayoutRoot || got.RecordRoot != want.RecordRoot {
		t.Errorf("AttributeTimed's receipt differs from Attribute's")
	}
	if tm.Scoring <= 0 || tm.Total < tm.Scoring {
		t.Errorf("timing %+v: want 0 < scoring ≤ total", tm)
	}
	if _, tm, err := a.AttributeTimed(ctx, nil, w.queries); err == nil || tm != (Timing{}) {
		t.Errorf("no inferences: timing %+v, error %v", tm, err)
	}
}

// TestAttributeConcurrent calls Attribute from several goroutines on one
// Attributor: every call returns the receipt of a call made alone.
func TestAttributeConcurrent(t *testing.T) {
	w := newWorld(t, 60, 3)
	ctx := context.Background()
	a := w.attributor(t, filepath.Join(w.dir, "store"), linalg.CPU(), 0, testConfig)
	want, err := a.Attribute(ctx, inferences(3, 5000), w.queries)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			r, err := a.Attribute(ctx, inferences(3, 5000), w.queries)
			if err == nil && (r.PayoutRoot != want.PayoutRoot || r.RecordRoot != want.RecordRoot) {
				err = errors.New("a concurrent call gave other roots")
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
