/* conv.c: Conv (ONNX opset 1-18, 2-D) on the CPU: im2col + one GEMM per
 * image and group (Chellapilla et al. 2006; darknet, Caffe). 1x1 stride-1
 * unpadded convolutions skip im2col. Backward: dW = dY . col^T, dX = col2im(W^T . dY),
 * db = sum dY, accumulated (dX written instead when the op is its only writer,
 * ot_gin_set). Inference plans, and the k>1 convolutions of training plans, run
 * oneDNN convolution primitives instead where oneDNN accepts the geometry (see
 * "oneDNN convolution primitives" below); im2col stays the fallback. This is the
 * CPU implementation (ot_cpu_conv); the CUDA device's is kernels/cuda/conv_gpu.c
 * (cuDNN), answered by this one under the CPU executor (conv_emu.c). */
#include "conv.h"
#include "../core/config.h"
#include "gemm.h"
#include "ops.h"
#include <stdlib.h>
#include <string.h>

/* ---- geometry ---- */
static bool is_pointwise(const ot_conv_params *p) {
    return p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && !p->pt && !p->pl && !p->pb && !p->pr;
}

int64_t ot_conv_ws_floats(const ot_conv_params *p) {
    if (is_pointwise(p)) return 0;
    return p->c / p->group * p->kh * p->kw * p->oh * p->ow;
}

/* ---- forward ---- */
void ot_im2col(float *col, const float *x, int64_t c, const ot_conv_params *p) {
    const int64_t ohw = p->oh * p->ow, kk = p->kh * p->kw;
#pragma omp parallel for collapse(2) if (c * kk * ohw > 32768)
    for (int64_t ci = 0; ci < c; ci++)
        for (int64_t kq = 0; kq < kk; kq++) {
            int64_t ky = kq / p->kw, kx = kq % p->kw;
            float *dst = col + (ci * kk + kq) * ohw;
            const float *src = x + ci * p->h * p->w;
            for (int64_t oy = 0; oy < p->oh; oy++) {
                int64_t iy = oy * p->sh - p->pt + ky * p->dh;
                float *d = dst + oy * p->ow;
                if (iy < 0 || iy >= p->h) { memset(d, 0, sizeof(float) * (size_t)p->ow); continue; }
                const float *s = src + iy * p->w;
                int64_t ix0 = -p->pl + kx * p->dw;
                if (p->sw == 1 && ix0 >= 0 && ix0 + p->ow <= p->w) { memcpy(d, s + ix0, sizeof(float) * (size_t)p->ow); continue; }
                for (int64_t ox = 0; ox < p->ow; ox++) {
                    int64_t ix = ox * p->sw + ix0;
                    d[ox] = (ix >= 0 && ix < p->w) ? s[ix] : 0.0f;
                }
            }
        }
}

void ot_conv2d_forward(float *y, const float *x, const float *w, const float *b, float *ws, const ot_conv_params *p) {
    const int64_t cg = p->c / p->group, mg = p->m / p->group, ohw = p->oh * p->ow, k = cg * p->kh * p->kw;
    for (int64_t n = 0; n < p->n; n++) {
        float *yn = y + n * p->m * ohw;
        if (b) {
            for (int64_t o = 0; o < p->m; o++) {
                float *yo = yn + o * ohw, bv = b[o];
                for (int64_t i = 0; i < ohw; i++) yo[i] = bv;
            }
        }
        for (int64_t g = 0; g < p->group; g++) {
            const float *xg = x + (n * p->c + g * cg) * p->h * p->w;
            const float *col = xg;
            if (!is_pointwise(p)) { ot_im2col(ws, xg, cg, p); col = ws; }
            ot_sgemm(false, false, mg, ohw, k, 1.0f, w + g * mg * k, k, col, ohw, b ? 1.0f : 0.0f, yn + g * mg * ohw, ohw);
        }
    }
}

