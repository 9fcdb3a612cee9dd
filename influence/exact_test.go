package influence

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/quant"
)

// refQuant is DESIGN §11's quantisation written out on its own, in
// float64: the reference of the exact path's tests.
func refQuant(x []float32) ([]int64, float64) {
	var m float64
	for _, v := range x {
		m = math.Max(m, math.Abs(float64(v)))
	}
	q := make([]int64, len(x))
	if m == 0 {
		return q, 0
	}
	s := float64(float32(m / 127))
	for j, v := range x {
		q[j] = int64(math.Max(-127, math.Min(127, math.RoundToEven(float64(v)/s))))
	}
	return q, s
}

// exactReference returns the scores, integer sums and rankings (by score,
// then id) of queries against rows with ids, computed from the float rows
// with refQuant and int64 sums.
func exactReference(queries *linalg.Dense32, rows []float32, ids []int64, dim, k int) ([][]float32, [][]int64, []Ranking) {
	n := len(ids)
	tq := make([][]int64, n)
	ts := make([]float64, n)
	for r := range n {
		tq[r], ts[r] = refQuant(rows[r*dim : (r+1)*dim])
	}
	scores := make([][]float32, queries.Rows)
	isums := make([][]int64, queries.Rows)
	ranks := make([]Ranking, queries.Rows)
	for i := range queries.Rows {
		qq, qs := refQuant(queries.Row(i))
		scores[i] = make([]float32, n)
		isums[i] = make([]int64, n)
		entries := make([]Entry, n)
		for r := range n {
			var s int64
			for j := range dim {
				s += qq[j] * tq[r][j]
			}
			isums[i][r] = s
			scores[i][r] = float32(float64(s) * qs * ts[r])
			entries[r] = Entry{Index: r, ID: ids[r], Score: float64(scores[i][r]), ISum: s}
		}
		kk := min(k, n)
		sort.Slice(entries, func(a, b int) bool { return HelpfulByID(entries[a], entries[b]) })
		ranks[i].Helpful = slices.Clone(entries[:kk])
		sort.Slice(entries, func(a, b int) bool { return HarmfulByID(entries[a], entries[b]) })
		ranks[i].Harmful = slices.Clone(entries[:kk])
	}
	return scores, isums, ranks
}

// i8Store builds an i8 store of the given rows and ids.
func i8Store(t *testing.T, shardRows, dim int, ids []int64, rows []float32) *store.Store {
	t.Helper()
	opt := store.Options{DType: gradients.I8, ShardRows: shardRows, Layers: []store.LayerInfo{{Name: "g", Dim: dim}}}
	return buildStore(t, opt, func(b *store.Builder) error { return b.Add(context.Background(), ids, rows) })
}

func randFloats(n int, seed uint64, scale float64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 3))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

func sameRankings(a, b []Ranking) (string, bool) {
	if len(a) != len(b) {
		return fmt.Sprintf("%d rankings, want %d", len(a), len(b)), false
	}
	for i := range a {
		for _, side := range []struct {
			name string
			x, y []Entry
		}{{"helpful", a[i].Helpful, b[i].Helpful}, {"harmful", a[i].Harmful, b[i].Harmful}} {
			if len(side.x) != len(side.y) {
				return fmt.Sprintf("query %d %s: %d entries, want %d", i, side.name, len(side.x), len(side.y)), false
			}
			for j := range side.x {
				x, y := side.x[j], side.y[j]
				if x.Index != y.Index || x.ID != y.ID || x.ISum != y.ISum || math.Float64bits(x.Score) != math.Float64bits(y.Score) {
					return fmt.Sprintf("query %d %s entry %d: %+v, want %+v", i, side.name, j, x, y), false
				}
			}
		}
	}
	return "", true
}

