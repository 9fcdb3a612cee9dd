package linalg

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"unsafe"

	"github.com/x448/float16"
)

// Half-precision formats are carried as raw bits in uint16: IEEE 754
// binary16 (F16) and bfloat16 (BF16), the upper half of a float32.

// F16Float32 returns the float32 value of the binary16 bits h. The
// conversion is exact; a NaN comes back quiet with its payload kept.
func F16Float32(h uint16) float32 { return float16.Frombits(h).Float32() }

// F16Bits returns f rounded to binary16, to nearest with ties to even.
// Values too large become ±Inf and NaNs stay NaN.
func F16Bits(f float32) uint16 { return float16.Fromfloat32(f).Bits() }

// BF16Float32 returns the float32 value of the bfloat16 bits h. The
// conversion is exact, NaN payloads included.
func BF16Float32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// BF16Bits returns f rounded to bfloat16, to nearest with ties to even.
// Values too large become ±Inf and a NaN becomes a quiet NaN of the same
// sign.
func BF16Bits(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		// Truncating could clear every payload bit left and make an Inf,
		// so set the quiet bit.
		return uint16(u>>16) | 0x0040
	}
	// Adding just under half an ulp, plus one when the kept part is odd,
	// carries into the kept bits exactly when rounding to nearest even goes
	// up. A carry out of the largest finite value gives the Inf bits.
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// F16ToF32 converts binary16 values to float32; see F16Float32.
func F16ToF32(dst []float32, src []uint16) {
	checkConv("F16ToF32", len(dst), len(src))
	tab := f16Table()
	ParallelChunks(len(src), convChunk, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		done := f16ToF32Fast(d, s)
		for i, h := range s[done:] {
			d[done+i] = tab[h]
		}
	})
}

// f16Table maps every binary16 bit pattern to its float32 value. A 256 KiB
// table lookup is several times faster than converting bit by bit, and it
// decides how fast f16 stores stream into GEMMs.
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = F16Float32(uint16(i))
	}
	return &t
})

// F16BytesToF32 converts little-endian binary16 values stored as bytes
// (len(src) = 2·len(dst)), as they lie in a memory-mapped file.
func F16BytesToF32(dst []float32, src []byte) { F16ToF32(dst, halfWords("F16BytesToF32", dst, src)) }

// BF16BytesToF32 is F16BytesToF32 for bfloat16.
func BF16BytesToF32(dst []float32, src []byte) { BF16ToF32(dst, halfWords("BF16BytesToF32", dst, src)) }

// halfWords views src as uint16 words without copying when the host is
// little-endian and src is 2-byte aligned, and decodes a copy otherwise.
func halfWords(op string, dst []float32, src []byte) []uint16 {
	if len(src) != 2*len(dst) {
		panic(fmt.Sprintf("linalg: %s: %d bytes for %d values", op, len(src), len(dst)))
	}
	if len(src) == 0 {
		return nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&src[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&src[0])), len(dst))
	}
	w := make([]uint16, len(dst))
	for i := range w {
		w[i] = binary.LittleEndian.Uint16(src[2*i:])
	}
	return w
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// BF16ToF32 converts bfloat16 values to float32; see BF16Float32.
func BF16ToF32(dst []float32, src []uint16) {
	checkConv("BF16ToF32", len(dst), len(src))
	ParallelChunks(len(src), convChunk, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		done := bf16ToF32Fast(d, s)
		for i, h := range s[done:] {
			d[done+i] = BF16Float32(h)
		}
	})
}

// F32ToF16 rounds float32 values to binary16; see F16Bits.
func F32ToF16(dst []uint16, src []float32) {
	checkConv("F32ToF16", len(dst), len(src))
	ParallelChunks(len(src), convChunk, func(lo, hi int) {
		for i, f := range src[lo:hi] {
			dst[lo+i] = F16Bits(f)
		}
	})
}

// F32ToBF16 rounds float32 values to bfloat16; see BF16Bits.
func F32ToBF16(dst []uint16, src []float32) {
	checkConv("F32ToBF16", len(dst), len(src))
	ParallelChunks(len(src), convChunk, func(lo, hi int) {
		for i, f := range src[lo:hi] {
			dst[lo+i] = BF16Bits(f)
		}
	})
}

func checkConv(op string, nd, ns int) {
	if nd != ns {
		panic(fmt.Sprintf("linalg: %s: len(dst) = %d, len(src) = %d", op, nd, ns))
	}
}

// convChunk is the least number of elements worth a goroutine of its own.
const convChunk = 1 << 16

// ParallelChunks calls f on consecutive pieces of [0, n) of at least
// minChunk elements, concurrently on up to GOMAXPROCS goroutines, for
// element-wise work (conversions, copies) whose result the split cannot
// change.
//
// The sources are often memory-mapped files (store shards), which fault when
// the file shrinks under the mapping. A caller that guards against that with
// debug.SetPanicOnFault(true) gets the same on the workers, and the first
// worker's panic is raised again on the calling goroutine, where the caller
// can recover it: a fault on a goroutine that does not panic on faults kills
// the process.
func ParallelChunks(n, minChunk int, f func(lo, hi int)) {
	p := min(runtime.GOMAXPROCS(0), n/max(minChunk, 1))
	if p <= 1 {
		f(0, n)
		return
	}
	onFault := debug.SetPanicOnFault(false)
	debug.SetPanicOnFault(onFault)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		panicked any
	)
	size := (n + p - 1) / p
	for lo := 0; lo < n; lo += size {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			if onFault {
				debug.SetPanicOnFault(true)
				defer func() {
					if r := recover(); r != nil {
						once.Do(func() { panicked = r })
					}
				}()
			}
			f(lo, hi)
		}(lo, min(lo+size, n))
	}
	wg.Wait()
	if panicked != nil {
		panic(panicked)
	}
}
