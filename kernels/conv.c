/* conv.c: Conv (ONNX opset 1-18, 2-D) on the CPU: im2col + one GEMM per
 * image and group (Chellapilla et al. 2006; darknet, Caffe). 1x1 stride-1
 * unpadded convolutions skip im2col. Backward: dW = dY . col^T, dX = col2im(W^T . dY),
 * db = sum dY, accumulated. CUDA twin: conv.cu (cuDNN), later. */
#include "conv.h"
#include "gemm.h"
#include "ops.h"
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

void ot_conv2d_fwd_cpu(float *y, const float *x, const float *w, const float *b, float *ws, const ot_conv_params *p) {
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

void ot_conv2d_bwd_cpu(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, float *ws,
                       const ot_conv_params *p) {
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
                    ot_sgemm(true, false, k, ohw, mg, 1.0f, w + g * mg * k, k, dyg, ohw, 1.0f, dxg, ohw);
                } else {
                    ot_sgemm(true, false, k, ohw, mg, 1.0f, w + g * mg * k, k, dyg, ohw, 0.0f, ws, ohw);
                    col2im_add(dxg, ws, cg, p);
                }
            }
        }
    }
}

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

static ot_status conv_fwd(ot_kctx *c) {
    const ot_conv_params *p = c->params;
    ot_conv2d_fwd_cpu(ot_outf(c, 0), ot_inf(c, 0), ot_inf(c, 1), p->has_bias ? ot_inf(c, 2) : NULL, c->p->ws, p);
    return OT_OK;
}

static ot_status conv_bwd(ot_kctx *c) {
    const ot_conv_params *p = c->params;
    const float *dy = ot_gout(c, 0);
    if (!dy) return OT_OK;
    ot_conv2d_bwd_cpu(ot_gin(c, 0), ot_gin(c, 1), p->has_bias ? ot_gin(c, 2) : NULL, dy, ot_inf(c, 0), ot_inf(c, 1),
                      c->p->ws, p);
    return OT_OK;
}

const ot_op_def ot_op_conv = {"Conv", 2, 3, 1, 1, sizeof(ot_conv_params), conv_infer, conv_fwd, 0,
                              conv_bwd, OT_BWD_IN(0) | OT_BWD_IN(1)};