// TestExactReference checks exact scores, integer sums and rankings against
// the reference, for one query (the GEMV-shaped pass) and a batch.
func TestExactReference(t *testing.T) {
	const n, dim, k = 300, 37, 9
	rows := randFloats(n*dim, 1, 2)
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = 10 + 7*int64(i)
	}
	s := i8Store(t, 64, dim, ids, rows)
	for _, nq := range []int{1, 5, 20} {
		q := testQueries(nq, dim, uint64(nq))
		wantScores, wantISums, wantRanks := exactReference(q, rows, ids, dim, k)
		got, scoresFn := collect(t, nq, n)
		res, err := StreamScores(context.Background(), linalg.CPU(), q, s, StreamOptions{TopK: k, Scores: scoresFn})
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows != n || res.Kernel == "" {
			t.Fatalf("nq %d: %d rows, kernel %q", nq, res.Rows, res.Kernel)
		}
		for i := range nq {
			if j, ok := sameBits(got.scores.Row(i), wantScores[i]); !ok {
				t.Fatalf("nq %d: query %d row %d: score %v, want %v (isum %d)", nq, i, j, got.scores.Row(i)[j], wantScores[i][j], wantISums[i][j])
			}
		}
		if msg, ok := sameRankings(res.Rankings, wantRanks); !ok {
			t.Fatalf("nq %d: %s", nq, msg)
		}
	}
}

// TestExactBitIdentity checks that every int8 kernel this CPU runs gives
// the same scores, integer sums and rankings, bit for bit, whatever
// GOMAXPROCS, the chunk size and the shard size.
func TestExactBitIdentity(t *testing.T) {
	const n, dim, nq, k = 517, 150, exactDeviceMin, 12
	rows := randFloats(n*dim, 2, 1)
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(n - i) // decreasing: ties must go to the lower id, not row
	}
	// Rows 10 and 11 equal: their scores tie for every query.
	copy(rows[11*dim:12*dim], rows[10*dim:11*dim])
	q := testQueries(nq, dim, 3)
	_, _, want := exactReference(q, rows, ids, dim, k)
	var ref []float32
	for _, shardRows := range []int{13, 1000} {
		s := i8Store(t, shardRows, dim, ids, rows)
		// The paths: every CPU kernel, and a device's int8 GEMM emulated
		// on the host (the cuda package checks its cuBLAS calls against
		// the same integers on a fake driver).
		paths := []string{"device"}
		for _, kern := range quant.Kernels() {
			paths = append(paths, kern.Name())
		}
		for _, path := range paths {
			for _, procs := range []int{1, 2, 4} {
				for _, chunk := range []int{0, 1, 7, 256} {
					name := fmt.Sprintf("shard %d/%s/GOMAXPROCS %d/chunk %d", shardRows, path, procs, chunk)
					var be linalg.Backend = linalg.CPU()
					if path == "device" {
						be = &fakeInt8{Backend: be}
					} else {
						t.Setenv(quant.EnvKernel, path)
					}
					old := runtime.GOMAXPROCS(procs)
					got, fn := collect(t, nq, n)
					res, err := StreamScores(context.Background(), be, q, s, StreamOptions{TopK: k, ChunkRows: chunk, Scores: fn})
					runtime.GOMAXPROCS(old)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if res.Kernel != path {
						t.Fatalf("%s: ran kernel %q", name, res.Kernel)
					}
					if msg, ok := sameRankings(res.Rankings, want); !ok {
						t.Fatalf("%s: %s", name, msg)
					}
					if ref == nil {
						ref = slices.Clone(got.scores.Data)
					} else if j, ok := sameBits(got.scores.Data, ref); !ok {
						t.Fatalf("%s: score %d differs", name, j)
					}
					// A row of the bit-identity table of
					// bench/results/exact-*.md (go test -v).
					t.Logf("| %s | %d | %d | %d | %s |", path, procs, chunk, shardRows, digest(got.scores.Data, res.Rankings))
				}
			}
		}
	}
}