/* ---- backward ---- */
/* dx: (C/group, H, W) of one image's group slice += col2im(dcol), dcol: (C/group*kh*kw, OH*OW).
 * Threads own disjoint input channels, so accumulation is race-free. */
static void col2im_add(float *dx, const float *dcol, int64_t c, const ot_conv_params *p) {
    const int64_t ohw = p->oh * p->ow, kk = p->kh * p->kw;
#pragma omp parallel for if (c * kk * ohw > 32768)
    for (int64_t ci = 0; ci < c; ci++) {
        float *d = dx + ci * p->h * p->w;
        for (int64_t kq = 0; kq < kk; kq++) {
            int64_t ky = kq / p->kw, kx = kq % p->kw;
            const float *src = dcol + (ci * kk + kq) * ohw;
            for (int64_t oy = 0; oy < p->oh; oy++) {
                int64_t iy = oy * p->sh - p->pt + ky * p->dh;
                if (iy < 0 || iy >= p->h) continue;
                float *drow = d + iy * p->w;
                const float *s = src + oy * p->ow;
                for (int64_t ox = 0; ox < p->ow; ox++) {
                    int64_t ix = ox * p->sw - p->pl + kx * p->dw;
                    if (ix >= 0 && ix < p->w) drow[ix] += s[ox];
                }
            }
        }
    }
}

void ot_conv2d_backward(float *dx, bool dx_set, float *dw, float *db, const float *dy, const float *x, const float *w,
                       float *ws, const ot_conv_params *p) {
    const int64_t cg = p->c / p->group, mg = p->m / p->group, ohw = p->oh * p->ow, k = cg * p->kh * p->kw;
    if (db) {
#pragma omp parallel for if (p->m * p->n * ohw > 32768)
        for (int64_t o = 0; o < p->m; o++) {
            double acc = 0;
            for (int64_t n = 0; n < p->n; n++) {
                const float *d = dy + (n * p->m + o) * ohw;
                for (int64_t i = 0; i < ohw; i++) acc += d[i];
            }
            db[o] += (float)acc;
        }
    }
    for (int64_t n = 0; n < p->n; n++) {
        const float *dyn = dy + n * p->m * ohw;
        for (int64_t g = 0; g < p->group; g++) {
            const float *xg = x + (n * p->c + g * cg) * p->h * p->w;
            const float *dyg = dyn + g * mg * ohw;
            if (dw) { /* dW (mg, k) += dY (mg, ohw) . col^T (ohw, k) */
                const float *col = xg;
                if (!is_pointwise(p)) { ot_im2col(ws, xg, cg, p); col = ws; }
                ot_sgemm(false, true, mg, k, ohw, 1.0f, dyg, ohw, col, ohw, 1.0f, dw + g * mg * k, k);
            }
            if (dx) { /* dcol (k, ohw) = W^T (k, mg) . dY (mg, ohw), then col2im */
                float *dxg = dx + (n * p->c + g * cg) * p->h * p->w;
                if (is_pointwise(p)) {
                    ot_sgemm(true, false, k, ohw, mg, 1.0f, w + g * mg * k, k, dyg, ohw, dx_set ? 0.0f : 1.0f, dxg, ohw);
                } else {
                    ot_sgemm(true, false, k, ohw, mg, 1.0f, w + g * mg * k, k, dyg, ohw, 0.0f, ws, ohw);
                    if (dx_set) memset(dxg, 0, sizeof(float) * (size_t)(cg * p->h * p->w));
                    col2im_add(dxg, ws, cg, p);
                }
            }
        }
    }
}

