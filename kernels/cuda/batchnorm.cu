#include "compat.h"
/* batchnorm.cu: BatchNormalization on CUDA (kernels/batchnorm.c's CPU op on
 * the device): the inference forward, the training forward with batch
 * statistics (y, the saved mean / inverse std for the backward, the running
 * statistics updated in place as torch.nn.BatchNorm2d does), and the training
 * backward (dx written or accumulated, dscale and dbias accumulated, as the
 * CPU op does). x is viewed as (N, C, S), S the product of the spatial sizes.
 *
 * Statistics: one block per channel (blockIdx.x strides over the channels)
 * sums in double, each thread a fixed subset of the channel's elements, then a
 * fixed shared-memory tree: deterministic (no atomics, the same bits on every
 * run), but not the CPU's 8-lane order, so the means, variances and backward
 * sums differ from the CPU's in the last bits of a double (the tests allow 1e-6
 * relative for statistics, 1e-5 for gradients). Everything after the
 * statistics is the CPU's operation order, with explicitly rounded intrinsics
 * on the GPU so nvcc cannot contract a multiply and an add into an FMA.
 *
 * Synchronised BatchNorm (--sync-bn, data-parallel ranks): the training
 * kernels split at their reductions (the ot_cuda_bn_sync_* functions): a sums
 * kernel writes the per-channel double sums into a small stats buffer, the
 * caller sums the buffer over the ranks, and the next kernel uses the global
 * sums (kernels/batchnorm.c's bn_train_fwd_sync / bn_train_bwd_sync, with the
 * same buffer layouts). Built of the same per-channel pieces as the local
 * kernels, so on one rank they give the local kernels' bits. */
#include "cuda_kernels.h"

#include <math.h>


#define BN_THREADS 256     /* a power of two: the reduction tree halves it */
#define BN_MAX_GRID 65535

/* The block's sum of v (one per thread) by a fixed tree; every thread gets it. */
static __device__ double bn_block_sum(double v, double *red) {
    const int t = (int)threadIdx.x;
    red[t] = v;
    __syncthreads();
    for (int off = BN_THREADS / 2; off > 0; off >>= 1) {
        if (t < off) red[t] = __dadd_rn(red[t], red[t + off]);
        __syncthreads();
    }
    double total = red[0];
    __syncthreads();   /* red is reused by the next sum */
    return total;
}

/* ---- inference: y = x * a + b, a = scale / sqrtf(var + eps), b = bias - mean * a (float, the CPU's order) ----
 * blockIdx.y walks the (n, c) rows (strided), blockIdx.x / threadIdx.x the row. */
__global__ void bn_infer_fwd_k(float *y, const float *x, const float *__restrict__ scale, const float *__restrict__ bias,
                               const float *__restrict__ mean, const float *__restrict__ var, int64_t c, int64_t rows,
                               int64_t s, float eps) {
    for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
        const int64_t ch = row % c;
        const float a = __fdiv_rn(scale[ch], __fsqrt_rn(__fadd_rn(var[ch], eps)));
        const float b = __fsub_rn(bias[ch], __fmul_rn(mean[ch], a));
        const float *xs = x + row * s;
        float *ys = y + row * s;
        for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < s; j += (int64_t)gridDim.x * blockDim.x)
            ys[j] = __fadd_rn(__fmul_rn(xs[j], a), b);
    }
}

/* The training kernels' input x: float, or (under --amp, a convolution's output stored in half precision,
 * docs/CUDA.md "Mixed precision") IEEE half or bfloat16, read as its exact float value. The type is uniform
 * over a launch, so the branch costs nothing measurable; the arithmetic after the load is the float path's. */
struct bn_x {
    const void *p;
    int t; /* 0 float, 1 half, 2 bfloat16 */
};
OT_DEVFN float bn_ld(bn_x x, int64_t i) {
    if (x.t == 1) return __half2float(static_cast<const __half *>(x.p)[i]);
    if (x.t == 2) return __bfloat162float(static_cast<const __nv_bfloat16 *>(x.p)[i]);
    return static_cast<const float *>(x.p)[i];
}

