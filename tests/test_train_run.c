/* test_train_run.c: `onnx-train train` end to end, through the CLI as a user
 * runs it, on a tiny synthetic dataset (onnx-train data synth) and a built-in
 * yolov5n at 64 px so each run takes seconds:
 * - resume: a run killed mid-epoch (SIGKILL from inside, ONNXT_TEST_KILL_AT) and
 *   a run killed while writing last.ckpt (ONNXT_TEST_KILL_IN_CKPT) continue with
 *   --resume; the per-batch losses (ONNXT_LOSS_LOG, %.9g) after resuming equal
 *   the uninterrupted run's exactly, the old checkpoint stays loadable, and the
 *   exported best.onnx is byte for byte the uninterrupted run's;
 * - export: every form of the checkpoint's export, imported again, computes what
 *   the checkpoint computes (max scaled error 1e-4; BN folding reorders float
 *   sums, ~1e-6 here); with ../shared, the same after one epoch on 8 coco128
 *   images starting from yolov5s.onnx (inference export) and yolov5s-bn.onnx
 *   (ORT runs these in tools/ref/check_export.py, docs/TRAINING.md);
 * - val --model on the ONNX export and on the checkpoint agree; predict writes
 *   pictures and label files; bad input gets a clear error. */
#include "core/npy.h"
#include "testutil.h"
#include "train/checkpoint.h"
#include "train/builtin.h"
#include "train/detector.h"
#include "train/prepare.h"
#include <math.h>
#include <string.h>
#include <sys/stat.h>

static char W[1024];
static char DATA[1200];

static void setup(void) {
    snprintf(W, sizeof W, "%s", tu_work());
    snprintf(DATA, sizeof DATA, "%s/syn/data.yaml", W);
    if (!tu_exists(DATA)) tu_sh("'%s' data synth --out '%s/syn' --train 24 --val 8 --img 64 --seed 3 >/dev/null", OT_CLI, W);
}

#define TRAIN_ARGS "--model yolov5n --img 64 --epochs 3 --batch-size 8 --workers 1 --quiet --noplots --exist-ok"

/* The run every resume test compares with (made once per build of the CLI:
 * a reference from an older binary would compare two different programs). */
static void reference_run(void) {
    char p[1300];
    snprintf(p, sizeof p, "%s/runs/ref/weights/best.onnx", W);
    struct stat sr, sc;
    if (stat(p, &sr) == 0 && stat(OT_CLI, &sc) == 0 && sr.st_mtime > sc.st_mtime) return;
    tu_sh("rm -f '%s/ref.log' && ONNXT_LOSS_LOG='%s/ref.log' '%s' train --data '%s' " TRAIN_ARGS " --project '%s/runs' --name ref",
       W, W, OT_CLI, DATA, W);
}

/* Last logged losses per (epoch, batch): a resumed run logs the interrupted epoch again. */
typedef struct { int e, i; char v[128]; } row;
static int read_log(const char *path, row *rows, int cap) {
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s missing", path);
    int n = 0;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        row r;
        int off = 0;
        ck_assert(sscanf(line, "%d %d %n", &r.e, &r.i, &off) == 2);
        snprintf(r.v, sizeof r.v, "%s", line + off);
        int k = 0;
        while (k < n && !(rows[k].e == r.e && rows[k].i == r.i)) k++;
        if (k == n) { ck_assert(n < cap); n++; }
        rows[k] = r;
    }
    fclose(f);
    return n;
}

static void same_losses(const char *a, const char *b) {
    static row ra[512], rb[512];
    int na = read_log(a, ra, 512), nb = read_log(b, rb, 512);
    ck_assert_int_eq(na, nb);
    ck_assert_int_gt(na, 6);
    for (int k = 0; k < na; k++) {
        int j = 0;
        while (j < nb && !(rb[j].e == ra[k].e && rb[j].i == ra[k].i)) j++;
        ck_assert_msg(j < nb, "epoch %d batch %d missing after resume", ra[k].e, ra[k].i);
        ck_assert_msg(strcmp(ra[k].v, rb[j].v) == 0, "epoch %d batch %d: %s vs %s", ra[k].e, ra[k].i, ra[k].v, rb[j].v);
    }
}

static bool same_file(const char *a, const char *b) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

