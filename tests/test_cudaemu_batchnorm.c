/* test_cudaemu_batchnorm.c (ctest label cudaemu): kernels/cuda/batchnorm.cu on
 * the CPU executor against the CPU BatchNormalization (kernels/batchnorm.c).
 *
 * Training: a one-node BatchNormalization graph (YOLOv5's epsilon 1e-3 and
 * momentum 0.97, i.e. PyTorch's 0.03) run by the CPU autograd (a training
 * plan: batch statistics, running statistics updated in place), forward and
 * backward; the kernels get the same x, scale, bias, running statistics and dy
 * on cpu-guard memory, outputs NaN-filled so an unwritten element fails.
 * TOLERANCES: the statistics are double sums in a GPU block tree, which cannot
 * be the CPU's 8-lane order, so they differ in the last bits of a double and
 * the float results derived from them may differ by an ulp or so:
 *   - running_mean, running_var, saved mean / invstd (against a long double
 *     reference computed here; the CPU op keeps its own in plan state):
 *     within 1e-6 relative (to max(|r|, 1e-2 max|r|) for the means, which may
 *     be near 0);
 *   - y: within 1e-6 relative to max(|y_ref|, 1);
 *   - dx, dscale, dbias: within 1e-5 relative, |a - r| <= 1e-5 (|r| + max|r|)
 *     (dx is a difference of sums and may cancel to ~0 in single elements).
 * The accumulate paths (dx_set = 0, dscale / dbias +=) run a second backward
 * on the first's results and must give twice the reference.
 * Inference: bit for bit against the CPU op's float expression (bn_infer_fwd's
 * a = scale / sqrtf(var + eps), b = bias - mean * a, y = x * a + b), written
 * out here (ISO C, no contraction, as the library).
 * Odd N, C, H, W (1s and primes), S above and below the block size. */
#include "core/backend.h"
#include "core/runtime/autograd.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/ops.h"
#include "cudaemu_graph.h" /* rnext, rfloat, cg_attr */
#include "testutil.h"
#include <math.h>
#include <string.h>

#define EPS 1e-3f
#define MOMENTUM 0.97f

static void set_init(ot_graph *g, int vid, const float *data, int64_t c) {
    ot_value *v = &g->values[vid];
    v->flags |= OT_V_INIT;
    v->dtype = v->init.dtype = OT_F32;
    v->init.shape = v->shape = ot_shape_make(1, (int64_t[]){c});
    v->init.nbytes = sizeof(float) * (size_t)c;
    v->init.data = malloc(v->init.nbytes);
    memcpy(v->init.data, data, v->init.nbytes);
}

/* x -> BatchNormalization(x, scale, B, mean, var) -> y; vid[] = x, scale, B, mean, var, y */
static ot_graph *bn_graph(int64_t c, const float *scale, const float *bias, const float *mean, const float *var, int vid[6]) {
    ot_graph *g = ot_graph_create();
    ck_assert_ptr_nonnull(g);
    g->path = ot_strdup("bn.onnx");
    g->opset = 13;
    const char *names[6] = {"x", "scale", "B", "mean", "var", "y"};
    for (int i = 0; i < 6; i++) vid[i] = ot_graph_value(g, names[i]);
    g->values[vid[0]].flags |= OT_V_INPUT;
    g->inputs = malloc(sizeof(int));
    g->inputs[g->n_inputs++] = vid[0];
    g->values[vid[5]].flags |= OT_V_OUTPUT;
    g->outputs = malloc(sizeof(int));
    g->outputs[g->n_outputs++] = vid[5];
    set_init(g, vid[1], scale, c);
    set_init(g, vid[2], bias, c);
    set_init(g, vid[3], mean, c);
    set_init(g, vid[4], var, c);
    ot_node *n = ot_graph_add_node(g);
    ck_assert_ptr_nonnull(n);
    n->name = ot_strdup("bn");
    n->op_type = ot_strdup("BatchNormalization");
    n->domain = ot_strdup("");
    n->op = ot_op_lookup("BatchNormalization", "");
    n->n_in = 5;
    n->n_out = 1;
    n->in = malloc(sizeof(int) * 5);
    n->out = malloc(sizeof(int));
    for (int i = 0; i < 5; i++) n->in[i] = vid[i];
    n->out[0] = vid[5];
    cg_attr(n, "epsilon", OT_ATTR_FLOAT)->f = EPS;
    cg_attr(n, "momentum", OT_ATTR_FLOAT)->f = MOMENTUM;
    ot_error e;
    ck_assert_msg(ot_graph_finalize(g, &e) == OT_OK, "%s", e.msg);
    return g;
}

