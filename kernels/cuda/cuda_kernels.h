/* cuda_kernels.h: the plain-C entry points of the hand-written CUDA kernels
 * (kernels/cuda/<name>.cu), usable from C11. Each call launches on `stream`
 * (a cudaStream_t; NULL is the default stream) and returns at once on a GPU;
 * under the CPU executor (onnxtrain_cudaemu) the work is done when it returns.
 * Pointers are device memory: a GPU's, or cpu-guard buffers under the
 * executor. Sizes may be anything >= 0 (0: nothing is launched). See docs/CUDA.md. */
#ifndef OT_CUDA_KERNELS_H
#define OT_CUDA_KERNELS_H

#include <stdint.h>
#include "../slab.h"       /* ot_slab_seg, ot_sgd_args, ot_adam_args */
#include "../yolo_loss.h"  /* ot_yolo_loss_args */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- upsample.cu: nearest 2x (Resize with an exact integer factor 2 on H and W) ---- */
/* y (nc, 2h, 2w) = x (nc, h, w) repeated 2x2. */
void ot_cuda_upsample2x_fwd(float *y, const float *x, int64_t nc, int64_t h, int64_t w, void *stream);
/* dx (nc, h, w) = the sum of the four gradients in dy (nc, 2h, 2w) that each
 * input element produced, as (dy[2i][2j] + dy[2i][2j+1]) + (dy[2i+1][2j] +
 * dy[2i+1][2j+1]) (the CPU Resize backward's order), written to dx; accumulate:
 * added as (dx + (dy[2i][2j] + dy[2i][2j+1])) + (dy[2i+1][2j] + dy[2i+1][2j+1]),
 * the CPU's order when dx already holds another consumer's gradient. No atomics. */
void ot_cuda_upsample2x_bwd(float *dx, const float *dy, int64_t nc, int64_t h, int64_t w, int accumulate, void *stream);
/* The forward into a half-precision y (half, bf16 0, or bfloat16, 1): x float (xt 0, rounded as stored) or of y's
 * type (xt 1, copied). */
void ot_cuda_upsample2x_fwd_half(uint16_t *y, const void *x, int xt, int64_t nc, int64_t h, int64_t w, int bf16, void *stream);

/* ---- amp.cu: mixed precision (--amp) ----
 * Conversions: y[i] = x[i] as IEEE binary16 / bfloat16 (round to nearest even,
 * CUDA's __float2half_rn / __float2bfloat16_rn; NaN -> 0x7fff) and back
 * (exact; a half NaN -> 0x7fffffff). round_half: y = x rounded to half (bf16 0)
 * or bfloat16 (1) precision and kept in float (in place allowed). */
void ot_cuda_f32_to_f16(uint16_t *y, const float *x, int64_t n, void *stream);
void ot_cuda_f16_to_f32(float *y, const uint16_t *x, int64_t n, void *stream);
void ot_cuda_f32_to_bf16(uint16_t *y, const float *x, int64_t n, void *stream);
void ot_cuda_bf16_to_f32(float *y, const uint16_t *x, int64_t n, void *stream);
void ot_cuda_round_half(float *y, const float *x, int64_t n, int bf16, void *stream);
/* One pass each (conv_gpu.c under --amp): round_to_half: x rounded in place to half (bf16 0) or bfloat16 (1)
 * precision and its n half values written to h (round_half then a conversion, fused); half_out: y = the n half
 * values h in float, then with bias non-NULL (m channels of hw elements, NCHW) half_bias's add (a conversion and
 * the bias add, fused); half_bias: y = round(y + round(bias[channel])), rounding to that precision: autocast's
 * half bias added to a half convolution's output (conv_emu.c's biased output). */
void ot_cuda_round_to_half(float *x, uint16_t *h, int64_t n, int bf16, void *stream);
void ot_cuda_half_out(float *y, const uint16_t *h, const float *bias, int64_t n, int64_t hw, int64_t m, int bf16, void *stream);
void ot_cuda_half_bias(float *y, const float *bias, int64_t n, int64_t hw, int64_t m, int bf16, void *stream);
/* y = (accumulate ? y + h : h) for the n half (bf16 0) or bfloat16 (1) values h, then, with round, rounded to
 * that precision (conv_gpu.c's --amp gradients). */
