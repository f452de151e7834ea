/* cmd_val.c: `onnx-train val --data D.yaml --predictions DIR`: score YOLO-format
 * prediction files against a dataset's labels with Ultralytics v7.0 val.py's
 * matching and metrics (train/metrics), print val.py's table or one JSON
 * object, and optionally write COCO-format detections (val.py --save-json).
 * `val --model` validates a model file through train/validate.h. */
#include "cli.h"
#include "core/config.h"
#include "train/dataset.h"
#include "train/metrics.h"
#include "train/validate.h"
#include "train/detector.h"
#include "train/loader.h"
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

static const char *val_device = ""; /* --device: "" is the default device (core/backend.c) */

static void val_usage(FILE *f) {
    fprintf(f, "usage: onnx-train val --model M.onnx|M.ckpt --data D.yaml [--img 640] [--batch-size 32] [--conf 0.001]\n"
               "                      [--iou 0.6] [--split val] [--workers 8] [--device 0|cpu|cpu-guard] [--tf32]\n"
               "                      [--save-json [FILE]] [--json]\n"
               "       onnx-train val --data D.yaml --predictions DIR [--split val] [--json] [--save-json FILE]\n\n"
               "--model: validates a model (an ONNX export of any form, or a checkpoint's EMA\n"
               "weights) as val.py does: letterboxed rect batches (pad 0.5), per-class NMS\n"
               "(multi-label, max_det 300), then the metrics below.\n"
               "--predictions: "
               "Scores YOLO-format prediction files against the dataset's labels exactly as\n"
               "Ultralytics YOLOv5 v7.0 val.py does (IoU 0.5:0.95 matching, ap_per_class with\n"
               "101-point interpolated AP): one file per image in DIR, named like the image\n"
               "with .txt (image.jpg -> DIR/image.txt), lines `class cx cy w h conf`\n"
               "normalised to 0..1; a missing file means no detections. Prints P, R, mAP50\n"
               "and mAP50-95 for all classes and per class (classes without labels are left\n"
               "out, as Ultralytics does); --json prints one JSON object instead (keys\n"
               "precision, recall, map50, map50_95, images, instances, classes[]).\n"
               "--save-json writes the detections as COCO results for pycocotools (pixel\n"
               "boxes from the image sizes; COCO category ids when the val split is\n"
               "coco/val2017.txt, as val.py).\n");
    cli_device_help(f, true); /* --model only: --predictions runs no model */
    fprintf(f, "\nexample:\n  onnx-train val --model runs/train/exp/weights/best.onnx --data coco128.yaml --img 640\n"
               "  onnx-train val --data coco128.yaml --predictions runs/detect/exp/labels --json\n");
}

