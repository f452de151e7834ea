/* batchnorm.c: BatchNormalization (ONNX opset 7-15) on the CPU.
 *
 * Inference form (1 output): y = (x - mean) / sqrt(var + eps) * scale + B.
 * Training form (opset < 14: more than one output; opset >= 14: training_mode=1):
 * batch mean and biased batch variance over (N, spatial); outputs running_mean
 * = mean*momentum + batch_mean*(1-momentum), running_var likewise, and (opset <
 * 14) saved_mean and saved inverse std, as ONNX Runtime computes them.
 * In a training plan (OT_PLAN_TRAIN) every BN uses batch statistics and updates
 * its running statistics inputs in place as torch.nn.BatchNorm2d does:
 * running = (1 - m) * running + m * batch, m = 1 - ONNX momentum, with the
 * unbiased batch variance. Backward (training form): with xh = (x - mean) * invstd,
 * dB = sum dy, dscale = sum dy * xh, dx = scale * invstd / M * (M dy - dB - xh dscale).
 * Sums in double, the variance from squared deviations (two passes).
 * CPU implementation only (ot_cpu_batchnormalization). */
#include "ops.h"
#include "op_params.h"
#include <math.h>



/* ---- per-channel row kernels ----
 * Sums in double with 8 independent accumulators: one accumulator serialises
 * every add on its latency and cannot vectorize; eight lanes in a fixed order
 * do, and the order depends only on the row length, never on the machine or
 * the thread count. */
#define LANES 8
static inline double lanes_total(const double *a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

OT_KERNEL_CLONES static double row_sum(const float *x, int64_t n) {
    double a[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) a[k] += x[i + k];
    for (int k = 0; i < n; i++, k++) a[k] += x[i];
    return lanes_total(a);
}

OT_KERNEL_CLONES static double row_sqdev(const float *x, int64_t n, double mu) {
    double a[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) { double d = x[i + k] - mu; a[k] += d * d; }
    for (int k = 0; i < n; i++, k++) { double d = x[i] - mu; a[k] += d * d; }
    return lanes_total(a);
}

/* sdy += sum d, sdyxh += sum d * (x - mu) * inv */
OT_KERNEL_CLONES static void row_bwd_sums(const float *d, const float *x, int64_t n, double mu, double inv, double *sdy,
                                          double *sdyxh) {
    double a[LANES] = {0}, b[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) { a[k] += d[i + k]; b[k] += d[i + k] * ((x[i + k] - mu) * inv); }
    for (int k = 0; i < n; i++, k++) { a[k] += d[i]; b[k] += d[i] * ((x[i] - mu) * inv); }
    *sdy += lanes_total(a);
    *sdyxh += lanes_total(b);
}

OT_KERNEL_CLONES static void row_affine(float *y, const float *x, int64_t n, float a, float b) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * a + b;
}

/* g += k * (cnt * d - sdy - (x - mu) * inv * sdyxh), in double; set: g = ... */
OT_KERNEL_CLONES static void row_bwd_dx(float *g, const float *d, const float *x, int64_t n, double k, double cnt, double sdy,
                                        double mu, double inv, double sdyxh, bool set) {
    if (set)
        for (int64_t i = 0; i < n; i++) g[i] = (float)(k * (cnt * d[i] - sdy - (x[i] - mu) * inv * sdyxh));
    else
        for (int64_t i = 0; i < n; i++) g[i] += (float)(k * (cnt * d[i] - sdy - (x[i] - mu) * inv * sdyxh));
}

/* ---- forward ---- */
/* y, x: (N, C, S); scale, bias, mean, var: (C) */
static void bn_infer_fwd(float *y, const float *x, const float *scale, const float *bias, const float *mean,
                         const float *var, const bn_params *p) {
#pragma omp parallel for if (p->n * p->c * p->s > 32768)
    for (int64_t ch = 0; ch < p->c; ch++) {
        float a = scale[ch] / sqrtf(var[ch] + p->eps), b = bias[ch] - mean[ch] * a;
        for (int64_t n = 0; n < p->n; n++) {
            const float *xs = x + (n * p->c + ch) * p->s;
            row_affine(y + (n * p->c + ch) * p->s, xs, p->s, a, b);
        }
    }
}