void ot_cuda_half_accumulate(float *y, const uint16_t *h, int64_t n, int bf16, int accumulate, int round, void *stream);
/* Channels-last half copies (conv_gpu.c under --amp --channels-last), n batches of c channels of hw elements:
 * half_nhwc: h (n, hw, c) = x (n, c, hw) converted to half (bf16 0) or bfloat16 (1), and with xr (NULL or x)
 * x rounded in place too (round_to_half, transposed); half_from_nhwc: y (n, c, hw) from the half values
 * h (n, hw, c): v = float(h), with bias (per channel, non-NULL) half_bias's add, with accumulate y + v, with round
 * rounded to that precision (half_out and half_accumulate, transposed). Same bits as the NCHW kernels. */
void ot_cuda_half_nhwc(const float *x, float *xr, uint16_t *h, int64_t n, int64_t c, int64_t hw, int bf16, void *stream);
void ot_cuda_half_from_nhwc(float *y, const uint16_t *h, const float *bias, int64_t n, int64_t c, int64_t hw, int bf16,
                            int accumulate, int round, void *stream);
/* y (n, c, hw) = h (n, hw, c), 16-bit values moved unchanged (a half convolution's NHWC output stored as a
 * half-precision NCHW activation). */
void ot_cuda_half_move_from_nhwc(uint16_t *y, const uint16_t *h, int64_t n, int64_t c, int64_t hw, void *stream);
/* h (n, hw, c) = x (n, c, hw), 16-bit values moved unchanged (a half-precision activation into a convolution's
 * NHWC copy). */
void ot_cuda_half_move_to_nhwc(uint16_t *h, const uint16_t *x, int64_t n, int64_t c, int64_t hw, void *stream);
/* g = saved + g rounded to half / bfloat16 precision (a half gradient added to an FP32 one). */
void ot_cuda_round_add(float *g, const float *saved, int64_t n, int bf16, void *stream);
/* GradScaler on the device (kernels/slab.h's amp_scale, amp_unscale, amp_update). */
void ot_cuda_amp_scale(float *x, int64_t n, const ot_amp_state *st, void *stream);
void ot_cuda_amp_unscale(float *g, int64_t n, ot_amp_state *st, void *stream);
void ot_cuda_amp_update(ot_amp_state *st, float growth, float backoff, int interval, void *stream);

/* ---- emu_selftest.cu: the executor's self-tests (tests/test_cudaemu_exec.c) ---- */
/* y[i] = 2 * x[i] + i, grid-stride loop with a small grid. */
void ot_cuda_selftest_gridstride(float *y, const float *x, int64_t n, void *stream);
/* out[(z * ny + y) * nx + x] = x + 1000 * y + 1000000 * z, 3D grid of 3D blocks. */
void ot_cuda_selftest_index3d(int *out, int nx, int ny, int nz, void *stream);
/* Per-block sums of x (blocks of `block` threads, block a power of two <= 1024)
 * by a tree in shared memory: static (dynamic = 0, block must be 256) or
 * dynamic shared memory. partial gets ceil(n / block) sums. */
void ot_cuda_selftest_block_sum(float *partial, const float *x, int64_t n, int block, int dynamic, void *stream);
/* atomicAdd from many blocks: *sum (double) and *fsum (float) += every x,
 * *count (int) += n, *ucount (unsigned) += n, *ullsum (unsigned long long) +=
 * every (unsigned long long)ix + 2^40; atomicMax: *mx = max(*mx, every ix). */
void ot_cuda_selftest_atomics(double *sum, float *fsum, int *count, unsigned *ucount, unsigned long long *ullsum, int *mx,
                              const float *x, const int *ix, int64_t n, void *stream);
/* Warp sums of x (32 consecutive elements per warp, zero past n; block a
 * multiple of 32): down[k] (float) and down_d[k] (double) by __shfl_down_sync,
 * as lane 0 holds it; xr[i] by __shfl_xor_sync (every lane gets the warp's sum,
 * written per element i < n); lanes[k] = the number of elements < n in warp k,
 * an int __shfl_xor_sync sum. */
void ot_cuda_selftest_warp_sum(float *down, double *down_d, float *xr, int *lanes, const float *x, int64_t n, int block,
                               void *stream);

/* ---- multi_tensor.cu: the multi-tensor kernels of training (kernels/slab.h's
 * on the GPU) ---- Every pointer is device memory; the argument structs are
 * host values. Nothing here synchronises with the host.
 *
 * One segment table (kernels/slab.h ot_slab_seg, in device memory) covers every
 * tensor: blockIdx.y walks the segments (strided by gridDim.y, so any count),
 * blockIdx.x / threadIdx.x a grid-stride loop inside one. The arithmetic is
 * kernels/slab.c's, operation for operation (explicitly rounded float ops, no
 * contraction into FMA), so p, the optimizer state and the EMA get the CPU's
 * bits. */
