/* test_cuda_conv.c (label cuda): Conv on the CUDA device (kernels/cuda/conv_gpu.c,
 * cuDNN) against the CPU plan (kernels/conv.c), forward and backward, on
 * random inputs in YOLOv5's geometries: 1x1 s1, 3x3 s1 p1, 3x3 s2 p1, the 6x6 s2
 * p2 stem, grouped and depthwise 3x3, a dilated 3x3, odd planes (13x17, 27x31),
 * batch 1 and 3.
 *
 * Each case is one graph of three Convs with two outputs, trained through the
 * autograd on both devices (two forward + backward rounds):
 *     t  = Conv1x1(x0, Wa, Ba)      C -> C
 *     y1 = ConvG(t, Wb, Bb)         the case's geometry, with bias
 *     y2 = ConvG(x0, Wc)            the same geometry, no bias
 * so dt is WRITTEN by y1's backward (its only writer: ot_gin_set, the buffer is
 * not zeroed; the test checks the planner marked it), dx0 is ADDED by two
 * backwards (the second one onto the first one's sum), and dW/dB accumulate
 * over the two rounds. The device arena starts as NaN bytes, so an element that
 * is read before written, or added to instead of written, shows. Also: forward
 * in an inference plan, the same bits from a second device run (the chosen
 * algorithms are deterministic), TF32 on request, and the refusal of
 * asymmetric pads.
 *
 * Tolerance: max |gpu - cpu| / max |cpu| <= 1e-4 per tensor (FP32, TF32 off).
 * cuDNN sums the K = C/group*kh*kw (forward, dx) or N*OH*OW (dW, dB) products in
 * another order than the CPU's GEMM (tiling, split reductions, Winograd / FFT
 * transforms), so results differ by rounding: about sqrt(K) * 2^-24 of the
 * largest partial sums for random signs, a few 1e-6 of the tensor's maximum for
 * these sizes (K <= 144, N*OH*OW <= 1200); 1e-4 leaves a wide margin for the
 * transform-based algorithms (Winograd, FFT: larger but still FP32 rounding
 * errors) while any wrong element (a missed tap, a wrong beta, an unwritten
 * value) is O(1) of the maximum. TF32 keeps 10 mantissa bits of each operand
 * (about 2^-11 relative per product): 1e-2.
 *
 * Without a GPU (or in a build without CUDA) it prints why and exits 77. */
#include "core/backend.h"
#include "core/config.h"
#include "core/runtime/autograd.h"
#include "cudaemu_graph.h" /* rnext, rsym1, cg_graph, cg_node, cg_attr */
#include "kernels/ops.h"
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "kernels/cuda/cuda_tables.h" /* ot_cuda_kernels_install, ot_cuda_conv_set_tf32, ot_cuda_library_real */

#ifdef ONNXT_HAVE_CUDA
static ot_backend *DEV; /* the CUDA device */

#define TOL_FP32 1e-4
#define TOL_TF32 1e-2

typedef struct conv_case {
    const char *name;
    int64_t n, c, h, w, m, k, s, pad, dil, group;
} conv_case;

static const conv_case CASES[] = {
    {"1x1 s1", 1, 32, 13, 17, 16, 1, 1, 0, 1, 1},
    {"1x1 s1 batch 3", 3, 8, 20, 20, 24, 1, 1, 0, 1, 1},
    {"3x3 s1 p1", 3, 16, 13, 17, 24, 3, 1, 1, 1, 1},
    {"3x3 s2 p1", 1, 16, 20, 20, 32, 3, 2, 1, 1, 1},
    {"3x3 s2 p1 odd", 3, 8, 13, 17, 16, 3, 2, 1, 1, 1},
    {"6x6 s2 p2 stem", 3, 3, 32, 32, 16, 6, 2, 2, 1, 1},
    {"6x6 s2 p2 odd", 1, 3, 27, 31, 8, 6, 2, 2, 1, 1},
    {"3x3 s1 p1 group 4", 3, 16, 13, 17, 32, 3, 1, 1, 1, 4},
    {"3x3 s2 p1 depthwise", 1, 12, 13, 17, 12, 3, 2, 1, 1, 12},
    {"3x3 p2 dilation 2", 1, 8, 13, 17, 8, 3, 1, 2, 2, 1},
    {"1x1 on a 1x1 plane", 1, 1, 1, 1, 1, 1, 1, 0, 1, 1},
};
#define N_CASES ((int)(sizeof CASES / sizeof *CASES))

