/* multi_tensor.cu: the multi-tensor training kernels on CUDA
 * (kernels/cuda/cuda_kernels.h): SGD / Adam / AdamW fused with the clip
 * scale and the model EMA, the EMA alone, and clip_grad_norm's norm on the
 * device. One segment table in device memory covers every tensor (no kernel
 * argument limit): blockIdx.y walks the segments, a grid-stride loop over
 * blockIdx.x / threadIdx.x walks one.
 *
 * Exactness: each element gets kernels/slab.c's float operations in its order,
 * written with explicitly rounded intrinsics so nvcc cannot contract a multiply
 * and an add into an FMA (the CPU build does not contract either: ISO C11). The
 * clip norm is a fixed-order tree of double partials (no float atomics). */
#include "compat.h"

extern "C" {
#include "cuda_kernels.h"
}

#include <math.h>


#define MT_THREADS 256
#define MT_BLOCKS_X 16          /* blocks per segment; the grid-stride loop covers the rest */
#define MT_MAX_Y 65535          /* gridDim.y limit; more segments: blockIdx.y strides */

static inline unsigned mt_grid_y(int nseg) { return (unsigned)(nseg < MT_MAX_Y ? nseg : MT_MAX_Y); }

/* ---- the fused optimizer steps ---- */

/* The per-step values travel by value (v), or, for a step replayed from a CUDA graph, in device memory (dyn,
 * refreshed by the graph's upload before the kernel runs): the kernel reads whichever is given. */
typedef struct mt_sgd_k {
    ot_step_dyn v;
    const ot_step_dyn *dyn;
    int scale_grad;
    const float *clip;
    float *ema;
    const ot_amp_state *amp;
} mt_sgd_k;

typedef struct mt_adam_k {
    ot_step_dyn v;
    const ot_step_dyn *dyn;
    float b2, eps;
    int decoupled, scale_grad;
    const float *clip;
    float *ema;
    const ot_amp_state *amp;
} mt_adam_k;

/* slab.c cpu_ema, one element */
OT_DEVFN void mt_ema1(float *e, float pn, float d, float omd) {
    float v = __fmul_rn(*e, d);
    float t = __fmul_rn(omd, pn);
    *e = __fadd_rn(v, t);
}

/* A segment that is not stepped (BN buffers, frozen tensors): the EMA alone, grid-stride over its n floats. */
OT_DEVFN void mt_ema_segment(float *e, const float *p, int64_t n, float d, float omd) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) mt_ema1(e + i, p[i], d, omd);
}

__global__ void mt_sgd_kernel(const ot_slab_seg *__restrict__ seg, int nseg, float *__restrict__ p, float *__restrict__ g,
                              float *__restrict__ buf, mt_sgd_k k) {
    const float c = k.clip ? k.clip[1] : 1.0f;
    const bool skip = k.amp && k.amp->found_inf != 0.0f;
    const ot_step_dyn &v = k.dyn ? *k.dyn : k.v;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int s = blockIdx.y; s < nseg; s += gridDim.y) {
        const int64_t o = seg[s].off, n = seg[s].n;
        const int grp = seg[s].group;
        if (grp < 0 || skip) { /* OT_SLAB_EMA_ONLY, or GradScaler skipped the step */
            if (k.ema) mt_ema_segment(k.ema + o, p + o, n, v.ema_d, v.ema_omd);
            continue;
        }
        const float lr = v.lr[grp], mom = v.momentum[grp], wd = v.weight_decay[grp];
        const bool first = v.first != 0;
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
            const int64_t j = o + i;
            float d = g[j];
            if (k.clip) {
                d = __fmul_rn(d, c); /* clip: x *= c */
                if (k.scale_grad) g[j] = d;
            }
            float pj = p[j];
            if (wd != 0.0f) d = __fadd_rn(d, __fmul_rn(wd, pj));
            float b = first ? d : __fadd_rn(__fmul_rn(buf[j], mom), d);
            buf[j] = b;
            d = __fadd_rn(d, __fmul_rn(mom, b)); /* nesterov */
            pj = __fadd_rn(pj, __fmul_rn(-lr, d));
            p[j] = pj;
            if (k.ema) mt_ema1(k.ema + j, pj, v.ema_d, v.ema_omd);
        }
    }
}

