/* test_autoanchor.c: AutoAnchor (train/autoanchor): the ratio metric against
 * Ultralytics' check_anchors metric (tests/fixtures/autoanchor/{coco128,tiny}.json from
 * tools/ref/make_autoanchor_fixtures.py), the label sizes, and check_anchors +
 * kmean_anchors on synthetic datasets (tiny boxes the default anchors miss,
 * too few boxes, no boxes) and on coco128 (skips without ../shared). */
#include "testutil.h"
#include "train/autoanchor.h"
#include "train/dataset.h"
#include <jansson.h>
#include <math.h>
#include <png.h>
#include <string.h>

static const float P5[18] = {10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326};

/* ---- helpers ---- */

static json_t *load_fixture(const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/autoanchor/%s", OT_FIXTURES, name);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", p, je.text);
    return j;
}

/* (n, 2) float32 from a JSON array of pairs */
static float *json_pairs(json_t *a, int64_t *n) {
    *n = (int64_t)json_array_size(a);
    float *o = malloc((size_t)(*n ? *n : 1) * 2 * sizeof *o);
    ck_assert(o != NULL);
    for (int64_t i = 0; i < *n; i++) {
        json_t *r = json_array_get(a, (size_t)i);
        o[2 * i] = (float)json_number_value(json_array_get(r, 0));
        o[2 * i + 1] = (float)json_number_value(json_array_get(r, 1));
    }
    return o;
}

static void mkdirs(const char *path) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s/images' '%s/labels'", path, path, path);
    ck_assert(system(cmd) == 0);
}

static void write_gray_png(const char *path, int w, int h) {
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = (png_uint_32)w;
    pi.height = (png_uint_32)h;
    pi.format = PNG_FORMAT_GRAY;
    uint8_t *px = malloc((size_t)w * h);
    ck_assert(px != NULL);
    for (int i = 0; i < w * h; i++) px[i] = (uint8_t)(i * 7);
    ck_assert_msg(png_image_write_to_file(&pi, path, 0, px, 0, NULL), "png write %s", path);
    free(px);
}

/* A dataset under the work folder: n_img images of w x h, boxes (w, h in pixels
 * of a 640-px long side) dealt round-robin to the images at spread-out centres. */
