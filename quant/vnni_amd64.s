#include "textflag.h"

// The VNNI kernels multiply unsigned bytes by signed bytes (VPDPBUSD). The
// bytes of b are made unsigned by flipping their sign bit as they are
// loaded (u = t + 128) and a stays signed, so that each sum comes out as
// Σ t·a + 128·Σ a, modulo 2³²; the Go side subtracts 128·Σ a. Z31 holds
// the 0x80 bytes.
//
// The last dim mod 64 bytes of the rows are loaded under the mask K1 with
// zeroing: a zeroed a byte cancels its product, and masked-out bytes are
// never read, so a row may end at the end of a mapping.

// reduceIdx picks the first int32 of each 128-bit lane.
DATA reduceIdx<>+0(SB)/4, $0
DATA reduceIdx<>+4(SB)/4, $4
DATA reduceIdx<>+8(SB)/4, $8
DATA reduceIdx<>+12(SB)/4, $12
DATA reduceIdx<>+16(SB)/4, $0
DATA reduceIdx<>+20(SB)/4, $0
DATA reduceIdx<>+24(SB)/4, $0
DATA reduceIdx<>+28(SB)/4, $0
DATA reduceIdx<>+32(SB)/4, $0
DATA reduceIdx<>+36(SB)/4, $0
DATA reduceIdx<>+40(SB)/4, $0
DATA reduceIdx<>+44(SB)/4, $0
DATA reduceIdx<>+48(SB)/4, $0
DATA reduceIdx<>+52(SB)/4, $0
DATA reduceIdx<>+56(SB)/4, $0
DATA reduceIdx<>+60(SB)/4, $0
GLOBL reduceIdx<>(SB), RODATA|NOPTR, $64

// REDUCE4 sums the 16 lanes of each of z0…z3 and leaves the four sums in
// X25, in order: the halves of two vectors are folded into one, twice,
// so that the last folds within 128-bit lanes serve four sums at once. It
// needs reduceIdx in Z29 and clobbers Z24…Z28.
#define REDUCE4(z0, z1, z2, z3) \
	VSHUFI64X2 $0x44, z1, z0, Z24   \
	VSHUFI64X2 $0xEE, z1, z0, Z25   \
	VPADDD     Z25, Z24, Z24        \
	VSHUFI64X2 $0x44, z3, z2, Z26   \
	VSHUFI64X2 $0xEE, z3, z2, Z27   \
	VPADDD     Z27, Z26, Z26        \
	VSHUFI64X2 $0x88, Z26, Z24, Z25 \
	VSHUFI64X2 $0xDD, Z26, Z24, Z27 \
	VPADDD     Z27, Z25, Z25        \
	VPSHUFD    $0x4E, Z25, Z26      \
	VPADDD     Z26, Z25, Z25        \
	VPSHUFD    $0xB1, Z25, Z26      \
	VPADDD     Z26, Z25, Z25        \
	VPERMD     Z25, Z29, Z25

// BFULL loads 64 bytes of a b row, made unsigned, into Z30; BMASK loads
// the bytes that K1 selects.
#define BFULL(addr) VPXORD addr, Z31, Z30
#define BMASK(addr) VMOVDQU8.Z addr, K1, Z30; VPXORD Z31, Z30, Z30

// AFULL and AMASK load 64 bytes of an a row into z.
#define AFULL(addr, z) VMOVDQU64 addr, z
#define AMASK(addr, z) VMOVDQU8.Z addr, K1, z

#define ZERO(z) VPXORD z, z, z

// DP6 accumulates the products of the b bytes in Z30 with the six a rows
// in Z24…Z29.
#define DP6(c0, c1, c2, c3, c4, c5) \
	VPDPBUSD Z24, Z30, c0 \
	VPDPBUSD Z25, Z30, c1 \
	VPDPBUSD Z26, Z30, c2 \
	VPDPBUSD Z27, Z30, c3 \
	VPDPBUSD Z28, Z30, c4 \
	VPDPBUSD Z29, Z30, c5

// STEP6X4 runs 64 bytes of a 6×4 block: a rows at SI, SI+DX, SI+2·DX, R8,
// R8+DX, R8+2·DX; b rows at DI, DI+DX, DI+2·DX, R9; the sum of a row i and
// b row r in Z(4i+r).
#define STEP6X4(LOADA, LOADB) \
	LOADA((SI), Z24)                \
	LOADA((SI)(DX*1), Z25)          \
	LOADA((SI)(DX*2), Z26)          \
	LOADA((R8), Z27)                \
	LOADA((R8)(DX*1), Z28)          \
	LOADA((R8)(DX*2), Z29)          \
	LOADB((DI))                     \
	DP6(Z0, Z4, Z8, Z12, Z16, Z20)  \
	LOADB((DI)(DX*1))               \
	DP6(Z1, Z5, Z9, Z13, Z17, Z21)  \
	LOADB((DI)(DX*2))               \
	DP6(Z2, Z6, Z10, Z14, Z18, Z22) \
	LOADB((R9))                     \
	DP6(Z3, Z7, Z11, Z15, Z19, Z23)

