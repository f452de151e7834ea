/* loss.c: YOLOv5 v7.0 ComputeLoss (utils/loss.py), the host part. It does
 * build_targets on the host from the host targets array, with its exact
 * assignment (anchor ratio filter < anchor_t, the centre cell plus the two
 * nearest neighbours with offset 0.5, .long() truncation, grid indices clamped
 * in place before tbox is formed; float32 arithmetic like PyTorch), into
 * per-head tables (struct of arrays: image, anchor, gj, gi, class, tbox, anchor
 * wh); uploads them into backend scratch owned by the ot_yolo_loss (grown only
 * when the number of targets grows); runs the device part, the loss kernels of
 * the backend's device (kernels/yolo_loss.h: CIoU box loss with eps 1e-7 and
 * alpha detached, objectness target = detached CIoU clamped at 0 with the last
 * write winning, BCE-with-logits with pos_weight, label smoothing, focal loss
 * when fl_gamma > 0, balance 4.0/1.0/0.4, and the analytic gradient: min/max
 * ties split the gradient in halves and clamp(0) passes it at 0, as PyTorch's
 * autograd does; losses summed in double) between ot_be_enter and ot_be_leave;
 * and downloads the four loss items. The host never reads the head outputs or
 * writes their gradients itself. */
#include "loss.h"
#include "../kernels/yolo_loss.h"
#include <math.h>
#include <string.h>

/* build_targets' output for every head: rows [off[l], off[l] + n[l]) of each
 * column (capacity cap rows, so a column starts at k * cap). */
typedef struct ot_yolo_targets {
    int n[OT_MAX_HEADS];
    size_t off[OT_MAX_HEADS];
    int32_t *b, *a, *gj, *gi, *c; /* image, anchor, cell row, cell column, class */
    float *tbox;                  /* 4 a row: gxy - gij, gwh (grid units) */
    float *anc;                   /* 2 a row: the anchor's wh (grid units) */
    int32_t *count;               /* OT_MAX_HEADS after the columns: n[l] again, for the device kernels */
} ot_yolo_targets;

/* The columns in one block of cap rows: 5 int32, tbox (4 floats), anc (2), then the OT_MAX_HEADS counts; on the
 * backend tobj (1) and the device kernels' link scratch (1) follow. Head l owns rows [l * cap / nl, ...): the
 * tables' addresses do not depend on the batch, so a CUDA graph can replay the loss with the next batch's
 * tables, uploaded by the graph in one copy from the page-locked host block. */
enum { COLS_HOST = 11, COLS_BE = 13 };
#define WORDS_HOST(cap) (COLS_HOST * (cap) + OT_MAX_HEADS)

struct ot_yolo_loss {
    ot_backend *be;
    size_t cap;          /* rows of the tables (a multiple of the heads) */
    int nl;              /* heads the tables are split for */
    void *host;          /* WORDS_HOST(cap) words: the host tables, in the backend's staging memory (page-locked on a
                          * GPU, so their uploads are asynchronous: they are rewritten only after the step's items
                          * were read) */
    void *dev;           /* the same on the backend, then tobj and link (cap words each) */
    int32_t *last;       /* backend: per objectness cell, the last target that writes it; -1 between calls */
    int64_t last_cap;
    unsigned generation; /* + 1 whenever dev or last move */
    double *acc;         /* backend: 3 sums per head, the 4 items, then OT_YOLO_LOSS_PARTS scratch */
};

ot_yolo_loss *ot_yolo_loss_create_on(ot_backend *be) {
    ot_yolo_loss *L = calloc(1, sizeof *L);
    if (!L) return NULL;
    L->be = be;
    if (!(L->acc = ot_be_alloc(be, sizeof(double) * (3 * OT_MAX_HEADS + 4 + OT_YOLO_LOSS_PARTS)))) { free(L); return NULL; }
    return L;
}

ot_yolo_loss *ot_yolo_loss_create(void) { return ot_yolo_loss_create_on(ot_backend_cpu()); }

void ot_yolo_loss_destroy(ot_yolo_loss *L) {
    if (!L) return;
    ot_be_host_free(L->be, L->host);
    ot_be_free(L->be, L->dev);
    ot_be_free(L->be, L->last);
    ot_be_free(L->be, L->acc);
    free(L);
}

static void targets_view(void *base, size_t cap, ot_yolo_targets *t) {
    int32_t *i = base;
    t->count = i + COLS_HOST * cap;
    t->b = i;
    t->a = i + cap;
    t->gj = i + 2 * cap;
    t->gi = i + 3 * cap;
    t->c = i + 4 * cap;
    t->tbox = (float *)(i + 5 * cap);
    t->anc = (float *)(i + 9 * cap);
}

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

