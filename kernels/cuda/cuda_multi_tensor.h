/* cuda_multi_tensor.h: the CUDA multi-tensor kernels of training
 * (kernels/cuda/multi_tensor.cu), callable from C. Every pointer is device
 * memory (backend memory of the CUDA device, or of cpu-guard under the CPU
 * executor); the argument structs are host values. stream: a cudaStream_t (NULL:
 * the default stream). Nothing here synchronises with the host.
 *
 * One segment table (kernels/slab.h ot_slab_seg, in device memory) covers every
 * tensor: blockIdx.y walks the segments (strided by gridDim.y, so any count),
 * blockIdx.x / threadIdx.x a grid-stride loop inside one. The arithmetic is
 * kernels/slab.c's, operation for operation (explicitly rounded float ops, no
 * contraction into FMA), so p, the optimizer state and the EMA get the CPU's
 * bits. */
#ifndef OT_CUDA_MULTI_TENSOR_H
#define OT_CUDA_MULTI_TENSOR_H

#include "../slab.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A segment whose group is OT_SLAB_EMA_ONLY is not stepped: the fused launches
 * only apply the EMA to it (buffers such as BatchNorm running statistics, and
 * frozen parameters, which the model EMA still averages). */
#define OT_SLAB_EMA_ONLY (-1)

/* The fused step's extras. clip: device memory, the 2 floats that
 * ot_cuda_clip_norm wrote (total, coefficient); NULL: no clipping. The gradient
 * is multiplied by clip[1] on read (as slab.c's clip scales it in place before
 * the step); scale_grad: also store the scaled gradient back, leaving g as the
 * CPU sequence clip -> step leaves it. ema: the EMA slab (device memory, same
 * offsets as p) updated with the new p in the same pass, ema = ema * d + omd * p
 * (slab.c's ema order); NULL: no EMA. */
typedef struct ot_cuda_step_extra {
    const float *clip;
    int scale_grad;
    float *ema;
    float ema_d, ema_omd;
} ot_cuda_step_extra;

/* SGD (momentum, Nesterov, per-group weight decay, a->first) + clip scale + EMA, one launch. */
void ot_cuda_sgd(const ot_slab_seg *seg, int nseg, float *p, float *g, float *buf, const ot_sgd_args *a,
                 const ot_cuda_step_extra *x, void *stream);
/* Adam / AdamW (a->decoupled) + clip scale + EMA, one launch; the bias
 * corrections are computed on the host in double, as slab.c does. */
void ot_cuda_adam(const ot_slab_seg *seg, int nseg, float *p, float *g, float *m, float *v, const ot_adam_args *a,
                  const ot_cuda_step_extra *x, void *stream);
/* ema = ema * d + omd * model over n floats (slab.c's cpu_ema). */
void ot_cuda_ema(float *ema, const float *model, int64_t n, float d, float omd, void *stream);

/* clip_grad_norm_, the norm: out[0] = total (the L2 norm of the per-segment
 * float32 norms), out[1] = min(1, max_norm / (total + 1e-6)), both left in
 * device memory. Two launches: per (segment, block) double sums of squares into
 * scratch, then one block sums them in a fixed order. Deterministic (no float
 * atomics); it differs from slab.c's 8-lane order only in the rounding of the
 * double sums (within 1e-6 relative). scratch: device memory,
 * ot_cuda_clip_scratch_bytes(nseg) bytes. */
size_t ot_cuda_clip_scratch_bytes(int nseg);
void ot_cuda_clip_norm(const ot_slab_seg *seg, int nseg, const float *g, float max_norm, float *out, double *scratch,
                       void *stream);
/* g *= clip[1] over the segments (the standalone clip; the fused steps scale on read instead). */
void ot_cuda_clip_scale(const ot_slab_seg *seg, int nseg, float *g, const float *clip, void *stream);

#ifdef __cplusplus
}
#endif

#endif
