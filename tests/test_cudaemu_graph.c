/* test_cudaemu_graph.c (ctest label cudaemu): graphs on the executor's CUDA
 * device (core/backend.h ot_be_graph_*; the recorder in core/backend.c, the
 * launches recorded by kernels/cuda/compat.h and emu.cpp, the convolutions by
 * conv_emu.c): a yolov5n training forward and backward (batch 2, 64 px, with
 * BatchNorm, whose running statistics move each run), captured once and
 * replayed, against the same work in plain launches:
 *
 * - plain: zero_grad, forward of X1, the output gradients uploaded, backward;
 *   then the same with X2, then X1 again;
 * - graph: the first run plain (as a warm-up), then zero_grad, forward,
 *   output-gradient upload and backward captured once from fixed host
 *   buffers; the buffers refilled with X2 and replayed, then X1 and replayed:
 *   each replay's outputs, every gradient and the whole weight slab (BatchNorm's
 *   running statistics included) equal the plain run's bit for bit;
 * - while capturing nothing ran (the outputs did not change), a download or a
 *   synchronisation aborts (as CUDA refuses them in a capture), and a second
 *   capture cannot begin;
 * - with --amp fp16 convolutions (the rounding kernels and the weight copies
 *   inside the recorded convolution calls) the same holds;
 * - `onnx-train-cudaemu train` with its graphs (the default) and with
 *   ONNXT_CUDA_GRAPH=0: the same losses and checkpoint weights bit for bit. */
#include "testutil.h"
#include "core/backend.h"
#include "core/config.h"
#include "kernels/cuda/cuda_tables.h"
#include "train/builtin.h"
#include "train/step.h"
#include <string.h>

static ot_backend *emu(void) {
    char why[200];
    ot_backend *be = ot_backend_cuda_emu(0, why, sizeof why);
    ck_assert_msg(be != NULL, "%s", why);
    return be;
}

typedef struct snap { float *out, *grad, *slab; size_t nout, n; } snap;

