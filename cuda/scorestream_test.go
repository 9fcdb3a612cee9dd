package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// streamData is rows of a score stream in their raw form and widened.
type streamData struct {
	parts   []linalg.RowPart
	raw     [][]byte        // per part: n × cols values
	rows    *linalg.Dense32 // n × Σcols, the raw values widened
	queries *linalg.Dense32
	weights []float32
}

func newStreamData(rng *rand.Rand, parts []linalg.RowPart, n, nq int) *streamData {
	cols := 0
	for _, p := range parts {
		cols += p.Cols
	}
	sd := &streamData{parts: parts, rows: linalg.NewDense32(n, cols, nil), queries: linalg.NewDense32(nq, cols+3, nil).Slice(0, nq, 0, cols)}
	for i := range sd.queries.Rows {
		for j := range cols {
			sd.queries.Set(i, j, float32(rng.NormFloat64()))
		}
	}
	off := 0
	for _, p := range parts {
		raw := make([]byte, n*p.Cols*p.Type.Size())
		for i := range n {
			for j := range p.Cols {
				v := float32(rng.NormFloat64())
				if rng.IntN(50) == 0 {
					v = float32(rng.IntN(3) - 1) // ties
				}
				at := i*p.Cols + j
				switch p.Type {
				case linalg.F16:
					h := linalg.F16Bits(v)
					binary.LittleEndian.PutUint16(raw[2*at:], h)
					v = linalg.F16Float32(h)
				case linalg.BF16:
					h := linalg.BF16Bits(v)
					binary.LittleEndian.PutUint16(raw[2*at:], h)
					v = linalg.BF16Float32(h)
				default:
					binary.LittleEndian.PutUint32(raw[4*at:], math.Float32bits(v))
				}
				sd.rows.Set(i, off+j, v)
			}
		}
		sd.raw = append(sd.raw, raw)
		off += p.Cols
	}
	sd.weights = make([]float32, n)
	for i := range sd.weights {
		sd.weights[i] = float32(rng.Float64() + 0.5)
	}
	return sd
}

// chunk returns rows [lo, hi) as a RawChunk.
func (sd *streamData) chunk(lo, hi int, weighted bool) linalg.RawChunk {
	c := linalg.RawChunk{Offset: lo, Rows: hi - lo}
	for i, p := range sd.parts {
		rb := p.Cols * p.Type.Size()
		c.Parts = append(c.Parts, sd.raw[i][lo*rb:hi*rb])
	}
	if weighted {
		c.Weights = sd.weights[lo:hi]
	}
	return c
}

// streamOut is what a stream returned over all its chunks.
type streamOut struct {
	scores           *linalg.Dense32 // n_query × n, when asked for
	helpful, harmful [][]cand        // per query, every candidate
	chunks           int
}

type cand struct {
	idx int64
	val float32
}