/* ---- oneDNN convolution primitives ----
 * Per node, prepare (conv_prepare) builds the primitive descriptors (forward;
 * backward data and weights in training plans) and raises the plan workspace to
 * what they need; the primitives (JIT code) are created on first use; release
 * (conv_release) destroys them. The user tensors are
 * plain NCHW / (G)OIHW. In plain mode the primitives take them as they are
 * (oneDNN then runs its gemm convolution); in "any" mode oneDNN picks its
 * layout (blocked, direct JIT kernels) and the arguments it wants blocked are
 * reordered through the workspace (the default for k>1 convolutions, below);
 * ONNXT_CONV_DNN=off keeps im2col + GEMM everywhere. oneDNN overwrites its
 * outputs: gradients go through a reorder with a sum post-op, which adds them.
 *
 * Training plans run the k>1 convolutions (the 6x6 stem, the 3x3 layers) as
 * oneDNN primitives in blocked layouts (its direct JIT kernels, as PyTorch's
 * mkldnn does: 25-70 % faster than im2col there, docs/PERF.md) and keep 1x1
 * layers on GEMM, which is as fast or faster once reorders count.
 * ONNXT_CONV_DNN_TRAIN=0 keeps im2col everywhere, =1 uses oneDNN for all (plain
 * layouts unless ONNXT_CONV_DNN=any). Inference plans use oneDNN too, blocked for
 * k>1 and plain (its gemm kernel) for 1x1; ONNXT_CONV_DNN=plain|any sets one
 * layout for all. */
#ifdef ONNXT_GEMM_ONEDNN
#include "onednn.h"
#include <stdint.h>

enum { DNN_FWD, DNN_BWD_D, DNN_BWD_W, DNN_N };
#define DNN_MAX_ARGS 4

typedef struct dnn_arg {
    int arg;                 /* DNNL_ARG_* */
    bool out, acc;           /* written by the primitive; added into the user buffer */
    dnnl_memory_t user;      /* plain, handle set per call */
    dnnl_memory_t inner;     /* the primitive's layout in the workspace, or NULL: user is passed */
    dnnl_primitive_desc_t rpd, rpd_set;   /* rpd_set: an accumulating output's plain copy (ot_gin_set) */
    dnnl_primitive_t reorder, reorder_set;
    size_t off;              /* workspace offset of inner */
} dnn_arg;

typedef struct dnn_stage {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnn_arg a[DNN_MAX_ARGS];
    int na;
    dnnl_memory_t scr;
    size_t scr_off, ws_bytes;
    bool failed;
} dnn_stage;

struct ot_conv_dnn { dnn_stage st[DNN_N]; };

#define WS_ALIGN 64
static size_t align_up(size_t v) { return (v + WS_ALIGN - 1) & ~(size_t)(WS_ALIGN - 1); }
static unsigned char *ws_base(void *ws) {
    return (unsigned char *)(((uintptr_t)ws + WS_ALIGN - 1) & ~(uintptr_t)(WS_ALIGN - 1));
}

static void stage_free(dnn_stage *s) {
    for (int i = 0; i < s->na; i++) {
        dnn_arg *a = &s->a[i];
        if (a->reorder) dnnl_primitive_destroy(a->reorder);
        if (a->rpd) dnnl_primitive_desc_destroy(a->rpd);
        if (a->reorder_set) dnnl_primitive_destroy(a->reorder_set);
        if (a->rpd_set) dnnl_primitive_desc_destroy(a->rpd_set);
        if (a->inner) dnnl_memory_destroy(a->inner);
        if (a->user) dnnl_memory_destroy(a->user);
    }
    if (s->prim) dnnl_primitive_destroy(s->prim);
    if (s->pd) dnnl_primitive_desc_destroy(s->pd);
    if (s->scr) dnnl_memory_destroy(s->scr);
    memset(s, 0, sizeof *s);
}

static void conv_dnn_free(struct ot_conv_dnn *d) {
    if (!d) return;
    for (int k = 0; k < DNN_N; k++) stage_free(&d->st[k]);
    free(d);
}

static void conv_release(void *params) {
    ot_conv_params *p = params;
    conv_dnn_free(p->dnn);
    p->dnn = NULL;
}

/* Adds argument `arg` (user layout `umd`) to a stage whose pd exists: a reorder
 * through the workspace when the primitive wants another layout (or must accumulate). */