/* A segment whose group is OT_SLAB_EMA_ONLY is not stepped: the fused launches
 * only apply the EMA to it (buffers such as BatchNorm running statistics, and
 * frozen parameters, which the model EMA still averages). */
#ifndef OT_SLAB_EMA_ONLY
#define OT_SLAB_EMA_ONLY (-1) /* also kernels/slab.h */
#endif

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
    const ot_amp_state *amp; /* GradScaler: where amp->found_inf is set, no step (the EMA still averages); NULL: none */
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

/* ---- yolo_loss.cu: the device part of the YOLOv5 loss ---- With
 * kernels/yolo_loss.h's argument struct and call order: for each head l, targets(A, l) then
 * objectness(A, l); items(A) last. A is a host struct whose pointers are device
 * memory (A->part and each layer's link are the device kernels' scratch);
 * stream: a cudaStream_t (NULL: the default stream). Every reduction is a fixed
 * tree (no float atomics), so a run repeats its bits. */
void ot_cuda_yolo_loss_targets(const ot_yolo_loss_args *A, int l, void *stream);
void ot_cuda_yolo_loss_objectness(const ot_yolo_loss_args *A, int l, void *stream);
void ot_cuda_yolo_loss_items(const ot_yolo_loss_args *A, void *stream);

/* ==== batchnorm.cu, decode.cu (BatchNormalization and the YOLOv5 Detect decode;
 * tests/test_cudaemu_batchnorm.c, tests/test_cudaemu_decode.c) ==== */
/* BatchNormalization, kernels/batchnorm.c on the device. x, y, dy, dx: (n, c, s),
 * s the product of the spatial sizes; per-channel tensors: (c). The training
 * functions take x with its type xt: 0 float, 1 IEEE half, 2 bfloat16 (under
 * --amp a convolution's output is stored in half precision, docs/CUDA.md
 * "Mixed precision"), read as its exact float value; the rest is float. */
/* Inference: y = x * a + b, a = scale / sqrtf(var + eps), b = bias - mean * a
 * (float, the CPU's order: bit for bit). y may be x. */
void ot_cuda_bn_infer_fwd(float *y, const float *x, const float *scale, const float *bias, const float *mean,
                          const float *var, int64_t n, int64_t c, int64_t s, float eps, void *stream);
/* Training (batch statistics over n and s, in double, a deterministic block tree
 * per channel): y; saved_mean = (float)mean, saved_invstd = (float)(1 / sqrt(var
 * + eps)) (biased variance) for the backward; running_mean / running_var updated
 * in place as torch.nn.BatchNorm2d does: r = (1 - m) * r + m * batch, m = 1 -
 * momentum (ONNX's momentum), the unbiased variance for running_var. Any of the
 * four statistics pointers may be NULL. y may be x. */
void ot_cuda_bn_train_fwd(float *y, float *saved_mean, float *saved_invstd, float *running_mean, float *running_var,
                          const void *x, int xt, const float *scale, const float *bias, int64_t n, int64_t c, int64_t s,
                          float eps, float momentum, void *stream);
/* Training backward with the forward's saved_mean / saved_invstd: dbias +=
 * sum dy, dscale += sum dy * xhat (accumulated, as the CPU op; NULL: skipped);
 * dx (NULL: skipped) = or, dx_set == 0, += the input gradient (ot_gin_set's
 * write-vs-add rule). */
void ot_cuda_bn_train_bwd(float *dx, int dx_set, float *dscale, float *dbias, const float *dy, const void *x, int xt,
                          const float *scale, const float *saved_mean, const float *saved_invstd, int64_t n, int64_t c,
                          int64_t s, void *stream);
/* SyncBatchNorm (--sync-bn over data-parallel ranks): ot_cuda_bn_train_fwd /
 * _bwd split at their reductions, kernels/batchnorm.c's bn_train_fwd_sync /
 * bn_train_bwd_sync on the device. stats: device doubles, 2c + 1, the CPU's
 * buffer layouts; the caller sums the named ranges over the ranks between the
 * calls (in place). On one rank (no sum) they give ot_cuda_bn_train_fwd /
 * _bwd's bits.
 * Forward: fwd_sum writes stats[0, c) = the local sums of x and stats[c] =
 * n * s; the caller sums stats[0, c] over the ranks; fwd_sqdev writes
 * stats[c + 1, 2c + 1) = the local sums of (x - mean)^2, mean = stats[ch] /
 * stats[c]; the caller sums that range; fwd_apply writes y, the saved mean /
 * invstd and the running statistics (as ot_cuda_bn_train_fwd, from the global
 * sums). Backward: bwd_sums writes stats[0, c) = sum dy, stats[c, 2c) = sum dy *
 * xhat, stats[2c] = n * s, and adds them to dbias / dscale (local: the
 * data-parallel step sums parameter gradients); the caller sums stats[0, 2c]
 * over the ranks; bwd_dx writes or adds dx (NULL: nothing) from the global
 * sums. */