// func vnni6x4(a, b *int8, stride, k int, mask uint64, out *int32, ldo int)
TEXT ·vnni6x4(SB), NOSPLIT, $0-56
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ stride+16(FP), DX
	MOVQ k+24(FP), CX
	LEAQ (SI)(DX*2), R8
	ADDQ DX, R8
	LEAQ (DI)(DX*2), R9
	ADDQ DX, R9
	MOVL $0x80, AX
	VPBROADCASTB AX, Z31
	ZERO(Z0); ZERO(Z1); ZERO(Z2); ZERO(Z3)
	ZERO(Z4); ZERO(Z5); ZERO(Z6); ZERO(Z7)
	ZERO(Z8); ZERO(Z9); ZERO(Z10); ZERO(Z11)
	ZERO(Z12); ZERO(Z13); ZERO(Z14); ZERO(Z15)
	ZERO(Z16); ZERO(Z17); ZERO(Z18); ZERO(Z19)
	ZERO(Z20); ZERO(Z21); ZERO(Z22); ZERO(Z23)
	TESTQ CX, CX
	JZ    tail6x4

loop6x4:
	STEP6X4(AFULL, BFULL)
	ADDQ $64, SI
	ADDQ $64, R8
	ADDQ $64, DI
	ADDQ $64, R9
	DECQ CX
	JNZ  loop6x4

tail6x4:
	MOVQ  mask+32(FP), AX
	TESTQ AX, AX
	JZ    reduce6x4
	KMOVQ AX, K1
	STEP6X4(AMASK, BMASK)

reduce6x4:
	MOVQ out+40(FP), BX
	MOVQ ldo+48(FP), R10
	SHLQ $2, R10
	LEAQ (BX)(R10*2), R11
	ADDQ R10, R11
	VMOVDQU32 reduceIdx<>(SB), Z29
	REDUCE4(Z0, Z1, Z2, Z3)
	VMOVDQU32 X25, (BX)
	REDUCE4(Z4, Z5, Z6, Z7)
	VMOVDQU32 X25, (BX)(R10*1)
	REDUCE4(Z8, Z9, Z10, Z11)
	VMOVDQU32 X25, (BX)(R10*2)
	REDUCE4(Z12, Z13, Z14, Z15)
	VMOVDQU32 X25, (R11)
	REDUCE4(Z16, Z17, Z18, Z19)
	VMOVDQU32 X25, (R11)(R10*1)
	REDUCE4(Z20, Z21, Z22, Z23)
	VMOVDQU32 X25, (R11)(R10*2)
	VZEROUPPER
	RET

// STEP6X1 runs 64 bytes of a 6×1 block: a rows as in STEP6X4, the b row at
// DI, the sum of a row i in Zi. The a bytes are the signed operand, so
// they are read straight from memory.
#define STEP6X1(LOADB) \
	LOADB((DI))                     \
	VPDPBUSD (SI), Z30, Z0          \
	VPDPBUSD (SI)(DX*1), Z30, Z1    \
	VPDPBUSD (SI)(DX*2), Z30, Z2    \
	VPDPBUSD (R8), Z30, Z3          \
	VPDPBUSD (R8)(DX*1), Z30, Z4    \
	VPDPBUSD (R8)(DX*2), Z30, Z5

#define STEP6X1MASK \
	BMASK((DI))                     \
	AMASK((SI), Z24)                \
	AMASK((SI)(DX*1), Z25)          \
	AMASK((SI)(DX*2), Z26)          \
	AMASK((R8), Z27)                \
	AMASK((R8)(DX*1), Z28)          \
	AMASK((R8)(DX*2), Z29)          \
	DP6(Z0, Z1, Z2, Z3, Z4, Z5)

// func vnni6x1(a, b *int8, stride, k int, mask uint64, out *int32, ldo int)
TEXT ·vnni6x1(SB), NOSPLIT, $0-56
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ stride+16(FP), DX
	MOVQ k+24(FP), CX
	LEAQ (SI)(DX*2), R8
	ADDQ DX, R8
	MOVL $0x80, AX
	VPBROADCASTB AX, Z31
	ZERO(Z0); ZERO(Z1); ZERO(Z2); ZERO(Z3); ZERO(Z4); ZERO(Z5)
	TESTQ CX, CX
	JZ    tail6x1

loop6x1:
	STEP6X1(BFULL)
	ADDQ $64, SI
	ADDQ $64, R8
	ADDQ $64, DI
	DECQ CX
	JNZ  loop6x1

tail6x1:
	MOVQ  mask+32(FP), AX
	TESTQ AX, AX
	JZ    reduce6x1
	KMOVQ AX, K1
	STEP6X1MASK

