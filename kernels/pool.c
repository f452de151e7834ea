/* pool.c: MaxPool over 2-D NCHW float32 tensors.
 *
 * Spec: ONNX MaxPool-1/8/10/11/12 (kernel_shape, strides, pads as
 * [top, left, bottom, right], dilations, ceil_mode, auto_pad). Output sizes follow
 * ONNX Runtime's PoolAttributes: floor((in + pads - dilation*(k-1) - 1) / stride) + 1,
 * with ceil_mode rounding up but dropping a last window that would start in the
 * bottom/right padding (onnx/onnx#5741); SAME_* pads use the undilated kernel like
 * ORT. Padded positions never win: a window's maximum is taken over its in-image
 * positions only, starting from the lowest float (as ORT/MLAS). The Indices output
 * and storage_order=1 are not supported. The gradient goes to each window's
 * first maximum (like PyTorch): saved by the forward of training plans with
 * unit strides and dilations (separable max), recomputed otherwise. CPU implementation only. */
#include "ops.h"
#include "op_params.h"
#include <float.h>
#include <string.h>



#define SEP_TASKS 16 /* parallel tasks of the separable forward, each with a workspace slice */
static size_t sep_scratch_bytes(int64_t H, int64_t OW) { /* rv, rav (float), ra (int32): H*OW each, 64-byte rounded */
    return ((size_t)(H * OW) * 12 + 63) & ~(size_t)63;
}

/* ---- shape inference ---- */

/* Two values of an INTS attribute, or def when absent; each must be >= lo. */
static ot_status ints2(ot_kctx *c, const char *name, int64_t def, int64_t lo, int64_t v[2], bool required) {
    const int64_t *a;
    int64_t n = ot_attr_ints(c->n, name, &a);
    if (n < 0) {
        if (required) return ot_fail(c->err, OT_ERR_INVALID, "attribute '%s' (2 ints) is required", name);
        v[0] = v[1] = def;
        return OT_OK;
    }
    if (n != 2)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "attribute '%s' has %lld values, expected 2 (2-D pooling only)", name,
                       (long long)n);
    for (int i = 0; i < 2; i++) {
        if (a[i] < lo || a[i] > (1 << 20))
            return ot_fail(c->err, OT_ERR_INVALID, "attribute '%s' value %lld is out of range (at least %lld expected)",
                           name, (long long)a[i], (long long)lo);
        v[i] = a[i];
    }
    return OT_OK;
}

/* One spatial dim: output length and the head padding used. */
static ot_status pool_dim(ot_kctx *c, const char *which, const char *auto_pad, int64_t in, int64_t k, int64_t s, int64_t d,
                          int64_t ph, int64_t pt, bool ceil_mode, int64_t *out, int64_t *head) {
    if (strcmp(auto_pad, "NOTSET") != 0) {
        if (strcmp(auto_pad, "VALID") == 0) {
            ph = pt = 0;
        } else {
            int64_t target = (in + s - 1) / s;
            int64_t need = (target - 1) * s + k - in;   /* ORT: undilated kernel */
            if (need < 0) need = 0;
            ph = strcmp(auto_pad, "SAME_LOWER") == 0 ? (need + 1) / 2 : need / 2;
            pt = need - ph;
        }
    }
    int64_t num = in + ph + pt - d * (k - 1) - 1;
    if (num < 0)
        return ot_fail(c->err, OT_ERR_SHAPE, "%s: dilated kernel %lld is larger than the padded input %lld", which,
                       (long long)(d * (k - 1) + 1), (long long)(in + ph + pt));
    int64_t o = num / s + 1;
    if (ceil_mode) {
        o = (num + s - 1) / s + 1;
        if ((o - 1) * s >= in + ph) o--;   /* last window must start inside the image or head padding */
    }
    *out = o;
    *head = ph;
    return OT_OK;
}

