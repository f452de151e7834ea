/* test_models.c: whole YOLOv5 exports against ONNX Runtime and Ultralytics.
 *
 * - yolov5n, 3 classes, 416 (tests/fixtures/yolov5n-c3-416.tar.xz, a real
 *   Ultralytics export made by tools/ref/make_yolov5n_fixture.py): every
 *   output value against ORT.
 * - the four exports in ../shared/models: ORT outputs subsampled at a fixed
 *   stride (tests/fixtures/shared, tools/ref/make_shared_refs.py) plus the
 *   full output's max |value|.
 * Tolerance (from the issue): max |ours - ort| / max(1, |ort|) <= 1e-4; the
 *   decode multiplies by strides and anchors (up to ~600 px), so this is a
 *   relative error of ~1e-7 on the large values and 1e-4 absolute on logits.
 * - info --json: head and form against what Ultralytics built the models with
 *   (nc, anchors of yolov5s.yaml, strides 8/16/32), parameter counts against
 *   Ultralytics' model summaries (fused YOLOv5s: 7,225,885; with BN: 7,235,389). */
#include "core/npy.h"
#include "testutil.h"
#include <jansson.h>
#include <math.h>
#include <string.h>

#define MODEL_TOL 1e-4

static ot_model *load(const char *path) {
    ot_model *m;
    ot_error e;
    ck_assert_msg(ot_model_load(path, &m, &e) == OT_OK, "%s", e.msg);
    return m;
}

/* run with the pattern input (seed 1) of the declared shape */
static ot_session *run_pattern(ot_model *m, ot_tensor *out, float **buf) {
    ot_shape s = ot_model_input_shape(m, 0);
    int64_t n;
    ck_assert(ot_shape_numel(&s, &n));
    *buf = malloc((size_t)n * sizeof(float));
    ot_fill_pattern(*buf, n, 1);
    ot_tensor in = {OT_F32, s, *buf};
    ot_session *sess;
    ot_error e;
    ck_assert_msg(ot_session_create(m, NULL, &sess, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_session_run(sess, &in, out, &e) == OT_OK, "%s", e.msg);
    /* a second run on the same plan works (nothing is re-planned or allocated) */
    ot_tensor out2[8];
    ck_assert_msg(ot_session_run(sess, &in, out2, &e) == OT_OK, "%s", e.msg);
    return sess;
}

START_TEST(yolov5n_c3_416_matches_ort) {
    char cmd[8192], path[4096];
    snprintf(cmd, sizeof cmd, "tar -xJf '%s/yolov5n-c3-416.tar.xz' -C '%s'", OT_FIXTURES, tu_work());
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/yolov5n-c3-416.onnx", tu_work());
    ot_model *m = load(path);
    const ot_yolo_head *h = ot_model_head(m);
    ck_assert(h->found);
    ck_assert_int_eq(h->nc, 3);
    ck_assert_int_eq(h->form, OT_FORM_INFERENCE);
    ck_assert_str_eq(h->anchor_source, "decode");
    ck_assert(h->anchors[2][2][0] == 373 && h->anchors[2][2][1] == 326);
    ot_tensor out[8];
    float *buf;
    ot_session *s = run_pattern(m, out, &buf);
    ot_tensor ref;
    ot_error e;
    snprintf(path, sizeof path, "%s/ref_output0.npy", tu_work());
    ck_assert_msg(ot_npy_read(path, &ref, &e) == OT_OK, "%s", e.msg);
    ck_assert(ot_shape_eq(&ref.shape, &out[0].shape));
    ck_assert_int_eq(ref.shape.d[1], 10647);
    ck_assert_int_eq(ref.shape.d[2], 8);
    double err = tu_scaled_err(out[0].data, ref.data, ot_numel(&ref.shape));
    printf("yolov5n-c3-416: scaled error vs ORT %.3g\n", err);
    ck_assert_msg(err <= MODEL_TOL, "scaled error %.3g", err);
    free(ref.data);
    free(buf);
    ot_session_destroy(s);
    ot_model_destroy(m);
}
END_TEST

static void check_shared(const char *name) {
    const char *sh = tu_shared();
    if (!sh) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s.onnx", sh, name);
    ot_model *m = load(path);
    ot_tensor out[8];
    float *buf;
    ot_session *s = run_pattern(m, out, &buf);
    snprintf(path, sizeof path, "%s/shared/%s.txt", OT_FIXTURES, name);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    int k, checked = 0;
    char oname[256];
    long long n, stride, offset;
    double max_abs;
    while (fscanf(f, "%d %255s %lld %lld %lld %lf", &k, oname, &n, &stride, &offset, &max_abs) == 6) {
        ck_assert_str_eq(ot_model_output_name(m, k), oname);
        ck_assert_int_eq(ot_numel(&out[k].shape), n);
        ot_tensor ref;
        ot_error e;
        snprintf(path, sizeof path, "%s/shared/%s.%d.npy", OT_FIXTURES, name, k);
        ck_assert_msg(ot_npy_read(path, &ref, &e) == OT_OK, "%s", e.msg);
        const float *o = out[k].data;
        double err = 0, mx = 0;
        int64_t cnt = ot_numel(&ref.shape);
        float *sub = malloc((size_t)cnt * sizeof(float));
        for (int64_t i = 0; i < cnt; i++) sub[i] = o[offset + i * stride];
        err = tu_scaled_err(sub, ref.data, cnt);
        for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(o[i]));
        double mx_err = fabs(mx - max_abs) / fmax(1.0, max_abs);
        printf("%s %s: %lld sampled values, scaled error %.3g; max|y| %.6g vs ORT %.6g\n", name, oname, (long long)cnt, err, mx, max_abs);
        ck_assert_msg(err <= MODEL_TOL, "%s %s: scaled error %.3g", name, oname, err);
        ck_assert_msg(mx_err <= MODEL_TOL, "%s %s: max |y| %.6g vs %.6g", name, oname, mx, max_abs);
        free(sub);
        free(ref.data);
        checked++;
    }
    fclose(f);
    ck_assert_int_eq(checked, ot_model_num_outputs(m));
    free(buf);
    ot_session_destroy(s);
    ot_model_destroy(m);
}

