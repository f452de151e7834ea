/* test_guard.c: the guarded device (core/backend.h, `--device cpu-guard`).
 * Its memory is PROT_NONE outside its own calls, so any host dereference of
 * backend memory crashes. Everything a user runs is run on it and must give
 * the same bits as the plain CPU backend:
 * - a planted host read of guard memory dies with SIGSEGV (the guard works);
 * - transfers, memset and enter/leave brackets work and free every buffer;
 * - a training step (forward, loss, backward) and 20 optimizer steps with
 *   clip_grad_norm and the EMA (SGD and AdamW) on a built-in yolov5n: every
 *   parameter, gradient, momentum and EMA value equal bit for bit;
 * - `onnx-train train --device cpu-guard` (2 epochs, checkpoints each epoch):
 *   the same per-batch losses and the same last.ckpt bytes as --device cpu; a
 *   run killed mid-epoch and resumed on the guard gives the uninterrupted
 *   run's losses and best.onnx; `val` and `predict` on the guard print and
 *   write what they do on the CPU;
 * - `--device` itself: without a GPU the plain binary refuses `--device 0` in
 *   one line with exit 2, a list (0,1) likewise; onnx-train-cudaemu accepts
 *   `--device 0 --tf32` and trains an epoch on the executor, whose checkpoint
 *   `forward --device 0` runs as the CPU does; `info` and `--help` name the
 *   devices and the CUDA kernel library; ONNXT_TF32 and --tf32's setter. */
#include "testutil.h"
#include "core/backend.h"
#include "core/config.h"
#include "core/npy.h"
#include "train/builtin.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "train/step.h"
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the guard itself ---- */
static volatile float sink;

START_TEST(t_planted_host_read) {
    ot_backend *be = ot_backend_cpu_guard();
    float *d = ot_be_alloc(be, 4096);
    ck_assert_ptr_nonnull(d);
    float one = 1.0f;
    ot_be_upload(be, d, &one, sizeof one); /* a named call: fine */
    sink = d[0];                           /* a host read of device memory: must die here */
    ck_abort_msg("a host read of cpu-guard memory did not fault");
}
END_TEST

START_TEST(t_planted_host_write) {
    ot_backend *be = ot_backend_cpu_guard();
    float *d = ot_be_alloc(be, 64);
    d[3] = 2.0f;
    ck_abort_msg("a host write of cpu-guard memory did not fault");
}
END_TEST

START_TEST(t_transfers) {
    ot_backend *be = ot_backend_cpu_guard();
    int live = ot_guard_live();
    enum { N = 10000 };
    float h[N], back[N];
    for (int i = 0; i < N; i++) h[i] = (float)i * 0.5f - 7.0f;
    float *a = ot_be_alloc(be, sizeof h), *b = ot_be_alloc_zero(be, sizeof h);
    ck_assert(ot_guard_owns(a) && ot_guard_owns(b + N - 1) && !ot_guard_owns(h));
    ck_assert_int_eq(ot_guard_live(), live + 2);
    ot_be_upload(be, a, h, sizeof h);
    ot_be_download(be, back, b, sizeof back);
    for (int i = 0; i < N; i++) ck_assert(back[i] == 0.0f);
    ot_be_copy(be, b, a, sizeof h);
    ot_be_memset(be, b, 0, 16 * sizeof(float));
    ot_be_download(be, back, b, sizeof back);
    for (int i = 0; i < N; i++) ck_assert(back[i] == (i < 16 ? 0.0f : h[i]));
    ot_be_enter(be); /* a kernel's view: readable and writable */
    ot_be_enter(be);
    b[20] = a[21] + 1.0f;
    ot_be_leave(be);
    b[22] = 3.0f; /* still inside the outer bracket */
    ot_be_leave(be);
    ot_be_download(be, back, b, sizeof back);
    ck_assert(back[20] == h[21] + 1.0f && back[22] == 3.0f);
    ot_be_free(be, a);
    ot_be_free(be, b);
    ck_assert_int_eq(ot_guard_live(), live);
}
END_TEST

/* A built-in yolov5n (3 classes, 64 px, seed 7). */
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

