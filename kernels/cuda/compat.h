/* compat.h: the one header every kernels/cuda/<name>.cu starts with. The same
 * kernel source builds two ways (docs/CUDA.md):
 *
 *   nvcc (__CUDACC__)     real CUDA for sm_86 / sm_90; OT_LAUNCH is <<<>>> plus
 *                         a launch check.
 *   host g++ (OT_CUDA_EMU) the CPU executor (kernels/cuda/emu.cpp): the .cu is
 *                         compiled as C++17, the whole grid runs on the CPU
 *                         before OT_LAUNCH returns (blocks over OpenMP threads,
 *                         the threads of a block as ucontext fibers that switch
 *                         at __syncthreads and at the warp intrinsics), inside
 *                         ot_be_enter/ot_be_leave of the cpu-guard backend.
 *
 * Kernel rules: launch only through OT_LAUNCH (never a bare <<<>>>); dynamic
 * shared memory only through OT_DYNAMIC_SHARED; only the names below from the
 * CUDA device API (anything else must be added here for both builds). */
#ifndef OT_CUDA_COMPAT_H
#define OT_CUDA_COMPAT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
/* ======================= nvcc ======================= */
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>

/* A failed launch (bad configuration, too much shared memory, no device) is a
 * programmer error or a broken machine: print the kernel and the call site,
 * then abort. */
static inline void ot_cuda_launch_check(cudaError_t e, const char *kernel, const char *file, int line) {
    if (e != cudaSuccess) {
        fprintf(stderr, "onnx-train: %s:%d: launch of %s failed: %s\n", file, line, kernel, cudaGetErrorString(e));
        abort();
    }
}

#define OT_LAUNCH(kernel, grid, block, shmem_bytes, stream, ...)                                             \
    do {                                                                                                   \
        kernel<<<(grid), (block), (shmem_bytes), (cudaStream_t)(stream)>>>(__VA_ARGS__);                   \
        ot_cuda_launch_check(cudaGetLastError(), #kernel, __FILE__, __LINE__);                             \
    } while (0)

/* T *name: the launch's dynamic shared memory (16-byte aligned). */
#define OT_DYNAMIC_SHARED(T, name)                                                                         \
    extern __shared__ __align__(16) unsigned char ot_dynamic_smem_[];                                      \
    T *name = reinterpret_cast<T *>(ot_dynamic_smem_)

#elif defined(OT_CUDA_EMU)
/* ======================= the CPU executor ======================= */
#include <math.h>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
/* __restrict__ is a g++ keyword already. */
/* Per block: the threads of one block run on one OS thread, one block at a
 * time, so thread-local storage is exactly the block's shared memory. */
#define __shared__ static thread_local
#define warpSize 32

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
typedef dim3 uint3;

struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }

typedef struct ot_emu_stream_ *cudaStream_t;   /* opaque; the executor runs everything in order */

/* The executing fiber's coordinates (set by the executor before it resumes a fiber). */
extern thread_local dim3 ot_emu_thread_idx, ot_emu_block_idx, ot_emu_block_dim, ot_emu_grid_dim;
#define threadIdx ot_emu_thread_idx
#define blockIdx ot_emu_block_idx
#define blockDim ot_emu_block_dim
#define gridDim ot_emu_grid_dim

/* ---- block and warp synchronisation (emu.cpp) ---- */
void ot_emu_syncthreads(void);
void ot_emu_syncwarp(unsigned mask);
/* Warp exchange: every lane of mask publishes v (64 bits); returns the value
 * published by lane src (0..31) of the caller's warp (its own v when that lane
 * is not in mask, does not exist or has exited). */
uint64_t ot_emu_shfl(unsigned mask, uint64_t v, int src);
int ot_emu_lane(void);
unsigned char *ot_emu_dynamic_shared(void);
#define __syncthreads() ot_emu_syncthreads()
static inline void __syncwarp(unsigned mask = 0xffffffffu) { ot_emu_syncwarp(mask); }

#define OT_DYNAMIC_SHARED(T, name) T *name = reinterpret_cast<T *>(ot_emu_dynamic_shared())

