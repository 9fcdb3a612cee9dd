package cuda

import (
	"fmt"
	"unsafe"

	"github.com/goinfluence/goinfluence/quant"
)

// GemmI8 sets out[i·n+r] = Σ_{j<dim} a[i·dim+j]·b[r·dim+j] for a m×dim and
// b n×dim, row-major, and out m×n (accel.Int8Gemmer): the integer sums of
// the exact scoring of DESIGN §11, computed by cublasGemmEx with int8
// operands and int32 accumulation (CUBLAS_COMPUTE_32I). Integer sums do not
// depend on their order, so they equal package quant's bit for bit.
//
// Rows longer than quant.MaxDim are refused: their sums may overflow, and
// the GPU's overflow need not be the CPU's wrap. Rows whose length is not a
// multiple of 4 are padded with zeros on their way to the device, because
// cuBLAS's int8 GEMM wants leading dimensions that are multiples of 4; the
// zeros add nothing to the sums. Inputs too large for the device are
// multiplied in pieces.
//
// Unlike the linalg.Backend methods, GemmI8 does not fall back to the
// host: it returns the error (naming the failed call) and the caller runs
// its CPU kernel. out is then left in an unspecified state.
func (b *Backend) GemmI8(out []int32, a []int8, m int, bm []int8, n, dim int) error {
	if err := gemmI8Args(len(out), len(a), m, len(bm), n, dim); err != nil {
		return err
	}
	if m == 0 || n == 0 {
		return nil
	}
	if dim == 0 {
		clear(out[:m*n])
		return nil
	}
	if b.broken.Load() {
		return fmt.Errorf("cuda: GemmI8: the GPU failed earlier: %w", b.Err())
	}
	dev := b.dev
	err := dev.do(func() error {
		budget, err := dev.i8Budget()
		if err != nil {
			return err
		}
		return gemmI8Device(dev, out, a, m, bm, n, dim, budget)
	})
	if err != nil {
		err = fmt.Errorf("cuda: GemmI8: %w", err)
		b.noteErr(err)
		return err
	}
	return nil
}

// gemmI8Args checks GemmI8's shapes against its slices. Products are
// avoided (m·dim may not fit an int on 32-bit platforms).
func gemmI8Args(nOut, nA, m, nB, n, dim int) error {
	switch {
	case m < 0 || n < 0 || dim < 0:
		return fmt.Errorf("cuda: GemmI8: m = %d, n = %d, dim = %d, want them ≥ 0", m, n, dim)
	case dim > quant.MaxDim:
		return fmt.Errorf("cuda: GemmI8: dim = %d exceeds quant.MaxDim = %d: the int32 sums may overflow", dim, quant.MaxDim)
	case !fitsBLAS(m, n):
		return fmt.Errorf("cuda: GemmI8: m = %d, n = %d do not fit cuBLAS's 32-bit dimensions", m, n)
	case dim > 0 && nA/dim < m:
		return fmt.Errorf("cuda: GemmI8: a has %d values, want %d rows × %d", nA, m, dim)
	case dim > 0 && nB/dim < n:
		return fmt.Errorf("cuda: GemmI8: b has %d values, want %d rows × %d", nB, n, dim)
	case n > 0 && nOut/n < m:
		return fmt.Errorf("cuda: GemmI8: out has %d values, want %d × %d", nOut, m, n)
	}
	return nil
}

// i8PieceBytes bounds the device memory of one piece of a GemmI8: large
// enough that a piece keeps the GPU busy far longer than its launch
// costs, small enough to leave the device to its other users and to bound
// the host's padding buffers.
const i8PieceBytes = 256 << 20

// i8Budget returns the device bytes one piece of a GemmI8 may use: half
// the free memory, at most i8PieceBytes. It runs on the device goroutine.
func (d *Device) i8Budget() (uint64, error) {
	var free, total uint64
	if err := check("cuMemGetInfo_v2", d.api.cuMemGetInfo(&free, &total)); err != nil {
		return 0, err
	}
	return min(i8PieceBytes, max(free/2, 1<<20)), nil
}

// i8Pieces returns the rows of a and of b in one piece, so that the piece
// (its rows of a and b, padded to dp, and its int32 outputs) takes at most
// budget bytes when one row of each fits. The rows of a, the queries, take
// at most a quarter, so that the rows of b, the long side, come in large
// pieces.
func i8Pieces(m, n, dp int, budget uint64) (ma, nb int) {
	row := uint64(dp)
	ma = int(min(uint64(m), max(1, budget/4/row)))
	rest := budget - min(budget, uint64(ma)*row)
	nb = int(min(uint64(n), max(1, rest/(row+4*uint64(ma)))))
	return ma, nb
}

