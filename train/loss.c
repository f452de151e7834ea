/* loss.c: YOLOv5 v7.0 ComputeLoss (utils/loss.py) with its exact target
 * assignment (build_targets: anchor ratio filter < anchor_t, the centre cell
 * plus the two nearest neighbours with offset 0.5, grid indices clamped in
 * place before tbox is formed), CIoU box loss (utils/metrics.py bbox_iou,
 * eps 1e-7, alpha detached), objectness target = detached CIoU clamped at 0
 * (gr = 1, last write wins), BCE-with-logits with pos_weight, label smoothing,
 * focal loss when fl_gamma > 0, balance 4.0/1.0/0.4, and its analytic gradient
 * (min/max ties split the gradient in halves and clamp(0) passes it at 0, as
 * PyTorch's autograd does). Assignment arithmetic is float32 like PyTorch;
 * losses are summed in double. */
#include "loss.h"
#include <math.h>
#include <string.h>

typedef struct entry { int b, a, gj, gi, c; float tx, ty, tw, th; } entry; /* one matched target */

struct ot_yolo_loss {
    entry *e;
    size_t cap;
    int *last;        /* per objectness cell: index of the last entry that writes it, or -1 */
    int64_t last_cap;
};

ot_yolo_loss *ot_yolo_loss_create(void) { return calloc(1, sizeof(ot_yolo_loss)); }
void ot_yolo_loss_destroy(ot_yolo_loss *L) { if (L) { free(L->e); free(L->last); free(L); } }

void ot_yolo_loss_cfg_init(ot_yolo_loss_cfg *cfg, const ot_yolo_head *head, const ot_hyp *hyp, int imgsz) {
    memset(cfg, 0, sizeof *cfg);
    cfg->nl = head->nl;
    cfg->na = head->na;
    cfg->nc = head->nc;
    for (int l = 0; l < head->nl; l++)
        for (int a = 0; a < head->na; a++)
            for (int k = 0; k < 2; k++) cfg->anchors[l][a][k] = head->anchors[l][a][k] / (float)head->stride[l];
    float s = 3.0f / (float)head->nl;
    cfg->box = (float)hyp->box * s;
    cfg->cls = (float)hyp->cls * ((float)head->nc / 80.0f) * s;
    cfg->obj = (float)hyp->obj * ((float)imgsz / 640.0f) * ((float)imgsz / 640.0f) * s;
    cfg->cls_pw = (float)hyp->cls_pw;
    cfg->obj_pw = (float)hyp->obj_pw;
    cfg->anchor_t = (float)hyp->anchor_t;
    cfg->fl_gamma = (float)hyp->fl_gamma;
    cfg->label_smoothing = (float)hyp->label_smoothing;
    static const float b3[3] = {4.0f, 1.0f, 0.4f}, b5[5] = {4.0f, 1.0f, 0.25f, 0.06f, 0.02f};
    for (int l = 0; l < head->nl && l < 5; l++) cfg->balance[l] = head->nl == 3 ? b3[l] : b5[l];
}

/* ---- BCE with logits (pos_weight pw), optional focal modulation ---- */
static inline double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* loss of one element and d loss / d x */
static inline double bce(double x, double t, double pw, double gamma, double *dx) {
    double lw = (pw - 1.0) * t + 1.0;
    double sp = log1p(exp(-fabs(x))) + fmax(-x, 0.0); /* -log sigmoid(x) */
    double l = (1.0 - t) * x + lw * sp, s = sigm(x), d = (1.0 - t) - lw * (1.0 - s);
    if (gamma > 0) { /* FocalLoss(alpha 0.25) */
        double pt = t * s + (1.0 - t) * (1.0 - s), af = t * 0.25 + (1.0 - t) * 0.75, q = 1.0 - pt;
        double mf = pow(q, gamma), dmf = -gamma * pow(q, gamma - 1.0) * (2.0 * t - 1.0) * s * (1.0 - s);
        *dx = d * af * mf + l * af * dmf;
        return l * af * mf;
    }
    *dx = d;
    return l;
}

/* d min(a, b) / d a, d max(a, b) / d a (ties split in halves, like PyTorch) */
static inline double dmin_a(double a, double b) { return a < b ? 1.0 : a == b ? 0.5 : 0.0; }
static inline double dmax_a(double a, double b) { return a > b ? 1.0 : a == b ? 0.5 : 0.0; }