/* Training form. batch_mean/batch_invstd: (C), may be NULL-free outputs of the node. */
static void bn_train_fwd(float *y, float *run_mean, float *run_var, float *saved_mean, float *saved_invstd,
                         const float *x, const float *scale, const float *bias, const float *mean_in,
                         const float *var_in, const bn_params *p) {
    /* (mean_in, var_in are updated in place in training plans: see the file comment) */
    const double cnt = (double)(p->n * p->s);
#pragma omp parallel for if (p->n * p->c * p->s > 32768)
    for (int64_t ch = 0; ch < p->c; ch++) {
        double sum = 0, sq = 0;
        for (int64_t n = 0; n < p->n; n++) sum += row_sum(x + (n * p->c + ch) * p->s, p->s);
        double mu = cnt > 0 ? sum / cnt : 0;
        for (int64_t n = 0; n < p->n; n++) sq += row_sqdev(x + (n * p->c + ch) * p->s, p->s, mu);
        double var = cnt > 0 ? sq / cnt : 0;
        double inv = 1.0 / sqrt(var + (double)p->eps);
        float a = (float)(scale[ch] * inv), b = (float)(bias[ch] - mu * scale[ch] * inv);
        for (int64_t n = 0; n < p->n; n++) row_affine(y + (n * p->c + ch) * p->s, x + (n * p->c + ch) * p->s, p->s, a, b);
        if (run_mean) run_mean[ch] = (float)(mean_in[ch] * p->momentum + mu * (1.0 - p->momentum));
        if (run_var) run_var[ch] = (float)(var_in[ch] * p->momentum + var * (1.0 - p->momentum));
        if (saved_mean) saved_mean[ch] = (float)mu;
        if (saved_invstd) saved_invstd[ch] = (float)inv;
        if (p->inplace_stats) {
            double m = 1.0 - (double)p->momentum, unbiased = cnt > 1 ? sq / (cnt - 1) : var;
            float *rm = (float *)mean_in, *rv = (float *)var_in; /* variables of the training plan */
            rm[ch] = (float)((1.0 - m) * rm[ch] + m * mu);
            rv[ch] = (float)((1.0 - m) * rv[ch] + m * unbiased);
            p->mean[ch] = (float)mu;
            p->invstd[ch] = (float)inv;
        }
    }
}

/* ---- synchronised BatchNorm (data-parallel ranks, --sync-bn) ----
 * sum: the plan's element-wise sum over ranks, in place (ot_bn_sum(c), set per
 * plan by ot_autograd_set_bn_sync). */
typedef void (*bn_sum_fn)(double *, int64_t);

/* Training plans with statistics over every rank's batch (torch SyncBatchNorm):
 * the global sum gives the mean, the global sum of squared deviations from it
 * the biased variance; running statistics as bn_train_fwd. Every rank calls
 * this for the same nodes in the same order (the same plan). */
static void bn_train_fwd_sync(bn_sum_fn sum_ranks, float *y, const float *x, const float *scale, const float *bias,
                              const float *mean_in, const float *var_in, const bn_params *p) {
    const int64_t C = p->c;
    double *sum = calloc((size_t)(2 * C + 1), sizeof(double)), *sq = sum ? sum + C + 1 : NULL;
    if (!sum) abort(); /* 2C+1 doubles; a failure here cannot be reported mid-step on one rank only */
#pragma omp parallel for if (p->n * C * p->s > 32768)
    for (int64_t ch = 0; ch < C; ch++) {
        double t = 0;
        for (int64_t n = 0; n < p->n; n++) t += row_sum(x + (n * C + ch) * p->s, p->s);
        sum[ch] = t;
    }
    sum[C] = (double)(p->n * p->s);
    sum_ranks(sum, C + 1);
    const double cnt = sum[C];
#pragma omp parallel for if (p->n * C * p->s > 32768)
    for (int64_t ch = 0; ch < C; ch++) {
        double mu = cnt > 0 ? sum[ch] / cnt : 0, t = 0;
        for (int64_t n = 0; n < p->n; n++) t += row_sqdev(x + (n * C + ch) * p->s, p->s, mu);
        sq[ch] = t;
    }
    sum_ranks(sq, C);
#pragma omp parallel for if (p->n * C * p->s > 32768)
    for (int64_t ch = 0; ch < C; ch++) {
        double mu = cnt > 0 ? sum[ch] / cnt : 0, var = cnt > 0 ? sq[ch] / cnt : 0;
        double inv = 1.0 / sqrt(var + (double)p->eps);
        float a = (float)(scale[ch] * inv), b = (float)(bias[ch] - mu * scale[ch] * inv);
        for (int64_t n = 0; n < p->n; n++) row_affine(y + (n * C + ch) * p->s, x + (n * C + ch) * p->s, p->s, a, b);
        double m = 1.0 - (double)p->momentum, unbiased = cnt > 1 ? sq[ch] / (cnt - 1) : var;
        float *rm = (float *)mean_in, *rv = (float *)var_in;
        rm[ch] = (float)((1.0 - m) * rm[ch] + m * mu);
        rv[ch] = (float)((1.0 - m) * rv[ch] + m * unbiased);
        p->mean[ch] = (float)mu;
        p->invstd[ch] = (float)inv;
    }
    free(sum);
}