/* A device without an implementation of an op: plan creation names the node, the op and the device. */
START_TEST(t_missing_implementation) {
    ot_error e;
    ot_model *m = yolov5n_64();
    ot_backend gpu = *ot_backend_cpu(); /* the CPU's memory calls, a device kind with no op table yet */
    gpu.kind = OT_DEV_CUDA;
    snprintf(gpu.name, sizeof gpu.name, "cuda:0");
    ot_shape s = {4, {1, 3, 64, 64}};
    ot_plan *p = NULL;
    ck_assert_int_ne(ot_plan_create_on(&gpu, m, &s, 0, NULL, &p, &e), OT_OK);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(e.msg, "(Conv)") && strstr(e.msg, "no implementation of Conv for device cuda:0"), "%s", e.msg);
    ot_autograd *a = NULL;
    ck_assert_int_ne(ot_autograd_create_on(&gpu, m, &s, NULL, false, &a, &e), OT_OK);
    ck_assert_msg(strstr(e.msg, "for device cuda:0"), "%s", e.msg);
    ot_model_destroy(m);
}
END_TEST

/* ---- a training step and 20 optimizer steps ---- */
typedef struct trace { float *slab, *grad, *m1, *m2, *ema; size_t n; double loss[21], gnorm[20]; } trace;

static void dl(ot_backend *be, float **dst, const float *src, size_t n) {
    *dst = malloc(sizeof(float) * n);
    ck_assert_ptr_nonnull(*dst);
    ot_be_download(be, *dst, src, sizeof(float) * n);
}