/* ---- build_targets for one head: rows in Ultralytics' order ---- */
static void build_layer(const ot_yolo_loss_cfg *cfg, int l, int ny, int nx, const float *targets, int nt, ot_yolo_targets *T) {
    const float g = 0.5f, gx_gain = (float)nx, gy_gain = (float)ny;
    /* filtered (anchor-major, then target), then 5 offset passes over them */
    size_t n = T->off[l];
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
                T->b[n] = (int32_t)r[0];
                T->c[n] = (int32_t)r[1];
                T->a[n] = a;
                T->gi[n] = gi;
                T->gj[n] = gj;
                T->tbox[4 * n] = gx - (float)gi; /* gxy - gij after the in-place clamp */
                T->tbox[4 * n + 1] = gy - (float)gj;
                T->tbox[4 * n + 2] = gw;
                T->tbox[4 * n + 3] = gh;
                T->anc[2 * n] = aw;
                T->anc[2 * n + 1] = ah;
                n++;
            }
        }
    }
    T->n[l] = (int)(n - T->off[l]);
}

/* Checks, capacity (grown with room: a captured graph holds the tables' addresses) and build_targets into the
 * host tables. */
ot_status ot_yolo_loss_stage(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const ot_shape *shapes, const float *targets, int nt,
                             ot_error *err) {
    ot_backend *be = L->be;
    const int nl = cfg->nl, na = cfg->na, nc = cfg->nc, no = nc + 5;
    if (nl < 1 || nl > OT_MAX_HEADS) return ot_fail(err, OT_ERR_INVALID, "loss: %d heads (1 to %d)", nl, OT_MAX_HEADS);
    int bs = (int)shapes[0].d[0];
    int64_t nobj_max = 0;
    for (int l = 0; l < nl; l++) {
        if (shapes[l].rank != 4 || shapes[l].d[1] != (int64_t)na * no || shapes[l].d[0] != bs)
            return ot_fail(err, OT_ERR_SHAPE, "loss: head %d output has the wrong shape (expected (%d, %d, ny, nx))", l, bs, na * no);
        int64_t nobj = (int64_t)bs * na * shapes[l].d[2] * shapes[l].d[3];
        if (nobj > nobj_max) nobj_max = nobj;
    }
    for (int t = 0; t < nt; t++) {
        const float *r = targets + 6 * t;
        if (!(r[0] >= 0 && r[0] < bs) || !(r[1] >= 0 && r[1] < nc))
            return ot_fail(err, OT_ERR_INVALID, "loss: target %d has image %g / class %g outside the batch (%d) or classes (%d)", t,
                           (double)r[0], (double)r[1], bs, nc);
    }
    /* scratch: each head matches at most 5 * na rows per target; room for twice the targets when it grows */
    size_t per_head = (size_t)nt * (size_t)na * 5;
    if (per_head * (size_t)nl > L->cap || nl != L->nl || !L->host) {
        size_t cap = (per_head > L->cap / (size_t)nl ? 2 * per_head : L->cap / (size_t)nl) * (size_t)nl;
        void *h = ot_be_host_alloc(be, sizeof(int32_t) * WORDS_HOST(cap));
        void *d = ot_be_alloc(be, sizeof(int32_t) * (WORDS_HOST(cap) + 2 * cap));
        if (!h || !d) {
            ot_be_host_free(be, h);
            ot_be_free(be, d);
            return ot_fail(err, OT_ERR_NOMEM, "out of memory for %zu loss targets", per_head * (size_t)nl);
        }
        ot_be_sync(be); /* the old tables may still be in use by queued work */
        ot_be_host_free(be, L->host);
        ot_be_free(be, L->dev);
        L->host = h;
        L->dev = d;
        L->cap = cap;
        L->nl = nl;
        L->generation++;
    }
    if (nobj_max > L->last_cap) {
        int32_t *last = ot_be_alloc(be, sizeof(int32_t) * (size_t)nobj_max);
        if (!last) return ot_fail(err, OT_ERR_NOMEM, "out of memory for the loss's %lld objectness cells", (long long)nobj_max);
        ot_be_memset(be, last, 0xff, sizeof(int32_t) * (size_t)nobj_max); /* -1 */
        ot_be_free(be, L->last);
        L->last = last;
        L->last_cap = nobj_max;
        L->generation++;
    }
    ot_yolo_targets T;
    targets_view(L->host, L->cap, &T);
    for (int l = 0; l < OT_MAX_HEADS; l++) T.count[l] = 0;
    for (int l = 0; l < nl; l++) {
        T.off[l] = (size_t)l * (L->cap / (size_t)nl);
        build_layer(cfg, l, (int)shapes[l].d[2], (int)shapes[l].d[3], targets, nt, &T);
        T.count[l] = T.n[l];
    }
    return OT_OK;
}

unsigned ot_yolo_loss_generation(const ot_yolo_loss *L) { return L->generation; }