void ot_cuda_bn_sync_fwd_sum(double *stats, const void *x, int xt, int64_t n, int64_t c, int64_t s, void *stream);
void ot_cuda_bn_sync_fwd_sqdev(double *stats, const void *x, int xt, int64_t n, int64_t c, int64_t s, void *stream);
void ot_cuda_bn_sync_fwd_apply(float *y, float *saved_mean, float *saved_invstd, float *running_mean, float *running_var,
                               const void *x, int xt, const float *scale, const float *bias, const double *stats, int64_t n,
                               int64_t c, int64_t s, float eps, float momentum, void *stream);
void ot_cuda_bn_sync_bwd_sums(double *stats, float *dscale, float *dbias, const float *dy, const void *x, int xt,
                              const float *saved_mean, const float *saved_invstd, int64_t n, int64_t c, int64_t s,
                              void *stream);
void ot_cuda_bn_sync_bwd_dx(float *dx, int dx_set, const float *dy, const void *x, int xt, const float *scale,
                            const float *saved_mean, const float *saved_invstd, const double *stats, int64_t n, int64_t c,
                            int64_t s, void *stream);
/* The YOLOv5 Detect decode (kernels/decode.h's decode on the device): maps: a
 * host array of a->nl device pointers, the head maps (n, na*no, ny, nx); a: a
 * host struct; pred (n, a->total, a->no), device memory. Each row is
 * ot_decode_cell (bit for bit with the CPU under the executor; CUDA's expf on a GPU). */
struct ot_decode_args;
void ot_cuda_decode(const float *const *maps, const struct ot_decode_args *a, float *pred, void *stream);
/* ==== end of batchnorm.cu, decode.cu ==== */


/* ==== elementwise.cu, concat.cu, maxpool.cu: YOLOv5's Sigmoid / SiLU / Add /
 * Mul, channel Concat and SPPF MaxPool (docs/CUDA.md, "Elementwise, Concat,
 * MaxPool"). Bit for bit with kernels/elementwise.c, concat.c, pool.c. ==== */
/* accumulate: 0 writes the gradient (as 0.0f + value, the bits of adding to a
 * zeroed buffer), 1 adds to it (the CPU backward's ot_gin_set rule). */
/* y = sigmoid(x) (elementwise.c's sigmoid1), n elements. */
void ot_cuda_sigmoid_fwd(float *y, const float *x, int64_t n, void *stream);
/* dx (+)= dy * (1 - y) * y, y the forward's output. */
void ot_cuda_sigmoid_bwd(float *dx, const float *dy, const float *y, int64_t n, int accumulate, void *stream);
/* SiLU fused as the CPU fuses Mul(x, Sigmoid(x)): y = x * sigmoid(x). */
void ot_cuda_silu_fwd(float *y, const float *x, int64_t n, void *stream);
/* dx = (dx or 0) + dy * s, then + dy * x * (1 - s) * s, s = sigmoid(x). */
/* y = x * sigmoid(x) (ot_cuda_silu_fwd's value) rounded to half (bf16 0) or bfloat16 (1) as it is stored. */
void ot_cuda_silu_fwd_half(uint16_t *y, const float *x, int64_t n, int bf16, void *stream);
void ot_cuda_silu_bwd(float *dx, const float *dy, const float *x, int64_t n, int accumulate, void *stream);

#define OT_CUDA_BIN_ADD 0
#define OT_CUDA_BIN_MUL 1
#define OT_CUDA_BCAST_RANK 8
/* elementwise.c's merged broadcast plan of y = a op b: output dims d[0..rank)
 * and each operand's element strides per dim (0: broadcast). */
typedef struct ot_cuda_bcast {
    int rank;
    int64_t d[OT_CUDA_BCAST_RANK], sa[OT_CUDA_BCAST_RANK], sb[OT_CUDA_BCAST_RANK];
    int64_t numel;
} ot_cuda_bcast;
/* Plan for shapes a (ad, ar dims) and b (bd, br dims), numpy broadcasting.
 * Host only. Returns 1, or 0 when they do not broadcast or a rank is > 8. */