// gemmI8Device runs GemmI8 on the device goroutine, in pieces of at most
// budget bytes.
//
// Row-major out = a·bᵀ (m×n) is column-major outᵀ = b·aᵀ (n×m). A
// row-major matrix of rows of dp values is the column-major dp×rows
// matrix with leading dimension dp, so cuBLAS gets b transposed (op T,
// giving n×dp) times a as it is (op N, dp×m): the "TN" layout that
// cuBLAS's int8 tensor-core kernels want. cuBLAS supports CUBLAS_COMPUTE_32I
// only with α and β 0 or 1 (here 1 and 0, as int32), A and B 4-byte
// aligned (pool blocks are 256-byte aligned, as cuMemAlloc's are) and lda,
// ldb multiples of 4 (dp); ldc is the rows of b in the piece.
func gemmI8Device(d *Device, out []int32, a []int8, m int, b []int8, n, dim int, budget uint64) error {
	bl, h, err := d.blasHandle()
	if err != nil {
		return err
	}
	dp := (dim + 3) &^ 3
	ma, nb := i8Pieces(m, n, dp, budget)
	s := &scratch{d: d}
	defer s.release()
	da, err := s.get(uint64(ma) * uint64(dp))
	if err != nil {
		return err
	}
	db, err := s.get(uint64(nb) * uint64(dp))
	if err != nil {
		return err
	}
	dc, err := s.get(uint64(ma) * uint64(nb) * 4)
	if err != nil {
		return err
	}
	// Padded copies of the pieces, reused: each is rewritten only after
	// the stream has been synchronised, so after its last copy has run.
	var padA, padB []int8
	if dp != dim {
		padA, padB = make([]int8, ma*dp), make([]int8, nb*dp)
	}
	var tmp []int32
	if nb < n {
		tmp = make([]int32, ma*nb)
	}
	one, zero := int32(1), int32(0)
	for i0 := 0; i0 < m; i0 += ma {
		mi := min(ma, m-i0)
		if err := uploadRowsI8(d, da, a[i0*dim:(i0+mi)*dim], dim, dp, padA); err != nil {
			return err
		}
		for r0 := 0; r0 < n; r0 += nb {
			ni := min(nb, n-r0)
			if err := uploadRowsI8(d, db, b[r0*dim:(r0+ni)*dim], dim, dp, padB); err != nil {
				return err
			}
			err := checkBLAS("cublasGemmEx", bl.gemmEx(h, cublasOpT, cublasOpN, int32(ni), int32(mi), int32(dp),
				&one, db, cudaR8I, int32(dp), da, cudaR8I, int32(dp), &zero, dc, cudaR32I, int32(ni),
				cublasCompute32I, cublasGemmDefault))
			if err != nil {
				return err
			}
			// The piece is mi rows of ni outputs, packed: whole rows of
			// out when b is in one piece, else copied into place.
			if ni == n {
				if err := downloadSlice(d, out[i0*n:(i0+mi)*n], dc); err != nil {
					return err
				}
				if err := d.sync(); err != nil {
					return err
				}
				continue
			}
			piece := tmp[:mi*ni]
			if err := downloadSlice(d, piece, dc); err != nil {
				return err
			}
			if err := d.sync(); err != nil {
				return err
			}
			for i := range mi {
				copy(out[(i0+i)*n+r0:(i0+i)*n+r0+ni], piece[i*ni:(i+1)*ni])
			}
		}
	}
	return nil
}

// uploadRowsI8 copies rows of dim values to the device at p as rows of dp,
// through pad (zeroed beyond each row) when dp ≠ dim. The copy is queued
// on the stream; src and pad must stay unchanged until it is synchronised.
func uploadRowsI8(d *Device, p uint64, src []int8, dim, dp int, pad []int8) error {
	if dp != dim {
		rows := len(src) / dim
		pad = pad[:rows*dp]
		for i := range rows {
			row := pad[i*dp : (i+1)*dp]
			copy(row, src[i*dim:(i+1)*dim])
			clear(row[dim:])
		}
		src = pad
	}
	if len(src) == 0 {
		return nil
	}
	return d.htod(p, unsafe.Pointer(&src[0]), uint64(len(src)))
}
