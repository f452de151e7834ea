/* test_cudaemu_dist.c: data-parallel training on the CUDA device, each rank its
 * executor device (`mpirun -np 2 onnx-train-cudaemu train --device 0`): the
 * gradient slab cut into buckets, each bucket summed over the ranks through the
 * device tables' allreduce (kernels/cuda/comm_emu.c: MPI on the executor's
 * guarded memory) as soon as the backward has finished it (train/trainer.c,
 * ot_autograd_set_grad_ready). docs/TRAINING.md, "Data parallel on CUDA devices".
 *
 * The data are test_dist.c's, more of them: 40 synthetic images with the same
 * label lines, augmentation off (tu_dp_data), so a rank's per-batch loss equals
 * the one-rank loss of the whole batch and the two runs train the same
 * weights. 2 epochs of batch 4: 20 batches, 10 optimizer steps (SGD + EMA,
 * warmup accumulation 1 -> 4; checked: last.ckpt's ema_updates).
 * - without BatchNormalization (--no-bn, as test_dist.c; --sync-bn on CUDA
 *   ranks is tests/test_cudaemu_syncbn.c): 2 executor ranks with ONNXT_BUCKET_MB=1 (several
 *   buckets, counted from the DDP line) against 1 executor rank with batch 4:
 *   every batch's losses within 1e-5 relative, last.ckpt's weights within 1e-5
 *   (test_dist.c's measure); against 2 CPU ranks (today's host all-reduce):
 *   the same losses and weights; the default bucket size (one bucket for
 *   yolov5n's 7.6 MB) gives the weights of 1 MB buckets bit for bit;
 * - with BatchNormalization (local statistics on each rank): 2 executor ranks
 *   against 2 CPU ranks, losses and weights within 1e-5;
 * - the autograd's hook on a yolov5n step on the executor device: every
 *   variable final exactly once per backward, and 1 MB buckets cut from the
 *   slab's end complete while the backward still runs (the first within its
 *   first half), so their sums overlap it on a GPU.
 * - `onnx-train-cudaemu train --device 0,1`, the ranks started by onnx-train
 *   (mpirun underneath, core/dist.c): the losses and weights of the mpirun form
 *   bit for bit, rank 0's lines only, rank 1 on the list's second entry; rank 1
 *   killed mid-epoch: the job exits non-zero at once, and --resume from the
 *   last checkpoint gives the uninterrupted run's losses and weights exactly.
 * Exits 77 (skipped) without mpirun or MPI. */
#include "core/dist.h"
#include "kernels/cuda/cuda_tables.h"
#include "testutil.h"
#include "train/builtin.h"
#include "train/checkpoint.h"
#include "train/step.h"
#include <math.h>
#include <string.h>
#include <time.h>

static char W[1024];

#define MPIRUN TU_MPIRUN
#define ARGS "--model yolov5n --img 64 --epochs 2 --batch-size 4 --workers 1 --noplots --exist-ok --noautoanchor"
#define NB 10    /* batches per epoch: 40 images of batch 4 */
#define STEPS 10 /* optimizer steps in 2 epochs */

static void setup(void) { tu_dp_data(W, 4 * NB); }

/* One training run named `name`: ranks 1 or 2, cli OT_CLI / OT_CLI_EMU, its stdout in NAME.out, its
 * per-batch losses (rank 0's) in NAME.log. */
static void train(const char *name, int ranks, const char *cli, const char *device, const char *extra, const char *env) {
    tu_sh("rm -rf '%s/runs/%s' '%s/%s.log' && OMP_NUM_THREADS=1 ONNXT_LOSS_LOG='%s/%s.log' %s %s '%s' train --data '%s/d/data.yaml' "
          "--hyp '%s/hyp.yaml' " ARGS " %s --device %s --project '%s/runs' --name %s > '%s/%s.out'",
          W, name, W, name, W, name, env, ranks > 1 ? MPIRUN : "", cli, W, W, extra, device, W, name, W, name);
}

/* Epoch `epoch`'s (-1: every epoch's) `count` losses of runs one and two within relative `tol` (0: bit for bit). */
static void compare_losses_at(const char *one, const char *two, int epoch, int count, double tol) {
    char p[1300], q[1300];
    snprintf(p, sizeof p, "%s/%s.log", W, one);
    snprintf(q, sizeof q, "%s/%s.log", W, two);
    double worst = tu_loss_diff(p, q, epoch, count);
    ck_assert_msg(worst <= tol, "losses %s vs %s: max relative %g", one, two, worst);
}

