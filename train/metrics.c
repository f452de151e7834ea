/* metrics.c: Ultralytics YOLOv5 v7.0 validation metrics (see metrics.h):
 * non_max_suppression (utils/general.py, with torchvision.ops.nms's CPU
 * kernel), val.py process_batch and save_one_json, utils/metrics.py
 * box_iou, ap_per_class, compute_ap and smooth. numpy's interp, linspace,
 * trapz and convolve are written out with numpy's arithmetic. CPU only. */
#include "train/metrics.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* torch.linspace(0.5, 0.95, 10) in float32 (val.py iouv) */
const float ot_iouv[OT_NIOU] = {0x1p-1f, 0x1.19999ap-1f, 0x1.333334p-1f, 0x1.4ccccc0p-1f, 0x1.666666p-1f,
                                0x1.8p-1f, 0x1.99999ap-1f, 0x1.b33334p-1f, 0x1.ccccccp-1f, 0x1.e66666p-1f};

#define MAX_WH 7680.0f   /* non_max_suppression max_wh */
#define MAX_NMS 30000    /* boxes into torchvision.ops.nms */
#define NPX 1000         /* ap_per_class px = linspace(0, 1, 1000) */

ot_nms_cfg ot_nms_cfg_default(void) {
    return (ot_nms_cfg){.conf_thres = 0.25, .iou_thres = 0.45, .max_det = 300, .multi_label = false, .agnostic = false};
}

/* ---- NMS ---- */

