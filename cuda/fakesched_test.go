package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"
)

// fakeSched gives the fake driver CUDA's ordering rules, so that the tests
// of code that pipelines work over streams (the score stream) check what a
// GPU would do with it:
//
//   - Work queued on a stream runs in order; work on different streams is
//     ordered only by events (cuEventRecord, cuStreamWaitEvent) and by the
//     host waiting (cuEventSynchronize, cuStreamSynchronize, …) before it
//     queues more.
//   - With lazy set, queued work runs only when the host waits for it, as
//     late as CUDA allows: a host that reads results it has not waited for,
//     or overwrites a buffer still to be copied, gets wrong numbers.
//   - Every piece of work declares the memory it reads and writes; two
//     pieces on different streams that touch the same bytes, one writing,
//     without an order between them, are a race, kept in races.
//
// The order is tracked with vector clocks: clock[s][t] is the number of
// operations of stream t known to precede what is queued next on s.
type fakeSched struct {
	lazy      bool
	dropWaits bool // ignore cuStreamWaitEvent (to see races caught)

	clock  map[uintptr]vclock
	host   vclock // what the host has waited for
	queues map[uintptr][]*fakeOp
	ran    map[uintptr]int // operations run, per stream
	events map[uintptr]fakeEvent
	ops    []*fakeOp
	races  []string
}

type vclock map[uintptr]int

func (v vclock) join(w vclock) {
	for s, n := range w {
		v[s] = max(v[s], n)
	}
}

type fakeEvent struct {
	stream uintptr
	pos    int    // operations of the stream before the record
	vc     vclock // the stream's clock at the record
}

// fakeOp is a piece of work queued on a stream: it runs after the first
// pos operations of each stream in waits.
type fakeOp struct {
	name   string
	stream uintptr
	seq    int // its position in the stream, from 1
	vc     vclock
	acc    []fakeAccess
	waits  []fakeEvent
	run    func()
}

// fakeAccess is a range of device or host memory an operation reads or
// writes.
type fakeAccess struct {
	host   bool
	lo, hi uint64
	write  bool
}

func devRead(p, n uint64) fakeAccess  { return fakeAccess{lo: p, hi: p + n} }
func devWrite(p, n uint64) fakeAccess { return fakeAccess{lo: p, hi: p + n, write: true} }
func hostRead(p unsafe.Pointer, n uint64) fakeAccess {
	return fakeAccess{host: true, lo: uint64(uintptr(p)), hi: uint64(uintptr(p)) + n}
}
func hostWrite(p unsafe.Pointer, n uint64) fakeAccess {
	a := hostRead(p, n)
	a.write = true
	return a
}

func (a fakeAccess) conflicts(b fakeAccess) bool {
	return a.host == b.host && (a.write || b.write) && a.lo < b.hi && b.lo < a.hi
}

func (s *fakeSched) init() {
	s.clock, s.host = map[uintptr]vclock{}, vclock{}
	s.queues, s.ran, s.events = map[uintptr][]*fakeOp{}, map[uintptr]int{}, map[uintptr]fakeEvent{}
}

// clockOf returns the clock of what is queued next on st: all the host has
// waited for precedes it.
func (s *fakeSched) clockOf(st uintptr) vclock {
	v := s.clock[st]
	if v == nil {
		v = vclock{}
		s.clock[st] = v
	}
	v.join(s.host)
	return v
}

// enqueue queues an operation on stream st, checking it for races with
// everything queued before; it runs at once unless lazy is set.
func (s *fakeSched) enqueue(st uintptr, name string, acc []fakeAccess, run func()) {
	v := s.clockOf(st)
	v[st]++
	op := &fakeOp{name: name, stream: st, seq: v[st], vc: maps(v), acc: acc, run: run}
	for _, prev := range s.ops {
		if prev.stream == st || op.vc[prev.stream] >= prev.seq {
			continue
		}
		for _, a := range prev.acc {
			if i := slices.IndexFunc(acc, a.conflicts); i >= 0 {
				s.races = append(s.races, fmt.Sprintf("%s on stream %#x and %s on stream %#x touch [%#x, %#x) unordered",
					prev.name, prev.stream, name, st, max(a.lo, acc[i].lo), min(a.hi, acc[i].hi)))
				break
			}
		}
	}
	s.ops = append(s.ops, op)
	s.queues[st] = append(s.queues[st], op)
	if !s.lazy {
		s.runUntil(st, len(s.queues[st]))
	}
}

