/* shape_ops.c: ops that move elements without arithmetic: Reshape, Flatten,
 * Identity, Squeeze, Unsqueeze (views of their input), Transpose, Split, Slice.
 *
 * Spec: ONNX Reshape-5/13/14 (0 copies the input dim unless allowzero=1, one -1 is
 * inferred), Flatten-1/9/11/13, Identity, Squeeze/Unsqueeze-1/11/13 (axes attribute
 * before opset 13, constant input from 13), Transpose, Split-2/11/13/18 (split
 * attribute before 13, constant input from 13, num_outputs from 18), Slice-1/10/11/13
 * (attributes before 10, constant inputs from 10; indices clamped as the spec's
 * pseudo-code, and like ONNX Runtime an end of INT32_MAX or INT64_MAX means "to the
 * edge" in the direction of the step, so it also reverses a whole axis).
 * All are element-size generic (any dtype). The view ops carry OT_OPF_ALIAS: the
 * planner gives their output the input's bytes, and they copy only when it did not.
 * Backward (float32): the inverse move, added (views: nothing when the planner
 * aliased the gradients too).
 * CPU implementations only. */
#include "ops.h"
#include "op_params.h"
#include <string.h>

/* ---- shared helpers ---- */

static ot_status need_in(ot_kctx *c, int i, const char *what) {
    if (!ot_has_in(c, i)) return ot_fail(c->err, OT_ERR_INVALID, "input %d (%s) is required but missing", i, what);
    return OT_OK;
}

static ot_status elem_size(ot_kctx *c, int i, size_t *es) {
    *es = ot_dtype_size(ot_idtype(c, i));
    if (*es == 0) return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input %d has unsupported element type %s", i, ot_dtype_name(ot_idtype(c, i)));
    return OT_OK;
}

/* Axes from the 'axes' attribute (opset < 13) or constant input 1 (opset >= 13).
 * *n = -1 when absent. */
static ot_status read_axes(ot_kctx *c, int64_t *axes, int64_t *n) {
    *n = -1;
    if (c->opset < 13) {
        const int64_t *a;
        int64_t k = ot_attr_ints(c->n, "axes", &a);
        if (k > OT_MAX_RANK) return ot_fail(c->err, OT_ERR_INVALID, "attribute 'axes' has %lld values, at most %d expected", (long long)k, OT_MAX_RANK);
        for (int64_t i = 0; i < k; i++) axes[i] = a[i];
        *n = k;
        return OT_OK;
    }
    if (!ot_has_in(c, 1)) return OT_OK;
    return ot_const_ints(c, 1, axes, OT_MAX_RANK, n);
}

/* Normalise n axes against rank r; error on duplicates. mask gets bit per axis. */
static ot_status norm_axes(ot_kctx *c, const int64_t *axes, int64_t n, int r, unsigned *mask) {
    *mask = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a;
        OT_TRY(ot_axis(c, axes[i], r, &a));
        if (*mask & (1u << a)) return ot_fail(c->err, OT_ERR_INVALID, "axis %lld is repeated in axes", (long long)axes[i]);
        *mask |= 1u << a;
    }
    return OT_OK;
}

/* Output 0 = input 0's bytes: copy only when the planner did not alias them. */
static ot_status view_fwd(ot_kctx *c) {
    const void *x = ot_in(c, 0);
    void *y = ot_out(c, 0);
    size_t bytes = (size_t)ot_numel(ot_oshape(c, 0)) * ot_dtype_size(ot_idtype(c, 0));
    if (x != y && bytes) memmove(y, x, bytes);
    return OT_OK;
}

/* ---- Reshape, Flatten, Identity, Squeeze, Unsqueeze (views) ---- */