/* CIoU of box1 (predicted, xywh) with box2 (target); g = d loss / d ciou; d1 += d loss / d box1 */
static double ciou(const double b1[4], const double b2[4], double g, double d1[4]) {
    const double eps = 1e-7, k = 4.0 / (M_PI * M_PI);
    double x1 = b1[0], y1 = b1[1], w1 = b1[2], h1 = b1[3], x2 = b2[0], y2 = b2[1], w2 = b2[2], h2 = b2[3];
    double a_x1 = x1 - w1 / 2, a_x2 = x1 + w1 / 2, a_y1 = y1 - h1 / 2, a_y2 = y1 + h1 / 2;
    double b_x1 = x2 - w2 / 2, b_x2 = x2 + w2 / 2, b_y1 = y2 - h2 / 2, b_y2 = y2 + h2 / 2;
    double iw_raw = fmin(a_x2, b_x2) - fmax(a_x1, b_x1), ih_raw = fmin(a_y2, b_y2) - fmax(a_y1, b_y1);
    double iw = fmax(iw_raw, 0), ih = fmax(ih_raw, 0), inter = iw * ih;
    double uni = w1 * h1 + w2 * h2 - inter + eps, iou = inter / uni;
    double cw = fmax(a_x2, b_x2) - fmin(a_x1, b_x1), ch = fmax(a_y2, b_y2) - fmin(a_y1, b_y1);
    double c2 = cw * cw + ch * ch + eps;
    double dxc = b_x1 + b_x2 - a_x1 - a_x2, dyc = b_y1 + b_y2 - a_y1 - a_y2, rho2 = (dxc * dxc + dyc * dyc) / 4;
    double da = atan(w2 / h2) - atan(w1 / h1), v = k * da * da, alpha = v / (v - iou + (1 + eps));
    double out = iou - (rho2 / c2 + v * alpha);
    if (!d1) return out;
    /* backward */
    double d_iou = g, d_rho2 = -g / c2, d_c2 = g * rho2 / (c2 * c2), d_v = -g * alpha;
    double d_inter = d_iou / uni, d_uni = -d_iou * inter / (uni * uni);
    double d_w1 = d_uni * h1, d_h1 = d_uni * w1;
    d_inter -= d_uni;
    double d_iw = d_inter * ih, d_ih = d_inter * iw;
    double d_iwr = iw_raw >= 0 ? d_iw : 0, d_ihr = ih_raw >= 0 ? d_ih : 0;
    double d_ax1 = 0, d_ax2 = 0, d_ay1 = 0, d_ay2 = 0;
    d_ax2 += d_iwr * dmin_a(a_x2, b_x2);
    d_ax1 -= d_iwr * dmax_a(a_x1, b_x1);
    d_ay2 += d_ihr * dmin_a(a_y2, b_y2);
    d_ay1 -= d_ihr * dmax_a(a_y1, b_y1);
    double d_cw = d_c2 * 2 * cw, d_ch = d_c2 * 2 * ch;
    d_ax2 += d_cw * dmax_a(a_x2, b_x2);
    d_ax1 -= d_cw * dmin_a(a_x1, b_x1);
    d_ay2 += d_ch * dmax_a(a_y2, b_y2);
    d_ay1 -= d_ch * dmin_a(a_y1, b_y1);
    d_ax1 -= d_rho2 * dxc / 2;
    d_ax2 -= d_rho2 * dxc / 2;
    d_ay1 -= d_rho2 * dyc / 2;
    d_ay2 -= d_rho2 * dyc / 2;
    double d_a1 = d_v * k * 2 * da * -1.0, r = w1 / h1, q = 1.0 / (1.0 + r * r); /* d atan(w1/h1) */
    d_w1 += d_a1 * q / h1;
    d_h1 += d_a1 * q * (-w1 / (h1 * h1));
    d1[0] += d_ax1 + d_ax2;
    d1[1] += d_ay1 + d_ay2;
    d1[2] += d_w1 + (d_ax2 - d_ax1) / 2;
    d1[3] += d_h1 + (d_ay2 - d_ay1) / 2;
    return out;
}

