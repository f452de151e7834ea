/* test_cudaemu_transpose.c (ctest label cudaemu): kernels/cuda/transpose.cu on
 * the CPU executor against the CPU Transpose (kernels/shape_ops.c) through a
 * one-node Transpose graph run by the CPU autograd: YOLOv5's Detect head
 * (2,3,85,20,20) -> perm (0,1,3,4,2) and its inverse, ranks 1..6 with odd
 * sizes (1s that merge away, primes, tiles with ragged edges, dims below the
 * tiling threshold), identity perms, all-1 shapes (merged rank 0), random
 * perms; cpu-guard memory, NaN-filled outputs, pointers aligned and one float
 * off. Each case calls the kernels twice: with the raw dims/perm and with the
 * merged form (size-1 dims dropped, runs merged, as tr_params holds it).
 *
 * BIT FOR BIT: the forward copies; the backward writes 0.0f + v (the CPU adds
 * into a zeroed gradient, so -0 becomes +0) or adds v once. Inputs include
 * -0, infinities and a NaN with a payload. */
#include "cudaemu_graph.h"

/* Input index of output element o (dims d, perm p: output axis i = input axis p[i]). */
static int64_t in_index(int r, const int64_t *d, const int *p, int64_t o) {
    int64_t is[8], off = 0;
    if (r > 0) is[r - 1] = 1;
    for (int a = r - 2; a >= 0; a--) is[a] = is[a + 1] * d[a + 1];
    for (int i = r - 1; i >= 0; i--) {
        int64_t od = d[p[i]];
        off += (o % od) * is[p[i]];
        o /= od;
    }
    return off;
}

/* The merged form, worked out independently of the kernel: renumber the input
 * axes without the size-1 ones, then join output neighbours whose input axes
 * are consecutive; groups ordered by their first input axis. */
static int merged(int r, const int64_t *d, const int *p, int64_t *md, int *mp) {
    int ren[8], k = 0, q[8], nq = 0;
    int64_t qd[8];
    for (int a = 0; a < r; a++) ren[a] = d[a] == 1 ? -1 : k++;
    for (int i = 0; i < r; i++)
        if (ren[p[i]] >= 0) { q[nq] = ren[p[i]]; qd[nq] = d[p[i]]; nq++; }
    int gf[8], ng = 0;
    int64_t gs[8];
    for (int i = 0; i < nq; i++) {
        if (i > 0 && q[i] == q[i - 1] + 1) gs[ng - 1] *= qd[i];
        else { gf[ng] = q[i]; gs[ng] = qd[i]; ng++; }
    }
    for (int g = 0; g < ng; g++) {
        int rin = 0;
        for (int h = 0; h < ng; h++) rin += gf[h] < gf[g];
        mp[g] = rin;
        md[rin] = gs[g];
    }
    return ng;
}

static void specials(float *v, int64_t n, uint64_t *s) {
    static const uint32_t bits[] = {0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc01234u, 0x00000001u};
    for (int k = 0; k < 5 && n > 0; k++) {
        int64_t i = (int64_t)(rnext(s) % (uint64_t)n);
        memcpy(&v[i], &bits[k], 4);
    }
}

