package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/goinfluence/goinfluence/linalg"
)

// NewScoreStream implements linalg.ScoreStreamer: the queries stay on the
// GPU, and each chunk of raw rows is copied there in its stored precision,
// widened, multiplied and reduced to top-k candidates on the device.
//
// The pipeline has two slots, each with a page-locked staging buffer on the
// host and a buffer of raw rows on the device. Send copies a chunk into its
// slot's staging buffer (on the calling goroutine, in parallel), then
// queues on a copy stream the transfer to the device and on a compute
// stream, once the transfer is done (an event), the widening (the kernels
// of WidenF16 and WidenBF16), one cublasSgemm per part and block of
// linalg.ScoreBlock rows, the weights (cublasSdgmm), the top-k of each block
// (the kernel of TopK, both ways) and the transfer of the results to a
// page-locked buffer, and returns. Chunk i+1 is thus copied while chunk i is
// multiplied, and the host reads chunk i+2 meanwhile. Events order the rest:
// a slot's device buffers are overwritten only once the compute stream is
// done with them, its staging buffer once its transfer has run, and Receive
// reads results once they have arrived.
//
// Every Sgemm has the same shape (n_query × 1024 × the part's columns) and
// starts on a block boundary of the stream, so a score does not depend on
// how the rows are cut into chunks (when chunks start at multiples of 1024).
// Parts are multiplied one after the other and summed by cuBLAS (β = 1).
// The scores are those of cuBLAS, which sums in another order than the
// host: they differ from the CPU backend's in the last bits. With TF32 set
// in the Options, the products use TF32 as Sgemm does.
//
// Candidates are the TopK best rows of every block, ordered as TopK orders
// them. For TopK above 1024, the limit of the kernel, every score is copied
// back and every row is a candidate.
//
// NewScoreStream fails (and influence.StreamScores works on the host) when
// the kernels cannot be loaded (ErrNoKernels) or the buffers do not fit.
func (b *Backend) NewScoreStream(queries *linalg.Dense32, opt linalg.ScoreStreamOptions) (linalg.ScoreStream, error) {
	if b.broken.Load() {
		return nil, fmt.Errorf("cuda: NewScoreStream: the GPU failed earlier: %w", b.Err())
	}
	s, err := newScoreStream(b, queries, opt)
	if err != nil {
		return nil, fmt.Errorf("cuda: NewScoreStream: %w", err)
	}
	return s, nil
}

// streamSlots is the depth of the pipeline: chunks queued at once.
const streamSlots = 2

// blockRows is the number of rows of every Sgemm.
const blockRows = linalg.ScoreBlock

// What a stream sends back.
type streamMode int

const (
	modeNone   streamMode = iota // nothing (TopK 0, no scores)
	modeTopK                     // TopK candidates per block, from the kernel
	modeScores                   // the scores
	modeAll                      // the scores, every row a candidate (TopK > maxTopK)
)

// scoreStream is linalg.ScoreStream on a Device.
type scoreStream struct {
	b    *Backend
	d    *Device
	tf32 bool
	mode streamMode
	k    int // candidates per block and query (modeTopK)

	nq       int
	parts    []streamPart
	maxRows  int // a multiple of blockRows
	blocks   int // maxRows / blockRows
	rawBytes int // bytes of the raw rows of a slot
	valOff   int // offset of the scores in a result slot (modeTopK)

	// Owned by the device goroutine.
	ks           *kernelSet
	bl           *blasAPI
	blas         uintptr // a cuBLAS handle of the stream's own, on compS
	copyS, compS uintptr
	tiles        uint64 // blocks × n_query × blockRows scores, block after block
	wtiles       uint64 // the same, weighted (allocated on first use)
	candIdx      uint64 // blocks × 2 × n_query × k candidate rows
	candVal      uint64 // and scores
	slots        [streamSlots]streamSlot
	devBlocks    []uint64 // pool blocks to free
	hostBlocks   [][]byte // page-locked blocks to free
	events       []uintptr
	streams      []uintptr

	next   int // slot of the next Send
	queued int // chunks sent, not received
	err    error
	closed bool

	// Results, reused.
	res       linalg.ChunkScores
	scoreBuf  []float32
	idxBuf    [2][]int64
	valBuf    [2][]float32
	allRows   []int64
	threadsTK int
}