template <typename T> static inline uint64_t ot_emu_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 64 bits");
    uint64_t b = 0;
    __builtin_memcpy(&b, &v, sizeof v);
    return b;
}
template <typename T> static inline T ot_emu_from_bits(uint64_t b) {
    T v;
    __builtin_memcpy(&v, &b, sizeof v);
    return v;
}
/* CUDA's source lanes: down: lane + delta within the lane's width segment
 * (itself when that leaves the segment); xor: lane ^ mask (itself when that
 * leaves the segment); idx: segment base + src % width. */
template <typename T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
    int lane = ot_emu_lane(), seg = lane % width, src = seg + (int)delta < width ? lane + (int)delta : lane;
    return ot_emu_from_bits<T>(ot_emu_shfl(mask, ot_emu_bits(v), src));
}
template <typename T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
    int lane = ot_emu_lane(), seg = lane % width, src = seg - (int)delta >= 0 ? lane - (int)delta : lane;
    return ot_emu_from_bits<T>(ot_emu_shfl(mask, ot_emu_bits(v), src));
}
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
    int lane = ot_emu_lane(), base = lane - lane % width, src = lane ^ lane_mask;
    if (src < base || src >= base + width) src = lane;
    return ot_emu_from_bits<T>(ot_emu_shfl(mask, ot_emu_bits(v), src));
}
template <typename T> static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = warpSize) {
    int lane = ot_emu_lane(), base = lane - lane % width;
    return ot_emu_from_bits<T>(ot_emu_shfl(mask, ot_emu_bits(v), base + ((src_lane % width) + width) % width));
}

/* ---- atomics: blocks run concurrently on OpenMP threads, so these are real
 * atomic read-modify-writes; each returns the old value ---- */
