#include "textflag.h"

// The AVX2 kernels widen 16 bytes at a time to int16 (VPMOVSXBW) and
// multiply-add adjacent pairs into int32 (VPMADDWD): each pair sum is at
// most 2·128² in magnitude, so no step saturates, and the int32 adds wrap
// as Go's do. The last dim mod 16 bytes are left to the Go side.

// REDUCE4 sums the 8 lanes of each of y0…y3 and leaves the four sums in
// X12, in order. It clobbers Y12 and Y13.
#define REDUCE4(y0, y1, y2, y3) \
	VPHADDD      y1, y0, Y12  \
	VPHADDD      y3, y2, Y13  \
	VPHADDD      Y13, Y12, Y12 \
	VEXTRACTI128 $1, Y12, X13 \
	VPADDD       X13, X12, X12

// MAC2 accumulates the products of the b row at addr with the a rows in
// Y8 and Y9 into c0 and c1.
#define MAC2(addr, c0, c1) \
	VPMOVSXBW addr, Y10    \
	VPMADDWD  Y10, Y8, Y11 \
	VPADDD    Y11, c0, c0  \
	VPMADDWD  Y10, Y9, Y12 \
	VPADDD    Y12, c1, c1

// MAC1 accumulates the products of the b row at addr with the a row in Y8
// into c.
#define MAC1(addr, c) \
	VPMOVSXBW addr, Y10    \
	VPMADDWD  Y10, Y8, Y11 \
	VPADDD    Y11, c, c

#define ZERO(y) VPXOR y, y, y

// func avx2x2x4(a, b *int8, stride, k int, out *int32, ldo int)
//
// avx2x2x4 sets the 2×4 block out[i·ldo+r] = Σ_{j<16k} a[i·stride+j]·b[r·stride+j].
TEXT ·avx2x2x4(SB), NOSPLIT, $0-48
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ stride+16(FP), DX
	MOVQ k+24(FP), CX
	LEAQ (DI)(DX*2), R9
	ADDQ DX, R9
	ZERO(Y0); ZERO(Y1); ZERO(Y2); ZERO(Y3)
	ZERO(Y4); ZERO(Y5); ZERO(Y6); ZERO(Y7)
	TESTQ CX, CX
	JZ    reduce2x4

loop2x4:
	VPMOVSXBW (SI), Y8
	VPMOVSXBW (SI)(DX*1), Y9
	MAC2((DI), Y0, Y4)
	MAC2((DI)(DX*1), Y1, Y5)
	MAC2((DI)(DX*2), Y2, Y6)
	MAC2((R9), Y3, Y7)
	ADDQ $16, SI
	ADDQ $16, DI
	ADDQ $16, R9
	DECQ CX
	JNZ  loop2x4

reduce2x4:
	MOVQ out+32(FP), BX
	MOVQ ldo+40(FP), R10
	REDUCE4(Y0, Y1, Y2, Y3)
	VMOVDQU X12, (BX)
	REDUCE4(Y4, Y5, Y6, Y7)
	VMOVDQU X12, (BX)(R10*4)
	VZEROUPPER
	RET

// func avx2x1x4(a, b *int8, stride, k int, out *int32)
TEXT ·avx2x1x4(SB), NOSPLIT, $0-40
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ stride+16(FP), DX
	MOVQ k+24(FP), CX
	LEAQ (DI)(DX*2), R9
	ADDQ DX, R9
	ZERO(Y0); ZERO(Y1); ZERO(Y2); ZERO(Y3)
	TESTQ CX, CX
	JZ    reduce1x4

loop1x4:
	VPMOVSXBW (SI), Y8
	MAC1((DI), Y0)
	MAC1((DI)(DX*1), Y1)
	MAC1((DI)(DX*2), Y2)
	MAC1((R9), Y3)
	ADDQ $16, SI
	ADDQ $16, DI
	ADDQ $16, R9
	DECQ CX
	JNZ  loop1x4

reduce1x4:
	MOVQ out+32(FP), BX
	REDUCE4(Y0, Y1, Y2, Y3)
	VMOVDQU X12, (BX)
	VZEROUPPER
	RET

// func avx2x1x1(a, b *int8, k int) int32
TEXT ·avx2x1x1(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ k+16(FP), CX
	ZERO(Y0)
	TESTQ CX, CX
	JZ    reduce1x1

loop1x1:
	VPMOVSXBW (SI), Y8
	MAC1((DI), Y0)
	ADDQ $16, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  loop1x1

reduce1x1:
	VEXTRACTI128 $1, Y0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0x4E, X0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0xB1, X0, X1
	VPADDD       X1, X0, X0
	VMOVD        X0, AX
	MOVL         AX, ret+24(FP)
	VZEROUPPER
	RET