static ot_status reshape_infer(ot_kctx *c) {
    size_t es;
    OT_TRY(need_in(c, 0, "data"));
    OT_TRY(need_in(c, 1, "shape"));
    OT_TRY(elem_size(c, 0, &es));
    const ot_shape *x = ot_ishape(c, 0);
    int64_t sh[OT_MAX_RANK], n, numel;
    OT_TRY(ot_const_ints(c, 1, sh, OT_MAX_RANK, &n));
    if (!ot_shape_numel(x, &numel)) return ot_fail(c->err, OT_ERR_SHAPE, "input shape is not concrete");
    bool allowzero = c->opset >= 14 && ot_attr_int(c->n, "allowzero", 0) != 0;
    ot_shape o;
    memset(&o, 0, sizeof o);
    o.rank = (int)n;
    int neg = -1;
    bool zero = false;
    int64_t known = 1;
    for (int i = 0; i < n; i++) {
        int64_t v = sh[i];
        if (v == 0 && !allowzero) {
            if (i >= x->rank)
                return ot_fail(c->err, OT_ERR_SHAPE, "shape[%d] = 0 copies input dim %d, but the input has rank %d", i, i, x->rank);
            v = x->d[i];
        }
        if (v == 0) zero = true;
        if (v == -1) {
            if (neg >= 0) return ot_fail(c->err, OT_ERR_INVALID, "shape has more than one -1 (dims %d and %d)", neg, i);
            neg = i;
            continue;
        }
        if (v < -1) return ot_fail(c->err, OT_ERR_INVALID, "shape[%d] = %lld, expected a size, 0 or -1", i, (long long)v);
        if (!ot_mul_ok(known, v, &known) || known > OT_MAX_NUMEL)
            return ot_fail(c->err, OT_ERR_SHAPE, "requested shape has too many elements");
        o.d[i] = v;
    }
    char b[160];
    if (neg >= 0) {
        if (allowzero && zero) return ot_fail(c->err, OT_ERR_INVALID, "shape has both 0 and -1 while allowzero=1");
        if (known == 0 || numel % known != 0)
            return ot_fail(c->err, OT_ERR_SHAPE, "input %s (%lld elements) cannot be reshaped: the known dims multiply to %lld",
                           ot_shape_str(x, b, sizeof b), (long long)numel, (long long)known);
        o.d[neg] = numel / known;
    } else if (known != numel) {
        return ot_fail(c->err, OT_ERR_SHAPE, "input %s has %lld elements, the requested shape %lld",
                       ot_shape_str(x, b, sizeof b), (long long)numel, (long long)known);
    }
    return ot_set_out(c, 0, ot_idtype(c, 0), &o);
}

static ot_status flatten_infer(ot_kctx *c) {
    size_t es;
    OT_TRY(need_in(c, 0, "input"));
    OT_TRY(elem_size(c, 0, &es));
    const ot_shape *x = ot_ishape(c, 0);
    int64_t axis = ot_attr_int(c->n, "axis", 1);
    if (axis < -x->rank || axis > x->rank)
        return ot_fail(c->err, OT_ERR_INVALID, "axis %lld is out of range for rank %d (expected %d to %d)", (long long)axis,
                       x->rank, -x->rank, x->rank);
    if (axis < 0) axis += x->rank;
    ot_shape o;
    memset(&o, 0, sizeof o);
    o.rank = 2;
    o.d[0] = o.d[1] = 1;
    for (int i = 0; i < x->rank; i++) o.d[i < axis ? 0 : 1] *= x->d[i];
    return ot_set_out(c, 0, ot_idtype(c, 0), &o);
}

static ot_status identity_infer(ot_kctx *c) {
    size_t es;
    OT_TRY(need_in(c, 0, "input"));
    OT_TRY(elem_size(c, 0, &es));
    return ot_set_out(c, 0, ot_idtype(c, 0), ot_ishape(c, 0));
}

static ot_status squeeze_infer(ot_kctx *c) {
    size_t es;
    OT_TRY(need_in(c, 0, "data"));
    OT_TRY(elem_size(c, 0, &es));
    const ot_shape *x = ot_ishape(c, 0);
    int64_t axes[OT_MAX_RANK], n;
    unsigned mask = 0;
    OT_TRY(read_axes(c, axes, &n));
    if (n > 0) {   /* absent or empty: every size-1 dim (as ORT) */
        OT_TRY(norm_axes(c, axes, n, x->rank, &mask));
        for (int i = 0; i < x->rank; i++)
            if ((mask & (1u << i)) && x->d[i] != 1)
                return ot_fail(c->err, OT_ERR_SHAPE, "axis %d has size %lld, only size-1 dims can be squeezed", i, (long long)x->d[i]);
    } else {
        for (int i = 0; i < x->rank; i++)
            if (x->d[i] == 1) mask |= 1u << i;
    }
    ot_shape o;
    memset(&o, 0, sizeof o);
    for (int i = 0; i < x->rank; i++)
        if (!(mask & (1u << i))) o.d[o.rank++] = x->d[i];
    return ot_set_out(c, 0, ot_idtype(c, 0), &o);
}

