/* cuda_tables.c: the CUDA device's op rows and its slab, loss and decode
 * tables (kernels/device_kernels.h), over the hand-written kernels
 * (cuda_kernels.h) and the convolution's library call (cuda_tables.h). The same
 * file is in both CUDA kernel libraries: with nvcc's kernels on a GPU, or with
 * the executor's on the CPU (docs/CUDA.md).
 *
 * Each row reads the parameters its op's infer parsed (kernels/op_params.h),
 * launches on the plan's compute stream and never touches tensor memory from
 * the host. Every backward follows the CPU row's write-or-add rule (ot_gin_set
 * for OT_OPF_GRAD_SET ops, add otherwise), so a gradient gets the CPU's bits
 * wherever the kernel keeps the CPU's order (docs/CUDA.md lists the
 * exceptions). What a kernel does not cover (a MaxPool stride, a Resize that
 * is not YOLOv5's nearest 2x, a training-mode BatchNormalization's extra
 * outputs) fails in prepare, at plan creation, naming what was expected. */
#include "cuda_tables.h"
#include "cuda_kernels.h"
#include "../op_params.h"
#include <stdlib.h>
#include <string.h>

static void *S(const ot_kctx *c) { return ot_backend_cuda_stream(c->p->be, OT_STREAM_COMPUTE); }
static int64_t numel_out(const ot_kctx *c, int i) { return ot_numel(ot_oshape(c, i)); }

static ot_status need_f32(ot_kctx *c, int i) {
    if (ot_idtype(c, i) == OT_F32) return OT_OK;
    return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input %d is %s; the CUDA device runs this op on float32 only", i,
                   ot_dtype_name(ot_idtype(c, i)));
}

/* ---- views: Reshape, Flatten, Identity, Squeeze, Unsqueeze ---- */
static ot_status view_fwd(ot_kctx *c) {
    size_t bytes = (size_t)numel_out(c, 0) * ot_dtype_size(ot_idtype(c, 0));
    ot_be_copy(c->p->be, ot_out(c, 0), ot_in(c, 0), bytes); /* nothing when the planner aliased them */
    return OT_OK;
}

/* gx += gy over n elements (the CPU's add_to): the accumulating gradient of a same-shape Add's operand. */
static void add_into(ot_kctx *c, float *gx, const float *gy, int64_t n) {
    if (n <= 0) return;
    ot_cuda_bcast p;
    int64_t d = n;
    ot_cuda_bcast_plan(&p, &d, 1, &d, 1);
    ot_cuda_binary_bwd(OT_CUDA_BIN_ADD, 0, gx, gy, NULL, NULL, &p, 1, S(c));
}

static ot_status view_bwd(ot_kctx *c) {
    float *gx = ot_gin(c, 0);
    const float *gy = ot_gout(c, 0);
    if (!gx || !gy || gx == gy || ot_idtype(c, 0) != OT_F32) return OT_OK;
    add_into(c, gx, gy, numel_out(c, 0));
    return OT_OK;
}
static const ot_op_impl view_row = {.forward = view_fwd, .backward = view_bwd};

/* ---- Sigmoid ---- */
static ot_status sigmoid_prepare(ot_kctx *c) { return need_f32(c, 0); }
static ot_status sigmoid_fwd(ot_kctx *c) {
    ot_cuda_sigmoid_fwd(ot_outf(c, 0), ot_inf(c, 0), numel_out(c, 0), S(c));
    return OT_OK;
}
static ot_status sigmoid_bwd(ot_kctx *c) {
    float *gx = ot_gin(c, 0);
    const float *gy = ot_gout(c, 0);
    if (gx && gy) ot_cuda_sigmoid_bwd(gx, gy, ot_outf(c, 0), numel_out(c, 0), 1, S(c)); /* the CPU adds */
    return OT_OK;
}
static const ot_op_impl sigmoid_row = {.prepare = sigmoid_prepare, .forward = sigmoid_fwd, .backward = sigmoid_bwd};

