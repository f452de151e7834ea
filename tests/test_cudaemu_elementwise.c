/* test_cudaemu_elementwise.c (ctest label cudaemu): kernels/cuda/elementwise.cu
 * on the CPU executor against the CPU ops of kernels/elementwise.c, through
 * small graphs run by the CPU autograd: Sigmoid; SiLU as Mul(x, Sigmoid(x))
 * (the planner's fused path); Add and Mul with same shapes, a scalar, a
 * per-channel (1,C,1,1) operand, YOLOv5's anchor grid (1,3,1,1,2), an operand
 * broadcast along outer dims, either side the smaller, and a few-channel
 * operand over a long batch (the CPU's 64-chunk partial sums).
 *
 * Everything compares BIT FOR BIT: the kernels do elementwise.c's float
 * operations in its order (the sigmoid is its Cephes polynomial, the broadcast
 * gradients its double sums in its order and chunks). Random inputs with
 * special values (0, -0, +-87.x, +-100, inf, NaN) for the sigmoid, odd sizes,
 * cpu-guard memory, NaN-filled outputs, pointers aligned (float4 paths) and one
 * float off (scalar paths); gradients both written (accumulate 0, against the
 * CPU's zeroed-then-added gradient) and added (accumulate 1, against init + it).
 * Also the CUDA table's view backward where a view's output is a graph output
 * (its gradient then added into the input's, not aliased). */
#include "cudaemu_graph.h"
#include "kernels/cuda/cuda_tables.h"

static const float SPECIAL[] = {0.0f, -0.0f, 87.5f, -87.5f, 88.0f, -88.0f, 100.0f, -100.0f, 1e-30f, -1e-30f};

static void fill_x(float *x, int64_t n, uint64_t *s, bool special) {
    for (int64_t i = 0; i < n; i++) x[i] = rfloat(s) * 4.0f;
    if (special)
        for (int64_t i = 0; i < n; i++)
            if (rnext(s) % 5 == 0) x[i] = SPECIAL[rnext(s) % (sizeof SPECIAL / sizeof *SPECIAL)];
}

typedef struct silu_half_ctx { const float *x; int64_t n; } silu_half_ctx;
static void silu_half_run(void *ctx, uint16_t *y, int bf16) {
    const silu_half_ctx *h = ctx;
    ot_cuda_silu_fwd_half(y, h->x, h->n, bf16, NULL);
}

/* silu: 0 Sigmoid, 1 SiLU. */
static void check_unary(int silu, int64_t n, uint64_t seed) {
    float *x = malloc(sizeof(float) * (size_t)n), *dy = malloc(sizeof(float) * (size_t)n), *init = malloc(sizeof(float) * (size_t)n);
    float *yref = malloc(sizeof(float) * (size_t)n), *gref = malloc(sizeof(float) * (size_t)n);
    float *y = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n), *s = malloc(sizeof(float) * (size_t)n);
    float *want = malloc(sizeof(float) * (size_t)n);
    fill_x(x, n, &seed, true);
    for (int64_t i = 0; i < n; i++) { dy[i] = rfloat(&seed); init[i] = rfloat(&seed); }
    ot_graph *gr = cg_graph(1);
    if (silu) {
        cg_node(gr, "Sigmoid", (const char *[]){"x0"}, 1, "s");
        cg_node(gr, "Mul", (const char *[]){"x0", "s"}, 2, "y");
    } else {
        cg_node(gr, "Sigmoid", (const char *[]){"x0"}, 1, "y");
    }
    cg_finish(gr, "y");
    ot_shape xs = ot_shape_make(2, (int64_t[]){1, n});
    cg_run(gr, &xs, (const float *const[]){x}, dy, yref, n, (float *[]){gref}, (int64_t[]){n});
    ot_graph_destroy(gr);
    for (int off = 0; off < 2; off++) {
        float *bx, *by, *bdy, *bg, *bs;
        float *dx = dbuf(&bx, n, off, x), *dyy = dbuf(&by, n, off, NULL), *ddy = dbuf(&bdy, n, off, dy);
        float *dg = dbuf(&bg, n, off, NULL), *ds = dbuf(&bs, n, off, NULL);
        ot_cuda_sigmoid_fwd(ds, dx, n, NULL);
        dget(s, ds, n);
        if (silu) ot_cuda_silu_fwd(dyy, dx, n, NULL);
        else ot_cuda_sigmoid_fwd(dyy, dx, n, NULL);
        dget(y, dyy, n);
        CK_SAME(y, yref, n, "%s forward n %lld off %d", silu ? "silu" : "sigmoid", (long long)n, off);
        if (silu) { /* stored in half (--amp): the float result converted by amp.cu's kernels (test_cudaemu_half) */
            silu_half_ctx hc = {dx, n};
            cg_check_half_out(silu_half_run, &hc, dyy, n, "silu half");
        }
        if (silu) ot_cuda_silu_bwd(dg, ddy, dx, n, 0, NULL);
        else ot_cuda_sigmoid_bwd(dg, ddy, ds, n, 0, NULL);
        dget(g, dg, n);
        CK_SAME(g, gref, n, "%s backward (write) n %lld off %d", silu ? "silu" : "sigmoid", (long long)n, off);
        ot_be_upload(ot_backend_cpu_guard(), dg, init, sizeof(float) * (size_t)n);
        if (silu) ot_cuda_silu_bwd(dg, ddy, dx, n, 1, NULL);
        else ot_cuda_sigmoid_bwd(dg, ddy, ds, n, 1, NULL);
        dget(g, dg, n);
        /* the CPU's accumulate forms: sigmoid gx += dy*(1-y)*y; silu (gx + dy*s) + dy*x*(1-s)*s */
        for (int64_t i = 0; i < n; i++) {
            if (silu) {
                float t = init[i] + dy[i] * s[i];
                want[i] = t + dy[i] * x[i] * (1.0f - s[i]) * s[i];
            } else {
                want[i] = init[i] + dy[i] * (1.0f - s[i]) * s[i];
            }
        }
        CK_SAME(g, want, n, "%s backward (add) n %lld off %d", silu ? "silu" : "sigmoid", (long long)n, off);
        dfree(bx); dfree(by); dfree(bdy); dfree(bg); dfree(bs);
    }
    free(x); free(dy); free(init); free(yref); free(gref); free(y); free(g); free(s); free(want);
}