static bool stage_arg(dnn_stage *s, dnnl_engine_t eng, int arg, const dnnl_memory_desc_t *umd, bool out, bool acc) {
    dnn_arg *a = &s->a[s->na++];
    a->arg = arg; a->out = out; a->acc = acc;
    if (dnnl_memory_create(&a->user, umd, eng, DNNL_MEMORY_NONE) != dnnl_success) { a->user = NULL; return false; }
    const dnnl_memory_desc_t *imd = dnnl_primitive_desc_query_md(s->pd, dnnl_query_exec_arg_md, arg);
    if (!imd) return false;
    if (dnnl_memory_desc_equal(imd, umd) && !acc) return true;
    if (dnnl_memory_create(&a->inner, imd, eng, DNNL_MEMORY_NONE) != dnnl_success) { a->inner = NULL; return false; }
    a->off = s->ws_bytes;
    s->ws_bytes += align_up(dnnl_memory_desc_get_size(imd));
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    bool ok = true;
    if (acc) {
        ok = dnnl_primitive_attr_create(&attr) == dnnl_success && dnnl_post_ops_create(&po) == dnnl_success &&
             dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success && dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    }
    ok = ok && dnnl_reorder_primitive_desc_create(&a->rpd, out ? imd : umd, eng, out ? umd : imd, eng, attr) == dnnl_success;
    if (!ok) a->rpd = NULL;
    if (ok && acc && out && dnnl_reorder_primitive_desc_create(&a->rpd_set, imd, eng, umd, eng, NULL) != dnnl_success) {
        a->rpd_set = NULL;
        ok = false;
    }
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok;
}

static bool stage_scratch(dnn_stage *s, dnnl_engine_t eng) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_scratchpad_md, 0);
    size_t b = md ? dnnl_memory_desc_get_size(md) : 0;
    s->scr_off = s->ws_bytes;
    s->ws_bytes += align_up(b);
    if (b && dnnl_memory_create(&s->scr, md, eng, DNNL_MEMORY_NONE) != dnnl_success) { s->scr = NULL; return false; }
    return true;
}

/* Builds the stages; NULL when oneDNN refuses the forward (fallback to im2col).
 * A refused backward stage is left empty (that part falls back). */
