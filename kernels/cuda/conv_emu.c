/* conv_emu.c: Conv on the CUDA device under the CPU executor (onnxtrain_cudaemu):
 * the names conv_gpu.c exports, answered by our CPU convolution (ot_cpu_conv,
 * kernels/conv.c) on the same buffers. docs/CUDA.md, "Convolution (cuDNN)".
 *
 * The executor's device memory is cpu-guard memory, inaccessible to host code
 * outside ot_be_enter(ot_backend_cpu_guard()) ... ot_be_leave, so forward and
 * backward run the CPU row inside that bracket. prepare only builds library
 * state (the CPU row's oneDNN primitives, its workspace need) and touches no
 * tensor memory; release frees what it built. The CPU row honours ot_gin_set and
 * adds dw / db exactly as conv_gpu.c's contract says, so both libraries give
 * the same semantics.
 *
 * Mixed precision (core/config.h amp, train --amp; docs/CUDA.md "Mixed
 * precision"): a convolution of half tensors with FP32 accumulation, as cuDNN
 * runs it on the GPU, computed as the FP32 convolution of values rounded to
 * half (or bfloat16) precision by amp.cu's kernels: the input rounded in place
 * (activations are stored in half under autocast), the weights rounded into a
 * copy (the FP32 master weights stay), the output rounded in place, then the
 * bias rounded and added to it and the sum rounded (autocast's half add).
 * Backward: dy rounded in place; dx rounded after it is written or added; the
 * weight and bias gradients computed into zeroed buffers, rounded, and added to
 * the FP32 gradients they accumulate into (autocast's cast back to FP32).
 * With --channels-last (core/config.h channels_last; ungrouped convolutions),
 * every rounding except the bias gradient's goes through conv_gpu.c's NHWC
 * half copies instead: amp.cu's half_nhwc into a copy in the plan's workspace
 * (after this node's own CPU scratch) and half_from_nhwc back, so the GPU's
 * transposing kernels run in CI inside a training step and give the same bits
 * as the NCHW roundings. Activations the planner stores in half precision
 * (core/runtime/passes.h ot_pass_half_act): a half x is widened into a float
 * copy in the workspace for the CPU convolution (forward and backward); a half
 * y is computed into a float copy there and converted into place (NHWC: through
 * conv_gpu.c's moves), the values conv_gpu.c's half cuDNN tensors hold. */
#include "../conv.h"
#include "../../core/config.h"
#include "cuda_kernels.h"
#include "cuda_tables.h"
#include <stdio.h>
#include <stdlib.h>

extern const ot_op_impl ot_cpu_conv; /* kernels/conv.c */

/* The executor's per-node state, under the name conv_gpu.c uses for its cuDNN state (never linked together). */
struct ot_conv_cudnn {
    int bf16;        /* 0 fp16, 1 bfloat16 */
    int64_t nw, nb;  /* weight and bias floats */
    float *wr;       /* device: the rounded weights, then the rounded bias */
    float *gsave;    /* device, training plans: the weight and bias gradients accumulated so far */
    int nhwc;        /* --channels-last: roundings through NHWC half copies at byte ws_off of the plan's workspace */
    size_t ws_off;
    int yhalf;       /* y stored in half precision (ot_pass_half_act): the CPU writes float at byte ws_yf of the
                      * workspace, converted into y as conv_gpu.c's cuDNN call would write it */
    size_t ws_yf;
    int xhalf;       /* x stored in half precision (ot_pass_half_act): the CPU reads its float values from byte ws_xf */
    size_t ws_xf;
};

/* The executor computes in FP32 (the CPU convolution); TF32 has no meaning here. */
void ot_cuda_conv_set_tf32(int on) { (void)on; }