// digest is a short SHA-256 of scores and rankings, bit for bit.
func digest(scores []float32, ranks []Ranking) string {
	h := sha256.New()
	for _, v := range scores {
		binary.Write(h, binary.LittleEndian, math.Float32bits(v))
	}
	for _, r := range ranks {
		for _, e := range slices.Concat(r.Helpful, r.Harmful) {
			binary.Write(h, binary.LittleEndian, []int64{int64(e.Index), e.ID, e.ISum, int64(math.Float64bits(e.Score))})
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// TestExactTies checks that equal scores rank by id, not by row.
func TestExactTies(t *testing.T) {
	const dim = 8
	base := randFloats(dim, 4, 1)
	rows := slices.Concat(base, base, base, randFloats(dim, 5, 0.01))
	ids := []int64{30, 10, 20, 5}
	s := i8Store(t, 2, dim, ids, rows)
	q := linalg.NewDense32(1, dim, slices.Clone(base))
	res, err := StreamScores(context.Background(), linalg.CPU(), q, s, StreamOptions{TopK: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, e := range res.Rankings[0].Helpful {
		got = append(got, e.ID)
	}
	if !slices.Equal(got, []int64{10, 20, 30}) {
		t.Fatalf("tied rows ranked %v, want ids 10, 20, 30", got)
	}
}

// TestExactCheckpoints checks several i8 stores with weights against the
// documented formula, computed in the test from the reference's sums.
func TestExactCheckpoints(t *testing.T) {
	const n, k = 90, 5
	dims := []int{16, 33}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(3 * i)
	}
	w := randFloats(n, 6, 1)
	var stores []*store.Store
	var queries []*linalg.Dense32
	var rowsets [][]float32
	for c, dim := range dims {
		rows := randFloats(n*dim, uint64(10+c), 1)
		rowsets = append(rowsets, rows)
		stores = append(stores, i8Store(t, 40, dim, ids, rows))
		queries = append(queries, testQueries(3, dim, uint64(20+c)))
	}
	got, fn := collect(t, 3, n)
	res, err := StreamCheckpoints(context.Background(), linalg.CPU(), queries, stores, StreamOptions{TopK: k, Weights: w, Scores: fn})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		for r := range n {
			var s float64
			for c, dim := range dims {
				qq, qs := refQuant(queries[c].Row(i))
				tq, ts := refQuant(rowsets[c][r*dim : (r+1)*dim])
				var isum int64
				for j := range dim {
					isum += qq[j] * tq[j]
				}
				s += float64(isum) * qs * ts
			}
			want := float32(s * float64(w[r]))
			if g := got.scores.At(i, r); math.Float32bits(g) != math.Float32bits(want) {
				t.Fatalf("query %d row %d: %v, want %v", i, r, g, want)
			}
		}
	}
	if len(res.Rankings[0].Helpful) != k {
		t.Fatalf("%d helpful entries", len(res.Rankings[0].Helpful))
	}
}

// fakeInt8 is a backend with an int8 GEMM that computes on the host, as a
// device would, counting its calls, or failing from a given call on.
type fakeInt8 struct {
	linalg.Backend
	calls  atomic.Int64
	failAt int64 // fail the call of this number and the later ones (0: never)
}

func (f *fakeInt8) GemmI8(out []int32, a []int8, m int, b []int8, n, dim int) error {
	c := f.calls.Add(1)
	if f.failAt > 0 && c >= f.failAt {
		return errors.New("fake device: out of memory")
	}
	k, err := quant.ByName("go")
	if err != nil {
		return err
	}
	k.Gemm(out, a, m, b, n, dim)
	return nil
}

// TestExactDevice checks that a backend's int8 GEMM is used for batches of
// queries, not for one, that its results equal the CPU's bit for bit, and
// that a device failing midway hands over to the CPU with the same results.
func TestExactDevice(t *testing.T) {
	const n, dim, k = 700, 64, 7
	rows := randFloats(n*dim, 7, 1)
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(i)
	}
	s := i8Store(t, 100, dim, ids, rows)
	for _, nq := range []int{1, exactDeviceMin, 40} {
		q := testQueries(nq, dim, 8)
		_, _, want := exactReference(q, rows, ids, dim, k)
		for _, failAt := range []int64{0, 2} {
			be := &fakeInt8{Backend: linalg.CPU(), failAt: failAt}
			res, err := StreamScores(context.Background(), be, q, s, StreamOptions{TopK: k, ChunkRows: 128})
			if err != nil {
				t.Fatal(err)
			}
			if msg, ok := sameRankings(res.Rankings, want); !ok {
				t.Fatalf("nq %d, fail at %d: %s", nq, failAt, msg)
			}
			used := be.calls.Load() > 0
			if used != (nq >= exactDeviceMin) {
				t.Errorf("nq %d: device used %v", nq, used)
			}
			if dev := res.Kernel == "device"; dev != (nq >= exactDeviceMin && failAt == 0) {
				t.Errorf("nq %d, fail at %d: kernel %q", nq, failAt, res.Kernel)
			}
		}
	}
}

// TestExactErrors checks the refusals of the exact path: a mixture of i8
// and float stores, a query that is not finite, scores that overflow
// float32, and a kernel named in the environment that the CPU lacks.
func TestExactErrors(t *testing.T) {
	const n, dim = 20, 8
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(100 + i)
	}
	rows := randFloats(n*dim, 9, 1)
	si8 := i8Store(t, 7, dim, ids, rows)
	sf16 := testStore(t, gradients.F16, 7, n, dim, 1, normal)
	ctx := context.Background()
	q := testQueries(2, dim, 1)
	_, err := StreamCheckpoints(ctx, linalg.CPU(), []*linalg.Dense32{q, q}, []*store.Store{si8, sf16}, StreamOptions{TopK: 1})
	if err == nil || !strings.Contains(err.Error(), "1 of 2 stores are i8") {
		t.Errorf("mixed stores: %v", err)
	}
	bad := testQueries(2, dim, 1)
	bad.Set(1, 3, float32(math.Inf(1)))
	if _, err := StreamScores(ctx, linalg.CPU(), bad, si8, StreamOptions{TopK: 1}); !errors.Is(err, linalg.ErrNotFinite) || !strings.Contains(err.Error(), "query 1") {
		t.Errorf("infinite query: %v", err)
	}
	huge := i8Store(t, 7, dim, ids, func() []float32 {
		v := slices.Clone(rows)
		for i := range v {
			v[i] *= 1e37
		}
		return v
	}())
	big := testQueries(1, dim, 2)
	for i := range big.Data {
		big.Data[i] *= 1e37
	}
	var nf *NonFiniteError
	if _, err := StreamScores(ctx, linalg.CPU(), big, huge, StreamOptions{TopK: 1}); !errors.As(err, &nf) || nf.ID < 100 {
		t.Errorf("overflowing scores: %v", err)
	}
	t.Setenv(quant.EnvKernel, "no-such-kernel")
	if _, err := StreamScores(ctx, linalg.CPU(), q, si8, StreamOptions{TopK: 1}); err == nil || !strings.Contains(err.Error(), "no-such-kernel") {
		t.Errorf("unknown kernel: %v", err)
	}
}

// TestExactWorkersLargeK checks the merging of the workers' heaps when a
// worker's rows are fewer than 2k, so that a row sits in both of its heaps:
// no row may reach a ranking twice.
func TestExactWorkersLargeK(t *testing.T) {
	const n, dim, k = 300, 20, 100
	rows := randFloats(n*dim, 12, 1)
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(5 * i)
	}
	s := i8Store(t, 1000, dim, ids, rows)
	q := testQueries(3, dim, 13)
	_, _, want := exactReference(q, rows, ids, dim, k)
	for _, procs := range []int{1, 4} {
		old := runtime.GOMAXPROCS(procs)
		res, err := StreamScores(context.Background(), linalg.CPU(), q, s, StreamOptions{TopK: k})
		runtime.GOMAXPROCS(old)
		if err != nil {
			t.Fatal(err)
		}
		if msg, ok := sameRankings(res.Rankings, want); !ok {
			t.Fatalf("GOMAXPROCS %d: %s", procs, msg)
		}
	}
}
