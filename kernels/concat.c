/* concat.c: Concat of any number of tensors along one axis.
 *
 * Spec: ONNX Concat-4/11/13 (negative axis from 11; accepted for any opset). Every
 * input must have the same element type and rank, and the same size in every
 * dim but the axis; inputs that are empty along the axis are allowed. Element-size
 * generic: any dtype is moved as bytes; the backward (float32) hands each input
 * its slice of the output gradient. CPU implementation only. */
#include "ops.h"
#include "op_params.h"
#include <string.h>



/* ---- shape inference ---- */

static ot_status concat_infer(ot_kctx *c) {
    concat_params *cp = (concat_params *)c->params;
    int n = c->n->n_in;
    if (n < 1) return ot_fail(c->err, OT_ERR_INVALID, "at least one input expected, found none");
    for (int i = 0; i < n; i++)
        if (!ot_has_in(c, i)) return ot_fail(c->err, OT_ERR_INVALID, "input %d is missing (inputs may not be omitted)", i);
    ot_dtype t = ot_idtype(c, 0);
    if (ot_dtype_size(t) == 0)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input 0 has unsupported element type %s", ot_dtype_name(t));
    const ot_attr *ax = ot_attr_find(c->n, "axis");
    if (!ax || ax->type != OT_ATTR_INT) return ot_fail(c->err, OT_ERR_INVALID, "attribute 'axis' (int) is required");
    const ot_shape *s0 = ot_ishape(c, 0);
    if (s0->rank < 1 || s0->rank > OT_MAX_RANK)
        return ot_fail(c->err, OT_ERR_SHAPE, "input 0 has rank %d, expected 1 to %d", s0->rank, OT_MAX_RANK);
    int64_t axis;
    OT_TRY(ot_axis(c, ax->i, s0->rank, &axis));
    ot_shape o = *s0;
    o.d[axis] = 0;
    for (int i = 0; i < n; i++) {
        const ot_shape *s = ot_ishape(c, i);
        char b0[160], b1[160];
        if (ot_idtype(c, i) != t)
            return ot_fail(c->err, OT_ERR_INVALID, "input %d has element type %s, expected %s like input 0", i,
                           ot_dtype_name(ot_idtype(c, i)), ot_dtype_name(t));
        if (s->rank != s0->rank)
            return ot_fail(c->err, OT_ERR_SHAPE, "input %d has shape %s, expected rank %d like input 0 %s", i,
                           ot_shape_str(s, b1, sizeof b1), s0->rank, ot_shape_str(s0, b0, sizeof b0));
        for (int k = 0; k < s->rank; k++) {
            if (k == axis) continue;
            if (s->d[k] != s0->d[k])
                return ot_fail(c->err, OT_ERR_SHAPE, "input %d has shape %s, input 0 %s: dim %d differs off the axis %lld", i,
                               ot_shape_str(s, b1, sizeof b1), ot_shape_str(s0, b0, sizeof b0), k, (long long)axis);
        }
        if (s->d[axis] < 0 || s->d[axis] > OT_MAX_NUMEL - o.d[axis])
            return ot_fail(c->err, OT_ERR_SHAPE, "concatenated axis length is too large");
        o.d[axis] += s->d[axis];
    }
    cp->axis = (int)axis;
    return ot_set_out(c, 0, t, &o);
}

/* ---- forward ---- */

#define CHUNK_BYTES ((size_t)1 << 16)   /* bytes per parallel task within one block */