/* ---- the graph ---- */
enum { P_WA, P_BA, P_WB, P_BB, P_WC, N_PARAMS };
static const char *const PARAM_NAME[N_PARAMS] = {"Wa", "Ba", "Wb", "Bb", "Wc"};

static void add_init(ot_graph *g, const char *name, int rank, const int64_t *dims, uint64_t *seed) {
    ot_value *v = &g->values[ot_graph_value(g, name)];
    v->flags |= OT_V_INIT;
    v->dtype = v->init.dtype = OT_F32;
    v->init.shape = v->shape = ot_shape_make(rank, dims);
    int64_t n = ot_numel(&v->init.shape);
    v->init.nbytes = sizeof(float) * (size_t)n;
    float *d = malloc(v->init.nbytes);
    ck_assert_ptr_nonnull(d);
    for (int64_t i = 0; i < n; i++) d[i] = rsym1(seed);
    v->init.data = d;
}

static void ints_attr(ot_node *n, const char *name, int64_t count, int64_t a, int64_t b) {
    ot_attr *at = cg_attr(n, name, OT_ATTR_INTS);
    at->n = count;
    at->ints = malloc(sizeof(int64_t) * (size_t)count);
    for (int64_t i = 0; i < count; i++) at->ints[i] = i % 2 ? b : a;
}

static void geometry(ot_node *n, const conv_case *k, const int64_t pads[4]) {
    ints_attr(n, "kernel_shape", 2, k->k, k->k);
    ints_attr(n, "strides", 2, k->s, k->s);
    ints_attr(n, "dilations", 2, k->dil, k->dil);
    ot_attr *a = cg_attr(n, "pads", OT_ATTR_INTS);
    a->n = 4;
    a->ints = malloc(sizeof(int64_t) * 4);
    memcpy(a->ints, pads, sizeof(int64_t) * 4);
    cg_attr(n, "group", OT_ATTR_INT)->i = k->group;
}

/* The three-Conv graph of the file comment (pads: the geometry's, or the given ones). */
static ot_graph *case_graph(const conv_case *k, const int64_t *pads_or_null, uint64_t seed) {
    int64_t pads[4] = {k->pad, k->pad, k->pad, k->pad};
    if (pads_or_null) memcpy(pads, pads_or_null, sizeof pads);
    ot_graph *g = cg_graph(1);
    add_init(g, "Wa", 4, (int64_t[]){k->c, k->c, 1, 1}, &seed);
    add_init(g, "Ba", 1, (int64_t[]){k->c}, &seed);
    add_init(g, "Wb", 4, (int64_t[]){k->m, k->c / k->group, k->k, k->k}, &seed);
    add_init(g, "Bb", 1, (int64_t[]){k->m}, &seed);
    add_init(g, "Wc", 4, (int64_t[]){k->m, k->c / k->group, k->k, k->k}, &seed);
    cg_node(g, "Conv", (const char *[]){"x0", "Wa", "Ba"}, 3, "t");
    geometry(cg_node(g, "Conv", (const char *[]){"t", "Wb", "Bb"}, 3, "y1"), k, pads);
    geometry(cg_node(g, "Conv", (const char *[]){"x0", "Wc"}, 2, "y2"), k, pads);
    g->outputs = malloc(sizeof(int) * 2);
    const char *outs[2] = {"y1", "y2"};
    for (int i = 0; i < 2; i++) {
        int v = ot_graph_value(g, outs[i]);
        g->values[v].flags |= OT_V_OUTPUT;
        g->outputs[g->n_outputs++] = v;
    }
    ot_error e;
    ck_assert_msg(ot_graph_finalize(g, &e) == OT_OK, "%s", e.msg);
    return g;
}