static ot_step *make_step(ot_backend *be, ot_model **m) {
    uint8_t *buf;
    size_t len;
    ot_error e;
    ck_assert_msg(ot_builtin_onnx("yolov5n", 3, 64, 7, NULL, &buf, &len, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_model_load_buffer(buf, len, ".", "yolov5n", m, &e) == OT_OK, "%s", e.msg);
    free(buf);
    ot_hyp hyp;
    ot_hyp_default(&hyp);
    ot_shape sh = {4, {2, 3, 64, 64}};
    ot_step *st;
    ck_assert_msg(ot_step_create_on(be, *m, NULL, &hyp, sh, 64, &st, &e) == OT_OK, "%s", e.msg);
    return st;
}

/* The work a graph captures: zero_grad, forward of host buffer x, the output gradients from host buffer dy. */
static void work(ot_step *st, const float *x, const float *dy) {
    ot_error e;
    ot_autograd *ag = st->ag;
    ot_autograd_zero_grad(ag);
    ck_assert_msg(ot_autograd_forward(ag, &x, &e) == OT_OK, "%s", e.msg);
    size_t off = 0;
    for (int l = 0; l < st->graph->n_outputs; l++) {
        size_t n = (size_t)ot_numel(&ag->p->shape[st->graph->outputs[l]]);
        ot_be_upload(ag->be, ot_autograd_output_grad(ag, l), dy + off, sizeof(float) * n);
        off += n;
    }
    ck_assert_msg(ot_autograd_backward(ag, &e) == OT_OK, "%s", e.msg);
}

static size_t outputs_floats(ot_step *st) {
    size_t n = 0;
    for (int l = 0; l < st->graph->n_outputs; l++) n += (size_t)ot_numel(&st->ag->p->shape[st->graph->outputs[l]]);
    return n;
}

static void take(ot_step *st, snap *s) {
    ot_autograd *ag = st->ag;
    s->nout = outputs_floats(st);
    s->n = ag->slab_floats;
    s->out = malloc(sizeof(float) * s->nout);
    s->grad = malloc(sizeof(float) * s->n);
    s->slab = malloc(sizeof(float) * s->n);
    size_t off = 0;
    for (int l = 0; l < st->graph->n_outputs; l++) {
        int v = st->graph->outputs[l];
        size_t n = (size_t)ot_numel(&ag->p->shape[v]);
        ot_be_download(ag->be, s->out + off, ag->p->data[v], sizeof(float) * n);
        off += n;
    }
    ot_be_download(ag->be, s->grad, ag->grad_slab, sizeof(float) * s->n);
    ot_be_download(ag->be, s->slab, ag->slab, sizeof(float) * s->n);
}

static void same(const snap *a, const snap *b, const char *what) {
    ck_assert_msg(a->n == b->n && a->nout == b->nout, "%s: sizes differ", what);
    ck_assert_msg(memcmp(a->out, b->out, sizeof(float) * a->nout) == 0, "%s: outputs differ", what);
    ck_assert_msg(memcmp(a->grad, b->grad, sizeof(float) * a->n) == 0, "%s: gradients differ", what);
    ck_assert_msg(memcmp(a->slab, b->slab, sizeof(float) * a->n) == 0, "%s: weights / running statistics differ", what);
}
static void drop(snap *s) { free(s->out); free(s->grad); free(s->slab); }

static void replay_equals_plain(int amp) {
    ot_backend *be = emu();
    ot_config_set_amp(amp);
    const size_t nx = 2 * 3 * 64 * 64;
    float *x1 = malloc(sizeof(float) * nx), *x2 = malloc(sizeof(float) * nx);
    ot_fill_pattern(x1, (int64_t)nx, 21);
    ot_fill_pattern(x2, (int64_t)nx, 22);
    /* plain */
    ot_model *m;
    ot_step *st = make_step(be, &m);
    size_t ny = outputs_floats(st);
    float *dy = malloc(sizeof(float) * ny);
    ot_fill_pattern(dy, (int64_t)ny, 23);
    for (size_t i = 0; i < ny; i++) dy[i] = dy[i] * 0.01f - 0.005f;
    snap p[3];
    const float *xs[3] = {x1, x2, x1};
    for (int k = 0; k < 3; k++) { work(st, xs[k], dy); take(st, &p[k]); }
    ot_step_destroy(st);
    ot_model_destroy(m);
    /* graph */
    st = make_step(be, &m);
    float *hx = ot_be_host_alloc(be, sizeof(float) * nx), *hdy = ot_be_host_alloc(be, sizeof(float) * ny);
    memcpy(hdy, dy, sizeof(float) * ny);
    memcpy(hx, x1, sizeof(float) * nx);
    work(st, hx, hdy); /* warm-up, plain */
    snap g[3];
    take(st, &g[0]);
    same(&g[0], &p[0], "the warm-up run");
    ck_assert(ot_be_graph_begin(be));
    ck_assert(!ot_be_graph_begin(be)); /* one capture at a time */
    memcpy(hx, x2, sizeof(float) * nx);
    work(st, hx, hdy);
    ot_be_graph *gr = ot_be_graph_end(be);
    ck_assert_ptr_nonnull(gr);
    snap idle;
    take(st, &idle);
    same(&idle, &g[0], "after the capture (nothing may have run)");
    ot_be_graph_launch(be, gr);
    take(st, &g[1]);
    same(&g[1], &p[1], "replay 1 (X2)");
    memcpy(hx, x1, sizeof(float) * nx);
    ot_be_graph_launch(be, gr);
    take(st, &g[2]);
    same(&g[2], &p[2], "replay 2 (X1)");
    printf("%s: a captured forward + backward replayed twice equals plain launches bit for bit\n", amp ? "fp16" : "fp32");
    ot_be_graph_free(be, gr);
    for (int k = 0; k < 3; k++) { drop(&p[k]); drop(&g[k]); }
    drop(&idle);
    ot_be_host_free(be, hx);
    ot_be_host_free(be, hdy);
    free(x1); free(x2); free(dy);
    ot_step_destroy(st);
    ot_model_destroy(m);
    ot_config_set_amp(0);
}

START_TEST(t_replay_fp32) { replay_equals_plain(0); }
END_TEST
START_TEST(t_replay_amp) { replay_equals_plain(1); }
END_TEST

/* `train` on the executor: its CUDA graphs (the default) against ONNXT_CUDA_GRAPH=0, 2 epochs of 5 batches
 * (the whole step captured once warm and replayed after; the warmup's accumulation steps at some batches and
 * not at others, so both graphs replay): the same losses and last.ckpt bit for bit, and the run says the graphs
 * were captured. extra: more train flags and environment (AMP with Adam and a planted overflow, whose step
 * runs plain between replays: iteration 7 steps in the warmup). */
static void trainer_graphs_equal_plain(const char *tag, const char *env, const char *flags) {
    char W[1024];
    snprintf(W, sizeof W, "%s", tu_work());
    tu_dp_data(W, 20);
    for (int g = 0; g <= 1; g++)
        tu_sh("rm -rf '%s/runs/%s%d' '%s/%s%d.log' && OMP_NUM_THREADS=1 %s ONNXT_CUDA_GRAPH=%d ONNXT_LOSS_LOG='%s/%s%d.log' '%s' train "
              "--data '%s/d/data.yaml' --hyp '%s/hyp.yaml' --model yolov5n --img 64 --epochs 2 --batch-size 4 --workers 1 --noplots "
              "--exist-ok --noautoanchor --device 0 %s --project '%s/runs' --name %s%d > '%s/%s%d.out'",
              W, tag, g, W, tag, g, env, g, W, tag, g, OT_CLI_EMU, W, W, flags, W, tag, g, W, tag, g);
    char a[1300], b[1300], n0[64], n1[64];
    snprintf(a, sizeof a, "%s/%s0.log", W, tag);
    snprintf(b, sizeof b, "%s/%s1.log", W, tag);
    snprintf(n0, sizeof n0, "%s0", tag);
    snprintf(n1, sizeof n1, "%s1", tag);
    ck_assert(tu_loss_diff(a, b, -1, 3 * 10) == 0);
    ck_assert(tu_runs_weight_diff(W, n0, n1, 1, 7) == 0);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "grep -q 'CUDA graphs: the whole step' '%s/%s1.out' && ! grep -q 'CUDA graphs' '%s/%s0.out'", W, tag, W, tag);
    ck_assert_msg(system(cmd) == 0, "the graph run should say it captured, the plain one not");
}