static struct ot_conv_dnn *conv_dnn_create(const ot_conv_params *p, bool train, bool any) {
    dnnl_engine_t eng = ot_dnnl_engine();
    if (!eng) return NULL;
    struct ot_conv_dnn *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    dnnl_memory_desc_t xmd, wmd, bmd, ymd, xa, wa, ya;
    dnnl_dims_t xd = {p->n, p->c, p->h, p->w}, yd = {p->n, p->m, p->oh, p->ow}, bd = {p->m};
    dnnl_dims_t strides = {p->sh, p->sw}, dil = {p->dh - 1, p->dw - 1}, pl = {p->pt, p->pl}, pr = {p->pb, p->pr};
    dnnl_dims_t wd4 = {p->m, p->c, p->kh, p->kw}, wd5 = {p->group, p->m / p->group, p->c / p->group, p->kh, p->kw};
    int wr = p->group == 1 ? 4 : 5;
    dnnl_format_tag_t wtag = p->group == 1 ? dnnl_abcd : dnnl_abcde;
    bool ok = dnnl_memory_desc_init_by_tag(&xmd, 4, xd, dnnl_f32, dnnl_abcd) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&ymd, 4, yd, dnnl_f32, dnnl_abcd) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&wmd, wr, wr == 4 ? wd4 : wd5, dnnl_f32, wtag) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&xa, 4, xd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_abcd) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&ya, 4, yd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_abcd) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&wa, wr, wr == 4 ? wd4 : wd5, dnnl_f32, any ? dnnl_format_tag_any : wtag) ==
                  dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    ok = ok && dnnl_primitive_attr_create(&attr) == dnnl_success &&
         dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    dnnl_convolution_desc_t cd;
    dnn_stage *s = &d->st[DNN_FWD];
    ok = ok && dnnl_dilated_convolution_forward_desc_init(&cd, train ? dnnl_forward_training : dnnl_forward_inference,
                                                          dnnl_convolution_direct, &xa, &wa, p->has_bias ? &bmd : NULL,
                                                          &ya, strides, dil, pl, pr) == dnnl_success &&
         dnnl_primitive_desc_create(&s->pd, &cd, attr, eng, NULL) == dnnl_success;
    if (!ok) s->pd = NULL;
    ok = ok && stage_arg(s, eng, DNNL_ARG_SRC, &xmd, false, false) && stage_arg(s, eng, DNNL_ARG_WEIGHTS, &wmd, false, false) &&
         (!p->has_bias || stage_arg(s, eng, DNNL_ARG_BIAS, &bmd, false, false)) &&
         stage_arg(s, eng, DNNL_ARG_DST, &ymd, true, false) && stage_scratch(s, eng);
    if (ok && train) {
        s = &d->st[DNN_BWD_D];
        if (dnnl_dilated_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &xa, &wa, &ya, strides, dil, pl,
                                                             pr) != dnnl_success ||
            dnnl_primitive_desc_create(&s->pd, &cd, attr, eng, d->st[DNN_FWD].pd) != dnnl_success)
            s->pd = NULL;
        else if (!(stage_arg(s, eng, DNNL_ARG_DIFF_SRC, &xmd, true, true) && stage_arg(s, eng, DNNL_ARG_WEIGHTS, &wmd, false, false) &&
                   stage_arg(s, eng, DNNL_ARG_DIFF_DST, &ymd, false, false) && stage_scratch(s, eng)))
            stage_free(s);
        s = &d->st[DNN_BWD_W];
        if (dnnl_dilated_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &xa, &wa,
                                                                p->has_bias ? &bmd : NULL, &ya, strides, dil, pl,
                                                                pr) != dnnl_success ||
            dnnl_primitive_desc_create(&s->pd, &cd, attr, eng, d->st[DNN_FWD].pd) != dnnl_success)
            s->pd = NULL;
        else if (!(stage_arg(s, eng, DNNL_ARG_SRC, &xmd, false, false) && stage_arg(s, eng, DNNL_ARG_DIFF_WEIGHTS, &wmd, true, true) &&
                   (!p->has_bias || stage_arg(s, eng, DNNL_ARG_DIFF_BIAS, &bmd, true, true)) &&
                   stage_arg(s, eng, DNNL_ARG_DIFF_DST, &ymd, false, false) && stage_scratch(s, eng)))
            stage_free(s);
    }
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) { conv_dnn_free(d); return NULL; }
    return d;
}

/* Workspace bytes the oneDNN stages need (they run one at a time), with alignment slack. */
static size_t conv_dnn_ws_bytes(const struct ot_conv_dnn *d) {
    size_t b = 0;
    for (int k = 0; k < DNN_N; k++)
        if (d->st[k].ws_bytes > b) b = d->st[k].ws_bytes;
    return b + WS_ALIGN;
}

static bool run_prim(dnnl_primitive_t prim, int na, const dnnl_exec_arg_t *args) {
    return dnnl_primitive_execute(prim, ot_dnnl_stream(), na, args) == dnnl_success;
}

/* Runs stage k with the user buffers ptr[i] (in the order its arguments were
 * added); false (and nothing written to outputs) when it cannot run. */
