package cuda

import (
	"errors"
	"fmt"
	"math/bits"
)

// pool caches device allocations in size classes, because cuMemAlloc and
// cuMemFree synchronise the whole device and cost tens of microseconds: a
// GEMM that allocated its operands each time would spend more on that than
// on small products. Freed blocks go to the free list of their class and
// are handed out again for any request of that class.
//
// Classes are 512 bytes and up, with four per power of two (2^e, 1.25·2^e,
// 1.5·2^e, 1.75·2^e), so a block wastes less than a quarter of its size.
//
// A pool is used from the device goroutine only and has no lock. Its
// allocator functions are parameters so that the bookkeeping is tested
// without a GPU.
type pool struct {
	alloc func(bytes uint64) (uint64, error)
	free  func(ptr uint64) error
	// limit bounds the bytes kept in free lists; a freed block that would
	// exceed it is returned to the driver. 0 means no limit.
	limit uint64

	lists  map[uint64][]uint64 // class size → free blocks
	live   map[uint64]uint64   // block in use → its class size
	cached uint64              // bytes in free lists
	inUse  uint64              // bytes handed out (class sizes)
	hits   uint64              // requests served from a free list
	misses uint64              // requests that called alloc
}

// minClass is the smallest block; cuMemAlloc aligns to 256 bytes anyway.
const minClass = 512

// errDoubleFree is returned by put for a pointer the pool did not hand out.
var errDoubleFree = errors.New("cuda: pool: freeing a block that is not in use")

func newPool(alloc func(uint64) (uint64, error), free func(uint64) error, limit uint64) *pool {
	return &pool{alloc: alloc, free: free, limit: limit, lists: map[uint64][]uint64{}, live: map[uint64]uint64{}}
}

// classSize returns the size of the class that holds n bytes.
func classSize(n uint64) uint64 {
	if n <= minClass {
		return minClass
	}
	e := bits.Len64(n-1) - 1 // 2^e < n ≤ 2^(e+1)
	step := uint64(1) << (e - 2)
	return (n + step - 1) / step * step
}

// get returns a block of at least n bytes (n > 0). When the driver is out
// of memory it releases the cached blocks and tries once more.
func (p *pool) get(n uint64) (uint64, error) {
	if n == 0 {
		return 0, fmt.Errorf("cuda: pool: zero-byte allocation")
	}
	c := classSize(n)
	if l := p.lists[c]; len(l) > 0 {
		ptr := l[len(l)-1]
		p.lists[c] = l[:len(l)-1]
		p.cached -= c
		p.live[ptr] = c
		p.inUse += c
		p.hits++
		return ptr, nil
	}
	ptr, err := p.alloc(c)
	if errors.Is(err, OutOfMemory) && p.cached > 0 {
		if terr := p.trim(); terr != nil {
			return 0, errors.Join(err, terr)
		}
		ptr, err = p.alloc(c)
	}
	if err != nil {
		return 0, err
	}
	p.live[ptr] = c
	p.inUse += c
	p.misses++
	return ptr, nil
}

// put returns a block from get to the pool.
func (p *pool) put(ptr uint64) error {
	c, ok := p.live[ptr]
	if !ok {
		return fmt.Errorf("%w (%#x)", errDoubleFree, ptr)
	}
	delete(p.live, ptr)
	p.inUse -= c
	if p.limit > 0 && p.cached+c > p.limit {
		return p.free(ptr)
	}
	p.lists[c] = append(p.lists[c], ptr)
	p.cached += c
	return nil
}

// trim returns every cached block to the driver.
func (p *pool) trim() error {
	var errs []error
	for c, l := range p.lists {
		for _, ptr := range l {
			if err := p.free(ptr); err != nil {
				errs = append(errs, err)
			}
		}
		delete(p.lists, c)
	}
	p.cached = 0
	return errors.Join(errs...)
}

// release frees every block, cached or in use, when the device closes.
func (p *pool) release() error {
	err := p.trim()
	var errs []error
	for ptr := range p.live {
		if ferr := p.free(ptr); ferr != nil {
			errs = append(errs, ferr)
		}
	}
	clear(p.live)
	p.inUse = 0
	return errors.Join(append([]error{err}, errs...)...)
}

// PoolStats describes a device's memory pool.
type PoolStats struct {
	InUse  uint64 // bytes in blocks handed out
	Cached uint64 // bytes in free blocks kept for reuse
	Hits   uint64 // allocations served from the cache
	Misses uint64 // allocations that called cuMemAlloc
}

func (p *pool) stats() PoolStats {
	return PoolStats{InUse: p.inUse, Cached: p.cached, Hits: p.hits, Misses: p.misses}
}