static ot_status concat_fwd(ot_kctx *c) {
    const concat_params *cp = (const concat_params *)c->params;
    const ot_shape *os = ot_oshape(c, 0);   /* (outer, sum of axis lengths, inner) */
    size_t es = ot_dtype_size(ot_idtype(c, 0));
    int n = c->n->n_in, axis = cp->axis;
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < axis; k++) outer *= os->d[k];
    for (int k = axis + 1; k < os->rank; k++) inner *= os->d[k];
    size_t orow = (size_t)os->d[axis] * (size_t)inner * es;   /* bytes of one outer slice of the output */
    unsigned char *out = (unsigned char *)ot_out(c, 0);
    int64_t total = ot_numel(os);
    if (total == 0) return OT_OK;

    if (outer == 1) {
        /* Few large blocks (one per input): split each into chunks so threads share them. */
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            const unsigned char *src = (const unsigned char *)ot_in(c, i);
            size_t bytes = (size_t)ot_ishape(c, i)->d[axis] * (size_t)inner * es;
            int64_t nchunk = (int64_t)((bytes + CHUNK_BYTES - 1) / CHUNK_BYTES);
            unsigned char *dst = out + off;
#pragma omp parallel for if(total > 32768)
            for (int64_t k = 0; k < nchunk; k++) {
                size_t b0 = (size_t)k * CHUNK_BYTES, nb = bytes - b0 < CHUNK_BYTES ? bytes - b0 : CHUNK_BYTES;
                memcpy(dst + b0, src + b0, nb);
            }
            off += bytes;
        }
        return OT_OK;
    }

    /* One task per outer index: its slice of every input, back to back. */
#pragma omp parallel for if(total > 32768)
    for (int64_t o = 0; o < outer; o++) {
        unsigned char *dst = out + (size_t)o * orow;
        for (int i = 0; i < n; i++) {
            size_t blk = (size_t)ot_ishape(c, i)->d[axis] * (size_t)inner * es;   /* bytes per outer index */
            if (blk) memcpy(dst, (const unsigned char *)ot_in(c, i) + (size_t)o * blk, blk);
            dst += blk;
        }
    }
    return OT_OK;
}

/* ---- backward ----
 * Each input's gradient gets its slice of the output gradient (float32 only).
 * An input listed twice (Concat(a, b, a)) has one gradient buffer: its slices are
 * added by the same task (outer > 1) or one after the other (outer == 1). */

static ot_status concat_bwd(ot_kctx *c) {
    const concat_params *cp = (const concat_params *)c->params;
    const float *gy = ot_gout(c, 0);        /* (outer, sum of axis lengths, inner) */
    const ot_shape *os = ot_oshape(c, 0);
    if (!gy || ot_idtype(c, 0) != OT_F32) return OT_OK;
    int n = c->n->n_in, axis = cp->axis;
    int64_t outer = 1, inner = 1, total = ot_numel(os);
    for (int k = 0; k < axis; k++) outer *= os->d[k];
    for (int k = axis + 1; k < os->rank; k++) inner *= os->d[k];
    int64_t orow = os->d[axis] * inner;     /* elements of one outer slice of the output */
    if (total == 0) return OT_OK;

    if (outer == 1) {
        int64_t off = 0;
        for (int i = 0; i < n; i++) {
            int64_t len = ot_ishape(c, i)->d[axis] * inner;
            float *gx = ot_gin(c, i);
            const float *src = gy + off;
            off += len;
            if (!gx) continue;
            if (ot_gin_set(c, i)) { memcpy(gx, src, sizeof(float) * (size_t)len); continue; }
#pragma omp parallel for simd if(total > 32768)
            for (int64_t j = 0; j < len; j++) gx[j] += src[j];
        }
        return OT_OK;
    }

#pragma omp parallel for if(total > 32768)
    for (int64_t o = 0; o < outer; o++) {
        const float *src = gy + o * orow;
        for (int i = 0; i < n; i++) {
            int64_t blk = ot_ishape(c, i)->d[axis] * inner;   /* elements per outer index */
            float *gx = ot_gin(c, i);
            if (gx) {
                float *dst = gx + o * blk;
                if (ot_gin_set(c, i)) memcpy(dst, src, sizeof(float) * (size_t)blk);
                else for (int64_t j = 0; j < blk; j++) dst[j] += src[j];
            }
            src += blk;
        }
    }
    return OT_OK;
}

/* ---- op table row ---- */

/* definitions (device-neutral) */
const ot_op_def ot_op_concat = {
    .name = "Concat", .min_in = 1, .max_in = -1, .min_out = 1, .max_out = 1, .params_size = sizeof(concat_params),
    .infer = concat_infer, .flags = OT_OPF_GRAD_SET,
};

/* CPU implementations */
const ot_op_impl ot_cpu_concat = {.forward = concat_fwd, .backward = concat_bwd};
