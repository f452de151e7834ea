/* test_plots.c: train/plots: the confusion matrix (a hand-checked case and
 * Ultralytics' ConfusionMatrix on tests/fixtures/confusion/matrix_nc*.json),
 * the PR / F1 / P / R curve data (ap_per_class's, tests/fixtures/confusion/pr_curves.json;
 * both from tools/ref/make_confusion_fixtures.py), and the pictures: valid
 * PNGs of the documented sizes, read back with cairo, and clear errors for
 * unwritable paths and malformed results.csv files. The pictures stay in the
 * work folder (build/tests/work_test_plots/) to be looked at. */
#include "testutil.h"
#include "train/plots.h"
#include <cairo.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

static json_t *load_fixture(const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/confusion/%s", OT_FIXTURES, name);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", p, je.text);
    return j;
}

static char *wpath(const char *rel) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 1024, "%s/%s", tu_work(), rel);
    return b;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* a PNG read back with cairo: its size, and how many pixels are not white */
static void check_png(const char *path, int w, int h) {
    cairo_surface_t *s = cairo_image_surface_create_from_png(path);
    ck_assert_msg(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS, "%s: %s", path,
                  cairo_status_to_string(cairo_surface_status(s)));
    ck_assert_msg(cairo_image_surface_get_width(s) == w && cairo_image_surface_get_height(s) == h, "%s: %dx%d, expected %dx%d",
                  path, cairo_image_surface_get_width(s), cairo_image_surface_get_height(s), w, h);
    cairo_surface_flush(s);
    const unsigned char *px = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    int64_t white = 0, dark = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const unsigned char *p = px + (size_t)y * stride + 4 * x;
            white += p[0] == 255 && p[1] == 255 && p[2] == 255;
            dark += p[0] < 100 && p[1] < 100 && p[2] < 100;
        }
    /* a white picture with something drawn on it */
    ck_assert_msg(white > (int64_t)w * h / 3 && dark > 500, "%s: %lld white, %lld dark pixels", path, (long long)white,
                  (long long)dark);
    /* the corners are the white background */
    ck_assert(px[0] == 255 && px[1] == 255 && px[2] == 255);
    cairo_surface_destroy(s);
}

/* no temporary files left next to the pictures */
static void check_no_tmp(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert(d != NULL);
    for (struct dirent *e; (e = readdir(d));) ck_assert_msg(!strstr(e->d_name, ".tmp"), "left behind: %s", e->d_name);
    closedir(d);
}

/* ---- confusion matrix ---- */

START_TEST(confusion_by_hand) {
    ot_confusion c;
    ot_error e;
    ck_assert(ot_confusion_init(&c, 2, &e) == OT_OK);
    /* A: a correct match, a match of the wrong class, a false positive, a label
     * whose only detection is under the confidence threshold (0.2, and 0.25 is
     * not above it) */
    const float la[15] = {0, 0, 0, 10, 10, 1, 20, 20, 30, 30, 1, 50, 50, 60, 60};
    const float da[30] = {0, 0, 10, 10, 0.9f, 0, 20, 20, 30, 30, 0.8f, 0, 100, 100, 110, 110, 0.7f, 1,
                          50, 50, 60, 60, 0.2f, 1, 0, 0, 10, 10, 0.25f, 1};
    ot_confusion_process_batch(&c, da, 5, la, 3);
    /* B: nothing matches: the label is missed, and the stray detection is not
     * counted (Ultralytics counts false positives only when something matched) */
    const float lb[5] = {0, 0, 0, 10, 10}, db[6] = {200, 200, 210, 210, 0.9f, 0};
    ot_confusion_process_batch(&c, db, 1, lb, 1);
    /* C: no detections; D: no labels (nothing counted) */
    const float lc[5] = {1, 5, 5, 50, 50};
    ot_confusion_process_batch(&c, NULL, 0, lc, 1);
    ot_confusion_process_batch(&c, db, 1, NULL, 0);
    /* E: two detections of one label: the higher IoU (1.0 against 100/110) wins, the other is a false positive */
    const float le[5] = {0, 0, 0, 10, 10}, de[12] = {0, 0, 10, 10, 0.6f, 0, 0, 0, 10, 11, 0.9f, 0};
    ot_confusion_process_batch(&c, de, 2, le, 1);
    /* rows predicted, columns true, background last */
    const double want[9] = {2, 1, 1, /**/ 0, 0, 1, /**/ 1, 2, 0};
    for (int i = 0; i < 9; i++) ck_assert_msg(c.m[i] == want[i], "m[%d][%d] = %g, expected %g", i / 3, i % 3, c.m[i], want[i]);
    double tp[2], fp[2];
    ot_confusion_tp_fp(&c, tp, fp);
    ck_assert(tp[0] == 2 && tp[1] == 0 && fp[0] == 2 && fp[1] == 1);
    ot_confusion_free(&c);
    ck_assert(c.m == NULL);
    ck_assert(ot_confusion_init(&c, 0, &e) == OT_ERR_INVALID);
}
END_TEST