/* ---- op table entry ---- */
static ot_status bn_infer(ot_kctx *c) {
    bn_params *p = c->params;
    for (int i = 0; i < 5; i++) OT_TRY(ot_require_float(c, i));
    const ot_shape *xs = ot_ishape(c, 0);
    char b1[160], b2[160];
    if (xs->rank < 2) return ot_fail(c->err, OT_ERR_SHAPE, "input %s needs rank >= 2 (N, C, ...)", ot_shape_str(xs, b1, sizeof b1));
    p->n = xs->d[0];
    p->c = xs->d[1];
    p->s = 1;
    for (int i = 2; i < xs->rank; i++) p->s *= xs->d[i];
    for (int i = 1; i < 5; i++) {
        const ot_shape *s = ot_ishape(c, i);
        if (s->rank != 1 || s->d[0] != p->c)
            return ot_fail(c->err, OT_ERR_SHAPE, "input %d '%s' has shape %s, expected [%lld] for input %s", i,
                           c->p->g->values[c->n->in[i]].name, ot_shape_str(s, b1, sizeof b1), (long long)p->c,
                           ot_shape_str(xs, b2, sizeof b2));
    }
    p->eps = ot_attr_float(c->n, "epsilon", 1e-5f);
    p->momentum = ot_attr_float(c->n, "momentum", 0.9f);
    ot_attr_int(c->n, "spatial", 1); /* opset < 9: always spatial here */
    int64_t tm = ot_attr_int(c->n, "training_mode", 0);
    p->training = c->opset >= 14 ? tm != 0 : c->n->n_out > 1;
    if (ot_training(c)) {
        p->training = 1;
        p->inplace_stats = 1;
        p->mean = ot_plan_state(c, sizeof(float) * (size_t)p->c);
        p->invstd = ot_plan_state(c, sizeof(float) * (size_t)p->c);
        if (!p->mean || !p->invstd) return ot_fail(c->err, OT_ERR_NOMEM, "out of memory");
    }
    int max_out = c->opset >= 14 ? 3 : 5;
    if (c->n->n_out > max_out)
        return ot_fail(c->err, OT_ERR_INVALID, "%d outputs; opset %d allows at most %d", c->n->n_out, c->opset, max_out);
    if (!p->training && c->n->n_out > 1 && !ot_training(c))
        return ot_fail(c->err, OT_ERR_INVALID, "running statistics outputs need training_mode=1");
    OT_TRY(ot_set_out(c, 0, OT_F32, xs));
    ot_shape cs = {1, {p->c}};
    for (int i = 1; i < c->n->n_out; i++) OT_TRY(ot_set_out(c, i, OT_F32, &cs));
    return OT_OK;
}

static float *opt_out(ot_kctx *c, int i) { return ot_has_out(c, i) ? ot_outf(c, i) : NULL; }

static ot_status bn_fwd(ot_kctx *c) {
    const bn_params *p = c->params;
    bn_sum_fn sum_ranks = ot_bn_sum(c);
    if (p->inplace_stats && sum_ranks)
        bn_train_fwd_sync(sum_ranks, ot_outf(c, 0), ot_inf(c, 0), ot_inf(c, 1), ot_inf(c, 2), ot_inf(c, 3), ot_inf(c, 4), p);
    else if (p->training)
        bn_train_fwd(ot_outf(c, 0), opt_out(c, 1), opt_out(c, 2), opt_out(c, 3), opt_out(c, 4), ot_inf(c, 0),
                     ot_inf(c, 1), ot_inf(c, 2), ot_inf(c, 3), ot_inf(c, 4), p);
    else
        bn_infer_fwd(ot_outf(c, 0), ot_inf(c, 0), ot_inf(c, 1), ot_inf(c, 2), ot_inf(c, 3), ot_inf(c, 4), p);
    return OT_OK;
}

