// Row-wise top-k of a float32 score matrix, ordered as influence.TopK
// orders entries: by score (highest first, or lowest first), ties broken by
// the lower index; NaNs rank after every number. The result does not depend
// on the launch shape: each row is reduced to the exact k-th best key by a
// radix select, and the k entries at or above it are sorted.
//
// Compiled to PTX by `make ptx` (nvcc -ptx -arch=compute_80) or at run time
// by NVRTC, so it includes no headers.

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define TOPK_MAX 1024

// topk_key maps (score, global index g) to a 64-bit key that is larger for
// a better entry: the high word orders scores (−0 as +0, NaN lowest), the
// low word is 0xFFFFFFFF − g, so a lower index wins a tie and no two
// entries share a key. g < 0xFFFFFFFF.
static __device__ __forceinline__ u64 topk_key(float v, u64 g, int lowest)
{
    u32 s = 0;
    if (v == v) {
        const u32 u = v == 0.0f ? 0u : __float_as_uint(v);
        s = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
        if (lowest) {
            s = ~s;
        }
    }
    return ((u64)s << 32) | (u64)(0xFFFFFFFFu - (u32)g);
}

// topk_f32 writes, for each row r < rows of scores (row stride ld, cols
// values), the k best entries, best first: their global indices offset + i
// to out_idx[r*k ...] and their scores to out_val[r*k ...]. 1 ≤ k ≤
// min(cols, TOPK_MAX). One block per row (any block size; 1024 is best),
// any number of blocks.
extern "C" __global__ void __launch_bounds__(1024) topk_f32(i64* __restrict__ out_idx, float* __restrict__ out_val,
    const float* __restrict__ scores, i64 rows, i64 cols, i64 ld, int k, int lowest, i64 offset)
{
    __shared__ u32 hist[256];
    __shared__ u64 sel[TOPK_MAX];
    __shared__ u64 s_prefix;
    __shared__ int s_want;
    __shared__ u32 s_count;
    const int t = threadIdx.x, nt = blockDim.x;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* x = scores + row * ld;

        // Radix select, 8 bits at a time from the top: after each pass
        // prefix holds the leading bits of the k-th best key, and want
        // how many of the keys with that prefix are still to be taken.
        u64 prefix = 0, mask = 0;
        int want = k;
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int b = t; b < 256; b += nt) {
                hist[b] = 0;
            }
            __syncthreads();
            for (i64 i = t; i < cols; i += nt) {
                const u64 key = topk_key(x[i], (u64)(offset + i), lowest);
                if ((key & mask) == prefix) {
                    atomicAdd(&hist[(u32)(key >> shift) & 255u], 1u);
                }
            }
            __syncthreads();
            if (t == 0) {
                u32 above = 0;
                int digit = 255;
                for (; digit > 0; digit--) {
                    if (above + hist[digit] >= (u32)want) {
                        break;
                    }
                    above += hist[digit];
                }
                s_prefix = prefix | ((u64)digit << shift);
                s_want = want - (int)above;
            }
            __syncthreads();
            prefix = s_prefix;
            want = s_want;
            mask |= (u64)255 << shift;
        }

        // Keys are distinct, so exactly k are at or above the k-th best.
        if (t == 0) {
            s_count = 0;
        }
        __syncthreads();
        for (i64 i = t; i < cols; i += nt) {
            const u64 key = topk_key(x[i], (u64)(offset + i), lowest);
            if (key >= prefix) {
                sel[atomicAdd(&s_count, 1u)] = key;
            }
        }
        __syncthreads();

        // Bitonic sort, descending, padded with zero keys (no entry has
        // key 0, since g < 0xFFFFFFFF).
        int n2 = 1;
        while (n2 < k) {
            n2 <<= 1;
        }
        for (int p = k + t; p < n2; p += nt) {
            sel[p] = 0;
        }
        __syncthreads();
        for (int size = 2; size <= n2; size <<= 1) {
            for (int stride = size >> 1; stride > 0; stride >>= 1) {
                for (int p = t; p < n2; p += nt) {
                    const int q = p ^ stride;
                    if (q > p) {
                        const u64 a = sel[p], b = sel[q];
                        const bool desc = (p & size) == 0;
                        if (desc ? a < b : a > b) {
                            sel[p] = b;
                            sel[q] = a;
                        }
                    }
                }
                __syncthreads();
            }
        }
        for (int p = t; p < k; p += nt) {
            const i64 g = (i64)(0xFFFFFFFFu - (u32)sel[p]);
            out_idx[row * k + p] = g;
            out_val[row * k + p] = x[g - offset];
        }
        __syncthreads();
    }
}
