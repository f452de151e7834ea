/* test_cudaemu_concat.c (ctest label cudaemu): kernels/cuda/concat.cu on the
 * CPU executor against the CPU Concat (kernels/concat.c) through a one-node
 * channel Concat (axis 1 of NCHW) run by the CPU autograd: 1 to 5 inputs, odd
 * channel counts and planes, N = 1 (the CPU's one-block path) and N > 1, an
 * input listed twice, cpu-guard memory, NaN-filled outputs, pointers aligned
 * (float4 path where sizes allow) and one float off (scalar path). BIT FOR BIT:
 * the kernels copy, and the accumulating backward is one float add per element
 * in the CPU's order (input order for a repeated input). The forward into a
 * half-precision output (--amp) is the float forward converted, with every
 * input float or input 0 already half. */
#include "cudaemu_graph.h"

typedef struct half_run_ctx { float **x; const int64_t *c; int n; int64_t outer, inner; int mixed; } half_run_ctx;
/* mixed: input 0 given in half precision (converted first), the others float */
static void concat_half_run(void *ctx, uint16_t *y, int bf16) {
    const half_run_ctx *h = ctx;
    const void *x[8];
    int xt[8] = {0};
    for (int i = 0; i < h->n; i++) x[i] = h->x[i];
    uint16_t *x0 = NULL;
    if (h->mixed) {
        const int64_t n0 = h->outer * h->c[0] * h->inner;
        x0 = ot_be_alloc(ot_backend_cpu_guard(), 2 * (size_t)(n0 ? n0 : 1));
        if (bf16) ot_cuda_f32_to_bf16(x0, h->x[0], n0, NULL);
        else ot_cuda_f32_to_f16(x0, h->x[0], n0, NULL);
        for (int i = 0; i < h->n; i++)
            if (h->x[i] == h->x[0]) { x[i] = x0; xt[i] = 1; } /* a repeated input 0 too */
    }
    ot_cuda_concat_fwd_half(y, x, xt, h->c, h->n, h->outer, h->inner, bf16, NULL);
    if (x0) ot_be_free(ot_backend_cpu_guard(), x0);
}

/* n inputs with channels c[i] (dup: input n-1 is input 0 again). */
static void check_concat(int n, const int64_t *c, int64_t N, int64_t H, int64_t W, bool dup, uint64_t seed) {
    int nu = dup ? n - 1 : n;   /* distinct graph inputs */
    int64_t inner = H * W, ctot = 0, nx[8];
    for (int i = 0; i < n; i++) ctot += c[i];
    int64_t ny = N * ctot * inner;
    float *x[8], *gref[8], *g = malloc(sizeof(float) * (size_t)ny), *init[8];
    ot_shape sh[8];
    for (int i = 0; i < nu; i++) {
        nx[i] = N * c[i] * inner;
        x[i] = malloc(sizeof(float) * (size_t)nx[i]);
        gref[i] = malloc(sizeof(float) * (size_t)nx[i]);
        init[i] = malloc(sizeof(float) * (size_t)nx[i]);
        for (int64_t k = 0; k < nx[i]; k++) { x[i][k] = rfloat(&seed); init[i][k] = rfloat(&seed); }
        sh[i] = ot_shape_make(4, (int64_t[]){N, c[i], H, W});
    }
    float *dy = malloc(sizeof(float) * (size_t)ny), *yref = malloc(sizeof(float) * (size_t)ny), *y = malloc(sizeof(float) * (size_t)ny);
    for (int64_t k = 0; k < ny; k++) dy[k] = rfloat(&seed);
    ot_graph *gr = cg_graph(nu);
    const char *names[8] = {"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"};
    if (dup) names[n - 1] = "x0";
    cg_attr(cg_node(gr, "Concat", names, n, "y"), "axis", OT_ATTR_INT)->i = 1;
    cg_finish(gr, "y");
    cg_run(gr, sh, (const float *const *)x, dy, yref, ny, gref, nx);
    ot_graph_destroy(gr);
    for (int off = 0; off < 2; off++) {
        float *bx[8], *bg[8], *by, *bdy, *dx[8], *dg[8];
        for (int i = 0; i < nu; i++) { dx[i] = dbuf(&bx[i], nx[i], off, x[i]); dg[i] = dbuf(&bg[i], nx[i], off, NULL); }
        if (dup) { dx[n - 1] = dx[0]; dg[n - 1] = dg[0]; }
        float *dyy = dbuf(&by, ny, off, NULL), *ddy = dbuf(&bdy, ny, off, dy);
        ot_cuda_concat_fwd(dyy, (const float *const *)dx, c, n, N, inner, NULL);
        dget(y, dyy, ny);
        CK_SAME(y, yref, ny, "concat forward n %d N %lld HW %lldx%lld off %d", n, (long long)N, (long long)H, (long long)W, off);
        for (int mixed = 0; mixed <= 1; mixed++) { /* into a half-precision y (--amp); input 0 float, then half */
            half_run_ctx hc = {dx, c, n, N, inner, mixed};
            cg_check_half_out(concat_half_run, &hc, dyy, ny, mixed ? "concat half (input 0 half)" : "concat half");
        }
        int acc[8] = {0};
        if (dup) acc[n - 1] = 1;   /* the second writer of input 0 adds */
        ot_cuda_concat_bwd(dg, ddy, c, n, N, inner, acc, NULL);
        for (int i = 0; i < nu; i++) {
            dget(g, dg[i], nx[i]);
            CK_SAME(g, gref[i], nx[i], "concat backward (write) input %d n %d off %d", i, n, off);
        }
        if (!dup) {
            for (int i = 0; i < n; i++) { ot_be_upload(ot_backend_cpu_guard(), dg[i], init[i], sizeof(float) * (size_t)nx[i]); acc[i] = 1; }
            ot_cuda_concat_bwd(dg, ddy, c, n, N, inner, acc, NULL);
            for (int i = 0; i < n; i++) {
                dget(g, dg[i], nx[i]);
                for (int64_t k = 0; k < nx[i]; k++) init[i][k] += gref[i][k];
                CK_SAME(g, init[i], nx[i], "concat backward (add) input %d n %d off %d", i, n, off);
                for (int64_t k = 0; k < nx[i]; k++) init[i][k] -= gref[i][k];
            }
        }
        for (int i = 0; i < nu; i++) { dfree(bx[i]); dfree(bg[i]); }
        dfree(by); dfree(bdy);
    }
    for (int i = 0; i < nu; i++) { free(x[i]); free(gref[i]); free(init[i]); }
    free(g); free(dy); free(yref); free(y);
}

