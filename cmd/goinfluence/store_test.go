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
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// storeFiles writes the training gradients of the store tests, 11 examples
// with ids 100, 103, 106, … split over two files (6 and 5 examples), and a
// query file of 3 examples, and returns the paths and the batches.
type storeFiles struct {
	train1, train2, q string
	train, query      *gradients.Batch
	trainIDs          []int64
	p                 func(name string) string
	ctx               context.Context
	stdout, stderr    bytes.Buffer
	t                 *testing.T // of the running (sub)test
}

func newStoreFiles(t *testing.T) *storeFiles {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	dir := t.TempDir()
	sf := &storeFiles{t: t, ctx: context.Background(), p: func(name string) string { return filepath.Join(dir, name) }}
	sf.train, sf.query = randomGrads(rng, 11), randomGrads(rng, 3)
	for i := range sf.train.N {
		sf.trainIDs = append(sf.trainIDs, int64(100+3*i))
	}
	sf.train.IDs = sf.trainIDs
	sf.train1, sf.train2, sf.q = sf.p("train1"), sf.p("train2"), sf.p("query")
	for path, b := range map[string]*gradients.Batch{sf.train1: sf.train.Slice(0, 6), sf.train2: sf.train.Slice(6, 11), sf.q: sf.query} {
		if err := gradients.WriteFile(path, b, gradients.F32, nil); err != nil {
			t.Fatal(err)
		}
	}
	return sf
}

// run runs goinfluence with args and fails the test on an error.
func (sf *storeFiles) run(args ...string) string {
	sf.t.Helper()
	sf.stdout.Reset()
	sf.stderr.Reset()
	if err := run(sf.ctx, args, &sf.stdout, &sf.stderr); err != nil {
		sf.t.Fatalf("goinfluence %s: %v\n%s", strings.Join(args, " "), err, sf.stderr.String())
	}
	return sf.stdout.String()
}

