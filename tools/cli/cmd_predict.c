/* cmd_predict.c: `onnx-train predict`: Ultralytics detect.py for images and
 * folders: letterbox (minimum rectangle, stride multiple), forward and decode
 * (train/detector.h), NMS, boxes back on the original image, drawn with class
 * name and score (JPEG), and YOLO-format txt lines `class cx cy w h conf`
 * (detect.py --save-txt --save-conf). */
#include "cli.h"
#include "core/config.h"
#include "train/augment.h"
#include "train/dataset.h"
#include "train/detector.h"
#include "train/draw.h"
#include "train/metrics.h"
#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f, "usage: onnx-train predict --model M.onnx|M.ckpt --source IMG|DIR [--conf 0.25] [--iou 0.45]\n"
               "                          [--img 640] [--max-det 1000] [--out DIR] [--device 0|cpu|cpu-guard] [--tf32]\n\n"
               "Detects objects in an image or every image of a folder as Ultralytics detect.py\n"
               "does, and writes DIR/<image>.jpg with the boxes, class names and scores drawn,\n"
               "and DIR/labels/<image>.txt with one line `class cx cy w h conf` (normalised)\n"
               "per detection. DIR defaults to runs/detect/exp (exp2, exp3, ... when taken).\n");
    cli_device_help(f, true);
    fprintf(f, "\nexample:\n  onnx-train predict --model runs/train/exp/weights/best.onnx --source images/ --conf 0.4\n");
}

static bool dbl(int argc, char **argv, int *i, const char *name, double lo, double hi, double *out, bool *bad) {
    if (strcmp(argv[*i], name) != 0) return false;
    if (*i + 1 >= argc) { *bad = true; return true; }
    char *end;
    *out = strtod(argv[++*i], &end);
    if (*end || !(*out >= lo && *out <= hi)) *bad = true;
    return true;
}

static void stem_of(const char *path, char *out, size_t cap, bool keep_ext) {
    const char *b = strrchr(path, '/');
    snprintf(out, cap, "%s", b ? b + 1 : path);
    char *dot = strrchr(out, '.');
    if (!keep_ext && dot && dot != out) *dot = 0;
}

/* detect.py's box_label: a rectangle and a filled label above it. */
static void box_label(ot_image *im, ot_font *font, int fs, const ot_det *d, const char *name, int lw) {
    const uint8_t *c = ot_class_color(d->cls);
    ot_draw_rect(im, (int)d->x1, (int)d->y1, (int)d->x2, (int)d->y2, c, lw);
    if (!font) return;
    char label[300];
    snprintf(label, sizeof label, "%s %.2f", name, d->conf);
    int tw = ot_text_width(font, label), th = fs + 4;
    int x = (int)d->x1, y = (int)d->y1 - th;
    if (y < 0) y = (int)d->y1;
    ot_draw_fill(im, x, y, x + tw + 4, y + th - 1, c);
    static const uint8_t white[3] = {255, 255, 255};
    ot_draw_text(im, font, x + 2, y + 1, label, white);
}