__global__ void mt_adam_kernel(const ot_slab_seg *__restrict__ seg, int nseg, float *__restrict__ p, float *__restrict__ g,
                               float *__restrict__ m, float *__restrict__ v, mt_adam_k k) {
    const float c = k.clip ? k.clip[1] : 1.0f;
    const bool skip = k.amp && k.amp->found_inf != 0.0f;
    const ot_step_dyn &sv = k.dyn ? *k.dyn : k.v;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const float omb2 = __fsub_rn(1.0f, k.b2);
    for (int s = blockIdx.y; s < nseg; s += gridDim.y) {
        const int64_t o = seg[s].off, n = seg[s].n;
        const int grp = seg[s].group;
        if (grp < 0 || skip) { /* OT_SLAB_EMA_ONLY, or GradScaler skipped the step */
            if (k.ema) mt_ema_segment(k.ema + o, p + o, n, sv.ema_d, sv.ema_omd);
            continue;
        }
        const float lr = sv.lr[grp], wd = sv.weight_decay[grp], omb1 = __fsub_rn(1.0f, sv.momentum[grp]);
        const float nss = -sv.step_size[grp], bc2s = sv.bc2s[grp];
        const float dec = __fsub_rn(1.0f, __fmul_rn(lr, wd));
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
            const int64_t j = o + i;
            float gi = g[j];
            if (k.clip) {
                gi = __fmul_rn(gi, c);
                if (k.scale_grad) g[j] = gi;
            }
            float pj = p[j];
            if (k.decoupled) pj = __fmul_rn(pj, dec);
            else if (wd != 0.0f) gi = __fadd_rn(gi, __fmul_rn(wd, pj));
            float mj = m[j];
            mj = __fadd_rn(mj, __fmul_rn(__fsub_rn(gi, mj), omb1)); /* lerp, as torch */
            m[j] = mj;
            float vj = __fadd_rn(__fmul_rn(v[j], k.b2), __fmul_rn(__fmul_rn(omb2, gi), gi));
            v[j] = vj;
            float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vj), bc2s), k.eps);
            pj = __fadd_rn(pj, __fmul_rn(nss, __fdiv_rn(mj, denom)));
            p[j] = pj;
            if (k.ema) mt_ema1(k.ema + j, pj, sv.ema_d, sv.ema_omd);
        }
    }
}

__global__ void mt_ema_kernel(float *__restrict__ e, const float *__restrict__ model, int64_t n, float d, float omd) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) mt_ema1(e + i, model[i], d, omd);
}

/* ---- clip_grad_norm ---- */

/* Block tree sum of one double per thread (blockDim.x == MT_THREADS, a power
 * of two); the result is valid in thread 0. Fixed order: deterministic. */
static __device__ double mt_block_sum(double x, double *sh) {
    sh[threadIdx.x] = x;
    __syncthreads();
    for (unsigned w = MT_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] = __dadd_rn(sh[threadIdx.x], sh[threadIdx.x + w]);
        __syncthreads();
    }
    return sh[0];
}

/* scratch[s * MT_BLOCKS_X + blockIdx.x] = this block's sum of squares of segment s */
__global__ void mt_sumsq_kernel(const ot_slab_seg *__restrict__ seg, int nseg, const float *__restrict__ g, double *__restrict__ scratch) {
    __shared__ double sh[MT_THREADS];
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int s = blockIdx.y; s < nseg; s += gridDim.y) {
        const float *x = g + seg[s].off;
        const int64_t n = seg[s].n;
        double a = 0;
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) a = __dadd_rn(a, __dmul_rn((double)x[i], (double)x[i]));
        double t = mt_block_sum(a, sh);
        if (threadIdx.x == 0) scratch[(int64_t)s * MT_BLOCKS_X + blockIdx.x] = t;
        __syncthreads(); /* sh is reused by the next segment */
    }
}

/* one block: per-segment float norms, their squares summed in double, the total and the coefficient */
__global__ void mt_clip_total_kernel(int nseg, const double *__restrict__ scratch, float max_norm, float *__restrict__ out) {
    __shared__ double sh[MT_THREADS];
    double a = 0;
    for (int s = threadIdx.x; s < nseg; s += blockDim.x) {
        double t = 0;
        for (int x = 0; x < MT_BLOCKS_X; x++) t = __dadd_rn(t, scratch[(int64_t)s * MT_BLOCKS_X + x]);
        float tn = (float)sqrt(t); /* per-tensor norms are float32 tensors in torch */
        a = __dadd_rn(a, __dmul_rn((double)tn, (double)tn));
    }
    double total2 = mt_block_sum(a, sh);
    if (threadIdx.x == 0) {
        float total = (float)sqrt(total2);
        float c = __fdiv_rn(max_norm, __fadd_rn(total, 1e-6f));
        if (c > 1.0f) c = 1.0f;
        out[0] = total;
        out[1] = c;
    }
}