static double maxabs(const float *r, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)r[i]));
    return m;
}

/* |a - k*r| <= rtol * (|k*r| + floor) for every element; NaN fails. */
static void check_close(const char *what, const float *a, const float *r, double k, int64_t n, double rtol, double floor,
                        const int64_t dims[4]) {
    for (int64_t i = 0; i < n; i++) {
        double ref = k * (double)r[i], err = fabs((double)a[i] - ref);
        ck_assert_msg(err <= rtol * (fabs(ref) + floor), "%s (%lld,%lld,%lld,%lld)[%lld] = %.9g, CPU %.9g (err %.3g)", what,
                      (long long)dims[0], (long long)dims[1], (long long)dims[2], (long long)dims[3], (long long)i,
                      (double)a[i], ref, err);
    }
}

static float *gput(ot_backend *G, const float *h, int64_t n) {
    float *d = ot_be_alloc(G, sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (n > 0) ot_be_upload(G, d, h, sizeof(float) * (size_t)n);
    return d;
}
static float *gnan(ot_backend *G, int64_t n) {
    float *d = ot_be_alloc(G, sizeof(float) * (size_t)(n > 0 ? n : 1));
    ot_be_memset(G, d, 0xff, sizeof(float) * (size_t)(n > 0 ? n : 1));
    return d;
}
static void gget(ot_backend *G, float *h, const float *d, int64_t n) {
    if (n > 0) ot_be_download(G, h, d, sizeof(float) * (size_t)n);
}

static void check_case(int64_t N, int64_t C, int64_t H, int64_t W, uint64_t seed) {
    const int64_t S = H * W, nx = N * C * S, dims[4] = {N, C, H, W};
    float *x = malloc(sizeof(float) * (size_t)nx), *dy = malloc(sizeof(float) * (size_t)nx);
    float *scale = malloc(sizeof(float) * (size_t)C), *bias = malloc(sizeof(float) * (size_t)C);
    float *rm = malloc(sizeof(float) * (size_t)C), *rv = malloc(sizeof(float) * (size_t)C);
    for (int64_t ch = 0; ch < C; ch++) {
        scale[ch] = rfloat(&seed);
        bias[ch] = rfloat(&seed);
        rm[ch] = rfloat(&seed);
        rv[ch] = 1.5f + rfloat(&seed) * 0.5f;
    }
    for (int64_t i = 0; i < nx; i++) {
        int64_t ch = (i / S) % C;
        x[i] = rfloat(&seed) * (1.0f + (float)(ch % 3)) + (float)(ch % 5) - 2.0f;
        dy[i] = rfloat(&seed);
    }

    /* ---- the CPU op: one training step through the autograd ---- */
    int vid[6];
    ot_graph *g = bn_graph(C, scale, bias, rm, rv, vid);
    ot_shape xs = ot_shape_make(4, (int64_t[]){N, C, H, W});
    ot_autograd *a;
    ot_error e;
    ck_assert_msg(ot_autograd_create(g, &xs, NULL, true, &a, &e) == OT_OK, "%s", e.msg);
    ck_assert(a->be == ot_backend_cpu());
    ck_assert_msg(ot_autograd_forward(a, (const float *const[]){x}, &e) == OT_OK, "%s", e.msg);
    float *yref = malloc(sizeof(float) * (size_t)nx), *dxref = malloc(sizeof(float) * (size_t)nx);
    float *rmref = malloc(sizeof(float) * (size_t)C), *rvref = malloc(sizeof(float) * (size_t)C);
    float *dsref = malloc(sizeof(float) * (size_t)C), *dbref = malloc(sizeof(float) * (size_t)C);
    memcpy(yref, ot_autograd_data(a, vid[5]), sizeof(float) * (size_t)nx);
    ot_autograd_download(a, vid[3], rmref);
    ot_autograd_download(a, vid[4], rvref);
    memcpy(ot_autograd_output_grad(a, 0), dy, sizeof(float) * (size_t)nx);
    ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s", e.msg);
    memcpy(dxref, ot_autograd_grad(a, vid[0]), sizeof(float) * (size_t)nx);
    ot_autograd_download_grad(a, vid[1], dsref);
    ot_autograd_download_grad(a, vid[2], dbref);
    ot_autograd_destroy(a);
    ot_graph_destroy(g);

    /* long double statistics, for the saved mean / invstd */
    float *muref = malloc(sizeof(float) * (size_t)C), *invref = malloc(sizeof(float) * (size_t)C);
    for (int64_t ch = 0; ch < C; ch++) {
        long double sum = 0, sq = 0;
        for (int64_t b = 0; b < N; b++)
            for (int64_t j = 0; j < S; j++) sum += x[(b * C + ch) * S + j];
        long double mu = sum / (long double)(N * S);
        for (int64_t b = 0; b < N; b++)
            for (int64_t j = 0; j < S; j++) {
                long double d = x[(b * C + ch) * S + j] - mu;
                sq += d * d;
            }
        muref[ch] = (float)mu;
        invref[ch] = (float)(1.0L / sqrtl(sq / (long double)(N * S) + (long double)EPS));
    }

    /* ---- the kernels ---- */
    ot_backend *G = ot_backend_cpu_guard();
    float *gx = gput(G, x, nx), *gdy = gput(G, dy, nx), *gscale = gput(G, scale, C), *gbias = gput(G, bias, C);
    float *grm = gput(G, rm, C), *grv = gput(G, rv, C), *gy = gnan(G, nx), *gmu = gnan(G, C), *ginv = gnan(G, C);
    float *gdx = gnan(G, nx), *gds = gnan(G, C), *gdb = gnan(G, C);
    ot_be_memset(G, gds, 0, sizeof(float) * (size_t)C);
    ot_be_memset(G, gdb, 0, sizeof(float) * (size_t)C);
    ot_cuda_bn_train_fwd(gy, gmu, ginv, grm, grv, gx, gscale, gbias, N, C, S, EPS, MOMENTUM, NULL);
    ot_cuda_bn_train_bwd(gdx, 1, gds, gdb, gdy, gx, gscale, gmu, ginv, N, C, S, NULL);

    float *y = malloc(sizeof(float) * (size_t)nx), *dx = malloc(sizeof(float) * (size_t)nx);
    float *h = malloc(sizeof(float) * (size_t)C);
    gget(G, y, gy, nx);
    check_close("y", y, yref, 1, nx, 1e-6, 1, dims);
    gget(G, h, grm, C);
    check_close("running_mean", h, rmref, 1, C, 1e-6, 1e-2 * maxabs(rmref, C), dims);
    gget(G, h, grv, C);
    check_close("running_var", h, rvref, 1, C, 1e-6, 0, dims);
    gget(G, h, gmu, C);
    check_close("saved_mean", h, muref, 1, C, 1e-6, 1e-2 * maxabs(muref, C), dims);
    gget(G, h, ginv, C);
    check_close("saved_invstd", h, invref, 1, C, 1e-6, 0, dims);
    gget(G, dx, gdx, nx);
    check_close("dx", dx, dxref, 1, nx, 1e-5, maxabs(dxref, nx), dims);
    gget(G, h, gds, C);
    check_close("dscale", h, dsref, 1, C, 1e-5, maxabs(dsref, C), dims);
    gget(G, h, gdb, C);
    check_close("dbias", h, dbref, 1, C, 1e-5, maxabs(dbref, C), dims);

    /* the accumulate paths: a second backward adds the same gradients again */
    ot_cuda_bn_train_bwd(gdx, 0, gds, gdb, gdy, gx, gscale, gmu, ginv, N, C, S, NULL);
    gget(G, dx, gdx, nx);
    check_close("dx (accumulated)", dx, dxref, 2, nx, 1e-5, 2 * maxabs(dxref, nx), dims);
    gget(G, h, gds, C);
    check_close("dscale (accumulated)", h, dsref, 2, C, 1e-5, 2 * maxabs(dsref, C), dims);
    gget(G, h, gdb, C);
    check_close("dbias (accumulated)", h, dbref, 2, C, 1e-5, 2 * maxabs(dbref, C), dims);

    /* inference with the original running statistics: bit for bit */
    ot_be_upload(G, grm, rm, sizeof(float) * (size_t)C);
    ot_be_upload(G, grv, rv, sizeof(float) * (size_t)C);
    ot_be_memset(G, gy, 0xff, sizeof(float) * (size_t)(nx > 0 ? nx : 1));
    ot_cuda_bn_infer_fwd(gy, gx, gscale, gbias, grm, grv, N, C, S, EPS, NULL);
    gget(G, y, gy, nx);
    for (int64_t i = 0; i < nx; i++) {
        int64_t ch = (i / S) % C;
        float ka = scale[ch] / sqrtf(rv[ch] + EPS), kb = bias[ch] - rm[ch] * ka, r = x[i] * ka + kb;
        ck_assert_msg(memcmp(&y[i], &r, sizeof r) == 0, "inference (%lld,%lld,%lld,%lld)[%lld] = %.9g, CPU %.9g", (long long)N,
                      (long long)C, (long long)H, (long long)W, (long long)i, (double)y[i], (double)r);
    }

    float *bufs[] = {gx, gdy, gscale, gbias, grm, grv, gy, gmu, ginv, gdx, gds, gdb};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) ot_be_free(G, bufs[i]);
    free(x); free(dy); free(scale); free(bias); free(rm); free(rv); free(yref); free(dxref); free(rmref); free(rvref);
    free(dsref); free(dbref); free(muref); free(invref); free(y); free(dx); free(h);
}