/* ---- Add, Mul (Mul also as the fused SiLU) ---- */
static ot_status bin_prepare(ot_kctx *c) {
    const bin_params *bp = c->params;
    OT_TRY(need_f32(c, 0));
    OT_TRY(need_f32(c, 1));
    if (bp->silu) return OT_OK;
    const ot_shape *a = ot_ishape(c, 0), *b = ot_ishape(c, 1);
    ot_cuda_bcast p;
    if (!ot_cuda_bcast_plan(&p, a->d, a->rank, b->d, b->rank))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "operands of rank %d and %d: the CUDA device broadcasts up to rank %d",
                       a->rank, b->rank, OT_CUDA_BCAST_RANK);
    return OT_OK;
}

static void bin_plan_of(const ot_kctx *c, ot_cuda_bcast *p) {
    const ot_shape *a = ot_ishape(c, 0), *b = ot_ishape(c, 1);
    ot_cuda_bcast_plan(p, a->d, a->rank, b->d, b->rank); /* checked by prepare */
}

static ot_status bin_fwd(ot_kctx *c) {
    const bin_params *bp = c->params;
    if (bp->numel == 0) return OT_OK;
    if (bp->silu) {
        const ot_dtype yt = c->p->dtype[c->n->out[0]]; /* half under --amp (core/runtime/passes.h ot_pass_half_act) */
        if (yt == OT_F16 || yt == OT_BF16)
            ot_cuda_silu_fwd_half(c->p->data[c->n->out[0]], ot_inf(c, bp->silu - 1), bp->numel, yt == OT_BF16, S(c));
        else ot_cuda_silu_fwd(ot_outf(c, 0), ot_inf(c, bp->silu - 1), bp->numel, S(c));
        return OT_OK;
    }
    ot_cuda_bcast p;
    bin_plan_of(c, &p);
    ot_cuda_binary_fwd(bp->kind == BIN_MUL ? OT_CUDA_BIN_MUL : OT_CUDA_BIN_ADD, ot_outf(c, 0), ot_inf(c, 0), ot_inf(c, 1), &p,
                       S(c));
    return OT_OK;
}

static ot_status bin_bwd(ot_kctx *c) {
    const bin_params *bp = c->params;
    const float *gy = ot_gout(c, 0);
    if (!gy || bp->numel == 0) return OT_OK;
    if (bp->silu) {
        int side = bp->silu - 1;
        float *gx = ot_gin(c, side);
        if (gx) ot_cuda_silu_bwd(gx, gy, ot_inf(c, side), bp->numel, !ot_gin_set(c, side), S(c));
        return OT_OK;
    }
    ot_cuda_bcast p;
    bin_plan_of(c, &p);
    int kind = bp->kind == BIN_MUL ? OT_CUDA_BIN_MUL : OT_CUDA_BIN_ADD;
    const float *A = kind == OT_CUDA_BIN_MUL ? ot_inf(c, 0) : NULL, *B = kind == OT_CUDA_BIN_MUL ? ot_inf(c, 1) : NULL;
    for (int side = 0; side < 2; side++) { /* A then B: an operand used twice (x * x) gets both, in that order */
        float *gx = ot_gin(c, side);
        if (!gx) continue;
        bool twice = side == 1 && c->n->in[0] == c->n->in[1];
        ot_cuda_binary_bwd(kind, side, gx, gy, A, B, &p, twice || !ot_gin_set(c, side), S(c));
    }
    return OT_OK;
}
static const ot_op_impl bin_row = {.prepare = bin_prepare, .forward = bin_fwd, .backward = bin_bwd};

/* ---- Concat ---- */
typedef struct concat_geom { int64_t outer, inner; } concat_geom;
static concat_geom concat_of(const ot_kctx *c) {
    const concat_params *cp = c->params;
    const ot_shape *y = ot_oshape(c, 0);
    concat_geom g = {1, 1};
    for (int a = 0; a < cp->axis; a++) g.outer *= y->d[a];
    for (int a = cp->axis + 1; a < y->rank; a++) g.inner *= y->d[a];
    return g;
}
/* A value stored in half precision under --amp (core/runtime/passes.h ot_pass_half_act): 0 float, 1 half, 2 bfloat16. */
static int half_kind(const ot_kctx *c, int vid) { return c->p->dtype[vid] == OT_F16 ? 1 : c->p->dtype[vid] == OT_BF16 ? 2 : 0; }

