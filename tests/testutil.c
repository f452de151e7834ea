/* testutil.c: helpers shared by the Check suites. */
#include "testutil.h"
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