static ot_status emu_prepare(ot_kctx *c) {
    if (ot_cpu_conv.prepare) OT_TRY(ot_cpu_conv.prepare(c));
    ot_conv_params *p = c->params;
    int amp = ot_config_get()->amp;
    if (!amp || p->cudnn) return OT_OK;
    struct ot_conv_cudnn *a = calloc(1, sizeof *a);
    if (!a) return ot_fail(c->err, OT_ERR_NOMEM, "out of memory");
    a->bf16 = amp == 2;
    a->nw = p->m * (p->c / p->group) * p->kh * p->kw;
    a->nb = p->has_bias ? p->m : 0;
    size_t bytes = sizeof(float) * (size_t)(a->nw + a->nb);
    a->wr = ot_plan_state(c, bytes);
    a->gsave = ot_training(c) ? ot_plan_state(c, bytes) : NULL; /* inference plans have no backward */
    if (!a->wr || (ot_training(c) && !a->gsave)) { free(a); return ot_fail(c->err, OT_ERR_NOMEM, "out of device memory"); }
    a->nhwc = ot_config_get()->channels_last && p->group == 1;
    const ot_dtype yt = c->p->dtype[c->n->out[0]], xt = c->p->dtype[c->n->in[0]];
    a->yhalf = yt != OT_F32;
    a->xhalf = xt != OT_F32;
    if ((a->yhalf && (p->has_bias || (yt == OT_BF16) != (a->bf16 != 0))) || (a->xhalf && (xt == OT_BF16) != (a->bf16 != 0))) {
        const ot_dtype bad = a->yhalf ? yt : xt;
        free(a);
        return ot_fail(c->err, OT_ERR_INTERNAL, "Conv on %s: a %s input or output needs --amp of that type (an output: no bias)",
                       c->p->be->name, ot_dtype_name(bad));
    }
    /* this node's CPU convolution uses at most the workspace raised so far: the float output and the copies go
     * after it */
    const int64_t ny = p->n * p->m * p->oh * p->ow;
    size_t off = (c->p->ws_bytes + 255u) & ~(size_t)255u;
    if (a->xhalf) {
        a->ws_xf = off;
        off = (off + sizeof(float) * (size_t)(p->n * p->c * p->h * p->w) + 255u) & ~(size_t)255u;
    }
    if (a->yhalf) {
        a->ws_yf = off;
        off = (off + sizeof(float) * (size_t)ny + 255u) & ~(size_t)255u;
    }
    if (a->nhwc) {
        int64_t most = p->n * p->c * p->h * p->w;
        if (ny > most) most = ny;
        if (a->nw > most) most = a->nw;
        a->ws_off = off;
        off += 2u * (size_t)most;
    }
    if (off > c->p->ws_bytes) c->p->ws_bytes = off;
    p->cudnn = a;
    return OT_OK;
}

/* A half x's values in float at byte ws_xf of the workspace (with --channels-last through conv_gpu.c's move into
 * an NHWC copy and back), put in x's place in the plan for the CPU convolution; returns x's own storage. */
static void *x_as_float(ot_kctx *c, const struct ot_conv_cudnn *a) {
    const ot_conv_params *p = c->params;
    void *xh = c->p->data[c->n->in[0]];
    float *xf = (float *)((unsigned char *)c->p->ws + a->ws_xf);
    const int64_t hw = p->h * p->w, nx = p->n * p->c * hw;
    if (a->nhwc) {
        uint16_t *t = (uint16_t *)((unsigned char *)c->p->ws + a->ws_off);
        ot_cuda_half_move_to_nhwc(t, xh, p->n, p->c, hw, NULL);
        ot_cuda_half_from_nhwc(xf, t, NULL, p->n, p->c, hw, a->bf16, 0, 0, NULL);
    } else if (a->bf16) ot_cuda_bf16_to_f32(xf, xh, nx, NULL);
    else ot_cuda_f16_to_f32(xf, xh, nx, NULL);
    c->p->data[c->n->in[0]] = xf;
    return xh;
}

/* v (nb, ch, sp) rounded to half precision through an NHWC half copy and back into dst: with round_src the copy
 * also rounds src in place; with bias half_bias's add; with saved dst = saved + the rounded values. */
static void via_nhwc(ot_kctx *c, const struct ot_conv_cudnn *a, float *dst, float *src, int round_src, const float *bias,
                     const float *saved, int64_t nb, int64_t ch, int64_t sp) {
    uint16_t *t = (uint16_t *)((unsigned char *)c->p->ws + a->ws_off);
    ot_cuda_half_nhwc(src, round_src ? src : NULL, t, nb, ch, sp, a->bf16, NULL);
    if (saved) ot_be_copy(c->p->be, dst, saved, sizeof(float) * (size_t)(nb * ch * sp));
    ot_cuda_half_from_nhwc(dst, t, bias, nb, ch, sp, a->bf16, saved != NULL, 0, NULL);
}

