/* test_cudaemu_amp.c (ctest label cudaemu): mixed precision training on the
 * executor's CUDA device (train --amp; docs/CUDA.md "Mixed precision"):
 *
 * - a yolov5n training step (batch 2, 64 pixels) with fp16 convolutions and
 *   GradScaler's scaled loss gradient, unscaled after the backward, against the
 *   FP32 step on the same device: the loss items within 1e-2 relative
 *   (measured 2.2e-3) and the gradient slab within 0.2 relative L2 (measured
 *   9.0e-2); bf16 (8 significant bits instead of 11) within 8e-2 (3.1e-2) and
 *   1.2 (0.66), and its gradient difference 3x to 20x fp16's (measured 7.3x,
 *   the units' ratio is 8: the differences are the rounding's). A randomly
 *   initialised yolov5n at 64 pixels amplifies rounding about 180x in its
 *   gradients (BatchNorm over few elements; 15% at 128 pixels, batch 4), so no
 *   tighter bound holds; the weights, the FP32 masters, are untouched by the
 *   forward; the first convolution's input, the image, is rounded to half
 *   precision in place (as autocast stores activations);
 * - `onnx-train-cudaemu train --amp fp16` (20 images, batch 4) with an
 *   overflow planted in the gradients of the step at iteration 2
 *   (ONNXT_TEST_AMP_INF): the run goes on, says so once, and last.ckpt records
 *   the skip: its loss scale 32768 (halved once), one optimizer step fewer
 *   than EMA updates (train.py updates the EMA after a skipped scaler.step);
 *   without the plant: 65536, as many steps as updates; killed after epoch 0
 *   and resumed, the run ends with the uninterrupted one's weights bit for bit
 *   and its scaler state (the checkpoint carries it);
 * - --channels-last (the NHWC half copies, conv_emu.c): the fp16 and bf16
 *   steps and a 1-epoch fp16 run give the NCHW ones' bits, and the run says
 *   so; without --amp (the executor trains in FP32 by default) it is refused;
 * - `--amp fp16` on the CPU device is refused with one line. */
#include "testutil.h"
#include "core/backend.h"
#include "core/config.h"
#include "kernels/cuda/cuda_tables.h"
#include "train/amp.h"
#include "train/builtin.h"
#include "train/checkpoint.h"
#include "train/step.h"
#include <math.h>
#include <string.h>

static ot_backend *emu(void) {
    char why[200];
    ot_backend *be = ot_backend_cuda_emu(0, why, sizeof why);
    ck_assert_msg(be != NULL, "%s", why);
    return be;
}

#define IMG 64
#define BATCH 2
typedef struct amp_out {
    ot_loss_items it;
    float *grad, *slab, *input;
    size_t n, nin, arena;
    int nv, nhalf; /* nhalf: activations stored in half precision */
    size_t *off;
    char **names;
} amp_out;

/* One step of yolov5n (64 px, batch 2) on the executor at precision `mode` (train/amp.h), as train/trainer.c's
 * step: forward, loss, the loss gradient scaled (fp16), backward, unscaled. */
