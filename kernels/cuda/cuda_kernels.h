/* cuda_kernels.h: the plain-C entry points of the hand-written CUDA kernels
 * (kernels/cuda/<name>.cu), usable from C11. Each call launches on `stream`
 * (a cudaStream_t; NULL is the default stream) and returns at once on a GPU;
 * under the CPU executor (onnxtrain_cudaemu) the work is done when it returns.
 * Pointers are device memory: a GPU's, or cpu-guard buffers under the
 * executor. Sizes may be anything >= 0 (0: nothing is launched). See docs/CUDA.md. */
#ifndef OT_CUDA_KERNELS_H
#define OT_CUDA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- upsample.cu: nearest 2x (Resize with an exact integer factor 2 on H and W) ---- */
/* y (nc, 2h, 2w) = x (nc, h, w) repeated 2x2. */
void ot_cuda_upsample2x_fwd(float *y, const float *x, int64_t nc, int64_t h, int64_t w, void *stream);
/* dx (nc, h, w) = the sum of the four gradients in dy (nc, 2h, 2w) that each
 * input element produced, as (dy[2i][2j] + dy[2i][2j+1]) + (dy[2i+1][2j] +
 * dy[2i+1][2j+1]) (the CPU Resize backward's order). Writes dx (no accumulation). */
void ot_cuda_upsample2x_bwd(float *dx, const float *dy, int64_t nc, int64_t h, int64_t w, void *stream);

/* ---- emu_selftest.cu: the executor's self-tests (tests/test_cudaemu_exec.c) ---- */
/* y[i] = 2 * x[i] + i, grid-stride loop with a small grid. */
void ot_cuda_selftest_gridstride(float *y, const float *x, int64_t n, void *stream);
/* out[(z * ny + y) * nx + x] = x + 1000 * y + 1000000 * z, 3D grid of 3D blocks. */
void ot_cuda_selftest_index3d(int *out, int nx, int ny, int nz, void *stream);
/* Per-block sums of x (blocks of `block` threads, block a power of two <= 1024)
 * by a tree in shared memory: static (dynamic = 0, block must be 256) or
 * dynamic shared memory. partial gets ceil(n / block) sums. */
void ot_cuda_selftest_block_sum(float *partial, const float *x, int64_t n, int block, int dynamic, void *stream);
/* *sum += every x (atomicAdd from many blocks); *count += n (int atomicAdd);
 * *mx = max(*mx, every ix) (atomicMax). */
void ot_cuda_selftest_atomics(double *sum, int *count, int *mx, const float *x, const int *ix, int64_t n, void *stream);
/* Warp sums of x (32 consecutive elements per warp, zero past n; block a
 * multiple of 32): down[k] (float) and down_d[k] (double) by __shfl_down_sync,
 * as lane 0 holds it; xr[i] by __shfl_xor_sync (every lane gets the warp's sum,
 * written per element i < n); lanes[k] = the number of elements < n in warp k,
 * an int __shfl_xor_sync sum. */
void ot_cuda_selftest_warp_sum(float *down, double *down_d, float *xr, int *lanes, const float *x, int64_t n, int block,
                               void *stream);

#ifdef __cplusplus
}
#endif

#endif