reduce6x1:
	MOVQ out+40(FP), BX
	MOVQ ldo+48(FP), R10
	SHLQ $2, R10
	LEAQ (BX)(R10*2), R11
	ADDQ R10, R11
	VMOVDQU32 reduceIdx<>(SB), Z29
	REDUCE4(Z0, Z1, Z2, Z3)
	VMOVD   X25, (BX)
	VPSHUFD $0x55, X25, X26
	VMOVD   X26, (BX)(R10*1)
	VPSHUFD $0xAA, X25, X26
	VMOVD   X26, (BX)(R10*2)
	VPSHUFD $0xFF, X25, X26
	VMOVD   X26, (R11)
	REDUCE4(Z4, Z5, Z4, Z5)
	VMOVD   X25, (R11)(R10*1)
	VPSHUFD $0x55, X25, X26
	VMOVD   X26, (R11)(R10*2)
	VZEROUPPER
	RET

// STEP1X8 runs 64 bytes of a 1×8 block: the a row at SI, b rows at DI,
// DI+DX, DI+2·DX, R9, R9+DX, R9+2·DX, R12, R12+DX; the sum of b row r in
// Zr. Eight rows stream at once, with eight independent accumulators, so
// that one query over the rows is bound by the memory, not by the latency
// of VPDPBUSD.
#define STEP1X8(LOADA, LOADB) \
	LOADA((SI), Z24)              \
	LOADB((DI))                   \
	VPDPBUSD Z24, Z30, Z0         \
	LOADB((DI)(DX*1))             \
	VPDPBUSD Z24, Z30, Z1         \
	LOADB((DI)(DX*2))             \
	VPDPBUSD Z24, Z30, Z2         \
	LOADB((R9))                   \
	VPDPBUSD Z24, Z30, Z3         \
	LOADB((R9)(DX*1))             \
	VPDPBUSD Z24, Z30, Z4         \
	LOADB((R9)(DX*2))             \
	VPDPBUSD Z24, Z30, Z5         \
	LOADB((R12))                  \
	VPDPBUSD Z24, Z30, Z6         \
	LOADB((R12)(DX*1))            \
	VPDPBUSD Z24, Z30, Z7

// func vnni1x8(a, b *int8, stride, k int, mask uint64, out *int32)
TEXT ·vnni1x8(SB), NOSPLIT, $0-48
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ stride+16(FP), DX
	MOVQ k+24(FP), CX
	LEAQ (DI)(DX*2), R9
	ADDQ DX, R9
	LEAQ (R9)(DX*2), R12
	ADDQ DX, R12
	MOVL $0x80, AX
	VPBROADCASTB AX, Z31
	ZERO(Z0); ZERO(Z1); ZERO(Z2); ZERO(Z3)
	ZERO(Z4); ZERO(Z5); ZERO(Z6); ZERO(Z7)
	TESTQ CX, CX
	JZ    tail1x8

loop1x8:
	STEP1X8(AFULL, BFULL)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R9
	ADDQ $64, R12
	DECQ CX
	JNZ  loop1x8

tail1x8:
	MOVQ  mask+32(FP), AX
	TESTQ AX, AX
	JZ    reduce1x8
	KMOVQ AX, K1
	STEP1X8(AMASK, BMASK)

reduce1x8:
	MOVQ out+40(FP), BX
	VMOVDQU32 reduceIdx<>(SB), Z29
	REDUCE4(Z0, Z1, Z2, Z3)
	VMOVDQU32 X25, (BX)
	REDUCE4(Z4, Z5, Z6, Z7)
	VMOVDQU32 X25, 16(BX)
	VZEROUPPER
	RET

// func vnni1x1(a, b *int8, k int, mask uint64) int32
TEXT ·vnni1x1(SB), NOSPLIT, $0-36
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ k+16(FP), CX
	MOVL $0x80, AX
	VPBROADCASTB AX, Z31
	ZERO(Z0)
	TESTQ CX, CX
	JZ    tail1x1

loop1x1:
	BFULL((DI))
	VPDPBUSD (SI), Z30, Z0
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1x1

tail1x1:
	MOVQ  mask+24(FP), AX
	TESTQ AX, AX
	JZ    reduce1x1
	KMOVQ AX, K1
	BMASK((DI))
	AMASK((SI), Z24)
	VPDPBUSD Z24, Z30, Z0

reduce1x1:
	VEXTRACTI64X4 $1, Z0, Y1
	VPADDD        Y1, Y0, Y0
	VEXTRACTI128  $1, Y0, X1
	VPADDD        X1, X0, X0
	VPSHUFD       $0x4E, X0, X1
	VPADDD        X1, X0, X0
	VPSHUFD       $0xB1, X0, X1
	VPADDD        X1, X0, X0
	VMOVD         X0, AX
	MOVL          AX, ret+32(FP)
	VZEROUPPER
	RET
