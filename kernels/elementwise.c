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
 * anything else is the same loop over shorter rows. The backward (float32 only)
 * walks the same merged space; see its banner. CPU implementations only. */
#include "elementwise.h"
#include "ops.h"
#include "op_params.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameters ---- */



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

/* SiLU: Mul(x, Sigmoid(x)) computed in one pass (the planner's pass decides,
 * core/runtime/passes.c, and takes the Sigmoid off the steps): no sigmoid tensor
 * is written, kept for the backward or zeroed as a gradient. The arithmetic is
 * the unfused ops', in their order, so the results are the same bits. */
bool ot_mul_fuse_silu(void *mul_params, int sigmoid_slot) {
    bin_params *bp = mul_params;
    if (bp->kind != BIN_MUL || bp->ta != OT_F32 || bp->tb != OT_F32 || (sigmoid_slot != 0 && sigmoid_slot != 1)) return false;
    for (int i = 0; i < bp->rank; i++)
        if (bp->sa[i] != bp->sb[i]) return false; /* x and Sigmoid(x): same shape, no broadcast */
    bp->silu = 2 - sigmoid_slot; /* 1 + the side of x */
    return true;
}
bool ot_mul_is_silu(const void *mul_params) { return ((const bin_params *)mul_params)->silu != 0; }
static ot_status div_infer(ot_kctx *c) { return bin_infer(c, BIN_DIV); }
static ot_status pow_infer(ot_kctx *c) { return bin_infer(c, BIN_POW); }

/* ---- forward ---- */

/* Sigmoid of one float, numerically stable and branch-free so the loop vectorizes:
 * with e = exp(-|x|), x >= 0 gives 1/(1+e) and x < 0 gives e/(1+e). exp uses the
 * Cephes expf reduction and polynomial (about 1 ulp); |x| > 87 flushes e to 0.
 * Selects work on bit patterns because gcc will not if-convert float selects
 * under -ftrapping-math. Max error ~3 ulp against double precision. */