/* ---- build_targets for one layer: entries in Ultralytics' order ---- */
static ot_status build_layer(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, int l, int ny, int nx, const float *targets,
                             int nt, size_t *n_out, ot_error *err) {
    size_t need = (size_t)nt * (size_t)cfg->na * 5;
    if (need > L->cap) {
        entry *ne = realloc(L->e, sizeof(entry) * need);
        if (!ne) return ot_fail(err, OT_ERR_NOMEM, "out of memory for %zu loss targets", need);
        L->e = ne;
        L->cap = need;
    }
    const float g = 0.5f, gx_gain = (float)nx, gy_gain = (float)ny;
    /* filtered (anchor-major, then target), then 5 offset passes over them */
    size_t n = 0;
    static const float off[5][2] = {{0, 0}, {1, 0}, {0, 1}, {-1, 0}, {0, -1}};
    for (int o = 0; o < 5; o++) {
        for (int a = 0; a < cfg->na; a++) {
            float aw = cfg->anchors[l][a][0], ah = cfg->anchors[l][a][1];
            for (int t = 0; t < nt; t++) {
                const float *r = targets + 6 * t;
                float gx = r[2] * gx_gain, gy = r[3] * gy_gain, gw = r[4] * gx_gain, gh = r[5] * gy_gain;
                float rw = gw / aw, rh = gh / ah;
                float m = fmaxf(fmaxf(rw, 1.0f / rw), fmaxf(rh, 1.0f / rh));
                if (!(m < cfg->anchor_t)) continue;
                float gxi = gx_gain - gx, gyi = gy_gain - gy;
                bool sel;
                switch (o) {
                case 0: sel = true; break;
                case 1: sel = (gx - floorf(gx)) < g && gx > 1.0f; break;
                case 2: sel = (gy - floorf(gy)) < g && gy > 1.0f; break;
                case 3: sel = (gxi - floorf(gxi)) < g && gxi > 1.0f; break;
                default: sel = (gyi - floorf(gyi)) < g && gyi > 1.0f; break;
                }
                if (!sel) continue;
                int gi = (int)(gx - off[o][0] * g), gj = (int)(gy - off[o][1] * g); /* .long() truncates */
                if (gi < 0) gi = 0;
                if (gi > nx - 1) gi = nx - 1;
                if (gj < 0) gj = 0;
                if (gj > ny - 1) gj = ny - 1;
                entry *e = &L->e[n++];
                e->b = (int)r[0];
                e->c = (int)r[1];
                e->a = a;
                e->gi = gi;
                e->gj = gj;
                e->tx = gx - (float)gi; /* gxy - gij after the in-place clamp */
                e->ty = gy - (float)gj;
                e->tw = gw;
                e->th = gh;
            }
        }
    }
    *n_out = n;
    return OT_OK;
}

