/* test_data.c: datasets, decoding, augmentation and the loader (train/dataset,
 * image_io, augment, loader, coco, hyp) and the data CLI. Synthetic images
 * with known coloured rectangles are generated in the work folder; references
 * are literals computed from Ultralytics' formulas (see the comments), the
 * pixels themselves, or independent counts. coco128 tests skip without ../shared. */
#include "testutil.h"
#include "train/coco.h"
#include "train/dataset.h"
#include "train/hyp.h"
#include "train/image_io.h"
#include "train/loader.h"
#include <math.h>
#include <jansson.h>
#include <png.h>
#include <string.h>

/* ---- helpers ---- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void write_png(const char *path, const ot_image *im) {
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = (png_uint_32)im->w;
    pi.height = (png_uint_32)im->h;
    pi.format = PNG_FORMAT_BGR;
    ck_assert_msg(png_image_write_to_file(&pi, path, 0, im->px, 0, NULL), "png write %s", path);
}

static const uint8_t colors[8][3] = {{0, 0, 255}, {0, 255, 0}, {255, 0, 0}, {0, 255, 255},
                                     {255, 0, 255}, {255, 255, 0}, {0, 128, 255}, {128, 0, 128}};

/* white image with one rectangle [x0,x1) x [y0,y1) of colour k */
static void rect_image(ot_image *im, int w, int h, int x0, int y0, int x1, int y1, int k) {
    ck_assert(ot_image_alloc(im, w, h));
    memset(im->px, 255, (size_t)w * h * 3);
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) memcpy(im->px + ((size_t)y * w + x) * 3, colors[k], 3);
}

static char *wpath(const char *rel) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 1024, "%s/%s", tu_work(), rel);
    return b;
}

static void mkdirs(const char *rel) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/%s'", tu_work(), rel);
    ck_assert(system(cmd) == 0);
}

/* The synthetic dataset: 8 PNG images of various sizes, one rectangle each, class = image. */
static const int syn[8][6] = {{320, 240, 40, 30, 200, 150},  {200, 300, 20, 100, 150, 280}, {256, 200, 60, 40, 196, 160},
                              {400, 200, 100, 20, 380, 160}, {150, 180, 10, 10, 100, 120},  {300, 330, 150, 50, 280, 250},
                              {240, 320, 30, 200, 210, 300}, {512, 384, 50, 40, 300, 330}};
static void make_syn(void) {
    static bool done;
    if (done) return;
    mkdirs("syn/images");
    mkdirs("syn/labels");
    for (int i = 0; i < 8; i++) {
        const int *s = syn[i];
        ot_image im;
        rect_image(&im, s[0], s[1], s[2], s[3], s[4], s[5], i);
        char p[64], lab[128];
        snprintf(p, sizeof p, "syn/images/im%d.png", i);
        write_png(wpath(p), &im);
        ot_image_free(&im);
        snprintf(p, sizeof p, "syn/labels/im%d.txt", i);
        snprintf(lab, sizeof lab, "%d %.8f %.8f %.8f %.8f\n", i, (s[2] + s[4]) / 2.0 / s[0], (s[3] + s[5]) / 2.0 / s[1],
                 (double)(s[4] - s[2]) / s[0], (double)(s[5] - s[3]) / s[1]);
        write_text(wpath(p), lab);
    }
    write_text(wpath("syn/data.yaml"), "train: images\nval: images\nnames: [c0, c1, c2, c3, c4, c5, c6, c7]\n");
    done = true;
}

static ot_dataset *open_syn(void) {
    make_syn();
    ot_data_cfg c;
    ot_error e;
    ck_assert_msg(ot_data_cfg_load(wpath("syn/data.yaml"), &c, &e) == OT_OK, "%s", e.msg);
    ot_dataset *d;
    ck_assert_msg(ot_dataset_open_split(&c, OT_SPLIT_TRAIN, 2, true, &d, &e) == OT_OK, "%s", e.msg);
    ot_data_cfg_free(&c);
    return d;
}

static bool is_color(const uint8_t *p, int k) {
    for (int c = 0; c < 3; c++) if (abs((int)p[c] - colors[k][c]) > 40) return false;
    return true;
}

/* ---- hyp ---- */

START_TEST(hyp_defaults_and_file) {
    ot_hyp h;
    ot_hyp_default(&h);
    /* hyp.scratch-low.yaml */
    ck_assert(h.lr0 == 0.01 && h.lrf == 0.01 && h.momentum == 0.937 && h.weight_decay == 0.0005);
    ck_assert(h.warmup_epochs == 3.0 && h.warmup_momentum == 0.8 && h.warmup_bias_lr == 0.1);
    ck_assert(h.box == 0.05 && h.cls == 0.5 && h.cls_pw == 1.0 && h.obj == 1.0 && h.obj_pw == 1.0);
    ck_assert(h.iou_t == 0.20 && h.anchor_t == 4.0 && h.fl_gamma == 0.0 && h.label_smoothing == 0.0);
    ck_assert(h.hsv_h == 0.015 && h.hsv_s == 0.7 && h.hsv_v == 0.4 && h.degrees == 0 && h.translate == 0.1);
    ck_assert(h.scale == 0.5 && h.shear == 0 && h.perspective == 0 && h.flipud == 0 && h.fliplr == 0.5);
    ck_assert(h.mosaic == 1.0 && h.mixup == 0 && h.copy_paste == 0);
    ot_error e;
    ot_set_quiet(true);
    ck_assert_msg(ot_hyp_load(OT_FIXTURES "/data/hyp_test.yaml", &h, &e) == OT_OK, "%s", e.msg);
    ck_assert(h.lr0 == 0.02 && h.degrees == 12.5 && h.mosaic == 0.75 && h.copy_paste == 0.1 && h.fliplr == 0.5);
    ck_assert(ot_hyp_load(OT_FIXTURES "/data/hyp_bad.yaml", &h, &e) == OT_ERR_PARSE);
    ck_assert_msg(strstr(e.msg, "hyp_bad.yaml:2") && strstr(e.msg, "fliplr"), "%s", e.msg);
    ot_set_quiet(false);
}
END_TEST

/* ---- paths and YAML ---- */

