// hostemu.h runs the CUDA C kernels of ../../kernels on the CPU, for tests
// on machines without a GPU: it is force-included (g++ -include) before
// each .cu file compiled as C++20. A block's threads are std::threads that
// meet at a std::barrier in __syncthreads (main.cpp); __shared__ variables
// become function statics, which is right because blocks run one after
// another.
// It checks the kernels' arithmetic and synchronisation logic, not their
// performance or CUDA-specific compilation.
#pragma once

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(n)

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

extern thread_local dim3 threadIdx;
extern dim3 blockIdx, blockDim, gridDim;

void __syncthreads(); // main.cpp

inline unsigned __umulhi(unsigned a, unsigned b)
{
    return (unsigned)(((unsigned long long)a * b) >> 32);
}

inline unsigned __float_as_uint(float f)
{
    unsigned u;
    __builtin_memcpy(&u, &f, 4);
    return u;
}

inline float __uint_as_float(unsigned u)
{
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
