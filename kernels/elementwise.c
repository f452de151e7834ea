/* elementwise.c: Sigmoid and the broadcasting binary ops Add, Sub, Mul, Div, Pow.
 *
 * Spec: ONNX Sigmoid-6/13 (stable and vectorizable, see sigmoid1), Add/Sub/Mul/Div
 * -7/13/14 and Pow-7/12/13/15 with numpy multidirectional broadcasting (onnx
 * docs/Broadcasting.md). Results follow ONNX Runtime's CPU kernels: int64 Div
 * truncates toward zero like C, and Pow with an exponent that is constant along the
 * innermost run (and a base that is not) uses x*x for 2 and x*x*x for 3 (ORT's
 * PowImpl "input1scalar" span); a float32 base with an int64 exponent is computed
 * in double.
 * Binary ops take float32 or int64 (int64 folds shape arithmetic in dynamic exports).
 *
 * Broadcasting is planned once at infer time: both operands are aligned to the
 * output rank, size-1 output dims are dropped and adjacent dims that stay
 * contiguous for both operands are merged. The run then walks "rows" of the
 * innermost merged dim, where each operand is either contiguous or one repeated
 * element, which covers same shape, scalar and per-channel operands at full speed;
 * anything else is the same loop over shorter rows. CUDA twin: elementwise.cu. */
#include "ops.h"
#include <math.h>
#include <string.h>

/* ---- parameters ---- */

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW } bin_kind;

typedef struct bin_params {
    int kind;                        /* bin_kind */
    ot_dtype ta, tb;                 /* element types of A and B */
    int rank;                        /* merged rank, >= 1 */
    int64_t d[OT_MAX_RANK];          /* merged output dims */
    int64_t sa[OT_MAX_RANK];         /* element strides of A per merged dim (0: broadcast) */
    int64_t sb[OT_MAX_RANK];         /* same for B */
    int64_t numel;
} bin_params;

#define ROW_CHUNK 8192   /* elements per parallel task within one row */

/* Aligned, size-1-dropped, merged iteration space of out = f(a, b). */
static void bin_plan(bin_params *bp, const ot_shape *a, const ot_shape *b, const ot_shape *o) {
    int r = o->rank;
    int64_t sa[OT_MAX_RANK], sb[OT_MAX_RANK];
    int64_t ka = 1, kb = 1;
    for (int i = r - 1; i >= 0; i--) {
        int ia = a->rank - r + i, ib = b->rank - r + i;
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        sa[i] = da == 1 ? 0 : ka;
        sb[i] = db == 1 ? 0 : kb;
        ka *= da;
        kb *= db;
    }
    int m = 0;
    for (int i = 0; i < r; i++) {
        if (o->d[i] == 1) continue;
        if (m > 0 && bp->sa[m - 1] == sa[i] * o->d[i] && bp->sb[m - 1] == sb[i] * o->d[i]) {
            bp->d[m - 1] *= o->d[i];
            bp->sa[m - 1] = sa[i];
            bp->sb[m - 1] = sb[i];
            continue;
        }
        bp->d[m] = o->d[i];
        bp->sa[m] = sa[i];
        bp->sb[m] = sb[i];
        m++;
    }
    if (m == 0) { bp->d[0] = 1; bp->sa[0] = 0; bp->sb[0] = 0; m = 1; }
    bp->rank = m;
    bp->numel = ot_numel(o);
}

/* ---- shape inference ---- */

static ot_status sigmoid_infer(ot_kctx *c) {
    OT_TRY(ot_require_float(c, 0));
    return ot_set_out(c, 0, OT_F32, ot_ishape(c, 0));
}

static ot_status bin_infer(ot_kctx *c, int kind) {
    bin_params *bp = (bin_params *)c->params;
    if (!ot_has_in(c, 0) || !ot_has_in(c, 1))
        return ot_fail(c->err, OT_ERR_INVALID, "two inputs expected, an input is missing");
    ot_dtype ta = ot_idtype(c, 0), tb = ot_idtype(c, 1);
    if (kind == BIN_POW) {
        if (ta != OT_F32)
            return ot_fail(c->err, OT_ERR_UNSUPPORTED, "base (input 0) has element type %s, expected float32",
                           ot_dtype_name(ta));
        if (tb != OT_F32 && tb != OT_I64)
            return ot_fail(c->err, OT_ERR_UNSUPPORTED, "exponent (input 1) has element type %s, expected float32 or int64",
                           ot_dtype_name(tb));
    } else {
        if (ta != OT_F32 && ta != OT_I64)
            return ot_fail(c->err, OT_ERR_UNSUPPORTED, "input 0 has element type %s, expected float32 or int64",
                           ot_dtype_name(ta));
        if (tb != ta)
            return ot_fail(c->err, OT_ERR_INVALID, "inputs have different element types (%s and %s), expected the same",
                           ot_dtype_name(ta), ot_dtype_name(tb));
    }
    const ot_shape *a = ot_ishape(c, 0), *b = ot_ishape(c, 1);
    ot_shape o;
    if (a->rank < 0 || a->rank > OT_MAX_RANK || b->rank < 0 || b->rank > OT_MAX_RANK || !ot_shape_broadcast(a, b, &o)) {
        char sa[160], sb[160];
        return ot_fail(c->err, OT_ERR_SHAPE, "input shapes %s and %s do not broadcast",
                       ot_shape_str(a, sa, sizeof sa), ot_shape_str(b, sb, sizeof sb));
    }
    OT_TRY(ot_set_out(c, 0, ta, &o));
    bp->kind = kind;
    bp->ta = ta;
    bp->tb = tb;
    bin_plan(bp, a, b, &o);
    return OT_OK;
}