/* decreasing confidence; equal confidences keep their order (a stable sort) */
static int cmp_det_conf(const void *a, const void *b) {
    const ot_det *x = a, *y = b;
    if (x->conf != y->conf) return x->conf > y->conf ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

ot_status ot_nms(const float *pred, int64_t n, int nc, const ot_nms_cfg *cfg, ot_det **dets, int *ndet,
                 ot_error *err) {
    *dets = NULL;
    *ndet = 0;
    if (nc < 1 || n < 0) return ot_fail(err, OT_ERR_INVALID, "nms: need nc >= 1 (got %d) and n >= 0", nc);
    if (!(cfg->conf_thres >= 0 && cfg->conf_thres <= 1) || !(cfg->iou_thres >= 0 && cfg->iou_thres <= 1))
        return ot_fail(err, OT_ERR_INVALID, "nms: conf_thres and iou_thres must be in 0..1");
    const float ct = (float)cfg->conf_thres; /* torch compares float32 tensors with the float32 scalar */
    const bool multi = cfg->multi_label && nc > 1;
    const int64_t stride = 5 + nc;
    int64_t cap = 0, m = 0;
    ot_det *c = NULL;
    for (int64_t r = 0; r < n; r++) {
        const float *x = pred + r * stride;
        if (!(x[4] > ct)) continue; /* xc: objectness candidates */
        float obj = x[4];
        float b[4] = {x[0] - x[2] / 2, x[1] - x[3] / 2, x[0] + x[2] / 2, x[1] + x[3] / 2}; /* xywh2xyxy */
        for (int j = 0; j < nc; j++) {
            float conf;
            int cls;
            if (multi) {
                conf = x[5 + j] * obj;
                cls = j;
                if (!(conf > ct)) continue;
            } else { /* best class only: first maximum, as torch.max */
                cls = 0;
                conf = x[5] * obj;
                for (int k = 1; k < nc; k++) {
                    float v = x[5 + k] * obj;
                    if (v > conf) { conf = v; cls = k; }
                }
                if (!(conf > ct)) break;
            }
            if (m == cap) {
                cap = cap ? 2 * cap : 256;
                ot_det *t = realloc(c, (size_t)cap * sizeof *c);
                if (!t) { free(c); return ot_fail(err, OT_ERR_NOMEM, "nms: out of memory"); }
                c = t;
            }
            c[m++] = (ot_det){b[0], b[1], b[2], b[3], conf, cls, r};
            if (!multi) break;
        }
    }
    if (m == 0) { free(c); return OT_OK; }
    /* x[x[:, 4].argsort(descending=True)[:max_nms]]; multi-label rows of one
     * box are in class order, so (conf, row) then class keeps that order */
    for (int64_t i = 0; i < m; i++) c[i].index = c[i].index * (nc + 1) + c[i].cls;
    qsort(c, (size_t)m, sizeof *c, cmp_det_conf);
    for (int64_t i = 0; i < m; i++) c[i].index /= (nc + 1);
    if (m > MAX_NMS) m = MAX_NMS;
    /* torchvision nms on boxes offset by class * max_wh (float32) */
    float *bx = malloc((size_t)m * 5 * sizeof *bx);
    uint8_t *sup = calloc((size_t)m, 1);
    if (!bx || !sup) { free(bx); free(sup); free(c); return ot_fail(err, OT_ERR_NOMEM, "nms: out of memory"); }
    for (int64_t i = 0; i < m; i++) {
        float off = cfg->agnostic ? 0.0f : (float)c[i].cls * MAX_WH;
        float *q = bx + i * 5;
        q[0] = c[i].x1 + off; q[1] = c[i].y1 + off; q[2] = c[i].x2 + off; q[3] = c[i].y2 + off;
        q[4] = (q[2] - q[0]) * (q[3] - q[1]);
    }
    int kept = 0;
    for (int64_t i = 0; i < m && kept < cfg->max_det; i++) {
        if (sup[i]) continue;
        c[kept++] = c[i]; /* kept <= i: safe in place */
        const float *a = bx + i * 5;
        for (int64_t j = i + 1; j < m; j++) {
            if (sup[j]) continue;
            const float *q = bx + j * 5;
            float xx1 = fmaxf(a[0], q[0]), yy1 = fmaxf(a[1], q[1]);
            float xx2 = fminf(a[2], q[2]), yy2 = fminf(a[3], q[3]);
            float w = fmaxf(0.0f, xx2 - xx1), h = fmaxf(0.0f, yy2 - yy1);
            float inter = w * h;
            float ovr = inter / (a[4] + q[4] - inter);
            if ((double)ovr > cfg->iou_thres) sup[j] = 1;
        }
    }
    free(bx);
    free(sup);
    *dets = c;
    *ndet = kept;
    return OT_OK;
}

/* ---- matching ---- */

/* box_iou(labels, detections) element: float32, eps 1e-7 */
static float box_iou1(const float *l, const ot_det *d) {
    float wx = fminf(l[2], d->x2) - fmaxf(l[0], d->x1);
    float wy = fminf(l[3], d->y2) - fmaxf(l[1], d->y1);
    if (wx < 0) wx = 0;
    if (wy < 0) wy = 0;
    float inter = wx * wy;
    float a1 = (l[2] - l[0]) * (l[3] - l[1]), a2 = (d->x2 - d->x1) * (d->y2 - d->y1);
    return inter / (a1 + a2 - inter + 1e-7f);
}

ot_status ot_match(const ot_det *dets, int nd, const float *labels, int nl, uint8_t *correct, ot_error *err) {
    if (nd <= 0) return OT_OK;
    memset(correct, 0, (size_t)nd * OT_NIOU);
    if (nl <= 0) return OT_OK;
    float *iou = malloc((size_t)nd * nl * sizeof *iou);
    int *best = malloc((size_t)nd * sizeof *best);
    if (!iou || !best) { free(iou); free(best); return ot_fail(err, OT_ERR_NOMEM, "match: out of memory"); }
    for (int l = 0; l < nl; l++)
        for (int d = 0; d < nd; d++)
            iou[(size_t)l * nd + d] = (int)labels[l * 5] == dets[d].cls ? box_iou1(labels + l * 5 + 1, dets + d) : -1.0f;
    for (int t = 0; t < OT_NIOU; t++) {
        /* matches sorted by IoU descending, np.unique on detections: each
         * detection's highest-IoU label (equal IoUs: the later label, as the
         * reversed stable argsort) */
        for (int d = 0; d < nd; d++) {
            best[d] = -1;
            float bi = 0;
            for (int l = 0; l < nl; l++) {
                float v = iou[(size_t)l * nd + d];
                if (v >= ot_iouv[t] && (best[d] < 0 || v >= bi)) { best[d] = l; bi = v; }
            }
        }
        /* then np.unique on labels over the detection-ordered matches: each
         * label goes to the first detection that chose it */
        for (int l = 0; l < nl; l++)
            for (int d = 0; d < nd; d++)
                if (best[d] == l) { correct[(size_t)d * OT_NIOU + t] = 1; break; }
    }
    free(iou);
    free(best);
    return OT_OK;
}

/* ---- stats ---- */

ot_status ot_val_stats_add(ot_val_stats *s, const ot_det *dets, int nd, const float *labels, int nl, ot_error *err) {
    s->seen++;
    if (nd > 0 && s->n + nd > s->cap) {
        int64_t cap = s->cap ? s->cap : 1024;
        while (cap < s->n + nd) cap *= 2;
        uint8_t *c = realloc(s->correct, (size_t)cap * OT_NIOU);
        if (c) s->correct = c;
        float *f = realloc(s->conf, (size_t)cap * sizeof *f);
        if (f) s->conf = f;
        int *p = realloc(s->pcls, (size_t)cap * sizeof *p);
        if (p) s->pcls = p;
        if (!c || !f || !p) return ot_fail(err, OT_ERR_NOMEM, "val stats: out of memory");
        s->cap = cap;
    }
    if (nl > 0 && s->nl + nl > s->lcap) {
        int64_t cap = s->lcap ? s->lcap : 1024;
        while (cap < s->nl + nl) cap *= 2;
        int *t = realloc(s->tcls, (size_t)cap * sizeof *t);
        if (!t) return ot_fail(err, OT_ERR_NOMEM, "val stats: out of memory");
        s->tcls = t;
        s->lcap = cap;
    }
    if (nd > 0) {
        OT_TRY(ot_match(dets, nd, labels, nl, s->correct + s->n * OT_NIOU, err));
        for (int d = 0; d < nd; d++) { s->conf[s->n + d] = dets[d].conf; s->pcls[s->n + d] = dets[d].cls; }
        s->n += nd;
    }
    for (int l = 0; l < nl; l++) s->tcls[s->nl++] = (int)labels[l * 5];
    return OT_OK;
}

void ot_val_stats_free(ot_val_stats *s) {
    if (!s) return;
    free(s->correct);
    free(s->conf);
    free(s->pcls);
    free(s->tcls);
    memset(s, 0, sizeof *s);
}

/* ---- numpy pieces ---- */

/* np.interp(x, xp, fp, left, right) for one x; xp non-decreasing. Index j
 * with xp[j] <= x < xp[j+1] (the last of equal xp), numpy's formula. */
double ot_np_interp(double x, const double *xp, const double *fp, int64_t n, double left, double right) {
    if (x < xp[0]) return left;
    if (x > xp[n - 1]) return right;
    int64_t lo = 0, hi = n; /* first index with xp > x */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (xp[mid] <= x) lo = mid + 1;
        else hi = mid;
    }
    int64_t j = lo - 1;
    if (j == n - 1 || xp[j] == x) return fp[j];
    double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    double v = slope * (x - xp[j]) + fp[j];
    if (isnan(v)) {
        v = slope * (x - xp[j + 1]) + fp[j + 1];
        if (isnan(v) && fp[j] == fp[j + 1]) v = fp[j];
    }
    return v;
}