func maps(v vclock) vclock {
	w := make(vclock, len(v))
	w.join(v)
	return w
}

// record records event e at the end of stream st.
func (s *fakeSched) record(e, st uintptr) {
	s.events[e] = fakeEvent{stream: st, pos: len(s.queues[st]), vc: maps(s.clockOf(st))}
}

// wait makes the work queued next on st wait for event e, as an operation
// that does nothing itself.
func (s *fakeSched) wait(st, e uintptr) {
	ev, ok := s.events[e]
	if !ok || s.dropWaits {
		return // an event never recorded is complete
	}
	s.clockOf(st).join(ev.vc)
	op := &fakeOp{name: "wait", stream: st, waits: []fakeEvent{ev}, run: func() {}}
	s.queues[st] = append(s.queues[st], op)
	op.seq = 0 // waits are not counted in the clocks, which only order work
	if !s.lazy {
		s.runUntil(st, len(s.queues[st]))
	}
}

// runUntil runs the first n operations of stream st, and what they wait
// for.
func (s *fakeSched) runUntil(st uintptr, n int) {
	q := s.queues[st]
	for s.ran[st] < n {
		op := q[s.ran[st]]
		for _, w := range op.waits {
			s.runUntil(w.stream, w.pos)
		}
		op.run()
		s.ran[st]++
	}
}

func (s *fakeSched) syncEvent(e uintptr) {
	if ev, ok := s.events[e]; ok {
		s.runUntil(ev.stream, ev.pos)
		s.host.join(ev.vc)
	}
}

func (s *fakeSched) syncStream(st uintptr) {
	s.runUntil(st, len(s.queues[st]))
	s.host.join(s.clockOf(st))
}

func (s *fakeSched) syncAll() {
	for st := range s.queues {
		s.syncStream(st)
	}
}

// fakeKernel returns what a launch with the given parameters touches and a
// function that does its work.
type fakeKernel func(f *fakeDriver, p []uint64) ([]fakeAccess, func())

// Function handles of the fake kernels.
const (
	fakeF16ToF32 uintptr = 0xf100 + iota
	fakeBF16ToF32
	fakeTopK
)

// installFakeKernels makes d's kernel set the fake's widening and top-k
// kernels, run with the CPU references.
func installFakeKernels(f *fakeDriver, d *Device) {
	widen := func(ref func(uint16) uint32) fakeKernel {
		return func(f *fakeDriver, p []uint64) ([]fakeAccess, func()) {
			dst, src, n := p[0], p[1], p[2]
			return []fakeAccess{devRead(src, 2*n), devWrite(dst, 4*n)}, func() {
				in, out := f.block(src, 2*n), f.block(dst, 4*n)
				for i := range n {
					binary.LittleEndian.PutUint32(out[4*i:], ref(binary.LittleEndian.Uint16(in[2*i:])))
				}
			}
		}
	}
	f.kernels[fakeF16ToF32] = widen(refF16)
	f.kernels[fakeBF16ToF32] = widen(refBF16)
	f.kernels[fakeTopK] = func(f *fakeDriver, p []uint64) ([]fakeAccess, func()) {
		outIdx, outVal, scores := p[0], p[1], p[2]
		rows, cols, ld := p[3], p[4], p[5]
		k, lowest, offset := uint64(int32(p[6])), int32(p[7]) != 0, int64(p[8])
		span := ((rows-1)*ld + cols) * 4
		return []fakeAccess{devRead(scores, span), devWrite(outIdx, rows*k*8), devWrite(outVal, rows*k*4)}, func() {
			s, oi, ov := f.block(scores, span), f.block(outIdx, rows*k*8), f.block(outVal, rows*k*4)
			row := make([]float32, cols)
			for r := range rows {
				for j := range cols {
					row[j] = math.Float32frombits(binary.LittleEndian.Uint32(s[4*(r*ld+j):]))
				}
				idx, val := refTopK(row, int(k), lowest, offset)
				for q := range idx {
					binary.LittleEndian.PutUint64(oi[8*(r*k+uint64(q)):], uint64(idx[q]))
					binary.LittleEndian.PutUint32(ov[4*(r*k+uint64(q)):], math.Float32bits(val[q]))
				}
			}
		}
	}
	d.do(func() error {
		d.kern = &kernelSet{f16ToF32: fakeF16ToF32, bf16ToF32: fakeBF16ToF32, topkF32: fakeTopK}
		d.kernSource = "fake"
		return nil
	})
}