__global__ void mt_scale_kernel(const ot_slab_seg *__restrict__ seg, int nseg, float *__restrict__ g, const float *__restrict__ clip) {
    const float c = clip[1];
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int s = blockIdx.y; s < nseg; s += gridDim.y) {
        float *x = g + seg[s].off;
        const int64_t n = seg[s].n;
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) x[i] = __fmul_rn(x[i], c);
    }
}

/* ---- launch functions ---- */

extern "C" void ot_cuda_sgd(const ot_slab_seg *seg, int nseg, float *p, float *g, float *buf, const ot_sgd_args *a,
                            const ot_cuda_step_extra *x, void *stream) {
    if (nseg <= 0) return;
    mt_sgd_k k;
    ot_step_dyn_sgd(a, x ? x->ema_d : 0.0f, x ? x->ema_omd : 0.0f, &k.v);
    k.dyn = a->dyn;
    k.clip = x ? x->clip : NULL;
    k.scale_grad = x ? x->scale_grad : 0;
    k.ema = x ? x->ema : NULL;
    k.amp = x ? x->amp : NULL;
    OT_LAUNCH(mt_sgd_kernel, dim3(MT_BLOCKS_X, mt_grid_y(nseg)), dim3(MT_THREADS), 0, stream, seg, nseg, p, g, buf, k);
}

extern "C" void ot_cuda_adam(const ot_slab_seg *seg, int nseg, float *p, float *g, float *m, float *v, const ot_adam_args *a,
                             const ot_cuda_step_extra *x, void *stream) {
    if (nseg <= 0) return;
    mt_adam_k k;
    ot_step_dyn_adam(a, x ? x->ema_d : 0.0f, x ? x->ema_omd : 0.0f, &k.v); /* slab.c's bias corrections in double */
    k.dyn = a->dyn;
    k.b2 = a->beta2;
    k.eps = a->eps;
    k.decoupled = a->decoupled;
    k.clip = x ? x->clip : NULL;
    k.scale_grad = x ? x->scale_grad : 0;
    k.ema = x ? x->ema : NULL;
    k.amp = x ? x->amp : NULL;
    OT_LAUNCH(mt_adam_kernel, dim3(MT_BLOCKS_X, mt_grid_y(nseg)), dim3(MT_THREADS), 0, stream, seg, nseg, p, g, m, v, k);
}

extern "C" void ot_cuda_ema(float *ema, const float *model, int64_t n, float d, float omd, void *stream) {
    if (n <= 0) return;
    int64_t blocks = (n + MT_THREADS - 1) / MT_THREADS;
    if (blocks > 4096) blocks = 4096;
    OT_LAUNCH(mt_ema_kernel, dim3((unsigned)blocks), dim3(MT_THREADS), 0, stream, ema, model, n, d, omd);
}

extern "C" size_t ot_cuda_clip_scratch_bytes(int nseg) { return sizeof(double) * (size_t)(nseg > 0 ? nseg : 1) * MT_BLOCKS_X; }

extern "C" void ot_cuda_clip_norm(const ot_slab_seg *seg, int nseg, const float *g, float max_norm, float *out, double *scratch,
                                  void *stream) {
    if (nseg > 0)
        OT_LAUNCH(mt_sumsq_kernel, dim3(MT_BLOCKS_X, mt_grid_y(nseg)), dim3(MT_THREADS), 0, stream, seg, nseg, g, scratch);
    OT_LAUNCH(mt_clip_total_kernel, dim3(1), dim3(MT_THREADS), 0, stream, nseg, (const double *)scratch, max_norm, out);
}

extern "C" void ot_cuda_clip_scale(const ot_slab_seg *seg, int nseg, float *g, const float *clip, void *stream) {
    if (nseg <= 0) return;
    OT_LAUNCH(mt_scale_kernel, dim3(MT_BLOCKS_X, mt_grid_y(nseg)), dim3(MT_THREADS), 0, stream, seg, nseg, g, clip);
}