static ot_status concat_prepare(ot_kctx *c) {
    const int yk = half_kind(c, c->n->out[0]);
    for (int i = 0; i < c->n->n_in; i++) /* into a half y, inputs of its type too */
        if (!(yk && half_kind(c, c->n->in[i]) == yk)) OT_TRY(need_f32(c, i));
    return OT_OK;
}
static ot_status concat_fwd(ot_kctx *c) {
    const concat_params *cp = c->params;
    int n = c->n->n_in;
    const float **x = malloc(sizeof *x * (size_t)n);
    int64_t *ch = malloc(sizeof *ch * (size_t)n);
    int *xt = malloc(sizeof *xt * (size_t)n);
    if (!x || !ch || !xt) { free(x); free(ch); free(xt); return ot_fail(c->err, OT_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < n; i++) {
        x[i] = ot_inf(c, i);
        ch[i] = ot_ishape(c, i)->d[cp->axis];
        xt[i] = half_kind(c, c->n->in[i]) != 0;
    }
    concat_geom g = concat_of(c);
    const int yk = half_kind(c, c->n->out[0]);
    if (yk) ot_cuda_concat_fwd_half(c->p->data[c->n->out[0]], (const void *const *)x, xt, ch, n, g.outer, g.inner, yk == 2, S(c));
    else ot_cuda_concat_fwd(ot_outf(c, 0), x, ch, n, g.outer, g.inner, S(c));
    free(x); free(ch); free(xt);
    return OT_OK;
}
static ot_status concat_bwd(ot_kctx *c) {
    const concat_params *cp = c->params;
    const float *gy = ot_gout(c, 0);
    if (!gy) return OT_OK;
    int n = c->n->n_in;
    float **dx = malloc(sizeof *dx * (size_t)n);
    int64_t *ch = malloc(sizeof *ch * (size_t)n);
    int *acc = malloc(sizeof *acc * (size_t)n);
    if (!dx || !ch || !acc) { free(dx); free(ch); free(acc); return ot_fail(c->err, OT_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < n; i++) {
        dx[i] = ot_gin(c, i);
        ch[i] = ot_ishape(c, i)->d[cp->axis];
        acc[i] = !ot_gin_set(c, i);
    }
    concat_geom g = concat_of(c);
    ot_cuda_concat_bwd(dx, gy, ch, n, g.outer, g.inner, acc, S(c));
    free(dx); free(ch); free(acc);
    return OT_OK;
}
static const ot_op_impl concat_row = {.prepare = concat_prepare, .forward = concat_fwd, .backward = concat_bwd};

/* ---- MaxPool: stride 1, symmetric pads (YOLOv5's SPPF) ---- */
static ot_status maxpool_prepare(ot_kctx *c) {
    const pool_params *pp = c->params;
    OT_TRY(need_f32(c, 0));
    const ot_shape *x = ot_ishape(c, 0), *y = ot_oshape(c, 0);
    if (pp->sh != 1 || pp->sw != 1 || pp->dh != 1 || pp->dw != 1 || y->d[2] != x->d[2] + 2 * pp->pt - pp->kh + 1 ||
        y->d[3] != x->d[3] + 2 * pp->pl - pp->kw + 1 || x->d[2] * x->d[3] > INT32_MAX)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED,
                       "kernel %lldx%lld, strides %lld,%lld, dilations %lld,%lld: the CUDA device runs MaxPool with stride 1, "
                       "dilation 1 and symmetric pads (YOLOv5's SPPF)",
                       (long long)pp->kh, (long long)pp->kw, (long long)pp->sh, (long long)pp->sw, (long long)pp->dh,
                       (long long)pp->dw);
    return OT_OK;
}
static ot_status maxpool_fwd(ot_kctx *c) {
    const pool_params *pp = c->params;
    const ot_shape *x = ot_ishape(c, 0);
    int rc = ot_cuda_maxpool_fwd(ot_outf(c, 0), pp->arg, ot_inf(c, 0), x->d[0] * x->d[1], x->d[2], x->d[3], (int)pp->kh,
                                 (int)pp->kw, 1, 1, (int)pp->pt, (int)pp->pl, S(c));
    return rc ? ot_fail(c->err, OT_ERR_UNSUPPORTED, "MaxPool geometry not supported on the CUDA device") : OT_OK;
}
static ot_status maxpool_bwd(ot_kctx *c) {
    const pool_params *pp = c->params;
    float *gx = ot_gin(c, 0);
    const float *gy = ot_gout(c, 0);
    if (!gx || !gy) return OT_OK;
    if (!pp->arg) return ot_fail(c->err, OT_ERR_INTERNAL, "MaxPool backward without the forward's argmax");
    const ot_shape *x = ot_ishape(c, 0);
    int rc = ot_cuda_maxpool_bwd(gx, gy, pp->arg, x->d[0] * x->d[1], x->d[2], x->d[3], (int)pp->kh, (int)pp->kw, 1, 1,
                                 (int)pp->pt, (int)pp->pl, 1, S(c)); /* the CPU adds */
    return rc ? ot_fail(c->err, OT_ERR_UNSUPPORTED, "MaxPool geometry not supported on the CUDA device") : OT_OK;
}
static const ot_op_impl maxpool_row = {.prepare = maxpool_prepare, .forward = maxpool_fwd, .backward = maxpool_bwd};

/* ---- Resize / Upsample: nearest with an exact factor 2 on H and W ---- */
static ot_status resize_prepare(ot_kctx *c) {
    const rs_params *p = c->params;
    const int yk = half_kind(c, c->n->out[0]), xk = half_kind(c, c->n->in[0]);
    if (xk && xk != yk) /* the planner gives x half storage only under a half y (core/runtime/passes.h) */
        return ot_fail(c->err, OT_ERR_INTERNAL, "a %s input needs an output of its type", ot_dtype_name(c->p->dtype[c->n->in[0]]));
    int r = p->rank;
    bool ok = r == 4 && p->es == sizeof(float) && p->factor[0] == 1 && p->factor[1] == 1 && p->factor[2] == 2 &&
              p->factor[3] == 2;
    if (!ok)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED,
                       "the CUDA device runs Resize as a float32 (N, C, H, W) nearest upsample with an exact factor 2 on H "
                       "and W (YOLOv5's nn.Upsample); this one has rank %d and factors %lld,%lld,%lld,%lld (0: not an "
                       "integer factor)",
                       r, (long long)p->factor[0], (long long)(r > 1 ? p->factor[1] : 0), (long long)(r > 2 ? p->factor[2] : 0),
                       (long long)(r > 3 ? p->factor[3] : 0));
    return OT_OK;
}
static ot_status resize_fwd(ot_kctx *c) {
    const rs_params *p = c->params;
    const int yk = half_kind(c, c->n->out[0]), xk = half_kind(c, c->n->in[0]);
    if (yk) /* a half y (--amp): x float or of y's type */
        ot_cuda_upsample2x_fwd_half(c->p->data[c->n->out[0]], ot_inf(c, 0), xk != 0, p->in[0] * p->in[1], p->in[2], p->in[3], yk == 2,
                                    S(c));
    else ot_cuda_upsample2x_fwd(ot_outf(c, 0), ot_inf(c, 0), p->in[0] * p->in[1], p->in[2], p->in[3], S(c));
    return OT_OK;
}
static ot_status resize_bwd(ot_kctx *c) {
    const rs_params *p = c->params;
    float *gx = ot_gin(c, 0);
    const float *gy = ot_gout(c, 0);
    if (gx && gy) ot_cuda_upsample2x_bwd(gx, gy, p->in[0] * p->in[1], p->in[2], p->in[3], 1, S(c)); /* the CPU adds */
    return OT_OK;
}
static const ot_op_impl resize_row = {.prepare = resize_prepare, .forward = resize_fwd, .backward = resize_bwd};