static void run_matrix_fixture(const char *name, ot_confusion *c) {
    json_t *j = load_fixture(name);
    int nc = (int)tu_jnum(j, "nc");
    ot_error e;
    ck_assert(ot_confusion_init(c, nc, &e) == OT_OK);
    json_t *ims = json_object_get(j, "images");
    for (size_t k = 0; k < json_array_size(ims); k++) {
        json_t *im = json_array_get(ims, k), *L = json_object_get(im, "labels"), *D = json_object_get(im, "dets");
        int m = (int)json_array_size(L), n = (int)json_array_size(D);
        float *l = malloc((size_t)(m + 1) * 5 * sizeof *l), *d = malloc((size_t)(n + 1) * 6 * sizeof *d);
        for (int i = 0; i < m; i++)
            for (int q = 0; q < 5; q++) l[5 * i + q] = (float)json_number_value(json_array_get(json_array_get(L, (size_t)i), (size_t)q));
        for (int i = 0; i < n; i++)
            for (int q = 0; q < 6; q++) d[6 * i + q] = (float)json_number_value(json_array_get(json_array_get(D, (size_t)i), (size_t)q));
        ot_confusion_process_batch(c, d, n, l, m);
        free(l);
        free(d);
    }
    json_t *M = json_object_get(j, "matrix");
    for (int r = 0; r <= nc; r++)
        for (int q = 0; q <= nc; q++) {
            double want = json_number_value(json_array_get(json_array_get(M, (size_t)r), (size_t)q));
            ck_assert_msg(c->m[r * (nc + 1) + q] == want, "%s: m[%d][%d] = %g, Ultralytics %g", name, r, q,
                          c->m[r * (nc + 1) + q], want);
        }
    double *tp = malloc((size_t)nc * sizeof *tp), *fp = malloc((size_t)nc * sizeof *fp);
    ot_confusion_tp_fp(c, tp, fp);
    for (int i = 0; i < nc; i++) {
        ck_assert(tp[i] == json_number_value(json_array_get(json_object_get(j, "tp"), (size_t)i)));
        ck_assert(fp[i] == json_number_value(json_array_get(json_object_get(j, "fp"), (size_t)i)));
    }
    free(tp);
    free(fp);
    json_decref(j);
}

START_TEST(confusion_matches_ultralytics) {
    ot_confusion c;
    run_matrix_fixture("matrix_nc3.json", &c);
    ot_confusion_free(&c);
    run_matrix_fixture("matrix_nc12.json", &c);
    ot_confusion_free(&c);
}
END_TEST

/* ---- curves ---- */

static void load_stats(json_t *j, ot_val_stats *s) {
    memset(s, 0, sizeof *s);
    json_t *tp = json_object_get(j, "tp"), *conf = json_object_get(j, "conf"), *pc = json_object_get(j, "pred_cls");
    json_t *tc = json_object_get(j, "target_cls");
    s->n = s->cap = (int64_t)json_array_size(tp);
    s->correct = malloc((size_t)s->n * OT_NIOU);
    s->conf = malloc((size_t)s->n * sizeof *s->conf);
    s->pcls = malloc((size_t)s->n * sizeof *s->pcls);
    for (int64_t i = 0; i < s->n; i++) {
        for (int t = 0; t < OT_NIOU; t++)
            s->correct[i * OT_NIOU + t] = (uint8_t)json_integer_value(json_array_get(json_array_get(tp, (size_t)i), (size_t)t));
        s->conf[i] = (float)json_number_value(json_array_get(conf, (size_t)i));
        s->pcls[i] = (int)json_integer_value(json_array_get(pc, (size_t)i));
    }
    s->nl = s->lcap = (int64_t)json_array_size(tc);
    s->tcls = malloc((size_t)s->nl * sizeof *s->tcls);
    for (int64_t i = 0; i < s->nl; i++) s->tcls[i] = (int)json_integer_value(json_array_get(tc, (size_t)i));
    s->seen = 10;
}

