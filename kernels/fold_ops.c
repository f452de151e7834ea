/* fold_ops.c: the ops of shape arithmetic that planning usually folds into
 * constants: Constant, Shape, Gather, Cast, ConstantOfShape.
 *
 * Spec: ONNX Constant-1/9/11/12/13 (value, value_float(s), value_int(s); sparse and
 * string values unsupported), Shape-1/13/15 (start/end clamped like the spec),
 * Gather-1/11/13 (negative indices wrap, out-of-range indices are errors),
 * Cast-6/9/13/19 between float32, float16, float64, int32, int64, uint8, int8 and
 * bool, ConstantOfShape-9 (value: a one-element tensor, default float32 0).
 * Cast follows ONNX Runtime on x86: float to integer truncates toward zero; NaN or
 * out-of-range values become the minimum of int32/int64 (cvttss2si), narrower
 * integers wrap through int32; integer to integer wraps; anything to bool is != 0;
 * float16 goes through float32. Every kernel also runs at run time when its
 * inputs are not constant. Plans fold these on the CPU at plan time
 * whatever their device; a runtime step of them on another device needs that
 * device's implementation (none exists yet: plan creation says so). */
#include "ops.h"
#include <math.h>
#include <string.h>

static ot_status need_in(ot_kctx *c, int i, const char *what) {
    if (!ot_has_in(c, i)) return ot_fail(c->err, OT_ERR_INVALID, "input %d (%s) is required but missing", i, what);
    return OT_OK;
}

/* ---- Constant ---- */

/* The one value attribute of a Constant node, as (dtype, shape, bytes). */
static ot_status constant_value(ot_kctx *c, ot_dtype *t, ot_shape *s, const void **data, size_t *nbytes) {
    static const char *unsupported[] = {"sparse_value", "value_string", "value_strings"};
    static const char *names[] = {"value", "value_float", "value_floats", "value_int", "value_ints"};
    for (int i = 0; i < 3; i++)
        if (ot_attr_find(c->n, unsupported[i]))
            return ot_fail(c->err, OT_ERR_UNSUPPORTED, "attribute '%s' is not supported (only numeric dense values)", unsupported[i]);
    const ot_attr *a = NULL;
    int which = -1;
    for (int i = 0; i < 5; i++) {
        const ot_attr *f = ot_attr_find(c->n, names[i]);
        if (!f) continue;
        if (a) return ot_fail(c->err, OT_ERR_INVALID, "both '%s' and '%s' are set, expected exactly one value attribute", names[which], names[i]);
        a = f;
        which = i;
    }
    if (!a) return ot_fail(c->err, OT_ERR_INVALID, "no value attribute (value, value_float(s), value_int(s))");
    static const ot_attr_type want[] = {OT_ATTR_TENSOR, OT_ATTR_FLOAT, OT_ATTR_FLOATS, OT_ATTR_INT, OT_ATTR_INTS};
    if (a->type != want[which]) return ot_fail(c->err, OT_ERR_INVALID, "attribute '%s' has the wrong attribute type %d", names[which], (int)a->type);
    memset(s, 0, sizeof *s);
    switch (which) {
    case 0: {
        const ot_const *k = a->t;
        int64_t n;
        if (!k) return ot_fail(c->err, OT_ERR_INVALID, "attribute 'value' holds no tensor");
        size_t es = ot_dtype_size(k->dtype);
        if (es == 0) return ot_fail(c->err, OT_ERR_UNSUPPORTED, "attribute 'value' has unsupported element type %s", ot_dtype_name(k->dtype));
        if (!ot_shape_numel(&k->shape, &n)) return ot_fail(c->err, OT_ERR_INVALID, "attribute 'value' has an invalid shape");
        if ((size_t)n * es != k->nbytes || (n > 0 && !k->data))
            return ot_fail(c->err, OT_ERR_INVALID, "attribute 'value' holds %zu bytes, its shape needs %zu", k->nbytes, (size_t)n * es);
        *t = k->dtype; *s = k->shape; *data = k->data; *nbytes = k->nbytes;
        return OT_OK;
    }
    case 1: *t = OT_F32; s->rank = 0; *data = &a->f; *nbytes = sizeof(float); return OT_OK;
    case 3: *t = OT_I64; s->rank = 0; *data = &a->i; *nbytes = sizeof(int64_t); return OT_OK;
    default: /* value_floats, value_ints: 1-D */
        if (a->n < 0 || a->n > OT_MAX_NUMEL) return ot_fail(c->err, OT_ERR_INVALID, "attribute '%s' has an invalid length", names[which]);
        *t = which == 2 ? OT_F32 : OT_I64;
        s->rank = 1;
        s->d[0] = a->n;
        *data = which == 2 ? (const void *)a->floats : (const void *)a->ints;
        *nbytes = (size_t)a->n * (which == 2 ? sizeof(float) : sizeof(int64_t));
        return OT_OK;
    }
}

