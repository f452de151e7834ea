/* test_import.c: bad input gets one clear line on stderr and exit code 2,
 * never a crash or a hang. Broken models come from
 * tools/ref/make_bad_models.py (tests/fixtures/bad, with the words the error
 * must contain); files that are not ONNX at all are made here. */
#include "core/npy.h"
#include "testutil.h"
#include <string.h>

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* The CLI must exit 2 with exactly one stderr line containing each needle. */
static void expect_cli_error(const char *args, const char *needle1, const char *needle2) {
    char cmd[16384], err[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null", OT_CLI, args);
    int rc = tu_run(cmd, err, sizeof err);
    ck_assert_msg(rc == 2, "exit %d (want 2) for: %s\nstderr: %s", rc, args, err);
    ck_assert_msg(count_lines(err) == 1, "want one stderr line for %s, got:\n%s", args, err);
    ck_assert_msg(strncmp(err, "onnx-train: ", 12) == 0, "stderr: %s", err);
    if (needle1) ck_assert_msg(strstr(err, needle1), "'%s' not in: %s", needle1, err);
    if (needle2) ck_assert_msg(strstr(err, needle2), "'%s' not in: %s", needle2, err);
}

START_TEST(bad_models_fixtures) {
    FILE *f = fopen(OT_FIXTURES "/bad/cases.txt", "r");
    ck_assert(f != NULL);
    char file[256], needle[256], path[4096], args[8192];
    int n = 0;
    while (fscanf(f, "%255s %255s", file, needle) == 2) {
        snprintf(path, sizeof path, "%s/bad/%s", OT_FIXTURES, file);
        ot_model *m = NULL;
        ot_error e;
        ot_status st = ot_model_load(path, &m, &e);
        ck_assert_msg(st != OT_OK, "%s loaded", file);
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(e.msg, needle) && strstr(e.msg, file), "%s: message '%s' lacks '%s' or the file name", file, e.msg, needle);
        snprintf(args, sizeof args, "info '%s'", path);
        expect_cli_error(args, needle, file);
        snprintf(args, sizeof args, "forward '%s' --random-input 1 --out '%s/o'", path, tu_work());
        expect_cli_error(args, needle, file);
        n++;
    }
    fclose(f);
    ck_assert_int_ge(n, 15);
}
END_TEST

static void write_bytes(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    if (n) ck_assert_uint_eq(fwrite(d, 1, n, f), n);
    fclose(f);
}

static unsigned char *model_bytes(size_t *len) {
    char cmd[8192], path[4096];
    snprintf(cmd, sizeof cmd, "tar -xJf '%s/yolov5n-c3-416.tar.xz' -C '%s'", OT_FIXTURES, tu_work());
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/yolov5n-c3-416.onnx", tu_work());
    FILE *f = fopen(path, "rb");
    ck_assert(f != NULL);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len);
    ck_assert_uint_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

START_TEST(not_onnx_files) {
    char path[4096], args[8192];
    snprintf(args, sizeof args, "info '%s/does-not-exist.onnx'", tu_work());
    expect_cli_error(args, "does-not-exist.onnx", "cannot open");
    snprintf(path, sizeof path, "%s/empty.onnx", tu_work());
    write_bytes(path, "", 0);
    snprintf(args, sizeof args, "info '%s'", path);
    expect_cli_error(args, "empty.onnx", "empty");
    snprintf(args, sizeof args, "info '%s'", tu_work()); /* a folder */
    expect_cli_error(args, "not a regular file", NULL);
    /* random bytes: several seeds and sizes */
    unsigned char buf[4096];
    uint32_t x = 12345;
    for (int trial = 0; trial < 20; trial++) {
        size_t n = 1 + (size_t)(trial * 211) % sizeof buf;
        for (size_t i = 0; i < n; i++) { x = x * 1664525u + 1013904223u; buf[i] = (unsigned char)(x >> 24); }
        snprintf(path, sizeof path, "%s/random%d.onnx", tu_work(), trial);
        write_bytes(path, buf, n);
        ot_model *m;
        ot_error e;
        ck_assert(ot_model_load(path, &m, &e) != OT_OK);
        ck_assert_ptr_nonnull(strstr(e.msg, path));
    }
    snprintf(args, sizeof args, "info '%s/random3.onnx'", tu_work());
    expect_cli_error(args, "random3.onnx", NULL);
}
END_TEST

START_TEST(truncated_model) {
    size_t len;
    unsigned char *b = model_bytes(&len);
    char path[4096], args[8192];
    snprintf(path, sizeof path, "%s/truncated.onnx", tu_work());
    /* cut inside the header, inside the graph, inside an initializer, one byte short */
    size_t cuts[] = {7, 200, len / 3, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(path, b, cuts[i]);
        ot_model *m;
        ot_error e;
        ck_assert_msg(ot_model_load(path, &m, &e) != OT_OK, "cut at %zu loaded", cuts[i]);
        ck_assert_ptr_nonnull(strstr(e.msg, "truncated.onnx"));
    }
    snprintf(args, sizeof args, "info '%s'", path);
    expect_cli_error(args, "truncated.onnx", NULL);
    free(b);
}
END_TEST

