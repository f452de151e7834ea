#include "compat.h"
/* emu_selftest.cu: small kernels that exercise the CPU executor's features
 * (tests/test_cudaemu_exec.c checks them against plain C): grid-stride loops,
 * 3D indices, block reductions in static and dynamic shared memory, atomics,
 * warp shuffles. Built by nvcc too, so they are also valid CUDA. */
#include "cuda_kernels.h"

__global__ void st_gridstride(float *__restrict__ y, const float *__restrict__ x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = 2.0f * x[i] + (float)i;
}

extern "C" void ot_cuda_selftest_gridstride(float *y, const float *x, int64_t n, void *stream) {
    if (n <= 0) return;
    OT_LAUNCH(st_gridstride, 3, 64, 0, stream, y, x, n);   /* far fewer threads than n: the loop strides */
}

__global__ void st_index3d(int *out, int nx, int ny, int nz) {
    int x = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    int y = (int)(blockIdx.y * blockDim.y + threadIdx.y);
    int z = (int)(blockIdx.z * blockDim.z + threadIdx.z);
    if (x < nx && y < ny && z < nz) out[((int64_t)z * ny + y) * nx + x] = x + 1000 * y + 1000000 * z;
}

extern "C" void ot_cuda_selftest_index3d(int *out, int nx, int ny, int nz, void *stream) {
    if (nx <= 0 || ny <= 0 || nz <= 0) return;
    dim3 block(8, 4, 2);
    dim3 grid((unsigned)(nx + 7) / 8, (unsigned)(ny + 3) / 4, (unsigned)(nz + 1) / 2);
    OT_LAUNCH(st_index3d, grid, block, 0, stream, out, nx, ny, nz);
}

/* Tree reduction of one block's elements in shared memory s (blockDim.x floats). */
__device__ __forceinline__ float st_tree(float *s, float v) {
    unsigned t = threadIdx.x;
    s[t] = v;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) s[t] += s[t + half];
        __syncthreads();
    }
    return s[0];
}

__global__ void st_block_sum_static(float *partial, const float *x, int64_t n) {
    __shared__ float s[256];
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    float r = st_tree(s, i < n ? x[i] : 0.0f);
    if (threadIdx.x == 0) partial[blockIdx.x] = r;
}

__global__ void st_block_sum_dynamic(float *partial, const float *x, int64_t n) {
    OT_DYNAMIC_SHARED(float, s);
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    float r = st_tree(s, i < n ? x[i] : 0.0f);
    if (threadIdx.x == 0) partial[blockIdx.x] = r;
}

extern "C" void ot_cuda_selftest_block_sum(float *partial, const float *x, int64_t n, int block, int dynamic, void *stream) {
    if (n <= 0) return;
    unsigned blocks = (unsigned)((n + block - 1) / block);
    if (dynamic)
        OT_LAUNCH(st_block_sum_dynamic, blocks, block, (size_t)block * sizeof(float), stream, partial, x, n);
    else
        OT_LAUNCH(st_block_sum_static, blocks, 256, 0, stream, partial, x, n);
}

__global__ void st_atomics(double *sum, int *count, int *mx, const float *x, const int *ix, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(sum, (double)x[i]);
    atomicAdd(count, 1);
    atomicMax(mx, ix[i]);
}

extern "C" void ot_cuda_selftest_atomics(double *sum, int *count, int *mx, const float *x, const int *ix, int64_t n,
                                         void *stream) {
    if (n <= 0) return;
    OT_LAUNCH(st_atomics, (unsigned)((n + 127) / 128), 128, 0, stream, sum, count, mx, x, ix, n);
}

__global__ void st_warp_sum(float *down, double *down_d, float *xr, int *lanes, const float *x, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    float a = v, b = v;
    double d = (double)v;
    int c = i < n ? 1 : 0;
    for (int off = 16; off > 0; off /= 2) {
        a += __shfl_down_sync(0xffffffffu, a, off);
        d += __shfl_down_sync(0xffffffffu, d, off);
        b += __shfl_xor_sync(0xffffffffu, b, off);
        c += __shfl_xor_sync(0xffffffffu, c, off);
    }
    int64_t k = i / 32;
    if (threadIdx.x % 32 == 0) {
        down[k] = a;
        down_d[k] = d;
        lanes[k] = c;
    }
    if (i < n) xr[i] = b;
}

extern "C" void ot_cuda_selftest_warp_sum(float *down, double *down_d, float *xr, int *lanes, const float *x, int64_t n,
                                          int block, void *stream) {
    if (n <= 0) return;
    OT_LAUNCH(st_warp_sum, (unsigned)((n + block - 1) / block), block, 0, stream, down, down_d, xr, lanes, x, n);
}