/* ---- BatchNormalization ----
 * SyncBatchNorm (ot_bn_sum set: --sync-bn over data-parallel ranks): the split
 * kernels with their small per-channel double buffer (2C + 1 doubles, in the
 * plan's workspace; the kernels write this rank's element count in its last
 * slot) summed over the ranks in place between them. With the plan's device sum
 * (bn_dev_sum: the trainer's communicator, kernels/device_kernels.h's allreduce
 * sum_f64) the sum is enqueued on the compute stream (NCCL on a GPU, MPI on the
 * executor): no host round trip. Otherwise through the host callback
 * (ot_dist_sum_f64): downloaded (which waits for the compute stream), summed,
 * uploaded. Two sums per forward and one per backward, a few KB each, the
 * buffer layouts of kernels/batchnorm.c's CPU path. docs/CUDA.md, "SyncBatchNorm". */
static size_t bn_stats_bytes(const bn_params *p) { return sizeof(double) * (size_t)(2 * p->c + 1); }

/* x's type for the training kernels: 0 float, 1 half, 2 bfloat16 (a convolution's output stored in half precision
 * under --amp, core/runtime/passes.c's ot_pass_half_act). */
static int bn_xt(ot_kctx *c) { return half_kind(c, c->n->in[0]); }

static ot_status bn_prepare(ot_kctx *c) {
    const bn_params *p = c->params;
    for (int i = p->inplace_stats && bn_xt(c) ? 1 : 0; i < 5; i++) OT_TRY(need_f32(c, i)); /* training: x may be half */
    if (p->training && !p->inplace_stats)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED,
                       "training_mode=1 outside training: the CUDA device runs BatchNormalization in inference form, or with "
                       "batch statistics in a training plan");
    if (p->inplace_stats && c->n->n_out > 1)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "%d outputs: the CUDA device's training BatchNormalization has output 0 only "
                       "(the running statistics are updated in place)", c->n->n_out);
    /* the synchronised form's stats buffer: synchronisation is set after plan creation (ot_autograd_set_bn_sync) */
    if (p->inplace_stats && bn_stats_bytes(p) > c->p->ws_bytes) c->p->ws_bytes = bn_stats_bytes(p);
    return OT_OK;
}