static bool stage_run(struct ot_conv_dnn *d, int k, void *const *ptr, void *ws, unsigned set_mask) {
    dnn_stage *s = &d->st[k];
    if (!s->pd || s->failed) return false;
    if (!s->prim) {
        bool ok = dnnl_primitive_create(&s->prim, s->pd) == dnnl_success;
        if (!ok) s->prim = NULL;
        for (int i = 0; ok && i < s->na; i++)
            if ((s->a[i].rpd && dnnl_primitive_create(&s->a[i].reorder, s->a[i].rpd) != dnnl_success) ||
                (s->a[i].rpd_set && dnnl_primitive_create(&s->a[i].reorder_set, s->a[i].rpd_set) != dnnl_success)) {
                ok = false;
            }
        if (!ok) { s->failed = true; return false; }
    }
    unsigned char *base = ws_base(ws);
    dnnl_exec_arg_t args[DNN_MAX_ARGS + 1];
    int na = 0;
    for (int i = 0; i < s->na; i++) {
        dnn_arg *a = &s->a[i];
        dnnl_memory_set_data_handle(a->user, ptr[i]);
        if (a->inner) {
            dnnl_memory_set_data_handle(a->inner, base + a->off);
            if (!a->out) {
                dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, a->user}, {DNNL_ARG_TO, a->inner}};
                if (!run_prim(a->reorder, 2, r)) return false;
            }
        }
        args[na++] = (dnnl_exec_arg_t){a->arg, a->inner ? a->inner : a->user};
    }
    if (s->scr) {
        dnnl_memory_set_data_handle(s->scr, base + s->scr_off);
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, s->scr};
    }
    if (!run_prim(s->prim, na, args)) return false;
    for (int i = 0; i < s->na; i++) {
        dnn_arg *a = &s->a[i];
        if (!a->out || !a->inner) continue;
        dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, a->inner}, {DNNL_ARG_TO, a->user}};
        bool set = ((set_mask >> i) & 1u) && a->reorder_set;
        if (!run_prim(set ? a->reorder_set : a->reorder, 2, r)) return false;
    }
    return dnnl_stream_wait(ot_dnnl_stream()) == dnnl_success;
}

static bool conv_dnn_fwd(ot_conv_params *p, float *y, const float *x, const float *w, const float *b, void *ws) {
    if (!p->dnn) return false;
    void *ptr[4] = {(void *)x, (void *)w, p->has_bias ? (void *)b : y, y};
    return stage_run(p->dnn, DNN_FWD, ptr, ws, 0);
}

/* Backward by oneDNN where it has the stage; *dx / *dw / *db are set to NULL
 * for the parts done, what remains is left to the im2col path. */
static void conv_dnn_bwd(ot_conv_params *p, float **dx, bool dx_set, float **dw, float **db, const float *dy, const float *x,
                         const float *w, void *ws) {
    struct ot_conv_dnn *d = p->dnn;
    if (!d) return;
    if (*dx) {
        void *ptr[3] = {*dx, (void *)w, (void *)dy};
        if (stage_run(d, DNN_BWD_D, ptr, ws, dx_set ? 1u : 0u)) *dx = NULL;
    }
    /* the bias gradient comes with the weights' (the stage always writes both) */
    if (*dw && (!p->has_bias || *db)) {
        void *ptr[4] = {(void *)x, *dw, p->has_bias ? (void *)*db : (void *)dy, (void *)dy};
        if (stage_run(d, DNN_BWD_W, ptr, ws, 0)) { *dw = NULL; *db = NULL; }
    }
}
#endif

