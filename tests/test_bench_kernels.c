/* test_bench_kernels.c: `onnx-train bench kernels` without a GPU (CI has none):
 * --help has an example; the benchmark itself fails at once with one clear
 * line and exit code 2 (a CUDA build: why there is no usable device; a build
 * without CUDA: that it has none); --shapes-json, host work only, writes the
 * shapes tools/bench/torch_kernels.py reads (yolov5s: 7.2M parameters in 177
 * tensors, 2 upsample inputs, 3 heads with matched targets). On a machine with
 * a GPU the failure case is skipped (tools/gpu_check.sh runs the real thing). */
#include "core/device.h"
#include "testutil.h"
#include <jansson.h>
#include <string.h>

START_TEST(help_has_example) {
    char err[4096], cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' bench kernels --help > '%s/help.txt'", OT_CLI, tu_work());
    ck_assert_int_eq(tu_run(cmd, err, sizeof err), 0);
    char path[512], buf[8192] = "";
    snprintf(path, sizeof path, "%s/help.txt", tu_work());
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    buf[k] = 0;
    fclose(f);
    ck_assert_msg(strstr(buf, "example:\n  onnx-train bench kernels --device 0"), "%s", buf);
    /* and `bench --help` lists it */
    snprintf(cmd, sizeof cmd, "'%s' bench --help | grep -q '^  kernels '", OT_CLI);
    ck_assert_int_eq(tu_run(cmd, err, sizeof err), 0);
}
END_TEST

START_TEST(no_gpu_fails_clearly) {
    char why[256] = "";
    if (ot_cuda_device_count(why, sizeof why) > 0) {
        printf("SKIP (this machine has a GPU): no_gpu_fails_clearly\n");
        return;
    }
    const char *args[] = {"", "--device 0 --json"};
    for (int i = 0; i < 2; i++) {
        char err[4096], cmd[1024];
        snprintf(cmd, sizeof cmd, "'%s' bench kernels %s > /dev/null", OT_CLI, args[i]);
        ck_assert_int_eq(tu_run(cmd, err, sizeof err), 2);
        /* one line on stderr, naming the command and the reason */
        ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "more than one line: %s", err);
        ck_assert_msg(strstr(err, "bench kernels: "), "%s", err);
#ifdef ONNXT_HAVE_CUDA
        ck_assert_msg(strstr(err, "no usable CUDA device") || strstr(err, "CUDA device"), "%s", err);
#else
        ck_assert_msg(strstr(err, "this build has no CUDA"), "%s", err);
#endif
    }
}
END_TEST

START_TEST(shapes_json) {
    char err[4096], cmd[1024], path[512];
    snprintf(path, sizeof path, "%s/shapes.json", tu_work());
    snprintf(cmd, sizeof cmd, "'%s' bench kernels --shapes-json '%s'", OT_CLI, path);
    ck_assert_msg(tu_run(cmd, err, sizeof err) == 0, "%s", err);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    ck_assert_msg(j, "%s", je.text);
    json_t *params = json_object_get(j, "params");
    ck_assert_int_eq((int)json_array_size(params), 177);
    int64_t total = 0;
    for (size_t i = 0; i < json_array_size(params); i++) {
        json_t *sh = json_object_get(json_array_get(params, i), "shape");
        int64_t n = 1;
        for (size_t k = 0; k < json_array_size(sh); k++) n *= json_integer_value(json_array_get(sh, k));
        total += n;
    }
    ck_assert_int_eq(total, 7235389); /* yolov5s at 80 classes */
    ck_assert_int_eq((int)json_array_size(json_object_get(j, "buffers")), 114);
    json_t *up = json_object_get(j, "upsample");
    ck_assert_int_eq((int)json_array_size(up), 2);
    ck_assert_int_eq((int)json_integer_value(json_array_get(json_array_get(up, 0), 1)), 256);
    json_t *heads = json_object_get(j, "heads"), *m = json_object_get(j, "matched");
    ck_assert_int_eq((int)json_array_size(heads), 3);
    ck_assert_int_eq((int)json_integer_value(json_array_get(json_array_get(heads, 0), 0)), 16);
    ck_assert_int_eq((int)json_integer_value(json_array_get(json_array_get(heads, 0), 3)), 80);
    for (int l = 0; l < 3; l++) ck_assert_int_gt((int)json_integer_value(json_array_get(m, (size_t)l)), 0);
    json_decref(j);
}
END_TEST

int main(void) {
    Suite *s = suite_create("bench_kernels");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, help_has_example);
    tcase_add_test(tc, no_gpu_fails_clearly);
    tcase_add_test(tc, shapes_json);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int nf = srunner_ntests_failed(r);
    srunner_free(r);
    return nf ? 1 : 0;
}
