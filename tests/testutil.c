/* testutil.c: helpers shared by the Check suites. */
#include "testutil.h"
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
