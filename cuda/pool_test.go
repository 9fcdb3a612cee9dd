package cuda

import (
	"errors"
	"testing"
)

func TestClassSize(t *testing.T) {
	prev := uint64(0)
	for n := uint64(1); n < 1<<22; n += 1 + n/97 {
		c := classSize(n)
		if c < n {
			t.Fatalf("classSize(%d) = %d < n", n, c)
		}
		if c < prev {
			t.Fatalf("classSize not monotone at %d", n)
		}
		if n > minClass && float64(c) > 1.25*float64(n) {
			t.Fatalf("classSize(%d) = %d wastes more than a quarter", n, c)
		}
		if c%128 != 0 {
			t.Fatalf("classSize(%d) = %d not a multiple of 128", n, c)
		}
		prev = c
	}
	for n, want := range map[uint64]uint64{1: 512, 512: 512, 513: 640, 640: 640, 641: 768, 1024: 1024, 1025: 1280, 3 << 20: 3 << 20, 1<<30 + 1: 5 << 28} {
		if got := classSize(n); got != want {
			t.Errorf("classSize(%d) = %d, want %d", n, got, want)
		}
	}
}

// fakeMem is an allocator that hands out distinct addresses and can run out.
type fakeMem struct {
	next, used, capacity uint64
	live                 map[uint64]uint64
	allocs, frees        int
}

func newFakeMem(capacity uint64) *fakeMem {
	return &fakeMem{next: 1 << 20, capacity: capacity, live: map[uint64]uint64{}}
}

func (f *fakeMem) alloc(n uint64) (uint64, error) {
	if f.used+n > f.capacity {
		return 0, &CallError{Call: "cuMemAlloc_v2", Err: OutOfMemory}
	}
	p := f.next
	f.next += n + 256
	f.used += n
	f.live[p] = n
	f.allocs++
	return p, nil
}

func (f *fakeMem) free(p uint64) error {
	n, ok := f.live[p]
	if !ok {
		return &CallError{Call: "cuMemFree_v2", Err: InvalidValue}
	}
	delete(f.live, p)
	f.used -= n
	f.frees++
	return nil
}

func TestPool(t *testing.T) {
	mem := newFakeMem(1 << 20)
	p := newPool(mem.alloc, mem.free, 0)
	a, err := p.get(1000)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.get(1000)
	if a == b {
		t.Fatal("two live blocks share an address")
	}
	if err := p.put(a); err != nil {
		t.Fatal(err)
	}
	if err := p.put(a); !errors.Is(err, errDoubleFree) {
		t.Errorf("double put: %v", err)
	}
	// Same class: reused.
	c, _ := p.get(900)
	if c != a {
		t.Errorf("block of the same class not reused")
	}
	if s := p.stats(); s.Hits != 1 || s.Misses != 2 || s.InUse != 2*1024 || s.Cached != 0 {
		t.Errorf("stats %+v", s)
	}
	// Another class: a new block.
	d, _ := p.get(5000)
	if d == a || d == b {
		t.Error("block of another class reused")
	}
	if _, err := p.get(0); err == nil {
		t.Error("zero-byte get succeeded")
	}
	for _, x := range []uint64{b, c, d} {
		p.put(x)
	}
	if s := p.stats(); s.InUse != 0 || s.Cached != 2*1024+5120 {
		t.Errorf("after puts: %+v", s)
	}
	if err := p.trim(); err != nil || mem.used != 0 || p.stats().Cached != 0 {
		t.Errorf("trim: %v, %d bytes still allocated", err, mem.used)
	}
}

// TestPoolOutOfMemory checks that the pool gives its cache back to the
// driver and retries when an allocation fails.
func TestPoolOutOfMemory(t *testing.T) {
	mem := newFakeMem(4096)
	p := newPool(mem.alloc, mem.free, 0)
	a, _ := p.get(2048)
	b, _ := p.get(1024)
	p.put(a)
	p.put(b)
	// 4096 bytes: only fits once the cached 3072 are freed.
	c, err := p.get(4096)
	if err != nil {
		t.Fatalf("get after trim: %v", err)
	}
	if p.stats().Cached != 0 || mem.frees != 2 {
		t.Errorf("cache not released: %+v, %d frees", p.stats(), mem.frees)
	}
	if _, err := p.get(512); !errors.Is(err, OutOfMemory) {
		t.Errorf("over capacity: %v, want OutOfMemory", err)
	}
	p.put(c)
	if err := p.release(); err != nil || mem.used != 0 {
		t.Errorf("release: %v, %d bytes left", err, mem.used)
	}
}

func TestPoolLimit(t *testing.T) {
	mem := newFakeMem(1 << 20)
	p := newPool(mem.alloc, mem.free, 2048)
	var blocks []uint64
	for range 4 {
		x, _ := p.get(1024)
		blocks = append(blocks, x)
	}
	for _, x := range blocks {
		p.put(x)
	}
	if s := p.stats(); s.Cached != 2048 || mem.used != 2048 {
		t.Errorf("limit 2048: cached %d, allocated %d", s.Cached, mem.used)
	}
	// A live block at release is freed too.
	x, _ := p.get(100000)
	_ = x
	if err := p.release(); err != nil || mem.used != 0 || len(mem.live) != 0 {
		t.Errorf("release: %v, %d bytes left", err, mem.used)
	}
}