static void cmp_rows(const char *what, json_t *ref, json_t *idx, const double *rows, int row, int refrow) {
    json_t *r = json_array_get(ref, (size_t)refrow);
    ck_assert_int_eq(json_array_size(r), json_array_size(idx));
    for (size_t k = 0; k < json_array_size(idx); k++) {
        int x = (int)json_integer_value(json_array_get(idx, k));
        double want = json_number_value(json_array_get(r, k)), got = rows[(size_t)row * OT_PLOT_NPX + x];
        ck_assert_msg(fabs(got - want) <= 1e-12, "%s class row %d at px[%d]: %.17g, Ultralytics %.17g", what, row, x, got, want);
    }
}

START_TEST(pr_curves_match_ultralytics) {
    json_t *j = load_fixture("pr_curves.json");
    ot_val_stats s;
    load_stats(j, &s);
    ot_pr_curves c;
    ot_error e;
    ck_assert_msg(ot_pr_curves_compute(&s, &c, &e) == OT_OK, "%s", e.msg);
    json_t *cls = json_object_get(j, "classes"), *idx = json_object_get(j, "idx");
    ck_assert_int_eq(c.n, (int)json_array_size(cls));
    int with_pred = 0;
    for (int i = 0; i < c.n; i++) {
        ck_assert_int_eq(c.cls[i], (int)json_integer_value(json_array_get(cls, (size_t)i)));
        double ap = json_number_value(json_array_get(json_object_get(j, "ap50"), (size_t)i));
        ck_assert_msg(fabs(c.ap50[i] - ap) <= 1e-12, "ap50[%d] %.17g, Ultralytics %.17g", i, c.ap50[i], ap);
        cmp_rows("p", json_object_get(j, "p"), idx, c.p, i, i);
        cmp_rows("r", json_object_get(j, "r"), idx, c.r, i, i);
        cmp_rows("f1", json_object_get(j, "f1"), idx, c.f1, i, i);
        if (c.npred[i]) cmp_rows("py", json_object_get(j, "py"), idx, c.py, i, with_pred++);
    }
    ck_assert_int_eq(with_pred, (int)json_array_size(json_object_get(j, "py")));
    ck_assert(c.npred[c.n - 1] == 0); /* class 5: labels, no detections */
    for (int k = 0; k < OT_PLOT_NPX; k++) ck_assert(c.px[k] == (k == 999 ? 1.0 : k * (1.0 / 999)));
    /* and the picked points agree with ot_ap_per_class */
    ot_ap_result r;
    ck_assert(ot_ap_per_class(&s, &r, &e) == OT_OK);
    for (int i = 0; i < c.n; i++) {
        ck_assert(fabs(r.ap50[i] - c.ap50[i]) <= 1e-15);
        ck_assert(fabs(r.p[i] - json_number_value(json_array_get(json_object_get(j, "p_at_max_f1"), (size_t)i))) <= 1e-12);
    }
    ot_ap_result_free(&r);
    ot_pr_curves_free(&c);
    ot_val_stats_free(&s);
    json_decref(j);
}
END_TEST

/* ---- pictures ---- */

static char *coco_names[80];
static void load_coco_names(void) {
    static const char *n80 =
        "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign parking_meter "
        "bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase frisbee "
        "skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass "
        "cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair couch "
        "potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone microwave oven toaster sink "
        "refrigerator book clock vase scissors teddy_bear hair_drier toothbrush";
    static char buf[1200];
    strcpy(buf, n80);
    int k = 0;
    for (char *t = strtok(buf, " "); t && k < 80; t = strtok(NULL, " ")) {
        for (char *p = t; *p; p++)
            if (*p == '_') *p = ' ';
        coco_names[k++] = t;
    }
    ck_assert_int_eq(k, 80);
}