int ot_cuda_bcast_plan(ot_cuda_bcast *p, const int64_t *ad, int ar, const int64_t *bd, int br);
/* y = a + b or a * b (kind OT_CUDA_BIN_*), y contiguous in the output shape. */
void ot_cuda_binary_fwd(int kind, float *y, const float *a, const float *b, const ot_cuda_bcast *p, void *stream);
/* The gradient of operand side (0: a, 1: b), dx in its own shape: summed over
 * the dims it was broadcast along in double, in elementwise.c's order and
 * chunks (no atomics). Add reads neither a nor b (may be NULL). An operand used
 * twice (x * x): call side 0 then side 1 with accumulate 1 the second time. */
void ot_cuda_binary_bwd(int kind, int side, float *dx, const float *dy, const float *a, const float *b,
                        const ot_cuda_bcast *p, int accumulate, void *stream);
/* Concat (concat.c) of n inputs (any n) in the layout (outer, sum c[i], inner):
 * channel Concat of NCHW is outer = N, c[i] = C_i, inner = H*W. x and dx are
 * host arrays of n device pointers. Forward: y = the inputs side by side. */
void ot_cuda_concat_fwd(float *y, const float *const *x, const int64_t *c, int n, int64_t outer, int64_t inner,
                        void *stream);
/* dx[i] = its slice of dy (copied), or += when accumulate[i] (accumulate NULL:
 * all written); dx[i] NULL: skipped. One launch per input, in order, so an
 * input listed twice (same dx, accumulate 1) gets its slices added in order. */
/* The forward into a half-precision y (half, bf16 0, or bfloat16, 1): input i float (xt[i] 0, each value rounded
 * as it is stored) or of y's type (xt[i] 1, copied); xt NULL: all float. */
void ot_cuda_concat_fwd_half(uint16_t *y, const void *const *x, const int *xt, const int64_t *c, int n, int64_t outer,
                             int64_t inner, int bf16, void *stream);
void ot_cuda_concat_bwd(float *const *dx, const float *dy, const int64_t *c, int n, int64_t outer, int64_t inner,
                        const int *accumulate, void *stream);
/* MaxPool 2D (pool.c) on planes = N*C planes of h x w, kernel kh x kw, stride
 * sh x sw, symmetric pads ph, pw; output (h + 2ph - kh + 1) x (w + 2pw - kw + 1).
 * Only stride 1 with 0 <= pad < kernel (YOLOv5's SPPF: 5, 1, 2): anything else
 * prints why on stderr, launches nothing and returns -1; else 0. arg (int32
 * per output, may be NULL): each window's argmax offset in its plane, pool.c's
 * tie rule (first maximum in scan order, per its separable row/column passes). */
int ot_cuda_maxpool_fwd(float *y, int32_t *arg, const float *x, int64_t planes, int64_t h, int64_t w, int kh, int kw,
                        int sh, int sw, int ph, int pw, void *stream);
/* dx (+)= the gradients dy of the windows whose argmax each element is, summed
 * in ascending output order (a gather, no atomics). Same geometry rules. */
int ot_cuda_maxpool_bwd(float *dx, const float *dy, const int32_t *arg, int64_t planes, int64_t h, int64_t w, int kh,
                        int kw, int sh, int sw, int ph, int pw, int accumulate, void *stream);
/* ==== end of elementwise.cu, concat.cu, maxpool.cu ==== */

/* ==== transpose.cu: Transpose (kernels/shape_ops.c) of float tensors, rank <= 8
 * (docs/CUDA.md, "Transpose"). Bit for bit with the CPU op. ==== */
/* din: the input dims (host array of rank values), perm: output axis i = input
 * axis perm[i] (host array), e.g. shape_ops.c's merged tr_params (m, din, perm);
 * an unmerged shape is merged the same way first (size-1 dims dropped, runs of
 * input axes that stay adjacent joined). rank 0 is one element. An invalid
 * rank (> 8) or perm prints why and aborts (a programmer error). */
/* y (dims din[perm[i]]) = x (dims din) permuted. */
void ot_cuda_transpose_fwd(float *y, const float *x, int rank, const int64_t *din, const int *perm, void *stream);
/* dx (dims din) = or, accumulate, += dy (dims din[perm[i]]) permuted back;
 * accumulate 0 writes 0.0f + v (the bits of the CPU's add into its zeroed
 * gradient: -0 becomes +0). */
void ot_cuda_transpose_bwd(float *dx, const float *dy, int rank, const int64_t *din, const int *perm, int accumulate,
                           void *stream);
/* ==== end of transpose.cu ==== */

#ifdef __cplusplus
}
#endif

#endif