static void amp_step(ot_amp_mode mode, bool channels_last, bool half_act, amp_out *o) {
    ot_backend *be = emu();
    ot_config_set_amp((int)mode);
    ot_config_set_channels_last(channels_last);
    if (half_act) unsetenv("ONNXT_HALF_ACTIVATIONS");
    else setenv("ONNXT_HALF_ACTIVATIONS", "0", 1);
    ot_config_reload();
    uint8_t *buf;
    size_t len;
    ot_error e;
    ot_model *m;
    ck_assert_msg(ot_builtin_onnx("yolov5n", 3, IMG, 7, NULL, &buf, &len, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_model_load_buffer(buf, len, ".", "yolov5n", &m, &e) == OT_OK, "%s", e.msg);
    free(buf);
    ot_hyp hyp;
    ot_hyp_default(&hyp);
    ot_shape sh = {4, {BATCH, 3, IMG, IMG}};
    ot_step *st;
    ck_assert_msg(ot_step_create_on(be, m, NULL, &hyp, sh, IMG, &st, &e) == OT_OK, "%s", e.msg);
    ot_config_set_amp(0);
    ot_config_set_channels_last(false);
    unsetenv("ONNXT_HALF_ACTIVATIONS");
    ot_config_reload();
    o->nin = (size_t)BATCH * 3 * IMG * IMG;
    float *x = malloc(sizeof(float) * o->nin);
    ot_fill_pattern(x, (int64_t)o->nin, 11);
    for (size_t i = 0; i < o->nin; i++) x[i] = x[i] * 0.9f + 0.0123f; /* not all exact in half */
    const float tg[] = {0, 0, 0.5f, 0.5f, 0.3f, 0.4f, 0, 2, 0.25f, 0.7f, 0.2f, 0.1f, 1, 1, 0.6f, 0.3f, 0.5f, 0.5f};
    ot_autograd *ag = st->ag;
    const ot_graph *g = st->graph;
    const float *in = x;
    ck_assert_msg(ot_autograd_forward(ag, &in, &e) == OT_OK, "%s", e.msg);
    const float *outs[OT_MAX_HEADS];
    float *douts[OT_MAX_HEADS];
    ot_shape shapes[OT_MAX_HEADS];
    int64_t nout[OT_MAX_HEADS];
    for (int l = 0; l < g->n_outputs; l++) {
        outs[l] = ag->p->data[g->outputs[l]];
        shapes[l] = ag->p->shape[g->outputs[l]];
        douts[l] = ot_autograd_output_grad(ag, l);
        nout[l] = ot_numel(&shapes[l]);
    }
    ck_assert_msg(ot_yolo_loss_compute(st->loss, &st->cfg, outs, shapes, tg, 3, douts, NULL, &e) == OT_OK, "%s", e.msg);
    ot_scaler *sc = NULL;
    if (mode == OT_AMP_FP16) {
        ck_assert_msg(ot_scaler_create(be, OT_AMP_INIT_SCALE, 0, &sc, &e) == OT_OK, "%s", e.msg);
        ot_scaler_scale(sc, douts, nout, g->n_outputs);
    }
    ck_assert_msg(ot_autograd_backward(ag, &e) == OT_OK, "%s", e.msg);
    if (sc) {
        ot_scaler_unscale(sc, ag->grad_slab, (int64_t)ag->slab_floats);
        ot_scaler_update(sc);
        ck_assert_msg(!ot_scaler_read(sc), "a clean AMP step was skipped");
        ot_scaler_destroy(sc);
    }
    ot_yolo_loss_items(st->loss, &o->it);
    o->n = ag->slab_floats;
    o->grad = malloc(sizeof(float) * o->n);
    o->slab = malloc(sizeof(float) * o->n);
    o->input = malloc(sizeof(float) * o->nin);
    ot_be_download(be, o->grad, ag->grad_slab, sizeof(float) * o->n);
    ot_be_download(be, o->slab, ag->slab, sizeof(float) * o->n);
    ot_be_download(be, o->input, ot_autograd_data(ag, g->inputs[0]), sizeof(float) * o->nin);
    o->arena = ag->arena_bytes;
    o->nhalf = 0;
    for (int v = 0; v < g->n_values; v++) o->nhalf += ag->p->dtype[v] == OT_F16 || ag->p->dtype[v] == OT_BF16;
    o->nv = ag->n_vars; /* each variable's place in the slab and its name */
    o->off = malloc(sizeof(size_t) * (size_t)(o->nv + 1));
    o->names = malloc(sizeof(char *) * (size_t)o->nv);
    for (int v = 0; v < o->nv; v++) {
        o->off[v] = ag->var_off[v];
        o->names[v] = strdup(g->values[ag->var_vid[v]].name);
    }
    o->off[o->nv] = ag->slab_floats;
    free(x);
    ot_step_destroy(st);
    ot_model_destroy(m);
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / den);
}

static void amp_free(amp_out *o) {
    free(o->grad); free(o->slab); free(o->input); free(o->off);
    for (int v = 0; v < o->nv; v++) free(o->names[v]);
    free(o->names);
}

