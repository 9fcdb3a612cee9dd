package cuda

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestKernelSourcesEmulated runs the CUDA C of kernels/*.cu on the CPU
// (compiled as C++ with testdata/hostemu, threads of a block as OS threads
// meeting at a barrier) and compares each kernel with its reference, bit
// for bit. It checks the kernels' logic where there is no GPU; it needs a
// C++20 compiler and skips without one.
func TestKernelSourcesEmulated(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	emu := buildEmulator(t)
	rng := rand.New(rand.NewPCG(11, 12))

	t.Run("convert", func(t *testing.T) {
		h := make([]uint16, 1<<16)
		for i := range h {
			h[i] = uint16(i)
		}
		for _, tc := range []struct {
			name string
			ref  func(uint16) uint32
		}{{"f16", refF16}, {"bf16", refBF16}} {
			out := runEmulator(t, emu, h, tc.name, len(h), 7, 64)
			got := decode[uint32](out, len(h))
			for i, x := range h {
				if got[i] != tc.ref(x) {
					t.Fatalf("%s(%#04x) = %#08x, want %#08x", tc.name, x, got[i], tc.ref(x))
				}
			}
		}
	})

	t.Run("rademacher", func(t *testing.T) {
		for _, tc := range []struct{ rows, d, k, gridY int }{{1, 1, 1, 1}, {3, 129, 300, 1}, {17, 260, 128, 2}, {9, 50, 129, 5}} {
			x := gradValues(rng, tc.rows*tc.d)
			const seed = 0xfeed_beef_0123
			stream := uint32(5<<2 | 1)
			want := make([]float64, tc.rows*tc.k)
			refRademacher(want, x, tc.d, tc.k, seed, stream)
			k0, k1 := philoxKey(seed)
			args := []any{"rad64", tc.rows, tc.d, tc.k, k0, k1, stream, math.Float64bits(1 / math.Sqrt(float64(tc.k))), tc.gridY}
			sameFloat64s(t, fmt.Sprintf("rademacher_f64 %v", tc), decode[float64](runEmulator(t, emu, x, args...), len(want)), want)

			x32 := make([]float32, len(x))
			for i, v := range x {
				x32[i] = float32(v)
				x[i] = float64(x32[i])
			}
			refRademacher(want, x, tc.d, tc.k, seed, stream)
			args[0] = "rad32"
			sameFloat64s(t, fmt.Sprintf("rademacher_f32 %v", tc), decode[float64](runEmulator(t, emu, x32, args...), len(want)), want)
		}
	})

	t.Run("sjlt", func(t *testing.T) {
		const rows, d, k, seed = 6, 500, 37, 77
		stream := uint32(2<<2 | 3)
		k0, k1 := philoxKey(seed)
		out := runEmulator(t, emu, nil, "sjlthash", d, k, k0, k1, stream)
		bucket, neg := decode[int32](out, d), out[4*d:]
		wb, wn := refSJLTHash(d, k, seed, stream)
		if !slices.Equal(bucket, wb) || !bytes.Equal(neg, wn) {
			t.Fatalf("sjlt_hash differs from the reference")
		}
		x := gradValues(rng, rows*d)
		order, start := sjltOrder(bucket, k)
		var in bytes.Buffer
		for _, v := range []any{x, order, start, neg} {
			binary.Write(&in, binary.LittleEndian, v)
		}
		want := make([]float64, rows*k)
		refSJLT(want, x, d, k, seed, stream)
		got := decode[float64](runEmulator(t, emu, in.Bytes(), "sjltgather", rows, d, k, 16, 4), len(want))
		sameFloat64s(t, "sjlt_gather_f64", got, want)
	})

	t.Run("ekfac", func(t *testing.T) {
		const n, d, delta = 5, 23, 0.01
		lambda := make([]float64, d)
		for i := range lambda {
			lambda[i] = math.Abs(rng.NormFloat64()) * 1e-2
		}
		x := gradValues(rng, n*d)
		want := slices.Clone(x)
		refScaleEKFAC(want, lambda, delta)
		var in bytes.Buffer
		binary.Write(&in, binary.LittleEndian, lambda)
		binary.Write(&in, binary.LittleEndian, x)
		sameFloat64s(t, "ekfac_scale_f64", decode[float64](runEmulator(t, emu, in.Bytes(), "ekfac64", n, d, math.Float64bits(delta)), len(x)), want)

		x32 := make([]float32, len(x))
		for i := range x {
			x32[i] = float32(x[i])
		}
		want32 := slices.Clone(x32)
		refScaleEKFAC32(want32, lambda, delta)
		in.Reset()
		binary.Write(&in, binary.LittleEndian, lambda)
		binary.Write(&in, binary.LittleEndian, x32)
		got32 := decode[float32](runEmulator(t, emu, in.Bytes(), "ekfac32", n, d, math.Float64bits(delta)), len(x32))
		for i := range got32 {
			if math.Float32bits(got32[i]) != math.Float32bits(want32[i]) {
				t.Fatalf("ekfac_scale_f32 element %d = %v, want %v", i, got32[i], want32[i])
			}
		}
	})

	t.Run("topk", func(t *testing.T) {
		levels := []float32{float32(math.Inf(-1)), -1, float32(math.Copysign(0, -1)), 0, 2, float32(math.NaN()), float32(math.Inf(1))}
		for _, tc := range []struct {
			rows, cols, ld, k int
			offset            int64
			grid, block       int
		}{
			{1, 1, 1, 1, 0, 1, 32},
			{3, 100, 103, 7, 5000, 2, 64},
			{1, 1500, 1500, 1024, 0, 1, 256},
			{1, 3000, 3000, 50, 7, 1, 1024},
			{4, 700, 701, 100, 1 << 31, 3, 96},
			{2, 64, 64, 64, 0, 1, 64},
		} {
			s := make([]float32, tc.rows*tc.ld)
			for i := range s {
				if rng.IntN(2) == 0 {
					s[i] = levels[rng.IntN(len(levels))]
				} else {
					s[i] = float32(rng.NormFloat64())
				}
			}
			for _, lowest := range []int{0, 1} {
				out := runEmulator(t, emu, s, "topk", tc.rows, tc.cols, tc.ld, tc.k, lowest, tc.offset, tc.grid, tc.block)
				n := tc.rows * tc.k
				idx, val := decode[int64](out, n), decode[float32](out[8*n:], n)
				for r := range tc.rows {
					wi, wv := refTopK(s[r*tc.ld:r*tc.ld+tc.cols], tc.k, lowest == 1, tc.offset)
					gi, gv := idx[r*tc.k:(r+1)*tc.k], val[r*tc.k:(r+1)*tc.k]
					if !slices.Equal(gi, wi) {
						t.Fatalf("%+v lowest %d row %d: indices %v, want %v", tc, lowest, r, gi[:min(8, len(gi))], wi[:min(8, len(wi))])
					}
					for p := range wv {
						if math.Float32bits(gv[p]) != math.Float32bits(wv[p]) {
							t.Fatalf("%+v row %d: value %d = %v, want %v", tc, r, p, gv[p], wv[p])
						}
					}
				}
			}
		}
	})
}

// buildEmulator compiles the kernels and testdata/hostemu/main.cpp, caching
// the binary by the hash of its sources.
func buildEmulator(t *testing.T) string {
	t.Helper()
	cxx := os.Getenv("CXX")
	if cxx == "" {
		cxx = "g++"
	}
	if _, err := exec.LookPath(cxx); err != nil {
		t.Skipf("no C++ compiler (%s) to emulate the kernels", cxx)
	}
	srcs := []string{"testdata/hostemu/hostemu.h", "testdata/hostemu/main.cpp"}
	for _, m := range kernelModules {
		srcs = append(srcs, "kernels/"+m+".cu")
	}
	h := sha256.New()
	h.Write([]byte(cxx))
	for _, s := range srcs {
		b, err := os.ReadFile(s)
		if os.IsNotExist(err) {
			t.Skipf("%s not found: run the test from the cuda package directory", s)
		}
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, "goinfluence-cuda-hostemu")
	bin := filepath.Join(dir, hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	args := []string{"-std=c++20", "-O1", "-pthread", "-Wall", "-Werror", "-include", srcs[0], "-x", "c++"}
	args = append(args, srcs[2:]...)
	args = append(args, srcs[1], "-o", tmp)
	out, err := exec.Command(cxx, args...).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("barrier")) {
			t.Skipf("%s lacks C++20 <barrier>: %s", cxx, out)
		}
		t.Fatalf("%s %v: %v\n%s", cxx, args, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// runEmulator runs a kernel: args name it and give its parameters; in is
// written to its stdin as little-endian data.
func runEmulator(t *testing.T, bin string, in any, args ...any) []byte {
	t.Helper()
	var stdin bytes.Buffer
	switch v := in.(type) {
	case nil:
	case []byte:
		stdin.Write(v)
	default:
		if err := binary.Write(&stdin, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	sargs := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case uint64:
			sargs[i] = "0x" + strconv.FormatUint(v, 16)
		default:
			sargs[i] = fmt.Sprint(v)
		}
	}
	cmd := exec.Command(bin, sargs...)
	cmd.Stdin = &stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("emulator %v: %v: %s", sargs, err, stderr.String())
	}
	return out
}

func decode[T any](b []byte, n int) []T {
	v := make([]T, n)
	if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, v); err != nil {
		panic(fmt.Sprintf("decoding %d values from %d bytes: %v", n, len(b), err))
	}
	return v
}