static ot_status unsqueeze_infer(ot_kctx *c) {
    size_t es;
    OT_TRY(need_in(c, 0, "data"));
    OT_TRY(elem_size(c, 0, &es));
    const ot_shape *x = ot_ishape(c, 0);
    int64_t axes[OT_MAX_RANK], n;
    unsigned mask;
    OT_TRY(read_axes(c, axes, &n));
    if (n < 0) return ot_fail(c->err, OT_ERR_INVALID, "axes are required (%s)", c->opset < 13 ? "attribute 'axes'" : "input 1");
    if (x->rank + n > OT_MAX_RANK)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "output rank %lld is over the limit %d", (long long)(x->rank + n), OT_MAX_RANK);
    int ro = x->rank + (int)n;
    OT_TRY(norm_axes(c, axes, n, ro, &mask));
    ot_shape o;
    memset(&o, 0, sizeof o);
    o.rank = ro;
    for (int i = 0, k = 0; i < ro; i++) o.d[i] = (mask & (1u << i)) ? 1 : x->d[k++];
    return ot_set_out(c, 0, ot_idtype(c, 0), &o);
}

/* ---- Transpose ---- */



static ot_status transpose_infer(ot_kctx *c) {
    tr_params *tp = (tr_params *)c->params;
    OT_TRY(need_in(c, 0, "data"));
    OT_TRY(elem_size(c, 0, &tp->es));
    const ot_shape *x = ot_ishape(c, 0);
    int r = x->rank, perm[OT_MAX_RANK];
    const int64_t *pa;
    int64_t np = ot_attr_ints(c->n, "perm", &pa);
    unsigned seen = 0;
    if (np < 0) {
        for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
    } else {
        if (np != r) return ot_fail(c->err, OT_ERR_INVALID, "perm has %lld values, the input rank is %d", (long long)np, r);
        for (int i = 0; i < r; i++) {
            if (pa[i] < 0 || pa[i] >= r || (seen & (1u << pa[i])))
                return ot_fail(c->err, OT_ERR_INVALID, "perm is not a permutation of 0..%d (entry %d is %lld)", r - 1, i, (long long)pa[i]);
            seen |= 1u << pa[i];
            perm[i] = (int)pa[i];
        }
    }
    ot_shape o;
    memset(&o, 0, sizeof o);
    o.rank = r;
    for (int i = 0; i < r; i++) o.d[i] = x->d[perm[i]];
    /* Merge: groups of output axes whose input axes are consecutive (size-1 axes skipped). */
    int gstart[OT_MAX_RANK], gn = 0, last = -2;
    int64_t gsize[OT_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int a = perm[i];
        if (x->d[a] == 1) continue;
        bool joins = gn > 0 && a > last;
        for (int k = last + 1; joins && k < a; k++) joins = x->d[k] == 1;   /* only size-1 axes between */
        if (joins) gsize[gn - 1] *= x->d[a];
        else { gstart[gn] = a; gsize[gn] = x->d[a]; gn++; }
        last = a;
    }
    /* Input order of the groups = order of their first input axis. */
    tp->m = gn;
    for (int g = 0; g < gn; g++) {
        int rank_in = 0;
        for (int h = 0; h < gn; h++) rank_in += gstart[h] < gstart[g];
        tp->perm[g] = rank_in;
        tp->din[rank_in] = gsize[g];
    }
    return ot_set_out(c, 0, ot_idtype(c, 0), &o);
}

/* Copy n elements of size es from src with element stride s to contiguous dst. */
static inline void copy_strided(unsigned char *dst, const unsigned char *src, int64_t s, int64_t n, size_t es) {
    switch (es) {
    case 1: for (int64_t j = 0; j < n; j++) dst[j] = src[j * s]; break;
    case 2: for (int64_t j = 0; j < n; j++) ((uint16_t *)dst)[j] = ((const uint16_t *)src)[j * s]; break;
    case 4: for (int64_t j = 0; j < n; j++) ((uint32_t *)dst)[j] = ((const uint32_t *)src)[j * s]; break;
    default: for (int64_t j = 0; j < n; j++) ((uint64_t *)dst)[j] = ((const uint64_t *)src)[j * s]; break;
    }
}

#define TILE 32

