/* testutil.c: helpers shared by the Check suites. */
#include "testutil.h"
#include "core/dist.h"
#include "train/checkpoint.h"
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

bool tu_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

double tu_scaled_err(const float *a, const float *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

int tu_run(const char *cmd, char *err, size_t errlen) {
    char full[8192];
    const char *tmp = "/tmp";
    char errf[512];
    snprintf(errf, sizeof errf, "%s/ot_test_stderr_%d.txt", tmp, (int)getpid());
    snprintf(full, sizeof full, "%s 2>%s", cmd, errf);
    int st = system(full);
    if (err && errlen) {
        err[0] = 0;
        FILE *f = fopen(errf, "r");
        if (f) {
            size_t k = fread(err, 1, errlen - 1, f);
            err[k] = 0;
            fclose(f);
        }
    }
    remove(errf);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

const char *tu_shared(void) {
    if (tu_exists(OT_SHARED "/models/yolov5s.onnx")) return OT_SHARED;
    fprintf(stderr, "SKIP: ../shared is not present (models and coco128 live there); skipping tests that need it\n");
    return NULL;
}

const char *tu_work(void) {
    static bool made;
    if (!made) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", OT_WORK);
        if (system(cmd) != 0) fprintf(stderr, "cannot create %s\n", OT_WORK);
        made = true;
    }
    return OT_WORK;
}

int tu_main(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

double tu_jnum(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    ck_assert_msg(v != NULL, "missing key %s", k);
    return json_number_value(v);
}

void tu_refcase_load(tu_refcase *c, const char *shared, const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s.json", OT_FIXTURES, dir, name);
    json_error_t je;
    c->ref = json_load_file(path, 0, &je);
    ck_assert_msg(c->ref != NULL, "%s: %s", path, je.text);
    snprintf(path, sizeof path, "%s/models/%s", shared, json_string_value(json_object_get(c->ref, "model")));
    ot_error e;
    ck_assert_msg(ot_model_load(path, &c->model, &e) == OT_OK, "%s", e.msg);
    json_t *js = json_object_get(c->ref, "input_shape");
    ck_assert_int_eq(json_array_size(js), 4);
    c->shape.rank = 4;
    for (int i = 0; i < 4; i++) c->shape.d[i] = json_integer_value(json_array_get(js, (size_t)i));
    int64_t n = ot_numel(&c->shape);
    c->x = malloc(sizeof(float) * (size_t)n);
    ck_assert_ptr_nonnull(c->x);
    ot_fill_pattern(c->x, n, (uint32_t)tu_jnum(c->ref, "seed"));
}

void tu_refcase_free(tu_refcase *c) {
    free(c->x);
    ot_model_destroy(c->model);
    json_decref(c->ref);
}

void tu_sh(const char *fmt, ...) {
    char cmd[8192], err[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc == 0, "%s -> %d: %s", cmd, rc, err);
}

/* ---- data-parallel runs ---- */

bool tu_have_mpi(void) {
    if (!ot_dist_available() || system("command -v mpirun >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: no mpirun or no MPI in this build (tools/setup.sh installs openmpi)\n");
        return false;
    }
    /* a machine where mpirun cannot start two local processes at all is an environment problem, not ours */
    if (system("timeout 60 " TU_MPIRUN " true >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: mpirun cannot start 2 local processes here (try: " TU_MPIRUN " true)\n");
        return false;
    }
    return true;
}

void tu_dp_data(const char *work, int ntrain) {
    char p[1300];
    snprintf(p, sizeof p, "%s/d/data.yaml", work);
    if (tu_exists(p)) return;
    tu_sh("'%s' data synth --out '%s/d' --train %d --val 4 --img 64 --seed 5 >/dev/null", OT_CLI, work, ntrain);
    tu_sh("cd '%s/d/labels/train' && f=$(ls | head -1) && for x in *.txt; do [ \"$x\" = \"$f\" ] || cp \"$f\" \"$x\"; done", work);
    snprintf(p, sizeof p, "%s/hyp.yaml", work);
    FILE *f = fopen(p, "w");
    ck_assert(f);
    fputs("mosaic: 0.0\ntranslate: 0.0\nscale: 0.0\nfliplr: 0.0\nhsv_h: 0.0\nhsv_s: 0.0\nhsv_v: 0.0\n", f);
    fclose(f);
}

int tu_losses(const char *log, int epoch, double *v, int cap) {
    FILE *f = fopen(log, "r");
    ck_assert_msg(f != NULL, "cannot open %s", log);
    int n = 0, e, b;
    double x[3];
    while (n + 3 <= cap && fscanf(f, "%d %d %lf %lf %lf", &e, &b, &x[0], &x[1], &x[2]) == 5)
        if (epoch < 0 || e == epoch)
            for (int k = 0; k < 3; k++) v[n++] = x[k];
    fclose(f);
    return n;
}

double tu_loss_diff(const char *log_a, const char *log_b, int epoch, int count) {
    enum { CAP = 600 };
    double a[CAP], b[CAP];
    int na = tu_losses(log_a, epoch, a, CAP), nb = tu_losses(log_b, epoch, b, CAP);
    ck_assert_msg(na == count && nb == count, "losses of epoch %d: %d in %s and %d in %s, expected %d", epoch, na, log_a, nb,
                  log_b, count);
    double worst = 0;
    for (int i = 0; i < na; i++) worst = fmax(worst, fabs(a[i] - b[i]) / fmax(1e-30, fabs(a[i])));
    fprintf(stderr, "losses %s vs %s (epoch %d): max relative %.3g over %d values\n", log_a, log_b, epoch, worst, na);
    return worst;
}

ot_graph *tu_ckpt_weights(const char *ckpt, int epoch, int ema_updates) {
    ot_ckpt *c;
    ot_graph *g;
    ot_error e;
    ck_assert_msg(ot_ckpt_load(ckpt, &c, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_ckpt_graph(c, &g, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq((int)json_integer_value(json_object_get(c->header, "epoch")), epoch);
    if (ema_updates >= 0)
        ck_assert_msg(json_integer_value(json_object_get(c->header, "ema_updates")) == ema_updates,
                      "%s: %lld EMA updates (optimizer steps), expected %d", ckpt,
                      (long long)json_integer_value(json_object_get(c->header, "ema_updates")), ema_updates);
    ot_ckpt_free(c);
    return g;
}

double tu_weight_diff(const ot_graph *a, const ot_graph *b, const char *what) {
    double worst = 0, num = 0, den = 0;
    const char *at = "";
    int n = 0;
    for (int v = 0; v < a->n_values; v++) {
        const ot_value *x = &a->values[v];
        if (!(x->flags & OT_V_INIT) || x->init.dtype != OT_F32) continue;
        int u = ot_graph_find(b, x->name);
        ck_assert_msg(u >= 0 && b->values[u].init.nbytes == x->init.nbytes, "%s: %s differs in shape", what, x->name);
        const float *p = x->init.data, *q = b->values[u].init.data;
        for (size_t i = 0; i < x->init.nbytes / sizeof(float); i++) {
            double d = fabs((double)p[i] - q[i]);
            if (d / fmax(1.0, fabs(p[i])) > worst) at = x->name;
            worst = fmax(worst, d / fmax(1.0, fabs(p[i])));
            num += d * d;
            den += (double)p[i] * p[i];
        }
        n++;
    }
    ck_assert_int_gt(n, 100);
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    fprintf(stderr, "weights %s: max scaled %.3g (%s), relative L2 %.3g over %d tensors\n", what, worst, at, rel, n);
    return fmax(worst, rel);
}

double tu_runs_weight_diff(const char *work, const char *one, const char *two, int epoch, int ema_updates) {
    char p[1300], q[1300], what[200];
    snprintf(p, sizeof p, "%s/runs/%s/weights/last.ckpt", work, one);
    snprintf(q, sizeof q, "%s/runs/%s/weights/last.ckpt", work, two);
    snprintf(what, sizeof what, "%s vs %s", one, two);
    ot_graph *a = tu_ckpt_weights(p, epoch, ema_updates), *b = tu_ckpt_weights(q, epoch, ema_updates);
    double d = tu_weight_diff(a, b, what);
    ot_graph_destroy(a);
    ot_graph_destroy(b);
    return d;
}