static const int64_t CASES[][4] = {
    {1, 1, 1, 1}, {2, 1, 1, 1}, {1, 3, 1, 2}, {3, 5, 7, 3}, {1, 2, 17, 19}, {5, 7, 11, 13},
    {2, 3, 16, 16}, {3, 1, 23, 29}, {1, 33, 3, 5}, {7, 2, 1, 1},
};

START_TEST(train_and_infer_match_cpu_batchnorm) {
    for (size_t k = 0; k < sizeof CASES / sizeof *CASES; k++)
        check_case(CASES[k][0], CASES[k][1], CASES[k][2], CASES[k][3], 4242 + 31 * k);
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(random_shapes) {
    uint64_t s = 99;
    for (int k = 0; k < 8; k++) {
        int64_t N = 1 + (int64_t)(rnext(&s) % 5), C = 1 + (int64_t)(rnext(&s) % 9), H = 1 + (int64_t)(rnext(&s) % 21),
                W = 1 + (int64_t)(rnext(&s) % 21);
        check_case(N, C, H, W, rnext(&s));
    }
}
END_TEST

/* Zero-sized work launches nothing and touches nothing. */
START_TEST(empty_is_a_no_op) {
    ot_cuda_bn_infer_fwd(NULL, NULL, NULL, NULL, NULL, NULL, 0, 3, 5, EPS, NULL);
    ot_cuda_bn_infer_fwd(NULL, NULL, NULL, NULL, NULL, NULL, 2, 3, 0, EPS, NULL);
    ot_cuda_bn_train_fwd(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 2, 0, 5, EPS, MOMENTUM, NULL);
    ot_cuda_bn_train_bwd(NULL, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 2, 0, 5, NULL);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cudaemu_batchnorm");
    TCase *t = tcase_create("batchnorm");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, train_and_infer_match_cpu_batchnorm);
    tcase_add_test(t, random_shapes);
    tcase_add_test(t, empty_is_a_no_op);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_main(suite()); }