// runScoreStream sends the rows in chunks of the given size, two in flight
// as influence does, and collects the results.
func runScoreStream(t *testing.T, st linalg.ScoreStream, sd *streamData, chunk int, weighted bool) (*streamOut, error) {
	t.Helper()
	n, nq := sd.rows.Rows, sd.queries.Rows
	out := &streamOut{helpful: make([][]cand, nq), harmful: make([][]cand, nq)}
	var sent []int
	receive := func() error {
		r, err := st.Receive()
		if err != nil {
			return err
		}
		lo := sent[0]
		sent = sent[1:]
		if r.Offset != lo || r.Rows != min(chunk, n-lo) {
			t.Fatalf("received rows [%d, +%d), want the chunk at %d", r.Offset, r.Rows, lo)
		}
		out.chunks++
		if r.Scores != nil {
			if out.scores == nil {
				out.scores = linalg.NewDense32(nq, n, nil)
			}
			for i := range nq {
				copy(out.scores.Row(i)[lo:], r.Scores.Row(i))
			}
		}
		for _, d := range []struct {
			c   linalg.Candidates
			dst [][]cand
		}{{r.Helpful, out.helpful}, {r.Harmful, out.harmful}} {
			if len(d.c.Index) != nq*d.c.N || len(d.c.Score) != nq*d.c.N {
				t.Fatalf("%d candidates for %d queries × %d", len(d.c.Index), nq, d.c.N)
			}
			for i := range nq {
				for j := range d.c.N {
					d.dst[i] = append(d.dst[i], cand{d.c.Index[i*d.c.N+j], d.c.Score[i*d.c.N+j]})
				}
			}
		}
		return nil
	}
	for lo := 0; lo < n; lo += chunk {
		if len(sent) == streamSlots {
			if err := receive(); err != nil {
				return out, err
			}
		}
		if err := st.Send(sd.chunk(lo, min(lo+chunk, n), weighted)); err != nil {
			return out, err
		}
		sent = append(sent, lo)
	}
	for len(sent) > 0 {
		if err := receive(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// best returns the k best candidates in TopK's order, as refTopK does.
func best(cs []cand, k int, lowest bool) ([]int64, []float32) {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b cand) int {
		ka, kb := topkKey(a.val, uint64(a.idx), lowest), topkKey(b.val, uint64(b.idx), lowest)
		switch {
		case ka > kb:
			return -1
		case ka < kb:
			return 1
		}
		return 0
	})
	cs = cs[:min(k, len(cs))]
	idx, val := make([]int64, len(cs)), make([]float32, len(cs))
	for i, c := range cs {
		idx[i], val[i] = c.idx, c.val
	}
	return idx, val
}

// openFakeStreams opens a fake device with the fake kernels and cuBLAS, its
// work run lazily.
func openFakeStreams(t *testing.T, capacity uint64, kernels bool) (*fakeDriver, *Device, *Backend) {
	t.Helper()
	f := newFakeDriver(t)
	f.capacity = capacity
	f.sched.lazy = true
	d, err := openDevice(f.api(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.do(func() error { d.blasLib = f.fakeBLAS(); return nil })
	if _, err := d.BLASVersion(); err != nil { // the handle, kept by the device
		t.Fatal(err)
	}
	if kernels {
		installFakeKernels(f, d)
	}
	return f, d, &Backend{dev: d, host: linalg.CPU()}
}

// resources is what a device holds, to check that a stream frees it all.
type resources struct {
	inUse                   uint64
	streams, events, pinned int
	objects                 int
}

func held(f *fakeDriver, d *Device) resources {
	var r resources
	d.do(func() error {
		r = resources{d.pool.stats().InUse, len(d.streams), len(d.events), len(d.pinned), 0}
		return nil
	})
	f.mu.Lock()
	r.objects = len(f.objects)
	f.mu.Unlock()
	if len(f.pinned) != r.pinned {
		panic("fake and device disagree on page-locked blocks")
	}
	return r
}

// TestFakeScoreStream runs the score stream on the fake driver, whose work
// runs only when waited for and whose streams are checked for races, for
// every element type, a two-part row, every mode, with and without weights
// and for two chunk sizes: scores must match float64 and not depend on the
// chunking, top-k candidates must merge into refTopK over the scores, and
// Close must free everything.
func TestFakeScoreStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 7))
	const n, nq = 2600, 3 // three blocks, the last short
	for _, parts := range [][]linalg.RowPart{
		{{Type: linalg.F16, Cols: 37}},
		{{Type: linalg.BF16, Cols: 16}},
		{{Type: linalg.F32, Cols: 21}},
		{{Type: linalg.F16, Cols: 20}, {Type: linalg.F32, Cols: 9}, {Type: linalg.BF16, Cols: 4}},
	} {
		sd := newStreamData(rng, parts, n, nq)
		for _, weighted := range []bool{false, true} {
			name := fmt.Sprintf("%v/weights=%v", parts, weighted)
			t.Run(name, func(t *testing.T) {
				f, d, b := openFakeStreams(t, 1<<26, true)
				before := held(f, d)
				open := func(opt linalg.ScoreStreamOptions) linalg.ScoreStream {
					t.Helper()
					opt.Parts = parts
					st, err := b.NewScoreStream(sd.queries, opt)
					if err != nil {
						t.Fatal(err)
					}
					return st
				}
				run := func(opt linalg.ScoreStreamOptions, chunk int) *streamOut {
					t.Helper()
					opt.MaxRows = chunk
					st := open(opt)
					out, err := runScoreStream(t, st, sd, chunk, weighted)
					if err != nil {
						t.Fatal(err)
					}
					if err := st.Close(); err != nil {
						t.Fatal(err)
					}
					if h := held(f, d); h != before {
						t.Fatalf("after Close the device holds %+v, before the stream %+v", h, before)
					}
					return out
				}

				// Scores: against float64, the same for every chunking.
				ref := run(linalg.ScoreStreamOptions{Scores: true}, 1024).scores
				worst := 0.0
				for i := range nq {
					for j := range n {
						var dot, mag float64
						for l, v := range sd.rows.Row(j) {
							p := float64(sd.queries.At(i, l)) * float64(v)
							dot, mag = dot+p, mag+math.Abs(p)
						}
						if weighted {
							w := float64(sd.weights[j])
							dot, mag = dot*w, mag*w
						}
						worst = max(worst, math.Abs(float64(ref.At(i, j))-dot)/mag)
					}
				}
				if worst > 1e-6 {
					t.Errorf("scores differ from float64 by %.3g relative to Σ|q·t|", worst)
				}
				got := run(linalg.ScoreStreamOptions{Scores: true, TopK: 9}, 2048)
				if i, ok := sameFloat32Bits(got.scores.Data, ref.Data); !ok {
					t.Errorf("chunks of 2048: score %d = %v, chunks of 1024 gave %v", i, got.scores.Data[i], ref.Data[i])
				}
				if got.helpful[0] != nil {
					t.Errorf("candidates along with the scores")
				}

				// Candidates, from the kernel and every row (k > 1024).
				for _, k := range []int{1, 5, 1500} {
					for _, chunk := range []int{1024, 3000} {
						out := run(linalg.ScoreStreamOptions{TopK: k}, chunk)
						if out.scores != nil {
							t.Errorf("k=%d: scores sent back", k)
						}
						for i := range nq {
							for _, lowest := range []bool{false, true} {
								cs := out.helpful[i]
								if lowest {
									cs = out.harmful[i]
								}
								gi, gv := best(cs, k, lowest)
								wi, wv := refTopK(ref.Row(i), k, lowest, 0)
								if !slices.Equal(gi, wi) || !slices.Equal(gv, wv) {
									t.Fatalf("k=%d chunk %d query %d lowest %v: top %v %v, want %v %v", k, chunk, i, lowest, gi[:min(5, len(gi))], gv[:min(5, len(gv))], wi[:min(5, len(wi))], wv[:min(5, len(wv))])
								}
							}
						}
					}
				}
				// No candidates, no scores: the rows still go through.
				if out := run(linalg.ScoreStreamOptions{}, 1024); out.chunks != 3 || out.scores != nil || len(out.helpful[0]) != 0 {
					t.Errorf("TopK 0: %d chunks, %d candidates", out.chunks, len(out.helpful[0]))
				}
				if len(f.sched.races) > 0 {
					t.Errorf("%d races, the first: %s", len(f.sched.races), f.sched.races[0])
				}
				// Streams of the stream's own did the copies of the rows and
				// the products, apart; the device's did only the queries.
				copyS, compS := map[uintptr]bool{}, map[uintptr]bool{}
				for _, op := range f.sched.ops {
					switch op.name {
					case "HtoD":
						copyS[op.stream] = true
					case "Sgemm", "kernel 0xf100", "kernel 0xf101", "kernel 0xf102", "Sdgmm", "DtoH":
						compS[op.stream] = true
					}
				}
				if compS[d.stream] || len(compS) < 2 {
					t.Errorf("products on the device's stream, or on %d streams", len(compS))
				}
				for s := range compS {
					if copyS[s] {
						t.Errorf("copies and products share stream %#x", s)
					}
				}
			})
		}
	}
}