static int node_index(const ot_graph *g, const char *name) {
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    ck_abort_msg("no node %s", name);
    return -1;
}

/* ---- runs ---- */
typedef struct result {
    int64_t ny[2], nx, np[N_PARAMS];
    float *y[2], *dy[2], *dx, *dp[N_PARAMS];
} result;

static void result_alloc(result *r, ot_graph *g, const conv_case *k, int64_t oh, int64_t ow) {
    memset(r, 0, sizeof *r);
    r->ny[0] = r->ny[1] = k->n * k->m * oh * ow;
    r->nx = k->n * k->c * k->h * k->w;
    for (int i = 0; i < N_PARAMS; i++) r->np[i] = ot_numel(&g->values[ot_graph_value(g, PARAM_NAME[i])].init.shape);
    for (int i = 0; i < 2; i++) r->y[i] = malloc(sizeof(float) * (size_t)r->ny[i]);
    r->dx = malloc(sizeof(float) * (size_t)r->nx);
    for (int i = 0; i < N_PARAMS; i++) r->dp[i] = malloc(sizeof(float) * (size_t)r->np[i]);
}
static void result_free(result *r) {
    for (int i = 0; i < 2; i++) free(r->y[i]);
    free(r->dx);
    for (int i = 0; i < N_PARAMS; i++) free(r->dp[i]);
}

static void out_shape(const conv_case *k, const int64_t pads[4], int64_t *oh, int64_t *ow) {
    int64_t ek = (k->k - 1) * k->dil + 1;
    *oh = (k->h + pads[0] + pads[2] - ek) / k->s + 1;
    *ow = (k->w + pads[1] + pads[3] - ek) / k->s + 1;
}

/* Two rounds of forward + backward on be (NULL: the CPU); r gets the outputs
 * and gradients after the second. dy: the output gradients (host). */
static void train_run(ot_backend *be, ot_graph *g, const conv_case *k, const float *x, float *const dy[2], result *r) {
    ot_shape xs = ot_shape_make(4, (int64_t[]){k->n, k->c, k->h, k->w});
    ot_autograd *a;
    ot_error e;
    ck_assert_msg(ot_autograd_create_on(be, g, &xs, NULL, true, &a, &e) == OT_OK, "%s: %s", k->name, e.msg);
    if (be) {
        ck_assert(a->be == be);
        /* dt (node y1's input 0) is written by y1's backward; dx0 (a graph input) is added to */
        if (ot_config_get()->grad_set)
            ck_assert_msg(a->p->gset[node_index(g, "y1")] & 1u, "%s: the planner did not let Conv write dt", k->name);
        ck_assert_msg(!(a->p->gset[node_index(g, "t")] & 1u) && !(a->p->gset[node_index(g, "y2")] & 1u),
                      "%s: dx0 must be accumulated", k->name);
        if (a->p->arena_bytes) ot_be_memset(a->be, a->p->arena, 0xff, a->p->arena_bytes);
    }
    for (int round = 0; round < 2; round++) {
        ck_assert_msg(ot_autograd_forward(a, (const float *const[]){x}, &e) == OT_OK, "%s: forward: %s", k->name, e.msg);
        for (int i = 0; i < 2; i++) ot_be_upload(a->be, ot_autograd_output_grad(a, i), dy[i], sizeof(float) * (size_t)r->ny[i]);
        if (round == 1)
            for (int i = 0; i < 2; i++) ot_autograd_download(a, g->outputs[i], r->y[i]);
        ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s: backward: %s", k->name, e.msg);
    }
    ot_autograd_download_grad(a, g->inputs[0], r->dx);
    for (int i = 0; i < N_PARAMS; i++) ot_autograd_download_grad(a, ot_graph_value(g, PARAM_NAME[i]), r->dp[i]);
    ot_autograd_destroy(a);
}

