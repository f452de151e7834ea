/* test_cudaemu_syncbn.c: SyncBatchNorm on the CUDA device (`mpirun -np 2
 * onnx-train-cudaemu train --device 0 --sync-bn`): each rank's BatchNormalization
 * takes its batch statistics over both ranks' batches, the per-channel double
 * sums crossing ranks through the plan's host callback (kernels/cuda/cuda_tables.c,
 * the BatchNormalization row; docs/CUDA.md, "SyncBatchNorm").
 *
 * The data are test_dist.c's, smaller: 8 synthetic images with the same label
 * lines, augmentation off, so every image matches the same number of targets
 * per layer (the per-rank loss means add up to the one-rank loss) and the two
 * ranks' batches together are the one-rank batch. 1 epoch of batch 4 (2
 * optimizer steps, SGD + EMA, warmup) and the final validation.
 * - 2 executor ranks (batch 2 each) with --sync-bn against 1 executor rank with
 *   batch 4: last.ckpt's weights (BatchNorm running statistics and the EMA
 *   included) within 1e-5 (test_dist.c's measure; the logged losses are rank 0's,
 *   of its own 2 images, so they are compared between 2-rank runs only);
 * - against 2 CPU ranks with --sync-bn (kernels/batchnorm.c's synchronised
 *   path): losses and weights within 1e-5 (measured: the same bits);
 * - 2 CPU ranks with local statistics (no --sync-bn) differ from the executor's
 *   --sync-bn run by more than 1e-4 in weights and losses, so the checks above
 *   do see the synchronisation.
 * Exits 77 (skipped) without mpirun or MPI. */
#include "core/dist.h"
#include "testutil.h"
#include "train/checkpoint.h"
#include <math.h>
#include <string.h>

static char W[1024];

/* test_dist.c's launcher: local ranks only, as root in CI, 2 ranks on any core count */
#define MPIRUN "env OMPI_MCA_plm=isolated OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np 2"
#define ARGS "--model yolov5n --img 64 --epochs 1 --batch-size 4 --workers 1 --noplots --exist-ok --noautoanchor --quiet"

static bool have_mpi(void) {
    if (!ot_dist_available() || system("command -v mpirun >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: no mpirun or no MPI in this build (tools/setup.sh installs openmpi)\n");
        return false;
    }
    if (system("timeout 60 " MPIRUN " true >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: mpirun cannot start 2 local processes here (try: " MPIRUN " true)\n");
        return false;
    }
    return true;
}

static void setup(void) {
    char p[1300];
    snprintf(p, sizeof p, "%s/d/data.yaml", W);
    if (tu_exists(p)) return;
    tu_sh("'%s' data synth --out '%s/d' --train 8 --val 4 --img 64 --seed 5 >/dev/null", OT_CLI, W);
    tu_sh("cd '%s/d/labels/train' && f=$(ls | head -1) && for x in *.txt; do [ \"$x\" = \"$f\" ] || cp \"$f\" \"$x\"; done", W);
    snprintf(p, sizeof p, "%s/hyp.yaml", W);
    FILE *f = fopen(p, "w");
    ck_assert(f);
    fputs("mosaic: 0.0\ntranslate: 0.0\nscale: 0.0\nfliplr: 0.0\nhsv_h: 0.0\nhsv_s: 0.0\nhsv_v: 0.0\n", f);
    fclose(f);
}

/* One training run named `name`: ranks 1 or 2, cli OT_CLI / OT_CLI_EMU; its per-batch losses (rank 0's) in NAME.log. */
static void train(const char *name, int ranks, const char *cli, const char *device, const char *extra) {
    tu_sh("rm -rf '%s/runs/%s' '%s/%s.log' && OMP_NUM_THREADS=1 ONNXT_LOSS_LOG='%s/%s.log' %s '%s' train --data '%s/d/data.yaml' "
          "--hyp '%s/hyp.yaml' " ARGS " %s --device %s --project '%s/runs' --name %s > '%s/%s.out'",
          W, name, W, name, W, name, ranks > 1 ? MPIRUN : "", cli, W, W, extra, device, W, name, W, name);
}

/* The losses of a loss log ("epoch batch lbox lobj lcls" per line). */
static int read_losses(const char *name, double *v, int cap) {
    char p[1300];
    snprintf(p, sizeof p, "%s/%s.log", W, name);
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "cannot open %s", p);
    int n = 0, e, b;
    double x[3];
    while (n + 3 <= cap && fscanf(f, "%d %d %lf %lf %lf", &e, &b, &x[0], &x[1], &x[2]) == 5)
        for (int k = 0; k < 3; k++) v[n++] = x[k];
    fclose(f);
    return n;
}