func sameFloat32Bits(a, b []float32) (int, bool) {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i, false
		}
	}
	return 0, len(a) == len(b)
}

// TestFakeScoreStreamRaces checks the checker: without the waits on
// events, copies into a slot race with the products still reading it.
func TestFakeScoreStreamRaces(t *testing.T) {
	sd := newStreamData(rand.New(rand.NewPCG(1, 2)), []linalg.RowPart{{Type: linalg.F16, Cols: 8}}, 5000, 2)
	f, _, b := openFakeStreams(t, 1<<26, true)
	f.sched.dropWaits = true
	st, err := b.NewScoreStream(sd.queries, linalg.ScoreStreamOptions{Parts: sd.parts, MaxRows: 1024, TopK: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := runScoreStream(t, st, sd, 1024, false); err != nil {
		t.Fatal(err)
	}
	if len(f.sched.races) == 0 {
		t.Fatal("no race found with the waits dropped")
	}
	t.Logf("%d races, e.g. %s", len(f.sched.races), f.sched.races[0])
}

// TestFakeScoreStreamErrors covers failures of the driver and cuBLAS in a
// stream (the error names the chunk, the stream refuses further work,
// Close frees everything), failures to open one, and misuse.
func TestFakeScoreStreamErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	parts := []linalg.RowPart{{Type: linalg.BF16, Cols: 12}}
	sd := newStreamData(rng, parts, 4000, 2)
	opt := linalg.ScoreStreamOptions{Parts: parts, MaxRows: 1024, TopK: 4}

	for _, tc := range []struct {
		call    string
		at      int // the failing call, counting from the stream's first
		res     Result
		sticky  bool
		message string
	}{
		// Call 1 of HtoD is the queries; 2 is chunk 0, 3 chunk 1.
		{"cuMemcpyHtoDAsync", 3, InvalidValue, false, "chunk of rows [1024, 2048): cuda: cuMemcpyHtoDAsync_v2: CUDA_ERROR_INVALID_VALUE"},
		{"cuMemcpyDtoHAsync", 4, IllegalAddress, true, "chunk of rows [1024, 2048)"}, // two per chunk
		{"cuLaunchKernel", 7, InvalidValue, false, "chunk of rows [2048, 3072)"},     // three per chunk
		{"cublasSgemm", 1, 0, false, "chunk of rows [0, 1024): cuda: cublasSgemm_v2: CUBLAS_STATUS_EXECUTION_FAILED"},
	} {
		t.Run(tc.call, func(t *testing.T) {
			f, d, b := openFakeStreams(t, 1<<26, true)
			before := held(f, d)
			f.failRes = tc.res
			st, err := b.NewScoreStream(sd.queries, opt)
			if err != nil {
				t.Fatal(err)
			}
			f.failAt[tc.call] = f.calls[tc.call] + tc.at
			if tc.call == "cuMemcpyHtoDAsync" {
				f.failAt[tc.call] = tc.at // the queries' copy counts
			}
			_, err = runScoreStream(t, st, sd, 1024, false)
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("error %v, want one containing %q", err, tc.message)
			}
			if tc.res != 0 && !errors.Is(err, tc.res) {
				t.Errorf("error %v is not %v", err, tc.res)
			}
			if _, err2 := st.Receive(); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("Receive after the failure: %v", err2)
			}
			if err2 := st.Send(sd.chunk(0, 10, false)); err2 == nil {
				t.Error("Send after the failure succeeded")
			}
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if h := held(f, d); h != before {
				t.Errorf("after Close the device holds %+v, before %+v", h, before)
			}
			if b.Err() == nil || b.broken.Load() != tc.sticky {
				t.Errorf("backend error %v, broken %v", b.Err(), b.broken.Load())
			}
			if _, err := b.NewScoreStream(sd.queries, opt); (err != nil) != tc.sticky {
				t.Errorf("NewScoreStream after the failure: %v", err)
			}
			if len(f.sched.races) > 0 {
				t.Errorf("race: %s", f.sched.races[0])
			}
		})
	}

	t.Run("open", func(t *testing.T) {
		// Out of device memory, out of page-locked memory: nothing leaks.
		f, d, b := openFakeStreams(t, 1<<16, true)
		before := held(f, d)
		if _, err := b.NewScoreStream(sd.queries, opt); !errors.Is(err, OutOfMemory) {
			t.Errorf("too little memory: %v, want OutOfMemory", err)
		}
		if h := held(f, d); h != before {
			t.Errorf("after a failed open the device holds %+v, before %+v", h, before)
		}
		f, d, b = openFakeStreams(t, 1<<26, true)
		before = held(f, d)
		f.failAt["cuMemHostAlloc"] = 4
		if _, err := b.NewScoreStream(sd.queries, opt); !errors.Is(err, OutOfMemory) || !strings.Contains(err.Error(), "cuMemHostAlloc") {
			t.Errorf("page-locked memory: %v", err)
		}
		if h := held(f, d); h != before {
			t.Errorf("after a failed open the device holds %+v, before %+v", h, before)
		}
		for _, bad := range []struct {
			q   *linalg.Dense32
			opt linalg.ScoreStreamOptions
		}{
			{linalg.NewDense32(0, 12, nil), opt},
			{sd.queries, linalg.ScoreStreamOptions{Parts: []linalg.RowPart{{Type: linalg.F16, Cols: 11}}, MaxRows: 10}},
			{sd.queries, linalg.ScoreStreamOptions{Parts: []linalg.RowPart{{Type: 9, Cols: 12}}, MaxRows: 10}},
			{sd.queries, linalg.ScoreStreamOptions{Parts: parts}},
			{sd.queries, linalg.ScoreStreamOptions{Parts: parts, MaxRows: 5, TopK: -1}},
		} {
			if _, err := b.NewScoreStream(bad.q, bad.opt); err == nil {
				t.Errorf("NewScoreStream accepted %d×%d queries with %+v", bad.q.Rows, bad.q.Cols, bad.opt)
			}
		}
	})

	t.Run("no kernels", func(t *testing.T) {
		if _, err := loadNVRTC(); err == nil {
			t.Skip("NVRTC is installed: the fake device would load real PTX")
		}
		f, d, b := openFakeStreams(t, 1<<26, false)
		before := held(f, d)
		if _, err := b.NewScoreStream(sd.queries, opt); !errors.Is(err, ErrNoKernels) {
			t.Errorf("without kernels: %v, want ErrNoKernels", err)
		}
		if h := held(f, d); h != before {
			t.Errorf("after a failed open the device holds %+v, before %+v", h, before)
		}
		// float32 rows and the scores need no kernel of the package.
		f32 := newStreamData(rng, []linalg.RowPart{{Type: linalg.F32, Cols: 5}}, 1500, 2)
		st, err := b.NewScoreStream(f32.queries, linalg.ScoreStreamOptions{Parts: f32.parts, MaxRows: 1024, Scores: true})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := runScoreStream(t, st, f32, 1024, true); err != nil || out.chunks != 2 {
			t.Errorf("float32 scores without kernels: %v", err)
		}
		st.Close()
	})

	t.Run("misuse", func(t *testing.T) {
		f, d, b := openFakeStreams(t, 1<<26, true)
		before := held(f, d)
		st, err := b.NewScoreStream(sd.queries, opt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Receive(); err == nil {
			t.Error("Receive with nothing queued succeeded")
		}
		bad := sd.chunk(0, 10, false)
		bad.Parts[0] = bad.Parts[0][1:]
		for _, c := range []linalg.RawChunk{
			bad,
			sd.chunk(0, 1025, false),
			{Offset: 0, Rows: 10, Parts: nil},
			{Offset: 0, Rows: 10, Parts: sd.chunk(0, 10, false).Parts, Weights: make([]float32, 3)},
			{Offset: math.MaxUint32 - 5, Rows: 10, Parts: sd.chunk(0, 10, false).Parts},
		} {
			if err := st.Send(c); err == nil {
				t.Errorf("Send accepted a chunk of %d rows at %d", c.Rows, c.Offset)
			}
		}
		for range 2 {
			if err := st.Send(sd.chunk(0, 1024, false)); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Send(sd.chunk(0, 1024, false)); err == nil || !strings.Contains(err.Error(), "already queued") {
			t.Errorf("third Send: %v", err)
		}
		// Those were not the stream's errors: it goes on.
		if _, err := st.Receive(); err != nil {
			t.Error(err)
		}
		if err := st.Close(); err != nil {
			t.Error(err)
		}
		if err := st.Send(sd.chunk(0, 10, false)); err == nil {
			t.Error("Send after Close succeeded")
		}
		if h := held(f, d); h != before {
			t.Errorf("after Close the device holds %+v, before %+v", h, before)
		}
		// A stream open when its device closes.
		st, err = b.NewScoreStream(sd.queries, opt)
		if err != nil {
			t.Fatal(err)
		}
		st.Send(sd.chunk(0, 1024, false))
		d.Close()
		if err := st.Close(); err != nil {
			t.Errorf("Close after the device's: %v", err)
		}
		if len(f.pinned) != 0 || f.used != 0 {
			t.Errorf("after the device closed: %d page-locked blocks, %d bytes", len(f.pinned), f.used)
		}
	})
}