START_TEST(t_amp_step_near_fp32) {
    amp_out r, h[2];
    amp_step(OT_AMP_OFF, false, true, &r);
    ck_assert_int_eq(r.nhalf, 0);
    const ot_amp_mode modes[2] = {OT_AMP_FP16, OT_AMP_BF16};
    const double tol_loss[2] = {1e-2, 8e-2}, tol_grad[2] = {2e-1, 1.2};
    double gerr[2];
    for (int k = 0; k < 2; k++) {
        amp_step(modes[k], false, true, &h[k]);
        double dl = fabs(h[k].it.loss - r.it.loss) / fabs(r.it.loss);
        double d3 = fmax(fabs(h[k].it.lbox - r.it.lbox) / fabs(r.it.lbox), fmax(fabs(h[k].it.lobj - r.it.lobj) / fabs(r.it.lobj),
                                                                               fabs(h[k].it.lcls - r.it.lcls) / fabs(r.it.lcls)));
        double dg = rel_l2(h[k].grad, r.grad, r.n);
        fprintf(stderr, "%s step against FP32: loss %.6g vs %.6g (relative %.2e, items %.2e), gradients relative L2 %.2e\n",
               ot_amp_name(modes[k]), h[k].it.loss, r.it.loss, dl, d3, dg);
        ck_assert_msg(d3 <= tol_loss[k], "%s: loss items differ from FP32's by %g", ot_amp_name(modes[k]), d3);
        ck_assert_msg(dg <= tol_grad[k], "%s: gradients differ from FP32's by %g relative L2", ot_amp_name(modes[k]), dg);
        ck_assert_msg(dg > 0, "%s: the gradients equal FP32's bit for bit: no half precision ran", ot_amp_name(modes[k]));
        gerr[k] = dg;
        for (int v = 0; v < r.nv; v++) /* the FP32 master weights untouched (BatchNorm's running statistics move) */
            if (!strstr(r.names[v], "running_"))
                ck_assert_msg(memcmp(h[k].slab + r.off[v], r.slab + r.off[v], sizeof(float) * (r.off[v + 1] - r.off[v])) == 0,
                              "%s: %s changed in the forward", ot_amp_name(modes[k]), r.names[v]);
        size_t changed = 0;
        for (size_t i = 0; i < r.nin; i++) { /* the image, the first convolution's input: rounded to half precision */
            float v = h[k].input[i], want = r.input[i];
            uint16_t q = 0;
            if (modes[k] == OT_AMP_FP16) want = ot_half_to_float(q = ot_float_to_half(want));
            else { uint32_t u; memcpy(&u, &want, 4); u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u; memcpy(&want, &u, 4); }
            ck_assert_msg(v == want, "%s: input[%zu] = %.9g, expected %.9g", ot_amp_name(modes[k]), i, (double)v, (double)want);
            changed += v != r.input[i];
        }
        ck_assert_uint_gt(changed, r.nin / 2);
        /* activations stored in half precision (ot_pass_half_act): the same bits as with
         * ONNXT_HALF_ACTIVATIONS=0 (float storage of the same rounded values), in a smaller arena */
        amp_out f;
        amp_step(modes[k], false, false, &f);
        fprintf(stderr, "%s: %d activations in half precision, arena %.2f MiB (all float: %.2f MiB, FP32 step %.2f MiB)\n",
                ot_amp_name(modes[k]), h[k].nhalf, h[k].arena / 1048576.0, f.arena / 1048576.0, r.arena / 1048576.0);
        ck_assert_int_eq(f.nhalf, 0);
        /* yolov5n: 57 Conv outputs (every Conv but Detect's 3 feeds a BatchNorm), 13 Concat outputs (all: Convs
         * read them), the 2 Upsample outputs (Concats read them) and 45 SiLU outputs that Convs, Concats and
         * Upsamples read (all but the 12 that a residual Add or a MaxPool reads) */
        ck_assert_int_eq(h[k].nhalf, 57 + 13 + 2 + 45);
        ck_assert_uint_eq(f.arena, r.arena);
        ck_assert_uint_lt(h[k].arena, f.arena);
        ck_assert_msg(memcmp(&f.it, &h[k].it, sizeof f.it) == 0, "%s half activations: loss items differ", ot_amp_name(modes[k]));
        ck_assert_msg(memcmp(f.grad, h[k].grad, sizeof(float) * f.n) == 0, "%s half activations: gradients differ",
                      ot_amp_name(modes[k]));
        ck_assert_msg(memcmp(f.slab, h[k].slab, sizeof(float) * f.n) == 0, "%s half activations: running statistics differ",
                      ot_amp_name(modes[k]));
        amp_free(&f);
        /* --channels-last: every rounding through the NHWC half copies (conv_emu.c), the same bits */
        amp_out c;
        amp_step(modes[k], true, true, &c);
        ck_assert_msg(memcmp(&c.it, &h[k].it, sizeof c.it) == 0, "%s channels-last: loss items differ", ot_amp_name(modes[k]));
        ck_assert_msg(memcmp(c.grad, h[k].grad, sizeof(float) * c.n) == 0, "%s channels-last: gradients differ", ot_amp_name(modes[k]));
        ck_assert_msg(memcmp(c.input, h[k].input, sizeof(float) * c.nin) == 0, "%s channels-last: input differs", ot_amp_name(modes[k]));
        amp_free(&c);
        amp_free(&h[k]);
    }
    /* the differences come from the rounding: bfloat16's unit is 8x half's, its gradients land about that much
     * further from FP32's (measured 7.3x) */
    double ratio = gerr[1] / gerr[0];
    fprintf(stderr, "bf16 / fp16 gradient difference: %.2f (the units' ratio: 8)\n", ratio);
    ck_assert_msg(ratio >= 3 && ratio <= 20, "bf16's gradient difference is %.2fx fp16's, expected about 8x", ratio);
    amp_free(&r);
}
END_TEST