static void compare_losses(const char *one, const char *two) { compare_losses_at(one, two, -1, 3 * 2 * NB, 1e-5); }

/* last.ckpt's weights of runs one and two (after epoch 1 and STEPS optimizer steps) within `tol` (test_dist.c's
 * measure; 0: bit for bit). */
static void compare_weights(const char *one, const char *two, double tol) {
    double d = tu_runs_weight_diff(W, one, two, 1, STEPS);
    ck_assert_msg(d <= tol, "%s vs %s: weights differ by %g (tolerance %g)", one, two, d, tol);
}

/* The bucket count of the DDP line rank 0 printed in NAME.out; -1 when there is none. */
static int buckets(const char *name) {
    char p[1300], line[1024];
    snprintf(p, sizeof p, "%s/%s.out", W, name);
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "cannot open %s", p);
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "gradients all-reduced in ");
        if (strncmp(line, "DDP: 2 ranks", 12) == 0 && s) n = atoi(s + strlen("gradients all-reduced in "));
    }
    fclose(f);
    return n;
}

static int out_lines(const char *name, const char *what);

START_TEST(t_two_executor_ranks_without_bn) {
    setup();
    train("one", 1, OT_CLI_EMU, "0", "--no-bn --quiet", "");
    train("two", 2, OT_CLI_EMU, "0", "--no-bn", "ONNXT_BUCKET_MB=1");
    train("two_25", 2, OT_CLI_EMU, "0", "--no-bn", "");
    train("two_cpu", 2, OT_CLI, "cpu", "--no-bn --quiet", "");
    train("two_plain", 2, OT_CLI_EMU, "0", "--no-bn --quiet", "ONNXT_BUCKET_MB=1 ONNXT_CUDA_GRAPH=0");
    int nb = buckets("two");
    fprintf(stderr, "ONNXT_BUCKET_MB=1: %d buckets; default: %d\n", nb, buckets("two_25"));
    ck_assert_msg(nb >= 5, "expected several 1 MB buckets for yolov5n's gradients, the DDP line says %d", nb);
    ck_assert_int_eq(buckets("two_25"), 1);
    compare_losses("one", "two");
    compare_losses("two_cpu", "two");
    compare_weights("one", "two", 1e-5);
    compare_weights("two_cpu", "two", 1e-5);
    compare_weights("two_25", "two", 0); /* MPI's sum of two floats does not depend on the split */
    /* the whole step replayed as graphs, the bucket sums inside: the bits of plain launches */
    ck_assert_int_eq(out_lines("two", "CUDA graphs: the whole step"), 1);
    compare_losses_at("two_plain", "two", -1, 3 * 2 * NB, 0);
    compare_weights("two_plain", "two", 0);
}
END_TEST

START_TEST(t_two_executor_ranks_with_bn) {
    setup();
    train("two_bn", 2, OT_CLI_EMU, "0", "--quiet", "ONNXT_BUCKET_MB=0.5");
    train("two_bn_cpu", 2, OT_CLI, "cpu", "--quiet", "");
    compare_losses("two_bn_cpu", "two_bn");
    compare_weights("two_bn_cpu", "two_bn", 1e-5);
}
END_TEST

/* ---- `train --device 0,1`: the ranks started by onnx-train itself (mpirun underneath) ---- */
static bool ran(const char *name) {
    char p[1300];
    snprintf(p, sizeof p, "%s/runs/%s/weights/last.ckpt", W, name);
    return tu_exists(p);
}

/* The lines of NAME.out that contain `what`. */
static int out_lines(const char *name, const char *what) {
    char p[1300], line[4096];
    snprintf(p, sizeof p, "%s/%s.out", W, name);
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "cannot open %s", p);
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, what) != NULL;
    fclose(f);
    return n;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* `onnx-train-cudaemu train --device 0,1` against `mpirun -np 2 onnx-train-cudaemu train --device 0`: the same
 * per-batch losses and weights, bit for bit (the executor devices 0 and 1 compute alike); rank 0's lines only. */
