/* test_cudaemu_train.c: the CUDA backend as a whole, on the CPU executor
 * (kernels/cuda/cuda_tables.c over the executor's device, ot_backend_cuda_emu),
 * against the CPU backend:
 * - a host read or write of the executor device's memory dies, even inside the
 *   runtime's kernel brackets (only the executor's launches open it);
 * - a training step on a built-in yolov5n (Conv, BatchNormalization, SiLU,
 *   Add, Concat, MaxPool, Resize, Reshape, Transpose, the fused loss) and 20
 *   SGD steps with clip_grad_norm and the EMA in the fused launch
 *   (ot_optimizer_step_ema; two tensors frozen) and 3 AdamW ones: the loss of every
 *   step, every gradient, every parameter, momentum and EMA value within 1e-5
 *   relative to the largest magnitude of its slab. Most are equal bit for bit;
 *   the clip norm (a deterministic GPU tree, 1e-6) and BatchNorm's training
 *   statistics (the same, docs/CUDA.md) may differ in the last bits;
 * - the CLI built on the executor (onnx-train-cudaemu): `loss --device 0`
 *   against `loss --device cpu` (items within 1e-6, --grads within 1e-5);
 *   `train --device 0` (batches staged through the copy stream, the loss
 *   items read after each step) against `train --device cpu`: every batch's
 *   losses; `val --device 0` against `val --device cpu`: the same metrics;
 *   `predict` and `forward` of the exported inference model (its Detect
 *   decode: Split, Pow): the same labels and output bytes. */
#include "testutil.h"
#include "core/backend.h"
#include "core/npy.h"
#include "kernels/cuda/cuda_tables.h"
#include "train/builtin.h"
#include "train/optim.h"
#include "train/step.h"
#include <math.h>
#include <string.h>

static ot_backend *emu(void) {
    char why[200];
    ot_backend *be = ot_backend_cuda_emu(0, why, sizeof why);
    ck_assert_msg(be != NULL, "%s", why);
    return be;
}

/* ---- the guard ---- */
static volatile float sink;

START_TEST(t_planted_host_read) {
    ot_backend *be = emu();
    float *d = ot_be_alloc(be, 4096);
    ck_assert_ptr_nonnull(d);
    float one = 1.0f;
    ot_be_upload(be, d, &one, sizeof one);
    ot_be_enter(be);   /* the runtime's bracket: still closed to host code on this device */
    sink = d[0];       /* must die here */
    ck_abort_msg("a host read of the executor device's memory did not fault");
}
END_TEST

START_TEST(t_planted_host_write) {
    ot_backend *be = emu();
    float *d = ot_be_alloc(be, 64);
    d[3] = 2.0f;
    ck_abort_msg("a host write of the executor device's memory did not fault");
}
END_TEST

START_TEST(t_device_names) {
    ot_backend *be;
    ot_error e;
    ck_assert_msg(ot_backend_get("0", &be, &e) == OT_OK, "%s", e.msg);
    ck_assert(be == emu() && be->kind == OT_DEV_CUDA);
    ck_assert_str_eq(be->name, "cuda:0 (executor)");
    ck_assert(ot_backend_cuda_stream(be, OT_STREAM_COMPUTE) == NULL);
    ck_assert_msg(ot_backend_get("cuda:1", &be, &e) == OT_OK && be->ordinal == 1, "%s", e.msg);
    ck_assert_int_ne(ot_backend_get("9", &be, &e), OT_OK);
    ck_assert_msg(strstr(e.msg, "0..7"), "%s", e.msg);
    /* the default stays the CPU: the executor is not a GPU */
    ck_assert(ot_backend_get("", &be, &e) == OT_OK && be == ot_backend_cpu());
    ck_assert(ot_device_kernels_get(OT_DEV_CUDA) == ot_cuda_kernels());
}
END_TEST