static ot_status transpose_fwd(ot_kctx *c) {
    const tr_params *tp = (const tr_params *)c->params;
    const unsigned char *x = (const unsigned char *)ot_in(c, 0);   /* merged (din) */
    unsigned char *y = (unsigned char *)ot_out(c, 0);             /* merged (din[perm]) */
    int64_t total = ot_numel(ot_oshape(c, 0));
    size_t es = tp->es;
    int m = tp->m;
    if (total == 0) return OT_OK;
    if (m <= 1 || (m == 2 && tp->perm[0] == 0)) { memcpy(y, x, (size_t)total * es); return OT_OK; }
    int64_t is[OT_MAX_RANK], od[OT_MAX_RANK];   /* input strides, output dims (merged) */
    is[m - 1] = 1;
    for (int a = m - 2; a >= 0; a--) is[a] = is[a + 1] * tp->din[a + 1];
    for (int i = 0; i < m; i++) od[i] = tp->din[tp->perm[i]];
    bool batched2d = tp->perm[m - 1] == m - 2 && tp->perm[m - 2] == m - 1;
    for (int i = 0; batched2d && i < m - 2; i++) batched2d = tp->perm[i] == i;
    if (batched2d) {
        /* (B, R, C) -> (B, C, R) in TILE x TILE blocks. */
        int64_t R = tp->din[m - 2], C = tp->din[m - 1], B = total / (R * C);
        int64_t tr = (R + TILE - 1) / TILE, tc = (C + TILE - 1) / TILE, tasks = B * tr * tc;
#pragma omp parallel for if(total > 32768)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t b = t / (tr * tc), r0 = (t / tc % tr) * TILE, c0 = (t % tc) * TILE;
            int64_t r1 = r0 + TILE < R ? r0 + TILE : R, c1 = c0 + TILE < C ? c0 + TILE : C;
            const unsigned char *xb = x + (size_t)(b * R * C) * es;
            unsigned char *yb = y + (size_t)(b * R * C) * es;
            for (int64_t cc = c0; cc < c1; cc++)
                copy_strided(yb + (size_t)(cc * R + r0) * es, xb + (size_t)(r0 * C + cc) * es, C, r1 - r0, es);
        }
        return OT_OK;
    }
    /* Generic: one output row (innermost merged output axis) per task. */
    int64_t len = od[m - 1], rows = total / len, s = is[tp->perm[m - 1]];
#pragma omp parallel for if(total > 32768)
    for (int64_t row = 0; row < rows; row++) {
        int64_t q = row, off = 0;
        for (int i = m - 2; i >= 0; i--) {
            off += (q % od[i]) * is[tp->perm[i]];
            q /= od[i];
        }
        if (s == 1) memcpy(y + (size_t)(row * len) * es, x + (size_t)off * es, (size_t)len * es);
        else copy_strided(y + (size_t)(row * len) * es, x + (size_t)off * es, s, len, es);
    }
    return OT_OK;
}

/* ---- Split ---- */


static ot_status split_infer(ot_kctx *c) {
    split_params *sp = (split_params *)c->params;
    OT_TRY(need_in(c, 0, "input"));
    OT_TRY(elem_size(c, 0, &sp->es));
    const ot_shape *x = ot_ishape(c, 0);
    int n = c->n->n_out;
    if (n < 1 || n > SPLIT_MAX)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "%d outputs, expected 1 to %d", n, SPLIT_MAX);
    int64_t axis;
    OT_TRY(ot_axis(c, ot_attr_int(c->n, "axis", 0), x->rank, &axis));
    int64_t dim = x->d[axis], k = -1;
    int64_t buf[SPLIT_MAX];
    if (c->opset < 13) {
        const int64_t *a;
        k = ot_attr_ints(c->n, "split", &a);
        if (k > SPLIT_MAX) return ot_fail(c->err, OT_ERR_INVALID, "attribute 'split' has %lld values, %d outputs", (long long)k, n);
        for (int64_t i = 0; i < k; i++) buf[i] = a[i];
    } else if (ot_has_in(c, 1) && ot_numel(ot_ishape(c, 1)) > 0) {
        OT_TRY(ot_const_ints(c, 1, buf, SPLIT_MAX, &k));
    }
    if (k >= 0) {
        int64_t sum = 0;
        if (k != n) return ot_fail(c->err, OT_ERR_INVALID, "split has %lld sizes for %d outputs", (long long)k, n);
        for (int i = 0; i < n; i++) {
            if (buf[i] < 0 || buf[i] > dim) return ot_fail(c->err, OT_ERR_INVALID, "split[%d] = %lld is out of range", i, (long long)buf[i]);
            sum += buf[i];
            sp->size[i] = buf[i];
        }
        if (sum != dim)
            return ot_fail(c->err, OT_ERR_SHAPE, "split sizes add up to %lld, axis %lld has length %lld", (long long)sum,
                           (long long)axis, (long long)dim);
    } else if (c->opset >= 18 && ot_attr_find(c->n, "num_outputs")) {
        int64_t no = ot_attr_int(c->n, "num_outputs", 0);
        if (no != n) return ot_fail(c->err, OT_ERR_INVALID, "num_outputs is %lld but the node has %d outputs", (long long)no, n);
        int64_t chunk = (dim + n - 1) / n, rest = dim - chunk * (n - 1);
        if (rest < 0)
            return ot_fail(c->err, OT_ERR_SHAPE, "axis length %lld cannot be split into %d chunks of %lld", (long long)dim, n, (long long)chunk);
        for (int i = 0; i < n; i++) sp->size[i] = i < n - 1 ? chunk : rest;
    } else {
        if (dim % n != 0)
            return ot_fail(c->err, OT_ERR_SHAPE, "axis %lld of length %lld does not split into %d equal parts", (long long)axis,
                           (long long)dim, n);
        for (int i = 0; i < n; i++) sp->size[i] = dim / n;
    }
    sp->axis = (int)axis;
    sp->n = n;
    for (int i = 0; i < n; i++) {
        ot_shape o = *x;
        o.d[axis] = sp->size[i];
        OT_TRY(ot_set_out(c, i, ot_idtype(c, 0), &o));
    }
    return OT_OK;
}