static ot_status constant_infer(ot_kctx *c) {
    ot_dtype t;
    ot_shape s;
    const void *d;
    size_t nb;
    OT_TRY(constant_value(c, &t, &s, &d, &nb));
    return ot_set_out(c, 0, t, &s);
}

static ot_status constant_fwd(ot_kctx *c) {
    ot_dtype t;
    ot_shape s;
    const void *d;
    size_t nb;
    OT_TRY(constant_value(c, &t, &s, &d, &nb));
    if (nb) memcpy(ot_out(c, 0), d, nb);
    return OT_OK;
}

/* ---- Shape ---- */

typedef struct shape_params { int start, end; } shape_params;

static ot_status shape_infer(ot_kctx *c) {
    shape_params *sp = (shape_params *)c->params;
    OT_TRY(need_in(c, 0, "data"));
    int r = ot_ishape(c, 0)->rank;
    int64_t s = c->opset >= 15 ? ot_attr_int(c->n, "start", 0) : 0;
    int64_t e = c->opset >= 15 ? ot_attr_int(c->n, "end", r) : r;
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = s < 0 ? 0 : s > r ? r : s;
    e = e < 0 ? 0 : e > r ? r : e;
    if (e < s) e = s;
    sp->start = (int)s;
    sp->end = (int)e;
    ot_shape o;
    memset(&o, 0, sizeof o);
    o.rank = 1;
    o.d[0] = e - s;
    return ot_set_out(c, 0, OT_I64, &o);
}

static ot_status shape_fwd(ot_kctx *c) {
    const shape_params *sp = (const shape_params *)c->params;
    const ot_shape *x = ot_ishape(c, 0);
    int64_t *y = (int64_t *)ot_out(c, 0);   /* (end - start) */
    for (int i = sp->start; i < sp->end; i++) y[i - sp->start] = x->d[i];
    return OT_OK;
}

/* ---- Gather ---- */

typedef struct gather_params { int axis; } gather_params;

/* Check indices against dim (axis length); error names the first bad one. */
static ot_status gather_check(ot_kctx *c, const void *idx, ot_dtype it, int64_t n, int64_t dim) {
    for (int64_t k = 0; k < n; k++) {
        int64_t v = it == OT_I64 ? ((const int64_t *)idx)[k] : ((const int32_t *)idx)[k];
        if (v < -dim || v >= dim)
            return ot_fail(c->err, OT_ERR_INVALID, "index %lld (at position %lld) is out of range for axis length %lld",
                           (long long)v, (long long)k, (long long)dim);
    }
    return OT_OK;
}

