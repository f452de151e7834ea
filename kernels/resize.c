/* resize.c: Resize and Upsample, nearest mode, any rank and element type.
 *
 * Spec: ONNX Resize-10/11/13/18/19 and Upsample-7/9, mode "nearest" only. Indices
 * follow ONNX Runtime's CPU kernel (upsample.h/.cc) in float32 arithmetic:
 *   output size   (int64)(scale * in) when scales are given, else sizes, whose
 *                 scales become (float)out / (float)in;
 *   coordinates   half_pixel (default), asymmetric, align_corners,
 *                 pytorch_half_pixel, tf_half_pixel_for_nn;
 *   nearest_mode  round_prefer_floor (default), round_prefer_ceil, floor, ceil;
 *   Resize-10 and Upsample use asymmetric coordinates and ORT's "simple" rounding
 *   (truncate when upscaling, ceil when downscaling), and an axis whose scale is
 *   exactly 1 maps each index to itself (ORT does so for rank > 1).
 * Scales and sizes must be constant. tf_crop_and_resize, the opset-18 axes
 * attribute and keep_aspect_ratio_policy other than "stretch" are unsupported.
 *
 * The copy walks output rows (the innermost axis): a row's source row comes from
 * the per-axis index maps, its elements from the innermost map. Axes whose map is
 * o -> o / k (YOLOv5's 2x upsampling and every integer-factor asymmetric/floor
 * case) skip the float arithmetic; other innermost maps are tabulated on the stack.
 * The backward adds each output's gradient to the input element it copied.
 * CPU implementation only. */
#include "ops.h"
#include "op_params.h"
#include <math.h>
#include <string.h>



#define MAP_STACK 8192   /* innermost output length tabulated on the stack */

/* ---- index mapping ---- */

/* Input index of output index o along axis a (ORT's nearest mapping, clamped). */
static int64_t rs_map(const rs_params *p, int a, int64_t o) {
    float s = p->scale[a], lo = (float)p->in[a], lr = (float)p->out[a], xr = (float)o, x;
    int64_t in = p->in[a];
    if (p->rank > 1 && s == 1.0f) return o < in ? o : in - 1;
    switch (p->coord) {
    case CT_ASYMMETRIC: x = xr / s; break;
    case CT_PYTORCH_HALF_PIXEL: x = lr > 1 ? (xr + 0.5f) / s - 0.5f : 0.0f; break;
    case CT_TF_HALF_PIXEL_FOR_NN: x = (xr + 0.5f) / s; break;
    case CT_ALIGN_CORNERS: x = lr == 1 ? 0.0f : xr * (lo - 1) / (lr - 1); break;
    default: x = ((xr + 0.5f) / s) - 0.5f; break;
    }
    if (!(x > -1e15f && x < 1e15f)) return x > 0 ? in - 1 : 0;   /* inf/NaN/huge: clamp, no UB */
    int64_t i;
    switch (p->nearest) {
    case NM_SIMPLE: i = s < 1 ? (int64_t)ceilf(x) : (int64_t)x; break;
    case NM_ROUND_PREFER_CEIL: i = (int64_t)roundf(x); break;
    case NM_FLOOR: i = (int64_t)floorf(x); break;
    case NM_CEIL: i = (int64_t)ceilf(x); break;
    default:
        if (x == (float)(int64_t)x + 0.5f) i = (int64_t)floorf(x);
        else i = (int64_t)roundf(x);
        break;
    }
    if (i > in - 1) i = in - 1;
    if (i < 0) i = 0;
    return i;
}

/* ---- shape inference ---- */