static inline __attribute__((always_inline)) float f_of(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline __attribute__((always_inline)) uint32_t u_of(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
static inline __attribute__((always_inline)) uint32_t bsel(uint32_t m, uint32_t a, uint32_t b) { return (a & m) | (b & ~m); }   /* m ? a : b */

static inline __attribute__((always_inline)) float sigmoid1(float v) {
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

#define EW_CHUNK 16384 /* elements per parallel task of the unary kernels */

OT_KERNEL_CLONES static void sigmoid_run(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = sigmoid1(x[i]);
}

OT_KERNEL_CLONES static void silu_run(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoid1(x[i]);
}

/* gx += dy * s, then gx += dy * x * (1 - s) * s: Mul's then Sigmoid's backward;
 * set: gx = dy * s + ... (the same bits as adding to zero) */
OT_KERNEL_CLONES static void silu_bwd_run(float *gx, const float *dy, const float *x, int64_t n, bool set) {
    if (set)
        for (int64_t i = 0; i < n; i++) {
            float s = sigmoid1(x[i]), g = dy[i] * s;
            gx[i] = g + dy[i] * x[i] * (1.0f - s) * s;
        }
    else
        for (int64_t i = 0; i < n; i++) {
            float s = sigmoid1(x[i]), g = gx[i] + dy[i] * s;
            gx[i] = g + dy[i] * x[i] * (1.0f - s) * s;
        }
}

static void unary_chunks(void (*run)(float *, const float *, int64_t), float *y, const float *x, int64_t n) {
    int64_t nch = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for if(nch > 2)
    for (int64_t k = 0; k < nch; k++) {
        int64_t i0 = k * EW_CHUNK;
        run(y + i0, x + i0, n - i0 < EW_CHUNK ? n - i0 : EW_CHUNK);
    }
}

static ot_status sigmoid_fwd(ot_kctx *c) {
    /* x, y: any shape, the same */
    unary_chunks(sigmoid_run, ot_outf(c, 0), ot_inf(c, 0), ot_numel(ot_oshape(c, 0)));
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
    if (bp->silu) {
        unary_chunks(silu_run, (float *)O, (const float *)(bp->silu == 1 ? A : B), bp->numel);
        return OT_OK;
    }
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

/* ---- backward ----
 * The derivatives of PyTorch's autograd (tools/autograd/derivatives.yaml):
 *   Sigmoid  dx = dy * (1 - y) * y                      (reads the output)
 *   Add/Sub  da = dy, db = +-dy                         (reads nothing)
 *   Mul      da = dy * b, db = dy * a
 *   Div      da = dy / b, db = -dy * ((a / b) / b)
 *   Pow      da = dy * (b * a^(b-1)), 0 where b == 0; db = dy * (a^b * ln a), 0 where
 *            a == 0 and b >= 0 (NaN for a negative base, as PyTorch); an int64
 *            exponent gets none (the base's is computed in double like the forward).
 * The gradient of a broadcast operand is the sum over the dims it was broadcast
 * along, summed in double. Work is split over that operand's own elements, or over
 * fixed chunks of the sum when it has few (partial sums added in chunk order), so
 * no two threads add into the same place and the result does not depend on the
 * thread count. */

#define GCHUNK 1024   /* outputs per contribution run (stack buffers) */

static ot_status sigmoid_bwd(ot_kctx *c) {
    float *gx = ot_gin(c, 0);          /* any shape */
    const float *gy = ot_gout(c, 0);   /* same shape */
    if (!gx || !gy) return OT_OK;
    const float *y = ot_outf(c, 0);
    int64_t n = ot_numel(ot_oshape(c, 0));
#pragma omp parallel for simd if(n > 32768)
    for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (1.0f - y[i]) * y[i];
    return OT_OK;
}

/* t[j] = the contribution of output j to the gradient of operand `side` (0: A,
 * 1: B) for a run of n outputs: g contiguous, A and B with element strides ia, ib
 * (each 0 or 1). Add and Sub never read A or B (they may be NULL). */
#define GRUN(EXPR) do {                                                                                   \
        if (ia && ib) {                                                                                   \
            for (int64_t j = 0; j < n; j++) { float gv = g[j], a = pa[j], b = pb[j]; (void)a; (void)b; t[j] = (EXPR); } \
        } else if (ia) {                                                                                  \
            const float b = pb[0]; (void)b;                                                               \
            for (int64_t j = 0; j < n; j++) { float gv = g[j], a = pa[j]; (void)a; t[j] = (EXPR); }      \
        } else if (ib) {                                                                                  \
            const float a = pa[0]; (void)a;                                                               \
            for (int64_t j = 0; j < n; j++) { float gv = g[j], b = pb[j]; (void)b; t[j] = (EXPR); }      \
        } else {                                                                                          \
            const float a = pa[0], b = pb[0]; (void)a; (void)b;                                           \
            for (int64_t j = 0; j < n; j++) { float gv = g[j]; t[j] = (EXPR); }                          \
        }                                                                                                 \
    } while (0)

static void grad_run(const bin_params *bp, int side, float *t, const float *g, const void *va, int64_t ia,
                     const void *vb, int64_t ib, int64_t n) {
    const float *pa = (const float *)va, *pb = (const float *)vb;
    switch (bp->kind) {
    case BIN_ADD:
        for (int64_t j = 0; j < n; j++) t[j] = g[j];
        break;
    case BIN_SUB:
        if (side) for (int64_t j = 0; j < n; j++) t[j] = -g[j];
        else for (int64_t j = 0; j < n; j++) t[j] = g[j];
        break;
    case BIN_MUL:
        if (side) GRUN(gv * a);
        else GRUN(gv * b);
        break;
    case BIN_DIV:
        if (side) GRUN(-gv * ((a / b) / b));
        else GRUN(gv / b);
        break;
    default: /* BIN_POW */
        if (bp->tb == OT_I64) {   /* base only, in double like pow_fi */
            const int64_t *pe = (const int64_t *)vb;
            for (int64_t j = 0; j < n; j++) {
                int64_t e = pe[j * ib];
                t[j] = e == 0 ? 0.0f : (float)((double)g[j] * ((double)e * pow((double)pa[j * ia], (double)(e - 1))));
            }
        } else if (side) {
            GRUN(a == 0.0f && b >= 0.0f ? 0.0f : gv * (powf(a, b) * logf(a)));
        } else {
            GRUN(b == 0.0f ? 0.0f : gv * (b * powf(a, b - 1.0f)));
        }
        break;
    }
}
#undef GRUN

/* Add to *oo, *oa, *ob the offsets of the merged coordinates given by idx over
 * the dims dims[0..nd) (the last varies fastest). */
static inline void bin_offsets(const bin_params *bp, const int64_t *so, const int *dims, int nd, int64_t idx,
                               int64_t *oo, int64_t *oa, int64_t *ob) {
    for (int k = nd - 1; k >= 0; k--) {
        int i = dims[k];
        int64_t x = idx % bp->d[i];
        idx /= bp->d[i];
        *oo += x * so[i];
        *oa += x * bp->sa[i];
        *ob += x * bp->sb[i];
    }
}

static inline const void *elem_at(const unsigned char *base, int64_t off, size_t es) {
    return base ? base + (size_t)off * es : NULL;
}

/* gx += gradient of operand `side` (A's shape or B's), from gy (the merged output). */
static void bin_grad(const bin_params *bp, int side, float *gx, const float *gy, const unsigned char *A,
                     const unsigned char *B) {
    const int r = bp->rank, last = r - 1;
    const int64_t *sx = side ? bp->sb : bp->sa;
    const size_t ea = ot_dtype_size(bp->ta), eb = ot_dtype_size(bp->tb);
    int64_t so[OT_MAX_RANK];   /* output strides */
    so[last] = 1;
    for (int i = last - 1; i >= 0; i--) so[i] = so[i + 1] * bp->d[i + 1];
    int kept[OT_MAX_RANK], red[OT_MAX_RANK], nk = 0, nr = 0;   /* outer dims X has / is broadcast along */
    int64_t nko = 1, nro = 1;
    for (int i = 0; i < last; i++) {
        if (sx[i]) { kept[nk++] = i; nko *= bp->d[i]; }
        else { red[nr++] = i; nro *= bp->d[i]; }
    }
    const int64_t L = bp->d[last], ia = bp->sa[last], ib = bp->sb[last];
    const int64_t total = bp->numel;

    if (sx[last]) {
        /* X runs along the innermost dim: a task is one run chunk of X, summing the
         * matching output runs over the reduced outer dims (none when X is full). */
        int64_t nch = (L + GCHUNK - 1) / GCHUNK, tasks = nko * nch;
#pragma omp parallel for if(total > 32768)
        for (int64_t tk = 0; tk < tasks; tk++) {
            int64_t ko = tk / nch, j0 = (tk % nch) * GCHUNK;
            int64_t n = L - j0 < GCHUNK ? L - j0 : GCHUNK;
            int64_t oo = 0, oa = 0, ob = 0;
            bin_offsets(bp, so, kept, nk, ko, &oo, &oa, &ob);
            float *gxr = gx + (side ? ob : oa) + j0;
            float t[GCHUNK];
            if (nro == 1) {
                grad_run(bp, side, t, gy + oo + j0, elem_at(A, oa + j0 * ia, ea), ia, elem_at(B, ob + j0 * ib, eb), ib, n);
                for (int64_t j = 0; j < n; j++) gxr[j] += t[j];
                continue;
            }
            double acc[GCHUNK];
            for (int64_t j = 0; j < n; j++) acc[j] = 0;
            for (int64_t ro = 0; ro < nro; ro++) {
                int64_t po = oo, pa = oa, pb = ob;
                bin_offsets(bp, so, red, nr, ro, &po, &pa, &pb);
                grad_run(bp, side, t, gy + po + j0, elem_at(A, pa + j0 * ia, ea), ia, elem_at(B, pb + j0 * ib, eb), ib, n);
                for (int64_t j = 0; j < n; j++) acc[j] += t[j];
            }
            for (int64_t j = 0; j < n; j++) gxr[j] += (float)acc[j];
        }
        return;
    }

    /* X is broadcast along the innermost dim: each element of X (a kept outer
     * coordinate) sums whole output runs over the reduced outer dims. With fewer
     * than 64 elements the reduced dims are cut into P fixed chunks. */
    enum { PMAX = 64 };
    double part[PMAX * PMAX];
    int64_t P = nko >= PMAX ? 1 : (nro < PMAX ? nro : PMAX), tasks = nko * P;
#pragma omp parallel for if(total > 32768)
    for (int64_t tk = 0; tk < tasks; tk++) {
        int64_t e = tk / P, ch = tk % P, r0 = nro * ch / P, r1 = nro * (ch + 1) / P;
        int64_t oo = 0, oa = 0, ob = 0;
        bin_offsets(bp, so, kept, nk, e, &oo, &oa, &ob);
        float t[GCHUNK];
        double s = 0;
        for (int64_t ro = r0; ro < r1; ro++) {
            int64_t po = oo, pa = oa, pb = ob;
            bin_offsets(bp, so, red, nr, ro, &po, &pa, &pb);
            for (int64_t j0 = 0; j0 < L; j0 += GCHUNK) {
                int64_t n = L - j0 < GCHUNK ? L - j0 : GCHUNK;
                grad_run(bp, side, t, gy + po + j0, elem_at(A, pa + j0 * ia, ea), ia, elem_at(B, pb + j0 * ib, eb), ib, n);
                for (int64_t j = 0; j < n; j++) s += t[j];
            }
        }
        if (P == 1) gx[side ? ob : oa] += (float)s;
        else part[tk] = s;
    }
    if (P == 1) return;
    for (int64_t e = 0; e < nko; e++) {
        int64_t oo = 0, oa = 0, ob = 0;
        bin_offsets(bp, so, kept, nk, e, &oo, &oa, &ob);
        double s = 0;
        for (int64_t ch = 0; ch < P; ch++) s += part[e * P + ch];
        gx[side ? ob : oa] += (float)s;
    }
}

static ot_status bin_bwd(ot_kctx *c) {
    const bin_params *bp = (const bin_params *)c->params;
    const float *gy = ot_gout(c, 0);   /* (merged dims d) */
    if (!gy || bp->numel == 0 || bp->ta != OT_F32) return OT_OK;   /* int64 arithmetic has no gradient */
    if (bp->silu) {
        float *gx = ot_gin(c, bp->silu - 1);
        const float *x = ot_inf(c, bp->silu - 1);
        int64_t n = bp->numel, nch = (n + EW_CHUNK - 1) / EW_CHUNK;
        bool set = ot_gin_set(c, bp->silu - 1);
        if (!gx) return OT_OK;
#pragma omp parallel for if(nch > 2)
        for (int64_t k = 0; k < nch; k++) {
            int64_t i0 = k * EW_CHUNK;
            silu_bwd_run(gx + i0, gy + i0, x + i0, n - i0 < EW_CHUNK ? n - i0 : EW_CHUNK, set);
        }
        return OT_OK;
    }
    bool reads = bp->kind == BIN_MUL || bp->kind == BIN_DIV || bp->kind == BIN_POW;
    const unsigned char *A = reads ? (const unsigned char *)ot_in(c, 0) : NULL;
    const unsigned char *B = reads ? (const unsigned char *)ot_in(c, 1) : NULL;
    for (int side = 0; side < 2; side++) {
        float *gx = ot_gin(c, side);
        if (!gx || (side == 1 && bp->tb != OT_F32)) continue;
        if (ot_gin_set(c, side)) /* the only writer: the general path adds, so zero first */
            memset(gx, 0, sizeof(float) * (size_t)ot_numel(ot_ishape(c, side)));
        bin_grad(bp, side, gx, gy, A, B);   /* A then B: an operand used twice (x * x) gets both */
    }
    return OT_OK;
}

/* ---- op table rows ---- */

#define BIN_READS (OT_BWD_IN(0) | OT_BWD_IN(1))
/* definitions (device-neutral) */
const ot_op_def ot_op_sigmoid = {
    .name = "Sigmoid", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = sigmoid_infer,
    .bwd_reads = OT_BWD_OUT(0),
};
const ot_op_def ot_op_add = {
    .name = "Add", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .params_size = sizeof(bin_params),
    .infer = add_infer,
};
const ot_op_def ot_op_sub = {
    .name = "Sub", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .params_size = sizeof(bin_params),
    .infer = sub_infer,
};
const ot_op_def ot_op_mul = {
    .name = "Mul", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .params_size = sizeof(bin_params),
    .infer = mul_infer, .flags = OT_OPF_GRAD_SET, .bwd_reads = BIN_READS,
};
const ot_op_def ot_op_div = {
    .name = "Div", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .params_size = sizeof(bin_params),
    .infer = div_infer, .bwd_reads = BIN_READS,
};
const ot_op_def ot_op_pow = {
    .name = "Pow", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .params_size = sizeof(bin_params),
    .infer = pow_infer, .bwd_reads = BIN_READS,
};

/* CPU implementations */
const ot_op_impl ot_cpu_sigmoid = {.forward = sigmoid_fwd, .backward = sigmoid_bwd};
const ot_op_impl ot_cpu_add = {.forward = bin_fwd, .backward = bin_bwd};
const ot_op_impl ot_cpu_sub = {.forward = bin_fwd, .backward = bin_bwd};
const ot_op_impl ot_cpu_mul = {.forward = bin_fwd, .backward = bin_bwd};
const ot_op_impl ot_cpu_div = {.forward = bin_fwd, .backward = bin_bwd};
const ot_op_impl ot_cpu_pow = {.forward = bin_fwd, .backward = bin_bwd};