int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *source = NULL, *outdir = NULL, *device = ""; /* "": the default device (GPU 0 when present, else the CPU) */
    double conf = 0.25, iou = 0.45;
    long img = 640, max_det = 1000;
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        if (cli_is_help(argv[i])) { usage(stdout); return 0; }
        if ((strcmp(argv[i], "--model") == 0 || strcmp(argv[i], "--weights") == 0) && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--source") == 0 && i + 1 < argc) source = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) outdir = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = argv[++i];
        else if (strcmp(argv[i], "--tf32") == 0) ot_config_set_tf32(true);
        else if (dbl(argc, argv, &i, "--conf", 0, 1, &conf, &bad) || dbl(argc, argv, &i, "--iou", 0, 1, &iou, &bad)) {
            if (bad) return cli_fail("predict: %s needs a number in 0..1", argv[i - 1]);
        }
        else if (cli_int_arg(argc, argv, &i, "--img", 32, 8192, &img)) { if (img == LONG_MIN) return cli_fail("predict: --img needs 32..8192"); }
        else if (cli_int_arg(argc, argv, &i, "--max-det", 1, 100000, &max_det)) { if (max_det == LONG_MIN) return cli_fail("predict: --max-det needs 1..100000"); }
        else return cli_fail("predict: unknown or incomplete argument '%s' (see onnx-train predict --help)", argv[i]);
    }
    if (!model || !source) return cli_fail("predict: --model and --source are required (see onnx-train predict --help)");
    ot_error e;
    char **files = NULL;
    int64_t nfiles = 0;
    char *srcs[1] = {(char *)source};
    if (ot_list_images(srcs, 1, &files, &nfiles, &e)) return cli_error(&e);
    if (nfiles == 0) return cli_fail("predict: %s: no images found", source);
    char dir[4096];
    if (outdir) snprintf(dir, sizeof dir, "%s", outdir);
    else {
        snprintf(dir, sizeof dir, "runs/detect/exp");
        struct stat st;
        for (int k = 2; stat(dir, &st) == 0; k++) snprintf(dir, sizeof dir, "runs/detect/exp%d", k);
    }
    char ldir[4200];
    snprintf(ldir, sizeof ldir, "%s/labels", dir);
    if (cli_mkdirs(ldir) != 0) return cli_fail("predict: cannot create %s (%s)", ldir, strerror(errno));
    ot_graph *g = NULL;
    char **names = NULL;
    ot_detector *det = NULL;
    int rc = 0;
    ot_backend *be = NULL;
    if (ot_backend_get(device, &be, &e) || ot_open_inference_model(model, &g, &names, &e) ||
        ot_detector_create_on(be, g, &g->head, NULL, &det, &e)) {
        rc = cli_error(&e);
        goto done;
    }
    int nc = g->head.nc, stride = 32;
    for (int l = 0; l < g->head.nl; l++) if (g->head.stride[l] > stride) stride = (int)g->head.stride[l];
    if (img % stride) img = (img + stride - 1) / stride * stride;
    ot_nms_cfg nms = ot_nms_cfg_default();
    nms.conf_thres = conf;
    nms.iou_thres = iou;
    nms.max_det = (int)max_det;
    ot_font *font = NULL;
    int font_px = 0;
    int64_t total = 0;
    for (int64_t f = 0; f < nfiles && !rc; f++) {
        ot_image im = {0};
        int w0, h0;
        if (ot_image_load(files[f], 0, &im, &w0, &h0, &e)) {
            fprintf(stderr, "onnx-train: warning: %s: skipped (%s)\n", files[f], e.msg);
            continue;
        }
        /* letterbox(auto=True): the long side to img, the short one padded to a stride multiple */
        double r = fmin((double)img / im.h, (double)img / im.w);
        int uw = (int)lround(im.w * r), uh = (int)lround(im.h * r);
        int ow = uw + (int)((img - uw) % stride), oh = uh + (int)((img - uh) % stride);
        ot_lbox lb;
        ot_letterbox_geom(im.w, im.h, ow, oh, true, &lb);
        uint8_t *lbpx = malloc((size_t)ow * oh * 3);
        float *x = malloc(sizeof(float) * 3 * (size_t)ow * oh);
        if (!lbpx || !x) { free(lbpx); free(x); ot_image_free(&im); rc = cli_fail("out of memory"); break; }
        ot_letterbox(im.px, &lb, lbpx);
        ot_hwc_to_chw(lbpx, ow, oh, false, false, x);
        free(lbpx);
        const float *pred;
        int64_t rows;
        ot_det *dets = NULL;
        int nd = 0;
        if (ot_detector_run(det, x, 1, oh, ow, &pred, &rows, &e) || ot_nms(pred, rows, nc, &nms, &dets, &nd, &e)) {
            free(x);
            ot_image_free(&im);
            rc = cli_error(&e);
            break;
        }
        free(x);
        char stem[1024], base[1024], path[6000];
        stem_of(files[f], stem, sizeof stem, false);
        stem_of(files[f], base, sizeof base, true);
        snprintf(path, sizeof path, "%s/%s.txt", ldir, stem);
        FILE *tf = fopen(path, "w");
        if (!tf) { free(dets); ot_image_free(&im); rc = cli_fail("predict: cannot write %s (%s)", path, strerror(errno)); break; }
        /* Annotator's sizes: line width and font from the image size */
        int lw = (int)lround((im.w + im.h) / 2.0 * 0.003);
        if (lw < 2) lw = 2;
        int fs = (int)lround((im.w + im.h) / 2.0 * 0.035);
        if (fs < 12) fs = 12;
        if (fs != font_px) {
            ot_font_close(font);
            font = ot_font_open(fs);
            font_px = fs;
        }
        for (int k = nd - 1; k >= 0; k--) { /* detect.py writes and draws in reversed order */
            ot_det *d = &dets[k];
            float gx = (float)lb.ratio;
            d->x1 = fminf(fmaxf((d->x1 - (float)lb.dw) / gx, 0), (float)im.w);
            d->x2 = fminf(fmaxf((d->x2 - (float)lb.dw) / gx, 0), (float)im.w);
            d->y1 = fminf(fmaxf((d->y1 - (float)lb.dh) / gx, 0), (float)im.h);
            d->y2 = fminf(fmaxf((d->y2 - (float)lb.dh) / gx, 0), (float)im.h);
            fprintf(tf, "%d %g %g %g %g %g\n", d->cls, (d->x1 + d->x2) / 2 / im.w, (d->y1 + d->y2) / 2 / im.h,
                    (d->x2 - d->x1) / im.w, (d->y2 - d->y1) / im.h, d->conf);
            box_label(&im, font, fs, d, names[d->cls], lw);
        }
        bool bad = fclose(tf) != 0;
        snprintf(path, sizeof path, "%s/%s", dir, base);
        size_t pl = strlen(path);
        if (pl > 4 && strcasecmp(path + pl - 4, ".png") == 0) strcpy(path + pl - 4, ".jpg");
        if (bad || ot_image_write_jpeg(path, &im, 95, &e)) { free(dets); ot_image_free(&im); rc = bad ? cli_fail("predict: write failed in %s", ldir) : cli_error(&e); break; }
        /* detect.py's line: image i/n path: WxH counts */
        int *cnt = calloc((size_t)nc, sizeof(int));
        printf("image %lld/%lld %s: %dx%d ", (long long)f + 1, (long long)nfiles, files[f], ow, oh);
        if (cnt) {
            for (int k = 0; k < nd; k++) cnt[dets[k].cls]++;
            for (int c = 0; c < nc; c++) if (cnt[c]) printf("%d %s, ", cnt[c], names[c]);
            free(cnt);
        }
        printf("%s\n", nd ? "" : "(no detections)");
        total += nd;
        free(dets);
        ot_image_free(&im);
    }
    ot_font_close(font);
    if (!rc) printf("Results saved to %s (%lld detections; labels in %s)\n", dir, (long long)total, ldir);
done:
    ot_detector_destroy(det);
    if (g) ot_names_free(names, g->head.nc);
    ot_graph_destroy(g);
    for (int64_t f = 0; f < nfiles; f++) free(files[f]);
    free(files);
    return rc;
}