/* The device half of prepare after a stage: the staged tables uploaded, every dp zeroed, the arguments. */
static void device_args(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const float *const *p, const ot_shape *shapes,
                        float *const *dp, ot_yolo_loss_args *out) {
    ot_backend *be = L->be;
    const int nl = cfg->nl, bs = (int)shapes[0].d[0];
    const size_t per_head = L->cap / (size_t)nl;
    /* the tables and counts in one upload of the whole block (a fixed size: graphs replay it) */
    ot_be_upload(be, L->dev, L->host, sizeof(int32_t) * WORDS_HOST(L->cap));
    ot_yolo_targets D;
    targets_view(L->dev, L->cap, &D);
    const int32_t *hcount = (const int32_t *)L->host + COLS_HOST * L->cap;
    float *tobj = (float *)((int32_t *)L->dev + WORDS_HOST(L->cap));
    int32_t *link = (int32_t *)L->dev + WORDS_HOST(L->cap) + L->cap;
    /* the kernels' arguments */
    ot_yolo_loss_args A;
    memset(&A, 0, sizeof A);
    A.nl = nl;
    A.bs = bs;
    A.na = cfg->na;
    A.nc = cfg->nc;
    A.box = cfg->box;
    A.obj = cfg->obj;
    A.cls = cfg->cls;
    A.cls_pw = cfg->cls_pw;
    A.obj_pw = cfg->obj_pw;
    A.fl_gamma = cfg->fl_gamma;
    A.label_smoothing = cfg->label_smoothing;
    A.items = L->acc + 3 * OT_MAX_HEADS;
    A.part = A.items + 4;
    for (int l = 0; l < nl; l++) {
        ot_yolo_loss_layer_args *la = &A.layer[l];
        size_t o = (size_t)l * per_head;
        la->p = p[l];
        la->dp = dp ? dp[l] : NULL;
        la->ny = (int)shapes[l].d[2];
        la->nx = (int)shapes[l].d[3];
        la->n = hcount[l];
        la->count = D.count + l;
        la->cap = (int)per_head;
        la->b = D.b + o;
        la->a = D.a + o;
        la->gj = D.gj + o;
        la->gi = D.gi + o;
        la->c = D.c + o;
        la->tbox = D.tbox + 4 * o;
        la->anc = D.anc + 2 * o;
        la->tobj = tobj + o;
        la->link = link + o;
        la->last = L->last;
        la->sums = L->acc + 3 * l;
        la->balance = cfg->balance[l];
        if (la->dp) ot_be_memset(be, la->dp, 0, sizeof(float) * (size_t)ot_numel(&shapes[l]));
    }
    *out = A;
}

ot_status ot_yolo_loss_prepare(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const float *const *p, const ot_shape *shapes,
                               const float *targets, int nt, float *const *dp, ot_yolo_loss_args *out, ot_error *err) {
    OT_TRY(ot_yolo_loss_stage(L, cfg, shapes, targets, nt, err));
    device_args(L, cfg, p, shapes, dp, out);
    return OT_OK;
}

ot_status ot_yolo_loss_run(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const float *const *p, const ot_shape *shapes,
                           float *const *dp, ot_error *err) {
    ot_backend *be = L->be;
    const ot_yolo_loss_kernels *K = ot_yolo_loss_kernels_for(be->kind);
    if (!K) return ot_fail(err, OT_ERR_UNSUPPORTED, "loss: no loss kernels for device %s in this build", be->name);
    if (!L->host || L->nl != cfg->nl) return ot_fail(err, OT_ERR_INTERNAL, "loss: run before a stage");
    ot_yolo_loss_args A;
    device_args(L, cfg, p, shapes, dp, &A);
    ot_be_enter(be);
    for (int l = 0; l < A.nl; l++) {
        K->targets(be, &A, l);
        K->objectness(be, &A, l);
    }
    K->items(be, &A);
    ot_be_leave(be);
    return OT_OK;
}

ot_status ot_yolo_loss_compute(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const float *const *p, const ot_shape *shapes,
                               const float *targets, int nt, float *const *dp, ot_loss_items *items, ot_error *err) {
    if (!ot_yolo_loss_kernels_for(L->be->kind))
        return ot_fail(err, OT_ERR_UNSUPPORTED, "loss: no loss kernels for device %s in this build", L->be->name);
    OT_TRY(ot_yolo_loss_stage(L, cfg, shapes, targets, nt, err));
    OT_TRY(ot_yolo_loss_run(L, cfg, p, shapes, dp, err));
    if (items) ot_yolo_loss_items(L, items);
    return OT_OK;
}

void ot_yolo_loss_items(ot_yolo_loss *L, ot_loss_items *items) {
    double it[4];
    ot_be_download(L->be, it, L->acc + 3 * OT_MAX_HEADS, sizeof it); /* A.items of ot_yolo_loss_prepare */
    items->lbox = it[0];
    items->lobj = it[1];
    items->lcls = it[2];
    items->loss = it[3];
}