/* dev[lo, lo + n) summed over the ranks, in place: on the device when the plan has a device sum, else through
 * the host. */
static ot_status bn_sum_ranks(ot_kctx *c, double *dev, int64_t lo, int64_t n) {
    if (c->p->bn_dev_sum) return c->p->bn_dev_sum(c->p->bn_dev_ctx, dev + lo, n, c->err);
    void (*sum)(double *, int64_t) = ot_bn_sum(c);
    double *h = malloc(sizeof(double) * (size_t)n);
    if (!h) abort(); /* a few KB; a failure cannot be reported mid-step on one rank only (as the CPU's sync path) */
    ot_backend *be = c->p->be;
    size_t bytes = sizeof(double) * (size_t)n;
    ot_be_download(be, h, dev + lo, bytes);
    sum(h, n);
    ot_be_upload(be, dev + lo, h, bytes);
    free(h);
    return OT_OK;
}

static ot_status bn_fwd(ot_kctx *c) {
    const bn_params *p = c->params;
    if (p->inplace_stats && ot_bn_sum(c)) {
        double *st = c->p->ws;
        const void *x = ot_inf(c, 0);
        const int xt = bn_xt(c);
        ot_cuda_bn_sync_fwd_sum(st, x, xt, p->n, p->c, p->s, S(c));
        OT_TRY(bn_sum_ranks(c, st, 0, p->c + 1));
        ot_cuda_bn_sync_fwd_sqdev(st, x, xt, p->n, p->c, p->s, S(c));
        OT_TRY(bn_sum_ranks(c, st, p->c + 1, p->c));
        ot_cuda_bn_sync_fwd_apply(ot_outf(c, 0), p->mean, p->invstd, (float *)ot_inf(c, 3), (float *)ot_inf(c, 4), x, xt,
                                  ot_inf(c, 1), ot_inf(c, 2), st, p->n, p->c, p->s, p->eps, p->momentum, S(c));
    } else if (p->inplace_stats)
        ot_cuda_bn_train_fwd(ot_outf(c, 0), p->mean, p->invstd, (float *)ot_inf(c, 3), (float *)ot_inf(c, 4), ot_inf(c, 0),
                             bn_xt(c), ot_inf(c, 1), ot_inf(c, 2), p->n, p->c, p->s, p->eps, p->momentum, S(c));
    else
        ot_cuda_bn_infer_fwd(ot_outf(c, 0), ot_inf(c, 0), ot_inf(c, 1), ot_inf(c, 2), ot_inf(c, 3), ot_inf(c, 4), p->n, p->c,
                             p->s, p->eps, S(c));
    return OT_OK;
}
static ot_status bn_bwd(ot_kctx *c) {
    const bn_params *p = c->params;
    const float *dy = ot_gout(c, 0);
    if (!dy) return OT_OK;
    if (!p->inplace_stats)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "backward of the inference form is not supported (train with batch statistics)");
    if (ot_bn_sum(c)) { /* every rank sums, dx or not (the same collectives in the same order) */
        double *st = c->p->ws;
        ot_cuda_bn_sync_bwd_sums(st, ot_gin(c, 1), ot_gin(c, 2), dy, ot_inf(c, 0), bn_xt(c), p->mean, p->invstd, p->n, p->c, p->s, S(c));
        OT_TRY(bn_sum_ranks(c, st, 0, 2 * p->c + 1));
        ot_cuda_bn_sync_bwd_dx(ot_gin(c, 0), ot_gin_set(c, 0), dy, ot_inf(c, 0), bn_xt(c), ot_inf(c, 1), p->mean, p->invstd, st, p->n,
                               p->c, p->s, S(c));
        return OT_OK;
    }
    ot_cuda_bn_train_bwd(ot_gin(c, 0), ot_gin_set(c, 0), ot_gin(c, 1), ot_gin(c, 2), dy, ot_inf(c, 0), bn_xt(c), ot_inf(c, 1), p->mean,
                         p->invstd, p->n, p->c, p->s, S(c));
    return OT_OK;
}
static const ot_op_impl bn_row = {.prepare = bn_prepare, .forward = bn_fwd, .backward = bn_bwd};