static ot_status parse_modes(ot_kctx *c, rs_params *p, bool legacy) {
    const char *mode = ot_attr_string(c->n, "mode", "nearest");
    if (strcmp(mode, "nearest") != 0)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "mode '%s' is not supported (only 'nearest')", mode);
    if (legacy) {
        p->coord = CT_ASYMMETRIC;
        p->nearest = NM_SIMPLE;
        return OT_OK;
    }
    const char *ct = ot_attr_string(c->n, "coordinate_transformation_mode", "half_pixel");
    if (!strcmp(ct, "half_pixel")) p->coord = CT_HALF_PIXEL;
    else if (!strcmp(ct, "asymmetric")) p->coord = CT_ASYMMETRIC;
    else if (!strcmp(ct, "pytorch_half_pixel")) p->coord = CT_PYTORCH_HALF_PIXEL;
    else if (!strcmp(ct, "tf_half_pixel_for_nn")) p->coord = CT_TF_HALF_PIXEL_FOR_NN;
    else if (!strcmp(ct, "align_corners")) p->coord = CT_ALIGN_CORNERS;
    else if (!strcmp(ct, "tf_crop_and_resize") || !strcmp(ct, "half_pixel_symmetric"))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "coordinate_transformation_mode '%s' is not supported", ct);
    else
        return ot_fail(c->err, OT_ERR_INVALID, "coordinate_transformation_mode '%s' is not an ONNX mode", ct);
    const char *nm = ot_attr_string(c->n, "nearest_mode", "round_prefer_floor");
    if (!strcmp(nm, "round_prefer_floor")) p->nearest = NM_ROUND_PREFER_FLOOR;
    else if (!strcmp(nm, "round_prefer_ceil")) p->nearest = NM_ROUND_PREFER_CEIL;
    else if (!strcmp(nm, "floor")) p->nearest = NM_FLOOR;
    else if (!strcmp(nm, "ceil")) p->nearest = NM_CEIL;
    else return ot_fail(c->err, OT_ERR_INVALID, "nearest_mode '%s' is not an ONNX mode", nm);
    if (ot_attr_int(c->n, "exclude_outside", 0) != 0)
        return ot_fail(c->err, OT_ERR_INVALID, "exclude_outside=1 is only valid with mode 'cubic'");
    if (ot_attr_find(c->n, "axes"))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "the 'axes' attribute is not supported (give scales/sizes for every dim)");
    (void)ot_attr_float(c->n, "extrapolation_value", 0.0f);   /* tf_crop_and_resize only */
    (void)ot_attr_float(c->n, "cubic_coeff_a", -0.75f);       /* cubic only */
    (void)ot_attr_int(c->n, "antialias", 0);                   /* linear/cubic only */
    return OT_OK;
}

/* Numel of input i, 0 when omitted. */
static int64_t in_numel(ot_kctx *c, int i) { return ot_has_in(c, i) ? ot_numel(ot_ishape(c, i)) : 0; }

/* Scales from a float32 constant input. */
static ot_status read_scales(ot_kctx *c, int i, int rank, float *sc) {
    const void *d = ot_iconst(c, i);
    if (!d) return ot_fail(c->err, OT_ERR_UNSUPPORTED, "scales (input %d) must be a constant, it is computed at run time", i);
    if (ot_idtype(c, i) != OT_F32)
        return ot_fail(c->err, OT_ERR_INVALID, "scales (input %d) has element type %s, expected float32", i,
                       ot_dtype_name(ot_idtype(c, i)));
    int64_t n = ot_numel(ot_ishape(c, i));
    if (n != rank)
        return ot_fail(c->err, OT_ERR_SHAPE, "scales has %lld values, expected %d (one per input dim)", (long long)n, rank);
    memcpy(sc, d, (size_t)rank * sizeof(float));
    return OT_OK;
}