static ot_status split_fwd(ot_kctx *c) {
    const split_params *sp = (const split_params *)c->params;
    const ot_shape *xs = ot_ishape(c, 0);
    const unsigned char *x = (const unsigned char *)ot_in(c, 0);   /* (outer, dim, inner) */
    int64_t outer = 1, inner = 1, total = ot_numel(xs);
    for (int k = 0; k < sp->axis; k++) outer *= xs->d[k];
    for (int k = sp->axis + 1; k < xs->rank; k++) inner *= xs->d[k];
    size_t irow = (size_t)xs->d[sp->axis] * (size_t)inner * sp->es;
#pragma omp parallel for if(total > 32768)
    for (int64_t o = 0; o < outer; o++) {
        size_t off = 0;
        for (int i = 0; i < sp->n; i++) {
            size_t blk = (size_t)sp->size[i] * (size_t)inner * sp->es;   /* bytes per outer index */
            if (ot_has_out(c, i) && blk) memcpy((unsigned char *)ot_out(c, i) + (size_t)o * blk, x + (size_t)o * irow + off, blk);
            off += blk;
        }
    }
    return OT_OK;
}

/* ---- Slice ---- */

typedef struct slice_params {
    int64_t start[OT_MAX_RANK], step[OT_MAX_RANK];   /* per input axis */
    size_t es;
} slice_params;