/* ---- Transpose ---- */
static ot_status transpose_prepare(ot_kctx *c) {
    const tr_params *tp = c->params;
    if (tp->es != sizeof(float))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "elements of %zu bytes: the CUDA device transposes 4-byte elements", tp->es);
    return OT_OK;
}
static ot_status transpose_fwd(ot_kctx *c) {
    const tr_params *tp = c->params;
    ot_cuda_transpose_fwd(ot_outf(c, 0), ot_inf(c, 0), tp->m, tp->din, tp->perm, S(c));
    return OT_OK;
}
static ot_status transpose_bwd(ot_kctx *c) {
    const tr_params *tp = c->params;
    float *gx = ot_gin(c, 0);
    const float *gy = ot_gout(c, 0);
    if (gx && gy && ot_idtype(c, 0) == OT_F32) ot_cuda_transpose_bwd(gx, gy, tp->m, tp->din, tp->perm, 1, S(c)); /* the CPU adds */
    return OT_OK;
}
static const ot_op_impl transpose_row = {.prepare = transpose_prepare, .forward = transpose_fwd, .backward = transpose_bwd};

/* ---- Split (the inference Detect head's decode: forward only) ---- */
static ot_status split_prepare(ot_kctx *c) {
    const split_params *sp = c->params;
    if (sp->es != sizeof(float))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "elements of %zu bytes: the CUDA device splits 4-byte elements", sp->es);
    return OT_OK;
}
static ot_status split_fwd(ot_kctx *c) {
    const split_params *sp = c->params;
    const ot_shape *xs = ot_ishape(c, 0);
    int64_t outer = 1, inner = 1, ch[SPLIT_MAX];
    float *y[SPLIT_MAX];
    for (int k = 0; k < sp->axis; k++) outer *= xs->d[k];
    for (int k = sp->axis + 1; k < xs->rank; k++) inner *= xs->d[k];
    for (int i = 0; i < sp->n; i++) {
        y[i] = ot_has_out(c, i) ? ot_outf(c, i) : NULL;
        ch[i] = sp->size[i];
    }
    ot_cuda_concat_bwd(y, ot_inf(c, 0), ch, sp->n, outer, inner, NULL, S(c)); /* each output = its slice, copied */
    return OT_OK;
}
static const ot_op_impl split_row = {.prepare = split_prepare, .forward = split_fwd};