/* ---- per-channel pieces of the training kernels (one block per channel) ----
 * The local and the synchronised kernels below are made of the same pieces, so
 * a synchronised layer on one rank gives the bits of the local one. */

/* The block's sum of x over channel ch (every thread gets it). */
OT_DEVFN double bn_chan_sum(bn_x x, int64_t n, int64_t c, int64_t s, int64_t ch, double *red) {
    double t = 0;
    for (int64_t b = 0; b < n; b++) {
        const int64_t xs = (b * c + ch) * s;
        for (int64_t j = threadIdx.x; j < s; j += blockDim.x) t = __dadd_rn(t, (double)bn_ld(x, xs + j));
    }
    return bn_block_sum(t, red);
}

/* The block's sum of (x - mu)^2 over channel ch. */
OT_DEVFN double bn_chan_sqdev(bn_x x, int64_t n, int64_t c, int64_t s, int64_t ch, double mu, double *red) {
    double t = 0;
    for (int64_t b = 0; b < n; b++) {
        const int64_t xs = (b * c + ch) * s;
        for (int64_t j = threadIdx.x; j < s; j += blockDim.x) {
            double d = __dsub_rn((double)bn_ld(x, xs + j), mu);
            t = __dadd_rn(t, __dmul_rn(d, d));
        }
    }
    return bn_block_sum(t, red);
}

/* From the channel's sum and sum of squared deviations over cnt elements: y,
 * the running statistics (thread 0) and the saved mean / invstd. */
OT_DEVFN void bn_chan_apply(float *y, float *saved_mean, float *saved_invstd, float *run_mean, float *run_var,
                            bn_x x, const float *__restrict__ scale, const float *__restrict__ bias, int64_t n,
                            int64_t c, int64_t s, int64_t ch, double sum, double sq, double cnt, float eps, float momentum) {
    const double mu = cnt > 0 ? sum / cnt : 0;
    const double var = cnt > 0 ? sq / cnt : 0;
    const double inv = 1.0 / sqrt(var + (double)eps);
    const double sc = (double)scale[ch];
    const float a = (float)__dmul_rn(sc, inv), bb = (float)__dsub_rn((double)bias[ch], __dmul_rn(__dmul_rn(mu, sc), inv));
    for (int64_t b = 0; b < n; b++) {
        const int64_t xs = (b * c + ch) * s;
        float *ys = y + (b * c + ch) * s;
        for (int64_t j = threadIdx.x; j < s; j += blockDim.x) ys[j] = __fadd_rn(__fmul_rn(bn_ld(x, xs + j), a), bb);
    }
    if (threadIdx.x == 0) {
        const double m = 1.0 - (double)momentum, keep = 1.0 - m;
        if (run_mean) run_mean[ch] = (float)__dadd_rn(__dmul_rn(keep, (double)run_mean[ch]), __dmul_rn(m, mu));
        if (run_var) {
            const double unbiased = cnt > 1 ? sq / (cnt - 1) : var;
            run_var[ch] = (float)__dadd_rn(__dmul_rn(keep, (double)run_var[ch]), __dmul_rn(m, unbiased));
        }
        if (saved_mean) saved_mean[ch] = (float)mu;
        if (saved_invstd) saved_invstd[ch] = (float)inv;
    }
}

/* The channel's sums of dy and dy * xhat (every thread gets them); thread 0
 * adds them to dbias and dscale. */
OT_DEVFN void bn_chan_bwd_sums(double *sdy, double *sdyxh, float *dscale, float *dbias, const float *dy, bn_x x,
                               int64_t n, int64_t c, int64_t s, int64_t ch, double mu, double inv, double *red) {
    double ta = 0, tb = 0;
    for (int64_t b = 0; b < n; b++) {
        const int64_t xs = (b * c + ch) * s;
        const float *ds = dy + xs;
        for (int64_t j = threadIdx.x; j < s; j += blockDim.x) {
            const double d = (double)ds[j];
            ta = __dadd_rn(ta, d);
            tb = __dadd_rn(tb, __dmul_rn(d, __dmul_rn(__dsub_rn((double)bn_ld(x, xs + j), mu), inv)));
        }
    }
    *sdy = bn_block_sum(ta, red);
    *sdyxh = bn_block_sum(tb, red);
    if (threadIdx.x == 0) {
        if (dbias) dbias[ch] = __fadd_rn(dbias[ch], (float)*sdy);
        if (dscale) dscale[ch] = __fadd_rn(dscale[ch], (float)*sdyxh);
    }
}