static int64_t numel_of(const ot_kctx *c, int vid) { return ot_numel(&c->p->shape[vid]); }

/* The weights rounded into a->wr and put in their place in the plan, a zero bias after them (the forward adds
 * the bias itself, as autocast adds a half bias to the half output; the backward's bias gradient does not read
 * it); ow / ob get the originals. */
static void swap_in_rounded(ot_kctx *c, struct ot_conv_cudnn *a, void **ow, void **ob) {
    const ot_conv_params *p = c->params;
    if (a->nhwc) via_nhwc(c, a, a->wr, (float *)ot_inf(c, 1), 0, NULL, NULL, p->m, p->c, p->kh * p->kw);
    else ot_cuda_round_half(a->wr, ot_inf(c, 1), a->nw, a->bf16, NULL);
    *ow = c->p->data[c->n->in[1]];
    c->p->data[c->n->in[1]] = a->wr;
    if (p->has_bias) {
        ot_be_memset(c->p->be, a->wr + a->nw, 0, sizeof(float) * (size_t)a->nb);
        *ob = c->p->data[c->n->in[2]];
        c->p->data[c->n->in[2]] = a->wr + a->nw;
    }
}
static void swap_out(ot_kctx *c, void *ow, void *ob) {
    c->p->data[c->n->in[1]] = ow;
    if (((const ot_conv_params *)c->params)->has_bias) c->p->data[c->n->in[2]] = ob;
}

static ot_status cpu_call(ot_kctx *c, ot_status (*fn)(ot_kctx *)) {
    ot_backend *g = ot_backend_cpu_guard();
    ot_be_enter(g);
    ot_status st = fn(c);
    ot_be_leave(g);
    return st;
}

/* ---- graphs: while a capture is open the call is recorded (a copy of its context) and run at each replay,
 * as cuDNN's calls become nodes of a CUDA graph ---- */
typedef struct rec_conv {
    ot_kctx c;
    ot_error err;
    ot_status (*fn)(ot_kctx *);
} rec_conv;
static void rec_conv_run(void *p) {
    rec_conv *r = p;
    r->c.err = &r->err;
    if (r->fn(&r->c)) { /* it ran when the plan was first run: a failure now is a broken machine */
        fprintf(stderr, "onnx-train: cuda-emu: a replayed Conv failed: %s\n", r->err.msg);
        abort();
    }
}
static bool recorded(ot_kctx *c, ot_status (*fn)(ot_kctx *)) {
    if (!ot_emu_capturing()) return false;
    rec_conv *r = malloc(sizeof *r);
    if (!r) { fprintf(stderr, "onnx-train: cuda-emu: out of memory recording a graph\n"); abort(); }
    r->c = *c;
    r->fn = fn;
    ot_emu_record(rec_conv_run, r, free);
    return true;
}
static ot_status emu_forward_now(ot_kctx *c);
static ot_status emu_backward_now(ot_kctx *c);
static ot_status emu_forward(ot_kctx *c) { return recorded(c, emu_forward_now) ? OT_OK : emu_forward_now(c); }
static ot_status emu_backward(ot_kctx *c) { return recorded(c, emu_backward_now) ? OT_OK : emu_backward_now(c); }