START_TEST(shared_yolov5s_matches_ort) { check_shared("yolov5s"); }
END_TEST
START_TEST(shared_yolov5s_320_matches_ort) { check_shared("yolov5s-320"); }
END_TEST
START_TEST(shared_yolov5s_train_matches_ort) { check_shared("yolov5s-train"); }
END_TEST
START_TEST(shared_yolov5s_bn_matches_ort) { check_shared("yolov5s-bn"); }
END_TEST

/* ---- info --json ---- */
static json_t *info_json(const char *model) {
    char cmd[16384], out[4096];
    snprintf(out, sizeof out, "%s/info.json", tu_work());
    snprintf(cmd, sizeof cmd, "'%s' info '%s' --json > '%s'", OT_CLI, model, out);
    ck_assert_int_eq(tu_run(cmd, NULL, 0), 0);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    ck_assert_msg(j != NULL, "bad JSON: %s", je.text);
    return j;
}

static const double yolov5_anchors[3][3][2] = {{{10, 13}, {16, 30}, {33, 23}}, {{30, 61}, {62, 45}, {59, 119}}, {{116, 90}, {156, 198}, {373, 326}}};

static void check_info(const char *name, const char *form, const char *anchor_src, long long params, int in_h) {
    const char *sh = tu_shared();
    if (!sh) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s.onnx", sh, name);
    json_t *j = info_json(path);
    ck_assert_str_eq(json_string_value(json_object_get(j, "form")), form);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "parameters")), params);
    json_t *in0 = json_array_get(json_object_get(j, "inputs"), 0);
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(in0, "shape"), 2)), in_h);
    ck_assert(json_object_get(j, "outputs") && json_object_get(j, "ops"));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "ops"), "Conv")), 60);
    json_t *h = json_object_get(j, "head");
    ck_assert_int_eq(json_integer_value(json_object_get(h, "nc")), 80);
    ck_assert_int_eq(json_integer_value(json_object_get(h, "na")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(h, "anchor_source")), anchor_src);
    for (int l = 0; l < 3; l++) {
        ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(h, "strides"), l)), 8 << l);
        for (int a = 0; a < 3; a++)
            for (int k = 0; k < 2; k++)
                ck_assert(fabs(json_real_value(json_array_get(json_array_get(json_array_get(json_object_get(h, "anchors"), l), a), k)) -
                               yolov5_anchors[l][a][k]) < 1e-3);
    }
    json_decref(j);
}

START_TEST(info_yolov5s) { check_info("yolov5s", "inference", "decode", 7225885, 640); }
END_TEST
START_TEST(info_yolov5s_320) { check_info("yolov5s-320", "inference", "decode", 7225885, 320); }
END_TEST
START_TEST(info_yolov5s_train) { check_info("yolov5s-train", "raw", "default", 7225885, 640); }
END_TEST
START_TEST(info_yolov5s_bn) { check_info("yolov5s-bn", "raw-bn", "metadata", 7235389, 320); }
END_TEST

int main(void) {
    ot_set_quiet(true);
    Suite *s = suite_create("models");
    TCase *t = tcase_create("models");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, yolov5n_c3_416_matches_ort);
    tcase_add_test(t, shared_yolov5s_matches_ort);
    tcase_add_test(t, shared_yolov5s_320_matches_ort);
    tcase_add_test(t, shared_yolov5s_train_matches_ort);
    tcase_add_test(t, shared_yolov5s_bn_matches_ort);
    tcase_add_test(t, info_yolov5s);
    tcase_add_test(t, info_yolov5s_320);
    tcase_add_test(t, info_yolov5s_train);
    tcase_add_test(t, info_yolov5s_bn);
    suite_add_tcase(s, t);
    return tu_main(s);
}