static ot_status maxpool_infer(ot_kctx *c) {
    pool_params *pp = (pool_params *)c->params;
    if (ot_has_out(c, 1))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "the Indices output is not supported (only output 0 may be used)");
    if (ot_attr_int(c->n, "storage_order", 0) != 0)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "storage_order=%lld is not supported (only 0, row major)",
                       (long long)ot_attr_int(c->n, "storage_order", 0));
    OT_TRY(ot_require_float(c, 0));
    const ot_shape *x = ot_ishape(c, 0);
    if (x->rank != 4) {
        char b[160];
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input has shape %s, expected 4-D NCHW (2-D pooling only)",
                       ot_shape_str(x, b, sizeof b));
    }
    int64_t k[2], s[2], d[2], pads[4] = {0, 0, 0, 0};
    OT_TRY(ints2(c, "kernel_shape", 1, 1, k, true));
    OT_TRY(ints2(c, "strides", 1, 1, s, false));
    OT_TRY(ints2(c, "dilations", 1, 1, d, false));
    const int64_t *pa;
    int64_t np = ot_attr_ints(c->n, "pads", &pa);
    if (np >= 0) {
        if (np != 4)
            return ot_fail(c->err, OT_ERR_INVALID, "attribute 'pads' has %lld values, expected 4 [top,left,bottom,right]",
                           (long long)np);
        for (int i = 0; i < 4; i++) {
            if (pa[i] < 0 || pa[i] >= k[i % 2])
                return ot_fail(c->err, OT_ERR_INVALID, "pads[%d] = %lld, expected 0 <= pad < kernel size %lld", i,
                               (long long)pa[i], (long long)k[i % 2]);
            pads[i] = pa[i];
        }
    }
    int64_t ceil_mode = ot_attr_int(c->n, "ceil_mode", 0);
    if (ceil_mode != 0 && ceil_mode != 1)
        return ot_fail(c->err, OT_ERR_INVALID, "ceil_mode = %lld, expected 0 or 1", (long long)ceil_mode);
    const char *ap = ot_attr_string(c->n, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID") && strcmp(ap, "SAME_UPPER") && strcmp(ap, "SAME_LOWER"))
        return ot_fail(c->err, OT_ERR_INVALID, "auto_pad '%s', expected NOTSET, VALID, SAME_UPPER or SAME_LOWER", ap);
    ot_shape o = *x;
    OT_TRY(pool_dim(c, "height", ap, x->d[2], k[0], s[0], d[0], pads[0], pads[2], ceil_mode, &o.d[2], &pp->pt));
    OT_TRY(pool_dim(c, "width", ap, x->d[3], k[1], s[1], d[1], pads[1], pads[3], ceil_mode, &o.d[3], &pp->pl));
    pp->kh = k[0]; pp->kw = k[1];
    pp->sh = s[0]; pp->sw = s[1];
    pp->dh = d[0]; pp->dw = d[1];
    pp->sep = pp->sh == 1 && pp->sw == 1 && pp->dh == 1 && pp->dw == 1 && x->d[2] * x->d[3] <= INT32_MAX &&
              x->d[2] * o.d[3] <= ((int64_t)1 << 24);
    if (pp->sep) {
        int64_t planes = o.d[0] * o.d[1];
        size_t need = (size_t)(planes < SEP_TASKS ? planes : SEP_TASKS) * sep_scratch_bytes(x->d[2], o.d[3]);
        if (need > c->p->ws_bytes) c->p->ws_bytes = need;
    }
    if (ot_training(c) && pp->sep) {
        pp->arg = ot_plan_state(c, sizeof(int32_t) * (size_t)ot_numel(&o));
        if (!pp->arg) return ot_fail(c->err, OT_ERR_NOMEM, "out of memory");
    }
    return ot_set_out(c, 0, OT_F32, &o);
}

/* ---- forward ---- */