static void check_tr(int r, const int64_t *d, const int *p, uint64_t seed) {
    int64_t n = 1;
    for (int a = 0; a < r; a++) n *= d[a];
    float *x = malloc(sizeof(float) * (size_t)n), *dy = malloc(sizeof(float) * (size_t)n);
    float *yref = malloc(sizeof(float) * (size_t)n), *gref = malloc(sizeof(float) * (size_t)n);
    float *init = malloc(sizeof(float) * (size_t)n), *aref = malloc(sizeof(float) * (size_t)n);
    float *got = malloc(sizeof(float) * (size_t)n);
    for (int64_t k = 0; k < n; k++) { x[k] = rfloat(&seed); dy[k] = rfloat(&seed); init[k] = rfloat(&seed); }
    specials(x, n, &seed);
    specials(dy, n, &seed);

    /* The CPU op on a one-node graph. */
    ot_graph *gr = cg_graph(1);
    const char *in[1] = {"x0"};
    ot_attr *pa = cg_attr(cg_node(gr, "Transpose", in, 1, "y"), "perm", OT_ATTR_INTS);
    pa->n = r;
    pa->ints = malloc(sizeof(int64_t) * (size_t)(r ? r : 1));
    for (int i = 0; i < r; i++) pa->ints[i] = p[i];
    cg_finish(gr, "y");
    ot_shape sh = ot_shape_make(r, d);
    const float *xs[1] = {x};
    float *gx[1] = {gref};
    cg_run(gr, &sh, xs, dy, yref, n, gx, &n);
    ot_graph_destroy(gr);

    /* The CPU agrees with the definition; the accumulating reference is init + dy at each input's place. */
    for (int64_t o = 0; o < n; o++) {
        int64_t i = in_index(r, d, p, o);
        ck_assert_msg(memcmp(&yref[o], &x[i], 4) == 0, "CPU transpose differs from the definition at %lld", (long long)o);
        aref[i] = init[i] + dy[o];
    }

    int64_t md[8];
    int mp[8], mr = merged(r, d, p, md, mp);
    char desc[160];
    int len = snprintf(desc, sizeof desc, "dims (");
    for (int a = 0; a < r; a++) len += snprintf(desc + len, sizeof desc - (size_t)len, "%s%lld", a ? "," : "", (long long)d[a]);
    len += snprintf(desc + len, sizeof desc - (size_t)len, ") perm (");
    for (int a = 0; a < r; a++) len += snprintf(desc + len, sizeof desc - (size_t)len, "%s%d", a ? "," : "", p[a]);
    snprintf(desc + len, sizeof desc - (size_t)len, ") merged rank %d", mr);

    for (int form = 0; form < 2; form++) {
        int rr = form ? mr : r;
        const int64_t *dd = form ? md : d;
        const int *pp = form ? mp : p;
        for (int off = 0; off < 2; off++) {
            float *bx, *by, *bdy, *bdx;
            float *dX = dbuf(&bx, n, off, x), *dY = dbuf(&by, n, off, NULL), *dDY = dbuf(&bdy, n, off, dy);
            float *dDX = dbuf(&bdx, n, off, NULL);
            ot_cuda_transpose_fwd(dY, dX, rr, dd, pp, NULL);
            dget(got, dY, n);
            CK_SAME(got, yref, n, "forward %s form %d off %d", desc, form, off);
            ot_cuda_transpose_bwd(dDX, dDY, rr, dd, pp, 0, NULL);
            dget(got, dDX, n);
            CK_SAME(got, gref, n, "backward (write) %s form %d off %d", desc, form, off);
            ot_be_upload(ot_backend_cpu_guard(), dDX, init, sizeof(float) * (size_t)n);
            ot_cuda_transpose_bwd(dDX, dDY, rr, dd, pp, 1, NULL);
            dget(got, dDX, n);
            CK_SAME(got, aref, n, "backward (add) %s form %d off %d", desc, form, off);
            dfree(bx); dfree(by); dfree(bdy); dfree(bdx);
        }
    }
    free(x); free(dy); free(yref); free(gref); free(init); free(aref); free(got);
}

static void random_perm(int r, int *p, uint64_t *s) {
    for (int i = 0; i < r; i++) p[i] = i;
    for (int i = r - 1; i > 0; i--) {
        int j = (int)(rnext(s) % (uint64_t)(i + 1)), t = p[i];
        p[i] = p[j]; p[j] = t;
    }
}

