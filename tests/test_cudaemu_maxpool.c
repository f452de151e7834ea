/* test_cudaemu_maxpool.c (ctest label cudaemu): kernels/cuda/maxpool.cu on the
 * CPU executor against the CPU MaxPool (kernels/pool.c, its separable path with
 * the argmax saved by the training forward) through a one-node graph run by
 * the CPU autograd: SPPF's kernel 5 / stride 1 / pad 2 and other unit-stride
 * geometries (3/1, 1/0, 2/0, 2/1, 3x5 with pads 1x2), odd planes down to 1x1,
 * inputs drawn from few values (many ties, +0 and -0), some NaN and -inf, on
 * cpu-guard memory with NaN-filled outputs. BIT FOR BIT: the forward's maximum
 * and argmax follow pool.c's comparisons, the backward gathers each element's
 * gradients in the CPU scatter's (ascending output) order. Other strides are
 * refused. */
#include "cudaemu_graph.h"

static void check_pool(int64_t N, int64_t C, int64_t H, int64_t W, int kh, int kw, int ph, int pw, uint64_t seed) {
    int64_t OH = H + 2 * ph - kh + 1, OW = W + 2 * pw - kw + 1, planes = N * C;
    int64_t nx = planes * H * W, ny = planes * OH * OW;
    float *x = malloc(sizeof(float) * (size_t)nx), *init = malloc(sizeof(float) * (size_t)nx);
    float *gref = malloc(sizeof(float) * (size_t)nx), *g = malloc(sizeof(float) * (size_t)nx);
    float *dy = malloc(sizeof(float) * (size_t)ny), *yref = malloc(sizeof(float) * (size_t)ny), *y = malloc(sizeof(float) * (size_t)ny);
    for (int64_t i = 0; i < nx; i++) {
        uint64_t r = rnext(&seed) % 32;
        x[i] = r == 0 ? -0.0f : r == 1 ? __builtin_nanf("") : r == 2 ? -__builtin_inff() : (float)((int)(r % 5) - 2);
        init[i] = rfloat(&seed);
    }
    for (int64_t i = 0; i < ny; i++) dy[i] = rfloat(&seed);
    ot_graph *gr = cg_graph(1);
    ot_node *n = cg_node(gr, "MaxPool", (const char *[]){"x0"}, 1, "y");
    ot_attr *a = cg_attr(n, "kernel_shape", OT_ATTR_INTS);
    a->n = 2; a->ints = malloc(sizeof(int64_t) * 2); a->ints[0] = kh; a->ints[1] = kw;
    a = cg_attr(n, "pads", OT_ATTR_INTS);
    a->n = 4; a->ints = malloc(sizeof(int64_t) * 4); a->ints[0] = a->ints[2] = ph; a->ints[1] = a->ints[3] = pw;
    a = cg_attr(n, "strides", OT_ATTR_INTS);
    a->n = 2; a->ints = malloc(sizeof(int64_t) * 2); a->ints[0] = a->ints[1] = 1;
    cg_finish(gr, "y");
    ot_shape xs = ot_shape_make(4, (int64_t[]){N, C, H, W});
    cg_run(gr, &xs, (const float *const[]){x}, dy, yref, ny, (float *[]){gref}, (int64_t[]){nx});
    ot_graph_destroy(gr);
    ot_backend *G = ot_backend_cpu_guard();
    float *bx, *by, *bdy, *bg;
    float *dx = dbuf(&bx, nx, 0, x), *dyy = dbuf(&by, ny, 0, NULL), *ddy = dbuf(&bdy, ny, 0, dy), *dg = dbuf(&bg, nx, 0, NULL);
    int32_t *darg = ot_be_alloc(G, sizeof(int32_t) * (size_t)(ny + 1));
    ck_assert_int_eq(ot_cuda_maxpool_fwd(dyy, darg, dx, planes, H, W, kh, kw, 1, 1, ph, pw, NULL), 0);
    dget(y, dyy, ny);
    char what[128];
    snprintf(what, sizeof what, "maxpool (%lld,%lld,%lld,%lld) k %dx%d pad %dx%d", (long long)N, (long long)C, (long long)H,
             (long long)W, kh, kw, ph, pw);
    CK_SAME(y, yref, ny, "%s forward", what);
    ck_assert_int_eq(ot_cuda_maxpool_bwd(dg, ddy, darg, planes, H, W, kh, kw, 1, 1, ph, pw, 0, NULL), 0);
    dget(g, dg, nx);
    CK_SAME(g, gref, nx, "%s backward (write)", what);
    ot_be_upload(G, dg, init, sizeof(float) * (size_t)nx);
    ck_assert_int_eq(ot_cuda_maxpool_bwd(dg, ddy, darg, planes, H, W, kh, kw, 1, 1, ph, pw, 1, NULL), 0);
    dget(g, dg, nx);
    /* expected: pool.c's saved-argmax scatter onto init (outputs ascending), with
     * the kernel's argmax (checked above through the write-mode gradient). */
    int32_t *arg = malloc(sizeof(int32_t) * (size_t)ny);
    ot_be_download(G, arg, darg, sizeof(int32_t) * (size_t)ny);
    for (int64_t p = 0; p < planes; p++)
        for (int64_t o = 0; o < OH * OW; o++)
            if (arg[p * OH * OW + o] >= 0) init[p * H * W + arg[p * OH * OW + o]] += dy[p * OH * OW + o];
    CK_SAME(g, init, nx, "%s backward (add)", what);
    free(arg);
    dfree(bx); dfree(by); dfree(bdy); dfree(bg);
    ot_be_free(G, darg);
    free(x); free(init); free(gref); free(g); free(dy); free(yref); free(y);
}

START_TEST(maxpool_matches_cpu) {
    uint64_t s = 555;
    static const int G[][4] = {{5, 5, 2, 2}, {3, 3, 1, 1}, {1, 1, 0, 0}, {2, 2, 0, 0}, {2, 2, 1, 1}, {3, 5, 1, 2}, {5, 3, 2, 0}};
    static const int64_t SH[][4] = {{1, 1, 1, 1}, {1, 1, 1, 2}, {2, 3, 5, 7}, {1, 2, 8, 8}, {1, 1, 13, 4}, {2, 1, 20, 20}};
    for (size_t k = 0; k < sizeof G / sizeof *G; k++)
        for (size_t j = 0; j < sizeof SH / sizeof *SH; j++) {
            if (SH[j][2] + 2 * G[k][2] < G[k][0] || SH[j][3] + 2 * G[k][3] < G[k][1]) continue;
            check_pool(SH[j][0], SH[j][1], SH[j][2], SH[j][3], G[k][0], G[k][1], G[k][2], G[k][3], s++);
        }
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(other_geometries_are_refused) {
    ck_assert_int_eq(ot_cuda_maxpool_fwd(NULL, NULL, NULL, 1, 8, 8, 2, 2, 2, 2, 0, 0, NULL), -1);
    ck_assert_int_eq(ot_cuda_maxpool_bwd(NULL, NULL, NULL, 1, 8, 8, 3, 3, 1, 1, 3, 1, 0, NULL), -1);
    ck_assert_int_eq(ot_cuda_maxpool_fwd(NULL, NULL, NULL, 0, 8, 8, 5, 5, 1, 1, 2, 2, NULL), 0);   /* empty */
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cudaemu_maxpool");
    TCase *t = tcase_create("maxpool");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, maxpool_matches_cpu);
    tcase_add_test(t, other_geometries_are_refused);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_main(suite()); }