// streamPart is one part of the rows.
type streamPart struct {
	typ  linalg.DType
	cols int
	raw  int    // byte offset of its rows in a raw slot
	q    uint64 // its queries on the device, n_query × cols
	f32  uint64 // its rows widened (maxRows × cols), 0 for float32 rows
}

// streamSlot is one stage of the pipeline.
type streamSlot struct {
	stage  []byte    // page-locked: the raw rows, laid out as raw
	wstage []float32 // page-locked: the weights
	out    []byte    // page-locked: the results
	raw, w uint64    // device: the raw rows, the weights

	copied   uintptr // copy stream: the chunk is on the device
	consumed uintptr // compute stream: done with raw and w
	done     uintptr // compute stream: the results are in out
	// Whether copied and consumed have been recorded (waiting on an event
	// never recorded is avoided rather than relied on).
	recCopied, recConsumed bool

	offset, rows int
	weighted     bool
}

func newScoreStream(b *Backend, q *linalg.Dense32, opt linalg.ScoreStreamOptions) (*scoreStream, error) {
	if q == nil || q.Rows < 1 || q.Cols < 1 || q.Stride < q.Cols || len(q.Data) < (q.Rows-1)*q.Stride+q.Cols {
		return nil, errors.New("queries must be a well-formed matrix of at least one row and one column")
	}
	parts := opt.Parts
	if parts == nil {
		parts = []linalg.RowPart{{Type: linalg.F32, Cols: q.Cols}}
	}
	cols := 0
	for c, p := range parts {
		if p.Type.Size() == 0 || p.Cols < 1 {
			return nil, fmt.Errorf("part %d is %d values of %v", c, p.Cols, p.Type)
		}
		cols += p.Cols
	}
	switch {
	case cols != q.Cols:
		return nil, fmt.Errorf("the parts have %d columns, the queries %d", cols, q.Cols)
	case opt.MaxRows < 1 || opt.TopK < 0:
		return nil, fmt.Errorf("MaxRows = %d, TopK = %d", opt.MaxRows, opt.TopK)
	case !fitsBLAS(q.Rows, cols, opt.MaxRows, q.Rows*blockRows):
		return nil, fmt.Errorf("%d queries × %d columns are too large for cuBLAS", q.Rows, q.Cols)
	}
	s := &scoreStream{b: b, d: b.dev, tf32: b.opt.TF32, nq: q.Rows}
	switch {
	case opt.Scores:
		s.mode = modeScores
	case opt.TopK > maxTopK:
		s.mode = modeAll
	case opt.TopK > 0:
		s.mode, s.k = modeTopK, opt.TopK
	}
	s.maxRows = (opt.MaxRows + blockRows - 1) / blockRows * blockRows
	s.blocks = s.maxRows / blockRows
	s.parts = make([]streamPart, len(parts))
	for c, p := range parts {
		s.parts[c] = streamPart{typ: p.Type, cols: p.Cols, raw: s.rawBytes}
		s.rawBytes += s.maxRows * p.Cols * p.Type.Size()
	}
	s.threadsTK = min(topkThreads, max(s.d.info.MaxThreadsPerBlock, 32))

	// The queries of each part, packed.
	qs := make([][]float32, len(parts))
	off := 0
	for c, p := range parts {
		qs[c] = make([]float32, q.Rows*p.Cols)
		for i := range q.Rows {
			copy(qs[c][i*p.Cols:(i+1)*p.Cols], q.Data[i*q.Stride+off:])
		}
		off += p.Cols
	}
	err := s.d.do(func() error {
		if err := s.setup(qs); err != nil {
			return errors.Join(err, s.release())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// setup allocates the stream's streams, events and buffers and uploads the
// queries. It runs on the device goroutine; on an error the caller releases
// what was allocated.
func (s *scoreStream) setup(qs [][]float32) error {
	d := s.d
	needKernels := s.mode == modeTopK
	for _, p := range s.parts {
		needKernels = needKernels || p.typ != linalg.F32
	}
	if needKernels {
		ks, err := d.kernels()
		if err != nil {
			return err
		}
		s.ks = ks
	}
	for _, st := range []*uintptr{&s.copyS, &s.compS} {
		if err := check("cuStreamCreate", d.api.cuStreamCreate(st, streamNonBlocking)); err != nil {
			return err
		}
		d.streams[*st] = true
		s.streams = append(s.streams, *st)
	}
	// A handle of its own: cuBLAS's workspace belongs to a handle, and the
	// device's handle runs the backend's products on the device's stream.
	bl, err := d.cublas()
	if err != nil {
		return err
	}
	if err := checkBLAS("cublasCreate_v2", bl.create(&s.blas)); err != nil {
		return err
	}
	s.bl = bl
	mode := int32(cublasDefaultMth)
	if s.tf32 {
		mode = cublasTF32Math
	}
	if err := checkBLAS("cublasSetStream_v2", bl.setStream(s.blas, s.compS)); err != nil {
		return err
	}
	if err := checkBLAS("cublasSetMathMode", bl.setMathMode(s.blas, mode)); err != nil {
		return err
	}
	dev := func(n int) (uint64, error) {
		p, err := d.pool.get(uint64(max(n, 1)))
		if err == nil {
			s.devBlocks = append(s.devBlocks, p)
		}
		return p, err
	}
	host := func(n int) ([]byte, error) {
		b, err := d.allocHost(max(n, 1))
		if err == nil {
			s.hostBlocks = append(s.hostBlocks, b)
		}
		return b, err
	}
	for c := range s.parts {
		p := &s.parts[c]
		if p.q, err = dev(4 * len(qs[c])); err != nil {
			return err
		}
		if err := d.htod(p.q, unsafe.Pointer(&qs[c][0]), uint64(4*len(qs[c]))); err != nil {
			return err
		}
		if p.typ != linalg.F32 {
			if p.f32, err = dev(4 * s.maxRows * p.cols); err != nil {
				return err
			}
		}
	}
	tileBytes := 4 * s.blocks * s.nq * blockRows
	if s.tiles, err = dev(tileBytes); err != nil {
		return err
	}
	outBytes := 0
	switch s.mode {
	case modeTopK:
		n := s.blocks * 2 * s.nq * s.k
		if s.candIdx, err = dev(8 * n); err != nil {
			return err
		}
		if s.candVal, err = dev(4 * n); err != nil {
			return err
		}
		s.valOff, outBytes = 8*n, 12*n
	case modeScores, modeAll:
		outBytes = tileBytes
	}
	for i := range s.slots {
		sl := &s.slots[i]
		if sl.raw, err = dev(s.rawBytes); err != nil {
			return err
		}
		if sl.w, err = dev(4 * s.maxRows); err != nil {
			return err
		}
		if sl.stage, err = host(s.rawBytes); err != nil {
			return err
		}
		w, err := host(4 * s.maxRows)
		if err != nil {
			return err
		}
		sl.wstage = unsafe.Slice((*float32)(unsafe.Pointer(&w[0])), s.maxRows)
		if sl.out, err = host(outBytes); err != nil {
			return err
		}
		for _, e := range []*uintptr{&sl.copied, &sl.consumed, &sl.done} {
			if err := check("cuEventCreate", d.api.cuEventCreate(e, eventDisableTiming)); err != nil {
				return err
			}
			d.events[*e] = true
			s.events = append(s.events, *e)
		}
	}
	err = d.sync() // the queries are on the device
	runtime.KeepAlive(qs)
	return err
}

// release waits for the stream's work and frees what it allocated. It runs
// on the device goroutine.
func (s *scoreStream) release() error {
	d, a := s.d, s.d.api
	var errs []error
	for _, st := range s.streams {
		errs = append(errs, check("cuStreamSynchronize", a.cuStreamSynchronize(st)))
	}
	if s.blas != 0 {
		errs = append(errs, checkBLAS("cublasDestroy_v2", s.bl.destroy(s.blas)))
		s.blas = 0
	}
	for _, e := range s.events {
		delete(d.events, e)
		errs = append(errs, check("cuEventDestroy_v2", a.cuEventDestroy(e)))
	}
	for _, st := range s.streams {
		delete(d.streams, st)
		errs = append(errs, check("cuStreamDestroy_v2", a.cuStreamDestroy(st)))
	}
	for _, p := range s.devBlocks {
		errs = append(errs, d.pool.put(p))
	}
	for _, b := range s.hostBlocks {
		errs = append(errs, d.freeHost(b))
	}
	s.events, s.streams, s.devBlocks, s.hostBlocks = nil, nil, nil, nil
	return errors.Join(errs...)
}

// usable returns the error that keeps the stream from being used.
func (s *scoreStream) usable() error {
	if s.closed {
		return errors.New("cuda: score stream is closed")
	}
	return s.err
}

// fail makes err, which happened on chunk [offset, offset+rows), the
// stream's error: the state of the pipeline is unknown after it.
func (s *scoreStream) fail(offset, rows int, err error) error {
	s.err = fmt.Errorf("cuda: score stream: chunk of rows [%d, %d): %w", offset, offset+rows, err)
	s.b.noteErr(s.err)
	return s.err
}

// Send queues a chunk; see linalg.ScoreStream.
func (s *scoreStream) Send(c linalg.RawChunk) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.check(c); err != nil {
		return fmt.Errorf("cuda: score stream: chunk of rows [%d, %d): %w", c.Offset, c.Offset+c.Rows, err)
	}
	sl := &s.slots[s.next]
	a := s.d.api
	// The staging buffers are free once their last transfer has run.
	err := s.d.do(func() error {
		if !sl.recCopied {
			return nil
		}
		return check("cuEventSynchronize", a.cuEventSynchronize(sl.copied))
	})
	if err != nil {
		return s.fail(c.Offset, c.Rows, err)
	}
	for i, p := range s.parts {
		parallelCopy(sl.stage[p.raw:], c.Parts[i])
	}
	if c.Weights != nil {
		copy(sl.wstage, c.Weights)
	}
	sl.offset, sl.rows, sl.weighted = c.Offset, c.Rows, c.Weights != nil
	if err := s.d.do(func() error { return s.enqueue(sl) }); err != nil {
		return s.fail(c.Offset, c.Rows, err)
	}
	s.next = (s.next + 1) % streamSlots
	s.queued++
	return nil
}

// check validates a chunk before anything is done with it.
func (s *scoreStream) check(c linalg.RawChunk) error {
	switch {
	case s.queued == streamSlots:
		return fmt.Errorf("%d chunks are already queued", streamSlots)
	case c.Rows < 1 || c.Rows > s.maxRows:
		return fmt.Errorf("%d rows, want 1 to %d", c.Rows, s.maxRows)
	case c.Offset < 0 || int64(c.Offset)+int64(c.Rows) >= math.MaxUint32:
		return fmt.Errorf("rows beyond 2³² − 1")
	case len(c.Parts) != len(s.parts):
		return fmt.Errorf("%d parts, the stream has %d", len(c.Parts), len(s.parts))
	case c.Weights != nil && len(c.Weights) != c.Rows:
		return fmt.Errorf("%d weights", len(c.Weights))
	}
	for i, p := range s.parts {
		if want := c.Rows * p.cols * p.typ.Size(); len(c.Parts[i]) != want {
			return fmt.Errorf("part %d has %d bytes, want %d rows × %d %v", i, len(c.Parts[i]), c.Rows, p.cols, p.typ)
		}
	}
	return nil
}

// enqueue queues the work of a chunk whose rows are in sl's staging
// buffers. It runs on the device goroutine.
func (s *scoreStream) enqueue(sl *streamSlot) error {
	if err := s.enqueueCopy(sl); err != nil {
		return err
	}
	return s.enqueueCompute(sl)
}

// enqueueCopy queues on the copy stream the transfer of sl's rows and
// weights to the device, once the compute stream is done with the slot's
// device buffers. (Receive has waited for that whenever the caller keeps
// to two chunks queued; the wait makes the stream safe on its own.)
func (s *scoreStream) enqueueCopy(sl *streamSlot) error {
	a := s.d.api
	rows := sl.rows
	if sl.recConsumed {
		if err := check("cuStreamWaitEvent", a.cuStreamWaitEvent(s.copyS, sl.consumed, 0)); err != nil {
			return err
		}
	}
	for _, p := range s.parts {
		n := rows * p.cols * p.typ.Size()
		if err := check("cuMemcpyHtoDAsync_v2", a.cuMemcpyHtoDAsync(sl.raw+uint64(p.raw), unsafe.Pointer(&sl.stage[p.raw]), uint64(n), s.copyS)); err != nil {
			return err
		}
	}
	if sl.weighted {
		if err := check("cuMemcpyHtoDAsync_v2", a.cuMemcpyHtoDAsync(sl.w, unsafe.Pointer(&sl.wstage[0]), uint64(4*rows), s.copyS)); err != nil {
			return err
		}
	}
	if err := check("cuEventRecord", a.cuEventRecord(sl.copied, s.copyS)); err != nil {
		return err
	}
	sl.recCopied = true
	return nil
}

// enqueueCompute queues on the compute stream, once sl's rows are on the
// device, their widening, products, weights and top-k, and the transfer of
// the results to sl.out.
func (s *scoreStream) enqueueCompute(sl *streamSlot) error {
	d, a := s.d, s.d.api
	rows := sl.rows
	if err := check("cuStreamWaitEvent", a.cuStreamWaitEvent(s.compS, sl.copied, 0)); err != nil {
		return err
	}
	for _, p := range s.parts {
		if p.typ == linalg.F32 {
			continue
		}
		fn, name := s.ks.f16ToF32, "f16_to_f32"
		if p.typ == linalg.BF16 {
			fn, name = s.ks.bf16ToF32, "bf16_to_f32"
		}
		n := rows * p.cols
		if err := d.launch(fn, name, Dim3{X: d.elemGrid(n)}, Dim3{X: elemBlock}, 0, s.compS, p.f32, sl.raw+uint64(p.raw), int64(n)); err != nil {
			return err
		}
	}
	bl, h := s.bl, s.blas
	tiles := s.tiles
	if sl.weighted {
		if s.wtiles == 0 {
			p, err := d.pool.get(uint64(4 * s.blocks * s.nq * blockRows))
			if err != nil {
				return err
			}
			s.devBlocks = append(s.devBlocks, p)
			s.wtiles = p
		}
		tiles = s.wtiles
	}
	used := (rows + blockRows - 1) / blockRows
	tileBytes := uint64(4 * s.nq * blockRows)
	one, zero := float32(1), float32(0)
	for blk := range used {
		// Column-major, a tile is blockRows × n_query: tileᵀ = rows · qᵀ.
		tile := s.tiles + uint64(blk)*tileBytes
		for i, p := range s.parts {
			src := p.f32
			if p.typ == linalg.F32 {
				src = sl.raw + uint64(p.raw)
			}
			src += uint64(blk * blockRows * p.cols * 4)
			beta := &one
			if i == 0 {
				beta = &zero
			}
			if err := checkBLAS("cublasSgemm_v2", bl.sgemm(h, cublasOpT, cublasOpN, blockRows, int32(s.nq), int32(p.cols),
				&one, src, int32(p.cols), p.q, int32(p.cols), beta, tile, blockRows)); err != nil {
				return err
			}
		}
		if sl.weighted {
			if err := checkBLAS("cublasSdgmm", bl.sdgmm(h, cublasSideLeft, blockRows, int32(s.nq),
				tile, blockRows, sl.w+uint64(4*blk*blockRows), 1, s.wtiles+uint64(blk)*tileBytes, blockRows)); err != nil {
				return err
			}
		}
	}
	if err := check("cuEventRecord", a.cuEventRecord(sl.consumed, s.compS)); err != nil {
		return err
	}
	sl.recConsumed = true

	// The results, to the slot's page-locked buffer.
	switch s.mode {
	case modeTopK:
		n := uint64(s.nq * s.k)
		for blk := range used {
			cols := min(blockRows, rows-blk*blockRows)
			for dir := range 2 {
				at := uint64(blk*2+dir) * n
				err := d.launch(s.ks.topkF32, "topk_f32", Dim3{X: min(s.nq, 1<<20)}, Dim3{X: s.threadsTK}, 0, s.compS,
					s.candIdx+8*at, s.candVal+4*at, tiles+uint64(blk)*tileBytes,
					int64(s.nq), int64(cols), int64(blockRows), int32(min(s.k, cols)), int32(dir), int64(sl.offset+blk*blockRows))
				if err != nil {
					return err
				}
			}
		}
		m := uint64(used*2) * n
		if err := check("cuMemcpyDtoHAsync_v2", a.cuMemcpyDtoHAsync(unsafe.Pointer(&sl.out[0]), s.candIdx, 8*m, s.compS)); err != nil {
			return err
		}
		if err := check("cuMemcpyDtoHAsync_v2", a.cuMemcpyDtoHAsync(unsafe.Pointer(&sl.out[s.valOff]), s.candVal, 4*m, s.compS)); err != nil {
			return err
		}
	case modeScores, modeAll:
		if err := check("cuMemcpyDtoHAsync_v2", a.cuMemcpyDtoHAsync(unsafe.Pointer(&sl.out[0]), tiles, uint64(used)*tileBytes, s.compS)); err != nil {
			return err
		}
	}
	return check("cuEventRecord", a.cuEventRecord(sl.done, s.compS))
}

// Receive returns the results of the oldest chunk queued; see
// linalg.ScoreStream.
func (s *scoreStream) Receive() (*linalg.ChunkScores, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if s.queued == 0 {
		return nil, errors.New("cuda: score stream: Receive with no chunk queued")
	}
	sl := &s.slots[(s.next-s.queued+streamSlots)%streamSlots]
	a := s.d.api
	if err := s.d.do(func() error { return check("cuEventSynchronize", a.cuEventSynchronize(sl.done)) }); err != nil {
		return nil, s.fail(sl.offset, sl.rows, err)
	}
	s.queued--
	r := &s.res
	*r = linalg.ChunkScores{Offset: sl.offset, Rows: sl.rows}
	used := (sl.rows + blockRows - 1) / blockRows
	switch s.mode {
	case modeScores, modeAll:
		if s.scoreBuf == nil {
			s.scoreBuf = make([]float32, s.nq*s.maxRows)
		}
		tiles := unsafe.Slice((*float32)(unsafe.Pointer(&sl.out[0])), len(sl.out)/4)
		r.Scores = &linalg.Dense32{Rows: s.nq, Cols: sl.rows, Stride: sl.rows, Data: s.scoreBuf[:s.nq*sl.rows]}
		for blk := range used {
			lo := blk * blockRows
			cols := min(blockRows, sl.rows-lo)
			tile := tiles[blk*s.nq*blockRows:]
			for i := range s.nq {
				copy(r.Scores.Row(i)[lo:lo+cols], tile[i*blockRows:i*blockRows+cols])
			}
		}
		if s.mode == modeAll {
			if s.allRows == nil {
				s.allRows = make([]int64, s.nq*s.maxRows)
			}
			idx := s.allRows[:s.nq*sl.rows]
			for i := range s.nq {
				for j := range sl.rows {
					idx[i*sl.rows+j] = int64(sl.offset + j)
				}
			}
			c := linalg.Candidates{N: sl.rows, Index: idx, Score: r.Scores.Data}
			r.Scores, r.Helpful, r.Harmful = nil, c, c
		}
	case modeTopK:
		n := s.nq * s.k
		idx := unsafe.Slice((*int64)(unsafe.Pointer(&sl.out[0])), s.blocks*2*n)
		val := unsafe.Slice((*float32)(unsafe.Pointer(&sl.out[s.valOff])), s.blocks*2*n)
		per := 0
		for blk := range used {
			per += min(s.k, sl.rows-blk*blockRows)
		}
		for dir, dst := range []*linalg.Candidates{&r.Helpful, &r.Harmful} {
			if s.idxBuf[dir] == nil {
				s.idxBuf[dir] = make([]int64, s.blocks*n)
				s.valBuf[dir] = make([]float32, s.blocks*n)
			}
			*dst = linalg.Candidates{N: per, Index: s.idxBuf[dir][:s.nq*per], Score: s.valBuf[dir][:s.nq*per]}
			pos := 0 // within a query's entries
			for blk := range used {
				kb := min(s.k, sl.rows-blk*blockRows)
				at := (blk*2 + dir) * n
				for i := range s.nq {
					copy(dst.Index[i*per+pos:i*per+pos+kb], idx[at+i*kb:at+(i+1)*kb])
					copy(dst.Score[i*per+pos:i*per+pos+kb], val[at+i*kb:at+(i+1)*kb])
				}
				pos += kb
			}
		}
	}
	return r, nil
}

// Close waits for the queued work and frees the stream's memory.
func (s *scoreStream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.d.do(s.release)
	if errors.Is(err, ErrClosed) {
		return nil // the device freed everything when it closed
	}
	if err != nil && s.err == nil {
		return fmt.Errorf("cuda: score stream: Close: %w", err)
	}
	return nil
}

// parallelCopy copies src to the start of dst, in pieces on several
// goroutines when it is large: one core does not keep up with a PCIe link,
// the less so when src is a memory-mapped file being paged in.
func parallelCopy(dst, src []byte) {
	// src may be a mapped shard that shrinks under the mapping: with the
	// caller's debug.SetPanicOnFault, ParallelChunks raises the fault again
	// on the caller's goroutine, where it can be recovered.
	linalg.ParallelChunks(len(src), 4<<20, func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) })
}