/* Stem of a path: basename without its extension. */
static void path_stem(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, cap, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

/* Parse one prediction file into pixel detections (xywhn2xyxy with the image
 * size, float32 as Ultralytics). Returns 0, or CLI_EXIT_BAD after printing
 * the error naming file and line. */
static int read_predictions(const char *file, int nc, int w0, int h0, ot_det **dets, int *nd) {
    *dets = NULL;
    *nd = 0;
    FILE *f = fopen(file, "rb");
    if (!f) {
        if (errno == ENOENT) return 0; /* no file: no detections */
        return cli_fail("val: %s: cannot read (%s)", file, strerror(errno));
    }
    char line[4096];
    int ln = 0, cap = 0, n = 0;
    ot_det *d = NULL;
    while (fgets(line, sizeof line, f)) {
        ln++;
        if (!strchr(line, '\n') && !feof(f)) { free(d); fclose(f); return cli_fail("val: %s:%d: line too long", file, ln); }
        double v[6];
        int k = 0;
        char *p = line, *end;
        const char *why = NULL;
        while (*p) {
            while (isspace((unsigned char)*p)) p++;
            if (!*p) break;
            if (k == 6) { why = "more than 6 columns (expected `class cx cy w h conf`)"; break; }
            errno = 0;
            v[k] = strtod(p, &end);
            if (end == p || (*end && !isspace((unsigned char)*end))) { why = "not a number"; break; }
            if (!isfinite(v[k])) { why = "NaN or infinite value"; break; }
            k++;
            p = end;
        }
        if (!why && k == 0) continue; /* blank line */
        if (!why && k != 6) why = "expected 6 columns `class cx cy w h conf`";
        if (!why && (v[0] != floor(v[0]) || v[0] < 0 || v[0] >= nc)) why = "class is not an integer in 0..nc-1";
        if (!why && (v[3] < 0 || v[4] < 0)) why = "negative width or height";
        if (!why && (v[5] < 0 || v[5] > 1)) why = "confidence outside 0..1";
        if (why) {
            free(d);
            fclose(f);
            return cli_fail("val: %s:%d: %s", file, ln, why);
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            ot_det *t = realloc(d, (size_t)cap * sizeof *d);
            if (!t) { free(d); fclose(f); return cli_fail("val: out of memory"); }
            d = t;
        }
        float cx = (float)v[1], cy = (float)v[2], bw = (float)v[3], bh = (float)v[4], W = (float)w0, H = (float)h0;
        d[n] = (ot_det){W * (cx - bw / 2), H * (cy - bh / 2), W * (cx + bw / 2), H * (cy + bh / 2), (float)v[5],
                        (int)v[0], n};
        n++;
    }
    fclose(f);
    *dets = d;
    *nd = n;
    return 0;
}

static int cmp_conf(const void *a, const void *b) {
    const ot_det *x = a, *y = b;
    if (x->conf != y->conf) return x->conf > y->conf ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void print_table(const ot_ap_result *r, const ot_data_cfg *cfg) { ot_val_print_table(stdout, r, cfg->names, cfg->nc); }

static void print_json(const ot_ap_result *r, const ot_data_cfg *cfg, int64_t files) {
    json_t *o = ot_val_json(r, cfg->names);
    json_object_set_new(o, "prediction_files", json_integer(files));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    if (s) puts(s);
    free(s);
    json_decref(o);
}


static int val_predictions(const char *yaml, const char *dir, const char *split, bool as_json, const char *save_json) {
    ot_data_cfg cfg;
    ot_error e;
    int si = ot_split_index(split);
    if (si < 0) return cli_fail("val: --split must be train, val or test");
    if (ot_data_cfg_load(yaml, &cfg, &e)) return cli_error(&e);
    if (!cfg.n_split[si]) { int rc = cli_fail("val: %s has no %s split", yaml, split); ot_data_cfg_free(&cfg); return rc; }
    ot_dataset *d = NULL;
    if (ot_dataset_open_split(&cfg, si, (int)sysconf(_SC_NPROCESSORS_ONLN), false, &d, &e)) {
        int rc = cli_error(&e);
        ot_data_cfg_free(&cfg);
        return rc;
    }
    int rc = 0;
    ot_val_stats st = {0};
    ot_coco_det *cj = NULL;
    int64_t ncj = 0, cjcap = 0, files = 0;
    char **ids = save_json ? calloc((size_t)d->n, sizeof *ids) : NULL;
    float *lb = NULL;
    int lbcap = 0;
    for (int64_t i = 0; i < d->n && rc == 0; i++) {
        char stem[1024], file[4096];
        path_stem(d->im_files[i], stem, sizeof stem);
        snprintf(file, sizeof file, "%s/%s.txt", dir, stem);
        ot_det *dets;
        int nd;
        if ((rc = read_predictions(file, d->nc, d->w0[i], d->h0[i], &dets, &nd))) break;
        if (access(file, F_OK) == 0) files++;
        if (nd > 1) qsort(dets, (size_t)nd, sizeof *dets, cmp_conf); /* NMS order: decreasing confidence */
        int nl = d->n_labels[i];
        if (nl > lbcap) {
            float *t = realloc(lb, (size_t)nl * 5 * sizeof *lb);
            if (!t) { free(dets); rc = cli_fail("val: out of memory"); break; }
            lb = t;
            lbcap = nl;
        }
        const float W = (float)d->w0[i], H = (float)d->h0[i];
        for (int l = 0; l < nl; l++) { /* xywhn2xyxy */
            const float *r = d->labels[i] + l * 5;
            float *o = lb + l * 5;
            o[0] = r[0];
            o[1] = W * (r[1] - r[3] / 2); o[2] = H * (r[2] - r[4] / 2);
            o[3] = W * (r[1] + r[3] / 2); o[4] = H * (r[2] + r[4] / 2);
        }
        if (ot_val_stats_add(&st, dets, nd, lb, nl, &e)) { free(dets); rc = cli_error(&e); break; }
        if (save_json && nd) {
            ids[i] = strdup(stem);
            if (ncj + nd > cjcap) {
                int64_t c2 = cjcap ? cjcap : 1024;
                while (c2 < ncj + nd) c2 *= 2;
                ot_coco_det *t = realloc(cj, (size_t)c2 * sizeof *cj);
                if (!t || !ids[i]) { free(dets); rc = cli_fail("val: out of memory"); break; }
                cj = t;
                cjcap = c2;
            }
            for (int k = 0; k < nd; k++) cj[ncj++] = (ot_coco_det){ids[i], dets[k]};
        }
        free(dets);
    }
    ot_ap_result res = {0};
    if (rc == 0 && ot_ap_per_class(&st, &res, &e)) rc = cli_error(&e);
    if (rc == 0) {
        if (as_json) print_json(&res, &cfg, files);
        else print_table(&res, &cfg);
        if (save_json) {
            if (ot_coco_json_write(save_json, cj, ncj, ot_data_is_coco(&cfg), &e)) rc = cli_error(&e);
            else if (!as_json) printf("COCO detections: %s (%lld)\n", save_json, (long long)ncj);
        }
    }
    ot_ap_result_free(&res);
    ot_val_stats_free(&st);
    if (ids)
        for (int64_t i = 0; i < d->n; i++) free(ids[i]);
    free(ids);
    free(cj);
    free(lb);
    ot_dataset_destroy(d);
    ot_data_cfg_free(&cfg);
    return rc;
}

/* ---- model validation ---- */
typedef struct mval_ctx {
    const ot_dataset *d;
    ot_coco_det *cd;
    int64_t n, cap;
    char **stems;       /* per dataset image, filled lazily */
} mval_ctx;

static ot_status mval_image(void *ctx, const ot_batch *b, int i, const ot_det *dets, int nd, const float *labels, int nl,
                            ot_error *err) {
    mval_ctx *m = ctx;
    if (!m->stems) return OT_OK;
    int64_t si = b->sample[i];
    if (!m->stems[si]) {
        char st[1024];
        path_stem(m->d->im_files[si], st, sizeof st);
        if (!(m->stems[si] = ot_strdup(st))) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < nd; k++) {
        if (m->n == m->cap) {
            int64_t c = m->cap ? 2 * m->cap : 4096;
            ot_coco_det *q = realloc(m->cd, sizeof *q * (size_t)c);
            if (!q) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
            m->cd = q;
            m->cap = c;
        }
        m->cd[m->n++] = (ot_coco_det){m->stems[si], dets[k]};
    }
    return OT_OK;
}

static int val_model(const char *model, const char *yaml, const char *split, long img, long bs, double conf, double iou,
                     long workers, bool as_json, const char *save_json) {
    ot_error e;
    ot_data_cfg cfg;
    if (ot_data_cfg_load(yaml, &cfg, &e)) return cli_error(&e);
    int si = ot_split_index(split), rc = 0;
    ot_graph *g = NULL;
    char **names = NULL;
    ot_dataset *d = NULL;
    ot_loader *ld = NULL;
    ot_detector *det = NULL;
    mval_ctx m = {0};
    if (si < 0) { rc = cli_fail("val: --split must be train, val or test"); goto done; }
    if (ot_open_inference_model(model, &g, &names, &e)) { rc = cli_error(&e); goto done; }
    if (g->head.nc != cfg.nc) {
        rc = cli_fail("val: %s has %d classes but %s has %d", model, g->head.nc, yaml, cfg.nc);
        goto done;
    }
    if (ot_dataset_open_split(&cfg, si, workers > 0 ? (int)workers : 1, as_json, &d, &e)) { rc = cli_error(&e); goto done; }
    int stride = 32;
    for (int l = 0; l < g->head.nl; l++) if (g->head.stride[l] > stride) stride = (int)g->head.stride[l];
    if (img % stride) img = (img + stride - 1) / stride * stride;
    ot_loader_cfg lc;
    ot_loader_cfg_val(&lc);
    lc.img_size = (int)img;
    lc.batch_size = (int)bs;
    lc.workers = (int)workers;
    lc.stride = stride;
    ot_backend *be = NULL;
    if (ot_backend_get(val_device, &be, &e)) { rc = cli_error(&e); goto done; }
    lc.be = be;
    if (ot_loader_create(d, &lc, &ld, &e) || ot_detector_create_on(be, g, &g->head, NULL, &det, &e)) {
        rc = cli_error(&e);
        goto done;
    }
    ot_val_cfg vc;
    ot_val_cfg_default(&vc);
    vc.nms.conf_thres = conf;
    vc.nms.iou_thres = iou;
    vc.progress = !as_json;
    m.d = d;
    if (save_json && !(m.stems = calloc((size_t)d->n, sizeof(char *)))) { rc = cli_fail("out of memory"); goto done; }
    vc.on_image = mval_image;
    vc.ctx = &m;
    ot_val_out vo;
    if (ot_validate(det, ld, &vc, &vo, &e)) { rc = cli_error(&e); goto done; }
    if (as_json) {
        json_t *o = ot_val_json(&vo.ap, cfg.names);
        json_object_set_new(o, "model", json_string(model));
        json_object_set_new(o, "img", json_integer(img));
        json_object_set_new(o, "ms_per_image", json_real(vo.ms_per_image));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
        if (s) puts(s);
        free(s);
        json_decref(o);
    } else {
        ot_val_print_table(stdout, &vo.ap, cfg.names, cfg.nc);
        printf("Speed: %.1f ms inference and NMS per image at shape (%ld, 3, %ld, %ld)\n", vo.ms_per_image, bs, img, img);
    }
    ot_val_out_free(&vo);
    if (save_json) {
        if (ot_coco_json_write(save_json, m.cd, m.n, ot_data_is_coco(&cfg), &e)) { rc = cli_error(&e); goto done; }
        if (!as_json) printf("COCO detections: %s (%lld)\n", save_json, (long long)m.n);
    }
done:
    if (m.stems) for (int64_t k = 0; k < d->n; k++) free(m.stems[k]);
    free(m.stems);
    free(m.cd);
    ot_detector_destroy(det);
    ot_loader_destroy(ld);
    ot_dataset_destroy(d);
    if (g) ot_names_free(names, g->head.nc);
    ot_graph_destroy(g);
    ot_data_cfg_free(&cfg);
    return rc;
}

int cmd_val(int argc, char **argv) {
    const char *yaml = NULL, *pred = NULL, *split = "val", *save_json = NULL, *model = NULL;
    bool as_json = false;
    long img = 640, bs = 32, workers = 8;
    double conf = 0.001, iou = 0.6;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { val_usage(stdout); return 0; }
        char *end;
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) yaml = argv[++i];
        else if (strcmp(argv[i], "--predictions") == 0 && i + 1 < argc) pred = argv[++i];
        else if (strcmp(argv[i], "--split") == 0 && i + 1 < argc) split = argv[++i];
        else if (strcmp(argv[i], "--save-json") == 0) save_json = (i + 1 < argc && argv[i + 1][0] != '-') ? argv[++i] : "predictions.json";
        else if ((strcmp(argv[i], "--model") == 0 || strcmp(argv[i], "--weights") == 0) && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) as_json = true;
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) val_device = argv[++i];
        else if (strcmp(argv[i], "--tf32") == 0) ot_config_set_tf32(true);
        else if (strcmp(argv[i], "--conf") == 0 && i + 1 < argc) {
            conf = strtod(argv[++i], &end);
            if (*end || !(conf >= 0 && conf <= 1)) return cli_fail("val: --conf needs a number in 0..1");
        } else if (strcmp(argv[i], "--iou") == 0 && i + 1 < argc) {
            iou = strtod(argv[++i], &end);
            if (*end || !(iou >= 0 && iou <= 1)) return cli_fail("val: --iou needs a number in 0..1");
        }
        else if (cli_int_arg(argc, argv, &i, "--img", 32, 8192, &img)) { if (img == LONG_MIN) return cli_fail("val: --img needs 32..8192"); }
        else if (cli_int_arg(argc, argv, &i, "--batch-size", 1, 1024, &bs)) { if (bs == LONG_MIN) return cli_fail("val: --batch-size needs 1..1024"); }
        else if (cli_int_arg(argc, argv, &i, "--workers", 0, 256, &workers)) { if (workers == LONG_MIN) return cli_fail("val: --workers needs 0..256"); }
        else return cli_fail("val: unknown or incomplete argument '%s' (see onnx-train val --help)", argv[i]);
    }
    if (!yaml) return cli_fail("val: --data D.yaml is required (see onnx-train val --help)");
    if (model && pred) return cli_fail("val: --model and --predictions do not go together");
    if (!model && !pred) return cli_fail("val: give --model M.onnx|M.ckpt or --predictions DIR (see onnx-train val --help)");
    if (model) return val_model(model, yaml, split, img, bs, conf, iou, workers, as_json, save_json);
    return val_predictions(yaml, pred, split, as_json, save_json);
}