START_TEST(confusion_pictures) {
    ot_confusion c;
    ot_error e;
    char *names3[3] = {"person", "car", "dog"};
    run_matrix_fixture("matrix_nc3.json", &c);
    ck_assert_msg(ot_plot_confusion(&c, names3, wpath("confusion_matrix_nc3.png"), &e) == OT_OK, "%s", e.msg);
    check_png(wpath("confusion_matrix_nc3.png"), OT_PLOT_CONFUSION_W, OT_PLOT_CONFUSION_H);
    ot_confusion_free(&c);
    run_matrix_fixture("matrix_nc12.json", &c);
    ck_assert_msg(ot_plot_confusion(&c, NULL, wpath("confusion_matrix_nc12.png"), &e) == OT_OK, "%s", e.msg);
    check_png(wpath("confusion_matrix_nc12.png"), OT_PLOT_CONFUSION_W, OT_PLOT_CONFUSION_H);
    ot_confusion_free(&c);
    /* one class, a name that is not UTF-8 (drawn with '?') */
    char *bad_name[1] = {"caf\xe9"};
    ck_assert(ot_confusion_init(&c, 1, &e) == OT_OK);
    const float l1[5] = {0, 0, 0, 10, 10}, d1[12] = {0, 0, 10, 10, 0.9f, 0, 50, 50, 60, 60, 0.8f, 0};
    ot_confusion_process_batch(&c, d1, 2, l1, 1);
    ck_assert(c.m[0] == 1 && c.m[1] == 1 && c.m[2] == 0 && c.m[3] == 0);
    ck_assert_msg(ot_plot_confusion(&c, bad_name, wpath("confusion_matrix_nc1.png"), &e) == OT_OK, "%s", e.msg);
    check_png(wpath("confusion_matrix_nc1.png"), OT_PLOT_CONFUSION_W, OT_PLOT_CONFUSION_H);
    ot_confusion_free(&c);
    /* 80 COCO classes: names on the axes, no annotations */
    load_coco_names();
    ck_assert(ot_confusion_init(&c, 80, &e) == OT_OK);
    for (int i = 0; i < 80; i++) {
        c.m[i * 81 + i] = 20 + (i * 7) % 13;
        c.m[((i + 3) % 80) * 81 + i] = (i * 5) % 7;
        c.m[80 * 81 + i] = (i * 3) % 9;
        c.m[i * 81 + 80] = (i * 11) % 5;
    }
    ck_assert_msg(ot_plot_confusion(&c, coco_names, wpath("confusion_matrix_nc80.png"), &e) == OT_OK, "%s", e.msg);
    check_png(wpath("confusion_matrix_nc80.png"), OT_PLOT_CONFUSION_W, OT_PLOT_CONFUSION_H);
    /* an unwritable path: a clear error naming it, nothing left behind */
    const char *bad = wpath("no/such/folder/confusion_matrix.png");
    ck_assert(ot_plot_confusion(&c, coco_names, bad, &e) == OT_ERR_IO);
    ck_assert_msg(strstr(e.msg, bad) && strstr(e.msg, "cannot write"), "%s", e.msg);
    ot_confusion_free(&c);
    check_no_tmp(tu_work());
}
END_TEST

START_TEST(curve_pictures) {
    json_t *j = load_fixture("pr_curves.json");
    ot_val_stats s;
    load_stats(j, &s);
    ot_pr_curves c;
    ot_error e;
    ck_assert(ot_pr_curves_compute(&s, &c, &e) == OT_OK);
    char *names[6] = {"person", "bicycle", "car", "motorcycle", "airplane", "bus"};
    ck_assert_msg(ot_plot_pr_curve(&c, names, wpath("PR_curve.png"), &e) == OT_OK, "%s", e.msg);
    check_png(wpath("PR_curve.png"), OT_PLOT_CURVE_W, OT_PLOT_CURVE_H);
    static const char *mc[3] = {"F1_curve.png", "P_curve.png", "R_curve.png"};
    for (int k = 0; k < 3; k++) {
        ck_assert_msg(ot_plot_mc_curve(&c, names, (ot_curve_kind)k, wpath(mc[k]), &e) == OT_OK, "%s", e.msg);
        check_png(wpath(mc[k]), OT_PLOT_CURVE_W, OT_PLOT_CURVE_H);
    }
    const char *bad = wpath("no/such/folder/PR_curve.png");
    ck_assert(ot_plot_pr_curve(&c, names, bad, &e) == OT_ERR_IO);
    ck_assert_msg(strstr(e.msg, bad) != NULL, "%s", e.msg);
    ot_pr_curves_free(&c);
    ot_val_stats_free(&s);
    json_decref(j);
    /* 30 classes: grey lines, no per-class legend */
    ot_val_stats s2;
    memset(&s2, 0, sizeof s2);
    uint32_t x = 12345;
    for (int i = 0; i < 600; i++) {
        x = x * 1664525u + 1013904223u;
        int cls = (int)((x >> 8) % 30);
        float lab[5] = {(float)cls, 0, 0, 10, 10};
        x = x * 1664525u + 1013904223u;
        float conf = 0.01f + 0.98f * (float)((x >> 8) & 0xffff) / 65536.0f;
        float off = conf > 0.4f ? 0.5f : 6.0f; /* confident ones hit */
        ot_det d = {off, off, 10 + off, 10 + off, conf, cls, i};
        ck_assert(ot_val_stats_add(&s2, &d, 1, lab, 1, &e) == OT_OK);
    }
    ck_assert(ot_pr_curves_compute(&s2, &c, &e) == OT_OK);
    ck_assert_int_eq(c.n, 30);
    ck_assert_msg(ot_plot_pr_curve(&c, NULL, wpath("PR_curve_nc30.png"), &e) == OT_OK, "%s", e.msg);
    check_png(wpath("PR_curve_nc30.png"), OT_PLOT_CURVE_W, OT_PLOT_CURVE_H);
    ck_assert(ot_plot_mc_curve(&c, NULL, OT_CURVE_F1, wpath("F1_curve_nc30.png"), &e) == OT_OK);
    ot_pr_curves_free(&c);
    ot_val_stats_free(&s2);
    check_no_tmp(tu_work());
}
END_TEST

