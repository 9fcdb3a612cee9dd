// Seeded random projections, entry for entry and bit for bit those of
// gradients.Projection (DESIGN.md §4): the matrices are never stored, each
// entry is regenerated from Philox4x32-10 where it is used, and every output
// is a float64 sum over the inputs in increasing order, so results do not
// depend on the grid, the block size or the GPU.
//
// Compiled to PTX by `make ptx` (nvcc -ptx -arch=compute_80) or at run time
// by NVRTC, so it includes no headers.

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

// Philox4x32-10 (Salmon et al., SC 2011): counter c, key (k0, k1).
static __device__ __forceinline__ void philox4x32_10(u32 c[4], u32 k0, u32 k1)
{
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const u32 hi0 = __umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        const u32 hi1 = __umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        const u32 n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
}

// A block computes RAD_OUT consecutive outputs (one per thread, the 128 bits
// of one Philox block) for RAD_ROWS rows, walking the inputs in tiles of
// RAD_TILE: each thread generates the Philox words of one input of the tile
// and loads its values, then every thread adds the tile's inputs to its
// outputs in order.
#define RAD_OUT 128
#define RAD_TILE 128
#define RAD_ROWS 8

// rademacher sets out[r*k + j] = scale · Σ_i P[j][i]·x[r*d + i] for rows
// r < rows and outputs j < k, with P[j][i] = +1 when bit j mod 128 of
// Philox((i, i>>32, j/128, stream), key) is 0 and −1 when it is 1.
// Launch: block (RAD_OUT), grid (ceil(k/RAD_OUT), any number of row groups).
template <typename T>
static __device__ __forceinline__ void rademacher(double* __restrict__ out, const T* __restrict__ x,
    i64 rows, i64 d, i64 k, u32 key0, u32 key1, u32 stream, double scale)
{
    __shared__ u32 words[RAD_TILE][4];
    __shared__ double xs[RAD_ROWS][RAD_TILE];
    const int t = threadIdx.x;
    const i64 jb = blockIdx.x;
    const i64 j = jb * RAD_OUT + t;
    const int w = t >> 5, bit = t & 31;
    const i64 groups = (rows + RAD_ROWS - 1) / RAD_ROWS;
    for (i64 g = blockIdx.y; g < groups; g += gridDim.y) {
        const i64 r0 = g * RAD_ROWS;
        double acc[RAD_ROWS];
        for (int r = 0; r < RAD_ROWS; r++) {
            acc[r] = 0.0;
        }
        for (i64 i0 = 0; i0 < d; i0 += RAD_TILE) {
            const i64 i = i0 + t;
            if (i < d) {
                u32 c[4] = { (u32)i, (u32)((u64)i >> 32), (u32)jb, stream };
                philox4x32_10(c, key0, key1);
                words[t][0] = c[0];
                words[t][1] = c[1];
                words[t][2] = c[2];
                words[t][3] = c[3];
            }
            for (int r = 0; r < RAD_ROWS; r++) {
                const i64 row = r0 + r;
                xs[r][t] = (row < rows && i < d) ? (double)x[row * d + i] : 0.0;
            }
            __syncthreads();
            const int n = d - i0 < RAD_TILE ? (int)(d - i0) : RAD_TILE;
            for (int ii = 0; ii < n; ii++) {
                const bool neg = (words[ii][w] >> bit) & 1u;
                for (int r = 0; r < RAD_ROWS; r++) {
                    const double v = xs[r][ii];
                    acc[r] += neg ? -v : v;
                }
            }
            __syncthreads();
        }
        if (j < k) {
            for (int r = 0; r < RAD_ROWS; r++) {
                const i64 row = r0 + r;
                if (row < rows) {
                    out[row * k + j] = acc[r] * scale;
                }
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(RAD_OUT) rademacher_f64(double* __restrict__ out, const double* __restrict__ x,
    i64 rows, i64 d, i64 k, u32 key0, u32 key1, u32 stream, double scale)
{
    rademacher<double>(out, x, rows, d, k, key0, key1, stream, scale);
}

// rademacher_f32 is rademacher_f64 for float32 inputs, widened exactly.
extern "C" __global__ void __launch_bounds__(RAD_OUT) rademacher_f32(double* __restrict__ out, const float* __restrict__ x,
    i64 rows, i64 d, i64 k, u32 key0, u32 key1, u32 stream, double scale)
{
    rademacher<float>(out, x, rows, d, k, key0, key1, stream, scale);
}

// sjlt_hash sets, for each input i < d, its SJLT bucket
// (words[0]·k) >> 32 and neg[i] = words[1] & 1 (1 for a −1 entry), with
// words = Philox((i, i>>32, 0, stream), key).
extern "C" __global__ void sjlt_hash(int* __restrict__ bucket, unsigned char* __restrict__ neg,
    i64 d, i64 k, u32 key0, u32 key1, u32 stream)
{
    const i64 step = (i64)blockDim.x * gridDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < d; i += step) {
        u32 c[4] = { (u32)i, (u32)((u64)i >> 32), 0u, stream };
        philox4x32_10(c, key0, key1);
        bucket[i] = (int)(((u64)c[0] * (u64)k) >> 32);
        neg[i] = (unsigned char)(c[1] & 1u);
    }
}

// sjlt_gather_f64 sets out[r*k + b] = Σ ±x[r*d + i] over the inputs i of
// bucket b, in increasing order: order[start[b] .. start[b+1]) lists them
// (the host sorts the buckets of sjlt_hash stably), neg[i] their signs.
// One thread per (bucket, row); grid (ceil(k/block), any number of rows).
extern "C" __global__ void sjlt_gather_f64(double* __restrict__ out, const double* __restrict__ x,
    const i64* __restrict__ order, const i64* __restrict__ start, const unsigned char* __restrict__ neg,
    i64 rows, i64 d, i64 k)
{
    const i64 b = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= k) {
        return;
    }
    const i64 p0 = start[b], p1 = start[b + 1];
    for (i64 r = blockIdx.y; r < rows; r += gridDim.y) {
        const double* xr = x + r * d;
        double acc = 0.0;
        for (i64 p = p0; p < p1; p++) {
            const i64 i = order[p];
            const double v = xr[i];
            acc += neg[i] ? -v : v;
        }
        out[r * k + b] = acc;
    }
}