START_TEST(detect_head) {
    /* YOLOv5 Detect: (bs, na, no, ny, nx) -> (bs, na, ny, nx, no); merged
     * (6, 85, 400) perm (0, 2, 1): the tiled kernel, 400 and 85 not multiples of 32. */
    check_tr(5, (int64_t[]){2, 3, 85, 20, 20}, (int[]){0, 1, 3, 4, 2}, 11);
    check_tr(5, (int64_t[]){2, 3, 20, 20, 85}, (int[]){0, 1, 4, 2, 3}, 12);   /* the inverse */
    check_tr(5, (int64_t[]){1, 3, 85, 10, 10}, (int[]){0, 1, 3, 4, 2}, 13);   /* bs 1 */
    check_tr(5, (int64_t[]){2, 3, 6, 13, 7}, (int[]){0, 1, 3, 4, 2}, 14);     /* nc 1: no = 6 < 8, generic */
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(odd_shapes) {
    uint64_t s = 101;
    /* every perm of a prime 7x13x5 (generic: 7, 5 below the tiling threshold) */
    static const int p3[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int k = 0; k < 6; k++) check_tr(3, (int64_t[]){7, 13, 5}, p3[k], s++);
    for (int k = 0; k < 6; k++) check_tr(3, (int64_t[]){11, 37, 9}, p3[k], s++);   /* tiled where 9 or 11 meets 37 */
    check_tr(1, (int64_t[]){1}, (int[]){0}, s++);
    check_tr(1, (int64_t[]){37}, (int[]){0}, s++);
    check_tr(2, (int64_t[]){1, 1}, (int[]){1, 0}, s++);
    check_tr(3, (int64_t[]){1, 1, 1}, (int[]){2, 0, 1}, s++);                  /* merged rank 0 */
    check_tr(2, (int64_t[]){1, 9}, (int[]){1, 0}, s++);                        /* merges to a copy */
    check_tr(2, (int64_t[]){37, 45}, (int[]){1, 0}, s++);                      /* tiled, ragged both ways */
    check_tr(2, (int64_t[]){32, 64}, (int[]){1, 0}, s++);                      /* tiled, exact tiles */
    check_tr(2, (int64_t[]){8, 8}, (int[]){1, 0}, s++);                        /* at the threshold */
    check_tr(2, (int64_t[]){7, 100}, (int[]){1, 0}, s++);                      /* below it */
    check_tr(3, (int64_t[]){5, 1, 3}, (int[]){2, 1, 0}, s++);                  /* a 1 that merges away */
    check_tr(4, (int64_t[]){4, 1, 1, 6}, (int[]){3, 2, 1, 0}, s++);
    check_tr(4, (int64_t[]){3, 33, 1, 40}, (int[]){0, 3, 2, 1}, s++);          /* tiled with a batch axis */
    check_tr(4, (int64_t[]){2, 9, 10, 11}, (int[]){3, 0, 2, 1}, s++);          /* tiled, batch axes on both sides */
    check_tr(4, (int64_t[]){2, 9, 10, 11}, (int[]){1, 3, 2, 0}, s++);
    check_tr(4, (int64_t[]){3, 4, 5, 6}, (int[]){0, 2, 1, 3}, s++);            /* innermost stays: generic, contiguous rows */
    check_tr(4, (int64_t[]){3, 4, 5, 6}, (int[]){0, 1, 2, 3}, s++);            /* identity */
    check_tr(4, (int64_t[]){3, 4, 5, 6}, (int[]){2, 3, 0, 1}, s++);            /* merges to a 2D transpose */
    check_tr(6, (int64_t[]){2, 3, 1, 4, 5, 9}, (int[]){5, 3, 0, 2, 4, 1}, s++);
    check_tr(6, (int64_t[]){2, 17, 1, 3, 1, 19}, (int[]){0, 5, 2, 3, 4, 1}, s++);
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(random_perms) {
    uint64_t s = 977;
    for (int k = 0; k < 40; k++) {
        int r = 2 + k % 5, p[8];
        int64_t d[8], n = 1;
        for (int a = 0; a < r; a++) {
            uint64_t u = rnext(&s) % 8;
            d[a] = u == 0 ? 1 : u < 5 ? 2 + (int64_t)(rnext(&s) % 6) : 8 + (int64_t)(rnext(&s) % 34);
            n *= d[a];
        }
        while (n > 60000) {   /* keep the executor quick */
            int a = (int)(rnext(&s) % (uint64_t)r);
            if (d[a] > 1) { n /= d[a]; d[a] = (d[a] + 1) / 2; n *= d[a]; }
        }
        random_perm(r, p, &s);
        check_tr(r, d, p, rnext(&s));
    }
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(empty_is_a_no_op) {
    ot_cuda_transpose_fwd(NULL, NULL, 3, (int64_t[]){4, 0, 5}, (int[]){2, 0, 1}, NULL);
    ot_cuda_transpose_bwd(NULL, NULL, 3, (int64_t[]){4, 0, 5}, (int[]){2, 0, 1}, 0, NULL);
    ot_cuda_transpose_bwd(NULL, NULL, 2, (int64_t[]){0, 7}, (int[]){1, 0}, 1, NULL);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cudaemu_transpose");
    TCase *t = tcase_create("transpose");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, detect_head);
    tcase_add_test(t, odd_shapes);
    tcase_add_test(t, random_perms);
    tcase_add_test(t, empty_is_a_no_op);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_main(suite()); }