// storeRows reads every id and row of the store in dir.
func storeRows(t *testing.T, dir string) (store.Manifest, []int64, []float32) {
	t.Helper()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []int64
	var rows []float32
	it := s.Chunks(4)
	for it.Next(context.Background()) {
		c := it.Chunk()
		ids = append(ids, c.IDs...)
		rows = append(rows, c.Rows.Data...)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return s.Manifest(), ids, rows
}

func TestStoreBuild(t *testing.T) {
	sf := newStoreFiles(t)
	kinds := []struct {
		args []string
		p    gradients.Projection
		dim  int
	}{
		{nil, gradients.Projection{}, 5*4 + 4*3},
		{[]string{"--kind", "rademacher", "--k", "7", "--seed", "3"}, gradients.Projection{Kind: gradients.Rademacher, K: 7, Seed: 3}, 14},
		{[]string{"--kind", "sjlt", "--k", "6", "--seed", "3"}, gradients.Projection{Kind: gradients.SJLT, K: 6, Seed: 3}, 12},
		{[]string{"--kind", "gaussian", "--k", "5", "--seed", "3"}, gradients.Projection{Kind: gradients.Gaussian, K: 5, Seed: 3}, 10},
		{[]string{"--kind", "kronecker", "--k-in", "3", "--k-out", "2", "--seed", "3"}, gradients.Projection{Kind: gradients.Kronecker, KIn: 3, KOut: 2, Seed: 3}, 12},
	}
	// Relative precision of each dtype, with an absolute floor for values
	// near f16's subnormals.
	tols := map[string]float64{"f32": 1e-7, "f16": 1e-3, "bf16": 8e-3}
	for _, kind := range kinds {
		name := "none"
		if kind.p.Kind != 0 {
			name = kind.p.Kind.String()
		}
		want := sf.train.Flatten()
		if kind.p.Kind != 0 {
			pb, err := kind.p.Apply(sf.ctx, sf.train)
			if err != nil {
				t.Fatal(err)
			}
			want = pb.Flatten()
		}
		for _, dtype := range []string{"f16", "bf16", "f32"} {
			t.Run(name+"/"+dtype, func(t *testing.T) {
				sf.t = t
				dir := filepath.Join(t.TempDir(), "store")
				args := append([]string{"store", "build", "--grads", sf.train1, "--grads", sf.train2, "--out", dir,
					"--dtype", dtype, "--shard-rows", "3", "--chunk", "4"}, kind.args...)
				out := sf.run(args...)
				for _, s := range []string{"rows        11", "shards      4", "dtype       " + dtype, "(11 added)"} {
					if !strings.Contains(out, s) {
						t.Errorf("summary lacks %q:\n%s", s, out)
					}
				}
				if !strings.Contains(sf.stderr.String(), "11/11 examples, 9 rows committed") {
					t.Errorf("progress on stderr:\n%s", sf.stderr.String())
				}
				m, ids, rows := storeRows(t, dir)
				if m.Projection != kind.p || m.DType != gradients.DType(strings.ToUpper(dtype)) || m.Dim != kind.dim || m.Count != 11 || len(m.Shards) != 4 {
					t.Fatalf("manifest %+v", m)
				}
				if len(m.Layers) != 2 || m.Layers[0].Name != "block.0.attn" || m.Layers[1].Name != "head" || m.Layers[1].Offset != m.Layers[0].Dim {
					t.Errorf("layers %+v", m.Layers)
				}
				if !slices.Equal(ids, sf.trainIDs) {
					t.Errorf("ids %v, want %v", ids, sf.trainIDs)
				}
				for i, w := range want.Data {
					if d := math.Abs(float64(rows[i]) - w); d > tols[dtype]*math.Abs(w)+1e-6 {
						t.Fatalf("row %d column %d: %v, want %v", i/kind.dim, i%kind.dim, rows[i], w)
					}
				}
			})
		}
	}
}

// A file without ids stores the examples' positions in the inputs as ids.
func TestStoreBuildPositionIDs(t *testing.T) {
	sf := newStoreFiles(t)
	noIDs := sf.train.Slice(0, 6)
	noIDs.IDs = nil
	if err := gradients.WriteFile(sf.p("noids"), noIDs, gradients.F32, nil); err != nil {
		t.Fatal(err)
	}
	dir := sf.p("store")
	sf.run("store", "build", "--grads", sf.train2+","+sf.p("noids"), "--out", dir, "--chunk", "4")
	_, ids, _ := storeRows(t, dir)
	want := append(slices.Clone(sf.trainIDs[6:]), 5, 6, 7, 8, 9, 10)
	if !slices.Equal(ids, want) {
		t.Errorf("ids %v, want %v", ids, want)
	}
}

func TestStoreInfo(t *testing.T) {
	sf := newStoreFiles(t)
	dir := sf.p("store")
	sf.run("store", "build", "--grads", sf.train1, "--grads", sf.train2, "--out", dir, "--kind", "kronecker", "--k", "2", "--seed", "5", "--shard-rows", "4")
	out := sf.run("store", "info", "--store", dir, "--verify")
	for _, s := range []string{"goinfluence.store/v1", "rows        11", "shards      3", "dtype       f16", "dim         8",
		"projection  kronecker k_in=2 k_out=2 seed=5", "block.0.attn", "offset 4, dim 4", "verify      ok: sha256 of 3 shards"} {
		if !strings.Contains(out, s) {
			t.Errorf("info lacks %q:\n%s", s, out)
		}
	}
	var info struct {
		Dir        string
		Format     string
		DType      string
		Dim        int
		Count      int
		Seed       int64
		Bytes      int64
		Verified   bool
		Shards     []struct{ File, SHA256 string }
		Layers     []store.LayerInfo
		Projection struct {
			Kind string
			KIn  int `json:"k_in"`
			KOut int `json:"k_out"`
		}
	}
	if err := json.Unmarshal([]byte(sf.run("store", "info", "--store", dir, "--json", "--verify")), &info); err != nil {
		t.Fatalf("info --json: %v\n%s", err, sf.stdout.String())
	}
	var size int64
	for _, name := range []string{"manifest.json", "shard-000000.safetensors", "shard-000001.safetensors", "shard-000002.safetensors"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		size += st.Size()
	}
	if info.Dir != dir || info.Format != store.Format || info.DType != "f16" || info.Dim != 8 || info.Count != 11 || info.Seed != 5 ||
		!info.Verified || len(info.Shards) != 3 || len(info.Layers) != 2 || info.Bytes != size ||
		info.Projection.Kind != "kronecker" || info.Projection.KIn != 2 || info.Projection.KOut != 2 {
		t.Errorf("info --json: %+v (bytes on disk %d)", info, size)
	}

	// Flip the last byte of the middle shard: the header still opens, the
	// digest no longer matches.
	shard := filepath.Join(dir, "shard-000001.safetensors")
	buf, err := os.ReadFile(shard)
	if err != nil {
		t.Fatal(err)
	}
	buf[len(buf)-1] ^= 0x40
	if err := os.WriteFile(shard, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	sf.run("store", "info", "--store", dir) // without --verify only headers are checked
	var stdout, stderr bytes.Buffer
	err = run(sf.ctx, []string{"store", "info", "--store", dir, "--verify"}, &stdout, &stderr)
	if err == nil || !errors.Is(err, store.ErrChecksum) || !strings.Contains(err.Error(), shard) {
		t.Fatalf("info --verify on a corrupted shard: %v, want a sha256 mismatch naming %s", err, shard)
	}

	// store score checks every shard before reading it, unless --no-verify.
	err = run(sf.ctx, []string{"store", "score", "--store", dir, "--query", sf.q, "--out", sf.p("corrupt"), "--backend", "cpu"}, &stdout, &stderr)
	if !errors.Is(err, store.ErrChecksum) || !strings.Contains(err.Error(), shard) {
		t.Fatalf("score of a corrupted shard: %v, want a sha256 mismatch naming %s", err, shard)
	}
	sf.run("store", "score", "--store", dir, "--query", sf.q, "--out", sf.p("unverified"), "--backend", "cpu", "--no-verify")
}

// TestStoreResume builds from the first file, as a build killed after it
// would have left the store, resumes with both files and compares with a
// one-shot build of both.
func TestStoreResume(t *testing.T) {
	sf := newStoreFiles(t)
	for _, proj := range [][]string{nil, {"--kind", "sjlt", "--k", "5", "--seed", "9"}} {
		t.Run(strings.Join(append([]string{"kind"}, proj...), " "), func(t *testing.T) {
			sf.t = t
			oneShot, resumed := filepath.Join(t.TempDir(), "one"), filepath.Join(t.TempDir(), "resumed")
			sf.run(append([]string{"store", "build", "--grads", sf.train1, "--grads", sf.train2, "--out", oneShot, "--dtype", "bf16", "--shard-rows", "4"}, proj...)...)
			sf.run(append([]string{"store", "build", "--grads", sf.train1, "--out", resumed, "--dtype", "bf16", "--shard-rows", "4", "--chunk", "5"}, proj...)...)
			// The first run committed 4 of its 6 rows before its last
			// shard; dropping that shard from the manifest makes it a
			// build killed with rows 4 and 5 uncommitted.
			truncateStore(t, resumed, 1)
			// The projection and dtype come from the manifest; given
			// flags must match it.
			out := sf.run(append([]string{"store", "build", "--grads", sf.train1 + "," + sf.train2, "--out", resumed, "--resume", "--chunk", "3"}, proj...)...)
			if !strings.Contains(out, "11 rows (7 added)") || !strings.Contains(sf.stderr.String(), "resuming "+resumed+" after its 4 committed rows") {
				t.Errorf("resume output:\n%s%s", out, sf.stderr.String())
			}
			m1, ids1, rows1 := storeRows(t, oneShot)
			m2, ids2, rows2 := storeRows(t, resumed)
			if m1.Count != m2.Count || m1.Dim != m2.Dim || m1.Projection != m2.Projection || m1.DType != m2.DType {
				t.Fatalf("manifests differ:\n%+v\n%+v", m1, m2)
			}
			if !slices.Equal(ids1, ids2) || !slices.Equal(ids1, sf.trainIDs) {
				t.Errorf("ids %v, one-shot %v", ids2, ids1)
			}
			if !slices.Equal(rows1, rows2) {
				t.Errorf("rows differ from the one-shot build")
			}
			// Resuming a complete build adds nothing.
			if out := sf.run("store", "build", "--grads", sf.train1, "--grads", sf.train2, "--out", resumed, "--resume"); !strings.Contains(out, "(0 added)") {
				t.Errorf("resume of a complete store:\n%s", out)
			}
		})
	}
}

// truncateStore rewrites a store's manifest as if its last n shards had
// never been committed, as a build killed before committing them leaves it.
func truncateStore(t *testing.T, dir string, n int) {
	t.Helper()
	path := filepath.Join(dir, store.ManifestName)
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m store.Manifest
	if err := json.Unmarshal(buf, &m); err != nil {
		t.Fatal(err)
	}
	for _, sh := range m.Shards[len(m.Shards)-n:] {
		m.Count -= sh.Rows
	}
	m.Shards = m.Shards[:len(m.Shards)-n]
	if buf, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkScoresFile checks a store score output against the full score matrix
// it wrote with --scores-out and against want (n_query × n_train, float64)
// within tol, relative in the Frobenius norm.
func checkScoresFile(t *testing.T, out, full string, want *linalg.Dense64, ids []int64, k int, tol float64) {
	t.Helper()
	nq, n := want.Rows, want.Cols
	got := readTensor(t, full, "scores")
	if len(got) != nq*n {
		t.Fatalf("scores has %d values, want %d×%d", len(got), nq, n)
	}
	if e := rel(got, want.Data); e > tol {
		t.Errorf("scores relative error %.3g > %.g", e, tol)
	}
	fullIDs := readTensor(t, full, "ids")
	for i, id := range ids {
		if fullIDs[i] != float64(id) {
			t.Fatalf("ids %v, want %v", fullIDs, ids)
		}
	}
	for _, side := range []string{"topk", "bottomk"} {
		idx, sid, val := readTensor(t, out, side+".indices"), readTensor(t, out, side+".ids"), readTensor(t, out, side+".scores")
		if len(idx) != nq*k || len(sid) != nq*k || len(val) != nq*k {
			t.Fatalf("%s: %d, %d, %d values, want %d×%d", side, len(idx), len(sid), len(val), nq, k)
		}
		better := func(a, b float64) bool { return a > b }
		if side == "bottomk" {
			better = func(a, b float64) bool { return a < b }
		}
		for q := 0; q < nq; q++ {
			row := got[q*n : (q+1)*n]
			for j := 0; j < k; j++ {
				i := int(idx[q*k+j])
				if val[q*k+j] != row[i] || sid[q*k+j] != float64(ids[i]) {
					t.Fatalf("%s[%d][%d] = row %d, id %v, score %v; --scores-out has id %d, score %v", side, q, j, i, sid[q*k+j], val[q*k+j], ids[i], row[i])
				}
				if j > 0 && better(val[q*k+j], val[q*k+j-1]) {
					t.Fatalf("%s of query %d out of order: %v", side, q, val[q*k:(q+1)*k])
				}
			}
			last := val[q*k+k-1]
			for i, v := range row {
				if better(v, last) && !slices.Contains(idx[q*k:(q+1)*k], float64(i)) {
					t.Fatalf("%s of query %d misses row %d with score %v (last kept %v)", side, q, i, v, last)
				}
			}
		}
	}
}

func TestStoreScoreIdentity(t *testing.T) {
	sf := newStoreFiles(t)
	dir := sf.p("store")
	sf.run("store", "build", "--grads", sf.train1, "--grads", sf.train2, "--out", dir, "--dtype", "f32", "--shard-rows", "4")
	sf.run("store", "score", "--store", dir, "--query", sf.q, "--topk", "4", "--chunk", "5", "--scores-out", sf.p("full"), "--out", sf.p("scores"), "--backend", "cpu")
	an := &influence.Analyzer{Method: influence.Identity(), Backend: linalg.CPU()}
	want, err := an.Scores(sf.ctx, sf.query, sf.train)
	if err != nil {
		t.Fatal(err)
	}
	checkScoresFile(t, sf.p("scores"), sf.p("full"), want, sf.trainIDs, 4, 1e-5)
	f, err := safetensors.Open(sf.p("scores"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	md := f.Metadata
	for key, v := range map[string]string{"format": influence.ScoresFormat, "store": dir, "query": sf.q, "method": "identity", "projection": "none", "topk": "4", "store_count": "11"} {
		if md[key] != v {
			t.Errorf("metadata %s = %q, want %q", key, md[key], v)
		}
	}
	// Without --scores-out the top-k is the same; --topk beyond the store
	// keeps every row.
	sf.run("store", "score", "--store", dir, "--query", sf.q, "--topk", "4", "--out", sf.p("scores2"))
	for _, name := range []string{"topk.indices", "topk.ids", "bottomk.indices"} {
		if !slices.Equal(readTensor(t, sf.p("scores"), name), readTensor(t, sf.p("scores2"), name)) {
			t.Errorf("%s differs without --scores-out", name)
		}
	}
	sf.run("store", "score", "--store", dir, "--query", sf.q, "--topk", "50", "--out", sf.p("scores3"), "--scores-out", sf.p("full3"))
	checkScoresFile(t, sf.p("scores3"), sf.p("full3"), want, sf.trainIDs, 11, 1e-5)
	// --dtype f32 is the default, byte for byte.
	sf.run("store", "score", "--store", dir, "--query", sf.q, "--topk", "50", "--dtype", "f32", "--out", sf.p("scores4"), "--scores-out", sf.p("full4"))
	for _, pair := range [][2]string{{"scores3", "scores4"}, {"full3", "full4"}} {
		a, errA := os.ReadFile(sf.p(pair[0]))
		b, errB := os.ReadFile(sf.p(pair[1]))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs with --dtype f32 (%v, %v)", pair[1], errA, errB)
		}
	}
}

// kroneckerStore writes the Kronecker projection of 40 random fit
// gradients (seeded by seed) to fitproj, as 'goinfluence project' does,
// builds the store of the training files with the same projection in the
// given dtype and shard size, and returns the projection flags, the store
// directory and the training and query batches projected in memory.
func (sf *storeFiles) kroneckerStore(seed uint64, dtype, shardRows string) (proj []string, dir string, ptrain, pquery *gradients.Batch) {
	sf.t.Helper()
	fit := randomGrads(rand.New(rand.NewPCG(seed, seed+1)), 40)
	if err := gradients.WriteFile(sf.p("fit"), fit, gradients.F32, nil); err != nil {
		sf.t.Fatal(err)
	}
	proj = []string{"--kind", "kronecker", "--k-in", "3", "--k-out", "2", "--seed", "17"}
	p := gradients.Projection{Kind: gradients.Kronecker, KIn: 3, KOut: 2, Seed: 17}
	sf.run(append([]string{"project", "--grads", sf.p("fit"), "--out", sf.p("fitproj"), "--dtype", "f64"}, proj...)...)
	dir = sf.p("store")
	sf.run(append([]string{"store", "build", "--grads", sf.train1, "--grads", sf.train2, "--out", dir, "--dtype", dtype, "--shard-rows", shardRows}, proj...)...)
	var err error
	if ptrain, err = p.Apply(sf.ctx, sf.train); err != nil {
		sf.t.Fatal(err)
	}
	if pquery, err = p.Apply(sf.ctx, sf.query); err != nil {
		sf.t.Fatal(err)
	}
	return proj, dir, ptrain, pquery
}

// TestStoreScoreFactors fits factors on Kronecker-projected fit gradients
// (goinfluence project, then fit), scores a store built with the same
// projection, and compares with the Analyzer on the projected batches.
func TestStoreScoreFactors(t *testing.T) {
	sf := newStoreFiles(t)
	proj, dir, ptrain, pquery := sf.kroneckerStore(13, "f32", "5")
	for _, method := range []string{"ekfac", "kfac", "diagonal"} {
		for _, damping := range []string{"0.01", "heuristic"} {
			for _, precision := range []string{"f64", "f32"} {
				t.Run(method+"/"+damping+"/"+precision, func(t *testing.T) {
					sf.t = t
					tmp := t.TempDir()
					factors, full, scores := filepath.Join(tmp, "factors"), filepath.Join(tmp, "full"), filepath.Join(tmp, "scores")
					sf.run("fit", "--grads", sf.p("fitproj"), "--method", method, "--out", factors)
					args := []string{"store", "score", "--store", dir, "--query", sf.q, "--factors", factors, "--damping", damping,
						"--topk", "3", "--chunk", "4", "--scores-out", full, "--out", scores, "--precision", precision}
					if method == "ekfac" {
						args = append(args, proj...) // matching flags are accepted
					}
					sf.run(args...)
					f, err := ekfac.Load(factors)
					if err != nil {
						t.Fatal(err)
					}
					d, _ := hessian.ParseDamping(damping)
					an := &influence.Analyzer{Method: influence.Factors(f, ekfac.ScoreOptions{Damping: d}), Backend: linalg.CPU()}
					want, err := an.Scores(sf.ctx, pquery, ptrain)
					if err != nil {
						t.Fatal(err)
					}
					checkScoresFile(t, scores, full, want, sf.trainIDs, 3, 1e-5)
					if m := readMeta(t, scores); m["precision"] != map[string]string{"f64": "", "f32": "f32"}[precision] {
						t.Errorf("metadata precision %q with --precision %s", m["precision"], precision)
					}
				})
			}
		}
	}
}

func TestStoreErrors(t *testing.T) {
	sf := newStoreFiles(t)
	rng := rand.New(rand.NewPCG(15, 16))
	other := randomGrads(rng, 3)
	other.Layers[1].Name = "tail"
	wide := randomGrads(rng, 3)
	wide.Layers[1].DIn, wide.Layers[1].A = 5, make([]float64, 3*5)
	dense := randomGrads(rng, 3)
	dense.Layers[1] = gradients.Layer{Name: "head", D: 12, Grad: make([]float64, 3*12)}
	for name, b := range map[string]*gradients.Batch{"other": other, "wide": wide, "dense": dense} {
		if err := gradients.WriteFile(sf.p(name), b, gradients.F32, nil); err != nil {
			t.Fatal(err)
		}
	}
	plain, sjlt := sf.p("plain"), sf.p("sjlt")
	sf.run("store", "build", "--grads", sf.train1, "--out", plain)
	sf.run("store", "build", "--grads", sf.train1, "--out", sjlt, "--kind", "sjlt", "--k", "4", "--seed", "1")
	sf.run("fit", "--grads", sf.train1, "--out", sf.p("factors")) // unprojected factors
	missing := sf.p("missing")
	out := sf.p("out")
	tests := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"no subcommand", []string{}, true, "store needs a subcommand"},
		{"unknown subcommand", []string{"list"}, true, `unknown store subcommand "list"`},
		{"build without out", []string{"build", "--grads", sf.train1}, true, "needs --grads and --out"},
		{"build bad dtype", []string{"build", "--grads", sf.train1, "--out", out, "--dtype", "f64"}, true, `--dtype "f64"`},
		{"build k without kind", []string{"build", "--grads", sf.train1, "--out", out, "--k", "4"}, true, "need a projection --kind"},
		{"build bad kind", []string{"build", "--grads", sf.train1, "--out", out, "--kind", "fjlt", "--k", "4"}, true, `unknown kind "fjlt"`},
		{"build seed too large", []string{"build", "--grads", sf.train1, "--out", out, "--kind", "sjlt", "--k", "4", "--seed", "9223372036854775808"}, true, "below 2⁶³"},
		{"build bad chunk", []string{"build", "--grads", sf.train1, "--out", out, "--chunk", "0"}, true, "--chunk must be at least 1"},
		{"build missing grads", []string{"build", "--grads", missing, "--out", out}, false, missing},
		{"build inputs differ", []string{"build", "--grads", sf.train1, "--grads", sf.p("other"), "--out", out}, false, `layer 1 is "tail" (factored 3×4), in ` + sf.train1 + ` it is "head"`},
		{"build kronecker on dense", []string{"build", "--grads", sf.p("dense"), "--out", out, "--kind", "kronecker", "--k", "2"}, false, `layer "head" is dense (grad of dimension 12), but kronecker needs factored layers`},
		{"build over a store", []string{"build", "--grads", sf.train1, "--out", plain}, false, "use --resume"},
		{"resume missing store", []string{"build", "--grads", sf.train1, "--out", missing, "--resume"}, false, filepath.Join(missing, "manifest.json")},
		{"resume other projection", []string{"build", "--grads", sf.train1, "--out", sjlt, "--resume", "--kind", "sjlt", "--k", "5", "--seed", "1"}, false,
			"the flags give projection sjlt k=5 seed=1, the store holds sjlt k=4 seed=1"},
		{"resume other seed", []string{"build", "--grads", sf.train1, "--out", sjlt, "--resume", "--kind", "sjlt", "--k", "4", "--seed", "2"}, false,
			"the flags give projection sjlt k=4 seed=2"},
		{"resume unprojected as projected", []string{"build", "--grads", sf.train1, "--out", plain, "--resume", "--kind", "rademacher", "--k", "4"}, false,
			"the store holds none"},
		{"resume other dtype", []string{"build", "--grads", sf.train1, "--out", sjlt, "--resume", "--dtype", "f32"}, false, "--dtype f32, the store holds f16"},
		{"resume other layers", []string{"build", "--grads", sf.p("other"), "--out", plain, "--resume"}, false, `layer 1 is "tail", the store's is "head"`},
		{"resume other dimensions", []string{"build", "--grads", sf.p("wide"), "--out", sf.p("plain"), "--resume"}, false, `layer "head" has dimension 15 as stored, the store's has 12`},
		{"info without store", []string{"info"}, true, "needs --store"},
		{"info missing store", []string{"info", "--store", missing}, false, filepath.Join(missing, "manifest.json")},
		{"score missing store", []string{"score", "--store", missing, "--query", sf.q, "--out", out}, false, filepath.Join(missing, "manifest.json")},
		{"score without query", []string{"score", "--store", plain, "--out", out}, true, "needs --store, --query and --out"},
		{"score bad topk", []string{"score", "--store", plain, "--query", sf.q, "--out", out, "--topk", "0"}, true, "--topk must be at least 1"},
		{"score precision without factors", []string{"score", "--store", plain, "--query", sf.q, "--out", out, "--precision", "f32"}, true, "--precision applies to the queries' preconditioning with --factors"},
		{"score bad precision", []string{"score", "--store", plain, "--query", sf.q, "--out", out, "--factors", sf.q, "--precision", "f16"}, true, `unknown precision "f16"`},
		{"score damping without factors", []string{"score", "--store", plain, "--query", sf.q, "--out", out, "--damping", "0.1"}, true, "--damping needs --factors"},
		{"score same outputs", []string{"score", "--store", plain, "--query", sf.q, "--out", out, "--scores-out", out}, true, "--scores-out " + out + " is the same file as --out " + out},
		{"score other layers", []string{"score", "--store", plain, "--query", sf.p("other"), "--out", out}, false, `layer 1 is "tail", the store's is "head"`},
		{"score dim mismatch", []string{"score", "--store", plain, "--query", sf.p("wide"), "--out", out}, false, `layer "head" has dimension 15 as stored, the store's has 12`},
		{"score other projection", []string{"score", "--store", sjlt, "--query", sf.q, "--out", out, "--kind", "gaussian", "--k", "4", "--seed", "1"}, false,
			"the flags give projection gaussian k=4 seed=1"},
		{"score kronecker dense query", []string{"score", "--store", sf.p("kron"), "--query", sf.p("dense"), "--out", out}, false, "kronecker needs factored layers"},
		{"score unprojected factors", []string{"score", "--store", sjlt, "--query", sf.q, "--factors", sf.p("factors"), "--out", out}, false, "factors"},
		{"score missing factors", []string{"score", "--store", plain, "--query", sf.q, "--factors", missing, "--out", out}, false, missing},
		{"score f64", []string{"score", "--store", plain, "--query", sf.q, "--dtype", "f64", "--out", out}, true, "--dtype f64: a store's scores are computed in float32"},
		{"score bad dtype", []string{"score", "--store", plain, "--query", sf.q, "--dtype", "f16", "--out", out}, true, `--dtype: scores dtype "f16": want f32 or f64`},
	}
	sf.run("store", "build", "--grads", sf.train1, "--out", sf.p("kron"), "--kind", "kronecker", "--k", "2")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(sf.ctx, append([]string{"store"}, tc.args...), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if errors.Is(err, errUsage) != tc.usage {
				t.Errorf("usage error = %v, want %v: %v", errors.Is(err, errUsage), tc.usage, err)
			}
		})
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed command left %s: %v", out, err)
	}
}

