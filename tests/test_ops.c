/* test_ops.c: every op's CPU forward against ONNX Runtime on single-op models
 * (tests/fixtures/ops, made by tools/ref/make_op_fixtures.py; also
 * tests/fixtures/good for import variants).
 *
 * Tolerance: max |ours - ort| / max(1, |ort|) <= 2e-5. Float32 rounding is
 * 6e-8 per operation; a convolution or batch-norm reduction sums up to a few
 * hundred products in a different order than ORT (im2col+OpenBLAS vs MLAS),
 * which bounds the difference by about n*eps*|terms| ~ 1e-5. Copies, pools
 * and elementwise ops come out exact. */
#include "core/npy.h"
#include "testutil.h"
#include <string.h>

#define OPS_TOL 2e-5

static int run_case(const char *dir, const char *name, double *worst) {
    char path[4096];
    ot_error e;
    ot_model *m;
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, name);
    if (ot_model_load(path, &m, &e)) { fprintf(stderr, "%s: load failed: %s\n", name, e.msg); return 1; }
    int ni = ot_model_num_inputs(m), no = ot_model_num_outputs(m), bad = 0;
    ot_tensor in[8], out[16];
    ot_shape shapes[8];
    ck_assert_int_le(ni, 8);
    ck_assert_int_le(no, 16);
    for (int i = 0; i < ni; i++) {
        snprintf(path, sizeof path, "%s/%s/in%d.npy", dir, name, i);
        ck_assert_msg(ot_npy_read(path, &in[i], &e) == OT_OK, "%s", e.msg);
        shapes[i] = in[i].shape;
    }
    ot_session *s;
    if (ot_session_create(m, shapes, &s, &e) || ot_session_run(s, in, out, &e)) {
        fprintf(stderr, "%s: %s\n", name, e.msg);
        bad = 1;
    } else {
        for (int k = 0; k < no; k++) {
            ot_tensor ref;
            snprintf(path, sizeof path, "%s/%s/out%d.npy", dir, name, k);
            ck_assert_msg(ot_npy_read(path, &ref, &e) == OT_OK, "%s", e.msg);
            if (!ot_shape_eq(&ref.shape, &out[k].shape) || out[k].dtype != OT_F32) {
                char a[160], b[160];
                fprintf(stderr, "%s: output %d shape %s, ORT %s\n", name, k, ot_shape_str(&out[k].shape, a, sizeof a),
                        ot_shape_str(&ref.shape, b, sizeof b));
                bad = 1;
            } else {
                double err = tu_scaled_err(out[k].data, ref.data, ot_numel(&ref.shape));
                if (err > *worst) *worst = err;
                if (err > OPS_TOL) { fprintf(stderr, "%s: output %d scaled error %.3g > %.1g\n", name, k, err, OPS_TOL); bad = 1; }
            }
            free(ref.data);
        }
    }
    ot_session_destroy(s);
    for (int i = 0; i < ni; i++) free(in[i].data);
    ot_model_destroy(m);
    return bad;
}

static void run_list(const char *dir) {
    char path[4096], name[256];
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "missing %s", path);
    int n = 0, failed = 0;
    double worst = 0;
    while (fscanf(f, "%255s", name) == 1) {
        failed += run_case(dir, name, &worst);
        n++;
    }
    fclose(f);
    printf("%s: %d cases, %d failed, worst scaled error %.3g\n", dir, n, failed, worst);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(failed, 0);
}

START_TEST(ops_match_onnxruntime) { run_list(OT_FIXTURES "/ops"); }
END_TEST

START_TEST(import_variants_match_onnxruntime) { run_list(OT_FIXTURES "/good"); }
END_TEST

int main(void) {
    ot_set_quiet(true);
    Suite *s = suite_create("ops");
    TCase *t = tcase_create("ops");
    tcase_add_test(t, ops_match_onnxruntime);
    tcase_add_test(t, import_variants_match_onnxruntime);
    suite_add_tcase(s, t);
    return tu_main(s);
}