START_TEST(forward_wrong_input) {
    size_t len;
    free(model_bytes(&len));
    char model[4096], npy[4096], args[16384];
    snprintf(model, sizeof model, "%s/yolov5n-c3-416.onnx", tu_work());
    /* wrong shape */
    static float d[1 * 3 * 32 * 32];
    ot_tensor t = {OT_F32, {4, {1, 3, 32, 32}}, d};
    ot_error e;
    snprintf(npy, sizeof npy, "%s/small.npy", tu_work());
    ck_assert_int_eq(ot_npy_write(npy, &t, &e), OT_OK);
    snprintf(args, sizeof args, "forward '%s' --input '%s' --out '%s/o'", model, npy, tu_work());
    expect_cli_error(args, "'images' expects shape [1,3,416,416], got [1,3,32,32]", NULL);
    /* wrong rank */
    t.shape = (ot_shape){3, {3, 32, 32}};
    ck_assert_int_eq(ot_npy_write(npy, &t, &e), OT_OK);
    expect_cli_error(args, "'images' expects shape", NULL);
    /* not a .npy */
    write_bytes(npy, "garbage", 7);
    expect_cli_error(args, "small.npy", "not a .npy");
    /* two inputs for a one-input model */
    snprintf(args, sizeof args, "forward '%s' --input '%s' --input '%s' --out '%s/o'", model, npy, npy, tu_work());
    expect_cli_error(args, "1 input(s), 2 --input", NULL);
    /* usage errors */
    snprintf(args, sizeof args, "forward '%s'", model);
    expect_cli_error(args, "--out", NULL);
    expect_cli_error("frobnicate", "unknown command", NULL);
}
END_TEST

START_TEST(dynamic_batch_model) {
    /* symbolic batch: planned per input shape; batch 3 works, declared dims still enforced */
    ot_model *m;
    ot_error e;
    ck_assert_msg(ot_model_load(OT_FIXTURES "/good/symbolic_batch/model.onnx", &m, &e) == OT_OK, "%s", e.msg);
    ot_shape s = ot_model_input_shape(m, 0);
    ck_assert_int_eq(s.d[0], -1);
    ot_tensor in0;
    ck_assert_int_eq(ot_npy_read(OT_FIXTURES "/good/symbolic_batch/in0.npy", &in0, &e), OT_OK);
    ot_shape s3 = in0.shape;
    s3.d[0] = 3;
    ot_session *sess;
    ck_assert_msg(ot_session_create(m, &s3, &sess, &e) == OT_OK, "%s", e.msg);
    ot_session_destroy(sess);
    ot_shape bad = in0.shape;
    bad.d[1] += 1;
    ck_assert_int_eq(ot_session_create(m, &bad, &sess, &e), OT_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(e.msg, "expects shape"));
    free(in0.data);
    ot_model_destroy(m);
}
END_TEST

/* Every fuzzer finding (tools/fuzz/run.sh) stays a regression input: it must
 * load or fail with a message, under the sanitizers in `make fuzz` and here. */
START_TEST(fuzz_regressions) {
    char cmd[8192], list[4096], name[512];
    snprintf(list, sizeof list, "%s/fuzz.txt", tu_work());
    snprintf(cmd, sizeof cmd, "ls '%s/fuzz' > '%s'", OT_FIXTURES, list);
    ck_assert_int_eq(system(cmd), 0);
    FILE *f = fopen(list, "r");
    int n = 0;
    while (fscanf(f, "%511s", name) == 1) {
        char path[4096];
        snprintf(path, sizeof path, "%s/fuzz/%s", OT_FIXTURES, name);
        FILE *g = fopen(path, "rb");
        static unsigned char buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, g);
        fclose(g);
        ot_model *m = NULL;
        ot_error e = {OT_OK, ""};
        if (ot_model_load_buffer(buf, len, NULL, name, &m, &e) == OT_OK) ot_model_destroy(m);
        else ck_assert_msg(e.msg[0] && strstr(e.msg, name), "%s: empty or unnamed message '%s'", name, e.msg);
        n++;
    }
    fclose(f);
    ck_assert_int_ge(n, 5);
}
END_TEST

START_TEST(absurd_input_shape) {
    /* a dynamic-batch model asked for an absurd batch: an error, not a giant allocation */
    ot_model *m;
    ot_error e;
    ck_assert_int_eq(ot_model_load(OT_FIXTURES "/good/symbolic_batch/model.onnx", &m, &e), OT_OK);
    ot_shape s = ot_model_input_shape(m, 0);
    s.d[0] = 1 << 30;
    ot_session *sess;
    ck_assert_int_ne(ot_session_create(m, &s, &sess, &e), OT_OK);
    ot_model_destroy(m);
}
END_TEST

int main(void) {
    ot_set_quiet(true);
    Suite *s = suite_create("import");
    TCase *t = tcase_create("import");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, bad_models_fixtures);
    tcase_add_test(t, not_onnx_files);
    tcase_add_test(t, truncated_model);
    tcase_add_test(t, forward_wrong_input);
    tcase_add_test(t, dynamic_batch_model);
    tcase_add_test(t, fuzz_regressions);
    tcase_add_test(t, absurd_input_shape);
    suite_add_tcase(s, t);
    return tu_main(s);
}