START_TEST(t_self_launched_ranks) {
    setup();
    if (!ran("two_25")) train("two_25", 2, OT_CLI_EMU, "0", "--no-bn", "");
    double t0 = now_s();
    train("self", 1, OT_CLI_EMU, "0,1", "--no-bn --bucket-mb 1", ""); /* the flag reaches every rank; sums keep their bits */
    fprintf(stderr, "train --device 0,1: %.1f s\n", now_s() - t0);
    compare_losses_at("two_25", "self", -1, 3 * 2 * NB, 0);
    compare_weights("two_25", "self", 0);
    ck_assert_int_gt(buckets("self"), 1);                 /* "DDP: 2 ranks ... in K buckets" (1 at the default 25 MB) */
    ck_assert_int_eq(out_lines("self", "DDP: "), 1);      /* from rank 0 only */
    ck_assert_int_eq(out_lines("self", "Results saved to"), 1);
    /* rank 1 takes the list's second entry: 9 is no executor device, and rank 1 says so */
    char cmd[8192], err[4096];
    snprintf(cmd, sizeof cmd, "timeout 60 '%s' train --data '%s/d/data.yaml' " ARGS " --quiet --no-bn --device 0,9 --project '%s/runs' --name bad9 >/dev/null",
             OT_CLI_EMU, W, W);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc != 0 && rc != 124, "--device 0,9: expected a failure, got %d", rc);
    ck_assert_msg(strstr(err, "rank 1: --device 9") != NULL, "stderr: %s", err);
    /* a malformed list: one line before any process starts */
    snprintf(cmd, sizeof cmd, "'%s' train --data '%s/d/data.yaml' " ARGS " --device 0,0", OT_CLI_EMU, W);
    ck_assert_int_eq(tu_run(cmd, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "listed twice") != NULL, "stderr: %s", err);
}
END_TEST

/* Rank 1 of `--device 0,1` killed before batch 1 of epoch 1: the job exits non-zero at once (mpirun stops rank 0;
 * ONNXT_DIST_TIMEOUT=10 backs it), epoch 0's last.ckpt is whole, and --resume from it gives the uninterrupted
 * run's epoch-1 losses and weights bit for bit. */
START_TEST(t_self_launched_killed_rank) {
    setup();
    if (!ran("self")) train("self", 1, OT_CLI_EMU, "0,1", "--no-bn", "");
    char cmd[8192], err[4096];
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s/runs/killed' '%s/killed.log' '%s/resumed.log' && OMP_NUM_THREADS=1 ONNXT_LOSS_LOG='%s/killed.log' ONNXT_DIST_TIMEOUT=10 "
             "ONNXT_TEST_KILL_AT=1:1 ONNXT_TEST_KILL_RANK=1 timeout 120 '%s' train --data '%s/d/data.yaml' --hyp '%s/hyp.yaml' " ARGS
             " --quiet --no-bn --device 0,1 --project '%s/runs' --name killed >/dev/null",
             W, W, W, W, OT_CLI_EMU, W, W, W);
    double t0 = now_s();
    int rc = tu_run(cmd, err, sizeof err);
    double dt = now_s() - t0;
    fprintf(stderr, "killed rank: exit %d after %.1f s\n", rc, dt);
    ck_assert_msg(rc != 0 && rc != 124, "expected the job to stop with an error before the 120 s timeout, got %d: %s", rc, err);
    ck_assert_msg(dt < 60, "the job took %.0f s to stop", dt);
    ck_assert_msg(strstr(err, "rank 1") != NULL, "stderr does not name the dead rank: %s", err);
    char p[1300];
    snprintf(p, sizeof p, "%s/runs/killed/weights/last.ckpt", W);
    ot_graph_destroy(tu_ckpt_weights(p, 0, -1)); /* whole, of epoch 0 */
    tu_sh("OMP_NUM_THREADS=1 ONNXT_LOSS_LOG='%s/resumed.log' '%s' train --resume '%s' --workers 1 --quiet --device 0,1 >/dev/null", W, OT_CLI_EMU, p);
    compare_losses_at("self", "killed", 0, 3 * NB, 0);
    compare_losses_at("self", "resumed", 1, 3 * NB, 0);
    compare_weights("self", "killed", 0);
}
END_TEST

/* ---- the hook ---- */
typedef struct seen { const ot_autograd *ag; int *calls; int n; } seen;
static void on_ready(void *ctx, int var) {
    seen *s = ctx;
    ck_assert(var >= 0 && var < s->ag->n_vars);
    s->calls[var]++;
    s->n++;
}