static const int64_t SIZES[] = {1, 2, 3, 4, 5, 7, 8, 13, 31, 64, 257, 1001, 4099};

START_TEST(sigmoid_and_silu_match_cpu) {
    for (size_t k = 0; k < sizeof SIZES / sizeof *SIZES; k++)
        for (int silu = 0; silu < 2; silu++) check_unary(silu, SIZES[k], 99 + 7 * k + (uint64_t)silu);
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

/* Special values alone: every one, both signs, NaN and infinities. */
START_TEST(sigmoid_special_values) {
    float v[] = {0.0f, -0.0f, 1.0f, -1.0f, 86.9f, -86.9f, 87.0f, -87.0f, 87.4f, -87.4f, 88.7f, -88.7f, 1e30f, -1e30f,
                 __builtin_inff(), -__builtin_inff(), __builtin_nanf(""), -__builtin_nanf(""), 1e-40f, -1e-40f};
    int64_t n = sizeof v / sizeof *v;
    float yref[sizeof v / sizeof *v], y[sizeof v / sizeof *v], gref[sizeof v / sizeof *v], dy[sizeof v / sizeof *v];
    for (int64_t i = 0; i < n; i++) dy[i] = 1.0f;
    ot_graph *gr = cg_graph(1);
    cg_node(gr, "Sigmoid", (const char *[]){"x0"}, 1, "s");
    cg_node(gr, "Mul", (const char *[]){"x0", "s"}, 2, "y");
    cg_finish(gr, "y");
    ot_shape xs = ot_shape_make(1, (int64_t[]){n});
    cg_run(gr, &xs, (const float *const[]){v}, dy, yref, n, (float *[]){gref}, (int64_t[]){n});
    ot_graph_destroy(gr);
    float *bx, *by;
    float *dx = dbuf(&bx, n, 0, v), *dyy = dbuf(&by, n, 0, NULL);
    ot_cuda_silu_fwd(dyy, dx, n, NULL);
    dget(y, dyy, n);
    CK_SAME(y, yref, n, "silu special values");
    dfree(bx); dfree(by);
}
END_TEST

/* ---- Add / Mul ---- */
static int64_t numel_of(const int64_t *d, int r) {
    int64_t n = 1;
    for (int i = 0; i < r; i++) n *= d[i];
    return n;
}

static void check_binary(const char *op, const int64_t *ad, int ar, const int64_t *bd, int br, uint64_t seed) {
    int kind = strcmp(op, "Mul") == 0 ? OT_CUDA_BIN_MUL : OT_CUDA_BIN_ADD;
    ot_cuda_bcast p;
    ck_assert(ot_cuda_bcast_plan(&p, ad, ar, bd, br));
    int64_t na = numel_of(ad, ar), nb = numel_of(bd, br), ny = p.numel;
    float *a = malloc(sizeof(float) * (size_t)na), *b = malloc(sizeof(float) * (size_t)nb), *dy = malloc(sizeof(float) * (size_t)ny);
    float *yref = malloc(sizeof(float) * (size_t)ny), *y = malloc(sizeof(float) * (size_t)ny);
    float *garef = malloc(sizeof(float) * (size_t)na), *gbref = malloc(sizeof(float) * (size_t)nb);
    float *ga = malloc(sizeof(float) * (size_t)na), *gb = malloc(sizeof(float) * (size_t)nb);
    float *ia = malloc(sizeof(float) * (size_t)na), *ib = malloc(sizeof(float) * (size_t)nb);
    float *wa = malloc(sizeof(float) * (size_t)na), *wb = malloc(sizeof(float) * (size_t)nb);
    for (int64_t i = 0; i < na; i++) { a[i] = rfloat(&seed); ia[i] = rfloat(&seed); }
    for (int64_t i = 0; i < nb; i++) { b[i] = rfloat(&seed); ib[i] = rfloat(&seed); }
    for (int64_t i = 0; i < ny; i++) dy[i] = rfloat(&seed);
    ot_graph *gr = cg_graph(2);
    cg_node(gr, op, (const char *[]){"x0", "x1"}, 2, "y");
    cg_finish(gr, "y");
    ot_shape sh[2] = {ot_shape_make(ar, ad), ot_shape_make(br, bd)};
    cg_run(gr, sh, (const float *const[]){a, b}, dy, yref, ny, (float *[]){garef, gbref}, (int64_t[]){na, nb});
    ot_graph_destroy(gr);
    char what[160];
    snprintf(what, sizeof what, "%s a %lld elems rank %d, b %lld elems rank %d, plan rank %d", op, (long long)na, ar,
             (long long)nb, br, p.rank);
    for (int off = 0; off < 2; off++) {
        float *B0, *B1, *B2, *B3, *B4, *B5;
        float *da = dbuf(&B0, na, off, a), *db = dbuf(&B1, nb, off, b), *ddy = dbuf(&B2, ny, off, dy);
        float *dyy = dbuf(&B3, ny, off, NULL), *dga = dbuf(&B4, na, off, NULL), *dgb = dbuf(&B5, nb, off, NULL);
        ot_cuda_binary_fwd(kind, dyy, da, db, &p, NULL);
        dget(y, dyy, ny);
        CK_SAME(y, yref, ny, "%s forward off %d", what, off);
        const float *ra = kind == OT_CUDA_BIN_MUL ? da : NULL, *rb = kind == OT_CUDA_BIN_MUL ? db : NULL;
        ot_cuda_binary_bwd(kind, 0, dga, ddy, ra, rb, &p, 0, NULL);
        ot_cuda_binary_bwd(kind, 1, dgb, ddy, ra, rb, &p, 0, NULL);
        dget(ga, dga, na);
        dget(gb, dgb, nb);
        CK_SAME(ga, garef, na, "%s grad a (write) off %d", what, off);
        CK_SAME(gb, gbref, nb, "%s grad b (write) off %d", what, off);
        ot_be_upload(ot_backend_cpu_guard(), dga, ia, sizeof(float) * (size_t)na);
        ot_be_upload(ot_backend_cpu_guard(), dgb, ib, sizeof(float) * (size_t)nb);
        ot_cuda_binary_bwd(kind, 0, dga, ddy, ra, rb, &p, 1, NULL);
        ot_cuda_binary_bwd(kind, 1, dgb, ddy, ra, rb, &p, 1, NULL);
        dget(ga, dga, na);
        dget(gb, dgb, nb);
        for (int64_t i = 0; i < na; i++) wa[i] = ia[i] + garef[i];
        for (int64_t i = 0; i < nb; i++) wb[i] = ib[i] + gbref[i];
        CK_SAME(ga, wa, na, "%s grad a (add) off %d", what, off);
        CK_SAME(gb, wb, nb, "%s grad b (add) off %d", what, off);
        dfree(B0); dfree(B1); dfree(B2); dfree(B3); dfree(B4); dfree(B5);
    }
    free(a); free(b); free(dy); free(yref); free(y); free(garef); free(gbref); free(ga); free(gb); free(ia); free(ib);
    free(wa); free(wb);
}

typedef struct { int ar, br; int64_t a[5], b[5]; } bcase;
static const bcase BCASES[] = {
    {4, 4, {2, 3, 5, 7}, {2, 3, 5, 7}},          /* same shape, odd */
    {1, 1, {1}, {1}},
    {1, 1, {4099}, {4099}},
    {4, 0, {2, 3, 5, 7}, {0}},                   /* scalar */
    {4, 1, {1, 3, 4, 5}, {1}},                   /* (1,) */
    {0, 4, {0}, {2, 3, 5, 7}},                   /* scalar first */
    {4, 4, {2, 5, 3, 7}, {1, 5, 1, 1}},          /* per channel */
    {4, 4, {1, 7, 1, 1}, {3, 7, 4, 5}},          /* per channel first */
    {4, 3, {2, 5, 3, 3}, {5, 1, 1}},
    {5, 5, {2, 3, 5, 7, 2}, {1, 3, 1, 1, 2}},    /* YOLOv5 anchor grid */
    {4, 4, {3, 4, 5, 6}, {1, 1, 5, 6}},          /* broadcast along outer dims, runs inner */
    {4, 4, {2, 1, 5, 6}, {2, 3, 5, 6}},
    {4, 4, {70, 3, 2, 3}, {1, 3, 1, 1}},         /* few channels, long batch: 64 chunks */
    {3, 3, {65, 2, 3}, {65, 1, 1}},              /* 65 kept elements: one thread each */
    {2, 2, {5, 1}, {1, 7}},                      /* both broadcast */
};

START_TEST(add_mul_match_cpu) {
    for (size_t k = 0; k < sizeof BCASES / sizeof *BCASES; k++)
        for (int m = 0; m < 2; m++)
            check_binary(m ? "Mul" : "Add", BCASES[k].a, BCASES[k].ar, BCASES[k].b, BCASES[k].br, 5 + 13 * k + (uint64_t)m);
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(empty_is_a_no_op) {
    ot_cuda_sigmoid_fwd(NULL, NULL, 0, NULL);
    ot_cuda_silu_bwd(NULL, NULL, NULL, 0, 1, NULL);
    ot_cuda_bcast p;
    ck_assert(ot_cuda_bcast_plan(&p, (int64_t[]){2, 0, 3}, 3, (int64_t[]){1}, 1));
    ck_assert_int_eq(p.numel, 0);
    ot_cuda_binary_fwd(OT_CUDA_BIN_ADD, NULL, NULL, NULL, &p, NULL);
    ot_cuda_binary_bwd(OT_CUDA_BIN_MUL, 1, NULL, NULL, NULL, NULL, &p, 0, NULL);
    ck_assert(!ot_cuda_bcast_plan(&p, (int64_t[]){2, 3}, 2, (int64_t[]){4}, 1));
}
END_TEST

/* A view whose output is a graph output keeps its own gradient buffer (core/runtime/autograd.c), so the CUDA
 * table's view backward adds it into its input's gradient (cuda_tables.c add_into) instead of aliasing: Sigmoid
 * then Identity as the output, run by an autograd on the executor's CUDA device against the CPU autograd. */
START_TEST(view_output_gradient_added) {
    ot_cuda_kernels_install();
    char why[200];
    ot_backend *D = ot_backend_cuda_emu(0, why, sizeof why);
    ck_assert_msg(D != NULL, "%s", why);
    const int64_t n = 1001;
    uint64_t seed = 17;
    float *x = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n), *yref = malloc(sizeof(float) * n);
    float *gref = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
    fill_x(x, n, &seed, false);
    for (int64_t i = 0; i < n; i++) dy[i] = rfloat(&seed);
    ot_graph *gr = cg_graph(1);
    cg_node(gr, "Sigmoid", (const char *[]){"x0"}, 1, "s");
    cg_node(gr, "Identity", (const char *[]){"s"}, 1, "y");
    cg_finish(gr, "y");
    ot_shape xs = ot_shape_make(2, (int64_t[]){1, n});
    cg_run(gr, &xs, (const float *const[]){x}, dy, yref, n, (float *[]){gref}, (int64_t[]){n});
    ot_autograd *a;
    ot_error e;
    ck_assert_msg(ot_autograd_create_on(D, gr, &xs, NULL, true, &a, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_autograd_forward(a, (const float *const[]){x}, &e) == OT_OK, "%s", e.msg);
    ot_autograd_download(a, gr->outputs[0], y);
    ot_be_upload(D, ot_autograd_output_grad(a, 0), dy, sizeof(float) * (size_t)n);
    ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s", e.msg);
    ot_autograd_download_grad(a, gr->inputs[0], g);
    CK_SAME(y, yref, n, "Identity output");
    CK_SAME(g, gref, n, "the input's gradient through the Identity output's own gradient");
    ot_autograd_destroy(a);
    ot_graph_destroy(gr);
    free(x); free(dy); free(yref); free(gref); free(y); free(g);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cudaemu_elementwise");
    TCase *t = tcase_create("elementwise");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, sigmoid_and_silu_match_cpu);
    tcase_add_test(t, sigmoid_special_values);
    tcase_add_test(t, add_mul_match_cpu);
    tcase_add_test(t, empty_is_a_no_op);
    tcase_add_test(t, view_output_gradient_added);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_main(suite()); }