START_TEST(path_rules) {
    char *s = ot_img2label_path("/d/coco/images/train2017/000001.jpg");
    ck_assert_str_eq(s, "/d/coco/labels/train2017/000001.txt");
    free(s);
    s = ot_img2label_path("/x/images/a/images/b/c.d.PNG"); /* the last /images/, the last extension */
    ck_assert_str_eq(s, "/x/images/a/labels/b/c.d.txt");
    free(s);
    s = ot_img2label_path("/flat/pic.jpeg");
    ck_assert_str_eq(s, "/flat/pic.txt");
    free(s);
    ck_assert(ot_is_image_path("a/b.JPG") && ot_is_image_path("x.webp") && !ot_is_image_path("x.txt") && !ot_is_image_path("noext"));
}
END_TEST

START_TEST(yaml_rules) {
    make_syn();
    mkdirs("yaml/sub");
    /* names as a map, path relative to the YAML, train as a .txt list and val as a list */
    write_text(wpath("yaml/list.txt"), "./../syn/images/im1.png\n../syn/images/im0.png\n\n");
    write_text(wpath("yaml/sub/d.yaml"), "path: ..\ntrain: list.txt\nval: [../syn/images, list.txt]\ntest:\n"
                                         "nc: 3\nnames:\n  0: a\n  2: c\n  1: b\ndownload: rm -rf /\n");
    ot_data_cfg c;
    ot_error e;
    ck_assert_msg(ot_data_cfg_load(wpath("yaml/sub/d.yaml"), &c, &e) == OT_OK, "%s", e.msg);
    ck_assert_str_eq(c.root, wpath("yaml"));
    ck_assert_int_eq(c.nc, 3);
    ck_assert_str_eq(c.names[0], "a");
    ck_assert_str_eq(c.names[1], "b");
    ck_assert_str_eq(c.names[2], "c");
    ck_assert(c.has_download);
    ck_assert_int_eq(c.n_split[0], 1);
    ck_assert_int_eq(c.n_split[1], 2);
    ck_assert_int_eq(c.n_split[2], 0);
    ck_assert_str_eq(c.split[0][0], wpath("yaml/list.txt"));
    ck_assert_str_eq(c.split[1][0], wpath("syn/images"));
    char **files;
    int64_t n;
    ck_assert_msg(ot_list_images(c.split[0], 1, &files, &n, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(n, 2); /* sorted: im0 before im1 */
    ck_assert_str_eq(files[0], wpath("syn/images/im0.png"));
    ck_assert_str_eq(files[1], wpath("syn/images/im1.png"));
    for (int64_t i = 0; i < n; i++) free(files[i]);
    free(files);
    ck_assert(ot_list_images(c.split[1], 2, &files, &n, &e) == OT_OK);
    ck_assert_int_eq(n, 10);
    for (int64_t i = 0; i < n; i++) free(files[i]);
    free(files);
    ot_data_cfg_free(&c);
    /* names as a list; nc disagreeing; a missing dataset says where it looked; download never run */
    write_text(wpath("yaml/l.yaml"), "train: ../syn/images\nval: ../syn/images\nnames: [x, y]\n");
    ck_assert(ot_data_cfg_load(wpath("yaml/l.yaml"), &c, &e) == OT_OK);
    ck_assert_int_eq(c.nc, 2);
    ck_assert_str_eq(c.names[1], "y");
    ot_data_cfg_free(&c);
    write_text(wpath("yaml/nc.yaml"), "train: ../syn/images\nval: ../syn/images\nnc: 3\nnames: [x, y]\n");
    ck_assert(ot_data_cfg_load(wpath("yaml/nc.yaml"), &c, &e) == OT_ERR_INVALID);
    ck_assert_msg(strstr(e.msg, "nc is 3"), "%s", e.msg);
    write_text(wpath("yaml/missing.yaml"), "path: ../nowhere\ntrain: images/train\nval: images/val\nnames: [x]\n"
                                           "download: touch " OT_WORK "/yaml/DOWNLOADED\n");
    ck_assert(ot_data_cfg_load(wpath("yaml/missing.yaml"), &c, &e) == OT_ERR_IO);
    ck_assert_msg(strstr(e.msg, "dataset not found") && strstr(e.msg, "nowhere/images/train") && strstr(e.msg, "never run"), "%s", e.msg);
    ck_assert(!tu_exists(wpath("yaml/DOWNLOADED")));
    /* Ultralytics' '../x' fallback: root/x when root/../x is missing */
    write_text(wpath("syn/fallback.yaml"), "train: ../images\nval: images\nnames: [a,b,c,d,e,f,g,h]\n");
    ck_assert_msg(ot_data_cfg_load(wpath("syn/fallback.yaml"), &c, &e) == OT_OK, "%s", e.msg);
    ck_assert_str_eq(c.split[0][0], wpath("syn/images"));
    ot_data_cfg_free(&c);
}
END_TEST

/* ---- labels ---- */

START_TEST(label_parsing) {
    ot_label_result r;
    ot_error e;
    const char *t = "0 0.5 0.5 0.2 0.4\n\n  1 0.25 0.75 0.5 0.5  \n0 0.5 0.5 0.2 0.4\n"
                    "2 0.1 0.1 0.5 0.1 0.3 0.6\n0 1.0005 0.5 0.2 0.2\n";
    ck_assert(ot_labels_parse(t, strlen(t), 3, &r, &e) == OT_OK);
    ck_assert_int_eq(r.bad_line, 0);
    ck_assert_int_eq(r.n, 4);
    ck_assert_int_eq(r.duplicates, 1);
    ck_assert_int_eq(r.polygons, 1);
    /* polygon (0.1,0.1) (0.5,0.1) (0.3,0.6) -> box x 0.1..0.5, y 0.1..0.6 */
    const float poly[5] = {2, 0.3f, 0.35f, 0.4f, 0.5f};
    for (int k = 0; k < 5; k++) ck_assert_float_eq_tol(r.rows[10 + k], poly[k], 1e-6);
    ck_assert_float_eq(r.rows[16], 1.0f); /* within tolerance: clipped */
    ck_assert_float_eq(r.rows[5], 1.0f);
    ck_assert_float_eq(r.rows[6], 0.25f);
    free(r.rows);
    static const struct { const char *text; int line; const char *why; } bad[] = {
        {"0 0.5 0.5 0.2\n", 1, "4 columns"},
        {"0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n", 2, "class 3"},
        {"0 nan 0.5 0.2 0.2\n", 1, "non-finite"},
        {"0 0.5 0.5 0.2 0.2 0.1\n", 1, "6 columns"},
        {"0 0.5 1.2 0.2 0.2\n", 1, "outside 0..1"},
        {"0 -0.01 0.5 0.2 0.2\n", 1, "outside 0..1"},
        {"0.5 0.5 0.5 0.2 0.2\n", 1, "class 0.5"},
        {"0 0.5 0.5 0.2 x\n", 1, "not a number"},
        {"1 0.1 0.1 0.5 0.1 0.3 0.6 0.2\n", 1, "8 columns"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert(ot_labels_parse(bad[i].text, strlen(bad[i].text), 3, &r, &e) == OT_OK);
        ck_assert_int_eq(r.bad_line, bad[i].line);
        ck_assert_msg(strstr(r.why, bad[i].why), "case %zu: %s", i, r.why);
        ck_assert(r.rows == NULL && r.n == 0);
    }
}
END_TEST

/* ---- decoding ---- */

START_TEST(decode_exif_and_dct_scaling) {
    mkdirs("img");
    /* 40x20: left half red, right half blue; EXIF orientation 6 (rotate 90 clockwise) -> 20x40, red on top */
    ot_image im;
    ck_assert(ot_image_alloc(&im, 40, 20));
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 40; x++) memcpy(im.px + (y * 40 + x) * 3, x < 20 ? colors[0] : colors[2], 3);
    ot_error e;
    ck_assert(ot_image_write_jpeg(wpath("img/plain.jpg"), &im, 100, &e) == OT_OK);
    ot_image_free(&im);
    uint8_t *buf;
    size_t len;
    ck_assert(ot_file_read(wpath("img/plain.jpg"), &buf, &len, &e) == OT_OK);
    static const uint8_t app1[] = {0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 0x2A, 0, 0, 0, 8,
                                   0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0};
    uint8_t *j = malloc(len + sizeof app1);
    memcpy(j, buf, 2);
    memcpy(j + 2, app1, sizeof app1);
    memcpy(j + 2 + sizeof app1, buf + 2, len - 2);
    ck_assert_int_eq(ot_jpeg_exif_orientation(j, len + sizeof app1), 6);
    int w0, h0;
    ck_assert_msg(ot_image_decode(j, len + sizeof app1, "exif.jpg", 0, &im, &w0, &h0, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(im.w, 20);
    ck_assert_int_eq(im.h, 40);
    ck_assert_int_eq(w0, 20);
    ck_assert_int_eq(h0, 40);
    ck_assert(is_color(im.px + (5 * 20 + 10) * 3, 0));  /* top: red */
    ck_assert(is_color(im.px + (35 * 20 + 10) * 3, 2)); /* bottom: blue */
    ot_image_free(&im);
    free(j);
    free(buf);
    /* 1600x1200 decoded for a 640 target: DCT scale 1/2 -> 800x600; the original size is reported */
    ck_assert(ot_image_alloc(&im, 1600, 1200));
    for (int i = 0; i < 1600 * 1200 * 3; i++) im.px[i] = (uint8_t)((i / 3) % 1600 / 7);
    ck_assert(ot_image_write_jpeg(wpath("img/big.jpg"), &im, 90, &e) == OT_OK);
    ot_image_free(&im);
    ck_assert(ot_image_load(wpath("img/big.jpg"), 640, &im, &w0, &h0, &e) == OT_OK);
    ck_assert_int_eq(im.w, 800);
    ck_assert_int_eq(im.h, 600);
    ck_assert_int_eq(w0, 1600);
    ck_assert_int_eq(h0, 1200);
    ot_image_free(&im);
    ck_assert(ot_image_load(wpath("img/big.jpg"), 1000, &im, &w0, &h0, &e) == OT_OK);
    ck_assert_int_eq(im.w, 1600); /* 1/2 would be under 1000 */
    ot_image_free(&im);
}
END_TEST

/* ---- geometry ---- */

START_TEST(letterbox_geometry) {
    /* references: Ultralytics load_image (ceil(w0*r)) and letterbox(auto=False) evaluated in Python */
    int w, h;
    ot_load_size(500, 375, 640, &w, &h); ck_assert(w == 640 && h == 480);
    ot_load_size(333, 500, 640, &w, &h); ck_assert(w == 427 && h == 640);
    ot_load_size(612, 612, 640, &w, &h); ck_assert(w == 640 && h == 640);
    ot_load_size(301, 207, 256, &w, &h); ck_assert(w == 256 && h == 177);
    static const struct { int w, h, ow, oh, up; double r; int nw, nh; double dw, dh; int top, left; } c[] = {
        {640, 480, 640, 640, 1, 1.0, 640, 480, 0, 80, 80, 0},
        {427, 640, 640, 640, 1, 1.0, 427, 640, 106.5, 0, 0, 106},
        {333, 500, 640, 640, 1, 1.28, 426, 640, 107, 0, 0, 107},
        {301, 207, 256, 256, 1, 0.8504983388704319, 256, 176, 0, 40, 40, 0},
        {500, 375, 448, 640, 0, 0.896, 448, 336, 0, 152, 152, 0},
        {171, 100, 64, 64, 1, 0.3742690058479532, 64, 37, 0, 13.5, 13, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        ot_lbox g;
        ot_letterbox_geom(c[i].w, c[i].h, c[i].ow, c[i].oh, c[i].up, &g);
        ck_assert_msg(fabs(g.ratio - c[i].r) < 1e-12 && g.new_w == c[i].nw && g.new_h == c[i].nh && g.dw == c[i].dw &&
                          g.dh == c[i].dh && g.top == c[i].top && g.left == c[i].left,
                      "case %zu: r %g new %dx%d pad %g %g top %d left %d", i, g.ratio, g.new_w, g.new_h, g.dw, g.dh, g.top, g.left);
    }
    /* pixels: a red 171x100 image letterboxed to 64x64: rows 13..49 red, the rest 114 */
    ot_image im;
    rect_image(&im, 171, 100, 0, 0, 171, 100, 0);
    ot_lbox g;
    ot_letterbox_geom(171, 100, 64, 64, true, &g);
    uint8_t out[64 * 64 * 3];
    ot_letterbox(im.px, &g, out);
    for (int y = 0; y < 64; y++) {
        const uint8_t *p = out + (y * 64 + 32) * 3;
        if (y >= 13 && y < 50) ck_assert_msg(p[0] == 0 && p[1] == 0 && p[2] == 255, "row %d", y);
        else ck_assert_msg(p[0] == 114 && p[1] == 114 && p[2] == 114, "row %d", y);
    }
    ot_image_free(&im);
}
END_TEST

/* Each label box is filled with its class colour and its outside ring is not (pixels are the reference). */
static void check_boxes_vs_pixels(const ot_sample_out *o, bool tight_ring, int *checked) {
    int count[8] = {0};
    for (int i = 0; i < o->n; i++) count[(int)o->rows[5 * i]]++;
    for (int i = 0; i < o->n; i++) {
        const float *r = o->rows + 5 * i;
        int k = (int)r[0];
        ck_assert(k >= 0 && k < 8);
        double x1 = (r[1] - r[3] / 2) * o->w, x2 = (r[1] + r[3] / 2) * o->w;
        double y1 = (r[2] - r[4] / 2) * o->h, y2 = (r[2] + r[4] / 2) * o->h;
        int in = 0, tot = 0;
        for (int y = (int)ceil(y1 + 2); y < (int)floor(y2 - 2); y++)
            for (int x = (int)ceil(x1 + 2); x < (int)floor(x2 - 2); x++, tot++) in += is_color(o->hwc + ((size_t)y * o->w + x) * 3, k);
        if (tot < 9) continue;
        ck_assert_msg(in >= 0.97 * tot, "box %d class %d [%.1f %.1f %.1f %.1f]: %d of %d pixels have its colour", i, k, x1, y1, x2, y2, in, tot);
        if (tight_ring && count[k] == 1) {
            int ring = 0, rt = 0;
            for (int y = (int)floor(y1) - 4; y <= (int)ceil(y2) + 4; y++)
                for (int x = (int)floor(x1) - 4; x <= (int)ceil(x2) + 4; x++) {
                    if (x < 0 || y < 0 || x >= o->w || y >= o->h) continue;
                    if (x >= x1 - 2 && x <= x2 + 2 && y >= y1 - 2 && y <= y2 + 2) continue;
                    rt++;
                    ring += is_color(o->hwc + ((size_t)y * o->w + x) * 3, k);
                }
            ck_assert_msg(ring <= 0.02 * rt + 2, "box %d class %d: %d of %d ring pixels have its colour: box too small", i, k, ring, rt);
        }
        (*checked)++;
    }
}

START_TEST(mosaic_boxes_match_pixels) {
    ot_dataset *d = open_syn();
    ot_loader_cfg c;
    ot_loader_cfg_train(&c);
    c.img_size = 256;
    c.batch_size = 4;
    c.workers = 0;
    c.hyp.hsv_h = c.hyp.hsv_s = c.hyp.hsv_v = 0; /* colours stay the reference */
    c.hyp.flipud = 0.5;
    ot_loader *L;
    ot_error e;
    ck_assert_msg(ot_loader_create(d, &c, &L, &e) == OT_OK, "%s", e.msg);
    uint8_t *hwc = malloc(256 * 256 * 3);
    float rows[5 * 64];
    int checked = 0;
    for (int ep = 0; ep < 6; ep++)
        for (int pos = 0; pos < 8; pos++) {
            ot_sample_out o = {hwc, 0, 0, rows, 0, 64};
            ck_assert(ot_loader_sample(L, ep, pos, &o, &e) == OT_OK);
            ck_assert(o.w == 256 && o.h == 256);
            check_boxes_vs_pixels(&o, true, &checked);
        }
    ck_assert_msg(checked >= 60, "only %d boxes checked", checked);
    ot_loader_destroy(L);
    /* letterbox + random_perspective (mosaic off) and validation letterbox */
    c.hyp.mosaic = 0;
    ck_assert(ot_loader_create(d, &c, &L, &e) == OT_OK);
    checked = 0;
    for (int pos = 0; pos < 8; pos++) {
        ot_sample_out o = {hwc, 0, 0, rows, 0, 64};
        ck_assert(ot_loader_sample(L, 0, pos, &o, &e) == OT_OK);
        check_boxes_vs_pixels(&o, true, &checked);
    }
    ck_assert_int_ge(checked, 6);
    ot_loader_destroy(L);
    free(hwc);
    ot_dataset_destroy(d);
}
END_TEST

/* rotation, shear and perspective: the label is the enclosing box of the warped rectangle */
START_TEST(perspective_boxes_enclose_pixels) {
    ot_dataset *d = open_syn();
    ot_loader_cfg c;
    ot_loader_cfg_train(&c);
    c.img_size = 256;
    c.batch_size = 4;
    c.workers = 0;
    c.hyp.hsv_h = c.hyp.hsv_s = c.hyp.hsv_v = 0;
    c.hyp.degrees = 30;
    c.hyp.shear = 5;
    c.hyp.perspective = 0.0003;
    ot_loader *L;
    ot_error e;
    ck_assert(ot_loader_create(d, &c, &L, &e) == OT_OK);
    uint8_t *hwc = malloc(256 * 256 * 3);
    float rows[5 * 64];
    int checked = 0;
    for (int ep = 0; ep < 4; ep++)
        for (int pos = 0; pos < 8; pos++) {
            ot_sample_out o = {hwc, 0, 0, rows, 0, 64};
            ck_assert(ot_loader_sample(L, ep, pos, &o, &e) == OT_OK);
            for (int i = 0; i < o.n; i++) {
                int k = (int)rows[5 * i], same = 0;
                for (int j = 0; j < o.n; j++) same += (int)rows[5 * j] == k;
                if (same != 1) continue;
                const float *r = rows + 5 * i;
                double bx1 = (r[1] - r[3] / 2) * 256, bx2 = (r[1] + r[3] / 2) * 256;
                double by1 = (r[2] - r[4] / 2) * 256, by2 = (r[2] + r[4] / 2) * 256;
                /* the class's pixels near the box (a second copy whose box was filtered may lie elsewhere) */
                int x0 = 9999, y0 = 9999, x1 = -1, y1 = -1, cnt = 0;
                for (int y = (int)fmax(0, by1 - 6); y < (int)fmin(256, by2 + 6); y++)
                    for (int x = (int)fmax(0, bx1 - 6); x < (int)fmin(256, bx2 + 6); x++)
                        if (is_color(hwc + (y * 256 + x) * 3, k)) {
                            cnt++;
                            if (x < x0) x0 = x;
                            if (x > x1) x1 = x;
                            if (y < y0) y0 = y;
                            if (y > y1) y1 = y;
                        }
                if (cnt < 50) continue;
                /* the pixels lie in the box; the box is tight unless it was clipped at the
                 * border (Ultralytics clips the enclosing box of the corners, not the polygon) */
                bool edge = bx1 < 0.5 || by1 < 0.5 || bx2 > 255.5 || by2 > 255.5;
                ck_assert_msg(bx1 <= x0 + 3 && by1 <= y0 + 3 && bx2 >= x1 - 2 && by2 >= y1 - 2 &&
                                  (edge || (fabs(bx1 - x0) <= 3 && fabs(bx2 - (x1 + 1)) <= 3 && fabs(by1 - y0) <= 3 && fabs(by2 - (y1 + 1)) <= 3)),
                              "class %d: label [%.1f %.1f %.1f %.1f] pixels [%d %d %d %d]", k, bx1, by1, bx2, by2, x0, y0, x1 + 1, y1 + 1);
                checked++;
            }
        }
    ck_assert_msg(checked >= 30, "only %d boxes checked", checked);
    ot_loader_destroy(L);
    free(hwc);
    ot_dataset_destroy(d);
}
END_TEST

/* ---- loader ---- */

static void run_batches_cache(const ot_dataset *d, int workers, uint64_t seed, int64_t cache_mb, float **img, float **tg,
                              int64_t *nt) {
    ot_loader_cfg c;
    ot_loader_cfg_train(&c);
    c.cache_mb = cache_mb < 0 ? 0 : cache_mb;
    c.cache_ram = cache_mb < 0;
    c.img_size = 128;
    c.batch_size = 3; /* 8 images: batches of 3, 3, 2 */
    c.workers = workers;
    c.seed = seed;
    c.hyp.mixup = 0.5;
    ot_loader *L;
    ot_error e;
    ck_assert(ot_loader_create(d, &c, &L, &e) == OT_OK);
    size_t per = 3 * 128 * 128;
    *img = malloc(sizeof(float) * per * 16);
    *tg = malloc(sizeof(float) * 6 * 4096);
    size_t ni = 0;
    *nt = 0;
    for (int ep = 0; ep < 2; ep++) {
        ck_assert(ot_loader_start(L, ep, &e) == OT_OK);
        const ot_batch *b;
        int nb = 0;
        while (ot_loader_next(L, &b, &e) == OT_OK && b) {
            ck_assert_int_eq(b->n, nb < 2 ? 3 : 2);
            memcpy(*img + ni, b->images, sizeof(float) * per * (size_t)b->n);
            ni += per * (size_t)b->n;
            ck_assert(*nt + b->n_targets <= 4096);
            memcpy(*tg + 6 * *nt, b->targets, sizeof(float) * 6 * (size_t)b->n_targets);
            for (int64_t k = 0; k < b->n_targets; k++) {
                const float *t = b->targets + 6 * k;
                ck_assert(t[0] >= 0 && t[0] < b->n && t[2] >= 0 && t[2] <= 1 && t[3] >= 0 && t[3] <= 1 && t[4] > 0 && t[5] > 0);
            }
            *nt += b->n_targets;
            nb++;
        }
        ck_assert_int_eq(nb, 3);
    }
    ot_loader_destroy(L);
}

static void run_batches(const ot_dataset *d, int workers, uint64_t seed, float **img, float **tg, int64_t *nt) {
    ot_loader_cfg c;
    ot_loader_cfg_train(&c);
    run_batches_cache(d, workers, seed, c.cache_mb, img, tg, nt);
}

START_TEST(workers_do_not_change_batches) {
    ot_dataset *d = open_syn();
    float *i0, *t0, *i1, *t1, *i4, *t4, *i9, *t9;
    int64_t n0, n1, n4, n9;
    run_batches(d, 0, 7, &i0, &t0, &n0);
    run_batches(d, 1, 7, &i1, &t1, &n1);
    run_batches(d, 4, 7, &i4, &t4, &n4);
    run_batches(d, 4, 8, &i9, &t9, &n9);
    size_t bytes = sizeof(float) * 3 * 128 * 128 * 16;
    ck_assert_int_gt(n0, 0);
    ck_assert_int_eq(n0, n1);
    ck_assert_int_eq(n0, n4);
    ck_assert(memcmp(i0, i1, bytes) == 0 && memcmp(i0, i4, bytes) == 0);
    ck_assert(memcmp(t0, t1, sizeof(float) * 6 * (size_t)n0) == 0 && memcmp(t0, t4, sizeof(float) * 6 * (size_t)n0) == 0);
    ck_assert(memcmp(i0, i9, bytes) != 0); /* another seed, other batches */
    /* pixel range and layout: RGB planes in 0..1 */
    for (size_t k = 0; k < 3 * 128 * 128 * 16; k += 997) ck_assert(i0[k] >= 0 && i0[k] <= 1);
    free(i0); free(t0); free(i1); free(t1); free(i4); free(t4); free(i9); free(t9);
    ot_dataset_destroy(d);
}
END_TEST

START_TEST(validation_rect_batches) {
    ot_dataset *d = open_syn();
    ot_loader_cfg c;
    ot_loader_cfg_val(&c);
    c.img_size = 256;
    c.batch_size = 4;
    c.workers = 2;
    ot_loader *L;
    ot_error e;
    ck_assert(ot_loader_create(d, &c, &L, &e) == OT_OK);
    /* h/w of the 8 images sorted: .5 .75 .75 .78125 | 1.1 1.2 1.333 1.5 (Ultralytics' rule, by hand):
     * batch 0: maxi .78125 < 1 -> [.78125, 1] -> ceil(.78125*256/32 + .5)*32 = 224, ceil(8.5)*32 = 288
     * batch 1: mini 1.1 > 1 -> [1, 1/1.1] -> 288, ceil(8/1.1 + .5)*32 = 256 */
    const ot_batch *b;
    ck_assert(ot_loader_next(L, &b, &e) == OT_OK && b);
    ck_assert_int_eq(b->h, 224);
    ck_assert_int_eq(b->w, 288);
    ck_assert(ot_loader_next(L, &b, &e) == OT_OK && b);
    ck_assert_int_eq(b->h, 288);
    ck_assert_int_eq(b->w, 256);
    ck_assert(ot_loader_next(L, &b, &e) == OT_OK && !b);
    ot_loader_destroy(L);
    ot_dataset_destroy(d);
}
END_TEST

/* ---- bad data ---- */

static void make_bad(void) {
    mkdirs("bad/images");
    mkdirs("bad/labels");
    ot_image im;
    ot_error e;
    rect_image(&im, 64, 48, 10, 10, 40, 30, 0);
    ck_assert(ot_image_write_jpeg(wpath("bad/images/good2.jpg"), &im, 95, &e) == OT_OK);
    const char *pngs[] = {"good1", "badcols", "badcls", "nan", "range", "poly", "tol", "nolabel", "emptylabel"};
    for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "bad/images/%s.png", pngs[i]);
        write_png(wpath(p), &im);
    }
    ot_image_free(&im);
    uint8_t *buf;
    size_t len;
    ck_assert(ot_file_read(wpath("bad/images/good2.jpg"), &buf, &len, &e) == OT_OK);
    FILE *f = fopen(wpath("bad/images/trunc.jpg"), "wb");
    fwrite(buf, 1, len / 2, f);
    fclose(f);
    f = fopen(wpath("bad/images/corrupt.jpg"), "wb");
    fwrite(buf, 1, 200, f); /* the headers, then garbage */
    for (int i = 0; i < 3000; i++) fputc((i * 37) & 0xFF, f);
    fclose(f);
    free(buf);
    write_text(wpath("bad/images/empty.jpg"), "");
    write_text(wpath("bad/images/text.jpg"), "this is not an image\n");
    ck_assert(ot_image_alloc(&im, 5, 5));
    memset(im.px, 0, 75);
    write_png(wpath("bad/images/tiny.png"), &im);
    ot_image_free(&im);
    write_text(wpath("bad/labels/good1.txt"), "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n");
    write_text(wpath("bad/labels/good2.txt"), "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n");
    write_text(wpath("bad/labels/badcols.txt"), "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n");
    write_text(wpath("bad/labels/badcls.txt"), "7 0.5 0.5 0.2 0.2\n");
    write_text(wpath("bad/labels/nan.txt"), "0 nan 0.5 0.2 0.2\n");
    write_text(wpath("bad/labels/range.txt"), "0 1.2 0.5 0.2 0.2\n");
    write_text(wpath("bad/labels/poly.txt"), "1 0.1 0.1 0.5 0.1 0.3 0.6\n");
    write_text(wpath("bad/labels/tol.txt"), "2 1.0005 0.5 0.2 0.2\n");
    write_text(wpath("bad/labels/emptylabel.txt"), "");
    write_text(wpath("bad/labels/trunc.txt"), "0 0.5 0.5 0.2 0.2\n");
    write_text(wpath("bad/bad.yaml"), "train: images\nval: images\nnames: [a, b, c]\n");
    mkdirs("allbad/images");
    write_text(wpath("allbad/images/x.jpg"), "nope");
    write_text(wpath("allbad/images/y.png"), "");
    write_text(wpath("allbad/d.yaml"), "train: images\nval: images\nnames: [a]\n");
    mkdirs("noimg/images");
    write_text(wpath("noimg/images/readme.txt"), "");
    write_text(wpath("noimg/d.yaml"), "train: images/readme.txt\nval: images\nnames: [a]\n");
}

START_TEST(bad_data_skipped_and_counted) {
    make_bad();
    char *src[1] = {wpath("bad/images")};
    ot_dataset *d;
    ot_error e;
    ck_assert_msg(ot_dataset_open(src, 1, 3, 2, true, &d, &e) == OT_OK, "%s", e.msg);
    const ot_data_summary *s = &d->sum;
    ck_assert_int_eq(s->listed, 15);
    ck_assert_int_eq(s->corrupt, 5);    /* trunc, corrupt, empty, text, tiny */
    ck_assert_int_eq(s->bad_labels, 4); /* badcols, badcls, nan, range */
    ck_assert_int_eq(s->images, 6);     /* good1, good2, poly, tol, nolabel, emptylabel */
    ck_assert_int_eq(s->labelled, 4);
    ck_assert_int_eq(s->missing, 1);
    ck_assert_int_eq(s->empty, 1);
    ck_assert_int_eq(s->duplicates, 1);
    ck_assert_int_eq(s->polygons, 1);
    ck_assert_int_eq(s->boxes, 5);
    ck_assert_int_eq(s->per_class[0], 2);
    ck_assert_int_eq(s->per_class[1], 2);
    ck_assert_int_eq(s->per_class[2], 1);
    /* the loader runs on what is left */
    ot_loader_cfg c;
    ot_loader_cfg_train(&c);
    c.img_size = 64;
    c.batch_size = 6;
    c.workers = 2;
    ot_loader *L;
    ck_assert(ot_loader_create(d, &c, &L, &e) == OT_OK);
    const ot_batch *b;
    ck_assert(ot_loader_next(L, &b, &e) == OT_OK && b && b->n == 6);
    ck_assert_int_eq(ot_loader_load_errors(L), 0);
    ot_loader_destroy(L);
    ot_dataset_destroy(d);
    /* empty datasets are errors */
    char *src2[1] = {wpath("allbad/images")};
    ck_assert(ot_dataset_open(src2, 1, 1, 1, true, &d, &e) == OT_ERR_INVALID);
    ck_assert_msg(strstr(e.msg, "dataset is empty"), "%s", e.msg);
    char *src3[1] = {wpath("noimg/images")};
    ck_assert(ot_dataset_open(src3, 1, 1, 1, true, &d, &e) == OT_ERR_INVALID);
    ck_assert_msg(strstr(e.msg, "no images found"), "%s", e.msg);
}
END_TEST

static int count_lines(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

START_TEST(cli_data_check_and_show) {
    make_bad();
    make_syn();
    char cmd[2048], err[8192];
    snprintf(cmd, sizeof cmd, "%s data check --data %s --split train > %s", OT_CLI, wpath("bad/bad.yaml"), wpath("bad/check.txt"));
    ck_assert_int_eq(tu_run(cmd, err, sizeof err), 0);
    ck_assert_int_eq(count_lines(err, "ignoring"), 9); /* one warning per skipped file */
    ck_assert_int_eq(count_lines(err, "duplicate"), 1);
    uint8_t *out;
    size_t len;
    ot_error e;
    ck_assert(ot_file_read(wpath("bad/check.txt"), &out, &len, &e) == OT_OK);
    out = realloc(out, len + 1);
    out[len] = 0;
    ck_assert_msg(strstr((char *)out, "15 images found, 6 usable") && strstr((char *)out, "5 corrupt images, 4 label files"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s data check --data %s", OT_CLI, wpath("allbad/d.yaml"));
    ck_assert_int_eq(tu_run(cmd, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "dataset is empty"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s data check --data %s", OT_CLI, wpath("yaml/missing.yaml"));
    write_text(wpath("yaml/missing.yaml"), "path: ../nowhere\ntrain: images/train\nval: images/val\nnames: [x]\n");
    ck_assert_int_eq(tu_run(cmd, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "looked for at"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s data show --data %s --out %s --img 128 --batch-size 4 --seed 3 --hyp %s > /dev/null", OT_CLI,
             wpath("syn/data.yaml"), wpath("syn/show.jpg"), OT_FIXTURES "/data/hyp_test.yaml");
    ck_assert_msg(tu_run(cmd, err, sizeof err) == 0, "%s", err);
    ot_image im;
    int w0, h0;
    ck_assert(ot_image_load(wpath("syn/show.jpg"), 0, &im, &w0, &h0, &e) == OT_OK);
    ck_assert(im.w == 256 && im.h == 256); /* 2x2 grid of 128 */
    ot_image_free(&im);
    snprintf(cmd, sizeof cmd, "%s bench data --data %s --img 128 --workers 2 --batch-size 4 --batches 2 --json > %s", OT_CLI,
             wpath("syn/data.yaml"), wpath("syn/bench.json"));
    ck_assert_msg(tu_run(cmd, err, sizeof err) == 0, "%s", err);
    json_error_t je;
    json_t *j = json_load_file(wpath("syn/bench.json"), 0, &je);
    ck_assert(j && json_number_value(json_object_get(j, "samples_per_s")) > 0);
    json_decref(j);
}
END_TEST

/* ---- COCO ---- */

START_TEST(coco_to_yolo) {
    /* Ultralytics coco80_to_coco91_class(), the reference for the inverse */
    static const int c91[80] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
                                46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
                                67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90};
    for (int i = 0; i < 80; i++) ck_assert_int_eq(ot_coco91_to_80(c91[i]), i);
    static const int unused[] = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91, 0};
    for (size_t i = 0; i < sizeof unused / sizeof unused[0]; i++) ck_assert_int_eq(ot_coco91_to_80(unused[i]), -1);
    mkdirs("coco");
    char cmd[2048], err[4096];
    snprintf(cmd, sizeof cmd, "rm -rf %s && %s coco2yolo %s --out %s > /dev/null", wpath("coco/out"), OT_CLI,
             OT_FIXTURES "/data/instances_tiny.json", wpath("coco/out"));
    ck_assert_msg(tu_run(cmd, err, sizeof err) == 0, "%s", err);
    uint8_t *t;
    size_t n;
    ot_error e;
    ck_assert(ot_file_read(wpath("coco/out/000000000001.txt"), &t, &n, &e) == OT_OK);
    ck_assert(n == strlen("0 0.2 0.2 0.2 0.2\n11 0.25 0.25 0.5 0.5\n") && memcmp(t, "0 0.2 0.2 0.2 0.2\n11 0.25 0.25 0.5 0.5\n", n) == 0);
    free(t);
    ck_assert(ot_file_read(wpath("coco/out/000000000002.txt"), &t, &n, &e) == OT_OK);
    ck_assert(n == strlen("79 0.5 0.5 0.5 0.5\n") && memcmp(t, "79 0.5 0.5 0.5 0.5\n", n) == 0);
    free(t);
    ck_assert(!tu_exists(wpath("coco/out/000000000003.txt"))); /* crowd only */
    ot_coco_stats s;
    ck_assert(ot_coco_to_yolo(OT_FIXTURES "/data/instances_tiny.json", wpath("coco/out"), &s, &e) == OT_OK);
    ck_assert(s.images == 3 && s.annotations == 8 && s.files == 2 && s.boxes == 3 && s.crowd == 2 && s.empty_box == 1 &&
              s.unmapped == 1 && s.duplicates == 1);
    ck_assert(ot_coco_to_yolo(OT_FIXTURES "/data/hyp_test.yaml", wpath("coco/out"), &s, &e) == OT_ERR_PARSE);
}
END_TEST

/* ---- coco128 (../shared) ---- */

START_TEST(coco128_scan_and_batches) {
    const char *sh = tu_shared();
    if (!sh || !tu_exists(OT_SHARED "/data/coco128/images/train2017")) return;
    char *src[1] = {OT_SHARED "/data/coco128/images/train2017"};
    ot_dataset *d;
    ot_error e;
    ck_assert_msg(ot_dataset_open(src, 1, 80, 2, true, &d, &e) == OT_OK, "%s", e.msg);
    /* independent count: lines of the label files */
    int64_t lines = 0, files = 0;
    for (int64_t i = 0; i < d->n; i++) {
        FILE *f = fopen(d->lb_files[i], "r");
        if (!f) continue;
        files++;
        for (int ch; (ch = fgetc(f)) != EOF;) lines += ch == '\n';
        fclose(f);
    }
    ck_assert_int_eq(d->sum.images, 128);
    ck_assert_int_eq(d->sum.corrupt + d->sum.bad_labels, 0);
    ck_assert_int_eq(d->sum.boxes, lines);
    ck_assert_int_eq(d->sum.boxes, 929);
    ck_assert_int_eq(d->sum.labelled + d->sum.empty, files);
    /* validation rect shapes at 640, batch 32, pad 0.5 (Ultralytics' formula in numpy, by hand) */
    ot_loader_cfg c;
    ot_loader_cfg_val(&c);
    c.batch_size = 32;
    c.workers = 2;
    ot_loader *L;
    ck_assert(ot_loader_create(d, &c, &L, &e) == OT_OK);
    static const int hw[4][2] = {{448, 672}, {512, 672}, {672, 672}, {672, 608}};
    const ot_batch *b;
    for (int k = 0; k < 4; k++) {
        ck_assert(ot_loader_next(L, &b, &e) == OT_OK && b);
        ck_assert_msg(b->h == hw[k][0] && b->w == hw[k][1], "batch %d: %dx%d", k, b->h, b->w);
        if (k == 0) {
            int64_t nt = 0;
            for (int j = 0; j < b->n; j++) nt += d->n_labels[b->sample[j]];
            ck_assert_int_eq(b->n_targets, nt); /* validation keeps every box */
        }
    }
    ot_loader_destroy(L);
    /* training batches: the same with 1 and 2 workers, with the default
     * bounded cache, none (the JPEGs decoded in bands) or cache_ram */
    float *img[3];
    int64_t nt[3];
    for (int w = 0; w < 3; w++) {
        ot_loader_cfg_train(&c);
        c.batch_size = 4;
        c.workers = w == 0 ? 1 : 2;
        c.seed = 5;
        if (w == 1) c.cache_mb = 0;
        if (w == 2) c.cache_ram = true;
        ck_assert(ot_loader_create(d, &c, &L, &e) == OT_OK);
        ck_assert(ot_loader_next(L, &b, &e) == OT_OK && b);
        img[w] = malloc(sizeof(float) * 4 * 3 * 640 * 640);
        memcpy(img[w], b->images, sizeof(float) * 4 * 3 * 640 * 640);
        nt[w] = b->n_targets;
        ot_loader_destroy(L);
    }
    ck_assert_int_eq(nt[0], nt[1]);
    ck_assert_int_eq(nt[0], nt[2]);
    ck_assert(memcmp(img[0], img[1], sizeof(float) * 4 * 3 * 640 * 640) == 0);
    ck_assert(memcmp(img[0], img[2], sizeof(float) * 4 * 3 * 640 * 640) == 0);
    for (int w = 0; w < 3; w++) free(img[w]);
    ot_dataset_destroy(d);
}
END_TEST

/* augment_hsv is cv2's 8-bit BGR->HSV, Ultralytics' LUTs and HSV->BGR; the
 * fused HSV + flips + CHW pass gives the same floats as augment_hsv then the
 * plain conversion, on every colour */
START_TEST(fused_colour_pass_matches_two_steps) {
    const int w = 4096, h = 4096;
    uint8_t *im = malloc((size_t)w * h * 3), *a = malloc((size_t)w * h * 3);
    float *f1 = malloc(sizeof(float) * 3 * w * h), *f2 = malloc(sizeof(float) * 3 * w * h);
    ck_assert(im && a && f1 && f2);
    for (int i = 0; i < w * h; i++) { im[3 * i] = (uint8_t)i; im[3 * i + 1] = (uint8_t)(i >> 8); im[3 * i + 2] = (uint8_t)(i >> 16); }
    /* the in-place HSV against cv2's per-pixel conversions and the LUTs */
    const double g0[3] = {0.99, 1.45, 0.71};
    memcpy(a, im, (size_t)w * h * 3);
    ot_augment_hsv(a, (int64_t)w * h, g0[0], g0[1], g0[2]);
    for (int i = 0; i < w * h; i += 7) {
        uint8_t hsv[3], bgr[3];
        ot_bgr2hsv(im + 3 * i, hsv);
        int lh = (int)fmod(hsv[0] * g0[0], 180.0), ls = (int)fmin(255, hsv[1] * g0[1]), lv = (int)fmin(255, hsv[2] * g0[2]);
        uint8_t t[3] = {(uint8_t)lh, (uint8_t)ls, (uint8_t)lv};
        ot_hsv2bgr(t, bgr);
        for (int c = 0; c < 3; c++) /* 1 apart at most: the LUTs fold *255 in another float order */
            ck_assert_msg(abs((int)bgr[c] - (int)a[3 * i + c]) <= 1, "pixel %d", i);
    }
    const double gains[4][3] = {{0.994, 1.597, 0.610}, {1.003, 0.694, 0.938}, {1.008, 1.141, 1.370}, {1.5, 1.7, 0.3}};
    for (int k = 0; k < 4; k++) {
        bool lr = k & 1, ud = (k >> 1) & 1;
        memcpy(a, im, (size_t)w * h * 3);
        ot_augment_hsv(a, (int64_t)w * h, gains[k][0], gains[k][1], gains[k][2]);
        ot_hwc_to_chw(a, w, h, lr, ud, f1);
        ot_hsv_to_chw(im, w, h, gains[k], lr, ud, f2);
        ck_assert_msg(memcmp(f1, f2, sizeof(float) * 3 * w * h) == 0, "gains %d", k);
    }
    /* the plain conversion: RGB planes, flips */
    ot_hsv_to_chw(im, w, h, NULL, true, false, f2);
    ck_assert(f2[0] == im[3 * (w - 1) + 2] * (1.f / 255.f) && f2[(size_t)w * h] == im[3 * (w - 1) + 1] * (1.f / 255.f));
    free(im); free(a); free(f1); free(f2);
}
END_TEST

/* the image cache (none, bounded by default, or cache_ram) changes no batch */
START_TEST(cache_does_not_change_batches) {
    ot_dataset *d = open_syn();
    float *i0, *t0, *i1, *t1, *i2, *t2;
    int64_t n0, n1, n2;
    run_batches_cache(d, 2, 7, 0, &i0, &t0, &n0);
    run_batches_cache(d, 2, 7, 1024, &i1, &t1, &n1);
    run_batches_cache(d, 2, 7, -1, &i2, &t2, &n2); /* -1: cache_ram, every image */
    size_t bytes = sizeof(float) * 3 * 128 * 128 * 16;
    ck_assert_int_gt(n0, 0);
    ck_assert_int_eq(n0, n1);
    ck_assert_int_eq(n0, n2);
    ck_assert(memcmp(i0, i1, bytes) == 0 && memcmp(i0, i2, bytes) == 0);
    ck_assert(memcmp(t0, t1, sizeof(float) * 6 * (size_t)n0) == 0 && memcmp(t0, t2, sizeof(float) * 6 * (size_t)n0) == 0);
    free(i0); free(t0); free(i1); free(t1); free(i2); free(t2);
    ot_dataset_destroy(d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("data");
    TCase *t = tcase_create("data");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, hyp_defaults_and_file);
    tcase_add_test(t, path_rules);
    tcase_add_test(t, yaml_rules);
    tcase_add_test(t, label_parsing);
    tcase_add_test(t, decode_exif_and_dct_scaling);
    tcase_add_test(t, letterbox_geometry);
    tcase_add_test(t, mosaic_boxes_match_pixels);
    tcase_add_test(t, perspective_boxes_enclose_pixels);
    tcase_add_test(t, workers_do_not_change_batches);
    tcase_add_test(t, fused_colour_pass_matches_two_steps);
    tcase_add_test(t, cache_does_not_change_batches);
    tcase_add_test(t, validation_rect_batches);
    tcase_add_test(t, bad_data_skipped_and_counted);
    tcase_add_test(t, cli_data_check_and_show);
    tcase_add_test(t, coco_to_yolo);
    tcase_add_test(t, coco128_scan_and_batches);
    suite_add_tcase(s, t);
    return tu_main(s);
}