static int ckpt_epoch(const char *path) {
    ot_ckpt *c;
    ot_error e;
    ck_assert_msg(ot_ckpt_load(path, &c, &e) == OT_OK, "%s", e.msg);
    int ep = (int)json_integer_value(json_object_get(c->header, "epoch"));
    ot_ckpt_free(c);
    return ep;
}

START_TEST(resume_after_kill_mid_epoch) {
    setup();
    reference_run();
    char err[4096], cmd[8192], p[1300];
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s/runs/k1' '%s/k1.log' && ONNXT_LOSS_LOG='%s/k1.log' ONNXT_TEST_KILL_AT=1:2 '%s' train --data '%s' " TRAIN_ARGS
             " --project '%s/runs' --name k1",
             W, W, W, OT_CLI, DATA, W);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc == 137, "expected the run to be killed (137), got %d: %s", rc, err);
    snprintf(p, sizeof p, "%s/runs/k1/weights/last.ckpt", W);
    ck_assert_int_eq(ckpt_epoch(p), 0);
    tu_sh("ONNXT_LOSS_LOG='%s/k1.log' '%s' train --resume '%s' --quiet", W, OT_CLI, p);
    snprintf(p, sizeof p, "%s/k1.log", W);
    char q[1300];
    snprintf(q, sizeof q, "%s/ref.log", W);
    same_losses(q, p);
    snprintf(p, sizeof p, "%s/runs/k1/weights/best.onnx", W);
    snprintf(q, sizeof q, "%s/runs/ref/weights/best.onnx", W);
    ck_assert_msg(same_file(p, q), "the resumed run's best.onnx differs from the uninterrupted run's");
    /* results.csv: one row per epoch, no duplicate from the interrupted epoch */
    snprintf(p, sizeof p, "%s/runs/k1/results.csv", W);
    FILE *f = fopen(p, "r");
    ck_assert(f);
    int lines = 0;
    char line[2048];
    while (fgets(line, sizeof line, f)) lines++;
    fclose(f);
    ck_assert_int_eq(lines, 1 + 3);
}
END_TEST

START_TEST(resume_after_kill_in_checkpoint_write) {
    setup();
    reference_run();
    char err[4096], cmd[8192], p[1300], q[1300];
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s/runs/k2' '%s/k2.log' && ONNXT_LOSS_LOG='%s/k2.log' ONNXT_TEST_KILL_IN_CKPT=1 '%s' train --data '%s' " TRAIN_ARGS
             " --project '%s/runs' --name k2",
             W, W, W, OT_CLI, DATA, W);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc == 137, "expected the run to be killed (137), got %d: %s", rc, err);
    snprintf(p, sizeof p, "%s/runs/k2/weights/last.ckpt", W);
    ck_assert_int_eq(ckpt_epoch(p), 0); /* the previous checkpoint, whole */
    /* the interrupted write left only a temporary file */
    snprintf(cmd, sizeof cmd, "ls '%s/runs/k2/weights/' | grep -q 'last.ckpt.tmp'", W);
    ck_assert_int_eq(system(cmd), 0);
    tu_sh("ONNXT_LOSS_LOG='%s/k2.log' '%s' train --resume '%s' --quiet", W, OT_CLI, p);
    snprintf(p, sizeof p, "%s/k2.log", W);
    snprintf(q, sizeof q, "%s/ref.log", W);
    same_losses(q, p);
    snprintf(p, sizeof p, "%s/runs/k2/weights/best.onnx", W);
    snprintf(q, sizeof q, "%s/runs/ref/weights/best.onnx", W);
    ck_assert(same_file(p, q));
}
END_TEST