START_TEST(t_trainer_graphs_equal_plain) { trainer_graphs_equal_plain("g", "", ""); }
END_TEST
START_TEST(t_trainer_graphs_amp_adam) {
    trainer_graphs_equal_plain("a", "ONNXT_TEST_AMP_INF=7", "--amp fp16 --optimizer AdamW");
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "grep -q 'optimizer step skipped' '%s/a1.out'", tu_work());
    ck_assert_msg(system(cmd) == 0, "the planted overflow should skip a step in the graph run");
}
END_TEST

/* `bench train` on the executor replays its timed steps as one graph (captured by the second warm-up step), and
 * says so in its JSON; with ONNXT_CUDA_GRAPH=0 it does not. */
START_TEST(t_bench_train_graph) {
    const char *W = tu_work();
    for (int g = 0; g <= 1; g++) {
        tu_sh("OMP_NUM_THREADS=1 ONNXT_CUDA_GRAPH=%d '%s' bench train --model yolov5n --nc 3 --batch-size 2 --img 64 --steps 3 "
              "--device 0 --amp fp16 --json > '%s/bench%d.json'", g, OT_CLI_EMU, W, g);
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "grep -q '\"cuda_graph\": %s' '%s/bench%d.json' && grep -q '\"images_per_s\"' '%s/bench%d.json'",
                 g ? "true" : "false", W, g, W, g);
        ck_assert_msg(system(cmd) == 0, "bench train with ONNXT_CUDA_GRAPH=%d: cuda_graph should be %s", g, g ? "true" : "false");
    }
}
END_TEST

START_TEST(t_download_in_capture_dies) {
    ot_backend *be = emu();
    float *d = ot_be_alloc(be, 64), h[4];
    ck_assert(ot_be_graph_begin(be));
    ot_be_download(be, h, d, sizeof h); /* must abort */
}
END_TEST
START_TEST(t_sync_in_capture_dies) {
    ot_backend *be = emu();
    ck_assert(ot_be_graph_begin(be));
    ot_be_sync(be); /* must abort */
}
END_TEST

int main(void) {
    ot_cuda_kernels_install();
    Suite *s = suite_create("cudaemu_graph");
    TCase *t = tcase_create("graph");
    tcase_set_timeout(t, 900); /* two trainer pairs on the executor: ~150 s each beside the other executor tests */
    tcase_add_test(t, t_replay_fp32);
    tcase_add_test(t, t_replay_amp);
    tcase_add_test(t, t_trainer_graphs_equal_plain);
    tcase_add_test(t, t_trainer_graphs_amp_adam);
    tcase_add_test(t, t_bench_train_graph);
    tcase_add_test_raise_signal(t, t_download_in_capture_dies, SIGABRT);
    tcase_add_test_raise_signal(t, t_sync_in_capture_dies, SIGABRT);
    suite_add_tcase(s, t);
    return tu_main(s);
}