static ot_status add_infer(ot_kctx *c) { return bin_infer(c, BIN_ADD); }
static ot_status sub_infer(ot_kctx *c) { return bin_infer(c, BIN_SUB); }
static ot_status mul_infer(ot_kctx *c) { return bin_infer(c, BIN_MUL); }
static ot_status div_infer(ot_kctx *c) { return bin_infer(c, BIN_DIV); }
static ot_status pow_infer(ot_kctx *c) { return bin_infer(c, BIN_POW); }

/* ---- forward ---- */

/* Sigmoid of one float, numerically stable and branch-free so the loop vectorizes:
 * with e = exp(-|x|), x >= 0 gives 1/(1+e) and x < 0 gives e/(1+e). exp uses the
 * Cephes expf reduction and polynomial (about 1 ulp); |x| > 87 flushes e to 0.
 * Selects work on bit patterns because gcc will not if-convert float selects
 * under -ftrapping-math. Max error ~3 ulp against double precision. */
static inline float f_of(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline uint32_t u_of(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
static inline uint32_t bsel(uint32_t m, uint32_t a, uint32_t b) { return (a & m) | (b & ~m); }   /* m ? a : b */

static inline float sigmoid1(float v) {
    uint32_t u = u_of(v), abits = u & 0x7fffffffu;
    uint32_t tiny = 0u - (uint32_t)(abits > 0x42ae0000u);   /* |v| > 87 */
    uint32_t neg = 0u - (u >> 31), nan = 0u - (uint32_t)(abits > 0x7f800000u);
    float z = f_of(bsel(tiny, 0xc2ae0000u, abits | 0x80000000u));     /* -min(|v|, 87) */
    float n = (z * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(z / ln 2) */
    float r = z - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    float e = f_of(bsel(tiny, 0u, u_of(p * f_of((uint32_t)((int32_t)n + 127) << 23))));   /* exp(-|v|) */
    float q = f_of(bsel(neg, u_of(e), 0x3f800000u)) / (1.0f + e);
    return f_of(bsel(nan, u, u_of(q)));
}

static ot_status sigmoid_fwd(ot_kctx *c) {
    const float *x = ot_inf(c, 0); /* any shape */
    float *y = ot_outf(c, 0);      /* same shape */
    int64_t n = ot_numel(ot_oshape(c, 0));
#pragma omp parallel for simd if(n > 32768)
    for (int64_t i = 0; i < n; i++) y[i] = sigmoid1(x[i]);
    return OT_OK;
}

/* int64 arithmetic wraps on overflow (no undefined behaviour on bad input). */
static inline int64_t i64_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static inline int64_t i64_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static inline int64_t i64_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }
static inline int64_t i64_div(int64_t a, int64_t b) {
    if (b == 0) return 0;                   /* undefined in ONNX; never trap */
    if (b == -1) return i64_sub(0, a);      /* INT64_MIN / -1 wraps */
    return a / b;                           /* C truncates toward zero */
}
static inline float pow_fi(float x, int64_t y) { return (float)pow((double)x, (double)y); }

/* One row: n outputs from A (stride ia: 0 or 1) and B (stride ib: 0 or 1). */
#define ROW(TA, TB, TO, EXPR) do {                                              \
        const TA *x_ = (const TA *)pa; const TB *y_ = (const TB *)pb; TO *o_ = (TO *)po; \
        if (ia && ib) {                                                         \
            for (int64_t j = 0; j < n; j++) { TA a = x_[j]; TB b = y_[j]; o_[j] = (EXPR); } \
        } else if (ia) {                                                        \
            const TB b = y_[0];                                                 \
            for (int64_t j = 0; j < n; j++) { TA a = x_[j]; o_[j] = (EXPR); }   \
        } else if (ib) {                                                        \
            const TA a = x_[0];                                                 \
            for (int64_t j = 0; j < n; j++) { TB b = y_[j]; o_[j] = (EXPR); }   \
        } else {                                                                \
            const TA a = x_[0]; const TB b = y_[0]; const TO v_ = (EXPR);       \
            for (int64_t j = 0; j < n; j++) o_[j] = v_;                         \
        }                                                                       \
    } while (0)

static void row_f32(int kind, const void *pa, int64_t ia, const void *pb, int64_t ib, void *po, int64_t n) {
    switch (kind) {
    case BIN_ADD: ROW(float, float, float, a + b); break;
    case BIN_SUB: ROW(float, float, float, a - b); break;
    case BIN_MUL: ROW(float, float, float, a * b); break;
    case BIN_DIV: ROW(float, float, float, a / b); break;
    default: /* BIN_POW */
        if (ia && !ib && ((const float *)pb)[0] == 2.0f) ROW(float, float, float, ((void)b, a * a));
        else if (ia && !ib && ((const float *)pb)[0] == 3.0f) ROW(float, float, float, ((void)b, a * a * a));
        else ROW(float, float, float, powf(a, b));
        break;
    }
}

static void row_i64(int kind, const void *pa, int64_t ia, const void *pb, int64_t ib, void *po, int64_t n) {
    switch (kind) {
    case BIN_ADD: ROW(int64_t, int64_t, int64_t, i64_add(a, b)); break;
    case BIN_SUB: ROW(int64_t, int64_t, int64_t, i64_sub(a, b)); break;
    case BIN_MUL: ROW(int64_t, int64_t, int64_t, i64_mul(a, b)); break;
    default: ROW(int64_t, int64_t, int64_t, i64_div(a, b)); break;
    }
}

static void row_pow_fi(const void *pa, int64_t ia, const void *pb, int64_t ib, void *po, int64_t n) {
    if (ia && !ib && ((const int64_t *)pb)[0] == 2) ROW(float, int64_t, float, ((void)b, a * a));
    else if (ia && !ib && ((const int64_t *)pb)[0] == 3) ROW(float, int64_t, float, ((void)b, a * a * a));
    else ROW(float, int64_t, float, pow_fi(a, b));
}

static ot_status bin_fwd(ot_kctx *c) {
    const bin_params *bp = (const bin_params *)c->params;
    const unsigned char *A = (const unsigned char *)ot_in(c, 0);
    const unsigned char *B = (const unsigned char *)ot_in(c, 1);
    unsigned char *O = (unsigned char *)ot_out(c, 0);   /* (merged dims d) */
    if (bp->numel == 0) return OT_OK;
    size_t ea = ot_dtype_size(bp->ta), eb = ot_dtype_size(bp->tb);
    size_t eo = ea;   /* output type is A's type for every op here */
    int r = bp->rank;
    int64_t len = bp->d[r - 1], ia = bp->sa[r - 1], ib = bp->sb[r - 1];
    int64_t rows = bp->numel / len;
    int64_t nch = (len + ROW_CHUNK - 1) / ROW_CHUNK;
    int64_t tasks = rows * nch, total = bp->numel;
    int kind = bp->kind;
    ot_dtype ta = bp->ta, tb = bp->tb;
#pragma omp parallel for if(total > 32768)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t row = t / nch, j0 = (t % nch) * ROW_CHUNK;
        int64_t n = len - j0 < ROW_CHUNK ? len - j0 : ROW_CHUNK;
        int64_t oa = 0, ob = 0, q = row;
        for (int i = r - 2; i >= 0; i--) {
            int64_t k = q % bp->d[i];
            q /= bp->d[i];
            oa += k * bp->sa[i];
            ob += k * bp->sb[i];
        }
        const void *pa = A + (size_t)(oa + j0 * ia) * ea;
        const void *pb = B + (size_t)(ob + j0 * ib) * eb;
        void *po = O + (size_t)(row * len + j0) * eo;
        if (ta == OT_F32 && tb == OT_F32) row_f32(kind, pa, ia, pb, ib, po, n);
        else if (ta == OT_I64) row_i64(kind, pa, ia, pb, ib, po, n);
        else row_pow_fi(pa, ia, pb, ib, po, n);
    }
    return OT_OK;
}

/* ---- op table rows ---- */

const ot_op_def ot_op_sigmoid = {"Sigmoid", 1, 1, 1, 1, 0, sigmoid_infer, sigmoid_fwd, 0};
const ot_op_def ot_op_add = {"Add", 2, 2, 1, 1, sizeof(bin_params), add_infer, bin_fwd, 0};
const ot_op_def ot_op_sub = {"Sub", 2, 2, 1, 1, sizeof(bin_params), sub_infer, bin_fwd, 0};
const ot_op_def ot_op_mul = {"Mul", 2, 2, 1, 1, sizeof(bin_params), mul_infer, bin_fwd, 0};
const ot_op_def ot_op_div = {"Div", 2, 2, 1, 1, sizeof(bin_params), div_infer, bin_fwd, 0};
const ot_op_def ot_op_pow = {"Pow", 2, 2, 1, 1, sizeof(bin_params), pow_infer, bin_fwd, 0};