/* ---- the trainer ---- */
static char W[1024];
#define ARGS "--model yolov5n --img 64 --epochs 1 --batch-size 4 --workers 1 --noplots --exist-ok --noautoanchor --quiet"

static json_t *ckpt_header(const char *name, ot_ckpt **c) {
    char p[1300];
    snprintf(p, sizeof p, "%s/runs/%s/weights/last.ckpt", W, name);
    ot_error e;
    ck_assert_msg(ot_ckpt_load(p, c, &e) == OT_OK, "%s", e.msg);
    return (*c)->header;
}

/* last.ckpt's loss scale, optimizer steps and EMA updates. */
static void amp_counts(const char *name, double *scale, long *steps, long *updates) {
    ot_ckpt *c;
    json_t *h = ckpt_header(name, &c);
    *scale = json_number_value(json_object_get(h, "amp_scale"));
    *steps = (long)json_integer_value(json_object_get(json_object_get(h, "optimizer"), "steps"));
    *updates = (long)json_integer_value(json_object_get(h, "ema_updates"));
    ot_ckpt_free(c);
}

/* One run of `train --amp fp16` on the executor named `name`; env: extra variables; stdout in NAME.out. */
static int train_amp(const char *name, int epochs, const char *env) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/runs/%s' && OMP_NUM_THREADS=1 %s '%s' train --data '%s/d/data.yaml' --hyp '%s/hyp.yaml' "
             "--model yolov5n --img 64 --epochs %d --batch-size 4 --workers 1 --noplots --exist-ok --noautoanchor --device 0 "
             "--amp fp16 --project '%s/runs' --name %s > '%s/%s.out'", W, name, env, OT_CLI_EMU, W, W, epochs, W, name, W, name);
    return tu_run(cmd, NULL, 0);
}