// TestStoreScoreRawHessian preconditions queries with the store's own
// projected Hessian, H = (1/N) ΦᵀΦ, and compares with exact influence on
// that H computed from the training gradients in memory.
func TestStoreScoreRawHessian(t *testing.T) {
	sf := newStoreFiles(t)
	dir := sf.p("store")
	sf.run("store", "build", "--grads", sf.train1, "--grads", sf.train2, "--out", dir, "--dtype", "f32", "--shard-rows", "4")
	g := sf.train.Flatten()
	h := linalg.NewDense64(g.Cols, g.Cols, nil)
	linalg.CPU().Dgemm(linalg.Trans, linalg.NoTrans, 1/float64(g.Rows), g, g, 0, h)
	for _, tc := range []struct {
		damping string
		delta   float64
	}{{"0.1", 0.1}, {"heuristic", influence.RawDamping(h, hessian.Damping{Heuristic: true})}} {
		sf.run("store", "score", "--store", dir, "--query", sf.q, "--hessian", "raw", "--damping", tc.damping,
			"--topk", "3", "--chunk", "5", "--scores-out", sf.p("full"), "--out", sf.p("scores"), "--backend", "cpu")
		an := &influence.Analyzer{Method: influence.Exact(h, tc.delta), Backend: linalg.CPU()}
		want, err := an.Scores(sf.ctx, sf.query, sf.train)
		if err != nil {
			t.Fatal(err)
		}
		checkScoresFile(t, sf.p("scores"), sf.p("full"), want, sf.trainIDs, 3, 1e-5)
	}
	var out, errOut bytes.Buffer
	err := run(sf.ctx, []string{"store", "score", "--store", dir, "--query", sf.q, "--hessian", "raw", "--factors", sf.p("x"), "--out", sf.p("s")}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "choose one") {
		t.Errorf("--hessian raw with --factors: %v", err)
	}
}