/* ---- a training step and 20 optimizer steps ---- */
static ot_model *yolov5n_64(void) {
    uint8_t *buf;
    size_t len;
    ot_error e;
    ot_model *m;
    ck_assert_msg(ot_builtin_onnx("yolov5n", 3, 64, 7, NULL, &buf, &len, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_model_load_buffer(buf, len, ".", "yolov5n", &m, &e) == OT_OK, "%s", e.msg);
    free(buf);
    return m;
}

typedef struct trace { float *slab, *grad, *m1, *m2, *ema; size_t n; double loss[21], gnorm[20]; } trace;

static void dl(ot_backend *be, float **dst, const float *src, size_t n) {
    *dst = malloc(sizeof(float) * n);
    ck_assert_ptr_nonnull(*dst);
    ot_be_download(be, *dst, src, sizeof(float) * n);
}

static void run_steps(ot_backend *be, ot_opt_kind kind, int steps, trace *t) {
    ot_error e;
    ot_model *m = yolov5n_64();
    ot_hyp hyp;
    ot_hyp_default(&hyp);
    ot_shape s = {4, {2, 3, 64, 64}};
    ot_step *st;
    ck_assert_msg(ot_step_create_on(be, m, NULL, &hyp, s, 64, &st, &e) == OT_OK, "%s", e.msg);
    ot_optimizer *o;
    ot_ema *ema;
    ck_assert_msg(ot_optimizer_create(st->ag, kind, 0.01, 0.937, 5e-4, &o, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_ema_create(st->ag, &ema, &e) == OT_OK, "%s", e.msg);
    /* two frozen tensors: the fused launch only averages them into the EMA (OT_SLAB_EMA_ONLY segments) */
    ot_optimizer_freeze(o, 0);
    ot_optimizer_freeze(o, 7);
    float *x = malloc(sizeof(float) * 2 * 3 * 64 * 64);
    const float tg[] = {0, 0, 0.5f, 0.5f, 0.3f, 0.4f, 0, 2, 0.25f, 0.7f, 0.2f, 0.1f, 1, 1, 0.6f, 0.3f, 0.5f, 0.5f};
    for (int k = 0; k <= steps; k++) {
        ot_fill_pattern(x, 2 * 3 * 64 * 64, (uint32_t)(11 + k));
        ot_loss_items it;
        ck_assert_msg(ot_step_run(st, x, tg, 3, true, &it, &e) == OT_OK, "%s", e.msg);
        t->loss[k] = it.loss;
        if (k == steps) break; /* the last step's gradients are compared as they are */
        ot_optimizer_clip_grad_norm(o, 10.0);
        ot_optimizer_grad_norm(o, &t->gnorm[k], NULL);
        ot_optimizer_step_ema(o, ema); /* the CUDA tables' fused launch; step then EMA on the CPU */
        ot_autograd_zero_grad(st->ag);
    }
    t->n = st->ag->slab_floats;
    dl(be, &t->slab, st->ag->slab, t->n);
    dl(be, &t->grad, st->ag->grad_slab, t->n);
    dl(be, &t->m1, o->m1, t->n);
    if (o->m2) dl(be, &t->m2, o->m2, t->n);
    dl(be, &t->ema, ema->slab, t->n);
    free(x);
    ot_ema_destroy(ema);
    ot_optimizer_destroy(o);
    ot_step_destroy(st);
    ot_model_destroy(m);
}

static void trace_free(trace *t) { free(t->slab); free(t->grad); free(t->m1); free(t->m2); free(t->ema); }

/* max |a - b| / max |a| over n floats; *same: how many are equal bit for bit. */
static double rel_err(const float *a, const float *b, size_t n, size_t *same) {
    double d = 0, m = 0;
    *same = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(a[i]) && isfinite(b[i]), "element %zu not finite: %g vs %g", i, a[i], b[i]);
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)a[i]));
        *same += memcmp(&a[i], &b[i], sizeof(float)) == 0;
    }
    return m > 0 ? d / m : d;
}

static void check_slab(const char *what, const float *c, const float *g, size_t n) {
    size_t same;
    double r = rel_err(c, g, n, &same);
    printf("  %-10s max rel diff %.3g, %zu of %zu floats bit-identical\n", what, r, same, n);
    ck_assert_msg(r <= 1e-5, "%s: the executor's CUDA backend differs from the CPU by %.3g relative (tolerance 1e-5)", what, r);
}

static void same_steps(ot_opt_kind kind, int steps) {
    trace c = {0}, g = {0};
    int live = ot_guard_live();
    run_steps(ot_backend_cpu(), kind, steps, &c);
    run_steps(emu(), kind, steps, &g);
    ck_assert_int_eq(ot_guard_live(), live); /* every device buffer freed */
    ck_assert_uint_eq(c.n, g.n);
    printf("cuda (executor) vs cpu, %s, %d steps + clip + EMA:\n", ot_opt_name(kind), steps);
    for (int k = 0; k <= steps; k++)
        ck_assert_msg(fabs(c.loss[k] - g.loss[k]) <= 1e-5 * fabs(c.loss[k]), "step %d: loss %.9g on the CPU, %.9g on cuda", k,
                      c.loss[k], g.loss[k]);
    for (int k = 0; k < steps; k++)
        ck_assert_msg(fabs(c.gnorm[k] - g.gnorm[k]) <= 1e-5 * c.gnorm[k], "step %d: grad norm %.9g vs %.9g", k, c.gnorm[k],
                      g.gnorm[k]);
    check_slab("parameters", c.slab, g.slab, c.n);
    check_slab("gradients", c.grad, g.grad, c.n);
    check_slab("momentum", c.m1, g.m1, c.n);
    if (c.m2) check_slab("2nd moment", c.m2, g.m2, c.n);
    check_slab("EMA", c.ema, g.ema, c.n);
    ck_assert(c.loss[steps] != c.loss[0] && c.gnorm[0] > 0); /* the run moved */
    printf("  loss %.6g -> %.6g\n", c.loss[0], c.loss[steps]);
    trace_free(&c);
    trace_free(&g);
}