/* max |got - ref| / max |ref| (infinite when got has a NaN where ref has none) */
static double rel_to_max(const float *got, const float *ref, int64_t n) {
    double err = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) != isnan(ref[i])) return INFINITY;
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > err) err = d;
        if (fabs((double)ref[i]) > mx) mx = fabs((double)ref[i]);
    }
    return mx > 0 ? err / mx : err;
}
#define CK_CLOSE(got, ref, n, tol, ...)                                                            \
    do {                                                                                           \
        double e_ = rel_to_max((got), (ref), (n));                                                 \
        char m_[200];                                                                              \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                      \
        ck_assert_msg(e_ <= (tol), "%s: error %.3g relative to the maximum (bound %.1g)", m_, e_, (double)(tol)); \
    } while (0)

static void compare(const result *got, const result *ref, const conv_case *k, double tol) {
    for (int i = 0; i < 2; i++) CK_CLOSE(got->y[i], ref->y[i], ref->ny[i], tol, "%s: y%d", k->name, i + 1);
    CK_CLOSE(got->dx, ref->dx, ref->nx, tol, "%s: dx0", k->name);
    for (int i = 0; i < N_PARAMS; i++) CK_CLOSE(got->dp[i], ref->dp[i], ref->np[i], tol, "%s: d%s", k->name, PARAM_NAME[i]);
}

/* One case on the CPU and the device; repeat: a second device run must give the same bits. */
static void check_case(const conv_case *k, double tol, bool repeat, uint64_t seed) {
    ot_graph *g = case_graph(k, NULL, seed);
    int64_t pads[4] = {k->pad, k->pad, k->pad, k->pad}, oh, ow;
    out_shape(k, pads, &oh, &ow);
    result ref, got;
    result_alloc(&ref, g, k, oh, ow);
    result_alloc(&got, g, k, oh, ow);
    float *x = malloc(sizeof(float) * (size_t)ref.nx), *dy[2];
    for (int64_t i = 0; i < ref.nx; i++) x[i] = rsym1(&seed);
    for (int j = 0; j < 2; j++) {
        dy[j] = malloc(sizeof(float) * (size_t)ref.ny[j]);
        for (int64_t i = 0; i < ref.ny[j]; i++) dy[j][i] = rsym1(&seed);
    }
    train_run(NULL, g, k, x, dy, &ref);
    train_run(DEV, g, k, x, dy, &got);
    compare(&got, &ref, k, tol);
    if (repeat) {
        result again;
        result_alloc(&again, g, k, oh, ow);
        train_run(DEV, g, k, x, dy, &again);
        for (int i = 0; i < 2; i++) ck_assert_msg(!memcmp(again.y[i], got.y[i], sizeof(float) * (size_t)got.ny[i]), "%s: y%d repeats", k->name, i + 1);
        ck_assert_msg(!memcmp(again.dx, got.dx, sizeof(float) * (size_t)got.nx), "%s: dx0 repeats", k->name);
        for (int i = 0; i < N_PARAMS; i++)
            ck_assert_msg(!memcmp(again.dp[i], got.dp[i], sizeof(float) * (size_t)got.np[i]), "%s: d%s repeats", k->name, PARAM_NAME[i]);
        result_free(&again);
    }
    free(x); free(dy[0]); free(dy[1]);
    result_free(&ref); result_free(&got);
    ot_graph_destroy(g);
}

START_TEST(training_matches_cpu) {
    for (int i = 0; i < N_CASES; i++) check_case(&CASES[i], TOL_FP32, i == 2 || i == 7, 1000 + 31 * (uint64_t)i);
}
END_TEST