static ot_status slice_infer(ot_kctx *c) {
    slice_params *sp = (slice_params *)c->params;
    OT_TRY(need_in(c, 0, "data"));
    OT_TRY(elem_size(c, 0, &sp->es));
    const ot_shape *x = ot_ishape(c, 0);
    int r = x->rank;
    int64_t st[OT_MAX_RANK], en[OT_MAX_RANK], ax[OT_MAX_RANK], sp_[OT_MAX_RANK], ns, ne, na = -1, nt = -1;
    if (c->opset < 10) {
        const int64_t *a;
        const int64_t *b;
        ns = ot_attr_ints(c->n, "starts", &a);
        ne = ot_attr_ints(c->n, "ends", &b);
        if (ns < 0 || ne < 0) return ot_fail(c->err, OT_ERR_INVALID, "attributes 'starts' and 'ends' are required");
        if (ns > OT_MAX_RANK || ne > OT_MAX_RANK) return ot_fail(c->err, OT_ERR_INVALID, "more starts/ends than the input rank %d", r);
        for (int64_t i = 0; i < ns; i++) st[i] = a[i];
        for (int64_t i = 0; i < ne; i++) en[i] = b[i];
        const int64_t *aa;
        na = ot_attr_ints(c->n, "axes", &aa);
        if (na > OT_MAX_RANK) return ot_fail(c->err, OT_ERR_INVALID, "more axes than the input rank %d", r);
        for (int64_t i = 0; i < na; i++) ax[i] = aa[i];
    } else {
        OT_TRY(need_in(c, 1, "starts"));
        OT_TRY(need_in(c, 2, "ends"));
        OT_TRY(ot_const_ints(c, 1, st, OT_MAX_RANK, &ns));
        OT_TRY(ot_const_ints(c, 2, en, OT_MAX_RANK, &ne));
        if (ot_has_in(c, 3)) OT_TRY(ot_const_ints(c, 3, ax, OT_MAX_RANK, &na));
        if (ot_has_in(c, 4)) OT_TRY(ot_const_ints(c, 4, sp_, OT_MAX_RANK, &nt));
    }
    if (ns != ne || (na >= 0 && na != ns) || (nt >= 0 && nt != ns))
        return ot_fail(c->err, OT_ERR_INVALID, "starts, ends, axes and steps have different lengths (%lld, %lld, %lld, %lld)",
                       (long long)ns, (long long)ne, (long long)na, (long long)nt);
    ot_shape o = *x;
    unsigned seen = 0;
    for (int a = 0; a < r; a++) { sp->start[a] = 0; sp->step[a] = 1; }
    for (int64_t i = 0; i < ns; i++) {
        int64_t a;
        OT_TRY(ot_axis(c, na >= 0 ? ax[i] : i, r, &a));
        if (seen & (1u << a)) return ot_fail(c->err, OT_ERR_INVALID, "axis %lld appears twice in axes", (long long)a);
        seen |= 1u << a;
        int64_t dim = x->d[a], step = nt >= 0 ? sp_[i] : 1, s = st[i], e = en[i], len;
        if (step == 0) return ot_fail(c->err, OT_ERR_INVALID, "steps[%lld] is 0", (long long)i);
        if (step < -INT64_MAX) step = -INT64_MAX;
        bool to_edge = e == INT64_MAX || e == INT32_MAX;   /* ORT: "slice to the end" for either sign of step */
        if (s < 0) s += dim;
        if (e < 0) e += dim;
        if (to_edge) e = step > 0 ? dim : -1;
        if (dim == 0) {
            len = 0;
        } else if (step > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            len = e - s <= 0 ? 0 : (e - s - 1) / step + 1;
        } else {
            s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            len = s - e <= 0 ? 0 : (s - e - 1) / -step + 1;
        }
        sp->start[a] = len > 0 ? s : 0;
        sp->step[a] = step;
        o.d[a] = len;
    }
    return ot_set_out(c, 0, ot_idtype(c, 0), &o);
}

static ot_status slice_fwd(ot_kctx *c) {
    const slice_params *sp = (const slice_params *)c->params;
    const ot_shape *xs = ot_ishape(c, 0), *ys = ot_oshape(c, 0);
    const unsigned char *x = (const unsigned char *)ot_in(c, 0);
    unsigned char *y = (unsigned char *)ot_out(c, 0);
    int r = xs->rank;
    size_t es = sp->es;
    int64_t total = ot_numel(ys);
    if (total == 0) return OT_OK;
    int64_t is[OT_MAX_RANK + 1];   /* input element strides */
    is[r] = 1;
    for (int a = r - 1; a >= 0; a--) is[a] = is[a + 1] * (a == r - 1 ? 1 : xs->d[a + 1]);
    /* Trailing axes copied whole form one contiguous block; a unit-step axis before them joins it. */
    int k = r;   /* axes [k, r) are in the block */
    int64_t blk = 1;
    while (k > 0 && sp->start[k - 1] == 0 && sp->step[k - 1] == 1 && ys->d[k - 1] == xs->d[k - 1]) { k--; blk *= xs->d[k]; }
    int64_t base = 0;
    if (k > 0 && sp->step[k - 1] == 1) { k--; blk *= ys->d[k]; base = sp->start[k] * is[k]; }
    int64_t rows = total / blk;
    size_t bb = (size_t)blk * es;
#pragma omp parallel for if(total > 32768)
    for (int64_t row = 0; row < rows; row++) {
        int64_t q = row, off = base;
        for (int a = k - 1; a >= 0; a--) {
            off += (sp->start[a] + (q % ys->d[a]) * sp->step[a]) * is[a];
            q /= ys->d[a];
        }
        memcpy(y + (size_t)row * bb, x + (size_t)off * es, bb);
    }
    return OT_OK;
}

/* ---- backward ----
 * Float32 only (integer shape arithmetic has no gradient). Every op here moves
 * each input element to at most one place of each output, so the gradient is
 * the inverse move, added; every loop writes each input gradient element from
 * one task only. */