template <typename T> static inline T ot_emu_atomic_add_int(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline int atomicAdd(int *p, int v) { return ot_emu_atomic_add_int(p, v); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return ot_emu_atomic_add_int(p, v); }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) { return ot_emu_atomic_add_int(p, v); }
template <typename F> static inline F ot_emu_atomic_add_fp(F *p, F v) {
    F old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    for (;;) {
        F sum = old + v;
        if (__atomic_compare_exchange(p, &old, &sum, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
    }
}
static inline float atomicAdd(float *p, float v) { return ot_emu_atomic_add_fp(p, v); }
static inline double atomicAdd(double *p, double v) { return ot_emu_atomic_add_fp(p, v); }
static inline int atomicMax(int *p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}

/* ---- a few fast-math intrinsics (the host libm's full-precision versions;
 * glibc itself declares __expf and __logf) ---- */
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

/* ---- launching ---- */
typedef void (*ot_emu_body)(void *ctx);
/* Run body(ctx) for every thread of the grid; returns when all are done. */
void ot_emu_launch(const char *kernel, const char *file, int line, dim3 grid, dim3 block, size_t shmem_bytes,
                   cudaStream_t stream, ot_emu_body body, void *ctx);
/* While a graph is being captured (core/backend.h ot_emu_capturing): the launch recorded instead, its
 * arguments in ctx (a heap copy that drop frees with the graph), run by the graph's launch. */
extern "C" bool ot_emu_capturing(void);
void ot_emu_record_launch(const char *kernel, const char *file, int line, dim3 grid, dim3 block, size_t shmem_bytes,
                          ot_emu_body body, void *ctx, void (*drop)(void *));

/* The arguments are converted to the kernel's parameter types once, at the
 * launch (as CUDA copies them), and every thread calls the kernel with them. */
template <typename... P, typename... A>
static inline void ot_emu_launch_kernel(const char *kernel, const char *file, int line, dim3 grid, dim3 block,
                                        size_t shmem_bytes, cudaStream_t stream, void (*fn)(P...), A &&...args) {
    static_assert(sizeof...(P) == sizeof...(A), "OT_LAUNCH: wrong number of kernel arguments");
    struct call {
        void (*fn)(P...);
        std::tuple<typename std::decay<P>::type...> args;
        static void run(void *c) {
            call *k = static_cast<call *>(c);
            std::apply(k->fn, k->args);
        }
        static void drop(void *c) { delete static_cast<call *>(c); }
    } c{fn, std::tuple<typename std::decay<P>::type...>(std::forward<A>(args)...)};
    if (ot_emu_capturing()) { /* a CUDA graph's kernel node: the arguments as they are now */
        ot_emu_record_launch(kernel, file, line, grid, block, shmem_bytes, &call::run, new call(c), &call::drop);
        return;
    }
    ot_emu_launch(kernel, file, line, grid, block, shmem_bytes, stream, &call::run, &c);
}

#define OT_LAUNCH(kernel, grid, block, shmem_bytes, stream, ...)                                             \
    ot_emu_launch_kernel(#kernel, __FILE__, __LINE__, dim3(grid), dim3(block), (size_t)(shmem_bytes),         \
                         (cudaStream_t)(stream), kernel, __VA_ARGS__)

/* Rounded arithmetic (nvcc never fuses these into FMAs) and bit casts: on the
 * host, plain IEEE operations round the same way (baseline x86-64 has no FMA
 * to contract into). */
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline float __uint_as_float(unsigned b) { float f; __builtin_memcpy(&f, &b, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned b; __builtin_memcpy(&b, &f, 4); return b; }

/* ---- half precision (--amp): the executor's own __half and __nv_bfloat16, a
 * 16-bit pattern each, with the conversions the kernels use, rounding as
 * CUDA's are documented to: round to nearest, ties to even; a float beyond the
 * largest half (65504) by half a unit or more becomes infinity; NaN becomes
 * the canonical NaN (0x7fff; to float 0x7fffffff for a half NaN). Checked
 * against the definitions and, where the CUDA headers exist, against
 * cuda_fp16.h's and cuda_bf16.h's own host versions (tests/test_cudaemu_half.c). ---- */
struct __half { unsigned short x; };
struct __nv_bfloat16 { unsigned short x; };
static inline __half __float2half_rn(float f) {
    const unsigned b = __float_as_uint(f), sign = (b >> 16) & 0x8000u, ax = b & 0x7fffffffu;
    unsigned q;
    if (ax > 0x7f800000u) q = 0x7fffu;                 /* NaN */
    else if (ax >= 0x477ff000u) q = sign | 0x7c00u;    /* >= 65520: infinity */
    else if (ax < 0x38800000u) {                       /* below 2^-14: a subnormal half or zero */
        if (ax <= 0x33000000u) q = sign;               /* <= 2^-25 (the tie goes to even 0) */
        else {
            const unsigned e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, sh = 126u - e; /* f * 2^24 = m >> sh */
            const unsigned r = m & ((1u << sh) - 1u), tie = 1u << (sh - 1u);
            q = m >> sh;
            if (r > tie || (r == tie && (q & 1u))) q++;
            q |= sign;
        }
    } else {                                           /* normal: rebias the exponent, round 13 bits off */
        const unsigned r = ax & 0x1fffu;
        q = (ax - 0x38000000u) >> 13;
        if (r > 0x1000u || (r == 0x1000u && (q & 1u))) q++; /* a carry into the exponent is right */
        q |= sign;
    }
    __half h;
    h.x = (unsigned short)q;
    return h;
}
static inline float __half2float(__half h) {
    const unsigned sign = (unsigned)(h.x & 0x8000u) << 16, e = (h.x >> 10) & 0x1fu, m = h.x & 0x3ffu;
    if (e == 0x1fu) return m ? __uint_as_float(0x7fffffffu) : __uint_as_float(sign | 0x7f800000u);
    if (e == 0) { /* subnormal: m * 2^-24, exact in float */
        const float v = (float)m * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    const unsigned b = __float_as_uint(f);
    __nv_bfloat16 r;
    r.x = (b & 0x7fffffffu) > 0x7f800000u ? (unsigned short)0x7fffu
                                           : (unsigned short)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
    return r;
}
static inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.x << 16); }

#else
#error "kernels/cuda/compat.h: compile with nvcc, or with -DOT_CUDA_EMU for the CPU executor"
#endif

/* A kernel file's helper functions: inlined device code under nvcc, plain
 * static functions under the executor. */
#if defined(__CUDACC__)
#define OT_DEVFN static __device__ __forceinline__
#else
#define OT_DEVFN static inline
#endif

#endif