/* ---- Pow with the constant exponent 2 (the inference Detect head's decode): x * x, the CPU's bits ---- */
static ot_status pow_prepare(ot_kctx *c) {
    const bin_params *bp = c->params;
    const float *e = ot_iconst(c, 1);
    if (bp->ta != OT_F32 || bp->tb != OT_F32 || !e || ot_numel(ot_ishape(c, 1)) != 1 || e[0] != 2.0f)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED,
                       "the CUDA device runs Pow as float32 x ** 2 with a constant scalar exponent (YOLOv5's decode)");
    return OT_OK;
}
static ot_status pow_fwd(ot_kctx *c) {
    const ot_shape *x = ot_ishape(c, 0);
    ot_cuda_bcast p;
    ot_cuda_bcast_plan(&p, x->d, x->rank, x->d, x->rank);
    ot_cuda_binary_fwd(OT_CUDA_BIN_MUL, ot_outf(c, 0), ot_inf(c, 0), ot_inf(c, 0), &p, S(c));
    return OT_OK;
}
static const ot_op_impl pow_row = {.prepare = pow_prepare, .forward = pow_fwd};

/* ---- the op table: every op YOLOv5 training and validation runs (the rest fold at plan time) ---- */
static const ot_op_row op_rows[] = {
    {"Conv", &ot_cuda_conv},
    {"BatchNormalization", &bn_row},
    {"Sigmoid", &sigmoid_row},
    {"Add", &bin_row},
    {"Mul", &bin_row},
    {"Concat", &concat_row},
    {"MaxPool", &maxpool_row},
    {"Resize", &resize_row},
    {"Upsample", &resize_row},
    {"Transpose", &transpose_row},
    {"Split", &split_row},
    {"Pow", &pow_row},
    {"Reshape", &view_row},
    {"Flatten", &view_row},
    {"Identity", &view_row},
    {"Squeeze", &view_row},
    {"Unsqueeze", &view_row},
};

/* ---- the slab kernels ---- */
static void *BS(ot_backend *be) { return ot_backend_cuda_stream(be, OT_STREAM_COMPUTE); }

static void cuda_sgd(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, const float *g, float *buf,
                     const ot_sgd_args *a) {
    ot_cuda_step_extra x = {0};
    ot_cuda_sgd(seg, nseg, p, (float *)g, buf, a, &x, BS(be));
}
static void cuda_adam(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, const float *g, float *m, float *v,
                      const ot_adam_args *a) {
    ot_cuda_step_extra x = {0};
    ot_cuda_adam(seg, nseg, p, (float *)g, m, v, a, &x, BS(be));
}
static void cuda_ema(ot_backend *be, float *ema, const float *model, int64_t n, float d, float omd) {
    ot_cuda_ema(ema, model, n, d, omd, BS(be));
}

static size_t cuda_clip_scratch(int nseg) { return ot_cuda_clip_scratch_bytes(nseg); }

static void cuda_clip(ot_backend *be, const ot_slab_seg *seg, int nseg, float *g, float max_norm, float *out, void *scratch) {
    ot_cuda_clip_norm(seg, nseg, g, max_norm, out, (double *)scratch, BS(be));
    ot_cuda_clip_scale(seg, nseg, g, out, BS(be));
}

static void cuda_clip_norm(ot_backend *be, const ot_slab_seg *seg, int nseg, const float *g, float max_norm, float *out,
                           void *scratch) {
    ot_cuda_clip_norm(seg, nseg, g, max_norm, out, (double *)scratch, BS(be));
}
static void cuda_sgd_fused(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, float *g, float *buf,
                           const ot_sgd_args *a, const float *clip, float *ema, float d, float omd) {
    ot_cuda_step_extra x = {.clip = clip, .scale_grad = 0, .ema = ema, .ema_d = d, .ema_omd = omd};
    ot_cuda_sgd(seg, nseg, p, g, buf, a, &x, BS(be));
}
static void cuda_adam_fused(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, float *g, float *m, float *v,
                            const ot_adam_args *a, const float *clip, float *ema, float d, float omd) {
    ot_cuda_step_extra x = {.clip = clip, .scale_grad = 0, .ema = ema, .ema_d = d, .ema_omd = omd};
    ot_cuda_adam(seg, nseg, p, g, m, v, a, &x, BS(be));
}