/* The checkpoint's decoded output (n, rows, no) for x. */
static float *ckpt_forward(const char *ckpt, const float *x, int n, int h, int w, int64_t *count, const float **maps,
                           ot_shape *mshapes, ot_detector **keep, ot_graph **keepg) {
    ot_ckpt *c;
    ot_graph *g;
    ot_error e;
    ck_assert_msg(ot_ckpt_load(ckpt, &c, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_ckpt_graph(c, &g, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_ckpt_apply_ema(c, g, &e) == OT_OK, "%s", e.msg);
    ot_ckpt_free(c);
    ot_detector *d;
    ck_assert_msg(ot_detector_create(g, &g->head, NULL, &d, &e) == OT_OK, "%s", e.msg);
    const float *pred;
    int64_t rows;
    ck_assert_msg(ot_detector_run(d, x, n, h, w, &pred, &rows, &e) == OT_OK, "%s", e.msg);
    *count = (int64_t)n * rows * (g->head.nc + 5);
    float *out = malloc(sizeof(float) * (size_t)*count);
    memcpy(out, pred, sizeof(float) * (size_t)*count);
    if (maps) ot_detector_maps(d, maps, mshapes);
    *keep = d;
    *keepg = g;
    return out;
}

/* Exported model `onnx` against checkpoint `ckpt` on the pattern input. */
static void check_export(const char *ckpt, const char *onnx, const char *form) {
    ot_model *m;
    ot_error e;
    ck_assert_msg(ot_model_load(onnx, &m, &e) == OT_OK, "%s", e.msg);
    const ot_yolo_head *h = ot_model_head(m);
    ck_assert(h->found);
    ot_shape s = ot_model_input_shape(m, 0);
    ck_assert(ot_shape_known(&s));
    int64_t n = ot_numel(&s);
    float *x = malloc(sizeof(float) * (size_t)n);
    ot_fill_pattern(x, n, 5);
    ot_session *sess;
    ck_assert_msg(ot_session_create(m, NULL, &sess, &e) == OT_OK, "%s", e.msg);
    ot_tensor in = {OT_F32, s, x}, out[8];
    ck_assert_msg(ot_session_run(sess, &in, out, &e) == OT_OK, "%s", e.msg);
    int64_t cnt;
    const float *maps[8];
    ot_shape ms[8];
    ot_detector *d;
    ot_graph *g;
    float *ref = ckpt_forward(ckpt, x, (int)s.d[0], (int)s.d[2], (int)s.d[3], &cnt, maps, ms, &d, &g);
    if (strcmp(form, "inference") == 0) {
        ck_assert_int_eq(h->form, OT_FORM_INFERENCE);
        ck_assert_int_eq(ot_numel(&out[0].shape), cnt);
        double err = tu_scaled_err(out[0].data, ref, cnt);
        ck_assert_msg(err <= 1e-4, "%s: inference export vs checkpoint: scaled error %g", onnx, err);
    } else {
        ck_assert_int_eq(ot_model_num_outputs(m), g->head.nl);
        for (int l = 0; l < g->head.nl; l++) { /* (b, na, ny, nx, no) vs the map (b, na*no, ny, nx) */
            const float *o = out[l].data;
            int64_t b = ms[l].d[0], ny = ms[l].d[2], nx = ms[l].d[3], na = g->head.na, no = g->head.nc + 5;
            ck_assert_int_eq(ot_numel(&out[l].shape), b * na * no * ny * nx);
            double worst = 0;
            for (int64_t i = 0; i < b * na * ny * nx * no; i++) {
                int64_t k = i % no, x_ = i / no % nx, y = i / no / nx % ny, a = i / no / nx / ny % na, bb = i / no / nx / ny / na;
                double r = maps[l][((bb * na + a) * no + k) * ny * nx + y * nx + x_];
                worst = fmax(worst, fabs(o[i] - r) / fmax(1, fabs(r)));
            }
            ck_assert_msg(worst <= 1e-4, "%s: %s layer %d scaled error %g", onnx, form, l, worst);
        }
    }
    free(ref);
    free(x);
    ot_detector_destroy(d);
    ot_graph_destroy(g);
    ot_session_destroy(sess);
    ot_model_destroy(m);
}

START_TEST(export_every_form_matches_checkpoint) {
    setup();
    reference_run();
    char ck[1300], out[1300];
    snprintf(ck, sizeof ck, "%s/runs/ref/weights/best.ckpt", W);
    snprintf(out, sizeof out, "%s/runs/ref/weights/best.onnx", W);
    check_export(ck, out, "inference");
    static const char *forms[] = {"raw", "raw-bn"};
    for (int k = 0; k < 2; k++) {
        snprintf(out, sizeof out, "%s/exp_%s.onnx", W, forms[k]);
        tu_sh("'%s' export --weights '%s' --out '%s' --form %s >/dev/null", OT_CLI, ck, out, forms[k]);
        check_export(ck, out, forms[k]);
    }
    /* another fixed size */
    snprintf(out, sizeof out, "%s/exp_96.onnx", W);
    tu_sh("'%s' export --weights '%s' --out '%s' --img 96 >/dev/null", OT_CLI, ck, out);
    check_export(ck, out, "inference");
}
END_TEST

static double json_map50(const char *cmd_fmt, const char *model) {
    char cmd[8192], outp[1300];
    snprintf(outp, sizeof outp, "%s/val_%d.json", W, (int)strlen(model));
    snprintf(cmd, sizeof cmd, cmd_fmt, OT_CLI, model, DATA, outp);
    tu_sh("%s", cmd);
    json_error_t je;
    json_t *j = json_load_file(outp, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", outp, je.text);
    double v = tu_jnum(j, "map50") + tu_jnum(j, "map50_95");
    ck_assert(json_is_number(json_object_get(j, "precision")) && json_is_number(json_object_get(j, "recall")));
    json_decref(j);
    return v;
}

START_TEST(val_predict_and_errors) {
    setup();
    reference_run();
    char ck[1300], ox[1300], err[4096], cmd[8192];
    snprintf(ck, sizeof ck, "%s/runs/ref/weights/best.ckpt", W);
    snprintf(ox, sizeof ox, "%s/runs/ref/weights/best.onnx", W);
    const char *fmt = "'%s' val --model '%s' --data '%s' --img 64 --batch-size 4 --json > '%s'";
    double a = json_map50(fmt, ck), b = json_map50(fmt, ox);
    ck_assert_msg(fabs(a - b) < 1e-3, "val of the checkpoint %g vs its export %g", a, b);
    /* predict: a picture and a label file per image */
    tu_sh("rm -rf '%s/pred' && '%s' predict --model '%s' --source '%s/syn/images/val' --out '%s/pred' --conf 0.01 >/dev/null", W, OT_CLI,
       ox, W, W);
    snprintf(cmd, sizeof cmd, "test $(ls '%s/pred'/*.jpg | wc -l) -eq 8 && test $(ls '%s/pred/labels'/*.txt | wc -l) -eq 8", W, W);
    ck_assert_int_eq(system(cmd), 0);
    /* a model with another class count */
    snprintf(cmd, sizeof cmd, "'%s' train --model '%s' --data '%s/syn6/data.yaml' --img 64 --epochs 1 --quiet --project '%s/runs' --name bad",
             OT_CLI, ox, W, W);
    tu_sh("test -f '%s/syn6/data.yaml' || '%s' data synth --out '%s/syn6' --train 8 --val 4 --img 64 --nc 6 >/dev/null", W, OT_CLI, W);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(err, "3 classes") && strstr(err, "--reset-head"), "%s", err);
    /* a damaged checkpoint */
    char bad[1300];
    snprintf(bad, sizeof bad, "%s/bad.ckpt", W);
    tu_sh("head -c 100000 '%s' > '%s'", ck, bad);
    snprintf(cmd, sizeof cmd, "'%s' export --weights '%s' --out '%s/x.onnx'", OT_CLI, bad, W);
    rc = tu_run(cmd, err, sizeof err);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(err, "bad.ckpt") && strstr(err, "truncated"), "%s", err);
    char xo[1300];
    snprintf(xo, sizeof xo, "%s/x.onnx", W);
    ck_assert_msg(!tu_exists(xo), "no output may be written for a bad checkpoint");
}
END_TEST

/* bench train: a built-in size, its JSON keys, the --profile table, bad
 * arguments (exit 2 with the reason). */
/* bench train's convolution FLOPs against Ultralytics' own count: yolov5n at 640 with 80 classes is "4.5
 * GFLOPs" in its model summary (thop: multiply-adds x 2, convolutions and BatchNorm; ours: the convolutions). The
 * step's work is the forward plus the input and weight gradients (twice the forward each, the first layer
 * without an input gradient): a little under 3x. */
START_TEST(bench_train_flops) {
    setup();
    char out[1300];
    snprintf(out, sizeof out, "%s/bench640.json", W);
    tu_sh("OMP_NUM_THREADS=2 '%s' bench train --model yolov5n --batch-size 1 --img 640 --steps 1 --json > '%s'", OT_CLI, out);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", out, je.text);
    double f = json_number_value(json_object_get(j, "conv_gflop_forward")), st = json_number_value(json_object_get(j, "conv_gflop_step"));
    ck_assert_msg(f > 4.35 && f < 4.55, "yolov5n at 640: %g forward GFLOP, Ultralytics counts 4.5", f);
    ck_assert_msg(st > 2.8 * f && st < 3.0 * f, "the step's %g GFLOP against the forward's %g", st, f);
    json_decref(j);
}
END_TEST

START_TEST(bench_train_cli) {
    setup();
    char out[1300], cmd[8192], err[4096];
    snprintf(out, sizeof out, "%s/bench.json", W);
    tu_sh("OMP_NUM_THREADS=2 '%s' bench train --model yolov5n --nc 3 --batch-size 2 --img 64 --steps 2 --json > '%s'", OT_CLI, out);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", out, je.text);
    ck_assert(json_number_value(json_object_get(j, "images_per_s")) > 0);
    ck_assert(json_number_value(json_object_get(j, "peak_rss_mb")) > 0);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "batch_size")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "ranks")), 1);
    ck_assert(json_is_null(json_object_get(j, "share_of_peak"))); /* the CPU: no peak */
    ck_assert(json_number_value(json_object_get(j, "conv_tflops")) > 0);
    json_t *ms = json_object_get(j, "ms");
    static const char *keys[] = {"forward", "loss", "backward", "optimizer", "ema", "step"};
    for (int k = 0; k < 6; k++) ck_assert_msg(json_is_number(json_object_get(ms, keys[k])), "ms.%s missing", keys[k]);
    ck_assert(json_number_value(json_object_get(ms, "forward")) > 0 && json_number_value(json_object_get(ms, "backward")) > 0);
    json_decref(j);
    tu_sh("OMP_NUM_THREADS=2 '%s' bench train --model yolov5n --nc 3 --batch-size 2 --img 64 --steps 1 --profile > '%s/prof.txt'", OT_CLI, W);
    tu_sh("grep -q 'profile, ms per step' '%s/prof.txt' && grep -q '^  Conv  *60 ' '%s/prof.txt' && grep -q '(gradient zeroing)' '%s/prof.txt' && "
       "grep -q 'GFLOP/s' '%s/prof.txt'", W, W, W, W);
    snprintf(cmd, sizeof cmd, "'%s' bench train --model yolov5n --img 65", OT_CLI);
    ck_assert_int_eq(tu_run(cmd, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "multiple of 32"), "%s", err);
    snprintf(cmd, sizeof cmd, "'%s' bench train --model '%s/none.onnx'", OT_CLI, W);
    ck_assert_int_eq(tu_run(cmd, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "none.onnx"), "%s", err);
}
END_TEST