static void run_steps(ot_backend *be, ot_opt_kind kind, trace *t) {
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
    float *x = malloc(sizeof(float) * 2 * 3 * 64 * 64);
    /* targets: image, class, cx, cy, w, h */
    const float tg[] = {0, 0, 0.5f, 0.5f, 0.3f, 0.4f, 0, 2, 0.25f, 0.7f, 0.2f, 0.1f, 1, 1, 0.6f, 0.3f, 0.5f, 0.5f};
    for (int k = 0; k <= 20; k++) {
        ot_fill_pattern(x, 2 * 3 * 64 * 64, (uint32_t)(11 + k));
        ot_loss_items it;
        ck_assert_msg(ot_step_run(st, x, tg, 3, true, &it, &e) == OT_OK, "%s", e.msg);
        t->loss[k] = it.loss;
        if (k == 20) break; /* the last step's gradients are compared as they are */
        ot_optimizer_clip_grad_norm(o, 10.0);
        ot_optimizer_grad_norm(o, &t->gnorm[k], NULL);
        ot_optimizer_step(o);
        ot_autograd_zero_grad(st->ag);
        ot_ema_update(ema, st->ag);
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

static void same_steps(ot_opt_kind kind) {
    trace c = {0}, g = {0};
    int live = ot_guard_live();
    run_steps(ot_backend_cpu(), kind, &c);
    run_steps(ot_backend_cpu_guard(), kind, &g);
    ck_assert_int_eq(ot_guard_live(), live); /* every guard buffer freed */
    ck_assert_uint_eq(c.n, g.n);
    ck_assert_msg(memcmp(c.loss, g.loss, sizeof c.loss) == 0, "losses differ: %.9g vs %.9g", c.loss[20], g.loss[20]);
    ck_assert(memcmp(c.gnorm, g.gnorm, sizeof c.gnorm) == 0);
    ck_assert_msg(memcmp(c.slab, g.slab, sizeof(float) * c.n) == 0, "parameters differ");
    ck_assert_msg(memcmp(c.grad, g.grad, sizeof(float) * c.n) == 0, "gradients differ");
    ck_assert_msg(memcmp(c.m1, g.m1, sizeof(float) * c.n) == 0, "optimizer buffers differ");
    ck_assert(!c.m2 == !g.m2 && (!c.m2 || memcmp(c.m2, g.m2, sizeof(float) * c.n) == 0));
    ck_assert_msg(memcmp(c.ema, g.ema, sizeof(float) * c.n) == 0, "EMA differs");
    /* the run moved: the comparison is not between two untouched models */
    ck_assert(c.loss[20] != c.loss[0] && c.gnorm[0] > 0);
    printf("guard %s: 20 steps + EMA on cpu-guard equal cpu bit for bit (loss %.6g -> %.6g, %zu floats)\n",
           ot_opt_name(kind), c.loss[0], c.loss[20], c.n);
    trace_free(&c);
    trace_free(&g);
}

START_TEST(t_steps_sgd) { same_steps(OT_OPT_SGD); }
END_TEST
START_TEST(t_steps_adamw) { same_steps(OT_OPT_ADAMW); }
END_TEST

/* ---- the CLI on the guard: train, resume, val, predict ---- */
static char W[1024], DATA[1200];

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    ck_assert(fread(b, 1, (size_t)l, f) == (size_t)l);
    b[l] = 0;
    fclose(f);
    if (n) *n = (size_t)l;
    return b;
}

static void same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    ck_assert_msg(na == nb && memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* Two checkpoints with the same graph and stored copies (weights, EMA,
 * optimizer buffers) byte for byte; their headers differ by the run's name. */
static void same_ckpt(const char *a, const char *b) {
    ot_ckpt *x, *y;
    ot_error e;
    ck_assert_msg(ot_ckpt_load(a, &x, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_ckpt_load(b, &y, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(x->model_len == y->model_len && memcmp(x->model, y->model, x->model_len) == 0, "the checkpoints' graphs differ");
    ck_assert_msg(x->tensors_len == y->tensors_len && memcmp(x->tensors, y->tensors, x->tensors_len) == 0,
                  "the checkpoints' weights, EMA or optimizer state differ");
    json_t *ex = json_object_get(x->header, "optimizer"), *ey = json_object_get(y->header, "optimizer");
    ck_assert(json_equal(ex, ey) && json_equal(json_object_get(x->header, "ema_updates"), json_object_get(y->header, "ema_updates")));
    ck_assert(x->tensors_len > 1000000);
    ot_ckpt_free(x);
    ot_ckpt_free(y);
}

/* The per-(epoch, batch) losses of a log, the last logged line winning (a resumed run logs its epoch again). */
static void same_losses(const char *a, const char *b) {
    char *x = slurp(a, NULL), *y = slurp(b, NULL);
    /* each line: "epoch batch lbox lobj lcls" and more; compare the last line per key */
    char kx[256][128], ky[256][128];
    int nx = 0, ny = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *s = pass ? y : x, (*k)[128] = pass ? ky : kx;
        int *n = pass ? &ny : &nx;
        for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
            int e, i;
            if (sscanf(line, "%d %d", &e, &i) != 2) continue;
            int slot = -1;
            for (int j = 0; j < *n; j++) {
                int e2, i2;
                sscanf(k[j], "%d %d", &e2, &i2);
                if (e2 == e && i2 == i) slot = j;
            }
            if (slot < 0 && *n < 256) slot = (*n)++;
            if (slot >= 0) snprintf(k[slot], 128, "%s", line);
        }
    }
    ck_assert_int_eq(nx, ny);
    ck_assert(nx > 4);
    for (int j = 0; j < nx; j++) ck_assert_msg(strcmp(kx[j], ky[j]) == 0, "losses differ: '%s' vs '%s'", kx[j], ky[j]);
    free(x);
    free(y);
}

#define TRAIN_ARGS "--model yolov5n --img 64 --epochs 2 --batch-size 8 --workers 1 --quiet --noplots --exist-ok"

static void cli_setup(void) {
    snprintf(W, sizeof W, "%s", tu_work());
    snprintf(DATA, sizeof DATA, "%s/syn/data.yaml", W);
    if (!tu_exists(DATA)) tu_sh("'%s' data synth --out '%s/syn' --train 24 --val 8 --img 64 --seed 5 >/dev/null", OT_CLI, W);
}

static void train_on(const char *device, const char *name, const char *extra_env) {
    tu_sh("rm -rf '%s/runs/%s' '%s/%s.log' && %s ONNXT_LOSS_LOG='%s/%s.log' '%s' train --data '%s' " TRAIN_ARGS
       " --device %s --project '%s/runs' --name %s", W, name, W, name, extra_env, W, name, OT_CLI, DATA, device, W, name);
}

START_TEST(t_cli_train_resume) {
    char a[1400], b[1400];
    train_on("cpu", "cpu", "");
    train_on("cpu-guard", "guard", "");
    snprintf(a, sizeof a, "%s/cpu.log", W);
    snprintf(b, sizeof b, "%s/guard.log", W);
    same_losses(a, b);
    snprintf(a, sizeof a, "%s/runs/cpu/weights/last.ckpt", W);
    snprintf(b, sizeof b, "%s/runs/guard/weights/last.ckpt", W);
    same_ckpt(a, b);
    snprintf(a, sizeof a, "%s/runs/cpu/weights/best.onnx", W);
    snprintf(b, sizeof b, "%s/runs/guard/weights/best.onnx", W);
    same_file(a, b);
    /* killed in epoch 1 before batch 1, resumed on the guard */
    char err[4096], cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/runs/kill' && ONNXT_TEST_KILL_AT=1:1 ONNXT_LOSS_LOG='%s/kill.log' '%s' train --data '%s' "
             TRAIN_ARGS " --device cpu-guard --project '%s/runs' --name kill", W, W, OT_CLI, DATA, W);
    ck_assert_msg(tu_run(cmd, err, sizeof err) != 0, "the killed run exited 0");
    tu_sh("ONNXT_LOSS_LOG='%s/kill.log' '%s' train --resume '%s/runs/kill/weights/last.ckpt' --device cpu-guard --quiet", W, OT_CLI, W);
    snprintf(a, sizeof a, "%s/kill.log", W);
    snprintf(b, sizeof b, "%s/cpu.log", W);
    same_losses(a, b);
    snprintf(a, sizeof a, "%s/runs/kill/weights/best.onnx", W);
    snprintf(b, sizeof b, "%s/runs/cpu/weights/best.onnx", W);
    same_file(a, b);
}
END_TEST

START_TEST(t_cli_val_predict) {
    char a[1400], b[1400];
    snprintf(a, sizeof a, "%s/runs/cpu/weights/best.ckpt", W);
    if (!tu_exists(a)) train_on("cpu", "cpu", "");
    for (int k = 0; k < 2; k++) {
        const char *dev = k ? "cpu-guard" : "cpu";
        tu_sh("'%s' val --model '%s/runs/cpu/weights/best.ckpt' --data '%s' --img 64 --device %s --json | sed -E 's/\"ms_per_image\": ?[-0-9.e+]+//' > '%s/val-%s.json'", OT_CLI, W,
           DATA, dev, W, dev);
        tu_sh("rm -rf '%s/pred-%s' && '%s' predict --model '%s/runs/cpu/weights/best.onnx' --source '%s/syn/images/val' --img 64 "
           "--conf 0.01 --device %s --out '%s/pred-%s' >/dev/null", W, dev, OT_CLI, W, W, dev, W, dev);
    }
    snprintf(a, sizeof a, "%s/val-cpu.json", W);
    snprintf(b, sizeof b, "%s/val-cpu-guard.json", W);
    same_file(a, b);
    tu_sh("cd '%s' && diff -r pred-cpu/labels pred-cpu-guard/labels && test -n \"$(ls pred-cpu/labels)\"", W);
}
END_TEST

/* --tf32's setting (core/config.h): ONNXT_TF32=1 turns it on, the CLI's setter wins over the environment and
 * survives a reload. (Each check test runs in its own process: the setter's override does not leak.) */
START_TEST(t_config_tf32) {
    unsetenv("ONNXT_TF32");
    ot_config_reload();
    ck_assert(!ot_config_get()->tf32);
    setenv("ONNXT_TF32", "1", 1);
    ot_config_reload();
    ck_assert(ot_config_get()->tf32);
    ot_config_set_tf32(false);
    ot_config_reload();
    ck_assert(!ot_config_get()->tf32);
    unsetenv("ONNXT_TF32");
    ot_config_set_tf32(true);
    ot_config_reload();
    ck_assert(ot_config_get()->tf32);
}
END_TEST

/* `onnx-train ARGS` must exit 2 with one line on stderr that contains want. */
static void refused_in_one_line(const char *args, const char *want) {
    char cmd[8192], err[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s > /dev/null", OT_CLI, args);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc == 2, "onnx-train %s: exit %d, expected 2 (stderr: %s)", args, rc, err);
    size_t n = strlen(err);
    ck_assert_msg(n > 1 && strchr(err, '\n') == err + n - 1, "onnx-train %s: expected one line on stderr, got '%s'", args, err);
    ck_assert_msg(strstr(err, want), "onnx-train %s: '%s' does not say '%s'", args, err, want);
}

START_TEST(t_cli_device_flags) {
    char args[4096], why[256], a[1400], b[1400];
    /* the plain binary links no executor: --device 0 is a GPU or nothing */
    if (ot_backend_cuda(0, why, sizeof why)) {
        printf("a GPU is present: the plain binary's refusal of --device 0 is not checked\n");
    } else {
        refused_in_one_line("bench train --model yolov5n --img 64 --batch-size 2 --steps 1 --device 0", "--device 0");
        snprintf(args, sizeof args, "train --model yolov5n --data '%s' --img 64 --epochs 1 --batch-size 2 --device cuda:0 --quiet "
                 "--project '%s/runs' --name refused", DATA, W);
        refused_in_one_line(args, "--device cuda:0");
        snprintf(a, sizeof a, "%s/runs/refused", W);
        ck_assert_msg(!tu_exists(a), "a refused device left a run folder behind");
    }
    refused_in_one_line("bench train --model yolov5n --img 64 --batch-size 2 --steps 1 --device 0,1", "one device at a time");
    refused_in_one_line("bench train --model yolov5n --img 64 --batch-size 2 --steps 1 --device gpu", "expected one of");
    /* the executor's binary: --device 0 (and --tf32, which it ignores) trains one epoch */
    char data4[1300];
    snprintf(data4, sizeof data4, "%s/syn4/data.yaml", W);
    if (!tu_exists(data4)) tu_sh("'%s' data synth --out '%s/syn4' --train 4 --val 2 --img 64 --seed 5 >/dev/null", OT_CLI, W);
    tu_sh("rm -rf '%s/runs/emu' && '%s' train --model yolov5n --data '%s' --img 64 --epochs 1 --batch-size 2 --workers 1 --device 0 "
          "--tf32 --quiet --noplots --project '%s/runs' --name emu", W, OT_CLI_EMU, data4, W);
    snprintf(a, sizeof a, "%s/runs/emu/weights/best.onnx", W);
    ck_assert_msg(tu_exists(a), "%s missing", a);
    /* its checkpoint's forward on the executor is the CPU's */
    tu_sh("cd '%s' && rm -rf fe fc && '%s' forward runs/emu/weights/last.ckpt --random-input 1 --out fe --device 0 --tf32 | grep -q 'on cuda:0 (executor)' && "
          "'%s' forward runs/emu/weights/last.ckpt --random-input 1 --out fc --device cpu | grep -q 'on cpu$'", W, OT_CLI_EMU, OT_CLI);
    snprintf(a, sizeof a, "%s/fe/output0.npy", W);
    snprintf(b, sizeof b, "%s/fc/output0.npy", W);
    ot_tensor x = {0}, y = {0};
    ot_error e;
    ck_assert_msg(ot_npy_read(a, &x, &e) == OT_OK && ot_npy_read(b, &y, &e) == OT_OK, "%s", e.msg);
    ck_assert(ot_shape_eq(&x.shape, &y.shape) && x.dtype == OT_F32 && y.dtype == OT_F32);
    const float *px = x.data, *py = y.data;
    for (int64_t i = 0; i < ot_numel(&x.shape); i++)
        ck_assert_msg(fabsf(px[i] - py[i]) <= 1e-5f * (1 + fabsf(py[i])), "output0[%lld]: %.9g on the executor, %.9g on the CPU", (long long)i, px[i], py[i]);
    free(x.data);
    free(y.data);
    /* info and --help name the devices and the kernel library */
    tu_sh("'%s' info | grep -q '^CUDA  *CUDA on the CPU executor' && '%s' info | grep -q '^devices .*cpu-guard'", OT_CLI_EMU, OT_CLI);
    tu_sh("'%s' --help | grep -q '^devices in this build (--device): cpu, cpu-guard' && '%s' train --help | grep -q -- '--tf32'", OT_CLI, OT_CLI);
}
END_TEST

int main(void) {
    Suite *s = suite_create("guard");
    TCase *tg = tcase_create("guard");
    tu_add_fault_test(tg, t_planted_host_read);
    tu_add_fault_test(tg, t_planted_host_write);
    tcase_add_test(tg, t_transfers);
    tcase_add_test(tg, t_missing_implementation);
    tcase_add_test(tg, t_config_tf32);
    suite_add_tcase(s, tg);
    TCase *ts = tcase_create("steps");
    tcase_set_timeout(ts, 600);
    tcase_add_test(ts, t_steps_sgd);
    tcase_add_test(ts, t_steps_adamw);
    suite_add_tcase(s, ts);
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 900);
    tcase_add_unchecked_fixture(tc, cli_setup, NULL);
    tcase_add_test(tc, t_cli_train_resume);
    tcase_add_test(tc, t_cli_val_predict);
    tcase_add_test(tc, t_cli_device_flags);
    suite_add_tcase(s, tc);
    return tu_main(s);
}