/* np.linspace(0, 1, num)[k] */
double ot_np_linspace01(int64_t k, int64_t num) { return k == num - 1 ? 1.0 : (double)k * (1.0 / (double)(num - 1)); }

double ot_compute_ap(const double *recall, const double *precision, int64_t n, ot_error *err) {
    double *mrec = malloc((size_t)(n + 2) * sizeof *mrec), *mpre = malloc((size_t)(n + 2) * sizeof *mpre);
    if (!mrec || !mpre) { free(mrec); free(mpre); ot_fail(err, OT_ERR_NOMEM, "compute_ap: out of memory"); return NAN; }
    mrec[0] = 0.0; mpre[0] = 1.0;
    for (int64_t i = 0; i < n; i++) { mrec[i + 1] = recall[i]; mpre[i + 1] = precision[i]; }
    mrec[n + 1] = 1.0; mpre[n + 1] = 0.0;
    for (int64_t i = n; i >= 0; i--) mpre[i] = fmax(mpre[i], mpre[i + 1]); /* precision envelope */
    double ap = 0, xprev = 0, yprev = 0;
    for (int k = 0; k <= 100; k++) { /* np.trapz(np.interp(x, mrec, mpre), x), x = linspace(0, 1, 101) */
        double x = ot_np_linspace01(k, 101);
        double y = ot_np_interp(x, mrec, mpre, n + 2, mpre[0], mpre[n + 1]);
        if (k) ap += (x - xprev) * (y + yprev) / 2.0;
        xprev = x;
        yprev = y;
    }
    free(mrec);
    free(mpre);
    return ap;
}

/* ---- ap_per_class ---- */

static const float *g_sort_conf;
static int cmp_conf_desc(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    float x = g_sort_conf[i], y = g_sort_conf[j];
    if (x != y) return x > y ? -1 : 1;
    return i < j ? -1 : i > j;
}
static int cmp_int(const void *a, const void *b) { int x = *(const int *)a, y = *(const int *)b; return (x > y) - (x < y); }

void ot_ap_result_free(ot_ap_result *r) {
    if (!r) return;
    free(r->cls); free(r->nt); free(r->p); free(r->r); free(r->f1); free(r->ap); free(r->ap50); free(r->ap50_95);
    memset(r, 0, sizeof *r);
}

