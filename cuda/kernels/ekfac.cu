// The middle step of EK-FAC preconditioning, P(G) = Q_S [(Q_Sᵀ G Q_A) ⊘ (Λ + δ)] Q_Aᵀ:
// scaling the rotated gradients element by element by 1/(Λ + δ), the
// reciprocal taken in float64 as ekfac.Precondition does. The rotations are
// GEMMs (cuBLAS). The host checks Λ + δ > 0 beforehand, naming the entry.
//
// Compiled to PTX by `make ptx` (nvcc -ptx -arch=compute_80) or at run time
// by NVRTC, so it includes no headers.

typedef long long i64;

// x is n rows of d values (row-major); lambda has d values.
template <typename T>
static __device__ __forceinline__ void ekfac_scale(T* __restrict__ x, const double* __restrict__ lambda, double delta, i64 n, i64 d)
{
    const i64 total = n * d;
    const i64 step = (i64)blockDim.x * gridDim.x;
    for (i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += step) {
        const double inv = 1.0 / (lambda[idx % d] + delta);
        x[idx] = (T)((double)x[idx] * inv);
    }
}

extern "C" __global__ void ekfac_scale_f64(double* __restrict__ x, const double* __restrict__ lambda, double delta, i64 n, i64 d)
{
    ekfac_scale<double>(x, lambda, delta, n, d);
}

// ekfac_scale_f32 scales float32 values in float64 and rounds the result
// once.
extern "C" __global__ void ekfac_scale_f32(float* __restrict__ x, const double* __restrict__ lambda, double delta, i64 n, i64 d)
{
    ekfac_scale<float>(x, lambda, delta, n, d);
}