START_TEST(t_steps_sgd) { same_steps(OT_OPT_SGD, 20); }
END_TEST
START_TEST(t_steps_adamw) { same_steps(OT_OPT_ADAMW, 3); }
END_TEST

/* ---- the CLI on the executor ---- */
static char W[1024];

static void write_inputs(void) {
    ot_error e;
    uint8_t *buf;
    size_t len;
    char path[1200];
    tu_sh("mkdir -p '%s'", W);
    ck_assert_msg(ot_builtin_onnx("yolov5n", 3, 96, 7, NULL, &buf, &len, &e) == OT_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/m.onnx", W);
    FILE *f = fopen(path, "wb");
    ck_assert(f && fwrite(buf, 1, len, f) == len);
    fclose(f);
    free(buf);
    ot_tensor t = {.dtype = OT_F32, .shape = {4, {2, 3, 96, 96}}};
    int64_t n = ot_numel(&t.shape);
    float *x = malloc(sizeof(float) * (size_t)n);
    ck_assert_ptr_nonnull(x);
    ot_fill_pattern(x, n, 5);
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f + 0.5f * x[i];
    t.data = x;
    snprintf(path, sizeof path, "%s/x.npy", W);
    ck_assert_msg(ot_npy_write(path, &t, &e) == OT_OK, "%s", e.msg);
    free(x);
    snprintf(path, sizeof path, "%s/t.txt", W);
    f = fopen(path, "w");
    fputs("0 0 0.5 0.5 0.3 0.4\n0 2 0.25 0.7 0.2 0.1\n1 1 0.6 0.3 0.5 0.5\n1 0 0.1 0.1 0.05 0.08\n", f);
    fclose(f);
}

static double jnum(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_number(v), "no number '%s'", k);
    return json_number_value(v);
}

START_TEST(t_cli_loss) {
    write_inputs();
    for (int k = 0; k < 2; k++) {
        const char *cli = k ? OT_CLI_EMU : OT_CLI, *dev = k ? "0" : "cpu";
        tu_sh("rm -rf '%s/g%d' && '%s' loss '%s/m.onnx' --input '%s/x.npy' --targets '%s/t.txt' --img 96 --device %s --json "
              "--grads '%s/g%d' > '%s/loss%d.json'", W, k, cli, W, W, W, dev, W, k, W, k);
    }
    char p[1200];
    json_error_t je;
    snprintf(p, sizeof p, "%s/loss0.json", W);
    json_t *a = json_load_file(p, 0, &je);
    snprintf(p, sizeof p, "%s/loss1.json", W);
    json_t *b = json_load_file(p, 0, &je);
    ck_assert(a && b);
    const char *keys[4] = {"lbox", "lobj", "lcls", "loss"};
    for (int i = 0; i < 4; i++) {
        double x = jnum(a, keys[i]), y = jnum(b, keys[i]);
        ck_assert_msg(fabs(x - y) <= 1e-6 * fabs(x), "%s: %.9g on the CPU, %.9g on --device 0 (executor)", keys[i], x, y);
    }
    ck_assert(jnum(a, "loss") > 0);
    json_decref(a);
    json_decref(b);
    /* every gradient file within 1e-5 relative to its largest magnitude */
    char cmd[1300], name[512], pa[2000], pb[2000];
    snprintf(cmd, sizeof cmd, "ls '%s/g0'", W);
    int files = 0;
    FILE *ls = popen(cmd, "r");
    while (ls && fgets(name, sizeof name, ls)) {
        name[strcspn(name, "\n")] = 0;
        ot_tensor x, y;
        ot_error e;
        snprintf(pa, sizeof pa, "%s/g0/%s", W, name);
        snprintf(pb, sizeof pb, "%s/g1/%s", W, name);
        ck_assert_msg(ot_npy_read(pa, &x, &e) == OT_OK, "%s", e.msg);
        ck_assert_msg(ot_npy_read(pb, &y, &e) == OT_OK, "%s: %s", name, e.msg);
        ck_assert(ot_numel(&x.shape) == ot_numel(&y.shape));
        size_t same;
        double r = rel_err((const float *)x.data, (const float *)y.data, (size_t)ot_numel(&x.shape), &same);
        ck_assert_msg(r <= 1e-5, "gradient %s: %.3g relative", name, r);
        free(x.data);
        free(y.data);
        files++;
    }
    if (ls) pclose(ls);
    ck_assert_int_gt(files, 50);
    printf("loss --device 0 (executor) = --device cpu: items within 1e-6, %d gradient files within 1e-5\n", files);
}
END_TEST