// TestStoreBuildInputs checks that a build stores each example once and
// that --resume continues only the inputs it was started with: the same
// file twice, overlapping ids, another input on resume and a store that
// another build holds are refused, naming the file, row and id at fault.
func TestStoreBuildInputs(t *testing.T) {
	sf := newStoreFiles(t)
	overlap := sf.train.Slice(6, 11)
	overlap.IDs = slices.Clone(overlap.IDs)
	overlap.IDs[2] = sf.trainIDs[1]
	if err := gradients.WriteFile(sf.p("overlap"), overlap, gradients.F32, nil); err != nil {
		t.Fatal(err)
	}
	shifted := sf.train.Slice(6, 11)
	shifted.IDs = slices.Clone(shifted.IDs)
	for i := range shifted.IDs {
		shifted.IDs[i]++
	}
	if err := gradients.WriteFile(sf.p("shifted"), shifted, gradients.F32, nil); err != nil {
		t.Fatal(err)
	}
	// Other rows under the first file's ids, as another split numbered
	// from 0 would carry.
	sameIDs := sf.train.Slice(5, 11)
	sameIDs.IDs = slices.Clone(sf.trainIDs[:6])
	if err := gradients.WriteFile(sf.p("sameids"), sameIDs, gradients.F32, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sf.train1, sf.p("link")); err != nil {
		t.Fatal(err)
	}
	// partial is a build of both files killed before its last shard,
	// within the second file; plain one of the first only.
	partial, plain := sf.p("partial"), sf.p("plain")
	sf.run("store", "build", "--grads", sf.train1+","+sf.train2, "--out", partial, "--shard-rows", "4")
	truncateStore(t, partial, 1)
	sf.run("store", "build", "--grads", sf.train1, "--out", plain, "--shard-rows", "4")
	truncateStore(t, plain, 1)
	tests := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"same file twice", []string{"--grads", sf.train1 + "," + sf.train1, "--out", sf.p("a")}, true,
			"--grads " + sf.train1 + " and " + sf.train1 + " are the same file"},
		{"same file twice by flags", []string{"--grads", sf.train1, "--grads", sf.train2, "--grads", sf.train1, "--out", sf.p("b")}, true, "are the same file"},
		{"same file through a link", []string{"--grads", sf.train1 + "," + sf.p("link"), "--out", sf.p("c")}, true, "are the same file"},
		{"overlapping ids", []string{"--grads", sf.train1 + "," + sf.p("overlap"), "--out", sf.p("d")}, false,
			fmt.Sprintf("id %d: row 2 of %s duplicates row 1 of %s", sf.trainIDs[1], sf.p("overlap"), sf.train1)},
		{"resume another file", []string{"--grads", sf.train2, "--out", plain, "--resume"}, false,
			fmt.Sprintf("row 0 of %s has id %d, the store's row 0 (in shard-000000.safetensors) has id %d", sf.train2, sf.trainIDs[6], sf.trainIDs[0])},
		{"resume other rows under the same ids", []string{"--grads", sf.p("sameids"), "--out", plain, "--resume"}, false,
			fmt.Sprintf("row 3 of %s differs from the store's row 3 (in shard-000000.safetensors), though their ids match", sf.p("sameids"))},
		{"resume files swapped", []string{"--grads", sf.train2 + "," + sf.train1, "--out", partial, "--resume"}, false,
			fmt.Sprintf("row 0 of %s has id %d", sf.train2, sf.trainIDs[6])},
		{"resume another second file", []string{"--grads", sf.train1 + "," + sf.p("shifted"), "--out", partial, "--resume"}, false,
			fmt.Sprintf("row 0 of %s has id %d, the store's row 6 (in shard-000001.safetensors) has id %d", sf.p("shifted"), sf.trainIDs[6]+1, sf.trainIDs[6])},
		{"resume with an overlapping file", []string{"--grads", sf.train1 + "," + sf.p("overlap"), "--out", partial, "--resume"}, false,
			fmt.Sprintf("id %d: row 2 of %s duplicates row 1 of %s, in shard-000000.safetensors", sf.trainIDs[1], sf.p("overlap"), sf.train1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(sf.ctx, append([]string{"store", "build"}, tc.args...), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if errors.Is(err, errUsage) != tc.usage {
				t.Errorf("usage error = %v, want %v: %v", errors.Is(err, errUsage), tc.usage, err)
			}
		})
	}

	// Another build holding the store is named.
	b, err := store.Resume(partial)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err = run(sf.ctx, []string{"store", "build", "--grads", sf.train1 + "," + sf.train2, "--out", partial, "--resume"}, &stdout, &stderr)
	if want := fmt.Sprintf("%s: locked by pid %d on host ", partial, os.Getpid()); !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), want) {
		t.Errorf("resume of a held store: %v, want %q", err, want)
	}
	b.Close()

	// With the lock free, the build killed within its second file resumes
	// to the one-shot store.
	out := sf.run("store", "build", "--grads", sf.train1+","+sf.train2, "--out", partial, "--resume", "--chunk", "2")
	if !strings.Contains(out, "11 rows (3 added)") {
		t.Errorf("resume output:\n%s", out)
	}
	oneShot := sf.p("one")
	sf.run("store", "build", "--grads", sf.train1+","+sf.train2, "--out", oneShot, "--shard-rows", "4")
	_, ids1, rows1 := storeRows(t, oneShot)
	_, ids2, rows2 := storeRows(t, partial)
	if !slices.Equal(ids1, ids2) || !slices.Equal(rows1, rows2) {
		t.Errorf("resumed store differs from the one-shot build: ids %v, want %v", ids2, ids1)
	}
	for i := range 3 {
		name := fmt.Sprintf("shard-%06d.safetensors", i)
		a, _ := os.ReadFile(filepath.Join(oneShot, name))
		b, _ := os.ReadFile(filepath.Join(partial, name))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs from the one-shot build's", name)
		}
	}
}