START_TEST(concat_matches_cpu) {
    uint64_t s = 31;
    check_concat(1, (int64_t[]){3}, 2, 5, 7, false, s++);
    check_concat(2, (int64_t[]){4, 4}, 2, 4, 4, false, s++);     /* float4 path */
    check_concat(2, (int64_t[]){4, 4}, 1, 4, 4, false, s++);     /* outer 1 */
    check_concat(2, (int64_t[]){3, 5}, 3, 7, 9, false, s++);
    check_concat(3, (int64_t[]){1, 2, 3}, 1, 1, 1, false, s++);
    check_concat(4, (int64_t[]){8, 8, 8, 8}, 2, 5, 5, false, s++); /* SPPF's four */
    check_concat(5, (int64_t[]){2, 1, 7, 3, 4}, 2, 3, 1, false, s++);
    check_concat(3, (int64_t[]){4, 2, 4}, 2, 3, 4, true, s++);    /* Concat(a, b, a) */
    check_concat(3, (int64_t[]){3, 2, 3}, 1, 5, 3, true, s++);
    for (int k = 0; k < 8; k++) {
        int n = 1 + (int)(rnext(&s) % 5);
        int64_t c[8];
        for (int i = 0; i < n; i++) c[i] = 1 + (int64_t)(rnext(&s) % 9);
        check_concat(n, c, 1 + (int64_t)(rnext(&s) % 3), 1 + (int64_t)(rnext(&s) % 11), 1 + (int64_t)(rnext(&s) % 11), false, rnext(&s));
    }
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(empty_is_a_no_op) {
    const float *x[2] = {NULL, NULL};
    float *dx[2] = {NULL, NULL};
    ot_cuda_concat_fwd(NULL, x, (int64_t[]){0, 0}, 2, 3, 4, NULL);
    ot_cuda_concat_fwd(NULL, x, (int64_t[]){2, 3}, 2, 0, 4, NULL);
    ot_cuda_concat_bwd(dx, NULL, (int64_t[]){2, 3}, 2, 3, 4, NULL, NULL);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cudaemu_concat");
    TCase *t = tcase_create("concat");
    tcase_add_test(t, concat_matches_cpu);
    tcase_add_test(t, empty_is_a_no_op);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_main(suite()); }
