/* test_cudaemu_loss.c (ctest label cudaemu): kernels/cuda/yolo_loss.cu on the
 * CPU executor against kernels/yolo_loss.c, both over cpu-guard memory, on
 * random head outputs and random per-head target tables in which many targets
 * share a cell (up to 6 on one cell, duplicates included), for 3 heads, with
 * and without gradients, plain BCE and focal loss with label smoothing and
 * pos_weight, nc > 1 and nc == 1:
 *
 *   items (lbox, lobj, lcls, loss):  within 1e-6 relative (the device sums in
 *                                    a tree, the CPU in target / cell order);
 *   gradients dp and tobj:           within 1e-5 relative, and under the
 *                                    executor bit for bit (the CPU's adds in
 *                                    the CPU's order, the same libm);
 *   `last`:                          -1 everywhere afterwards, as on entry. */
#include "core/backend.h"
#include "kernels/yolo_loss.h"
#include "kernels/cuda/cuda_kernels.h"
#include "cudaemu_graph.h" /* rnext, rsym1/runi, dev_from, host_from */
#include "testutil.h"
#include <math.h>
#include <string.h>

static ot_backend *G;



enum { NL = 3, BS = 2, NA = 3 };
static const int NY[NL] = {8, 4, 3}, NX[NL] = {8, 5, 2};

typedef struct side {
    float *dp[NL], *tobj[NL];
    int32_t *last, *link[NL];
    double *sums, *items, *part;
} side;

static void side_alloc(side *S, const int64_t *numel, const int *n, int64_t ncell_max) {
    for (int l = 0; l < NL; l++) {
        S->dp[l] = dev_from(NULL, sizeof(float) * (size_t)numel[l]);
        S->tobj[l] = dev_from(NULL, sizeof(float) * (size_t)n[l]);
        S->link[l] = dev_from(NULL, sizeof(int32_t) * (size_t)n[l]);
    }
    S->last = ot_be_alloc(G, sizeof(int32_t) * (size_t)ncell_max);
    ot_be_memset(G, S->last, 0xff, sizeof(int32_t) * (size_t)ncell_max);
    S->sums = dev_from(NULL, sizeof(double) * 3 * NL);
    S->items = dev_from(NULL, sizeof(double) * 4);
    S->part = dev_from(NULL, sizeof(double) * OT_YOLO_LOSS_PARTS);
}
static void side_free(side *S) {
    for (int l = 0; l < NL; l++) {
        ot_be_free(G, S->dp[l]);
        ot_be_free(G, S->tobj[l]);
        ot_be_free(G, S->link[l]);
    }
    ot_be_free(G, S->last);
    ot_be_free(G, S->sums);
    ot_be_free(G, S->items);
    ot_be_free(G, S->part);
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-12); }

static void cmp_floats(const char *what, int l, const float *dev, const float *cpu, int64_t n) {
    float *a = host_from(dev, sizeof(float) * (size_t)n), *b = host_from(cpu, sizeof(float) * (size_t)n);
    double amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fmax(amax, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(fabs((double)a[i] - b[i]) <= 1e-5 * fmax(fabs((double)b[i]), amax * 1e-3), "%s head %d [%lld]: device %.9g cpu %.9g",
                      what, l, (long long)i, (double)a[i], (double)b[i]);
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof(float)) == 0, "%s head %d [%lld]: not the CPU's bits (%.9g vs %.9g)", what, l,
                      (long long)i, (double)a[i], (double)b[i]);
    }
    free(a);
    free(b);
}