/* dx = (float)(k * (cnt * dy - sdy - (x - mu) * inv * sdyxh)), k = scale * inv / cnt; written (set) or added. */
OT_DEVFN void bn_chan_bwd_dx(float *dx, int set, const float *dy, bn_x x, const float *__restrict__ scale,
                             int64_t n, int64_t c, int64_t s, int64_t ch, double mu, double inv, double sdy, double sdyxh,
                             double cnt) {
    const double k = __dmul_rn((double)scale[ch], inv) / cnt;
    for (int64_t b = 0; b < n; b++) {
        const int64_t xs = (b * c + ch) * s;
        const float *ds = dy + xs;
        float *gs = dx + xs;
        for (int64_t j = threadIdx.x; j < s; j += blockDim.x) {
            const double xh = __dmul_rn(__dsub_rn((double)bn_ld(x, xs + j), mu), inv);
            const double v = __dmul_rn(k, __dsub_rn(__dsub_rn(__dmul_rn(cnt, (double)ds[j]), sdy), __dmul_rn(xh, sdyxh)));
            gs[j] = set ? (float)v : __fadd_rn(gs[j], (float)v);
        }
    }
}

/* ---- training forward: one block per channel ---- */
__global__ void bn_train_fwd_k(float *y, float *saved_mean, float *saved_invstd, float *run_mean, float *run_var,
                               bn_x x, const float *__restrict__ scale, const float *__restrict__ bias, int64_t n,
                               int64_t c, int64_t s, float eps, float momentum) {
    __shared__ double red[BN_THREADS];
    const double cnt = (double)(n * s);
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
        const double sum = bn_chan_sum(x, n, c, s, ch, red);
        const double mu = cnt > 0 ? sum / cnt : 0;
        const double sq = bn_chan_sqdev(x, n, c, s, ch, mu, red);
        bn_chan_apply(y, saved_mean, saved_invstd, run_mean, run_var, x, scale, bias, n, c, s, ch, sum, sq, cnt, eps,
                      momentum);
    }
}

/* ---- training backward: one block per channel ----
 * sdy = sum dy, sdyxh = sum dy * ((x - mu) * inv) in double, then
 * dx = (float)(k * (cnt * dy - sdy - (x - mu) * inv * sdyxh)), k = scale * inv / cnt. */
__global__ void bn_train_bwd_k(float *dx, int set, float *dscale, float *dbias, const float *dy, bn_x x,
                               const float *__restrict__ scale, const float *__restrict__ saved_mean,
                               const float *__restrict__ saved_invstd, int64_t n, int64_t c, int64_t s) {
    __shared__ double red[BN_THREADS];
    const double cnt = (double)(n * s);
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
        const double mu = (double)saved_mean[ch], inv = (double)saved_invstd[ch];
        double sdy, sdyxh;
        bn_chan_bwd_sums(&sdy, &sdyxh, dscale, dbias, dy, x, n, c, s, ch, mu, inv, red);
        if (!dx || cnt == 0) continue;
        bn_chan_bwd_dx(dx, set, dy, x, scale, n, c, s, ch, mu, inv, sdy, sdyxh, cnt);
    }
}

