package quant

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// guarded returns n bytes that end where a page that cannot be read
// begins, as the last row of a memory-mapped shard may, so that a kernel
// that reads past the end of its rows faults.
func guarded(t *testing.T, n int) []int8 {
	t.Helper()
	page := unix.Getpagesize()
	size := (n+page-1)/page*page + page
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	if err := unix.Mprotect(mem[size-page:], unix.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	b := mem[size-page-n : size-page]
	return unsafe.Slice((*int8)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

func TestKernelsEndOfMapping(t *testing.T) {
	rnd := rand.New(rand.NewPCG(13, 14))
	for _, k := range Kernels() {
		for _, sh := range []struct{ m, n, dim int }{
			{1, 1, 1}, {1, 9, 65}, {1, 8, 127}, {7, 5, 17}, {6, 4, 4097}, {13, 7, 100},
		} {
			a := guarded(t, sh.m*sh.dim)
			b := guarded(t, sh.n*sh.dim)
			copy(a, randInt8(rnd, len(a)))
			copy(b, randInt8(rnd, len(b)))
			want := refGemm(a, sh.m, b, sh.n, sh.dim)
			if d := firstDiff(gemm(t, k, a, sh.m, b, sh.n, sh.dim), want, sh.n); d != "" {
				t.Errorf("%s %+v: %s", k.Name(), sh, d)
			}
		}
	}
}