static void run_case(int nc, bool grad, float fl_gamma, float smooth, float pw, uint64_t seed) {
    const int no = nc + 5;
    int64_t numel[NL], ncell_max = 0;
    int n[NL];
    float *p[NL];
    int32_t *cols[NL][5];
    float *tbox[NL], *anc[NL];
    for (int l = 0; l < NL; l++) {
        numel[l] = (int64_t)BS * NA * no * NY[l] * NX[l];
        int64_t ncell = (int64_t)BS * NA * NY[l] * NX[l];
        if (ncell > ncell_max) ncell_max = ncell;
        float *h = malloc(sizeof(float) * (size_t)numel[l]);
        for (int64_t i = 0; i < numel[l]; i++) h[i] = (float)((runi(&seed) * 2 - 1) * 3);
        p[l] = dev_from(h, sizeof(float) * (size_t)numel[l]);
        free(h);
        /* targets: a few "hot" cells receive several targets each, the rest spread out */
        n[l] = l == 2 ? 0 : 40 + 25 * l;
        if (l == 2 && seed % 2) n[l] = 7;
        int32_t *hb = malloc(sizeof(int32_t) * 5 * (size_t)(n[l] + 1));
        float *ht = malloc(sizeof(float) * 4 * (size_t)(n[l] + 1)), *ha = malloc(sizeof(float) * 2 * (size_t)(n[l] + 1));
        for (int q = 0; q < n[l]; q++) {
            int32_t *r = hb + 5 * q;
            if (q > 0 && runi(&seed) < 0.45) { /* share a cell with an earlier target (sometimes the whole row) */
                int src = (int)(runi(&seed) * q);
                memcpy(r, hb + 5 * src, sizeof(int32_t) * 5);
                if (runi(&seed) < 0.5) r[4] = (int32_t)(runi(&seed) * nc);
            } else {
                r[0] = (int32_t)(runi(&seed) * BS);
                r[1] = (int32_t)(runi(&seed) * NA);
                r[2] = (int32_t)(runi(&seed) * NY[l]);
                r[3] = (int32_t)(runi(&seed) * NX[l]);
                r[4] = (int32_t)(runi(&seed) * nc);
            }
            ht[4 * q] = (float)(runi(&seed) * 2 - 0.5);
            ht[4 * q + 1] = (float)(runi(&seed) * 2 - 0.5);
            ht[4 * q + 2] = (float)(0.2 + runi(&seed) * 6);
            ht[4 * q + 3] = (float)(0.2 + runi(&seed) * 6);
            ha[2 * q] = (float)(0.5 + runi(&seed) * 4);
            ha[2 * q + 1] = (float)(0.5 + runi(&seed) * 4);
        }
        for (int k = 0; k < 5; k++) {
            int32_t *c = malloc(sizeof(int32_t) * (size_t)(n[l] + 1));
            for (int q = 0; q < n[l]; q++) c[q] = hb[5 * q + k];
            cols[l][k] = dev_from(c, sizeof(int32_t) * (size_t)n[l]);
            free(c);
        }
        tbox[l] = dev_from(ht, sizeof(float) * 4 * (size_t)n[l]);
        anc[l] = dev_from(ha, sizeof(float) * 2 * (size_t)n[l]);
        free(hb);
        free(ht);
        free(ha);
    }
    side C, D;
    side_alloc(&C, numel, n, ncell_max);
    side_alloc(&D, numel, n, ncell_max);
    ot_yolo_loss_args A[2];
    side *S[2] = {&C, &D};
    for (int k = 0; k < 2; k++) {
        memset(&A[k], 0, sizeof A[k]);
        A[k] = (ot_yolo_loss_args){.nl = NL, .bs = BS, .na = NA, .nc = nc, .box = 0.05f, .obj = 1.0f, .cls = 0.5f, .cls_pw = pw,
                                   .obj_pw = pw, .fl_gamma = fl_gamma, .label_smoothing = smooth, .items = S[k]->items, .part = S[k]->part};
        const float bal[NL] = {4.0f, 1.0f, 0.4f};
        for (int l = 0; l < NL; l++)
            A[k].layer[l] = (ot_yolo_loss_layer_args){.p = p[l], .dp = grad ? S[k]->dp[l] : NULL, .ny = NY[l], .nx = NX[l], .n = n[l],
                                                      .b = cols[l][0], .a = cols[l][1], .gj = cols[l][2], .gi = cols[l][3], .c = cols[l][4],
                                                      .tbox = tbox[l], .anc = anc[l], .tobj = S[k]->tobj[l], .last = S[k]->last,
                                                      .sums = S[k]->sums + 3 * l, .link = S[k]->link[l], .balance = bal[l]};
    }
    const ot_yolo_loss_kernels *K = ot_yolo_loss_kernels_for(OT_DEV_CPU_GUARD);
    ot_be_enter(G);
    for (int l = 0; l < NL; l++) {
        K->targets(ot_backend_cpu_guard(), &A[0], l);
        K->objectness(ot_backend_cpu_guard(), &A[0], l);
    }
    K->items(ot_backend_cpu_guard(), &A[0]);
    for (int l = 0; l < NL; l++) {
        ot_cuda_yolo_loss_targets(&A[1], l, NULL);
        ot_cuda_yolo_loss_objectness(&A[1], l, NULL);
    }
    ot_cuda_yolo_loss_items(&A[1], NULL);
    ot_be_leave(G);
    double ic[4], id[4];
    ot_be_download(G, ic, C.items, sizeof ic);
    ot_be_download(G, id, D.items, sizeof id);
    const char *names[4] = {"lbox", "lobj", "lcls", "loss"};
    for (int k = 0; k < 4; k++) {
        if (ic[k] == 0) ck_assert_msg(id[k] == 0, "%s: device %.17g, cpu 0", names[k], id[k]);
        else ck_assert_msg(rel(id[k], ic[k]) <= 1e-6, "%s: device %.17g, cpu %.17g", names[k], id[k], ic[k]);
    }
    ck_assert(ic[0] > 0 && ic[1] > 0 && (nc == 1 || ic[2] > 0));
    for (int l = 0; l < NL; l++) {
        cmp_floats("tobj", l, D.tobj[l], C.tobj[l], n[l]);
        if (grad) cmp_floats("dp", l, D.dp[l], C.dp[l], numel[l]);
    }
    int32_t *last = host_from(D.last, sizeof(int32_t) * (size_t)ncell_max);
    for (int64_t i = 0; i < ncell_max; i++) ck_assert_msg(last[i] == -1, "last[%lld] = %d after the loss", (long long)i, last[i]);
    free(last);
    /* run the device twice: the same bits (no float atomics) */
    double id2[4];
    ot_be_enter(G);
    for (int l = 0; l < NL; l++) {
        if (grad) ot_be_memset(G, D.dp[l], 0, sizeof(float) * (size_t)numel[l]);
        ot_cuda_yolo_loss_targets(&A[1], l, NULL);
        ot_cuda_yolo_loss_objectness(&A[1], l, NULL);
    }
    ot_cuda_yolo_loss_items(&A[1], NULL);
    ot_be_leave(G);
    ot_be_download(G, id2, D.items, sizeof id2);
    ck_assert_msg(memcmp(id, id2, sizeof id) == 0, "the device loss is not repeatable");
    /* as a CUDA graph replays it: the counts read from device memory (n itself wrong), grids for more rows than
     * there are: the same bits */
    float *dp2[NL];
    for (int l = 0; l < NL; l++) dp2[l] = grad ? host_from(D.dp[l], sizeof(float) * (size_t)numel[l]) : NULL;
    int32_t *cnt = dev_from(n, sizeof(int32_t) * NL);
    ot_yolo_loss_args A3 = A[1];
    for (int l = 0; l < NL; l++) {
        A3.layer[l].count = cnt + l;
        A3.layer[l].cap = n[l] + 3 * 256 + 17;
        A3.layer[l].n = -1;
    }
    ot_be_enter(G);
    for (int l = 0; l < NL; l++) {
        if (grad) ot_be_memset(G, D.dp[l], 0, sizeof(float) * (size_t)numel[l]);
        ot_cuda_yolo_loss_targets(&A3, l, NULL);
        ot_cuda_yolo_loss_objectness(&A3, l, NULL);
    }
    ot_cuda_yolo_loss_items(&A3, NULL);
    ot_be_leave(G);
    double id3[4];
    ot_be_download(G, id3, D.items, sizeof id3);
    ck_assert_msg(memcmp(id, id3, sizeof id) == 0, "device counts and wider grids change the loss (lbox %.17g vs %.17g)", id3[0], id[0]);
    for (int l = 0; l < NL; l++) {
        if (!grad) continue;
        float *h = host_from(D.dp[l], sizeof(float) * (size_t)numel[l]);
        ck_assert_msg(memcmp(h, dp2[l], sizeof(float) * (size_t)numel[l]) == 0, "head %d: device counts change the gradient", l);
        free(h);
        free(dp2[l]);
    }
    ot_be_free(G, cnt);
    side_free(&C);
    side_free(&D);
    for (int l = 0; l < NL; l++) {
        ot_be_free(G, p[l]);
        for (int k = 0; k < 5; k++) ot_be_free(G, cols[l][k]);
        ot_be_free(G, tbox[l]);
        ot_be_free(G, anc[l]);
    }
}

START_TEST(loss_grad_bce) { run_case(5, true, 0.0f, 0.0f, 1.0f, 1); }
END_TEST
START_TEST(loss_grad_focal_smooth_pw) { run_case(7, true, 1.5f, 0.1f, 1.3f, 2); }
END_TEST
START_TEST(loss_no_grad) { run_case(4, false, 0.0f, 0.0f, 1.0f, 3); }
END_TEST
START_TEST(loss_one_class) { run_case(1, true, 0.0f, 0.0f, 1.0f, 4); }
END_TEST

int main(void) {
    G = ot_backend_cpu_guard();
    Suite *s = suite_create("cudaemu_loss");
    TCase *t = tcase_create("yolo_loss");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, loss_grad_bce);
    tcase_add_test(t, loss_grad_focal_smooth_pw);
    tcase_add_test(t, loss_no_grad);
    tcase_add_test(t, loss_one_class);
    suite_add_tcase(s, t);
    return tu_main(s);
}
