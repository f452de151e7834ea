/* cmd_val.c: `onnx-train val --data D.yaml --predictions DIR`: score YOLO-format
 * prediction files against a dataset's labels with Ultralytics v7.0 val.py's
 * matching and metrics (train/metrics), print val.py's table or one JSON
 * object, and optionally write COCO-format detections (val.py --save-json).
 * Model validation (`val --model`) needs the trainer and is not here yet. */
#include "cli.h"
#include "train/dataset.h"
#include "train/metrics.h"
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

static void val_usage(FILE *f) {
    fprintf(f, "usage: onnx-train val --data D.yaml --predictions DIR [--split val] [--json] [--save-json FILE]\n\n"
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
               "coco/val2017.txt, as val.py).\n"
               "Model validation (--model) arrives with training.\n\n"
               "example:\n  onnx-train val --data coco128.yaml --predictions runs/detect/exp/labels --json\n");
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

static void print_table(const ot_ap_result *r, const ot_data_cfg *cfg) {
    printf("%22s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95");
    printf("%22s%11lld%11lld%11.3g%11.3g%11.3g%11.3g\n", "all", (long long)r->seen, (long long)r->nt_total, r->mp, r->mr,
           r->map50, r->map);
    if (r->nt_total == 0) fprintf(stderr, "onnx-train: warning: no labels found in the split, can not compute metrics without labels\n");
    if (cfg->nc > 1)
        for (int i = 0; i < r->n; i++)
            printf("%22s%11lld%11lld%11.3g%11.3g%11.3g%11.3g\n", cfg->names[r->cls[i]], (long long)r->seen,
                   (long long)r->nt[i], r->p[i], r->r[i], r->ap50[i], r->ap50_95[i]);
}

static void print_json(const ot_ap_result *r, const ot_data_cfg *cfg, int64_t files) {
    json_t *o = json_object(), *cls = json_array();
    json_object_set_new(o, "images", json_integer(r->seen));
    json_object_set_new(o, "instances", json_integer(r->nt_total));
    json_object_set_new(o, "prediction_files", json_integer(files));
    json_object_set_new(o, "precision", json_real(r->mp));
    json_object_set_new(o, "recall", json_real(r->mr));
    json_object_set_new(o, "map50", json_real(r->map50));
    json_object_set_new(o, "map50_95", json_real(r->map));
    for (int i = 0; i < r->n; i++) {
        json_t *c = json_object();
        json_object_set_new(c, "class", json_integer(r->cls[i]));
        json_object_set_new(c, "name", json_string(cfg->names[r->cls[i]]));
        json_object_set_new(c, "instances", json_integer(r->nt[i]));
        json_object_set_new(c, "precision", json_real(r->p[i]));
        json_object_set_new(c, "recall", json_real(r->r[i]));
        json_object_set_new(c, "map50", json_real(r->ap50[i]));
        json_object_set_new(c, "map50_95", json_real(r->ap50_95[i]));
        json_array_append_new(cls, c);
    }
    json_object_set_new(o, "classes", cls);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    if (s) puts(s);
    free(s);
    json_decref(o);
}

/* val.py is_coco: the val entry ends with coco/val2017.txt */
static bool is_coco(const ot_data_cfg *cfg) {
    if (cfg->n_split[OT_SPLIT_VAL] != 1) return false;
    const char *v = cfg->split[OT_SPLIT_VAL][0];
    size_t n = strlen(v), k = strlen("coco/val2017.txt");
    return n >= k && strcmp(v + n - k, "coco/val2017.txt") == 0;
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
        qsort(dets, (size_t)nd, sizeof *dets, cmp_conf); /* NMS order: decreasing confidence */
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
            if (ot_coco_json_write(save_json, cj, ncj, is_coco(&cfg), &e)) rc = cli_error(&e);
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

int cmd_val(int argc, char **argv) {
    const char *yaml = NULL, *pred = NULL, *split = "val", *save_json = NULL, *model = NULL;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { val_usage(stdout); return 0; }
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) yaml = argv[++i];
        else if (strcmp(argv[i], "--predictions") == 0 && i + 1 < argc) pred = argv[++i];
        else if (strcmp(argv[i], "--split") == 0 && i + 1 < argc) split = argv[++i];
        else if (strcmp(argv[i], "--save-json") == 0 && i + 1 < argc) save_json = argv[++i];
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) as_json = true;
        else return cli_fail("val: unknown argument '%s' (see onnx-train val --help)", argv[i]);
    }
    if (!pred)
        return cli_fail("val: model validation%s%s arrives with training (not in this version); "
                        "score a detector's output with --predictions DIR (see onnx-train val --help)",
                        model ? " of " : "", model ? model : "");
    if (model) return cli_fail("val: --model and --predictions do not go together");
    if (!yaml) return cli_fail("val: --data D.yaml is required (see onnx-train val --help)");
    return val_predictions(yaml, pred, split, as_json, save_json);
}
