// main.cpp drives the emulated kernels for cuda's TestKernelSourcesEmulated:
// argv names a kernel and its scalar parameters, the inputs arrive on stdin
// and the outputs leave on stdout, all as raw little-endian arrays.
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;
typedef long long i64;

thread_local dim3 threadIdx;
dim3 blockIdx, blockDim, gridDim;
static std::barrier<>* emu_barrier;

void __syncthreads() { emu_barrier->arrive_and_wait(); }

// emu_launch runs f as a grid of blocks, one block at a time.
template <class F>
static void emu_launch(dim3 grid, dim3 block, F f)
{
    gridDim = grid;
    blockDim = block;
    const unsigned n = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx = dim3 { bx, by, bz };
                std::barrier<> bar(n);
                emu_barrier = &bar;
                std::vector<std::thread> ts;
                for (unsigned t = 0; t < n; t++) {
                    ts.emplace_back([&, t] {
                        threadIdx = dim3 { t % block.x, t / block.x % block.y, t / (block.x * block.y) };
                        f();
                    });
                }
                for (auto& th : ts)
                    th.join();
            }
}

extern "C" {
void f16_to_f32(float*, const u16*, i64);
void bf16_to_f32(float*, const u16*, i64);
void rademacher_f64(double*, const double*, i64, i64, i64, u32, u32, u32, double);
void rademacher_f32(double*, const float*, i64, i64, i64, u32, u32, u32, double);
void sjlt_hash(int*, unsigned char*, i64, i64, u32, u32, u32);
void sjlt_gather_f64(double*, const double*, const i64*, const i64*, const unsigned char*, i64, i64, i64);
void ekfac_scale_f64(double*, const double*, double, i64, i64);
void ekfac_scale_f32(float*, const double*, double, i64, i64);
void topk_f32(i64*, float*, const float*, i64, i64, i64, int, int, i64);
}

template <class T>
static std::vector<T> in(size_t n)
{
    std::vector<T> v(n);
    if (n && fread(v.data(), sizeof(T), n, stdin) != n) {
        fprintf(stderr, "short input\n");
        exit(2);
    }
    return v;
}

template <class T>
static void out(const std::vector<T>& v)
{
    fwrite(v.data(), sizeof(T), v.size(), stdout);
}

static i64 I(char** a, int i) { return strtoll(a[i], nullptr, 0); }
static u64 U(char** a, int i) { return strtoull(a[i], nullptr, 0); }
static double D(char** a, int i)
{
    u64 b = U(a, i);
    double d;
    memcpy(&d, &b, 8);
    return d;
}

int main(int argc, char** argv)
{
    if (argc < 2) {
        return 2;
    }
    std::string k = argv[1];
    if (k == "f16" || k == "bf16") { // n grid block
        i64 n = I(argv, 2);
        auto src = in<u16>(n);
        std::vector<float> dst(n);
        emu_launch(dim3 { (unsigned)I(argv, 3) }, dim3 { (unsigned)I(argv, 4) }, [&] {
            (k == "f16" ? f16_to_f32 : bf16_to_f32)(dst.data(), src.data(), n);
        });
        out(dst);
    } else if (k == "rad64" || k == "rad32") { // rows d k key0 key1 stream scalebits gridY
        i64 rows = I(argv, 2), d = I(argv, 3), kk = I(argv, 4);
        u32 k0 = U(argv, 5), k1 = U(argv, 6), st = U(argv, 7);
        double scale = D(argv, 8);
        dim3 grid { (unsigned)((kk + 127) / 128), (unsigned)I(argv, 9) };
        std::vector<double> o(rows * kk);
        if (k == "rad64") {
            auto x = in<double>(rows * d);
            emu_launch(grid, dim3 { 128 }, [&] { rademacher_f64(o.data(), x.data(), rows, d, kk, k0, k1, st, scale); });
        } else {
            auto x = in<float>(rows * d);
            emu_launch(grid, dim3 { 128 }, [&] { rademacher_f32(o.data(), x.data(), rows, d, kk, k0, k1, st, scale); });
        }
        out(o);
    } else if (k == "sjlthash") { // d k key0 key1 stream
        i64 d = I(argv, 2), kk = I(argv, 3);
        std::vector<int> b(d);
        std::vector<unsigned char> neg(d);
        emu_launch(dim3 { 2 }, dim3 { 32 }, [&] { sjlt_hash(b.data(), neg.data(), d, kk, U(argv, 4), U(argv, 5), U(argv, 6)); });
        out(b);
        out(neg);
    } else if (k == "sjltgather") { // rows d k blockX gridY
        i64 rows = I(argv, 2), d = I(argv, 3), kk = I(argv, 4);
        unsigned bx = I(argv, 5);
        auto x = in<double>(rows * d);
        auto order = in<i64>(d);
        auto start = in<i64>(kk + 1);
        auto neg = in<unsigned char>(d);
        std::vector<double> o(rows * kk);
        emu_launch(dim3 { (unsigned)((kk + bx - 1) / bx), (unsigned)I(argv, 6) }, dim3 { bx }, [&] {
            sjlt_gather_f64(o.data(), x.data(), order.data(), start.data(), neg.data(), rows, d, kk);
        });
        out(o);
    } else if (k == "ekfac64" || k == "ekfac32") { // n d deltabits
        i64 n = I(argv, 2), d = I(argv, 3);
        double delta = D(argv, 4);
        auto lambda = in<double>(d);
        if (k == "ekfac64") {
            auto x = in<double>(n * d);
            emu_launch(dim3 { 3 }, dim3 { 16 }, [&] { ekfac_scale_f64(x.data(), lambda.data(), delta, n, d); });
            out(x);
        } else {
            auto x = in<float>(n * d);
            emu_launch(dim3 { 3 }, dim3 { 16 }, [&] { ekfac_scale_f32(x.data(), lambda.data(), delta, n, d); });
            out(x);
        }
    } else if (k == "topk") { // rows cols ld k lowest offset grid block
        i64 rows = I(argv, 2), cols = I(argv, 3), ld = I(argv, 4);
        int kk = I(argv, 5), low = I(argv, 6);
        i64 off = I(argv, 7);
        auto s = in<float>(rows * ld);
        std::vector<i64> idx(rows * kk);
        std::vector<float> val(rows * kk);
        emu_launch(dim3 { (unsigned)I(argv, 8) }, dim3 { (unsigned)I(argv, 9) }, [&] {
            topk_f32(idx.data(), val.data(), s.data(), rows, cols, ld, kk, low, off);
        });
        out(idx);
        out(val);
    } else {
        fprintf(stderr, "unknown kernel %s\n", k.c_str());
        return 2;
    }
    return 0;
}