/* The largest relative difference of the two runs' losses. */
static double loss_diff(const char *one, const char *two) {
    double a[300], b[300];
    int na = read_losses(one, a, 300), nb = read_losses(two, b, 300);
    ck_assert_int_eq(na, nb);
    ck_assert_int_eq(na, 3 * 2); /* 1 epoch of 2 batches */
    double worst = 0;
    for (int i = 0; i < na; i++) worst = fmax(worst, fabs(a[i] - b[i]) / fmax(1e-30, fabs(a[i])));
    fprintf(stderr, "losses %s vs %s: max relative %.3g over %d values\n", one, two, worst, na);
    return worst;
}

static ot_graph *weights(const char *run) {
    char p[1300];
    snprintf(p, sizeof p, "%s/runs/%s/weights/last.ckpt", W, run);
    ot_ckpt *c;
    ot_graph *g;
    ot_error e;
    ck_assert_msg(ot_ckpt_load(p, &c, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_ckpt_graph(c, &g, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq((int)json_integer_value(json_object_get(c->header, "epoch")), 0);
    ot_ckpt_free(c);
    return g;
}

/* test_dist.c's measure: max |a - b| / max(1, |a|) and relative L2 over every float initializer; returns the larger. */
static double weight_diff(const char *one, const char *two) {
    ot_graph *a = weights(one), *b = weights(two);
    double worst = 0, num = 0, den = 0;
    int n = 0;
    for (int v = 0; v < a->n_values; v++) {
        const ot_value *x = &a->values[v];
        if (!(x->flags & OT_V_INIT) || x->init.dtype != OT_F32) continue;
        int u = ot_graph_find(b, x->name);
        ck_assert_msg(u >= 0 && b->values[u].init.nbytes == x->init.nbytes, "%s differs in shape", x->name);
        const float *p = x->init.data, *q = b->values[u].init.data;
        for (size_t i = 0; i < x->init.nbytes / sizeof(float); i++) {
            double d = fabs((double)p[i] - q[i]);
            worst = fmax(worst, d / fmax(1.0, fabs(p[i])));
            num += d * d;
            den += (double)p[i] * p[i];
        }
        n++;
    }
    ck_assert_int_gt(n, 100);
    double rel = sqrt(num / den);
    fprintf(stderr, "weights %s vs %s: max scaled %.3g, relative L2 %.3g over %d tensors\n", one, two, worst, rel, n);
    ot_graph_destroy(a);
    ot_graph_destroy(b);
    return fmax(worst, rel);
}

START_TEST(t_two_executor_ranks_sync_bn) {
    setup();
    train("one", 1, OT_CLI_EMU, "0", "");
    train("two_sbn", 2, OT_CLI_EMU, "0", "--sync-bn");
    train("two_sbn_cpu", 2, OT_CLI, "cpu", "--sync-bn");
    train("two_local_cpu", 2, OT_CLI, "cpu", "");
    /* the logged losses are rank 0's (its 2 images): comparable between 2-rank runs only */
    ck_assert_msg(weight_diff("one", "two_sbn") <= 1e-5, "2 executor ranks with --sync-bn: weights differ from 1 rank's");
    ck_assert_msg(loss_diff("two_sbn_cpu", "two_sbn") <= 1e-5, "2 executor ranks vs 2 CPU ranks with --sync-bn: losses differ");
    ck_assert_msg(weight_diff("two_sbn_cpu", "two_sbn") <= 1e-5, "2 executor ranks vs 2 CPU ranks with --sync-bn: weights differ");
    double local = weight_diff("two_local_cpu", "two_sbn");
    ck_assert_msg(local > 1e-4, "2 ranks with local statistics gave weights within %g of --sync-bn's: the test cannot see the sync",
                  local);
    double lossl = loss_diff("two_local_cpu", "two_sbn");
    ck_assert_msg(lossl > 1e-4, "2 ranks with local statistics gave losses within %g of --sync-bn's", lossl);
}
END_TEST

int main(void) {
    if (!have_mpi()) return OT_SKIP;
    snprintf(W, sizeof W, "%s", tu_work());
    Suite *s = suite_create("cudaemu_syncbn");
    TCase *t = tcase_create("syncbn");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, t_two_executor_ranks_sync_bn);
    suite_add_tcase(s, t);
    return tu_main(s);
}