START_TEST(t_grad_ready_hook) {
    ot_error e;
    uint8_t *buf;
    size_t len;
    ot_model *m;
    ck_assert_msg(ot_builtin_onnx("yolov5n", 3, 64, 7, NULL, &buf, &len, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_model_load_buffer(buf, len, ".", "yolov5n", &m, &e) == OT_OK, "%s", e.msg);
    free(buf);
    char why[200];
    ot_backend *be = ot_backend_cuda_emu(0, why, sizeof why);
    ck_assert_msg(be != NULL, "%s", why);
    ot_hyp hyp;
    ot_hyp_default(&hyp);
    ot_shape sh = {4, {2, 3, 64, 64}};
    ot_step *st;
    ck_assert_msg(ot_step_create_on(be, m, NULL, &hyp, sh, 64, &st, &e) == OT_OK, "%s", e.msg);
    const ot_autograd *ag = st->ag;
    int nv = ag->n_vars, nb = ag->n_bsteps;
    /* every variable in exactly one slot */
    int *slot = malloc(sizeof(int) * (size_t)nv);
    for (int k = 0; k < nv; k++) slot[k] = -1;
    ck_assert_int_eq(ag->final_start[0], 0);
    ck_assert_int_eq(ag->final_start[nb + 1], nv);
    for (int sl = 0; sl <= nb; sl++)
        for (int z = ag->final_start[sl]; z < ag->final_start[sl + 1]; z++) {
            ck_assert_int_eq(slot[ag->final_var[z]], -1);
            slot[ag->final_var[z]] = sl;
        }
    /* 1 MB buckets from the slab's end, as train/trainer.c cuts them: when each is complete */
    size_t cap = 1048576 / sizeof(float), hi = ag->slab_floats;
    int buckets = 0, ready = 0, first = -1, before_end = 0;
    for (int v = nv - 1; v >= 0; v--) {
        if (slot[v] > ready) ready = slot[v];
        if (hi - ag->var_off[v] >= cap || v == 0) {
            if (first < 0) first = ready;
            before_end += ready < nb;
            buckets++;
            hi = ag->var_off[v];
            ready = 0;
        }
    }
    fprintf(stderr, "yolov5n: %d variables, %d backward steps, %d 1 MB buckets: the first complete after step %d, "
                    "%d before the last step\n", nv, nb, buckets, first - 1, before_end);
    ck_assert_int_ge(buckets, 5);
    ck_assert_msg(first <= nb / 2, "the slab's last bucket is complete only after backward step %d of %d", first - 1, nb);
    ck_assert_int_ge(before_end, buckets - 1);
    /* the hook during a backward: every variable once */
    seen s = {ag, calloc((size_t)nv, sizeof(int)), 0};
    ot_autograd_set_grad_ready(st->ag, on_ready, &s);
    float *x = malloc(sizeof(float) * 2 * 3 * 64 * 64);
    ot_fill_pattern(x, 2 * 3 * 64 * 64, 3);
    const float tg[] = {0, 0, 0.5f, 0.5f, 0.3f, 0.4f, 1, 1, 0.6f, 0.3f, 0.5f, 0.5f};
    ot_loss_items it;
    ck_assert_msg(ot_step_run(st, x, tg, 2, true, &it, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(s.n, nv);
    for (int k = 0; k < nv; k++) ck_assert_int_eq(s.calls[k], 1);
    ot_autograd_set_grad_ready(st->ag, NULL, NULL);
    ck_assert_msg(ot_step_run(st, x, tg, 2, true, &it, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(s.n, nv);
    free(s.calls);
    free(slot);
    free(x);
    ot_step_destroy(st);
    ot_model_destroy(m);
}
END_TEST

int main(void) {
    ot_cuda_kernels_install(); /* this binary links onnxtrain_cudaemu: the executor's CUDA tables */
    if (!tu_have_mpi()) return OT_SKIP;
    snprintf(W, sizeof W, "%s", tu_work());
    Suite *s = suite_create("cudaemu_dist");
    TCase *t = tcase_create("dist");
    tcase_set_timeout(t, 900); /* ~150 s alone, ~270 s beside test_cudaemu_syncbn on 2 cores */
    tcase_add_test(t, t_two_executor_ranks_without_bn);
    tcase_add_test(t, t_two_executor_ranks_with_bn);
    tcase_add_test(t, t_self_launched_ranks);
    tcase_add_test(t, t_self_launched_killed_rank);
    tcase_add_test(t, t_grad_ready_hook);
    suite_add_tcase(s, t);
    return tu_main(s);
}