static ot_status emu_forward_now(ot_kctx *c) {
    struct ot_conv_cudnn *a = ((ot_conv_params *)c->params)->cudnn;
    if (!a) return cpu_call(c, ot_cpu_conv.forward);
    const ot_conv_params *p = c->params;
    float *x = (float *)ot_inf(c, 0);
    void *xh = NULL; /* a half x: already of half precision */
    if (a->xhalf) xh = x_as_float(c, a);
    else if (a->nhwc) via_nhwc(c, a, x, x, 1, NULL, NULL, p->n, p->c, p->h * p->w);
    else ot_cuda_round_half(x, x, numel_of(c, c->n->in[0]), a->bf16, NULL);
    void *ow = NULL, *ob = NULL;
    swap_in_rounded(c, a, &ow, &ob);
    void *yh = c->p->data[c->n->out[0]];
    if (a->yhalf) c->p->data[c->n->out[0]] = (unsigned char *)c->p->ws + a->ws_yf;
    ot_status st = cpu_call(c, ot_cpu_conv.forward);
    swap_out(c, ow, ob);
    if (xh) c->p->data[c->n->in[0]] = xh;
    float *y = ot_outf(c, 0);
    if (a->yhalf) { /* y into its half storage: the conversion rounds, as conv_gpu.c's half cuDNN output */
        c->p->data[c->n->out[0]] = yh;
        if (a->nhwc) { /* through the NHWC copy and the move conv_gpu.c makes */
            uint16_t *t = (uint16_t *)((unsigned char *)c->p->ws + a->ws_off);
            ot_cuda_half_nhwc(y, NULL, t, p->n, p->m, p->oh * p->ow, a->bf16, NULL);
            ot_cuda_half_move_from_nhwc(yh, t, p->n, p->m, p->oh * p->ow, NULL);
        } else if (a->bf16) ot_cuda_f32_to_bf16(yh, y, numel_of(c, c->n->out[0]), NULL);
        else ot_cuda_f32_to_f16(yh, y, numel_of(c, c->n->out[0]), NULL);
        return st;
    }
    const float *bias = p->has_bias ? ot_inf(c, 2) : NULL;
    if (a->nhwc) {
        via_nhwc(c, a, y, y, 0, bias, NULL, p->n, p->m, p->oh * p->ow);
        return st;
    }
    const int64_t ny = numel_of(c, c->n->out[0]);
    ot_cuda_round_half(y, y, ny, a->bf16, NULL);
    if (bias) ot_cuda_half_bias(y, bias, ny, p->oh * p->ow, p->m, a->bf16, NULL);
    return st;
}

static ot_status emu_backward_now(ot_kctx *c) {
    const ot_conv_params *p = c->params;
    struct ot_conv_cudnn *a = p->cudnn;
    if (!a) return cpu_call(c, ot_cpu_conv.backward);
    float *dy = (float *)ot_gout(c, 0);
    if (!dy) return OT_OK;
    if (a->nhwc) via_nhwc(c, a, dy, dy, 1, NULL, NULL, p->n, p->m, p->oh * p->ow);
    else ot_cuda_round_half(dy, dy, numel_of(c, c->n->out[0]), a->bf16, NULL);
    float *dw = ot_gin(c, 1), *db = p->has_bias ? ot_gin(c, 2) : NULL;
    ot_backend *be = c->p->be;
    if (dw) { ot_be_copy(be, a->gsave, dw, sizeof(float) * (size_t)a->nw); ot_be_memset(be, dw, 0, sizeof(float) * (size_t)a->nw); }
    if (db) { ot_be_copy(be, a->gsave + a->nw, db, sizeof(float) * (size_t)a->nb); ot_be_memset(be, db, 0, sizeof(float) * (size_t)a->nb); }
    void *xh = a->xhalf ? x_as_float(c, a) : NULL; /* the weight gradient reads x */
    void *ow = NULL, *ob = NULL;
    swap_in_rounded(c, a, &ow, &ob);
    ot_status st = cpu_call(c, ot_cpu_conv.backward);
    swap_out(c, ow, ob);
    if (xh) c->p->data[c->n->in[0]] = xh;
    float *dx = ot_gin(c, 0);
    if (dx && a->nhwc) via_nhwc(c, a, dx, dx, 0, NULL, NULL, p->n, p->c, p->h * p->w);
    else if (dx) ot_cuda_round_half(dx, dx, numel_of(c, c->n->in[0]), a->bf16, NULL);
    if (dw && a->nhwc) via_nhwc(c, a, dw, dw, 0, NULL, a->gsave, p->m, p->c, p->kh * p->kw);
    else if (dw) ot_cuda_round_add(dw, a->gsave, a->nw, a->bf16, NULL);
    if (db) ot_cuda_round_add(db, a->gsave + a->nw, a->nb, a->bf16, NULL);
    return st;
}

static void emu_release(void *params) {
    ot_conv_params *p = params;
    free(p->cudnn); /* its device buffers are plan state, freed with the plan */
    p->cudnn = NULL;
    if (ot_cpu_conv.release) ot_cpu_conv.release(params);
}

const ot_op_impl ot_cuda_conv = {
    .prepare = emu_prepare, .forward = emu_forward, .backward = emu_backward, .release = emu_release,
};
