/* yolo_loss.c: the CPU loss kernels (kernels/yolo_loss.h), one thread, in
 * ComputeLoss's order: targets in build_targets' order, cells in (b, a, j, i)
 * order, sums in double. The math is kernels/yolo_loss_math.h. */
#include "yolo_loss.h"
#include "device_kernels.h"
#include "yolo_loss_math.h"

/* element (b, a, k, j, i) of a head tensor (bs, na*no, ny, nx) */
#define AT(b, a, k, j, i) ((((int64_t)(b) * na + (a)) * no + (k)) * hw + (int64_t)(j) * nx + (i))

static void cpu_targets(ot_backend *be, const ot_yolo_loss_args *A, int l) {
    const ot_yolo_loss_layer_args *L = &A->layer[l];
    const int na = A->na, nc = A->nc, no = nc + 5, nx = L->nx, n = L->n, bs = A->bs;
    const int64_t hw = (int64_t)L->ny * nx;
    const float *pl = L->p;
    float *dl = L->dp;
    const double cp = 1.0 - 0.5 * A->label_smoothing, cn = 0.5 * A->label_smoothing;
    const double gsc = dl && n ? -(double)A->box * bs / (double)n : 0;             /* d loss / d ciou */
    const double gcls = dl && n ? (double)A->cls * bs / ((double)n * nc) : 0;      /* d loss / d class BCE */
    double lb = 0, lc = 0;
    for (int q = 0; q < n; q++) {
        int64_t at = AT(L->b[q], L->a[q], 0, L->gj[q], L->gi[q]); /* channel k at at + k * hw */
        const float *pc = pl + at;
        double aw = L->anc[2 * q], ah = L->anc[2 * q + 1], s[4], pb[4];
        ot_yl_pbox(pc[0], pc[hw], pc[2 * hw], pc[3 * hw], aw, ah, s, pb);
        double tb[4] = {L->tbox[4 * q], L->tbox[4 * q + 1], L->tbox[4 * q + 2], L->tbox[4 * q + 3]}, d[4] = {0, 0, 0, 0};
        double ci = ot_yl_ciou(pb, tb, gsc, dl ? d : NULL);
        lb += 1.0 - ci;
        L->tobj[q] = (float)fmax(ci, 0.0); /* tobj is float32, detached */
        if (dl) {
            float g[4];
            ot_yl_box_grad(d, s, aw, ah, g);
            for (int k = 0; k < 4; k++) dl[at + k * hw] += g[k];
        }
        if (nc > 1) {
            int c = L->c[q];
            for (int k = 0; k < nc; k++) {
                double dx, x = pc[(5 + k) * hw];
                lc += ot_yl_bce(x, k == c ? cp : cn, A->cls_pw, A->fl_gamma, &dx);
                if (dl) dl[at + (5 + k) * hw] += (float)(gcls * dx);
            }
        }
    }
    L->sums[0] = lb;
    L->sums[1] = lc;
}

static void cpu_objectness(ot_backend *be, const ot_yolo_loss_args *A, int l) {
    const ot_yolo_loss_layer_args *L = &A->layer[l];
    const int na = A->na, nc = A->nc, no = nc + 5, ny = L->ny, nx = L->nx, n = L->n, bs = A->bs;
    const int64_t hw = (int64_t)ny * nx, nobj = (int64_t)bs * na * hw;
    const float *pl = L->p;
    float *dl = L->dp;
    double lo = 0, gobj = (double)A->obj * L->balance * bs / (double)nobj;
    /* every cell with target 0 */
    for (int b = 0; b < bs; b++)
        for (int a = 0; a < na; a++) {
            const float *po = pl + AT(b, a, 4, 0, 0);
            float *dO = dl ? dl + AT(b, a, 4, 0, 0) : NULL;
            for (int64_t i = 0; i < hw; i++) {
                double dx;
                lo += ot_yl_bce(po[i], 0.0, A->obj_pw, A->fl_gamma, &dx);
                if (dO) dO[i] += (float)(gobj * dx);
            }
        }
    /* matched cells: tobj[b, a, gj, gi] = iou, the last target wins; replace their t=0 term */
#define CELL(q) ((((int64_t)L->b[q] * na + L->a[q]) * ny + L->gj[q]) * nx + L->gi[q])
    for (int q = 0; q < n; q++) L->last[CELL(q)] = q;
    for (int q = 0; q < n; q++) {
        if (L->last[CELL(q)] != q) continue;
        int64_t at = AT(L->b[q], L->a[q], 4, L->gj[q], L->gi[q]);
        double x = pl[at], d0, d1;
        double l0 = ot_yl_bce(x, 0.0, A->obj_pw, A->fl_gamma, &d0), l1 = ot_yl_bce(x, L->tobj[q], A->obj_pw, A->fl_gamma, &d1);
        lo += l1 - l0;
        if (dl) dl[at] += (float)(gobj * (d1 - d0));
    }
    for (int q = 0; q < n; q++) L->last[CELL(q)] = -1;
#undef CELL
    L->sums[2] = lo;
}

static void cpu_items(ot_backend *be, const ot_yolo_loss_args *A) {
    double lbox = 0, lobj = 0, lcls = 0;
    for (int l = 0; l < A->nl; l++) {
        const ot_yolo_loss_layer_args *L = &A->layer[l];
        int64_t nobj = (int64_t)A->bs * A->na * L->ny * L->nx;
        if (L->n) {
            lbox += L->sums[0] / (double)L->n;
            if (A->nc > 1) lcls += L->sums[1] / ((double)L->n * A->nc);
        }
        lobj += L->sums[2] / (double)nobj * L->balance;
    }
    double *it = A->items;
    it[0] = lbox * A->box;
    it[1] = lobj * A->obj;
    it[2] = lcls * A->cls;
    it[3] = (it[0] + it[1] + it[2]) * A->bs;
}
#undef AT

static const ot_yolo_loss_kernels cpu_kernels = {.name = "cpu", .targets = cpu_targets, .objectness = cpu_objectness, .items = cpu_items};

const ot_yolo_loss_kernels *ot_yolo_loss_kernels_for(ot_device_kind k) {
    if (k == OT_DEV_CPU || k == OT_DEV_CPU_GUARD) return &cpu_kernels;
    const ot_device_kernels *t = ot_device_kernels_get(k); /* a registered device (kernels/device_kernels.h) */
    return t ? t->loss : NULL;
}