// fakeBLAS returns a cuBLAS whose Sgemm, Sdgmm and int8 GemmEx are
// queued on the fake's streams (float64 sums rounded once; integer sums
// exact), with their operands' extents declared, and whose handles are
// fake objects.
func (f *fakeDriver) fakeBLAS() *blasAPI {
	streams := map[uintptr]uintptr{}
	ok := func(name string) func() { return f.enter(name) }
	f32 := func(b []byte, i uint64) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])) }
	// extent is the bytes spanned by a column-major r×c matrix.
	extent := func(r, c, ld int32) uint64 { return (uint64(c-1)*uint64(ld) + uint64(r)) * 4 }
	return &blasAPI{
		lib:         "fake cuBLAS",
		create:      func(h *uintptr) int32 { defer ok("cublasCreate")(); *h = f.newHandle("cublas"); return 0 },
		destroy:     func(h uintptr) int32 { defer ok("cublasDestroy")(); return f.drop(h, "cublas") },
		setStream:   func(h, s uintptr) int32 { defer ok("cublasSetStream")(); streams[h] = s; return 0 },
		setMathMode: func(h uintptr, mode int32) int32 { defer ok("cublasSetMathMode")(); return 0 },
		getVersion:  func(h uintptr, v *int32) int32 { *v = 130100; return 0 },
		sgemm: func(h uintptr, tA, tB, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) int32 {
			defer ok("cublasSgemm")()
			if f.injected("cublasSgemm") {
				return int32(BLASExecutionFailed)
			}
			al, be := float64(*alpha), float64(*beta)
			ar, ac := m, k
			if tA == cublasOpT {
				ar, ac = k, m
			}
			br, bc := k, n
			if tB == cublasOpT {
				br, bc = n, k
			}
			sa, sb, sc := extent(ar, ac, lda), extent(br, bc, ldb), extent(m, n, ldc)
			acc := []fakeAccess{devRead(a, sa), devRead(b, sb), devWrite(c, sc)}
			f.sched.enqueue(streams[h], "Sgemm", acc, func() {
				A, B, C := f.block(a, sa), f.block(b, sb), f.block(c, sc)
				for j := range uint64(n) {
					for i := range uint64(m) {
						var sum float64
						for l := range uint64(k) {
							ai, bi := i+l*uint64(lda), l+j*uint64(ldb)
							if tA == cublasOpT {
								ai = l + i*uint64(lda)
							}
							if tB == cublasOpT {
								bi = j + l*uint64(ldb)
							}
							sum += float64(f32(A, ai)) * float64(f32(B, bi))
						}
						ci := i + j*uint64(ldc)
						v := al * sum
						if be != 0 {
							v += be * float64(f32(C, ci))
						}
						binary.LittleEndian.PutUint32(C[4*ci:], math.Float32bits(float32(v)))
					}
				}
			})
			return 0
		},
		gemmEx: f.fakeGemmEx(streams),
		sdgmm: func(h uintptr, side, m, n int32, a uint64, lda int32, x uint64, incx int32, c uint64, ldc int32) int32 {
			defer ok("cublasSdgmm")()
			if side != cublasSideLeft || incx != 1 {
				return int32(BLASNotSupported)
			}
			sa, sc := extent(m, n, lda), extent(m, n, ldc)
			acc := []fakeAccess{devRead(a, sa), devRead(x, 4*uint64(m)), devWrite(c, sc)}
			f.sched.enqueue(streams[h], "Sdgmm", acc, func() {
				A, X, C := f.block(a, sa), f.block(x, 4*uint64(m)), f.block(c, sc)
				for j := range uint64(n) {
					for i := range uint64(m) {
						v := f32(X, i) * f32(A, i+j*uint64(lda))
						binary.LittleEndian.PutUint32(C[4*(i+j*uint64(ldc)):], math.Float32bits(v))
					}
				}
			})
			return 0
		},
	}
}