static ot_dataset *make_dataset(const char *name, int n_img, int w, int h, const float *wh, int64_t nb) {
    char root[1024], p[1200];
    snprintf(root, sizeof root, "%s/%s", tu_work(), name);
    mkdirs(root);
    double mx = w > h ? w : h;
    for (int i = 0; i < n_img; i++) {
        snprintf(p, sizeof p, "%s/images/im%03d.png", root, i);
        write_gray_png(p, w, h);
        snprintf(p, sizeof p, "%s/labels/im%03d.txt", root, i);
        FILE *f = fopen(p, "w");
        ck_assert(f != NULL);
        for (int64_t b = i, k = 0; b < nb; b += n_img, k++) {
            double bw = wh[2 * b] / (640.0 * w / mx), bh = wh[2 * b + 1] / (640.0 * h / mx);
            double cx = 0.1 + 0.8 * fmod(0.618034 * (double)(k + 1), 1.0), cy = 0.1 + 0.8 * fmod(0.414214 * (double)(k + 1), 1.0);
            fprintf(f, "0 %.9f %.9f %.9f %.9f\n", cx, cy, bw, bh);
        }
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/images", root);
    char *src[1] = {p};
    ot_dataset *d;
    ot_error e;
    ck_assert_msg(ot_dataset_open(src, 1, 1, 2, true, &d, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(d->n, n_img);
    return d;
}

static ot_dataset *tiny_dataset(void) {
    json_t *j = load_fixture("tiny.json");
    int64_t n;
    float *wh = json_pairs(json_object_get(j, "wh"), &n);
    ot_dataset *d = make_dataset("tiny", 30, 64, 64, wh, n);
    free(wh);
    json_decref(j);
    ck_assert_int_eq(d->sum.boxes, 300);
    return d;
}

/* run ot_autoanchor with the log captured */
typedef struct aa_run { float a[18]; bool changed; ot_anchor_fit before, after; char *log; size_t loglen; } aa_run;
static void run_aa(const ot_dataset *d, uint64_t seed, aa_run *r) {
    memcpy(r->a, P5, sizeof P5);
    FILE *log = open_memstream(&r->log, &r->loglen);
    ck_assert(log != NULL);
    ot_error e;
    ot_status st = ot_autoanchor(d, 640, r->a, 3, 3, 4.0, seed, log, &r->changed, &r->before, &r->after, &e);
    fclose(log);
    ck_assert_msg(st == OT_OK, "%s", e.msg);
}

/* ---- the metric against Ultralytics ---- */

static void check_metric_fixture(const char *name) {
    json_t *j = load_fixture(name);
    int64_t n;
    float *wh = json_pairs(json_object_get(j, "wh"), &n);
    double thr = tu_jnum(j, "thr");
    json_t *cases = json_object_get(j, "cases");
    ck_assert(json_array_size(cases) >= 2);
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c);
        int64_t k;
        float *a = json_pairs(json_object_get(cs, "anchors"), &k);
        ot_anchor_fit f = ot_anchor_metric(wh, n, a, (int)k, thr);
        const char *cn = json_string_value(json_object_get(cs, "name"));
        ck_assert_msg(fabs(f.bpr - tu_jnum(cs, "bpr")) < 1e-9, "%s %s: bpr %.12f, Ultralytics %.12f", name, cn, f.bpr,
                      tu_jnum(cs, "bpr"));
        ck_assert_msg(fabs(f.aat - tu_jnum(cs, "aat")) < 1e-9, "%s %s: aat %.12f, Ultralytics %.12f", name, cn, f.aat,
                      tu_jnum(cs, "aat"));
        /* and torch's float32 means */
        ck_assert(fabs(f.bpr - tu_jnum(cs, "bpr_f32")) < 1e-6 && fabs(f.aat - tu_jnum(cs, "aat_f32")) < 1e-6);
        free(a);
    }
    free(wh);
    json_decref(j);
}

START_TEST(metric_matches_ultralytics) {
    check_metric_fixture("coco128.json");
    check_metric_fixture("tiny.json");
    /* by hand: one box 20x20, anchors 10x10 (x = 0.5), 100x20 (x = 0.2), 20x20 (x = 1) */
    const float wh[2] = {20, 20}, a[6] = {10, 10, 100, 20, 20, 20};
    ot_anchor_fit f = ot_anchor_metric(wh, 1, a, 3, 4.0);
    ck_assert(f.bpr == 1.0 && f.aat == 2.0);
    f = ot_anchor_metric(wh, 1, a + 2, 1, 4.0);
    ck_assert(f.bpr == 0.0 && f.aat == 0.0);
    f = ot_anchor_metric(wh, 0, a, 3, 4.0);
    ck_assert(f.bpr == 0.0 && f.aat == 0.0);
}
END_TEST

/* ---- label sizes ---- */

START_TEST(label_sizes_scaled_per_image) {
    /* 4 images of 80x40: the long side to 640 gives shapes (640, 320) */
    const float wh[8] = {64, 32, 16, 8, 320, 160, 6.4f, 3.2f};
    ot_dataset *d = make_dataset("sizes", 4, 80, 40, wh, 4);
    float *o, *o2;
    int64_t n, n2;
    ot_error e;
    ck_assert(ot_anchor_label_wh(d, 640, 3, &o, &n, &e) == OT_OK);
    ck_assert_int_eq(n, 4);
    for (int i = 0; i < 4; i++) {
        /* the label file holds w / 640 of a 640 x 320 shape */
        double s = o[2 * i] / wh[2 * i], s2 = o[2 * i + 1] / wh[2 * i + 1];
        ck_assert_msg(s >= 0.9 && s < 1.1 && fabs(s - s2) < 1e-6, "image %d: scales %g %g", i, s, s2);
    }
    ck_assert(ot_anchor_label_wh(d, 640, 3, &o2, &n2, &e) == OT_OK);
    ck_assert(n2 == n && memcmp(o, o2, (size_t)n * 2 * sizeof *o) == 0); /* deterministic */
    free(o2);
    ck_assert(ot_anchor_label_wh(d, 640, 4, &o2, &n2, &e) == OT_OK);
    ck_assert(memcmp(o, o2, (size_t)n * 2 * sizeof *o) != 0); /* another seed, other scales */
    free(o2);
    free(o);
    ck_assert(ot_anchor_label_wh(d, 0, 3, &o, &n, &e) == OT_ERR_INVALID);
    ot_dataset_destroy(d);
}
END_TEST

/* ---- check_anchors + kmean_anchors ---- */

START_TEST(tiny_boxes_get_new_anchors) {
    ot_dataset *d = tiny_dataset();
    aa_run r1, r2, r3;
    run_aa(d, 0, &r1);
    ck_assert_msg(r1.before.bpr < 0.5, "default anchors should miss tiny boxes: bpr %g", r1.before.bpr);
    ck_assert_msg(r1.changed, "anchors not replaced:\n%s", r1.log);
    ck_assert_msg(r1.after.bpr > 0.98 && r1.after.bpr > r1.before.bpr, "bpr %g -> %g\n%s", r1.before.bpr, r1.after.bpr,
                  r1.log);
    ck_assert_msg(strstr(r1.log, "Anchors are a poor fit to dataset ⚠️, attempting to improve...") &&
                      strstr(r1.log, "WARNING ⚠️ Extremely small objects found: 219 of 300 labels are <3 pixels in size") &&
                      strstr(r1.log, "Running kmeans for 9 anchors on 290 points...") &&
                      strstr(r1.log, "AutoAnchor: Done ✅ (optional: update model *.yaml to use these anchors in the future)"),
                  "%s", r1.log);
    /* sorted by area, small anchors on the stride-8 layer */
    for (int i = 1; i < 9; i++) ck_assert(r1.a[2 * i] * r1.a[2 * i + 1] >= r1.a[2 * i - 2] * r1.a[2 * i - 1]);
    /* deterministic for a seed */
    run_aa(d, 0, &r2);
    ck_assert(memcmp(r1.a, r2.a, sizeof r1.a) == 0 && strcmp(r1.log, r2.log) == 0);
    ck_assert(r1.after.bpr == r2.after.bpr && r1.after.aat == r2.after.aat);
    /* another seed: other numbers, as good a fit */
    run_aa(d, 2, &r3);
    ck_assert(memcmp(r1.a, r3.a, sizeof r1.a) != 0);
    ck_assert_msg(r3.changed && r3.after.bpr > 0.98, "seed 2: bpr %g\n%s", r3.after.bpr, r3.log);
    /* as good as Ultralytics' kmean_anchors on the fixture sizes (it reaches 1.0) */
    json_t *j = load_fixture("tiny.json");
    int64_t n;
    float *wh = json_pairs(json_object_get(j, "wh"), &n);
    json_t *ref = json_array_get(json_object_get(j, "cases"), 1);
    ot_anchor_fit ours = ot_anchor_metric(wh, n, r1.a, 9, 4.0);
    ck_assert_msg(ours.bpr >= tu_jnum(ref, "bpr") - 0.01, "bpr %g, Ultralytics %g", ours.bpr, tu_jnum(ref, "bpr"));
    fprintf(stderr, "tiny boxes: default anchors bpr %.4f aat %.2f -> ours bpr %.4f aat %.2f (Ultralytics %.4f %.2f)%s",
            r1.before.bpr, r1.before.aat, ours.bpr, ours.aat, tu_jnum(ref, "bpr"), tu_jnum(ref, "aat"), r1.log);
    free(wh);
    json_decref(j);
    free(r1.log); free(r2.log); free(r3.log);
    ot_dataset_destroy(d);
}
END_TEST

/* On these sizes (whitened by a deviation the large boxes dominate, the tiny
 * ones collapse into one tight blob) the best of the 30 k-means restarts
 * sometimes loses a cluster: scipy then returns 8 points and kmean_anchors
 * falls back to random anchors, which do not evolve into a better fit. Ultralytics
 * does this for 2 of np.random.seed 0..19, ours for 5 of seeds 0..39, seed 1
 * among them; check_anchors then keeps the original anchors. */
START_TEST(tiny_boxes_kmeans_loses_a_cluster) {
    ot_dataset *d = tiny_dataset();
    aa_run r;
    run_aa(d, 1, &r);
    ck_assert_msg(strstr(r.log, "WARNING ⚠️ switching strategies from kmeans to random init") &&
                      strstr(r.log, "AutoAnchor: Done ⚠️ (original anchors better than new anchors, proceeding with original anchors)"),
                  "%s", r.log);
    ck_assert(!r.changed && memcmp(r.a, P5, sizeof P5) == 0 && r.after.bpr == r.before.bpr);
    free(r.log);
    ot_dataset_destroy(d);
}
END_TEST

START_TEST(too_few_boxes_and_no_boxes) {
    /* 5 tiny boxes for 9 anchors: kmeans is not possible, random init as Ultralytics */
    const float wh[10] = {2, 3, 3, 2, 2.5f, 2.5f, 3, 3, 2, 2};
    ot_dataset *d = make_dataset("few", 5, 64, 64, wh, 5);
    aa_run r, r2;
    run_aa(d, 5, &r);
    ck_assert_msg(strstr(r.log, "Running kmeans for 9 anchors on 5 points...") &&
                      strstr(r.log, "WARNING ⚠️ switching strategies from kmeans to random init"), "%s", r.log);
    ck_assert(r.after.bpr >= r.before.bpr);
    for (int i = 0; i < 18; i++) ck_assert(isfinite(r.a[i]) && r.a[i] > 0);
    run_aa(d, 5, &r2);
    ck_assert(memcmp(r.a, r2.a, sizeof r.a) == 0);
    free(r.log); free(r2.log);
    ot_dataset_destroy(d);
    /* no boxes at all: anchors left alone */
    ot_dataset *d0 = make_dataset("none", 3, 64, 64, wh, 0);
    run_aa(d0, 5, &r);
    ck_assert(!r.changed && memcmp(r.a, P5, sizeof P5) == 0 && strstr(r.log, "no labels"));
    free(r.log);
    ot_error e;
    float a[18];
    memcpy(a, P5, sizeof a);
    ck_assert(ot_autoanchor(d0, 640, a, 3, 3, 0.0, 1, NULL, NULL, NULL, NULL, &e) == OT_ERR_INVALID);
    ot_dataset_destroy(d0);
}
END_TEST

/* ---- coco128 ---- */

START_TEST(coco128_default_anchors_fit) {
    const char *sh = tu_shared();
    if (!sh || !tu_exists(OT_SHARED "/data/coco128/images/train2017")) return;
    char *src[1] = {OT_SHARED "/data/coco128/images/train2017"};
    ot_dataset *d;
    ot_error e;
    ck_assert_msg(ot_dataset_open(src, 1, 80, 2, true, &d, &e) == OT_OK, "%s", e.msg);
    json_t *j = load_fixture("coco128.json");
    ck_assert_int_eq(d->sum.boxes, (int64_t)tu_jnum(j, "n_boxes"));
    /* label sizes: Ultralytics' unscaled sizes times one scale in 0.9..1.1 per image */
    float *wh;
    int64_t n;
    ck_assert(ot_anchor_label_wh(d, 640, 0, &wh, &n, &e) == OT_OK);
    json_t *ims = json_object_get(j, "images");
    ck_assert(json_array_size(ims) >= 3);
    for (size_t k = 0; k < json_array_size(ims); k++) {
        json_t *im = json_array_get(ims, k);
        const char *file = json_string_value(json_object_get(im, "file"));
        int64_t off = 0, i = 0;
        for (; i < d->n; i++) {
            const char *b = strrchr(d->im_files[i], '/');
            if (strcmp(b ? b + 1 : d->im_files[i], file) == 0) break;
            off += d->n_labels[i];
        }
        ck_assert_msg(i < d->n, "%s not in the dataset", file);
        json_t *w0 = json_object_get(im, "wh0");
        ck_assert_int_eq(d->n_labels[i], (int)json_array_size(w0));
        double s0 = wh[2 * off] / json_number_value(json_array_get(json_array_get(w0, 0), 0));
        ck_assert(s0 >= 0.9 && s0 < 1.1);
        for (size_t b = 0; b < json_array_size(w0); b++)
            for (int c = 0; c < 2; c++) {
                double ref = json_number_value(json_array_get(json_array_get(w0, b), (size_t)c));
                ck_assert_msg(fabs(wh[2 * (off + (int64_t)b) + c] / ref - s0) < 2e-6, "%s box %zu", file, b);
            }
    }
    free(wh);
    aa_run r;
    run_aa(d, 0, &r);
    json_t *full = json_object_get(j, "full");
    fprintf(stderr, "coco128: bpr %.4f aat %.3f (Ultralytics with its own scales: %.4f %.3f)%s", r.before.bpr, r.before.aat,
            tu_jnum(full, "bpr"), tu_jnum(full, "aat"), r.log);
    ck_assert_msg(r.before.bpr > 0.98 && !r.changed && memcmp(r.a, P5, sizeof P5) == 0, "%s", r.log);
    ck_assert(fabs(r.before.bpr - tu_jnum(full, "bpr")) < 0.01 && fabs(r.before.aat - tu_jnum(full, "aat")) < 0.25);
    ck_assert_msg(strstr(r.log, "Best Possible Recall (BPR). Current anchors are a good fit to dataset ✅\n"), "%s", r.log);
    ck_assert(r.after.bpr == r.before.bpr);
    free(r.log);
    json_decref(j);
    ot_dataset_destroy(d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("autoanchor");
    TCase *t = tcase_create("autoanchor");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, metric_matches_ultralytics);
    tcase_add_test(t, label_sizes_scaled_per_image);
    tcase_add_test(t, tiny_boxes_get_new_anchors);
    tcase_add_test(t, tiny_boxes_kmeans_loses_a_cluster);
    tcase_add_test(t, too_few_boxes_and_no_boxes);
    tcase_add_test(t, coco128_default_anchors_fit);
    suite_add_tcase(s, t);
    return tu_main(s);
}