/* Valid kernel taps [*k0, *k1) of a window starting at 'start' (may be negative). */
static inline void taps(int64_t start, int64_t k, int64_t d, int64_t in, int64_t *k0, int64_t *k1) {
    int64_t a = start < 0 ? (-start + d - 1) / d : 0;
    int64_t b = in - 1 - start < 0 ? 0 : (in - 1 - start) / d + 1;
    if (b > k) b = k;
    *k0 = a;
    *k1 = b < a ? a : b;
}

/* Unit strides and dilations (YOLOv5's SPPF): the window maximum as a row pass
 * then a column pass (kh + kw compares instead of kh * kw), and the argmax the
 * backward uses: the first maximum in scan order (rows, then columns), found
 * from the first in-image tap with strict '>' like the recomputing backward
 * below; rv/rav/ra: H*OW scratch. */
static void plane_separable(const pool_params *pp, const float *xp, float *yp, int32_t *ap, int64_t H, int64_t W,
                            int64_t OH, int64_t OW, float *rv, float *rav, int32_t *ra) {
    for (int64_t h = 0; h < H; h++)
        for (int64_t ow = 0; ow < OW; ow++) {
            int64_t w0 = ow - pp->pl, b0, b1, o = h * OW + ow;
            taps(w0, pp->kw, 1, W, &b0, &b1);
            const float *r = xp + h * W + w0;
            float m = -FLT_MAX, am = b0 < b1 ? r[b0] : -FLT_MAX;
            int64_t best = b0;
            for (int64_t j = b0; j < b1; j++) {
                float v = r[j];
                m = v > m ? v : m;
                if (v > am) { am = v; best = j; }
            }
            rv[o] = m;
            rav[o] = am;
            ra[o] = b0 < b1 ? (int32_t)(h * W + w0 + best) : -1;
        }
    for (int64_t oh = 0; oh < OH; oh++) {
        int64_t h0 = oh - pp->pt, a0, a1;
        taps(h0, pp->kh, 1, H, &a0, &a1);
        for (int64_t ow = 0; ow < OW; ow++) {
            float m = -FLT_MAX, am = 0;
            int32_t best = -1;
            for (int64_t i = a0; i < a1; i++) {
                int64_t o = (h0 + i) * OW + ow;
                m = rv[o] > m ? rv[o] : m;
                if (ra[o] >= 0 && (best < 0 || rav[o] > am)) { am = rav[o]; best = ra[o]; }
            }
            yp[oh * OW + ow] = m;
            if (ap) ap[oh * OW + ow] = best;
        }
    }
}

static ot_status maxpool_fwd(ot_kctx *c) {
    const pool_params *pp = (const pool_params *)c->params;
    const ot_shape *xs = ot_ishape(c, 0), *ys = ot_oshape(c, 0);
    const float *x = ot_inf(c, 0);   /* (N, C, H, W) */
    float *y = ot_outf(c, 0);        /* (N, C, OH, OW) */
    int64_t H = xs->d[2], W = xs->d[3], OH = ys->d[2], OW = ys->d[3];
    if (pp->sep) { /* SEP_TASKS tasks, each with its scratch slice of the plan workspace */
        int64_t planes = ys->d[0] * ys->d[1], tasks = planes < SEP_TASKS ? planes : SEP_TASKS;
        unsigned char *ws = c->p->ws;
#pragma omp parallel for if(planes * OH * OW > 32768)
        for (int64_t k = 0; k < tasks; k++) {
            float *rv = (float *)(ws + (size_t)k * sep_scratch_bytes(H, OW));
            int32_t *ra = (int32_t *)(rv + 2 * H * OW);
            for (int64_t pl = k; pl < planes; pl += tasks)
                plane_separable(pp, x + pl * H * W, y + pl * OH * OW, pp->arg ? pp->arg + pl * OH * OW : NULL, H, W, OH,
                                OW, rv, rv + H * OW, ra);
        }
        return OT_OK;
    }
    int64_t planes = ys->d[0] * ys->d[1], rows = planes * OH, total = rows * OW;
#pragma omp parallel for if(total > 32768)
    for (int64_t r = 0; r < rows; r++) {
        int64_t pl = r / OH, oh = r % OH;
        const float *xp = x + pl * H * W;
        float *yr = y + r * OW;
        int64_t h0 = oh * pp->sh - pp->pt, a0, a1;
        taps(h0, pp->kh, pp->dh, H, &a0, &a1);
        for (int64_t ow = 0; ow < OW; ow++) {
            int64_t w0 = ow * pp->sw - pp->pl, b0, b1;
            taps(w0, pp->kw, pp->dw, W, &b0, &b1);
            float m = -FLT_MAX;
            for (int64_t i = a0; i < a1; i++) {
                int64_t base = (h0 + i * pp->dh) * W + w0;
                for (int64_t j = b0; j < b1; j++) {
                    float v = xp[base + j * pp->dw];
                    m = v > m ? v : m;
                }
            }
            yr[ow] = m;
        }
    }
    return OT_OK;
}

