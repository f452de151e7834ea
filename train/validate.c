/* validate.c: val.py run() (train/validate.h). */
#include "validate.h"
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void ot_val_cfg_default(ot_val_cfg *c) {
    memset(c, 0, sizeof *c);
    c->nms = ot_nms_cfg_default();
    c->nms.conf_thres = 0.001;
    c->nms.iou_thres = 0.6;
    c->nms.multi_label = true;
    c->nms.max_det = 300;
    c->what = "val";
}

void ot_val_out_free(ot_val_out *o) {
    ot_ap_result_free(&o->ap);
    ot_val_stats_free(&o->stats);
    memset(o, 0, sizeof *o);
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

void ot_scale_box_to_original(const ot_sample_shape *s, float *x1, float *y1, float *x2, float *y2) {
    /* val.py: shapes[si][1] = ((h / h0, w / w0), pad); scale_boxes uses ratio_pad[0][0]. */
    float gain = (float)((double)s->h / s->h0), pw = (float)s->dw, ph = (float)s->dh;
    *x1 = clampf((*x1 - pw) / gain, 0, (float)s->w0);
    *x2 = clampf((*x2 - pw) / gain, 0, (float)s->w0);
    *y1 = clampf((*y1 - ph) / gain, 0, (float)s->h0);
    *y2 = clampf((*y2 - ph) / gain, 0, (float)s->h0);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

ot_status ot_validate(ot_detector *det, ot_loader *loader, const ot_val_cfg *c, ot_val_out *out, ot_error *err) {
    memset(out, 0, sizeof *out);
    const int nc = det->head.nc;
    ot_yolo_loss *L = c->loss_cfg ? ot_yolo_loss_create_on(det->be) : NULL;
    if (c->loss_cfg && !L) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    float *labels = NULL;
    int lcap = 0;
    ot_status st = ot_loader_start(loader, 0, err);
    int64_t nb = ot_loader_num_batches(loader), nbatches = 0;
    bool tty = c->progress && isatty(2);
    double t_inf = 0, t0 = now_s();
    while (!st) {
        const ot_batch *b;
        if ((st = ot_loader_next(loader, &b, err)) || !b) break;
        double ti = now_s();
        const float *pred;
        int64_t rows;
        if ((st = ot_detector_run(det, b->images, b->n, b->h, b->w, &pred, &rows, err))) break;
        if (L) {
            const float *maps[OT_MAX_HEADS];
            ot_shape shapes[OT_MAX_HEADS];
            ot_detector_maps(det, maps, shapes);
            ot_loss_items it;
            if ((st = ot_yolo_loss_compute(L, c->loss_cfg, maps, shapes, b->targets, (int)b->n_targets, NULL, &it, err)))
                break;
            out->loss[0] += it.lbox;
            out->loss[1] += it.lobj;
            out->loss[2] += it.lcls;
        }
        nbatches++;
        for (int i = 0; i < b->n && !st; i++) {
            ot_det *dets = NULL;
            int nd = 0;
            if ((st = ot_nms(pred + (int64_t)i * rows * (nc + 5), rows, nc, &c->nms, &dets, &nd, err))) break;
            const ot_sample_shape *sh = &b->shapes[i];
            for (int k = 0; k < nd; k++) ot_scale_box_to_original(sh, &dets[k].x1, &dets[k].y1, &dets[k].x2, &dets[k].y2);
            int nl = 0;
            for (int64_t t = 0; t < b->n_targets; t++) {
                const float *r = b->targets + 6 * t;
                if ((int)r[0] != i) continue;
                if (nl == lcap) {
                    int ncap = lcap ? 2 * lcap : 64;
                    float *nl_ = realloc(labels, sizeof(float) * 5 * (size_t)ncap);
                    if (!nl_) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); break; }
                    labels = nl_;
                    lcap = ncap;
                }
                /* targets to pixels of the batch image (float32 as torch), xywh2xyxy, then scale_boxes */
                float cx = r[2] * (float)b->w, cy = r[3] * (float)b->h, bw = r[4] * (float)b->w, bh = r[5] * (float)b->h;
                float *o = labels + 5 * nl++;
                o[0] = r[1];
                o[1] = cx - bw / 2; o[2] = cy - bh / 2; o[3] = cx + bw / 2; o[4] = cy + bh / 2;
                ot_scale_box_to_original(sh, &o[1], &o[2], &o[3], &o[4]);
            }
            if (!st) st = ot_val_stats_add(&out->stats, dets, nd, labels, nl, err);
            if (!st && c->on_image) st = c->on_image(c->ctx, b, i, dets, nd, labels, nl, err);
            out->instances += nl;
            free(dets);
        }
        t_inf += now_s() - ti;
        out->images += b->n;
        if (tty) {
            double el = now_s() - t0;
            fprintf(stderr, "\r%22s %5lld/%-5lld batches, %lld images, %.1f s ", c->what, (long long)nbatches,
                    (long long)nb, (long long)out->images, el);
            fflush(stderr);
        }
    }
    if (tty) fprintf(stderr, "\r%80s\r", "");
    free(labels);
    ot_yolo_loss_destroy(L);
    if (!st && nbatches)
        for (int k = 0; k < 3; k++) out->loss[k] /= (double)nbatches;
    if (!st) st = ot_ap_per_class(&out->stats, &out->ap, err);
    out->ms_per_image = out->images ? 1e3 * t_inf / (double)out->images : 0;
    if (st) ot_val_out_free(out);
    return st;
}

void ot_val_print_table(FILE *f, const ot_ap_result *r, char *const *names, int nc) {
    fprintf(f, "%22s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95");
    fprintf(f, "%22s%11lld%11lld%11.3g%11.3g%11.3g%11.3g\n", "all", (long long)r->seen, (long long)r->nt_total, r->mp, r->mr,
            r->map50, r->map);
    if (r->nt_total == 0) fprintf(stderr, "onnx-train: warning: no labels found in the split, can not compute metrics without labels\n");
    if (nc > 1)
        for (int i = 0; i < r->n; i++)
            fprintf(f, "%22s%11lld%11lld%11.3g%11.3g%11.3g%11.3g\n", names[r->cls[i]], (long long)r->seen, (long long)r->nt[i],
                    r->p[i], r->r[i], r->ap50[i], r->ap50_95[i]);
}

json_t *ot_val_json(const ot_ap_result *r, char *const *names) {
    json_t *o = json_object(), *cls = json_array();
    json_object_set_new(o, "images", json_integer(r->seen));
    json_object_set_new(o, "instances", json_integer(r->nt_total));
    json_object_set_new(o, "precision", json_real(r->mp));
    json_object_set_new(o, "recall", json_real(r->mr));
    json_object_set_new(o, "map50", json_real(r->map50));
    json_object_set_new(o, "map50_95", json_real(r->map));
    for (int i = 0; i < r->n; i++) {
        json_t *c = json_object();
        json_object_set_new(c, "class", json_integer(r->cls[i]));
        json_object_set_new(c, "name", json_string(names[r->cls[i]]));
        json_object_set_new(c, "instances", json_integer(r->nt[i]));
        json_object_set_new(c, "precision", json_real(r->p[i]));
        json_object_set_new(c, "recall", json_real(r->r[i]));
        json_object_set_new(c, "map50", json_real(r->ap50[i]));
        json_object_set_new(c, "map50_95", json_real(r->ap50_95[i]));
        json_array_append_new(cls, c);
    }
    json_object_set_new(o, "classes", cls);
    return o;
}