static void cuda_sgd_fused_amp(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, float *g, float *buf,
                               const ot_sgd_args *a, const float *clip, float *ema, float d, float omd, const ot_amp_state *amp) {
    ot_cuda_step_extra x = {.clip = clip, .scale_grad = 0, .ema = ema, .ema_d = d, .ema_omd = omd, .amp = amp};
    ot_cuda_sgd(seg, nseg, p, g, buf, a, &x, BS(be));
}
static void cuda_adam_fused_amp(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, float *g, float *m, float *v,
                                const ot_adam_args *a, const float *clip, float *ema, float d, float omd,
                                const ot_amp_state *amp) {
    ot_cuda_step_extra x = {.clip = clip, .scale_grad = 0, .ema = ema, .ema_d = d, .ema_omd = omd, .amp = amp};
    ot_cuda_adam(seg, nseg, p, g, m, v, a, &x, BS(be));
}
static void cuda_amp_scale(ot_backend *be, float *x, int64_t n, const ot_amp_state *st) { ot_cuda_amp_scale(x, n, st, BS(be)); }
static void cuda_amp_unscale(ot_backend *be, float *g, int64_t n, ot_amp_state *st) { ot_cuda_amp_unscale(g, n, st, BS(be)); }
static void cuda_amp_update(ot_backend *be, ot_amp_state *st, float growth, float backoff, int interval) {
    ot_cuda_amp_update(st, growth, backoff, interval, BS(be));
}

static const ot_slab_kernels slab = {
    .sgd = cuda_sgd, .adam = cuda_adam, .ema = cuda_ema, .clip = cuda_clip, .clip_scratch = cuda_clip_scratch,
    .clip_norm = cuda_clip_norm, .sgd_fused = cuda_sgd_fused, .adam_fused = cuda_adam_fused,
    .sgd_fused_amp = cuda_sgd_fused_amp, .adam_fused_amp = cuda_adam_fused_amp,
    .amp_scale = cuda_amp_scale, .amp_unscale = cuda_amp_unscale, .amp_update = cuda_amp_update,
};

/* ---- the loss and the decode ---- */
static void loss_targets(ot_backend *be, const ot_yolo_loss_args *A, int l) { ot_cuda_yolo_loss_targets(A, l, BS(be)); }
static void loss_objectness(ot_backend *be, const ot_yolo_loss_args *A, int l) { ot_cuda_yolo_loss_objectness(A, l, BS(be)); }
static void loss_items(ot_backend *be, const ot_yolo_loss_args *A) { ot_cuda_yolo_loss_items(A, BS(be)); }
static const ot_yolo_loss_kernels loss = {.name = "cuda", .targets = loss_targets, .objectness = loss_objectness, .items = loss_items};

static void decode_run(ot_backend *be, const float *const *maps, const ot_decode_args *a, float *pred) {
    ot_cuda_decode(maps, a, pred, BS(be));
}
static const ot_decode_kernels decode = {.decode = decode_run};

/* The gradient all-reduce: comm_gpu.c (NCCL) or comm_emu.c (MPI on the executor's memory). */
extern const ot_allreduce_kernels ot_cuda_allreduce;

static const ot_device_kernels tables = {
    .name = ot_cuda_library_name,
    .ops = op_rows,
    .n_ops = (int)(sizeof op_rows / sizeof op_rows[0]),
    .slab = &slab,
    .loss = &loss,
    .decode = &decode,
    .allreduce = &ot_cuda_allreduce,
};

const ot_device_kernels *ot_cuda_kernels(void) { return &tables; }

void ot_cuda_kernels_install(void) {
    if (!ot_device_kernels_register(OT_DEV_CUDA, &tables)) abort(); /* a row names an unknown op: a build error */
    ot_backend_set_gpu(ot_cuda_library_open, ot_cuda_library_real);
}