static ot_status gather_infer(ot_kctx *c) {
    gather_params *gp = (gather_params *)c->params;
    static const ot_dtype it[] = {OT_I64, OT_I32, OT_UNDEF};
    OT_TRY(need_in(c, 0, "data"));
    OT_TRY(need_in(c, 1, "indices"));
    if (ot_dtype_size(ot_idtype(c, 0)) == 0)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "data has unsupported element type %s", ot_dtype_name(ot_idtype(c, 0)));
    OT_TRY(ot_require_dtype(c, 1, it));
    const ot_shape *x = ot_ishape(c, 0), *ix = ot_ishape(c, 1);
    int64_t axis;
    OT_TRY(ot_axis(c, ot_attr_int(c->n, "axis", 0), x->rank, &axis));
    if (x->rank - 1 + ix->rank > OT_MAX_RANK)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "output rank %d is over the limit %d", x->rank - 1 + ix->rank, OT_MAX_RANK);
    ot_shape o;
    memset(&o, 0, sizeof o);
    for (int i = 0; i < axis; i++) o.d[o.rank++] = x->d[i];
    for (int i = 0; i < ix->rank; i++) o.d[o.rank++] = ix->d[i];
    for (int i = (int)axis + 1; i < x->rank; i++) o.d[o.rank++] = x->d[i];
    const void *idx = ot_iconst(c, 1);
    if (idx) OT_TRY(gather_check(c, idx, ot_idtype(c, 1), ot_numel(ix), x->d[axis]));
    gp->axis = (int)axis;
    return ot_set_out(c, 0, ot_idtype(c, 0), &o);
}

static ot_status gather_fwd(ot_kctx *c) {
    const gather_params *gp = (const gather_params *)c->params;
    const ot_shape *x = ot_ishape(c, 0);
    const unsigned char *xd = (const unsigned char *)ot_in(c, 0);   /* (outer, dim, inner) */
    const void *idx = ot_in(c, 1);                                  /* (n) */
    unsigned char *y = (unsigned char *)ot_out(c, 0);              /* (outer, n, inner) */
    ot_dtype it = ot_idtype(c, 1);
    size_t es = ot_dtype_size(ot_idtype(c, 0));
    int64_t outer = 1, inner = 1, dim = x->d[gp->axis], n = ot_numel(ot_ishape(c, 1));
    for (int i = 0; i < gp->axis; i++) outer *= x->d[i];
    for (int i = gp->axis + 1; i < x->rank; i++) inner *= x->d[i];
    OT_TRY(gather_check(c, idx, it, n, dim));
    size_t blk = (size_t)inner * es;
    int64_t total = outer * n * inner;
#pragma omp parallel for if(total > 32768)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < n; k++) {
            int64_t v = it == OT_I64 ? ((const int64_t *)idx)[k] : ((const int32_t *)idx)[k];
            if (v < 0) v += dim;
            if (blk) memcpy(y + ((size_t)o * (size_t)n + (size_t)k) * blk, xd + ((size_t)o * (size_t)dim + (size_t)v) * blk, blk);
        }
    return OT_OK;
}

/* ---- Cast ---- */

typedef struct cast_params { ot_dtype from, to; } cast_params;

static bool cast_type_ok(ot_dtype t) {
    return t == OT_F32 || t == OT_F16 || t == OT_F64 || t == OT_I32 || t == OT_I64 || t == OT_U8 || t == OT_I8 || t == OT_BOOL;
}

static ot_status cast_infer(ot_kctx *c) {
    cast_params *cp = (cast_params *)c->params;
    OT_TRY(need_in(c, 0, "input"));
    const ot_attr *to = ot_attr_find(c->n, "to");
    if (!to || to->type != OT_ATTR_INT) return ot_fail(c->err, OT_ERR_INVALID, "attribute 'to' (int) is required");
    ot_dtype from = ot_idtype(c, 0);
    if (!cast_type_ok(from))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input element type %s is not supported", ot_dtype_name(from));
    if (to->i < 0 || to->i > 64 || !cast_type_ok((ot_dtype)to->i))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "cast to %s (to=%lld) is not supported (float32, float16, float64, int32, int64, uint8, int8, bool)",
                       to->i >= 0 && to->i <= 64 ? ot_dtype_name((ot_dtype)to->i) : "?", (long long)to->i);
    (void)ot_attr_int(c->n, "saturate", 1);   /* float8 targets only */
    cp->from = from;
    cp->to = (ot_dtype)to->i;
    return ot_set_out(c, 0, cp->to, ot_ishape(c, 0));
}