ot_status ot_ap_per_class(const ot_val_stats *s, ot_ap_result *res, ot_error *err) {
    memset(res, 0, sizeof *res);
    res->seen = s->seen;
    res->nt_total = s->nl;
    bool any = false; /* val.py: if len(stats) and stats[0].any() */
    for (int64_t i = 0; i < s->n * OT_NIOU && !any; i++) any = s->correct[i] != 0;
    if (!any || s->nl == 0) return OT_OK;

    ot_status st = OT_ERR_NOMEM;
    int64_t n = s->n;
    int *tc = malloc((size_t)s->nl * sizeof *tc);
    int64_t *ord = malloc((size_t)n * sizeof *ord), *sel = malloc((size_t)n * sizeof *sel);
    double *xp = malloc((size_t)n * sizeof *xp), *rec = malloc((size_t)n * OT_NIOU * sizeof *rec);
    double *pre = malloc((size_t)n * OT_NIOU * sizeof *pre);
    double *P = NULL, *R = NULL, *fmean = calloc(NPX, sizeof *fmean);
    if (!tc || !ord || !sel || !xp || !rec || !pre || !fmean) goto done;

    /* unique target classes with counts */
    memcpy(tc, s->tcls, (size_t)s->nl * sizeof *tc);
    qsort(tc, (size_t)s->nl, sizeof *tc, cmp_int);
    int nu = 0;
    for (int64_t i = 0; i < s->nl; i++)
        if (i == 0 || tc[i] != tc[i - 1]) nu++;
    res->n = nu;
    res->cls = malloc((size_t)nu * sizeof *res->cls);
    res->nt = calloc((size_t)nu, sizeof *res->nt);
    res->p = calloc((size_t)nu, sizeof *res->p);
    res->r = calloc((size_t)nu, sizeof *res->r);
    res->f1 = calloc((size_t)nu, sizeof *res->f1);
    res->ap = calloc((size_t)nu * OT_NIOU, sizeof *res->ap);
    res->ap50 = calloc((size_t)nu, sizeof *res->ap50);
    res->ap50_95 = calloc((size_t)nu, sizeof *res->ap50_95);
    P = calloc((size_t)nu * NPX, sizeof *P);
    R = calloc((size_t)nu * NPX, sizeof *R);
    if (!res->cls || !res->nt || !res->p || !res->r || !res->f1 || !res->ap || !res->ap50 || !res->ap50_95 || !P || !R)
        goto done;
    for (int64_t i = 0, k = -1; i < s->nl; i++) {
        if (i == 0 || tc[i] != tc[i - 1]) res->cls[++k] = tc[i];
        res->nt[k]++;
    }

    /* sort by confidence (np.argsort(-conf); ties keep their order here) */
    for (int64_t i = 0; i < n; i++) ord[i] = i;
    g_sort_conf = s->conf;
    qsort(ord, (size_t)n, sizeof *ord, cmp_conf_desc);

    const double eps = 1e-16;
    for (int ci = 0; ci < nu; ci++) {
        int64_t np_ = 0;
        for (int64_t k = 0; k < n; k++)
            if (s->pcls[ord[k]] == res->cls[ci]) sel[np_++] = ord[k];
        double nl = (double)res->nt[ci];
        if (np_ == 0) continue;
        int64_t tpc[OT_NIOU] = {0}, fpc[OT_NIOU] = {0};
        for (int64_t k = 0; k < np_; k++) {
            const uint8_t *c = s->correct + sel[k] * OT_NIOU;
            xp[k] = -(double)s->conf[sel[k]];
            for (int t = 0; t < OT_NIOU; t++) {
                tpc[t] += c[t] != 0;
                fpc[t] += c[t] == 0;
                rec[t * np_ + k] = (double)tpc[t] / (nl + eps);
                pre[t * np_ + k] = (double)tpc[t] / (double)(tpc[t] + fpc[t]);
            }
        }
        for (int k = 0; k < NPX; k++) {
            double x = -ot_np_linspace01(k, NPX);
            R[ci * NPX + k] = ot_np_interp(x, xp, rec, np_, 0.0, rec[np_ - 1]);
            P[ci * NPX + k] = ot_np_interp(x, xp, pre, np_, 1.0, pre[np_ - 1]);
        }
        for (int t = 0; t < OT_NIOU; t++) {
            res->ap[ci * OT_NIOU + t] = ot_compute_ap(rec + t * np_, pre + t * np_, np_, err);
            if (isnan(res->ap[ci * OT_NIOU + t])) goto done;
        }
    }

    /* F1, its class mean, smooth(f1.mean(0), 0.1), argmax */
    for (int ci = 0; ci < nu; ci++)
        for (int k = 0; k < NPX; k++) {
            double p = P[ci * NPX + k], r = R[ci * NPX + k];
            fmean[k] += 2 * p * r / (p + r + eps);
        }
    for (int k = 0; k < NPX; k++) fmean[k] /= nu;
    {
        const int nf = 101, half = 50; /* round(1000 * 0.1 * 2) // 2 + 1 */
        const double w = 1.0 / nf;
        double bestv = -INFINITY;
        int bi = 0;
        for (int k = 0; k < NPX; k++) {
            double acc = 0;
            for (int m = 0; m < nf; m++) {
                int q = k + m - half;
                acc += fmean[q < 0 ? 0 : q >= NPX ? NPX - 1 : q] * w;
            }
            if (acc > bestv) { bestv = acc; bi = k; }
        }
        for (int ci = 0; ci < nu; ci++) {
            double p = P[ci * NPX + bi], r = R[ci * NPX + bi];
            res->p[ci] = p;
            res->r[ci] = r;
            res->f1[ci] = 2 * p * r / (p + r + eps);
        }
    }
    for (int ci = 0; ci < nu; ci++) {
        double a = 0;
        for (int t = 0; t < OT_NIOU; t++) a += res->ap[ci * OT_NIOU + t];
        res->ap50[ci] = res->ap[ci * OT_NIOU];
        res->ap50_95[ci] = a / OT_NIOU;
        res->mp += res->p[ci];
        res->mr += res->r[ci];
        res->map50 += res->ap50[ci];
        res->map += res->ap50_95[ci];
    }
    res->mp /= nu;
    res->mr /= nu;
    res->map50 /= nu;
    res->map /= nu;
    st = OT_OK;
done:
    free(tc); free(ord); free(sel); free(xp); free(rec); free(pre);
    free(P); free(R); free(fmean);
    if (st != OT_OK) {
        ot_ap_result_free(res);
        if (!err || !err->msg[0]) return ot_fail(err, OT_ERR_NOMEM, "ap_per_class: out of memory");
        return OT_ERR_NOMEM;
    }
    return OT_OK;
}

