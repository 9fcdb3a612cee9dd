// Widening conversions of half-precision values to float32, bit for bit as
// linalg.F16Float32 and linalg.BF16Float32: exact, with a binary16 NaN
// coming back quiet and keeping its sign and payload.
//
// Compiled to PTX by `make ptx` (nvcc -ptx -arch=compute_80) or at run time
// by NVRTC, so it includes no headers.

typedef unsigned int u32;
typedef unsigned short u16;
typedef long long i64;

static __device__ __forceinline__ u32 f16_bits_to_f32(u32 h)
{
    const u32 sign = (h & 0x8000u) << 16;
    const u32 exp = (h >> 10) & 0x1fu;
    u32 frac = h & 0x3ffu;
    if (exp == 0x1fu) {
        if (frac == 0) {
            return sign | 0x7f800000u;
        }
        return sign | 0x7fc00000u | (frac << 13);
    }
    if (exp == 0) {
        if (frac == 0) {
            return sign;
        }
        // A subnormal: shift its leading 1 up to the implicit bit, lowering
        // the exponent by one per shift (113 = 127 - 15 + 1).
        u32 e = 113;
        while ((frac & 0x400u) == 0) {
            frac <<= 1;
            e--;
        }
        return sign | (e << 23) | ((frac & 0x3ffu) << 13);
    }
    return sign | ((exp + 112) << 23) | (frac << 13);
}

// f16_to_f32 sets dst[i] to the value of the binary16 bits src[i], i < n.
extern "C" __global__ void f16_to_f32(float* __restrict__ dst, const u16* __restrict__ src, i64 n)
{
    const i64 stride = (i64)blockDim.x * gridDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        dst[i] = __uint_as_float(f16_bits_to_f32(src[i]));
    }
}

// bf16_to_f32 sets dst[i] to the value of the bfloat16 bits src[i], i < n:
// the upper half of a float32.
extern "C" __global__ void bf16_to_f32(float* __restrict__ dst, const u16* __restrict__ src, i64 n)
{
    const i64 stride = (i64)blockDim.x * gridDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        dst[i] = __uint_as_float((u32)src[i] << 16);
    }
}
