/* test_dist.c: data-parallel training on CPU ranks (mpirun -np 2) against one
 * rank with the same total batch.
 *
 * The data make the two runs comparable exactly: 16 synthetic images that all
 * carry the same label lines, augmentation off (no mosaic, flips, HSV, scale,
 * translate), so every image matches the same number of targets per layer and
 * the per-rank loss means (ComputeLoss divides by the rank's target count)
 * add up to the one-rank loss; each rank reads positions rank, rank + 2, ... of
 * the epoch order, so the union of the two rank batches is the one-rank batch.
 * After 2 epochs (6 optimizer steps, warmup accumulation 1 -> 2) the weights
 * must agree: max |a - b| / max(1, |a|) <= 1e-5 and relative L2 <= 1e-5 over
 * all tensors (measured 2e-10 without BN, 4e-7 with synchronised BN; float32
 * sums over 2 + 2 images instead of 4 explain the rest).
 * - a folded graph without BatchNormalization (--no-bn): ranks need no sync;
 * - with BatchNormalization and --sync-bn;
 * - a rank killed mid-epoch: mpirun stops the other (non-zero exit, well
 *   within the timeout) and the last checkpoint still loads;
 * - a rank that hangs: the other gives up after ONNXT_DIST_TIMEOUT (5 s here)
 *   with a message and every rank stops.
 * Skips when mpirun or MPI support is missing. */
#include "core/dist.h"
#include "testutil.h"
#include "train/checkpoint.h"
#include <math.h>
#include <string.h>

static char W[1024];

#define MPIRUN TU_MPIRUN
#define have_mpi tu_have_mpi
#define ARGS "--model yolov5n --img 64 --epochs 2 --batch-size 4 --workers 1 --quiet --noplots --exist-ok --noautoanchor"

static void setup(void) {
    snprintf(W, sizeof W, "%s", tu_work());
    tu_dp_data(W, 16);
}

/* last.ckpt's weights of runs one and two (after epoch 1, 6 optimizer steps) within 1e-5. */
static void compare(const char *one, const char *two) {
    double d = tu_runs_weight_diff(W, one, two, 1, 6);
    ck_assert_msg(d <= 1e-5, "%s vs %s: weights differ by %g", one, two, d);
}

START_TEST(two_ranks_equal_one_rank_without_bn) {
    if (!have_mpi()) return;
    setup();
    tu_sh("OMP_NUM_THREADS=1 '%s' train --data '%s/d/data.yaml' --hyp '%s/hyp.yaml' " ARGS " --no-bn --project '%s/runs' --name one", OT_CLI, W,
       W, W);
    tu_sh("OMP_NUM_THREADS=1 " MPIRUN " '%s' train --data '%s/d/data.yaml' --hyp '%s/hyp.yaml' " ARGS " --no-bn --project '%s/runs' --name two",
       OT_CLI, W, W, W);
    compare("one", "two");
}
END_TEST

START_TEST(two_ranks_equal_one_rank_sync_bn) {
    if (!have_mpi()) return;
    setup();
    tu_sh("OMP_NUM_THREADS=1 '%s' train --data '%s/d/data.yaml' --hyp '%s/hyp.yaml' " ARGS " --project '%s/runs' --name one_bn", OT_CLI, W, W,
       W);
    tu_sh("OMP_NUM_THREADS=1 " MPIRUN " '%s' train --data '%s/d/data.yaml' --hyp '%s/hyp.yaml' " ARGS " --sync-bn --project '%s/runs' --name two_sbn",
       OT_CLI, W, W, W);
    compare("one_bn", "two_sbn");
}
END_TEST

START_TEST(killed_rank_stops_the_job) {
    if (!have_mpi()) return;
    setup();
    char cmd[8192], err[4096];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 ONNXT_TEST_KILL_AT=1:1 ONNXT_TEST_KILL_RANK=1 timeout 120 " MPIRUN
             " '%s' train --data '%s/d/data.yaml' --hyp '%s/hyp.yaml' " ARGS " --project '%s/runs' --name killed >/dev/null",
             OT_CLI, W, W, W);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc != 0 && rc != 124, "expected mpirun to stop with an error before the 120 s timeout, got %d", rc);
    char p[1300];
    snprintf(p, sizeof p, "%s/runs/killed/weights/last.ckpt", W);
    ot_ckpt *c;
    ot_error e;
    ck_assert_msg(ot_ckpt_load(p, &c, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq((int)json_integer_value(json_object_get(c->header, "epoch")), 0);
    ot_ckpt_free(c);
}
END_TEST

START_TEST(hung_rank_times_out) {
    if (!have_mpi()) return;
    setup();
    char cmd[8192], err[4096];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 ONNXT_DIST_TIMEOUT=5 ONNXT_TEST_HANG=1 ONNXT_TEST_KILL_AT=1:1 ONNXT_TEST_KILL_RANK=1 timeout 120 " MPIRUN
             " '%s' train --data '%s/d/data.yaml' --hyp '%s/hyp.yaml' " ARGS " --project '%s/runs' --name hung >/dev/null",
             OT_CLI, W, W, W);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc != 0 && rc != 124, "expected the job to stop on the 5 s collective timeout, got %d: %s", rc, err);
    ck_assert_msg(strstr(err, "no answer from the other ranks") != NULL, "stderr: %s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("dist");
    TCase *t = tcase_create("dist");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, two_ranks_equal_one_rank_without_bn);
    tcase_add_test(t, two_ranks_equal_one_rank_sync_bn);
    tcase_add_test(t, killed_rank_stops_the_job);
    tcase_add_test(t, hung_rank_times_out);
    suite_add_tcase(s, t);
    return tu_main(s);
}