/* dst[j] += src[j] for n floats. */
static void add_to(float *dst, const float *src, int64_t n) {
#pragma omp parallel for simd if(n > 32768)
    for (int64_t j = 0; j < n; j++) dst[j] += src[j];
}

/* Views: when the planner gave input and output one gradient buffer, it is
 * already the input's gradient. */
static ot_status view_bwd(ot_kctx *c) {
    float *gx = ot_gin(c, 0);
    const float *gy = ot_gout(c, 0);
    if (!gx || !gy || gx == gy || ot_idtype(c, 0) != OT_F32) return OT_OK;
    add_to(gx, gy, ot_numel(ot_oshape(c, 0)));
    return OT_OK;
}

static ot_status transpose_bwd(ot_kctx *c) {
    const tr_params *tp = (const tr_params *)c->params;
    float *gx = ot_gin(c, 0);          /* merged (din) */
    const float *gy = ot_gout(c, 0);   /* merged (din[perm]) */
    int64_t total = ot_numel(ot_oshape(c, 0));
    int m = tp->m;
    if (!gx || !gy || total == 0 || ot_idtype(c, 0) != OT_F32) return OT_OK;
    if (m <= 1 || (m == 2 && tp->perm[0] == 0)) { add_to(gx, gy, total); return OT_OK; }
    int64_t is[OT_MAX_RANK], od[OT_MAX_RANK];
    is[m - 1] = 1;
    for (int a = m - 2; a >= 0; a--) is[a] = is[a + 1] * tp->din[a + 1];
    for (int i = 0; i < m; i++) od[i] = tp->din[tp->perm[i]];
    bool batched2d = tp->perm[m - 1] == m - 2 && tp->perm[m - 2] == m - 1;
    for (int i = 0; batched2d && i < m - 2; i++) batched2d = tp->perm[i] == i;
    if (batched2d) {
        /* gx (B, R, C) += gy (B, C, R)^T in TILE x TILE blocks */
        int64_t R = tp->din[m - 2], C = tp->din[m - 1], B = total / (R * C);
        int64_t tr = (R + TILE - 1) / TILE, tc = (C + TILE - 1) / TILE, tasks = B * tr * tc;
#pragma omp parallel for if(total > 32768)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t b = t / (tr * tc), r0 = (t / tc % tr) * TILE, c0 = (t % tc) * TILE;
            int64_t r1 = r0 + TILE < R ? r0 + TILE : R, c1 = c0 + TILE < C ? c0 + TILE : C;
            float *xb = gx + b * R * C;
            const float *yb = gy + b * R * C;
            for (int64_t rr = r0; rr < r1; rr++)
                for (int64_t cc = c0; cc < c1; cc++) xb[rr * C + cc] += yb[cc * R + rr];
        }
        return OT_OK;
    }
    int64_t len = od[m - 1], rows = total / len, s = is[tp->perm[m - 1]];
#pragma omp parallel for if(total > 32768)
    for (int64_t row = 0; row < rows; row++) {
        int64_t q = row, off = 0;
        for (int i = m - 2; i >= 0; i--) {
            off += (q % od[i]) * is[tp->perm[i]];
            q /= od[i];
        }
        const float *src = gy + row * len;
        float *dst = gx + off;
        for (int64_t j = 0; j < len; j++) dst[j * s] += src[j];
    }
    return OT_OK;
}

static ot_status split_bwd(ot_kctx *c) {
    const split_params *sp = (const split_params *)c->params;
    const ot_shape *xs = ot_ishape(c, 0);
    float *gx = ot_gin(c, 0);   /* (outer, dim, inner) */
    if (!gx || ot_idtype(c, 0) != OT_F32) return OT_OK;
    int64_t outer = 1, inner = 1, total = ot_numel(xs);
    for (int k = 0; k < sp->axis; k++) outer *= xs->d[k];
    for (int k = sp->axis + 1; k < xs->rank; k++) inner *= xs->d[k];
    int64_t irow = xs->d[sp->axis] * inner;
    if (outer == 1) {
        int64_t off = 0;
        for (int i = 0; i < sp->n; i++) {
            int64_t blk = sp->size[i] * inner;
            const float *gy = ot_gout(c, i);   /* NULL: no gradient, adds zeros */
            if (gy) add_to(gx + off, gy, blk);
            off += blk;
        }
        return OT_OK;
    }
#pragma omp parallel for if(total > 32768)
    for (int64_t o = 0; o < outer; o++) {
        int64_t off = 0;
        for (int i = 0; i < sp->n; i++) {
            int64_t blk = sp->size[i] * inner;   /* elements per outer index */
            const float *gy = ot_gout(c, i);
            if (gy) {
                float *dst = gx + o * irow + off;
                const float *src = gy + o * blk;
                for (int64_t j = 0; j < blk; j++) dst[j] += src[j];
            }
            off += blk;
        }
    }
    return OT_OK;
}