static ot_status rs_setup(ot_kctx *c, rs_params *p, bool upsample, int scales_in, int sizes_in, const float *attr_scales) {
    const ot_shape *x = ot_ishape(c, 0);
    ot_dtype t = ot_idtype(c, 0);
    char b[160];
    if (ot_dtype_size(t) == 0)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input has unsupported element type %s", ot_dtype_name(t));
    if (x->rank < 1 || x->rank > OT_MAX_RANK)
        return ot_fail(c->err, OT_ERR_SHAPE, "input has shape %s, expected rank 1 to %d", ot_shape_str(x, b, sizeof b), OT_MAX_RANK);
    int r = x->rank;
    p->rank = r;
    p->es = ot_dtype_size(t);
    bool have_scales = attr_scales || (scales_in >= 0 && in_numel(c, scales_in) > 0);
    bool have_sizes = sizes_in >= 0 && in_numel(c, sizes_in) > 0;
    if (have_scales && have_sizes)
        return ot_fail(c->err, OT_ERR_INVALID, "both scales and sizes are given, expected exactly one");
    if (!have_scales && !have_sizes)
        return ot_fail(c->err, OT_ERR_INVALID, "neither scales nor sizes is given (or both are empty)");
    ot_shape o = *x;
    if (have_scales) {
        if (attr_scales) memcpy(p->scale, attr_scales, (size_t)r * sizeof(float));
        else OT_TRY(read_scales(c, scales_in, r, p->scale));
        for (int a = 0; a < r; a++) {
            float f = p->scale[a] * (float)x->d[a];
            if (!(f < 1e15f) || !(p->scale[a] > 0))
                return ot_fail(c->err, OT_ERR_INVALID, "scale %g for dim %d is invalid or too large", (double)p->scale[a], a);
            o.d[a] = (int64_t)f;
        }
    } else {
        const void *d = ot_iconst(c, sizes_in);
        if (!d)
            return ot_fail(c->err, OT_ERR_UNSUPPORTED, "sizes (input %d) must be a constant, it is computed at run time", sizes_in);
        int64_t sz[OT_MAX_RANK], n;
        OT_TRY(ot_const_ints(c, sizes_in, sz, OT_MAX_RANK, &n));
        if (n != r)
            return ot_fail(c->err, OT_ERR_SHAPE, "sizes has %lld values, expected %d (one per input dim)", (long long)n, r);
        const char *kp = ot_attr_string(c->n, "keep_aspect_ratio_policy", "stretch");
        if (strcmp(kp, "stretch") != 0)
            return ot_fail(c->err, OT_ERR_UNSUPPORTED, "keep_aspect_ratio_policy '%s' is not supported (only 'stretch')", kp);
        for (int a = 0; a < r; a++) {
            if (sz[a] < 0 || sz[a] > OT_MAX_NUMEL)
                return ot_fail(c->err, OT_ERR_INVALID, "sizes[%d] = %lld is out of range", a, (long long)sz[a]);
            if (x->d[a] == 0 && sz[a] != 0)
                return ot_fail(c->err, OT_ERR_INVALID, "dim %d is empty but sizes asks for %lld", a, (long long)sz[a]);
            p->scale[a] = x->d[a] == 0 ? 1.0f : (float)sz[a] / (float)x->d[a];
            o.d[a] = sz[a];
        }
    }
    for (int a = 0; a < r; a++) {
        if (upsample ? !(p->scale[a] >= 1.0f) : !(p->scale[a] > 0.0f))
            return ot_fail(c->err, OT_ERR_INVALID, "scale %g for dim %d, expected %s", (double)p->scale[a], a,
                           upsample ? "at least 1" : "a value above 0");
        p->in[a] = x->d[a];
        p->out[a] = o.d[a];
    }
    OT_TRY(ot_set_out(c, 0, t, &o));
    /* Integer-factor axes: check the whole map once here. */
    for (int a = 0; a < r; a++) {
        /* (absurdly long axes skip the check and take the generic path) */
        int64_t k = p->in[a] > 0 && p->out[a] <= ((int64_t)1 << 16) && p->out[a] % p->in[a] == 0 ? p->out[a] / p->in[a] : 0;
        for (int64_t i = 0; k > 0 && i < p->out[a]; i++)
            if (rs_map(p, a, i) != i / k) k = 0;
        p->factor[a] = k;
    }
    return OT_OK;
}

static ot_status resize_infer(ot_kctx *c) {
    rs_params *p = (rs_params *)c->params;
    if (!ot_has_in(c, 0)) return ot_fail(c->err, OT_ERR_INVALID, "input 0 (X) is missing");
    if (c->opset < 11) {   /* Resize-10: X, scales */
        if (c->n->n_in != 2 || !ot_has_in(c, 1))
            return ot_fail(c->err, OT_ERR_INVALID, "Resize-10 expects 2 inputs (X, scales), found %d", c->n->n_in);
        OT_TRY(parse_modes(c, p, true));
        return rs_setup(c, p, false, 1, -1, NULL);
    }
    OT_TRY(parse_modes(c, p, false));
    return rs_setup(c, p, false, 2, 3, NULL);
}