/* results.csv as Ultralytics' loggers write it: '%20s,' header, '%20.5g,' rows, the last comma dropped */
static void write_results_csv(const char *path, int epochs) {
    static const char *keys[14] = {"epoch", "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision",
                                   "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss",
                                   "val/obj_loss", "val/cls_loss", "x/lr0", "x/lr1", "x/lr2"};
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    for (int i = 0; i < 14; i++) fprintf(f, i < 13 ? "%20s," : "%20s\n", keys[i]);
    uint32_t x = 7;
    for (int ep = 0; ep < epochs; ep++) {
        double v[14], t = ep / 10.0;
        double noise[14];
        for (int i = 0; i < 14; i++) {
            x = x * 1664525u + 1013904223u;
            noise[i] = ((x >> 8) & 0xffff) / 65536.0 - 0.5;
        }
        v[0] = ep;
        v[1] = 0.05 + 0.04 * exp(-t) + 0.004 * noise[1];
        v[2] = 0.03 + 0.02 * exp(-t) + 0.003 * noise[2];
        v[3] = 0.02 + 0.03 * exp(-t) + 0.003 * noise[3];
        v[4] = 0.7 - 0.5 * exp(-t) + 0.05 * noise[4];
        v[5] = 0.6 - 0.5 * exp(-t) + 0.05 * noise[5];
        v[6] = 0.65 - 0.55 * exp(-t) + 0.03 * noise[6];
        v[7] = 0.42 - 0.38 * exp(-t) + 0.02 * noise[7];
        v[8] = 0.045 + 0.03 * exp(-t) + 0.003 * noise[8];
        v[9] = 0.035 + 0.01 * exp(-t) + 0.003 * noise[9];
        v[10] = 0.015 + 0.02 * exp(-t) + 0.002 * noise[10];
        v[11] = v[12] = ep < 3 ? 0.0033 * (ep + 1) : 0.01 * (1 - ep / (double)epochs) + 0.0001;
        v[13] = ep < 3 ? 0.1 - 0.03 * ep : v[11];
        for (int i = 0; i < 14; i++) fprintf(f, i < 13 ? "%20.5g," : "%20.5g\n", v[i]);
    }
    fclose(f);
}

