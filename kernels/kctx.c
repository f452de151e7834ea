/* kctx.c: helpers kernels use while inferring shapes (kernels/ops.h). */
#include "ops.h"
#include <string.h>

ot_status ot_set_out(ot_kctx *c, int i, ot_dtype t, const ot_shape *s) {
    if (!ot_has_out(c, i)) return OT_OK;
    int64_t n;
    if (!ot_shape_numel(s, &n))
        return ot_fail(c->err, OT_ERR_SHAPE, "output %d would have shape %s (negative, unknown or over %lld elements)", i,
                       ot_shape_str(s, (char[160]){0}, 160), (long long)OT_MAX_NUMEL);
    int v = c->n->out[i];
    c->p->dtype[v] = t;
    c->p->shape[v] = *s;
    return OT_OK;
}

ot_status ot_require_dtype(ot_kctx *c, int i, const ot_dtype *allowed) {
    ot_dtype t = ot_idtype(c, i);
    char list[160] = "";
    size_t k = 0;
    for (const ot_dtype *a = allowed; *a != OT_UNDEF; a++) {
        if (*a == t) return OT_OK;
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", a == allowed ? "" : " or ", ot_dtype_name(*a));
        if (k >= sizeof list) k = sizeof list - 1;
    }
    return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input %d '%s' has element type %s, expected %s", i,
                   c->p->g->values[c->n->in[i]].name, ot_dtype_name(t), list);
}

ot_status ot_require_float(ot_kctx *c, int i) {
    static const ot_dtype f[] = {OT_F32, OT_UNDEF};
    return ot_require_dtype(c, i, f);
}

ot_status ot_const_ints(ot_kctx *c, int i, int64_t *v, int64_t max, int64_t *count) {
    const void *d = ot_iconst(c, i);
    const char *name = ot_has_in(c, i) ? c->p->g->values[c->n->in[i]].name : "?";
    if (!d) return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input %d '%s' must be a constant (it is computed at run time)", i, name);
    ot_dtype t = ot_idtype(c, i);
    if (t != OT_I64 && t != OT_I32)
        return ot_fail(c->err, OT_ERR_INVALID, "input %d '%s' has element type %s, expected int64", i, name, ot_dtype_name(t));
    int64_t n = ot_numel(ot_ishape(c, i));
    if (n > max) return ot_fail(c->err, OT_ERR_INVALID, "input %d '%s' has %lld values, at most %lld expected", i, name, (long long)n, (long long)max);
    for (int64_t k = 0; k < n; k++) v[k] = t == OT_I64 ? ((const int64_t *)d)[k] : ((const int32_t *)d)[k];
    *count = n;
    return OT_OK;
}

ot_status ot_axis(ot_kctx *c, int64_t axis, int rank, int64_t *out) {
    if (axis < -rank || axis >= rank)
        return ot_fail(c->err, OT_ERR_INVALID, "axis %lld is out of range for rank %d", (long long)axis, rank);
    *out = axis < 0 ? axis + rank : axis;
    return OT_OK;
}