static ot_status upsample_infer(ot_kctx *c) {
    rs_params *p = (rs_params *)c->params;
    if (!ot_has_in(c, 0)) return ot_fail(c->err, OT_ERR_INVALID, "input 0 (X) is missing");
    OT_TRY(parse_modes(c, p, true));
    if (c->n->n_in >= 2) {   /* Upsample-9: scales input */
        if (!ot_has_in(c, 1) || in_numel(c, 1) == 0)
            return ot_fail(c->err, OT_ERR_INVALID, "input 1 (scales) is missing or empty");
        return rs_setup(c, p, true, 1, -1, NULL);
    }
    const float *sc;   /* Upsample-7: scales attribute */
    int64_t n = ot_attr_floats(c->n, "scales", &sc);
    if (n < 0) return ot_fail(c->err, OT_ERR_INVALID, "attribute 'scales' (floats) is required without a scales input");
    int rank = ot_ishape(c, 0)->rank;
    if (n != rank)
        return ot_fail(c->err, OT_ERR_SHAPE, "attribute 'scales' has %lld values, expected %d (one per input dim)",
                       (long long)n, rank);
    return rs_setup(c, p, true, -1, -1, sc);
}

/* ---- forward ---- */

/* Copy n elements of size es: dst[j] = src[map[j]] or src[j / k]. */
static void gather_row(unsigned char *dst, const unsigned char *src, size_t es, int64_t n, const int64_t *map, int64_t k,
                       const rs_params *p, int axis) {
#define GATHER(T) do {                                                                          \
        T *d_ = (T *)dst; const T *s_ = (const T *)src;                                         \
        if (k == 1) memcpy(d_, s_, (size_t)n * sizeof(T));                                      \
        else if (k == 2) for (int64_t j = 0; j < n / 2; j++) { T v = s_[j]; d_[2 * j] = v; d_[2 * j + 1] = v; } \
        else if (k > 0) for (int64_t j = 0; j < n; j++) d_[j] = s_[j / k];                      \
        else if (map) for (int64_t j = 0; j < n; j++) d_[j] = s_[map[j]];                       \
        else for (int64_t j = 0; j < n; j++) d_[j] = s_[rs_map(p, axis, j)];                    \
    } while (0)
    switch (es) {
    case 1: GATHER(uint8_t); break;
    case 2: GATHER(uint16_t); break;
    case 4: GATHER(uint32_t); break;
    default: GATHER(uint64_t); break;
    }
#undef GATHER
}

static ot_status rs_fwd(ot_kctx *c) {
    const rs_params *p = (const rs_params *)c->params;
    const unsigned char *x = (const unsigned char *)ot_in(c, 0);   /* (in dims) */
    unsigned char *y = (unsigned char *)ot_out(c, 0);             /* (out dims) */
    int r = p->rank, last = r - 1;
    int64_t total = 1;
    for (int a = 0; a < r; a++) total *= p->out[a];
    if (total == 0) return OT_OK;
    int64_t ow = p->out[last], rows = total / ow;
    int64_t kw = p->factor[last];
    int64_t wmap[MAP_STACK];   /* innermost map when it is not o / k */
    const int64_t *map = NULL;
    if (kw == 0 && ow <= MAP_STACK) {
        for (int64_t j = 0; j < ow; j++) wmap[j] = rs_map(p, last, j);
        map = wmap;
    }
    int64_t istride[OT_MAX_RANK];   /* input element strides */
    istride[last] = 1;
    for (int a = last - 1; a >= 0; a--) istride[a] = istride[a + 1] * p->in[a + 1];
    size_t es = p->es;
#pragma omp parallel for if(total > 32768)
    for (int64_t row = 0; row < rows; row++) {
        int64_t q = row, off = 0;
        for (int a = last - 1; a >= 0; a--) {
            int64_t o = q % p->out[a];
            q /= p->out[a];
            int64_t i = p->factor[a] > 0 ? o / p->factor[a] : rs_map(p, a, o);
            off += i * istride[a];
        }
        gather_row(y + (size_t)(row * ow) * es, x + (size_t)off * es, es, ow, map, kw, p, last);
    }
    return OT_OK;
}

/* ---- backward ----
 * Each output element's gradient is added to the input element it copied
 * (float32 only). Every index map is non-decreasing in the output index (each
 * coordinate transform is increasing, rounding and clamping keep the order), so
 * the outputs that copy input index i along an axis form one range, found by
 * bisection (or [i*k, (i+1)*k) on integer-factor axes). A task owns one input
 * row (all axes but the innermost) and adds every output row that maps to it, so
 * no two threads write the same gradient. */