/* ---- COCO json ---- */

static const int coco80_91[80] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                  22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
                                  46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
                                  67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90};

int ot_coco80_to_91(int cls) { return cls >= 0 && cls < 80 ? coco80_91[cls] : -1; }

/* Python's round(v, nd) written as the shortest decimal: %.*f then trailing zeros dropped */
static void put_round(FILE *f, double v, int nd) {
    char b[64];
    snprintf(b, sizeof b, "%.*f", nd, v);
    char *e = b + strlen(b) - 1;
    while (e > b && *e == '0') *e-- = 0;
    if (*e == '.') *e = 0;
    if (strcmp(b, "-0") == 0) strcpy(b, "0");
    fputs(b, f);
}

static void put_image_id(FILE *f, const char *id) {
    bool digits = *id != 0;
    for (const char *p = id; *p; p++) digits &= *p >= '0' && *p <= '9';
    if (digits) { /* int(stem) */
        while (id[0] == '0' && id[1]) id++;
        fputs(id, f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

ot_status ot_coco_json_write(const char *path, const ot_coco_det *dets, int64_t n, bool coco91, ot_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot write", path);
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        const ot_det *d = &dets[i].det;
        int cat = coco91 ? ot_coco80_to_91(d->cls) : d->cls;
        if (coco91 && cat < 0) {
            fclose(f);
            return ot_fail(err, OT_ERR_INVALID, "%s: class %d has no COCO category id", path, d->cls);
        }
        /* xyxy2xywh then the centre to the top-left corner, float32 as torch */
        float cx = (d->x1 + d->x2) / 2, cy = (d->y1 + d->y2) / 2, w = d->x2 - d->x1, h = d->y2 - d->y1;
        float x = cx - w / 2, y = cy - h / 2;
        fputs(i ? ", {\"image_id\": " : "{\"image_id\": ", f);
        put_image_id(f, dets[i].image_id);
        fprintf(f, ", \"category_id\": %d, \"bbox\": [", cat);
        put_round(f, x, 3); fputs(", ", f);
        put_round(f, y, 3); fputs(", ", f);
        put_round(f, w, 3); fputs(", ", f);
        put_round(f, h, 3); fputs("], \"score\": ", f);
        put_round(f, d->conf, 5);
        fputc('}', f);
    }
    fputs("]\n", f);
    if (ferror(f) | (fclose(f) != 0)) return ot_fail(err, OT_ERR_IO, "%s: write failed", path);
    return OT_OK;
}