/* ---- backward ----
 * Without a saved argmax it is recomputed from the input: the gradient of each
 * output goes to the first maximum of its window in scan order (rows, then
 * columns), as PyTorch's CPU max_pool2d (strict '>' from the first in-image tap);
 * padded positions never get any. Windows overlap, so the work is split by
 * plane (N*C): a plane's gradient is written by one thread only. */

static ot_status maxpool_bwd(ot_kctx *c) {
    const pool_params *pp = (const pool_params *)c->params;
    float *gx = ot_gin(c, 0);                /* (N, C, H, W) */
    const float *gy = ot_gout(c, 0);         /* (N, C, OH, OW) */
    if (!gx || !gy) return OT_OK;
    const ot_shape *xs = ot_ishape(c, 0), *ys = ot_oshape(c, 0);
    const float *x = ot_inf(c, 0);
    int64_t H = xs->d[2], W = xs->d[3], OH = ys->d[2], OW = ys->d[3];
    int64_t planes = ys->d[0] * ys->d[1], total = planes * OH * OW * pp->kh * pp->kw;
    if (pp->arg) { /* argmax saved by the forward */
#pragma omp parallel for if(planes * OH * OW > 32768)
        for (int64_t pl = 0; pl < planes; pl++) {
            float *gp = gx + pl * H * W;
            const float *gyp = gy + pl * OH * OW;
            const int32_t *ap = pp->arg + pl * OH * OW;
            for (int64_t o = 0; o < OH * OW; o++)
                if (ap[o] >= 0) gp[ap[o]] += gyp[o];
        }
        return OT_OK;
    }
#pragma omp parallel for if(total > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * H * W;
        float *gp = gx + pl * H * W;
        const float *gyp = gy + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * pp->sh - pp->pt, a0, a1;
            taps(h0, pp->kh, pp->dh, H, &a0, &a1);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * pp->sw - pp->pl, b0, b1;
                taps(w0, pp->kw, pp->dw, W, &b0, &b1);
                if (a0 >= a1 || b0 >= b1) continue;   /* no in-image tap */
                int64_t best = (h0 + a0 * pp->dh) * W + w0 + b0 * pp->dw;
                float m = xp[best];
                for (int64_t i = a0; i < a1; i++) {
                    int64_t base = (h0 + i * pp->dh) * W + w0;
                    for (int64_t j = b0; j < b1; j++) {
                        int64_t k = base + j * pp->dw;
                        if (xp[k] > m) { m = xp[k]; best = k; }
                    }
                }
                gp[best] += gyp[oh * OW + ow];
            }
        }
    }
    return OT_OK;
}

/* ---- op table row ---- */

/* definitions (device-neutral) */
const ot_op_def ot_op_maxpool = {
    .name = "MaxPool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 2, .params_size = sizeof(pool_params),
    .infer = maxpool_infer, .bwd_reads = OT_BWD_IN(0),
};

/* CPU implementations */
const ot_op_impl ot_cpu_maxpool = {.forward = maxpool_fwd, .backward = maxpool_bwd};
