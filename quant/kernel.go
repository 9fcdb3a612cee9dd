package quant

import (
	"fmt"
	"os"
	"strings"
)

// A Kernel computes exact int32 sums of products of int8 rows. Kernels are
// single-threaded; callers split the rows between goroutines. Every kernel
// returns the same integers for the same inputs, whatever the shapes, so
// that any split gives the same results.
type Kernel interface {
	// Name is the kernel's name: "go", "avx2" or "vnni".
	Name() string
	// Gemm sets out[i·n+r] = Σ_{j<dim} a[i·dim+j]·b[r·dim+j] for i < m and
	// r < n: a is m×dim and b n×dim, row-major and contiguous, and out
	// m×n. The sums are exact for dim ≤ MaxDim and values in [−127, 127];
	// beyond, they wrap modulo 2³² alike on every kernel. m = 1 is the
	// GEMV-shaped pass of one query over the rows, read once.
	Gemm(out []int32, a []int8, m int, b []int8, n, dim int)
}

// EnvKernel is the environment variable that, when set to a kernel's name,
// makes Default return that kernel.
const EnvKernel = "GOINFLUENCE_I8_KERNEL"

// goKernel is the portable kernel, and the reference of the others.
type goKernel struct{}

func (goKernel) Name() string { return "go" }

func (goKernel) Gemm(out []int32, a []int8, m int, b []int8, n, dim int) {
	checkGemm(out, a, m, b, n, dim)
	for i := range m {
		ai := a[i*dim : (i+1)*dim]
		oi := out[i*n : (i+1)*n]
		for r := range n {
			oi[r] = dotGo(ai, b[r*dim:(r+1)*dim])
		}
	}
}

// dotGo returns Σ a[j]·b[j] in int32.
func dotGo(a, b []int8) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	j := 0
	for ; j+4 <= len(a); j += 4 {
		s0 += int32(a[j]) * int32(b[j])
		s1 += int32(a[j+1]) * int32(b[j+1])
		s2 += int32(a[j+2]) * int32(b[j+2])
		s3 += int32(a[j+3]) * int32(b[j+3])
	}
	for ; j < len(a); j++ {
		s0 += int32(a[j]) * int32(b[j])
	}
	return s0 + s1 + s2 + s3
}

// trivialGemm checks the arguments of a Gemm (checkGemm) and does the
// products that need no kernel: none when m or n is zero, zeros when dim
// is. It reports whether it did.
func trivialGemm(out []int32, a []int8, m int, b []int8, n, dim int) bool {
	checkGemm(out, a, m, b, n, dim)
	if m == 0 || n == 0 {
		return true
	}
	if dim == 0 {
		clear(out[:m*n])
		return true
	}
	return false
}

// checkGemm panics, as slicing out of range would, when the slices are too
// short for the shapes: a programming error, not bad input.
func checkGemm(out []int32, a []int8, m int, b []int8, n, dim int) {
	if m < 0 || n < 0 || dim < 0 || len(a) < m*dim || len(b) < n*dim || len(out) < m*n {
		panic(fmt.Sprintf("quant: Gemm: %d×%d by %d×%d into %d values, with %d and %d values", m, dim, n, dim, len(out), len(a), len(b)))
	}
}

// Kernels returns the kernels this CPU runs, best first; the last is the
// portable "go" kernel.
func Kernels() []Kernel {
	return append(cpuKernels(), goKernel{})
}

// Default returns the kernel named by GOINFLUENCE_I8_KERNEL when it is set,
// else the best of Kernels. A name that is unknown or that this CPU cannot
// run is an error rather than a silent fallback, so that a benchmark or a
// test of one kernel does not measure another.
func Default() (Kernel, error) {
	name := os.Getenv(EnvKernel)
	if name == "" {
		return Kernels()[0], nil
	}
	k, err := ByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvKernel, err)
	}
	return k, nil
}

// ByName returns the kernel of the given name ("go", "avx2", "vnni") if this
// CPU runs it.
func ByName(name string) (Kernel, error) {
	var names []string
	for _, k := range Kernels() {
		if k.Name() == name {
			return k, nil
		}
		names = append(names, k.Name())
	}
	return nil, fmt.Errorf("quant: no int8 kernel %q on this CPU (it runs %s)", name, strings.Join(names, ", "))
}