/* ---- backward (training form) ---- */
/* dx, dscale, dbias accumulate (any may be NULL); x, dy: (N, C, S). */
static void bn_train_bwd(float *dx, bool set, float *dscale, float *dbias, const float *dy, const float *x, const float *scale,
                         const bn_params *p) {
    const double cnt = (double)(p->n * p->s);
#pragma omp parallel for if (p->n * p->c * p->s > 32768)
    for (int64_t ch = 0; ch < p->c; ch++) {
        const double mu = p->mean[ch], inv = p->invstd[ch];
        double sdy = 0, sdyxh = 0;
        for (int64_t n = 0; n < p->n; n++)
            row_bwd_sums(dy + (n * p->c + ch) * p->s, x + (n * p->c + ch) * p->s, p->s, mu, inv, &sdy, &sdyxh);
        if (dbias) dbias[ch] += (float)sdy;
        if (dscale) dscale[ch] += (float)sdyxh;
        if (!dx || cnt == 0) continue;
        const double k = scale[ch] * inv / cnt;
            for (int64_t n = 0; n < p->n; n++)
            row_bwd_dx(dx + (n * p->c + ch) * p->s, dy + (n * p->c + ch) * p->s, x + (n * p->c + ch) * p->s, p->s, k, cnt, sdy, mu,
                       inv, sdyxh, set);
    }
}

/* SyncBatchNorm backward: the input gradient needs the sums of dy and dy * xh
 * over every rank; the scale and bias gradients stay local (the data-parallel
 * step sums parameter gradients over ranks). */
static void bn_train_bwd_sync(bn_sum_fn sum_ranks, float *dx, bool set, float *dscale, float *dbias, const float *dy,
                              const float *x, const float *scale, const bn_params *p) {
    const int64_t C = p->c;
    double *s = calloc((size_t)(2 * C + 1), sizeof(double));
    if (!s) abort();
#pragma omp parallel for if (p->n * C * p->s > 32768)
    for (int64_t ch = 0; ch < C; ch++) {
        const double mu = p->mean[ch], inv = p->invstd[ch];
        double sdy = 0, sdyxh = 0;
        for (int64_t n = 0; n < p->n; n++)
            row_bwd_sums(dy + (n * C + ch) * p->s, x + (n * C + ch) * p->s, p->s, mu, inv, &sdy, &sdyxh);
        if (dbias) dbias[ch] += (float)sdy;
        if (dscale) dscale[ch] += (float)sdyxh;
        s[ch] = sdy;
        s[C + ch] = sdyxh;
    }
    s[2 * C] = (double)(p->n * p->s);
    sum_ranks(s, 2 * C + 1);
    const double cnt = s[2 * C];
    if (dx && cnt > 0)
#pragma omp parallel for if (p->n * C * p->s > 32768)
        for (int64_t ch = 0; ch < C; ch++) {
            const double mu = p->mean[ch], inv = p->invstd[ch], sdy = s[ch], sdyxh = s[C + ch];
            const double k = scale[ch] * inv / cnt;
            for (int64_t n = 0; n < p->n; n++)
                row_bwd_dx(dx + (n * C + ch) * p->s, dy + (n * C + ch) * p->s, x + (n * C + ch) * p->s, p->s, k, cnt, sdy, mu,
                           inv, sdyxh, set);
        }
    free(s);
}

static ot_status bn_bwd(ot_kctx *c) {
    const bn_params *p = c->params;
    const float *dy = ot_gout(c, 0);
    if (!dy) return OT_OK;
    if (!p->inplace_stats)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "backward of the inference form is not supported (train with batch statistics)");
    bn_sum_fn sum_ranks = ot_bn_sum(c);
    if (sum_ranks)
        bn_train_bwd_sync(sum_ranks, ot_gin(c, 0), ot_gin_set(c, 0), ot_gin(c, 1), ot_gin(c, 2), dy, ot_inf(c, 0), ot_inf(c, 1), p);
    else bn_train_bwd(ot_gin(c, 0), ot_gin_set(c, 0), ot_gin(c, 1), ot_gin(c, 2), dy, ot_inf(c, 0), ot_inf(c, 1), p);
    return OT_OK;
}

/* definitions (device-neutral) */
const ot_op_def ot_op_batchnormalization = {
    .name = "BatchNormalization", .min_in = 5, .max_in = 5, .min_out = 1, .max_out = 5,
    .params_size = sizeof(bn_params), .infer = bn_infer, .flags = OT_OPF_GRAD_SET,
    .bwd_reads = OT_BWD_IN(0) | OT_BWD_IN(1),
};

/* CPU implementations */
const ot_op_impl ot_cpu_batchnormalization = {.forward = bn_fwd, .backward = bn_bwd};