static ot_status slice_bwd(ot_kctx *c) {
    const slice_params *sp = (const slice_params *)c->params;
    const ot_shape *xs = ot_ishape(c, 0), *ys = ot_oshape(c, 0);
    float *gx = ot_gin(c, 0);
    const float *gy = ot_gout(c, 0);
    int r = xs->rank;
    int64_t total = ot_numel(ys);
    if (!gx || !gy || total == 0 || ot_idtype(c, 0) != OT_F32) return OT_OK;
    /* the forward's blocking: rows of blk contiguous elements (steps may be negative) */
    int64_t is[OT_MAX_RANK + 1];
    is[r] = 1;
    for (int a = r - 1; a >= 0; a--) is[a] = is[a + 1] * (a == r - 1 ? 1 : xs->d[a + 1]);
    int k = r;
    int64_t blk = 1;
    while (k > 0 && sp->start[k - 1] == 0 && sp->step[k - 1] == 1 && ys->d[k - 1] == xs->d[k - 1]) { k--; blk *= xs->d[k]; }
    int64_t base = 0;
    if (k > 0 && sp->step[k - 1] == 1) { k--; blk *= ys->d[k]; base = sp->start[k] * is[k]; }
    int64_t rows = total / blk;
#pragma omp parallel for if(total > 32768)
    for (int64_t row = 0; row < rows; row++) {
        int64_t q = row, off = base;
        for (int a = k - 1; a >= 0; a--) {
            off += (sp->start[a] + (q % ys->d[a]) * sp->step[a]) * is[a];
            q /= ys->d[a];
        }
        float *dst = gx + off;
        const float *src = gy + row * blk;
        for (int64_t j = 0; j < blk; j++) dst[j] += src[j];
    }
    return OT_OK;
}

/* ---- op table rows ---- */

/* definitions (device-neutral) */
const ot_op_def ot_op_reshape = {
    .name = "Reshape", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = reshape_infer,
    .flags = OT_OPF_ALIAS,
};
const ot_op_def ot_op_flatten = {
    .name = "Flatten", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = flatten_infer,
    .flags = OT_OPF_ALIAS,
};
const ot_op_def ot_op_identity = {
    .name = "Identity", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = identity_infer,
    .flags = OT_OPF_ALIAS,
};
const ot_op_def ot_op_squeeze = {
    .name = "Squeeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = squeeze_infer,
    .flags = OT_OPF_ALIAS,
};
const ot_op_def ot_op_unsqueeze = {
    .name = "Unsqueeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = unsqueeze_infer,
    .flags = OT_OPF_ALIAS,
};
const ot_op_def ot_op_transpose = {
    .name = "Transpose", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .params_size = sizeof(tr_params),
    .infer = transpose_infer,
};
const ot_op_def ot_op_split = {
    .name = "Split", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = SPLIT_MAX,
    .params_size = sizeof(split_params), .infer = split_infer,
};
const ot_op_def ot_op_slice = {
    .name = "Slice", .min_in = 1, .max_in = 5, .min_out = 1, .max_out = 1, .params_size = sizeof(slice_params),
    .infer = slice_infer,
};

/* CPU implementations */
const ot_op_impl ot_cpu_reshape = {.forward = view_fwd, .backward = view_bwd};
const ot_op_impl ot_cpu_flatten = {.forward = view_fwd, .backward = view_bwd};
const ot_op_impl ot_cpu_identity = {.forward = view_fwd, .backward = view_bwd};
const ot_op_impl ot_cpu_squeeze = {.forward = view_fwd, .backward = view_bwd};
const ot_op_impl ot_cpu_unsqueeze = {.forward = view_fwd, .backward = view_bwd};
const ot_op_impl ot_cpu_transpose = {.forward = transpose_fwd, .backward = transpose_bwd};
const ot_op_impl ot_cpu_split = {.forward = split_fwd, .backward = split_bwd};
const ot_op_impl ot_cpu_slice = {.forward = slice_fwd, .backward = slice_bwd};