START_TEST(results_picture) {
    ot_error e;
    write_results_csv(wpath("results.csv"), 30);
    ck_assert_msg(ot_plot_results(wpath("results.csv"), wpath("results.png"), &e) == OT_OK, "%s", e.msg);
    check_png(wpath("results.png"), OT_PLOT_RESULTS_W, OT_PLOT_RESULTS_H);
    /* one epoch, and rewriting an existing picture */
    write_results_csv(wpath("results1.csv"), 1);
    ck_assert_msg(ot_plot_results(wpath("results1.csv"), wpath("results.png"), &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_plot_results(wpath("results1.csv"), wpath("results1.png"), &e) == OT_OK, "%s", e.msg);
    check_png(wpath("results1.png"), OT_PLOT_RESULTS_W, OT_PLOT_RESULTS_H);
    ck_assert_msg(ot_plot_results(wpath("results.csv"), wpath("results.png"), &e) == OT_OK, "%s", e.msg);
    check_no_tmp(tu_work());
}
END_TEST

static void expect_csv_error(const char *name, const char *text, ot_status code, const char *where) {
    const char *p = wpath(name);
    if (text) write_text(p, text);
    ot_error e;
    e.msg[0] = 0;
    ck_assert_msg(ot_plot_results(p, wpath("bad.png"), &e) == code, "%s: %s", name, e.msg);
    char want[1200];
    snprintf(want, sizeof want, "%s%s", p, where);
    ck_assert_msg(strstr(e.msg, want) != NULL, "%s: message '%s' does not name '%s'", name, e.msg, want);
    ck_assert(!tu_exists(wpath("bad.png")));
}

START_TEST(results_errors) {
    static const char *hdr = "               epoch,      train/box_loss,      train/obj_loss,      train/cls_loss,   metrics/precision,"
                             "      metrics/recall,     metrics/mAP_0.5,metrics/mAP_0.5:0.95,        val/box_loss,        val/obj_loss,"
                             "        val/cls_loss,               x/lr0,               x/lr1,               x/lr2\n";
    static const char *row = "                   0,            0.082,            0.041,             0.03,    0.1,    0.2,    0.05,    0.02,"
                             "    0.07,    0.04,    0.03,     0.0033,     0.0033,     0.07\n";
    char text[4096];
    expect_csv_error("missing.csv", NULL, OT_ERR_IO, ": cannot read");
    expect_csv_error("empty.csv", "", OT_ERR_PARSE, ": empty file");
    expect_csv_error("short_header.csv", "epoch,a,b,c\n0,1,2,3\n", OT_ERR_PARSE, ":1: 4 columns");
    expect_csv_error("no_rows.csv", hdr, OT_ERR_PARSE, ": no data rows");
    snprintf(text, sizeof text, "%s%s%s", hdr, row, "1, 0.07, 0.04\n");
    expect_csv_error("short_row.csv", text, OT_ERR_PARSE, ":3: 3 fields, the header has 14");
    snprintf(text, sizeof text, "%s%s", hdr, "0, 0.08, 0.04, 0.03, abc, 0.2, 0.05, 0.02, 0.07, 0.04, 0.03, 0.003, 0.003, 0.07\n");
    expect_csv_error("not_a_number.csv", text, OT_ERR_PARSE, ":2: column 5 (metrics/precision): 'abc' is not a number");
    snprintf(text, sizeof text, "%s%s", row, row);
    expect_csv_error("no_header.csv", text, OT_ERR_PARSE, ":1: the first line is not a header");
    /* a good file with CRLF line ends and blank lines is fine */
    snprintf(text, sizeof text, "%s\r\n%s\r\n\r\n", "epoch,a,b,c,d,e,f,g,h,i,j,k,l,m", "0,1,2,3,4,5,6,7,8,9,10,11,12,13");
    write_text(wpath("crlf.csv"), text);
    ot_error e;
    ck_assert_msg(ot_plot_results(wpath("crlf.csv"), wpath("crlf.png"), &e) == OT_OK, "%s", e.msg);
    check_png(wpath("crlf.png"), OT_PLOT_RESULTS_W, OT_PLOT_RESULTS_H);
    /* an unwritable picture */
    write_results_csv(wpath("ok.csv"), 3);
    const char *bad = wpath("no/such/folder/results.png");
    ck_assert(ot_plot_results(wpath("ok.csv"), bad, &e) == OT_ERR_IO);
    ck_assert_msg(strstr(e.msg, bad) && strstr(e.msg, "cannot write"), "%s", e.msg);
    check_no_tmp(tu_work());
}
END_TEST

int main(void) {
    Suite *s = suite_create("plots");
    TCase *t = tcase_create("plots");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, confusion_by_hand);
    tcase_add_test(t, confusion_matches_ultralytics);
    tcase_add_test(t, pr_curves_match_ultralytics);
    tcase_add_test(t, confusion_pictures);
    tcase_add_test(t, curve_pictures);
    tcase_add_test(t, results_picture);
    tcase_add_test(t, results_errors);
    suite_add_tcase(s, t);
    return tu_main(s);
}