/* ---- op table entry ---- */
static ot_status conv_infer(ot_kctx *c) {
    ot_conv_params *p = c->params;
    OT_TRY(ot_require_float(c, 0));
    OT_TRY(ot_require_float(c, 1));
    const ot_shape *xs = ot_ishape(c, 0), *ws = ot_ishape(c, 1);
    char b1[160], b2[160];
    if (xs->rank != 4 || ws->rank != 4)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "only 2-D convolution is supported: input %s, weight %s",
                       ot_shape_str(xs, b1, sizeof b1), ot_shape_str(ws, b2, sizeof b2));
    p->n = xs->d[0]; p->c = xs->d[1]; p->h = xs->d[2]; p->w = xs->d[3];
    p->m = ws->d[0]; p->kh = ws->d[2]; p->kw = ws->d[3];
    p->group = ot_attr_int(c->n, "group", 1);
    if (p->group < 1 || p->c % p->group || p->m % p->group)
        return ot_fail(c->err, OT_ERR_SHAPE, "group %lld does not divide input channels %lld and output channels %lld",
                       (long long)p->group, (long long)p->c, (long long)p->m);
    if (ws->d[1] * p->group != p->c)
        return ot_fail(c->err, OT_ERR_SHAPE, "weight %s expects %lld input channels (%lld x group %lld), the input %s has %lld",
                       ot_shape_str(ws, b2, sizeof b2), (long long)(ws->d[1] * p->group), (long long)ws->d[1],
                       (long long)p->group, ot_shape_str(xs, b1, sizeof b1), (long long)p->c);
    const int64_t *v;
    int64_t nv = ot_attr_ints(c->n, "kernel_shape", &v);
    if (nv >= 0 && (nv != 2 || v[0] != p->kh || v[1] != p->kw))
        return ot_fail(c->err, OT_ERR_SHAPE, "kernel_shape does not match the weight %s", ot_shape_str(ws, b2, sizeof b2));
    p->sh = p->sw = p->dh = p->dw = 1;
    if ((nv = ot_attr_ints(c->n, "strides", &v)) >= 0) {
        if (nv != 2 || v[0] < 1 || v[1] < 1) return ot_fail(c->err, OT_ERR_INVALID, "strides must be 2 positive values");
        p->sh = v[0]; p->sw = v[1];
    }
    if ((nv = ot_attr_ints(c->n, "dilations", &v)) >= 0) {
        if (nv != 2 || v[0] < 1 || v[1] < 1) return ot_fail(c->err, OT_ERR_INVALID, "dilations must be 2 positive values");
        p->dh = v[0]; p->dw = v[1];
    }
    if ((nv = ot_attr_ints(c->n, "pads", &v)) >= 0) {
        if (nv != 4 || v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0)
            return ot_fail(c->err, OT_ERR_INVALID, "pads must be 4 non-negative values");
        p->pt = v[0]; p->pl = v[1]; p->pb = v[2]; p->pr = v[3];
    }
    const char *ap = ot_attr_string(c->n, "auto_pad", "NOTSET");
    int64_t ekh = (p->kh - 1) * p->dh + 1, ekw = (p->kw - 1) * p->dw + 1;
    if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
        int64_t oh = (p->h + p->sh - 1) / p->sh, ow = (p->w + p->sw - 1) / p->sw;
        int64_t th = (oh - 1) * p->sh + ekh - p->h, tw = (ow - 1) * p->sw + ekw - p->w;
        if (th < 0) th = 0;
        if (tw < 0) tw = 0;
        bool upper = ap[5] == 'U';
        p->pt = upper ? th / 2 : th - th / 2; p->pb = th - p->pt;
        p->pl = upper ? tw / 2 : tw - tw / 2; p->pr = tw - p->pl;
    } else if (strcmp(ap, "VALID") == 0) {
        p->pt = p->pl = p->pb = p->pr = 0;
    } else if (strcmp(ap, "NOTSET") != 0) {
        return ot_fail(c->err, OT_ERR_INVALID, "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
    }
    p->oh = (p->h + p->pt + p->pb - ekh) / p->sh + 1;
    p->ow = (p->w + p->pl + p->pr - ekw) / p->sw + 1;
    if (p->h + p->pt + p->pb < ekh || p->w + p->pl + p->pr < ekw)
        return ot_fail(c->err, OT_ERR_SHAPE, "kernel %lldx%lld (dilated) is larger than the padded input %s",
                       (long long)p->kh, (long long)p->kw, ot_shape_str(xs, b1, sizeof b1));
    p->has_bias = ot_has_in(c, 2);
    if (p->has_bias) {
        OT_TRY(ot_require_float(c, 2));
        const ot_shape *bs = ot_ishape(c, 2);
        if (bs->rank != 1 || bs->d[0] != p->m)
            return ot_fail(c->err, OT_ERR_SHAPE, "bias %s does not match %lld output channels", ot_shape_str(bs, b1, sizeof b1),
                           (long long)p->m);
    }
    int64_t wsf = ot_conv_ws_floats(p); /* forward im2col; the backward reuses it for col and dcol in turn */
    if (wsf > OT_MAX_NUMEL) return ot_fail(c->err, OT_ERR_NOMEM, "im2col workspace of %lld floats is too large", (long long)wsf);
    if ((size_t)wsf * sizeof(float) > c->p->ws_bytes) c->p->ws_bytes = (size_t)wsf * sizeof(float);
    ot_shape ys = {4, {p->n, p->m, p->oh, p->ow}};
    return ot_set_out(c, 0, OT_F32, &ys);
}

