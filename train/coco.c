/* coco.c: COCO instances JSON -> YOLO labels (see coco.h). */
#include "train/coco.h"
#include <errno.h>
#include <jansson.h>
#include <string.h>

int ot_coco91_to_80(int id) {
    /* inverse of Ultralytics coco80_to_coco91_class() */
    static const int c80to91[80] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
                                    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
                                    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90};
    for (int i = 0; i < 80; i++) if (c80to91[i] == id) return i;
    return -1;
}

typedef struct img_rec { int64_t id; double w, h; const char *file; double *rows; int n, rcap; } img_rec;

static int cmp_id(const void *a, const void *b) {
    int64_t x = ((const img_rec *)a)->id, y = ((const img_rec *)b)->id;
    return x < y ? -1 : x > y;
}

static bool num(json_t *v, double *x) {
    if (json_is_integer(v)) { *x = (double)json_integer_value(v); return true; }
    if (json_is_real(v)) { *x = json_real_value(v); return true; }
    return false;
}

ot_status ot_coco_to_yolo(const char *path, const char *out_dir, ot_coco_stats *s, ot_error *err) {
    memset(s, 0, sizeof *s);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return ot_fail(err, OT_ERR_PARSE, "%s:%d: invalid JSON: %s", path, je.line, je.text);
    ot_status st = OT_OK;
    img_rec *im = NULL;
    size_t ni = 0;
    json_t *images = json_object_get(root, "images"), *anns = json_object_get(root, "annotations");
    if (!json_is_array(images) || !json_is_array(anns)) {
        st = ot_fail(err, OT_ERR_PARSE, "%s: not a COCO instances file (no 'images' and 'annotations' arrays)", path);
        goto done;
    }
    ni = json_array_size(images);
    im = calloc(ni ? ni : 1, sizeof *im);
    if (!im) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < ni; i++) {
        json_t *o = json_array_get(images, i);
        json_t *id = json_object_get(o, "id"), *fn = json_object_get(o, "file_name");
        if (!json_is_integer(id) || !json_is_string(fn) || !num(json_object_get(o, "width"), &im[i].w) ||
            !num(json_object_get(o, "height"), &im[i].h) || im[i].w <= 0 || im[i].h <= 0) {
            st = ot_fail(err, OT_ERR_PARSE, "%s: images[%zu] needs id, file_name, width and height", path, i);
            goto done;
        }
        im[i].id = json_integer_value(id);
        im[i].file = json_string_value(fn);
    }
    qsort(im, ni, sizeof *im, cmp_id);
    s->images = (int64_t)ni;
    for (size_t a = 0; a < json_array_size(anns); a++) {
        json_t *o = json_array_get(anns, a);
        s->annotations++;
        json_t *iid = json_object_get(o, "image_id"), *cid = json_object_get(o, "category_id"), *bb = json_object_get(o, "bbox");
        json_t *crowd = json_object_get(o, "iscrowd");
        if (!json_is_integer(iid) || !json_is_integer(cid) || !json_is_array(bb) || json_array_size(bb) != 4) {
            st = ot_fail(err, OT_ERR_PARSE, "%s: annotations[%zu] needs image_id, category_id and a 4-number bbox", path, a);
            goto done;
        }
        if (crowd && json_is_true(crowd)) { s->crowd++; continue; }
        if (crowd && json_is_integer(crowd) && json_integer_value(crowd)) { s->crowd++; continue; }
        img_rec key = {.id = json_integer_value(iid)};
        img_rec *r = bsearch(&key, im, ni, sizeof *im, cmp_id);
        if (!r) { s->no_image++; continue; }
        double b[4];
        for (int k = 0; k < 4; k++)
            if (!num(json_array_get(bb, (size_t)k), &b[k])) {
                st = ot_fail(err, OT_ERR_PARSE, "%s: annotations[%zu].bbox is not 4 numbers", path, a);
                goto done;
            }
        /* top-left xywh pixels -> centre xywh normalised */
        b[0] += b[2] / 2;
        b[1] += b[3] / 2;
        b[0] /= r->w; b[2] /= r->w;
        b[1] /= r->h; b[3] /= r->h;
        if (b[2] <= 0 || b[3] <= 0) { s->empty_box++; continue; }
        int cls = ot_coco91_to_80((int)json_integer_value(cid));
        if (cls < 0) { s->unmapped++; continue; }
        double row[5] = {cls, b[0], b[1], b[2], b[3]};
        bool dup = false;
        for (int k = 0; k < r->n && !dup; k++) dup = memcmp(r->rows + 5 * k, row, sizeof row) == 0;
        if (dup) { s->duplicates++; continue; }
        if (r->n == r->rcap) {
            int c = r->rcap ? 2 * r->rcap : 8;
            double *q = realloc(r->rows, sizeof(double) * 5 * (size_t)c);
            if (!q) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
            r->rows = q;
            r->rcap = c;
        }
        memcpy(r->rows + 5 * r->n++, row, sizeof row);
    }
    for (size_t i = 0; i < ni; i++) {
        if (!im[i].n) continue;
        const char *base = strrchr(im[i].file, '/');
        base = base ? base + 1 : im[i].file;
        char stem[1024];
        snprintf(stem, sizeof stem, "%s", base);
        char *dot = strrchr(stem, '.');
        if (dot) *dot = 0;
        if (!stem[0] || strcmp(stem, "..") == 0) continue;
        char out[4096];
        snprintf(out, sizeof out, "%s/%s.txt", out_dir, stem);
        FILE *f = fopen(out, "w");
        if (!f) { st = ot_fail(err, OT_ERR_IO, "%s: cannot write: %s", out, strerror(errno)); goto done; }
        for (int k = 0; k < im[i].n; k++) {
            const double *q = im[i].rows + 5 * k;
            fprintf(f, "%g %g %g %g %g\n", q[0], q[1], q[2], q[3], q[4]);
        }
        if (fclose(f) != 0) { st = ot_fail(err, OT_ERR_IO, "%s: cannot write", out); goto done; }
        s->files++;
        s->boxes += im[i].n;
    }
done:
    for (size_t i = 0; im && i < ni; i++) free(im[i].rows);
    free(im);
    json_decref(root);
    return st;
}
