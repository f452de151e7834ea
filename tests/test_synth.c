/* test_synth.c: the synthetic shapes dataset (train/synth) and `data synth`.
 * Files are generated in the work folder. Tightness of the boxes is checked
 * against the pixels: ot_synth_render gives each image with and without its
 * objects (no JPEG loss), and the boxes read back from the label files must
 * have object pixels within 2 px inside each side and untouched background
 * just outside; the same check must reject boxes moved by 2 px. */
#include "testutil.h"
#include "train/dataset.h"
#include "train/image_io.h"
#include "train/synth.h"
#include <math.h>
#include <string.h>

static char *wpath(const char *rel) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 1024, "%s/%s", tu_work(), rel);
    return b;
}

static void small_cfg(ot_synth_cfg *c, const char *rel, uint64_t seed) {
    ot_synth_cfg_default(c);
    c->out_dir = wpath(rel);
    c->n_train = 8;
    c->n_val = 4;
    c->seed = seed;
}

static bool read_file(const char *path, uint8_t **buf, size_t *len) {
    ot_error e;
    return ot_file_read(path, buf, len, &e) == OT_OK;
}

static bool same_file(const char *a, const char *b) {
    uint8_t *x, *y;
    size_t nx, ny;
    ck_assert_msg(read_file(a, &x, &nx), "cannot read %s", a);
    ck_assert_msg(read_file(b, &y, &ny), "cannot read %s", b);
    bool same = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

/* the label file of image i of split s under dir, parsed */
static void read_labels(const char *dir, int s, int i, int nc, ot_label_result *r) {
    char p[1200];
    snprintf(p, sizeof p, "%s/labels/%s/%06d.txt", dir, s ? "val" : "train", i);
    uint8_t *t;
    size_t n;
    ck_assert_msg(read_file(p, &t, &n), "cannot read %s", p);
    ot_error e;
    ck_assert(ot_labels_parse((const char *)t, n, nc, r, &e) == OT_OK);
    ck_assert_msg(r->bad_line == 0, "%s line %d: %s", p, r->bad_line, r->why);
    free(t);
}

/* ---- generation is deterministic ---- */
START_TEST(deterministic_for_a_seed) {
    ot_synth_cfg a, b, c;
    small_cfg(&a, "det/a", 7);
    small_cfg(&b, "det/b", 7);
    small_cfg(&c, "det/c", 8);
    a.threads = 2;
    b.threads = 1; /* the thread count changes nothing */
    int64_t na, nb, ncc;
    ot_error e;
    ck_assert_msg(ot_synth_make(&a, &na, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_synth_make(&b, &nb, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_synth_make(&c, &ncc, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(na, nb);
    ck_assert_int_gt(na, 0);
    int differ_img = 0, differ_lab = 0;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < (s ? 4 : 8); i++) {
            char pa[1200], pb[1200], pc[1200];
            const char *sp = s ? "val" : "train";
            snprintf(pa, sizeof pa, "%s/images/%s/%06d.jpg", a.out_dir, sp, i);
            snprintf(pb, sizeof pb, "%s/images/%s/%06d.jpg", b.out_dir, sp, i);
            snprintf(pc, sizeof pc, "%s/images/%s/%06d.jpg", c.out_dir, sp, i);
            ck_assert_msg(same_file(pa, pb), "%s differs from %s", pa, pb);
            differ_img += !same_file(pa, pc);
            snprintf(pa, sizeof pa, "%s/labels/%s/%06d.txt", a.out_dir, sp, i);
            snprintf(pb, sizeof pb, "%s/labels/%s/%06d.txt", b.out_dir, sp, i);
            snprintf(pc, sizeof pc, "%s/labels/%s/%06d.txt", c.out_dir, sp, i);
            ck_assert_msg(same_file(pa, pb), "%s differs from %s", pa, pb);
            differ_lab += !same_file(pa, pc);
        }
    ck_assert_int_eq(differ_img, 12); /* another seed: every image differs */
    ck_assert_int_ge(differ_lab, 11);
    /* train and val images differ from each other */
    char p0[1200], p1[1200];
    snprintf(p0, sizeof p0, "%s/images/train/000000.jpg", a.out_dir);
    snprintf(p1, sizeof p1, "%s/images/val/000000.jpg", a.out_dir);
    ck_assert(!same_file(p0, p1));
    /* a smaller run into the same folder leaves no stale images; foreign files stay */
    FILE *f = fopen(wpath("det/a/images/train/keep.jpg"), "wb");
    ck_assert(f != NULL);
    fclose(f);
    a.n_train = 5;
    ck_assert_msg(ot_synth_make(&a, &na, &e) == OT_OK, "%s", e.msg);
    ck_assert(!tu_exists(wpath("det/a/images/train/000005.jpg")) && !tu_exists(wpath("det/a/labels/train/000007.txt")));
    ck_assert(tu_exists(wpath("det/a/images/train/000004.jpg")) && tu_exists(wpath("det/a/images/train/keep.jpg")));
    ck_assert(same_file(wpath("det/a/images/train/000004.jpg"), wpath("det/b/images/train/000004.jpg")));
    remove(wpath("det/a/images/train/keep.jpg"));
}
END_TEST

/* ---- labels parse, boxes are sane, the dataset scans clean ---- */
static void check_dataset(const ot_synth_cfg *c, int64_t n_boxes) {
    int W = c->img_w ? c->img_w : c->img, H = c->img_h ? c->img_h : c->img, side = W < H ? W : H;
    int64_t counted = 0, per_class[OT_SYNTH_MAX_NC] = {0};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < (s ? c->n_val : c->n_train); i++) {
            ot_label_result r;
            read_labels(c->out_dir, s, i, c->nc, &r);
            ck_assert_int_ge(r.n, c->min_obj > 0 ? 1 : 0);
            ck_assert_int_le(r.n, c->max_obj);
            ck_assert_int_eq(r.duplicates, 0);
            for (int k = 0; k < r.n; k++) {
                const float *b = r.rows + 5 * k;
                ck_assert(b[0] >= 0 && b[0] < c->nc && b[0] == floorf(b[0]));
                ck_assert_msg(b[3] > 0 && b[4] > 0, "image %d box %d: w %g h %g", i, k, b[3], b[4]);
                ck_assert(b[1] - b[3] / 2 >= -1e-6f && b[1] + b[3] / 2 <= 1 + 1e-6f);
                ck_assert(b[2] - b[4] / 2 >= -1e-6f && b[2] + b[4] / 2 <= 1 + 1e-6f);
                double lng = fmax(b[3] * W, b[4] * H); /* the long side: 12%..45% of the short image side */
                ck_assert_msg(lng >= 0.12 * side - 0.01 && lng <= 0.45 * side + 0.01, "image %d box %d: %g px", i, k, lng);
                per_class[(int)b[0]]++;
            }
            counted += r.n;
            free(r.rows);
        }
    ck_assert_int_eq(counted, n_boxes);
    for (int k = 0; k < c->nc; k++) ck_assert_msg(per_class[k] > 0, "class %d never drawn", k);

    char yaml[1200];
    snprintf(yaml, sizeof yaml, "%s/data.yaml", c->out_dir);
    ot_data_cfg dc;
    ot_error e;
    ck_assert_msg(ot_data_cfg_load(yaml, &dc, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(dc.nc, c->nc);
    for (int k = 0; k < c->nc; k++) ck_assert_str_eq(dc.names[k], ot_synth_class_name(k));
    int64_t scanned = 0;
    for (int s = 0; s < 2; s++) {
        ot_dataset *d;
        ck_assert_msg(ot_dataset_open_split(&dc, s, 2, true, &d, &e) == OT_OK, "%s", e.msg);
        const ot_data_summary *sum = &d->sum;
        ck_assert_int_eq(d->n, s ? c->n_val : c->n_train);
        ck_assert_int_eq(sum->listed, d->n);
        ck_assert_int_eq(sum->corrupt, 0);
        ck_assert_int_eq(sum->bad_labels, 0);
        ck_assert_int_eq(sum->missing, 0);
        ck_assert_int_eq(sum->duplicates, 0);
        if (c->min_obj > 0) ck_assert_int_eq(sum->labelled, d->n);
        for (int64_t i = 0; i < d->n; i++) ck_assert(d->w0[i] == W && d->h0[i] == H);
        scanned += sum->boxes;
        ot_dataset_destroy(d);
    }
    ck_assert_int_eq(scanned, n_boxes);
    ot_data_cfg_free(&dc);
}

START_TEST(labels_and_dataset_scan) {
    ot_synth_cfg c;
    small_cfg(&c, "scan/default", 3);
    c.n_train = 24;
    c.n_val = 6;
    int64_t nb;
    ot_error e;
    ck_assert_msg(ot_synth_make(&c, &nb, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_ge(nb, 30); /* 1..4 objects per image */
    check_dataset(&c, nb);
    /* six classes, non-square images, more objects per image */
    small_cfg(&c, "scan/six", 4);
    c.n_train = 20;
    c.nc = 6;
    c.img_w = 320;
    c.img_h = 192;
    c.min_obj = 2;
    c.max_obj = 6;
    ck_assert_msg(ot_synth_make(&c, &nb, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_ge(nb, 2 * 24 * 8 / 10);
    check_dataset(&c, nb);
}
END_TEST

START_TEST(bad_configurations) {
    ot_synth_cfg c;
    ot_error e;
    int64_t nb;
    small_cfg(&c, "bad", 1);
    ck_assert(ot_synth_cfg_check(&c, &e) == OT_OK);
    c.nc = 7;
    ck_assert(ot_synth_make(&c, &nb, &e) == OT_ERR_INVALID && strstr(e.msg, "nc"));
    small_cfg(&c, "bad", 1);
    c.min_obj = 3;
    c.max_obj = 2;
    ck_assert(ot_synth_make(&c, &nb, &e) == OT_ERR_INVALID && strstr(e.msg, "objects"));
    small_cfg(&c, "bad", 1);
    c.img = 32;
    ck_assert(ot_synth_make(&c, &nb, &e) == OT_ERR_INVALID && strstr(e.msg, "size"));
    small_cfg(&c, "bad", 1);
    c.n_val = 0;
    ck_assert(ot_synth_make(&c, &nb, &e) == OT_ERR_INVALID);
    small_cfg(&c, "bad", 1);
    c.out_dir = NULL;
    ck_assert(ot_synth_make(&c, &nb, &e) == OT_ERR_INVALID);
    /* a file where the folder should be */
    FILE *f = fopen(wpath("afile"), "wb");
    ck_assert(f != NULL);
    fclose(f);
    small_cfg(&c, "afile/sub", 1);
    ck_assert(ot_synth_make(&c, &nb, &e) == OT_ERR_IO);
    ck_assert_str_eq(ot_synth_class_name(5), "diamond");
    ck_assert(ot_synth_class_name(6) == NULL);
}
END_TEST

/* ---- boxes are tight around the pixels ---- */
static int pdiff(const ot_image *a, const ot_image *b, int x, int y) {
    const uint8_t *p = a->px + 3 * ((size_t)y * a->w + x), *q = b->px + 3 * ((size_t)y * b->w + x);
    return abs(p[0] - q[0]) + abs(p[1] - q[1]) + abs(p[2] - q[2]);
}

static int imax(int a, int b) { return a > b ? a : b; }

static bool in_other(const double (*bx)[4], int n, int self, int x, int y) {
    for (int k = 0; k < n; k++)
        if (k != self && x + 1 > bx[k][0] - 1 && x < bx[k][2] + 1 && y + 1 > bx[k][1] - 1 && y < bx[k][3] + 1) return true;
    return false;
}

#define TIGHT_INSIDE 30 /* sum over channels; the generator's smallest is about 50 (2000 images) */

/* Sides of box b (pixels x1 y1 x2 y2) that are not tight: the band of the two
 * pixel columns/rows just inside a side must hold a pixel that differs from
 * the background by TIGHT_INSIDE; the column/row just outside (pixels wholly
 * outside the box) must equal the background wherever no other box is near. */
static int loose_sides(const ot_image *im, const ot_image *bg, const double *b, const double (*bx)[4], int n, int self) {
    int W = im->w, H = im->h, x0 = (int)floor(b[0]), y0 = (int)floor(b[1]), x1 = (int)ceil(b[2]) - 1, y1 = (int)ceil(b[3]) - 1;
    int bad = 0, m[4] = {0, 0, 0, 0}, out[4] = {0, 0, 0, 0};
    for (int y = y0; y <= y1; y++)
        for (int d = 0; d < 2; d++) {
            if (y < 0 || y >= H) continue;
            if (x0 + d >= 0 && x0 + d < W) m[0] = imax(m[0], pdiff(im, bg, x0 + d, y));
            if (x1 - d >= 0 && x1 - d < W) m[1] = imax(m[1], pdiff(im, bg, x1 - d, y));
        }
    for (int x = x0; x <= x1; x++)
        for (int d = 0; d < 2; d++) {
            if (x < 0 || x >= W) continue;
            if (y0 + d >= 0 && y0 + d < H) m[2] = imax(m[2], pdiff(im, bg, x, y0 + d));
            if (y1 - d >= 0 && y1 - d < H) m[3] = imax(m[3], pdiff(im, bg, x, y1 - d));
        }
    for (int y = y0 - 1; y <= y1 + 1; y++) {
        if (y < 0 || y >= H) continue;
        if (x0 - 1 >= 0 && !in_other(bx, n, self, x0 - 1, y)) out[0] = imax(out[0], pdiff(im, bg, x0 - 1, y));
        if (x1 + 1 < W && !in_other(bx, n, self, x1 + 1, y)) out[1] = imax(out[1], pdiff(im, bg, x1 + 1, y));
    }
    for (int x = x0 - 1; x <= x1 + 1; x++) {
        if (x < 0 || x >= W) continue;
        if (y0 - 1 >= 0 && !in_other(bx, n, self, x, y0 - 1)) out[2] = imax(out[2], pdiff(im, bg, x, y0 - 1));
        if (y1 + 1 < H && !in_other(bx, n, self, x, y1 + 1)) out[3] = imax(out[3], pdiff(im, bg, x, y1 + 1));
    }
    for (int s = 0; s < 4; s++) bad += (m[s] < TIGHT_INSIDE) + (out[s] != 0);
    return bad;
}

static void check_tight(const ot_synth_cfg *c, int n_images, int *n_checked, int *n_mutants, int *n_caught) {
    for (int i = 0; i < n_images; i++) {
        ot_image im, bg;
        ot_synth_box sb[OT_SYNTH_MAX_OBJ];
        int n;
        ot_error e;
        ck_assert_msg(ot_synth_render(c, 0, i, &im, &bg, sb, &n, &e) == OT_OK, "%s", e.msg);
        ot_label_result r;
        read_labels(c->out_dir, 0, i, c->nc, &r);
        ck_assert_int_eq(r.n, n);
        double bx[OT_SYNTH_MAX_OBJ][4];
        for (int k = 0; k < n; k++) { /* the label file's boxes, in pixels */
            const float *l = r.rows + 5 * k;
            ck_assert_int_eq((int)l[0], sb[k].cls);
            bx[k][0] = (l[1] - l[3] / 2) * im.w;
            bx[k][1] = (l[2] - l[4] / 2) * im.h;
            bx[k][2] = (l[1] + l[3] / 2) * im.w;
            bx[k][3] = (l[2] + l[4] / 2) * im.h;
            ck_assert(fabs(bx[k][0] - sb[k].x1) < 1e-3 && fabs(bx[k][3] - sb[k].y2) < 1e-3);
        }
        for (int k = 0; k < n; k++) {
            int bad = loose_sides(&im, &bg, bx[k], (const double (*)[4])bx, n, k);
            ck_assert_msg(bad == 0, "image %d box %d (class %d, %.1f %.1f %.1f %.1f): %d loose sides", i, k, sb[k].cls,
                          bx[k][0], bx[k][1], bx[k][2], bx[k][3], bad);
            ++*n_checked;
            /* the check itself: on a box with no other box within 3 px, each
             * side moved 2 px out or in must be caught (near other objects
             * their pixels can hide a wrong side) */
            bool alone = true;
            for (int o = 0; o < n; o++)
                if (o != k && bx[o][0] < bx[k][2] + 3 && bx[o][2] > bx[k][0] - 3 && bx[o][1] < bx[k][3] + 3 && bx[o][3] > bx[k][1] - 3)
                    alone = false;
            if (!alone) continue;
            for (int s = 0; s < 4; s++)
                for (int dir = -1; dir <= 1; dir += 2) {
                    double m[4];
                    memcpy(m, bx[k], sizeof m);
                    m[s] += (s < 2 ? -dir : dir) * 2.0; /* dir 1: outwards */
                    ++*n_mutants;
                    *n_caught += loose_sides(&im, &bg, m, (const double (*)[4])bx, n, k) > 0;
                }
        }
        free(r.rows);
        ot_image_free(&im);
        ot_image_free(&bg);
    }
}

START_TEST(boxes_are_tight) {
    ot_synth_cfg c;
    small_cfg(&c, "tight/a", 11);
    c.n_train = 60;
    c.n_val = 1;
    int64_t nb;
    ot_error e;
    ck_assert_msg(ot_synth_make(&c, &nb, &e) == OT_OK, "%s", e.msg);
    int checked = 0, mutants = 0, caught = 0;
    check_tight(&c, c.n_train, &checked, &mutants, &caught);
    small_cfg(&c, "tight/b", 12);
    c.n_train = 30;
    c.n_val = 1;
    c.nc = 6;
    c.img_w = 200;
    c.img_h = 280;
    c.max_obj = 6;
    ck_assert_msg(ot_synth_make(&c, &nb, &e) == OT_OK, "%s", e.msg);
    check_tight(&c, c.n_train, &checked, &mutants, &caught);
    ck_assert_int_ge(checked, 200);
    ck_assert_int_ge(mutants, 8 * 60);
    ck_assert_msg(caught == mutants, "only %d of %d sides moved by 2 px caught", caught, mutants);
}
END_TEST

/* ---- the JPEG files are the rendered images ---- */
START_TEST(jpeg_matches_render) {
    ot_synth_cfg c;
    small_cfg(&c, "jpeg", 5);
    int64_t nb;
    ot_error e;
    ck_assert_msg(ot_synth_make(&c, &nb, &e) == OT_OK, "%s", e.msg);
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < (s ? c.n_val : c.n_train); i++) {
            ot_image im, dec;
            ot_synth_box sb[OT_SYNTH_MAX_OBJ];
            int n, w0, h0;
            ck_assert(ot_synth_render(&c, s, i, &im, NULL, sb, &n, &e) == OT_OK);
            char p[1200];
            snprintf(p, sizeof p, "%s/images/%s/%06d.jpg", c.out_dir, s ? "val" : "train", i);
            ck_assert_msg(ot_image_load(p, 0, &dec, &w0, &h0, &e) == OT_OK, "%s", e.msg);
            ck_assert(dec.w == 256 && dec.h == 256);
            double sad = 0;
            for (size_t k = 0; k < (size_t)256 * 256 * 3; k++) sad += abs(im.px[k] - dec.px[k]);
            sad /= 256.0 * 256 * 3;
            ck_assert_msg(sad > 0 && sad < 3, "%s: mean |render - decoded| %.2f", p, sad); /* JPEG q90 */
            ot_label_result r;
            read_labels(c.out_dir, s, i, c.nc, &r);
            ck_assert_int_eq(r.n, n);
            for (int k = 0; k < n; k++) {
                const float *l = r.rows + 5 * k;
                ck_assert(fabs(l[1] - (sb[k].x1 + sb[k].x2) / 2 / 256) < 2e-6 && fabs(l[2] - (sb[k].y1 + sb[k].y2) / 2 / 256) < 2e-6);
                ck_assert(fabs(l[3] - (sb[k].x2 - sb[k].x1) / 256) < 2e-6 && fabs(l[4] - (sb[k].y2 - sb[k].y1) / 256) < 2e-6);
            }
            free(r.rows);
            ot_image_free(&im);
            ot_image_free(&dec);
        }
}
END_TEST

/* ---- the command line (once `data synth` is wired into the dispatcher) ---- */
START_TEST(cli_data_synth) {
    char cmd[2048], err[4096];
    snprintf(cmd, sizeof cmd, "%s data synth --help > /dev/null", OT_CLI);
    if (tu_run(cmd, err, sizeof err) != 0) {
        fprintf(stderr, "SKIP: %s has no `data synth` yet (%s)\n", OT_CLI, err);
        return;
    }
    snprintf(cmd, sizeof cmd, "%s data synth --out %s --train 3 --val 2 --img 96 --nc 4 --seed 9 > %s", OT_CLI, wpath("cli/ds"),
             wpath("cli/out.txt"));
    char mk[1200];
    snprintf(mk, sizeof mk, "mkdir -p '%s'", wpath("cli"));
    ck_assert(system(mk) == 0);
    ck_assert_msg(tu_run(cmd, err, sizeof err) == 0, "%s", err);
    uint8_t *t;
    size_t n;
    ck_assert(read_file(wpath("cli/out.txt"), &t, &n));
    t[n ? n - 1 : 0] = 0;
    ck_assert_msg(strstr((char *)t, "data.yaml") && strstr((char *)t, "3 train + 2 val"), "%s", (char *)t);
    free(t);
    ot_data_cfg dc;
    ot_error e;
    ck_assert_msg(ot_data_cfg_load(wpath("cli/ds/data.yaml"), &dc, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(dc.nc, 4);
    ck_assert_str_eq(dc.names[3], "cross");
    ot_data_cfg_free(&dc);
    /* the same files as the library makes */
    ot_synth_cfg c;
    small_cfg(&c, "cli/lib", 9);
    c.n_train = 3;
    c.n_val = 2;
    c.img = 96;
    c.nc = 4;
    int64_t nb;
    ck_assert(ot_synth_make(&c, &nb, &e) == OT_OK);
    ck_assert(same_file(wpath("cli/ds/images/val/000001.jpg"), wpath("cli/lib/images/val/000001.jpg")));
    ck_assert(same_file(wpath("cli/ds/labels/train/000002.txt"), wpath("cli/lib/labels/train/000002.txt")));
    static const char *const bad[][2] = {
        {"--out X --nc 7", "--nc"},   {"--out X --img 10", "--img"},   {"--out X --train 0", "--train"},
        {"--out X --val abc", "--val"}, {"--out X --bogus", "unknown"}, {"--train 5", "--out"},
        {"--out X --min-obj 3 --max-obj 2", "--min-obj"}, {"--out X --seed", "--seed"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(cmd, sizeof cmd, "cd '%s' && %s data synth %s", wpath("cli"), OT_CLI, bad[k][0]);
        ck_assert_msg(tu_run(cmd, err, sizeof err) == 2, "%s: exit code", bad[k][0]);
        ck_assert_msg(strstr(err, bad[k][1]), "%s: %s", bad[k][0], err);
    }
    ck_assert(!tu_exists(wpath("cli/X/data.yaml")));
}
END_TEST

int main(void) {
    Suite *s = suite_create("synth");
    TCase *t = tcase_create("synth");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, deterministic_for_a_seed);
    tcase_add_test(t, labels_and_dataset_scan);
    tcase_add_test(t, bad_configurations);
    tcase_add_test(t, boxes_are_tight);
    tcase_add_test(t, jpeg_matches_render);
    tcase_add_test(t, cli_data_synth);
    suite_add_tcase(s, t);
    return tu_main(s);
}