/* Output range [*lo, *hi) whose index maps to input index i along axis a. */
static void rs_range(const rs_params *p, int a, int64_t i, int64_t *lo, int64_t *hi) {
    int64_t k = p->factor[a];
    if (k > 0) { *lo = i * k; *hi = (i + 1) * k; return; }
    int64_t bound[2];
    for (int t = 0; t < 2; t++) {   /* first o with map(o) >= i + t */
        int64_t l = 0, h = p->out[a];
        while (l < h) {
            int64_t m = l + (h - l) / 2;
            if (rs_map(p, a, m) >= i + t) h = m;
            else l = m + 1;
        }
        bound[t] = l;
    }
    *lo = bound[0];
    *hi = bound[1];
}

/* gx[map(j)] += gy[j] for the n outputs of one row. */
static void scatter_row(float *gx, const float *gy, int64_t n, const int64_t *map, int64_t k, const rs_params *p, int axis) {
    if (k == 1) for (int64_t j = 0; j < n; j++) gx[j] += gy[j];
    else if (k == 2) for (int64_t j = 0; j < n / 2; j++) gx[j] += gy[2 * j] + gy[2 * j + 1];
    else if (k > 0) for (int64_t j = 0; j < n; j++) gx[j / k] += gy[j];
    else if (map) for (int64_t j = 0; j < n; j++) gx[map[j]] += gy[j];
    else for (int64_t j = 0; j < n; j++) gx[rs_map(p, axis, j)] += gy[j];
}

static ot_status rs_bwd(ot_kctx *c) {
    const rs_params *p = (const rs_params *)c->params;
    float *gx = ot_gin(c, 0);          /* (in dims) */
    const float *gy = ot_gout(c, 0);   /* (out dims) */
    if (!gx || !gy || ot_idtype(c, 0) != OT_F32) return OT_OK;
    int r = p->rank, last = r - 1;
    int64_t total = 1, in_total = 1;
    for (int a = 0; a < r; a++) { total *= p->out[a]; in_total *= p->in[a]; }
    if (total == 0 || in_total == 0) return OT_OK;
    int64_t ow = p->out[last], iw = p->in[last], in_rows = in_total / iw;
    int64_t kw = p->factor[last];
    int64_t wmap[MAP_STACK];   /* innermost map when it is not o / k */
    const int64_t *map = NULL;
    if (kw == 0 && ow <= MAP_STACK) {
        for (int64_t j = 0; j < ow; j++) wmap[j] = rs_map(p, last, j);
        map = wmap;
    }
#pragma omp parallel for if(total > 32768)
    for (int64_t ir = 0; ir < in_rows; ir++) {
        int64_t lo[OT_MAX_RANK], hi[OT_MAX_RANK], o[OT_MAX_RANK], q = ir;
        bool empty = false;
        for (int a = last - 1; a >= 0; a--) {
            rs_range(p, a, q % p->in[a], &lo[a], &hi[a]);
            q /= p->in[a];
            o[a] = lo[a];
            empty |= lo[a] >= hi[a];
        }
        if (empty) continue;   /* no output copied this row (downscaling) */
        float *gxr = gx + ir * iw;
        for (;;) {   /* every output row in the box lo..hi */
            int64_t orow = 0;
            for (int a = 0; a < last; a++) orow = orow * p->out[a] + o[a];
            scatter_row(gxr, gy + orow * ow, ow, map, kw, p, last);
            int a = last - 1;
            while (a >= 0 && ++o[a] == hi[a]) { o[a] = lo[a]; a--; }
            if (a < 0) break;
        }
    }
    return OT_OK;
}

/* ---- op table rows ---- */

/* definitions (device-neutral) */
const ot_op_def ot_op_resize = {
    .name = "Resize", .min_in = 1, .max_in = 4, .min_out = 1, .max_out = 1, .params_size = sizeof(rs_params),
    .infer = resize_infer,
};
const ot_op_def ot_op_upsample = {
    .name = "Upsample", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .params_size = sizeof(rs_params),
    .infer = upsample_infer,
};

/* CPU implementations */
const ot_op_impl ot_cpu_resize = {.forward = rs_fwd, .backward = rs_bwd};
const ot_op_impl ot_cpu_upsample = {.forward = rs_fwd, .backward = rs_bwd};