START_TEST(t_trainer_skips_planted_overflow) {
    snprintf(W, sizeof W, "%s", tu_work());
    tu_dp_data(W, 20); /* 5 batches of 4 per epoch: 4 optimizer steps in epoch 0, 3 in epoch 1 (warmup accumulation) */
    ck_assert_int_eq(train_amp("clean", 1, ""), 0);
    ck_assert_int_eq(train_amp("planted", 2, "ONNXT_TEST_AMP_INF=2"), 0);
    double s0, s1;
    long st0, st1, up0, up1;
    amp_counts("clean", &s0, &st0, &up0);
    amp_counts("planted", &s1, &st1, &up1);
    fprintf(stderr, "clean (1 epoch): scale %g, %ld steps, %ld EMA updates; planted overflow (2 epochs): scale %g, %ld steps, %ld EMA "
           "updates\n", s0, st0, up0, s1, st1, up1);
    ck_assert(s0 == 65536.0 && st0 == up0 && up0 == 4);
    /* --channels-last on the executor: the NHWC half copies in every step, the same weights bit for bit */
    ck_assert_int_eq(train_amp("nhwc", 1, "ONNXT_CHANNELS_LAST=1"), 0);
    ck_assert(tu_runs_weight_diff(W, "clean", "nhwc", 0, 4) == 0);
    tu_sh("grep -q 'AMP: fp16 convolutions on channels-last (NHWC) copies' '%s/nhwc.out'", W);
    ck_assert(s1 == 32768.0 && st1 == up1 - 1 && up1 == 7);
    char p[1300], line[4096];
    snprintf(p, sizeof p, "%s/planted.out", W);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    int said = 0;
    while (fgets(line, sizeof line, f)) said += strstr(line, "optimizer step skipped, loss scale 65536 -> 32768") != NULL;
    fclose(f);
    ck_assert_int_eq(said, 1);
    /* killed before epoch 1, then --resume: the scaler's state comes back with the checkpoint, and the run ends
     * with the uninterrupted run's weights and state bit for bit */
    ck_assert_int_ne(train_amp("killed", 2, "ONNXT_TEST_AMP_INF=2 ONNXT_TEST_KILL_AT=1:0"), 0);
    snprintf(p, sizeof p, "%s/runs/killed/weights/last.ckpt", W);
    tu_sh("OMP_NUM_THREADS=1 '%s' train --resume '%s' --workers 1 --quiet --device 0 >/dev/null", OT_CLI_EMU, p);
    double s2;
    long st2, up2;
    amp_counts("killed", &s2, &st2, &up2);
    ck_assert(s2 == s1 && st2 == st1 && up2 == up1);
    ck_assert(tu_runs_weight_diff(W, "planted", "killed", 1, 7) == 0);
}
END_TEST

START_TEST(t_cpu_refuses_amp) {
    char cmd[4096], err[4096];
    snprintf(W, sizeof W, "%s", tu_work());
    tu_dp_data(W, 20);
    snprintf(cmd, sizeof cmd, "'%s' train --data '%s/d/data.yaml' " ARGS " --device cpu --amp fp16 --project '%s/runs' --name cpu",
             OT_CLI, W, W);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc != 0 && strstr(err, "--amp fp16 needs a CUDA device") != NULL, "rc %d, stderr: %s", rc, err);
    snprintf(cmd, sizeof cmd, "'%s' train --data '%s/d/data.yaml' " ARGS " --device 0 --amp fp8 --project '%s/runs' --name bad",
             OT_CLI_EMU, W, W);
    rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc != 0 && strstr(err, "--amp fp8: expected fp16, bf16 or off") != NULL, "rc %d, stderr: %s", rc, err);
    snprintf(cmd, sizeof cmd, "'%s' train --data '%s/d/data.yaml' " ARGS " --device 0 --channels-last --project '%s/runs' --name cl",
             OT_CLI_EMU, W, W);
    rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc != 0 && strstr(err, "--channels-last (or ONNXT_CHANNELS_LAST=1) lays out the half-precision") != NULL,
                  "rc %d, stderr: %s", rc, err);
}
END_TEST

int main(void) {
    ot_cuda_kernels_install();
    Suite *s = suite_create("cudaemu_amp");
    TCase *t = tcase_create("amp");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, t_amp_step_near_fp32);
    tcase_add_test(t, t_trainer_skips_planted_overflow);
    tcase_add_test(t, t_cpu_refuses_amp);
    suite_add_tcase(s, t);
    return tu_main(s);
}