/* Inference plans prepare the forward only; the outputs match the CPU plan's. */
START_TEST(inference_matches_cpu) {
    for (int c = 0; c < N_CASES; c++) {
        const conv_case *k = &CASES[c];
        uint64_t seed = 7000 + (uint64_t)c;
        ot_graph *g = case_graph(k, NULL, seed);
        int64_t pads[4] = {k->pad, k->pad, k->pad, k->pad}, oh, ow;
        out_shape(k, pads, &oh, &ow);
        int64_t nx = k->n * k->c * k->h * k->w, ny = k->n * k->m * oh * ow;
        float *x = malloc(sizeof(float) * (size_t)nx), *y[2][2]; /* [device][output] */
        for (int64_t i = 0; i < nx; i++) x[i] = rsym1(&seed);
        ot_shape xs = ot_shape_make(4, (int64_t[]){k->n, k->c, k->h, k->w});
        for (int d = 0; d < 2; d++) {
            ot_plan *p;
            ot_error e;
            ck_assert_msg(ot_plan_create_on(d ? DEV : NULL, g, &xs, 0, NULL, &p, &e) == OT_OK, "%s: %s", k->name, e.msg);
            ck_assert_msg(ot_plan_run(p, (const float *const[]){x}, &e) == OT_OK, "%s: %s", k->name, e.msg);
            for (int o = 0; o < 2; o++) {
                y[d][o] = malloc(sizeof(float) * (size_t)ny);
                ot_plan_download(p, g->outputs[o], y[d][o]);
            }
            ot_plan_destroy(p);
        }
        for (int o = 0; o < 2; o++) CK_CLOSE(y[1][o], y[0][o], ny, TOL_FP32, "%s: inference y%d", k->name, o + 1);
        free(x);
        for (int d = 0; d < 2; d++) { free(y[d][0]); free(y[d][1]); }
        ot_graph_destroy(g);
    }
}
END_TEST

/* TF32 on request (a plan created after ot_cuda_conv_set_tf32(1)); FP32 again after (0). */
START_TEST(tf32_on_request) {
    ot_cuda_conv_set_tf32(1);
    check_case(&CASES[2], TOL_TF32, false, 31);
    check_case(&CASES[5], TOL_TF32, false, 32);
    ot_cuda_conv_set_tf32(0);
    check_case(&CASES[2], TOL_FP32, false, 33);
}
END_TEST

/* cuDNN pads both sides equally: on a GPU other pads fail at plan creation,
 * saying so (the executor's CPU convolution computes them). */
START_TEST(asymmetric_pads_refused) {
    const conv_case *k = &CASES[3];
    ot_graph *g = case_graph(k, (const int64_t[]){0, 0, 1, 1}, 5);
    ot_shape xs = ot_shape_make(4, (int64_t[]){k->n, k->c, k->h, k->w});
    ot_plan *p = NULL;
    ot_error e;
    ot_status st = ot_plan_create_on(DEV, g, &xs, 0, NULL, &p, &e);
    if (ot_cuda_library_real) {
        ck_assert_int_ne(st, OT_OK);
        ck_assert_ptr_null(p);
        ck_assert_msg(strstr(e.msg, "asymmetric pads") && strstr(e.msg, "CUDA device"), "message: %s", e.msg);
        ck_assert_msg(strstr(e.msg, "(Conv)") != NULL, "the planner names the node: %s", e.msg);
    } else {
        ck_assert_msg(st == OT_OK, "%s", e.msg);
        ot_plan_destroy(p);
    }
    ot_graph_destroy(g);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cuda_conv");
    TCase *t = tcase_create("conv");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, training_matches_cpu);
    tcase_add_test(t, inference_matches_cpu);
    tcase_add_test(t, tf32_on_request);
    tcase_add_test(t, asymmetric_pads_refused);
    suite_add_tcase(s, t);
    return s;
}
#endif

int main(void) {
#ifndef ONNXT_HAVE_CUDA
    printf("SKIP: this build has no CUDA backend (configure with the CUDA toolkit to compare cuDNN's Conv with the CPU's)\n");
    return OT_SKIP;
#else
    ot_cuda_kernels_install();
    ot_error e;
    if (ot_backend_get("0", &DEV, &e) != OT_OK) {
        printf("SKIP: no CUDA device: %s\n", e.msg);
        return OT_SKIP;
    }
    if (DEV->kind != OT_DEV_CUDA) {
        printf("FAIL: device 0 is %s, not a CUDA device\n", DEV->name);
        return 1;
    }
    printf("Conv on %s against the CPU\n", DEV->name);
    /* no fork per test: the parent has already initialised CUDA, which a forked child cannot use */
    SRunner *sr = srunner_create(suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
#endif
}