/* The loss log's lines (ONNXT_LOSS_LOG: "epoch batch lbox lobj lcls"), read whole. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *b = calloc(1, 1 << 16);
    size_t n = fread(b, 1, (1 << 16) - 1, f);
    fclose(f);
    ck_assert(n > 0);
    return b;
}

/* train on the executor's CUDA device (staged batch uploads, the loss items
 * read after the step, and the bucketed device all-reduce forced on with one
 * rank: ONNXT_DEVICE_ALLREDUCE) = train on the CPU: every batch's losses; then val of
 * that run's weights on both devices: the same metrics. */
START_TEST(t_cli_train_val) {
    char data[1200];
    snprintf(data, sizeof data, "%s/syn12/data.yaml", W);
    if (!tu_exists(data)) tu_sh("'%s' data synth --out '%s/syn12' --train 12 --val 6 --img 64 --seed 5 >/dev/null", OT_CLI, W);
    for (int k = 0; k < 2; k++)
        tu_sh("rm -rf '%s/runs/d%d' '%s/train%d.log' && %s ONNXT_LOSS_LOG='%s/train%d.log' '%s' train --model yolov5n --img 64 --epochs 1 "
              "--batch-size 4 --workers 1 --quiet --noplots --exist-ok --data '%s' --project '%s/runs' --name d%d --device %s "
              ">/dev/null", W, k, W, k, k ? "ONNXT_DEVICE_ALLREDUCE=1 ONNXT_BUCKET_MB=0.5" : "", W, k, k ? OT_CLI_EMU : OT_CLI, data, W, k, k ? "0" : "cpu");
    char a[1300], b[1300];
    snprintf(a, sizeof a, "%s/train0.log", W);
    snprintf(b, sizeof b, "%s/train1.log", W);
    char *x = slurp(a), *y = slurp(b);
    ck_assert_msg(strcmp(x, y) == 0, "per-batch losses differ:\ncpu:\n%s\ncuda (executor):\n%s", x, y);
    int lines = 0;
    for (char *c = x; *c; c++) lines += *c == '\n';
    ck_assert_int_eq(lines, 3); /* 12 images, batches of 4 */
    free(x);
    free(y);
    for (int k = 0; k < 2; k++)
        tu_sh("'%s' val --model '%s/runs/d0/weights/last.ckpt' --data '%s' --img 64 --conf 0.001 --device %s --json | "
              "sed -E 's/\"ms_per_image\": ?[-0-9.e+]+//' > '%s/val%d.json'",
              k ? OT_CLI_EMU : OT_CLI, W, data, k ? "0" : "cpu", W, k);
    tu_sh("cd '%s' && cmp val0.json val1.json && grep -q map50 val0.json", W);
    /* the exported inference model (its Detect decode: Split, Pow) through predict and forward */
    for (int k = 0; k < 2; k++) {
        tu_sh("rm -rf '%s/pred%d' && '%s' predict --model '%s/runs/d0/weights/best.onnx' --source '%s/syn12/images/val' "
              "--img 64 --conf 0.001 --device %s --out '%s/pred%d' >/dev/null",
              W, k, k ? OT_CLI_EMU : OT_CLI, W, W, k ? "0" : "cpu", W, k);
        tu_sh("rm -rf '%s/fwd%d' && '%s' forward '%s/runs/d0/weights/best.onnx' --random-input 3 --device %s --out '%s/fwd%d' "
              ">/dev/null", W, k, k ? OT_CLI_EMU : OT_CLI, W, k ? "0" : "cpu", W, k);
    }
    tu_sh("cd '%s' && diff -r pred0/labels pred1/labels && test -n \"$(ls pred0/labels)\" && diff -r fwd0 fwd1 && "
          "test -n \"$(ls fwd0)\"", W);
}
END_TEST

int main(void) {
    ot_cuda_kernels_install(); /* this binary links onnxtrain_cudaemu: --device N is the executor */
    snprintf(W, sizeof W, "%s", OT_WORK);
    Suite *s = suite_create("cudaemu_train");
    TCase *tg = tcase_create("guard");
    tu_add_fault_test(tg, t_planted_host_read);
    tu_add_fault_test(tg, t_planted_host_write);
    tcase_add_test(tg, t_device_names);
    suite_add_tcase(s, tg);
    TCase *ts = tcase_create("steps");
    tcase_set_timeout(ts, 900);
    tcase_add_test(ts, t_steps_sgd);
    tcase_add_test(ts, t_steps_adamw);
    suite_add_tcase(s, ts);
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, t_cli_loss);
    tcase_add_test(tc, t_cli_train_val);
    suite_add_tcase(s, tc);
    return tu_main(s);
}