/* Library state for the step: the oneDNN primitives where they apply
 * (ONNXT_CONV_DNN / ONNXT_CONV_DNN_TRAIN, core/config.h). */
static ot_status conv_prepare(ot_kctx *c) {
#ifdef ONNXT_GEMM_ONEDNN
    ot_conv_params *p = c->params;
    const ot_config *cf = ot_config_get();
    bool dnn_on, any = cf->conv_dnn == OT_CONV_DNN_ANY, plain = cf->conv_dnn == OT_CONV_DNN_PLAIN;
    if (cf->conv_dnn == OT_CONV_DNN_OFF) dnn_on = false;
    else if (!ot_training(c)) { dnn_on = true; any = any || (!is_pointwise(p) && !plain); }
    else if (cf->conv_dnn_train == 0) dnn_on = false;
    else if (cf->conv_dnn_train == 1) dnn_on = true;
    else { dnn_on = !is_pointwise(p); any = any || !plain; } /* training default */
    if (dnn_on && !p->dnn) {
        p->dnn = conv_dnn_create(p, ot_training(c), any);
        if (p->dnn && conv_dnn_ws_bytes(p->dnn) > c->p->ws_bytes) c->p->ws_bytes = conv_dnn_ws_bytes(p->dnn);
    }
#else
    (void)c;
#endif
    return OT_OK;
}

static ot_status conv_fwd(ot_kctx *c) {
    ot_conv_params *p = c->params;
#ifdef ONNXT_GEMM_ONEDNN
    if (conv_dnn_fwd(p, ot_outf(c, 0), ot_inf(c, 0), ot_inf(c, 1), p->has_bias ? ot_inf(c, 2) : NULL, c->p->ws)) return OT_OK;
#endif
    ot_conv2d_forward(ot_outf(c, 0), ot_inf(c, 0), ot_inf(c, 1), p->has_bias ? ot_inf(c, 2) : NULL, c->p->ws, p);
    return OT_OK;
}

static ot_status conv_bwd(ot_kctx *c) {
    ot_conv_params *p = c->params;
    const float *dy = ot_gout(c, 0);
    if (!dy) return OT_OK;
    float *dx = ot_gin(c, 0), *dw = ot_gin(c, 1), *db = p->has_bias ? ot_gin(c, 2) : NULL;
    bool dx_set = ot_gin_set(c, 0);
#ifdef ONNXT_GEMM_ONEDNN
    conv_dnn_bwd(p, &dx, dx_set, &dw, &db, dy, ot_inf(c, 0), ot_inf(c, 1), c->p->ws);
    if (!dx && !dw && !db) return OT_OK;
#endif
    ot_conv2d_backward(dx, dx_set, dw, db, dy, ot_inf(c, 0), ot_inf(c, 1), c->p->ws, p);
    return OT_OK;
}

const ot_op_def ot_op_conv = {
    .name = "Conv", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1, .params_size = sizeof(ot_conv_params),
    .infer = conv_infer, .flags = OT_OPF_GRAD_SET, .bwd_reads = OT_BWD_IN(0) | OT_BWD_IN(1),
};
const ot_op_impl ot_cpu_conv = {
    .prepare = conv_prepare, .forward = conv_fwd, .backward = conv_bwd,
#ifdef ONNXT_GEMM_ONEDNN
    .release = conv_release,
#endif
};