/* The other flags: rect batches (several shapes, a short last batch), single
 * class, AdamW, cosine LR, frozen layers (their weights must not move). */
START_TEST(flags_rect_single_cls_freeze_adamw) {
    setup();
    tu_sh("'%s' train --model yolov5n --data '%s' --img 64 --epochs 2 --batch-size 5 --workers 1 --quiet --noplots --exist-ok "
       "--rect --single-cls --freeze 3 --optimizer AdamW --cos-lr --noautoanchor --project '%s/runs' --name flags",
       OT_CLI, DATA, W);
    char p[1300];
    snprintf(p, sizeof p, "%s/runs/flags/weights/last.ckpt", W);
    ot_ckpt *c;
    ot_graph *g;
    ot_error e;
    ck_assert_msg(ot_ckpt_load(p, &c, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_ckpt_graph(c, &g, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(g->head.nc, 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(c->header, "optimizer"), "kind")), "AdamW");
    /* the same built-in model before training */
    uint8_t *buf;
    size_t len;
    const char *names[1] = {"item"};
    ck_assert_msg(ot_builtin_onnx("yolov5n", 1, 64, 0, names, &buf, &len, &e) == OT_OK, "%s", e.msg);
    ot_model *m;
    ck_assert_msg(ot_model_load_buffer(buf, len, ".", "yolov5n", &m, &e) == OT_OK, "%s", e.msg);
    free(buf);
    ot_graph *t0;
    ck_assert_msg(ot_prepare_training_graph(m, NULL, &t0, &e) == OT_OK, "%s", e.msg);
    int moved = 0, frozen = 0;
    for (int v = 0; v < t0->n_values; v++) {
        const ot_value *a = &t0->values[v];
        if (!(a->flags & OT_V_INIT) || strncmp(a->name, "model.", 6) != 0 || strstr(a->name, "running_")) continue;
        int layer = atoi(a->name + 6), w = ot_graph_find(g, a->name);
        ck_assert_msg(w >= 0, "%s missing from the checkpoint", a->name);
        bool same = g->values[w].init.nbytes == a->init.nbytes && memcmp(g->values[w].init.data, a->init.data, a->init.nbytes) == 0;
        if (layer < 3) { ck_assert_msg(same, "frozen %s changed", a->name); frozen++; }
        else if (!same) moved++;
    }
    ck_assert_int_gt(frozen, 0);
    ck_assert_int_gt(moved, 10);
    ot_graph_destroy(t0);
    ot_model_destroy(m);
    ot_graph_destroy(g);
    ot_ckpt_free(c);
}
END_TEST

/* One epoch from the real Ultralytics exports on 8 coco128 images, then export. */
static void shared_case(const char *model, const char *name, const char *form) {
    const char *shd = tu_shared();
    if (!shd) return;
    setup();
    char d[1300], cmd[8192];
    snprintf(d, sizeof d, "%s/coco8", W);
    if (!tu_exists(d)) {
        tu_sh("mkdir -p '%s/images' '%s/labels' && for f in $(ls '%s/data/coco128/images/train2017' | head -8); do "
           "ln -sf '%s/data/coco128/images/train2017/'$f '%s/images/'$f; b=${f%%.jpg}; "
           "cp '%s/data/coco128/labels/train2017/'$b.txt '%s/labels/' 2>/dev/null || true; done",
           d, d, shd, shd, d, shd, d);
        snprintf(cmd, sizeof cmd, "%s/data.yaml", d);
        FILE *f = fopen(cmd, "w");
        ck_assert(f);
        fprintf(f, "path: %s\ntrain: images\nval: images\nnames:\n", d);
        char nf[1300], line[256];
        snprintf(nf, sizeof nf, "%s/data/coco128/names.txt", shd);
        FILE *n = fopen(nf, "r");
        ck_assert(n);
        while (fgets(line, sizeof line, n)) {
            line[strcspn(line, "\r\n")] = 0;
            if (*line) fprintf(f, "  - '%s'\n", line);
        }
        fclose(n);
        fclose(f);
    }
    tu_sh("'%s' train --model '%s/models/%s' --data '%s/data.yaml' --img 64 --epochs 1 --batch-size 4 --workers 1 --quiet --noplots "
       "--noautoanchor --exist-ok --project '%s/runs' --name %s",
       OT_CLI, shd, model, d, W, name);
    char ck[1300], out[1300];
    snprintf(ck, sizeof ck, "%s/runs/%s/weights/last.ckpt", W, name);
    snprintf(out, sizeof out, "%s/%s_inference.onnx", W, name);
    tu_sh("'%s' export --weights '%s' --out '%s' --form inference --img 64 >/dev/null", OT_CLI, ck, out);
    check_export(ck, out, "inference");
    /* the default form is the source's */
    snprintf(out, sizeof out, "%s/%s_default.onnx", W, name);
    tu_sh("'%s' export --weights '%s' --out '%s' --img 64 >/dev/null", OT_CLI, ck, out);
    check_export(ck, out, form);
}

START_TEST(shared_yolov5s_inference_export) { shared_case("yolov5s.onnx", "s_inf", "inference"); }
END_TEST
START_TEST(shared_yolov5s_bn_export) { shared_case("yolov5s-bn.onnx", "s_bn", "raw-bn"); }
END_TEST

int main(void) {
    Suite *s = suite_create("train_run");
    TCase *t = tcase_create("train_run");
    tcase_set_timeout(t, 900);
    tcase_add_test(t, resume_after_kill_mid_epoch);
    tcase_add_test(t, resume_after_kill_in_checkpoint_write);
    tcase_add_test(t, export_every_form_matches_checkpoint);
    tcase_add_test(t, val_predict_and_errors);
    tcase_add_test(t, flags_rect_single_cls_freeze_adamw);
    tcase_add_test(t, bench_train_cli);
    tcase_add_test(t, bench_train_flops);
    tcase_add_test(t, shared_yolov5s_inference_export);
    tcase_add_test(t, shared_yolov5s_bn_export);
    suite_add_tcase(s, t);
    return tu_main(s);
}