/* ---- SyncBatchNorm: the same kernels split at their reductions ----
 * Forward stats (2c + 1 doubles): [0, c) the local sums of x, [c] the element
 * count, [c + 1, 2c + 1) the sums of squared deviations from the global mean;
 * the caller sums [0, c] over the ranks (the kernel writes this rank's count) between
 * bn_sync_sum_k and bn_sync_sqdev_k, and [c + 1, 2c + 1) between
 * bn_sync_sqdev_k and bn_sync_apply_k. Backward stats (2c + 1 doubles): [0, c)
 * the sums of dy, [c, 2c) of dy * xhat, [2c] the count (written by the kernel), summed over the ranks
 * between bn_sync_bwd_sums_k and bn_sync_bwd_dx_k. kernels/batchnorm.c's
 * bn_train_fwd_sync / bn_train_bwd_sync, with the layout of their buffers. */
__global__ void bn_sync_sum_k(double *stats, bn_x x, int64_t n, int64_t c, int64_t s) {
    __shared__ double red[BN_THREADS];
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
        const double sum = bn_chan_sum(x, n, c, s, ch, red);
        if (threadIdx.x == 0) stats[ch] = sum;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) stats[c] = (double)(n * s); /* this rank's count, summed with the sums */
}

__global__ void bn_sync_sqdev_k(double *stats, bn_x x, int64_t n, int64_t c, int64_t s) {
    __shared__ double red[BN_THREADS];
    const double cnt = stats[c];
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
        const double mu = cnt > 0 ? stats[ch] / cnt : 0;
        const double sq = bn_chan_sqdev(x, n, c, s, ch, mu, red);
        if (threadIdx.x == 0) stats[c + 1 + ch] = sq;
    }
}

__global__ void bn_sync_apply_k(float *y, float *saved_mean, float *saved_invstd, float *run_mean, float *run_var,
                                bn_x x, const float *__restrict__ scale, const float *__restrict__ bias,
                                const double *__restrict__ stats, int64_t n, int64_t c, int64_t s, float eps,
                                float momentum) {
    const double cnt = stats[c];
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x)
        bn_chan_apply(y, saved_mean, saved_invstd, run_mean, run_var, x, scale, bias, n, c, s, ch, stats[ch],
                      stats[c + 1 + ch], cnt, eps, momentum);
}

__global__ void bn_sync_bwd_sums_k(double *stats, float *dscale, float *dbias, const float *dy, bn_x x,
                                   const float *__restrict__ saved_mean, const float *__restrict__ saved_invstd, int64_t n,
                                   int64_t c, int64_t s) {
    __shared__ double red[BN_THREADS];
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
        double sdy, sdyxh;
        bn_chan_bwd_sums(&sdy, &sdyxh, dscale, dbias, dy, x, n, c, s, ch, (double)saved_mean[ch], (double)saved_invstd[ch],
                         red);
        if (threadIdx.x == 0) {
            stats[ch] = sdy;
            stats[c + ch] = sdyxh;
        }
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) stats[2 * c] = (double)(n * s);
}

__global__ void bn_sync_bwd_dx_k(float *dx, int set, const float *dy, bn_x x, const float *__restrict__ scale,
                                 const float *__restrict__ saved_mean, const float *__restrict__ saved_invstd,
                                 const double *__restrict__ stats, int64_t n, int64_t c, int64_t s) {
    const double cnt = stats[2 * c];
    if (cnt == 0) return;
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x)
        bn_chan_bwd_dx(dx, set, dy, x, scale, n, c, s, ch, (double)saved_mean[ch], (double)saved_invstd[ch], stats[ch],
                       stats[c + ch], cnt);
}

static unsigned bn_grid_c(int64_t c) { return (unsigned)(c < BN_MAX_GRID ? c : BN_MAX_GRID); }

extern "C" void ot_cuda_bn_infer_fwd(float *y, const float *x, const float *scale, const float *bias, const float *mean,
                                     const float *var, int64_t n, int64_t c, int64_t s, float eps, void *stream) {
    int64_t rows = n * c;
    if (rows <= 0 || s <= 0) return;
    int64_t bx = (s + BN_THREADS - 1) / BN_THREADS;
    dim3 grid((unsigned)(bx < 64 ? bx : 64), (unsigned)(rows < BN_MAX_GRID ? rows : BN_MAX_GRID));
    OT_LAUNCH(bn_infer_fwd_k, grid, BN_THREADS, 0, stream, y, x, scale, bias, mean, var, c, rows, s, eps);
}