ot_status ot_yolo_loss_compute(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const float *const *p, const ot_shape *shapes,
                               const float *targets, int nt, float *const *dp, ot_loss_items *items, ot_error *err) {
    const int na = cfg->na, nc = cfg->nc, no = nc + 5;
    int bs = (int)shapes[0].d[0];
    for (int l = 0; l < cfg->nl; l++)
        if (shapes[l].rank != 4 || shapes[l].d[1] != (int64_t)na * no || shapes[l].d[0] != bs)
            return ot_fail(err, OT_ERR_SHAPE, "loss: head %d output has the wrong shape (expected (%d, %d, ny, nx))", l, bs, na * no);
    for (int t = 0; t < nt; t++) {
        const float *r = targets + 6 * t;
        if (!(r[0] >= 0 && r[0] < bs) || !(r[1] >= 0 && r[1] < nc))
            return ot_fail(err, OT_ERR_INVALID, "loss: target %d has image %g / class %g outside the batch (%d) or classes (%d)", t,
                           (double)r[0], (double)r[1], bs, nc);
    }
    const double cp = 1.0 - 0.5 * cfg->label_smoothing, cn = 0.5 * cfg->label_smoothing;
    double lbox = 0, lobj = 0, lcls = 0;
    /* gradient scale: total = (lbox*box + lobj*obj + lcls*cls) * bs */
    for (int l = 0; l < cfg->nl; l++) {
        int ny = (int)shapes[l].d[2], nx = (int)shapes[l].d[3];
        int64_t hw = (int64_t)ny * nx, nobj = (int64_t)bs * na * hw;
        const float *pl = p[l];
        float *dl = dp ? dp[l] : NULL;
        if (dl) memset(dl, 0, sizeof(float) * (size_t)(nobj * no));
        size_t n = 0;
        OT_TRY(build_layer(L, cfg, l, ny, nx, targets, nt, &n, err));
        if (nobj > L->last_cap) {
            int *nl = realloc(L->last, sizeof(int) * (size_t)nobj);
            if (!nl) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
            L->last = nl;
            for (int64_t i = L->last_cap; i < nobj; i++) nl[i] = -1;
            L->last_cap = nobj;
        }
#define AT(b, a, k, j, i) ((((int64_t)(b) * na + (a)) * no + (k)) * hw + (int64_t)(j) * nx + (i))
        /* box and class terms */
        double lb = 0, lc = 0;
        for (size_t q = 0; q < n; q++) {
            const entry *e = &L->e[q];
            double sx = sigm(pl[AT(e->b, e->a, 0, e->gj, e->gi)]), sy = sigm(pl[AT(e->b, e->a, 1, e->gj, e->gi)]);
            double sw = sigm(pl[AT(e->b, e->a, 2, e->gj, e->gi)]), sh = sigm(pl[AT(e->b, e->a, 3, e->gj, e->gi)]);
            double aw = cfg->anchors[l][e->a][0], ah = cfg->anchors[l][e->a][1];
            double pb[4] = {sx * 2 - 0.5, sy * 2 - 0.5, (sw * 2) * (sw * 2) * aw, (sh * 2) * (sh * 2) * ah};
            double tb[4] = {e->tx, e->ty, e->tw, e->th}, d[4] = {0, 0, 0, 0};
            double gsc = dl ? -(double)cfg->box * bs / (double)n : 0;
            double ci = ciou(pb, tb, gsc, dl ? d : NULL);
            lb += 1.0 - ci;
            if (dl) {
                dl[AT(e->b, e->a, 0, e->gj, e->gi)] += (float)(d[0] * 2 * sx * (1 - sx));
                dl[AT(e->b, e->a, 1, e->gj, e->gi)] += (float)(d[1] * 2 * sy * (1 - sy));
                dl[AT(e->b, e->a, 2, e->gj, e->gi)] += (float)(d[2] * 8 * sw * sw * (1 - sw) * aw);
                dl[AT(e->b, e->a, 3, e->gj, e->gi)] += (float)(d[3] * 8 * sh * sh * (1 - sh) * ah);
            }
            if (nc > 1) {
                double gcls = dl ? (double)cfg->cls * bs / ((double)n * nc) : 0;
                for (int c = 0; c < nc; c++) {
                    double dx, x = pl[AT(e->b, e->a, 5 + c, e->gj, e->gi)];
                    lc += bce(x, c == e->c ? cp : cn, cfg->cls_pw, cfg->fl_gamma, &dx);
                    if (dl) dl[AT(e->b, e->a, 5 + c, e->gj, e->gi)] += (float)(gcls * dx);
                }
            }
        }
        if (n) {
            lbox += lb / (double)n;
            if (nc > 1) lcls += lc / ((double)n * nc);
        }
        /* objectness: BCE over every cell; targets from the matched entries (last wins) */
        double lo = 0, gobj = (double)cfg->obj * cfg->balance[l] * bs / (double)nobj;
        for (int b = 0; b < bs; b++)
            for (int a = 0; a < na; a++) {
                const float *po = pl + AT(b, a, 4, 0, 0);
                float *dO = dl ? dl + AT(b, a, 4, 0, 0) : NULL;
                for (int64_t i = 0; i < hw; i++) {
                    double dx;
                    lo += bce(po[i], 0.0, cfg->obj_pw, cfg->fl_gamma, &dx);
                    if (dO) dO[i] += (float)(gobj * dx);
                }
            }
        /* matched cells: tobj[b, a, gj, gi] = iou, the last entry wins; replace their t=0 term */
#define CELL(e) ((((int64_t)(e)->b * na + (e)->a) * ny + (e)->gj) * nx + (e)->gi)
        for (size_t q = 0; q < n; q++) L->last[CELL(&L->e[q])] = (int)q;
        for (size_t q = 0; q < n; q++) {
            const entry *e = &L->e[q];
            if (L->last[CELL(e)] != (int)q) continue;
            double sx = sigm(pl[AT(e->b, e->a, 0, e->gj, e->gi)]), sy = sigm(pl[AT(e->b, e->a, 1, e->gj, e->gi)]);
            double sw = sigm(pl[AT(e->b, e->a, 2, e->gj, e->gi)]), sh = sigm(pl[AT(e->b, e->a, 3, e->gj, e->gi)]);
            double aw = cfg->anchors[l][e->a][0], ah = cfg->anchors[l][e->a][1];
            double pb[4] = {sx * 2 - 0.5, sy * 2 - 0.5, (sw * 2) * (sw * 2) * aw, (sh * 2) * (sh * 2) * ah};
            double tb[4] = {e->tx, e->ty, e->tw, e->th};
            float t32 = (float)fmax(ciou(pb, tb, 0, NULL), 0.0); /* tobj is float32, detached */
            double x = pl[AT(e->b, e->a, 4, e->gj, e->gi)], d0, d1;
            double l0 = bce(x, 0.0, cfg->obj_pw, cfg->fl_gamma, &d0), l1 = bce(x, t32, cfg->obj_pw, cfg->fl_gamma, &d1);
            lo += l1 - l0;
            if (dl) dl[AT(e->b, e->a, 4, e->gj, e->gi)] += (float)(gobj * (d1 - d0));
        }
        for (size_t q = 0; q < n; q++) L->last[CELL(&L->e[q])] = -1;
#undef CELL
        lobj += lo / (double)nobj * cfg->balance[l];
#undef AT
    }
    items->lbox = lbox * cfg->box;
    items->lobj = lobj * cfg->obj;
    items->lcls = lcls * cfg->cls;
    items->loss = (items->lbox + items->lobj + items->lcls) * bs;
    return OT_OK;
}