/* x86 truncating conversions, without C's undefined behaviour out of range. */
static inline int64_t f_to_i64(double v) {
    return v >= -9223372036854775808.0 && v < 9223372036854775808.0 ? (int64_t)v : INT64_MIN;
}
static inline int32_t f_to_i32(double v) { return v > -2147483649.0 && v < 2147483648.0 ? (int32_t)v : INT32_MIN; }

/* One element, read as either an exact integer or a float. */
typedef struct num { bool is_int; int64_t i; double f; } num;

static inline num cast_load(const void *x, ot_dtype t, int64_t k) {
    num v = {false, 0, 0.0};
    switch (t) {
    case OT_F32: v.f = ((const float *)x)[k]; break;
    case OT_F64: v.f = ((const double *)x)[k]; break;
    case OT_F16: v.f = ot_half_to_float(((const uint16_t *)x)[k]); break;
    case OT_I32: v.is_int = true; v.i = ((const int32_t *)x)[k]; break;
    case OT_I64: v.is_int = true; v.i = ((const int64_t *)x)[k]; break;
    case OT_U8: v.is_int = true; v.i = ((const uint8_t *)x)[k]; break;
    case OT_I8: v.is_int = true; v.i = ((const int8_t *)x)[k]; break;
    default: v.is_int = true; v.i = ((const uint8_t *)x)[k] != 0; break;   /* bool */
    }
    return v;
}

static inline void cast_store(void *y, ot_dtype t, int64_t k, num v) {
    switch (t) {
    case OT_F32: ((float *)y)[k] = v.is_int ? (float)v.i : (float)v.f; break;
    case OT_F64: ((double *)y)[k] = v.is_int ? (double)v.i : v.f; break;
    case OT_F16: ((uint16_t *)y)[k] = ot_float_to_half(v.is_int ? (float)v.i : (float)v.f); break;
    case OT_I64: ((int64_t *)y)[k] = v.is_int ? v.i : f_to_i64(v.f); break;
    case OT_I32: ((int32_t *)y)[k] = (int32_t)(uint32_t)(v.is_int ? (uint64_t)v.i : (uint64_t)(int64_t)f_to_i32(v.f)); break;
    case OT_U8: ((uint8_t *)y)[k] = (uint8_t)(v.is_int ? (uint64_t)v.i : (uint64_t)(int64_t)f_to_i32(v.f)); break;
    case OT_I8: ((int8_t *)y)[k] = (int8_t)(uint8_t)(v.is_int ? (uint64_t)v.i : (uint64_t)(int64_t)f_to_i32(v.f)); break;
    default: ((uint8_t *)y)[k] = v.is_int ? v.i != 0 : v.f != 0.0; break;   /* bool; NaN is true */
    }
}

static ot_status cast_fwd(ot_kctx *c) {
    const cast_params *cp = (const cast_params *)c->params;
    const void *x = ot_in(c, 0);
    void *y = ot_out(c, 0);   /* same shape */
    int64_t n = ot_numel(ot_ishape(c, 0));
    if (cp->from == cp->to) {
        if (x != y && n) memcpy(y, x, (size_t)n * ot_dtype_size(cp->to));
        return OT_OK;
    }
    ot_dtype from = cp->from, to = cp->to;
#pragma omp parallel for if(n > 32768)
    for (int64_t k = 0; k < n; k++) cast_store(y, to, k, cast_load(x, from, k));
    return OT_OK;
}

/* ---- ConstantOfShape ---- */

typedef struct cos_params { unsigned char value[8]; size_t es; } cos_params;