extern "C" void ot_cuda_bn_train_fwd(float *y, float *saved_mean, float *saved_invstd, float *running_mean,
                                     float *running_var, const void *x, int xt, const float *scale, const float *bias, int64_t n,
                                     int64_t c, int64_t s, float eps, float momentum, void *stream) {
    if (c <= 0) return;
    const bn_x xv = {x, xt};
    OT_LAUNCH(bn_train_fwd_k, bn_grid_c(c), BN_THREADS, 0, stream, y, saved_mean, saved_invstd, running_mean, running_var,
              xv, scale, bias, n, c, s, eps, momentum);
}

extern "C" void ot_cuda_bn_train_bwd(float *dx, int dx_set, float *dscale, float *dbias, const float *dy, const void *x, int xt,
                                     const float *scale, const float *saved_mean, const float *saved_invstd, int64_t n,
                                     int64_t c, int64_t s, void *stream) {
    if (c <= 0) return;
    const bn_x xv = {x, xt};
    OT_LAUNCH(bn_train_bwd_k, bn_grid_c(c), BN_THREADS, 0, stream, dx, dx_set, dscale, dbias, dy, xv, scale, saved_mean,
              saved_invstd, n, c, s);
}

extern "C" void ot_cuda_bn_sync_fwd_sum(double *stats, const void *x, int xt, int64_t n, int64_t c, int64_t s, void *stream) {
    if (c <= 0) return;
    const bn_x xv = {x, xt};
    OT_LAUNCH(bn_sync_sum_k, bn_grid_c(c), BN_THREADS, 0, stream, stats, xv, n, c, s);
}

extern "C" void ot_cuda_bn_sync_fwd_sqdev(double *stats, const void *x, int xt, int64_t n, int64_t c, int64_t s, void *stream) {
    if (c <= 0) return;
    const bn_x xv = {x, xt};
    OT_LAUNCH(bn_sync_sqdev_k, bn_grid_c(c), BN_THREADS, 0, stream, stats, xv, n, c, s);
}

extern "C" void ot_cuda_bn_sync_fwd_apply(float *y, float *saved_mean, float *saved_invstd, float *running_mean,
                                          float *running_var, const void *x, int xt, const float *scale, const float *bias,
                                          const double *stats, int64_t n, int64_t c, int64_t s, float eps, float momentum,
                                          void *stream) {
    if (c <= 0) return;
    const bn_x xv = {x, xt};
    OT_LAUNCH(bn_sync_apply_k, bn_grid_c(c), BN_THREADS, 0, stream, y, saved_mean, saved_invstd, running_mean, running_var,
              xv, scale, bias, stats, n, c, s, eps, momentum);
}

extern "C" void ot_cuda_bn_sync_bwd_sums(double *stats, float *dscale, float *dbias, const float *dy, const void *x, int xt,
                                         const float *saved_mean, const float *saved_invstd, int64_t n, int64_t c, int64_t s,
                                         void *stream) {
    if (c <= 0) return;
    const bn_x xv = {x, xt};
    OT_LAUNCH(bn_sync_bwd_sums_k, bn_grid_c(c), BN_THREADS, 0, stream, stats, dscale, dbias, dy, xv, saved_mean,
              saved_invstd, n, c, s);
}

extern "C" void ot_cuda_bn_sync_bwd_dx(float *dx, int dx_set, const float *dy, const void *x, int xt, const float *scale,
                                       const float *saved_mean, const float *saved_invstd, const double *stats, int64_t n,
                                       int64_t c, int64_t s, void *stream) {
    if (c <= 0 || !dx) return;
    const bn_x xv = {x, xt};
    OT_LAUNCH(bn_sync_bwd_dx_k, bn_grid_c(c), BN_THREADS, 0, stream, dx, dx_set, dy, xv, scale, saved_mean, saved_invstd,
              stats, n, c, s);
}