static ot_status cos_infer(ot_kctx *c) {
    cos_params *cp = (cos_params *)c->params;
    OT_TRY(need_in(c, 0, "input"));
    if (!ot_iconst(c, 0))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input (the output shape) must be a constant, it is computed at run time");
    if (ot_idtype(c, 0) != OT_I64)
        return ot_fail(c->err, OT_ERR_INVALID, "input has element type %s, expected int64", ot_dtype_name(ot_idtype(c, 0)));
    if (ot_ishape(c, 0)->rank != 1)
        return ot_fail(c->err, OT_ERR_INVALID, "input has rank %d, expected a 1-D shape", ot_ishape(c, 0)->rank);
    int64_t d[OT_MAX_RANK], n;
    OT_TRY(ot_const_ints(c, 0, d, OT_MAX_RANK, &n));
    ot_shape o;
    memset(&o, 0, sizeof o);
    o.rank = (int)n;
    for (int i = 0; i < n; i++) {
        if (d[i] < 0) return ot_fail(c->err, OT_ERR_INVALID, "shape[%d] = %lld, expected >= 0", i, (long long)d[i]);
        o.d[i] = d[i];
    }
    ot_dtype t = OT_F32;
    memset(cp->value, 0, sizeof cp->value);
    cp->es = sizeof(float);
    const ot_attr *a = ot_attr_find(c->n, "value");
    if (a) {
        const ot_const *k = a->type == OT_ATTR_TENSOR ? a->t : NULL;
        int64_t kn;
        if (!k) return ot_fail(c->err, OT_ERR_INVALID, "attribute 'value' must be a tensor");
        size_t es = ot_dtype_size(k->dtype);
        if (es == 0) return ot_fail(c->err, OT_ERR_UNSUPPORTED, "attribute 'value' has unsupported element type %s", ot_dtype_name(k->dtype));
        if (!ot_shape_numel(&k->shape, &kn) || kn != 1 || k->nbytes != es || !k->data)
            return ot_fail(c->err, OT_ERR_INVALID, "attribute 'value' must hold exactly one element");
        t = k->dtype;
        cp->es = es;
        memcpy(cp->value, k->data, es);
    }
    return ot_set_out(c, 0, t, &o);
}

static ot_status cos_fwd(ot_kctx *c) {
    const cos_params *cp = (const cos_params *)c->params;
    unsigned char *y = (unsigned char *)ot_out(c, 0);
    int64_t n = ot_numel(ot_oshape(c, 0));
    for (int64_t k = 0; k < n; k++) memcpy(y + (size_t)k * cp->es, cp->value, cp->es);
    return OT_OK;
}

/* ---- op table rows ---- */

/* definitions (device-neutral) */
const ot_op_def ot_op_constant = {
    .name = "Constant", .min_in = 0, .max_in = 0, .min_out = 1, .max_out = 1, .infer = constant_infer,
};
const ot_op_def ot_op_shape = {
    .name = "Shape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .params_size = sizeof(shape_params),
    .infer = shape_infer, .flags = OT_OPF_SHAPE_ONLY,
};
const ot_op_def ot_op_gather = {
    .name = "Gather", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .params_size = sizeof(gather_params),
    .infer = gather_infer,
};
const ot_op_def ot_op_cast = {
    .name = "Cast", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .params_size = sizeof(cast_params),
    .infer = cast_infer,
};
const ot_op_def ot_op_constantofshape = {
    .name = "ConstantOfShape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .params_size = sizeof(cos_params), .infer = cos_infer,
};

/* CPU implementations */
const ot_op_impl ot_cpu_constant = {.forward = constant_fwd};
const ot_op_impl ot_cpu_shape = {.forward = shape_fwd};
const ot_op_impl ot_cpu_gather = {.forward = gather_fwd};
const ot_op_impl ot_cpu_cast = {.forward = cast_fwd};
const ot_op_impl ot_cpu_constantofshape = {.forward = cos_fwd};
