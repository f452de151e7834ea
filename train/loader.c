/* loader.c: the multi-threaded data loader (see loader.h). Sample building
 * follows Ultralytics YOLOv5 v7.0 LoadImagesAndLabels (__getitem__,
 * load_image, load_mosaic, rect batch shapes); the primitives are in
 * train/augment.c. */
#include "train/loader.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "core/backend.h"

/* ---- batch memory: page-locked when a CUDA device is present (core/device.h) ---- */

/* ---- state ---- */

typedef struct cached_im { ot_image im; int w0, h0; } cached_im;

typedef struct wctx {        /* per-thread scratch */
    uint8_t *canvas, *a, *b, *mix;  /* (2s)^2*3, out*3, out*3, out*3 */
    ot_image_scratch dec;    /* file bytes and decoded image */
    ot_image tile[4];        /* resized images the cache does not keep (a mosaic's four) */
    size_t tile_cap[4];
    size_t out_cap;
    ot_box *box, *box2;
    int box_cap, box2_cap;
} wctx;

typedef struct slot {
    ot_batch b;
    float **rows;            /* (B) per-sample rows (n, 5) */
    int *nrows, *rowcap;     /* (B) */
    int done;                /* samples finished */
    int64_t batch;           /* batch being filled, -1 none */
} slot;

struct ot_loader {
    const ot_dataset *d;
    ot_loader_cfg c;
    ot_backend *be;          /* owns the batches' host staging memory */
    int64_t n, nb;
    int64_t ns;              /* samples this rank iterates an epoch (n when world == 1) */
    int64_t *order;          /* (ns) dataset index of each epoch position */
    int64_t *perm;           /* (n) the epoch's global order when world > 1 */
    int64_t *rect_order;     /* (n) rect: sorted by aspect ratio */
    int (*batch_hw)[2];      /* (nb) rect: (h, w) of each batch */
    int max_h, max_w;
    _Atomic(cached_im *) *cache; /* (n) when cache_ram or cache_mb */
    atomic_llong cache_left;     /* bytes the bounded cache may still take */
    atomic_llong load_errors;
    int K;                   /* slots */
    slot *slots;
    /* threads */
    pthread_t *th;
    wctx *wc;                /* (workers + 1): the last is the caller's */
    int nth;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    bool quit;
    int64_t epoch, next_job, total_jobs, free_before, consumed;
    int busy;                /* workers inside a job */
};

/* ---- images ---- */

static bool grow_boxes(ot_box **b, int *cap, int need) {
    if (*cap >= need) return true;
    int c = need < 64 ? 64 : need * 2;
    ot_box *q = realloc(*b, sizeof *q * (size_t)c);
    if (!q) return false;
    *b = q;
    *cap = c;
    return true;
}

/* im as a w x h image in memory of *cap bytes, reused when large enough */
static bool scratch_image(ot_image *im, size_t *cap, int w, int h) {
    size_t need = (size_t)w * (size_t)h * 3;
    if (!im->px || *cap < need) {
        free(im->px);
        im->px = malloc(need ? need : 1);
        *cap = im->px ? need : 0;
    }
    im->w = im->px ? w : 0;
    im->h = im->px ? h : 0;
    return im->px != NULL;
}

static void swap_images(ot_image *a, size_t *acap, ot_image *b, size_t *bcap) {
    ot_image t = *a; *a = *b; *b = t;
    size_t c = *acap; *acap = *bcap; *bcap = c;
}

/* load_image: decode, then the long side to img_size (INTER_AREA when
 * shrinking without augmentation, else bilinear). *owned: im is the caller's
 * to free; else it is in the cache or in the worker's scratch tile ts (0..3,
 * valid until that tile is loaded again). Images the cache will keep
 * get memory of their own; the others reuse the worker's memory. row1 > 0:
 * only rows [row0, row1) of it will be read (when the cache does not keep it
 * and it needs no resizing, only they may be decoded); row1 < 0: no pixel of
 * it will be read (not decoded unless the cache keeps it). */
static void load_image(ot_loader *L, wctx *W, int ts, int64_t i, int row0, int row1, ot_image *im, bool *owned, int *w0,
                       int *h0) {
    *owned = false;
    if (L->cache) {
        cached_im *c = atomic_load(&L->cache[i]);
        if (c) { *im = c->im; *w0 = c->w0; *h0 = c->h0; return; }
    }
    int s = L->c.img_size, W0 = L->d->w0[i], H0 = L->d->h0[i];
    int w, h;
    ot_load_size(W0, H0, s, &w, &h);
    *w0 = W0;
    *h0 = H0;
    /* will the cache keep it? (the bounded one: while its budget lasts) */
    long long bytes = (long long)w * h * 3 + (long long)sizeof(cached_im);
    bool keep = false;
    if (L->cache) {
        if (L->c.cache_ram) keep = true;
        else if (atomic_fetch_sub(&L->cache_left, bytes) >= bytes) keep = true;
        else atomic_fetch_add(&L->cache_left, bytes); /* over the budget */
    }
    ot_image *tile = &W->tile[ts];
    size_t *tcap = &W->tile_cap[ts];
    if (row1 < 0 && !keep) { /* its size is all the sample needs */
        if (scratch_image(tile, tcap, w, h)) *im = *tile;
        else *im = (ot_image){0, 0, NULL};
        return;
    }
    ot_image_scratch *dec = &W->dec;
    ot_error e;
    int dw0 = W0, dh0 = H0;
    bool ok = true;
    *im = (ot_image){0, 0, NULL};
    bool band = !keep && w == W0 && h == H0 && row1 > 0;
    ot_status st = ot_image_load_reuse(L->d->im_files[i], s, band ? row0 : 0, band ? row1 : 0, dec, &dw0, &dh0, &e);
    if (st != OT_OK || dw0 != W0 || dh0 != H0) {
        ok = false;
        if (st == OT_OK) snprintf(e.msg, sizeof e.msg, "size %dx%d, scanned as %dx%d", dw0, dh0, W0, H0);
        atomic_fetch_add(&L->load_errors, 1);
        ot_warn("%s: cannot load (grey image used): %s", L->d->im_files[i], e.msg);
        if (keep ? ot_image_alloc(im, w, h) : scratch_image(tile, tcap, w, h)) {
            if (!keep) *im = *tile;
            memset(im->px, 114, (size_t)w * h * 3);
        }
    } else if (dec->im.w == w && dec->im.h == h) {
        if (keep) { /* the decoded buffer goes to the cache; the next decode allocates anew */
            *im = dec->im;
            dec->im = (ot_image){0, 0, NULL};
            dec->cap = 0;
        } else {
            swap_images(tile, tcap, &dec->im, &dec->cap);
            *im = *tile;
        }
    } else if (keep ? ot_image_alloc(im, w, h) : scratch_image(tile, tcap, w, h)) {
        if (!keep) *im = *tile;
        bool shrink = w < dec->im.w;
        if (shrink && !L->c.augment) ot_resize_area(dec->im.px, dec->im.w, dec->im.h, im->px, w, h);
        else ot_resize_linear(dec->im.px, dec->im.w, dec->im.h, im->px, w, h);
    }
    if (!im->px) { *im = (ot_image){0, 0, NULL}; if (keep && !L->c.cache_ram) atomic_fetch_add(&L->cache_left, bytes); return; }
    if (!keep) return;
    *owned = true;
    if (!ok && !L->c.cache_ram) { atomic_fetch_add(&L->cache_left, bytes); return; } /* the bounded cache keeps no failure */
    cached_im *c = malloc(sizeof *c), *expect = NULL;
    if (c) {
        c->im = *im;
        c->w0 = W0;
        c->h0 = H0;
        if (atomic_compare_exchange_strong(&L->cache[i], &expect, c)) { *owned = false; return; }
        free(c); /* another worker cached it first: ours is freed after use */
    }
    if (!L->c.cache_ram) atomic_fetch_add(&L->cache_left, bytes);
}

static void release_image(ot_image *im, bool owned) { if (owned) ot_image_free(im); }

/* ---- mosaic ---- */

/* The 2s x 2s mosaic canvas, as the four tiles placed on 114: the warp reads it
 * row by row (mosaic_row) without the canvas being written, or from W->canvas. */
typedef struct mosaic_src {
    ot_image im[4];
    bool owned[4];
    ot_mosaic_tile T[4];
    int padw[4], padh[4];
    int rx0, rx1; /* the columns the warp reads */
} mosaic_src;

static void mosaic_row_fill(const mosaic_src *m, int y, uint8_t *row) {
    memset(row + 3 * (size_t)m->rx0, 114, 3 * (size_t)(m->rx1 - m->rx0));
    for (int t = 0; t < 4; t++) {
        const ot_mosaic_tile *T = &m->T[t];
        if (!m->im[t].px || y < T->y1a || y >= T->y2a) continue;
        int x0 = T->x1a > m->rx0 ? T->x1a : m->rx0, x1 = T->x2a < m->rx1 ? T->x2a : m->rx1;
        if (x1 > x0)
            memcpy(row + 3 * (size_t)x0, m->im[t].px + ((size_t)(y - m->padh[t]) * m->im[t].w + (x0 - m->padw[t])) * 3,
                   3 * (size_t)(x1 - x0));
    }
}

static const uint8_t *mosaic_row(void *ctx, int y, uint8_t *buf) {
    mosaic_row_fill(ctx, y, buf);
    return buf;
}

/* load_mosaic: 4 images around a random centre on a 2s canvas of 114, then
 * random_perspective with border -s/2. dst: (s, s, 3). Boxes into W->box. */
static int load_mosaic(ot_loader *L, wctx *W, ot_rng *r, int64_t index, uint8_t *dst, ot_box **boxes, int *cap) {
    const int s = L->c.img_size, S2 = 2 * s;
    const int mb = -(s / 2); /* mosaic_border; img_size is even */
    int yc = (int)ot_rng_range(r, -mb, S2 + mb), xc = (int)ot_rng_range(r, -mb, S2 + mb);
    int64_t idx[4] = {index, ot_rng_below(r, L->n), ot_rng_below(r, L->n), ot_rng_below(r, L->n)};
    for (int i = 3; i > 0; i--) {
        int j = (int)ot_rng_below(r, i + 1);
        int64_t t = idx[i]; idx[i] = idx[j]; idx[j] = t;
    }
    ot_persp P;
    ot_perspective_draw(r, &L->c.hyp, S2, S2, mb, &P);
    /* the canvas region the warp reads: only it is filled */
    int rx0 = 0, ry0 = 0, rx1 = S2, ry1 = S2;
    if (!P.perspective) {
        double a = P.M[0], b = P.M[1], c = P.M[2], d = P.M[3], e = P.M[4], f = P.M[5], det = a * e - b * d;
        if (det != 0) {
            double X0 = INFINITY, Y0 = INFINITY, X1 = -INFINITY, Y1 = -INFINITY;
            for (int k = 0; k < 4; k++) {
                double x = (k & 1) ? P.out_w : 0, y = (k & 2) ? P.out_h : 0;
                double X = (e * (x - c) - b * (y - f)) / det, Y = (-d * (x - c) + a * (y - f)) / det;
                X0 = fmin(X0, X); X1 = fmax(X1, X); Y0 = fmin(Y0, Y); Y1 = fmax(Y1, Y);
            }
            rx0 = (int)fmax(0, floor(X0) - 2); ry0 = (int)fmax(0, floor(Y0) - 2);
            rx1 = (int)fmin(S2, ceil(X1) + 3); ry1 = (int)fmin(S2, ceil(Y1) + 3);
            if (rx1 <= rx0 || ry1 <= ry0) rx0 = ry0 = rx1 = ry1 = 0;
        }
    }
    mosaic_src m;
    m.rx0 = rx0;
    m.rx1 = rx1;
    int qy0 = 0, qy1 = S2; /* the canvas rows the row-wise warp will ask for */
    bool rowwise = ot_warp_axis_src_rows(&P, S2, &qy0, &qy1);
    int n = 0;
    for (int t = 0; t < 4; t++) {
        int w0, h0, lw, lh;
        ot_load_size(L->d->w0[idx[t]], L->d->h0[idx[t]], s, &lw, &lh); /* load_image's size */
        ot_mosaic_tile T0 = ot_mosaic_place(t, xc, yc, lw, lh, s);
        int row0 = 0, row1 = 0; /* the image rows the row-wise warp reads (row1 < 0: none) */
        if (rowwise) {
            int ph = T0.y1a - T0.y1b;
            row0 = (T0.y1a > qy0 ? T0.y1a : qy0) - ph;
            row1 = (T0.y2a < qy1 ? T0.y2a : qy1) - ph;
            bool cols = (T0.x2a < rx1 ? T0.x2a : rx1) > (T0.x1a > rx0 ? T0.x1a : rx0);
            if (row1 <= row0 || !cols) row0 = 0, row1 = -1;
        }
        load_image(L, W, t, idx[t], row0, row1, &m.im[t], &m.owned[t], &w0, &h0);
        int w = m.im[t].w, h = m.im[t].h;
        ot_mosaic_tile T = ot_mosaic_place(t, xc, yc, w, h, s);
        int padw = T.x1a - T.x1b, padh = T.y1a - T.y1b;
        m.T[t] = T;
        m.padw[t] = padw;
        m.padh[t] = padh;
        int nl = L->d->n_labels[idx[t]];
        if (!grow_boxes(boxes, cap, n + nl)) continue;
        const float *lb = L->d->labels[idx[t]];
        for (int k = 0; k < nl; k++) {
            const float *q = lb + 5 * k;
            ot_box *o = &(*boxes)[n++];
            o->cls = q[0];
            o->x1 = w * (q[1] - q[3] / 2) + padw;
            o->y1 = h * (q[2] - q[4] / 2) + padh;
            o->x2 = w * (q[1] + q[3] / 2) + padw;
            o->y2 = h * (q[2] + q[4] / 2) + padh;
            o->x1 = fmin(fmax(o->x1, 0), S2); o->x2 = fmin(fmax(o->x2, 0), S2);
            o->y1 = fmin(fmax(o->y1, 0), S2); o->y2 = fmin(fmax(o->y2, 0), S2);
        }
    }
    /* the default hyp (no rotation, shear or perspective): straight from the
     * tiles, one canvas row at a time; else through the canvas */
    if (!ot_warp_axis_rows(mosaic_row, &m, S2, S2, &P, dst)) {
        for (int y = ry0; y < ry1; y++) mosaic_row_fill(&m, y, W->canvas + (size_t)y * S2 * 3);
        ot_warp(W->canvas, S2, S2, &P, dst);
    }
    for (int t = 0; t < 4; t++) release_image(&m.im[t], m.owned[t]);
    return ot_warp_boxes(*boxes, n, &P);
}

/* ---- one sample ---- */

/* Build sample at epoch position pos into W->a (returned), size *ow x *oh;
 * boxes in pixels into W->box; returns the count. shape filled. */
/* The HSV gains are drawn but not applied: *hsv is false or gains[0..2] are for ot_augment_hsv. */
static int build_sample(ot_loader *L, wctx *W, int64_t epoch, int64_t pos, int *ow, int *oh, bool flips[2],
                        bool *hsv, double gains[3], ot_sample_shape *shape) {
    const ot_loader_cfg *c = &L->c;
    int64_t index = L->order[pos];
    ot_rng r;
    ot_rng_seed(&r, c->seed, (uint64_t)epoch, (uint64_t)index);
    int s = c->img_size, n;
    bool mosaic = c->augment && !c->rect && ot_rng_uniform(&r) < c->hyp.mosaic;
    if (mosaic) {
        n = load_mosaic(L, W, &r, index, W->a, &W->box, &W->box_cap);
        *ow = *oh = s;
        if (ot_rng_uniform(&r) < c->hyp.mixup) {
            int n2 = load_mosaic(L, W, &r, ot_rng_below(&r, L->n), W->mix, &W->box2, &W->box2_cap);
            double rr = ot_rng_beta(&r, 32.0, 32.0);
            ot_mixup(W->a, W->mix, (int64_t)s * s * 3, rr);
            if (grow_boxes(&W->box, &W->box_cap, n + n2)) {
                memcpy(W->box + n, W->box2, sizeof(ot_box) * (size_t)n2);
                n += n2;
            }
        }
        *shape = (ot_sample_shape){L->d->h0[index], L->d->w0[index], s, s, 1.0, 0, 0};
    } else {
        ot_image im;
        bool owned;
        int w0, h0;
        load_image(L, W, 0, index, 0, 0, &im, &owned, &w0, &h0);
        int bw = s, bh = s;
        if (c->rect) { bh = L->batch_hw[pos / c->batch_size][0]; bw = L->batch_hw[pos / c->batch_size][1]; }
        ot_lbox g;
        ot_letterbox_geom(im.w, im.h, bw, bh, c->augment, &g);
        if (im.px) ot_letterbox(im.px, &g, W->a);
        else memset(W->a, 114, (size_t)bw * bh * 3);
        int w = im.w, h = im.h;
        release_image(&im, owned);
        *shape = (ot_sample_shape){h0, w0, h, w, g.ratio, g.dw, g.dh};
        int nl = L->d->n_labels[index];
        n = 0;
        if (grow_boxes(&W->box, &W->box_cap, nl)) {
            const float *lb = L->d->labels[index];
            double Wd = g.ratio * w, Hd = g.ratio * h;
            for (int k = 0; k < nl; k++) {
                const float *q = lb + 5 * k;
                W->box[n++] = (ot_box){q[0], Wd * (q[1] - q[3] / 2) + g.dw, Hd * (q[2] - q[4] / 2) + g.dh,
                                       Wd * (q[1] + q[3] / 2) + g.dw, Hd * (q[2] + q[4] / 2) + g.dh};
            }
        }
        *ow = bw;
        *oh = bh;
        if (c->augment) {
            ot_persp P;
            ot_perspective_draw(&r, &c->hyp, bw, bh, 0, &P);
            if (P.warp) {
                ot_warp(W->a, bw, bh, &P, W->b);
                uint8_t *t = W->a; W->a = W->b; W->b = t;
            }
            n = ot_warp_boxes(W->box, n, &P);
        }
    }
    flips[0] = flips[1] = false;
    *hsv = false;
    if (c->augment) {
        const ot_hyp *h = &c->hyp;
        double g0 = ot_rng_range(&r, -1, 1) * h->hsv_h + 1, g1 = ot_rng_range(&r, -1, 1) * h->hsv_s + 1,
               g2 = ot_rng_range(&r, -1, 1) * h->hsv_v + 1;
        *hsv = h->hsv_h || h->hsv_s || h->hsv_v;
        gains[0] = g0;
        gains[1] = g1;
        gains[2] = g2;
        flips[1] = ot_rng_uniform(&r) < h->flipud;
        flips[0] = ot_rng_uniform(&r) < h->fliplr;
    }
    return n;
}

/* boxes (pixels) -> rows (class cx cy w h) with clip, then the flips */
static void boxes_to_rows(const ot_box *b, int n, int w, int h, const bool flips[2], float *rows) {
    ot_boxes_to_xywhn(b, n, w, h, rows);
    for (int i = 0; i < n; i++) {
        if (flips[1]) rows[5 * i + 2] = 1 - rows[5 * i + 2];
        if (flips[0]) rows[5 * i + 1] = 1 - rows[5 * i + 1];
    }
}

static void run_job(ot_loader *L, wctx *W, int64_t epoch, int64_t job) {
    int64_t bi = job / L->c.batch_size;
    int j = (int)(job % L->c.batch_size);
    slot *S = &L->slots[bi % L->K];
    int ow, oh;
    bool flips[2], hsv;
    double gains[3];
    int n = build_sample(L, W, epoch, job, &ow, &oh, flips, &hsv, gains, &S->b.shapes[j]);
    float *img = S->b.images + (size_t)j * 3 * ow * oh;
    ot_hsv_to_chw(W->a, ow, oh, hsv ? gains : NULL, flips[0], flips[1], img);
    if (n > S->rowcap[j]) {
        float *q = realloc(S->rows[j], sizeof(float) * 5 * (size_t)n);
        if (q) { S->rows[j] = q; S->rowcap[j] = n; } else n = S->rowcap[j];
    }
    boxes_to_rows(W->box, n, ow, oh, flips, S->rows[j]);
    S->nrows[j] = n;
    S->b.sample[j] = L->order[job];
}

/* ---- threads ---- */

static bool job_ready(ot_loader *L) {
    return L->next_job < L->total_jobs && L->next_job / L->c.batch_size < L->free_before + L->K;
}

static void *worker(void *arg) {
    ot_loader *L = ((void **)arg)[0];
    wctx *W = ((void **)arg)[1];
    free(arg);
    pthread_mutex_lock(&L->mu);
    for (;;) {
        while (!L->quit && !job_ready(L)) pthread_cond_wait(&L->cv_work, &L->mu);
        if (L->quit) break;
        int64_t job = L->next_job++, epoch = L->epoch;
        L->busy++;
        pthread_mutex_unlock(&L->mu);
        run_job(L, W, epoch, job);
        pthread_mutex_lock(&L->mu);
        L->busy--;
        L->slots[(job / L->c.batch_size) % L->K].done++;
        pthread_cond_broadcast(&L->cv_done);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* ---- public ---- */

void ot_loader_cfg_train(ot_loader_cfg *c) {
    memset(c, 0, sizeof *c);
    c->img_size = 640;
    c->batch_size = 16;
    c->workers = 4;
    c->prefetch = 3;
    c->augment = true;
    c->shuffle = true;
    c->stride = 32;
    c->cache_mb = 1024;
    c->world = 1;
    ot_hyp_default(&c->hyp);
}

void ot_loader_cfg_val(ot_loader_cfg *c) {
    ot_loader_cfg_train(c);
    c->augment = false;
    c->shuffle = false;
    c->rect = true;
    c->pad = 0.5;
}

int64_t ot_loader_num_batches(const ot_loader *l) { return l->nb; }
int64_t ot_loader_load_errors(const ot_loader *l) { return atomic_load(&((ot_loader *)l)->load_errors); }

static void wctx_free(wctx *W) {
    free(W->canvas); free(W->a); free(W->b); free(W->mix); free(W->box); free(W->box2);
    ot_image_scratch_free(&W->dec);
    for (int t = 0; t < 4; t++) ot_image_free(&W->tile[t]);
}

static bool wctx_init(ot_loader *L, wctx *W) {
    memset(W, 0, sizeof *W);
    size_t S2 = 2 * (size_t)L->c.img_size, out = (size_t)L->max_w * L->max_h * 3;
    W->canvas = L->c.augment ? malloc(S2 * S2 * 3) : NULL;
    W->a = malloc(out);
    W->b = malloc(out);
    W->mix = L->c.augment ? malloc(out) : NULL;
    W->out_cap = out;
    return W->a && W->b && (!L->c.augment || (W->canvas && W->mix));
}

void ot_loader_destroy(ot_loader *L) {
    if (!L) return;
    if (L->th) {
        pthread_mutex_lock(&L->mu);
        L->quit = true;
        pthread_cond_broadcast(&L->cv_work);
        pthread_mutex_unlock(&L->mu);
        for (int t = 0; t < L->nth; t++) pthread_join(L->th[t], NULL);
        free(L->th);
    }
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv_work);
    pthread_cond_destroy(&L->cv_done);
    for (int t = 0; L->wc && t <= L->c.workers; t++) wctx_free(&L->wc[t]);
    free(L->wc);
    for (int k = 0; L->slots && k < L->K; k++) {
        slot *S = &L->slots[k];
        ot_be_host_free(L->be, S->b.images);
        free(S->b.targets); free(S->b.sample); free(S->b.shapes);
        for (int j = 0; S->rows && j < L->c.batch_size; j++) free(S->rows[j]);
        free(S->rows); free(S->nrows); free(S->rowcap);
    }
    free(L->slots);
    if (L->cache) {
        for (int64_t i = 0; i < L->n; i++) {
            cached_im *c = atomic_load(&L->cache[i]);
            if (c) { ot_image_free(&c->im); free(c); }
        }
        free((void *)L->cache);
    }
    free(L->order);
    free(L->perm);
    free(L->rect_order);
    free(L->batch_hw);
    free(L);
}

typedef struct ar_key { double ar; int64_t i; } ar_key;
static int cmp_ar(const void *a, const void *b) {
    const ar_key *x = a, *y = b;
    if (x->ar != y->ar) return x->ar < y->ar ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

ot_status ot_loader_create(const ot_dataset *d, const ot_loader_cfg *c, ot_loader **out, ot_error *err) {
    *out = NULL;
    if (c->stride < 1 || c->img_size < c->stride || c->img_size % c->stride || c->img_size > 8192)
        return ot_fail(err, OT_ERR_INVALID, "loader: image size %d must be a multiple of the stride %d (at most 8192)", c->img_size, c->stride);
    if (c->batch_size < 1 || c->batch_size > 4096) return ot_fail(err, OT_ERR_INVALID, "loader: batch size %d must be 1..4096", c->batch_size);
    if (c->workers < 0 || c->workers > 256) return ot_fail(err, OT_ERR_INVALID, "loader: workers %d must be 0..256", c->workers);
    if (d->n < 1) return ot_fail(err, OT_ERR_INVALID, "loader: the dataset is empty");
    if (c->world < 0 || c->rank < 0 || (c->world > 1 && (c->rank >= c->world || c->rect)) || (c->world <= 1 && c->rank > 0))
        return ot_fail(err, OT_ERR_INVALID, "loader: rank %d of %d%s", c->rank, c->world, c->rect ? " (rect batches need one rank)" : "");
    ot_loader *L = calloc(1, sizeof *L);
    if (!L) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    L->d = d;
    L->c = *c;
    L->be = c->be ? c->be : ot_backend_cpu();
    L->n = d->n;
    L->ns = c->world > 1 ? (d->n + c->world - 1) / c->world : d->n; /* DistributedSampler: padded, then rank::world */
    L->nb = (L->ns + c->batch_size - 1) / c->batch_size;
    L->K = c->prefetch < 2 ? 2 : c->prefetch;
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv_work, NULL);
    pthread_cond_init(&L->cv_done, NULL);
    atomic_init(&L->load_errors, 0);
    atomic_init(&L->cache_left, c->cache_mb > 0 ? (long long)(c->cache_mb < ((int64_t)1 << 30) ? c->cache_mb : ((int64_t)1 << 30)) << 20 : 0);
    L->order = malloc(sizeof(int64_t) * (size_t)(L->n > L->ns ? L->n : L->ns));
    L->perm = c->world > 1 ? malloc(sizeof(int64_t) * (size_t)L->n) : NULL;
    if (!L->order || (c->world > 1 && !L->perm)) goto nomem;
    L->max_w = L->max_h = c->img_size;
    if (c->rect) {
        /* Ultralytics: sort by h/w, per batch shape [maxi, 1] or [1, 1/mini] (h, w),
         * then ceil(shape * img_size / stride + pad) * stride */
        ar_key *k = malloc(sizeof *k * (size_t)L->n);
        L->rect_order = malloc(sizeof(int64_t) * (size_t)L->n);
        L->batch_hw = malloc(sizeof *L->batch_hw * (size_t)L->nb);
        if (!k || !L->rect_order || !L->batch_hw) { free(k); goto nomem; }
        for (int64_t i = 0; i < L->n; i++) k[i] = (ar_key){(double)d->h0[i] / (double)d->w0[i], i};
        qsort(k, (size_t)L->n, sizeof *k, cmp_ar);
        for (int64_t i = 0; i < L->n; i++) L->rect_order[i] = k[i].i;
        for (int64_t b = 0; b < L->nb; b++) {
            double mini = INFINITY, maxi = -INFINITY;
            for (int64_t i = b * c->batch_size; i < L->n && i < (b + 1) * c->batch_size; i++) {
                mini = fmin(mini, k[i].ar);
                maxi = fmax(maxi, k[i].ar);
            }
            double sh = 1, sw = 1;
            if (maxi < 1) sh = maxi;
            else if (mini > 1) sw = 1 / mini;
            L->batch_hw[b][0] = (int)ceil(sh * c->img_size / c->stride + c->pad) * c->stride;
            L->batch_hw[b][1] = (int)ceil(sw * c->img_size / c->stride + c->pad) * c->stride;
            if (L->batch_hw[b][0] > L->max_h) L->max_h = L->batch_hw[b][0];
            if (L->batch_hw[b][1] > L->max_w) L->max_w = L->batch_hw[b][1];
        }
        free(k);
    }
    if (c->cache_ram || c->cache_mb > 0) {
        L->cache = calloc((size_t)L->n, sizeof *L->cache);
        if (!L->cache) goto nomem;
    }
    L->slots = calloc((size_t)L->K, sizeof *L->slots);
    if (!L->slots) goto nomem;
    for (int k = 0; k < L->K; k++) {
        slot *S = &L->slots[k];
        size_t B = (size_t)c->batch_size;
        S->b.images = ot_be_host_alloc(L->be, sizeof(float) * B * 3 * (size_t)L->max_w * L->max_h);
        S->b.sample = calloc(B, sizeof(int64_t));
        S->b.shapes = calloc(B, sizeof(ot_sample_shape));
        S->rows = calloc(B, sizeof(float *));
        S->nrows = calloc(B, sizeof(int));
        S->rowcap = calloc(B, sizeof(int));
        S->batch = -1;
        if (!S->b.images || !S->b.sample || !S->b.shapes || !S->rows || !S->nrows || !S->rowcap) goto nomem;
    }
    L->wc = calloc((size_t)c->workers + 1, sizeof *L->wc);
    if (!L->wc) goto nomem;
    for (int t = 0; t <= c->workers; t++)
        if (!wctx_init(L, &L->wc[t])) goto nomem;
    L->th = calloc((size_t)(c->workers ? c->workers : 1), sizeof *L->th);
    if (!L->th) goto nomem;
    for (int t = 0; t < c->workers; t++) {
        void **arg = malloc(2 * sizeof(void *));
        if (!arg) break;
        arg[0] = L;
        arg[1] = &L->wc[t];
        if (pthread_create(&L->th[L->nth], NULL, worker, arg) != 0) { free(arg); break; }
        L->nth++;
    }
    if (L->nth != c->workers) { ot_loader_destroy(L); return ot_fail(err, OT_ERR_INTERNAL, "loader: cannot start %d worker threads", c->workers); }
    *out = L;
    return ot_loader_start(L, 0, err);
nomem:
    ot_loader_destroy(L);
    return ot_fail(err, OT_ERR_NOMEM, "loader: out of memory (batch %d at %d px)", c->batch_size, c->img_size);
}

ot_status ot_loader_start(ot_loader *L, int64_t epoch, ot_error *err) {
    pthread_mutex_lock(&L->mu);
    L->total_jobs = 0; /* stop handing out jobs, then wait for those running */
    while (L->busy) pthread_cond_wait(&L->cv_done, &L->mu);
    int64_t *g = L->perm ? L->perm : L->order; /* the global order */
    for (int64_t i = 0; i < L->n; i++) g[i] = L->rect_order ? L->rect_order[i] : i;
    if (L->c.shuffle) {
        ot_rng r;
        ot_rng_seed(&r, L->c.seed, (uint64_t)epoch, UINT64_MAX);
        for (int64_t i = L->n - 1; i > 0; i--) {
            int64_t j = ot_rng_below(&r, i + 1), t = g[i];
            g[i] = g[j];
            g[j] = t;
        }
    }
    if (L->perm) /* this rank's shard: positions rank, rank + world, ... of the order padded by wrapping */
        for (int64_t k = 0; k < L->ns; k++) L->order[k] = g[(L->c.rank + k * L->c.world) % L->n];
    for (int k = 0; k < L->K; k++) { L->slots[k].done = 0; L->slots[k].batch = -1; }
    L->epoch = epoch;
    L->next_job = 0;
    L->free_before = 0;
    L->consumed = 0;
    L->total_jobs = L->ns;
    pthread_cond_broadcast(&L->cv_work);
    pthread_mutex_unlock(&L->mu);
    (void)err;
    return OT_OK;
}

ot_status ot_loader_next(ot_loader *L, const ot_batch **out, ot_error *err) {
    *out = NULL;
    pthread_mutex_lock(&L->mu);
    int64_t b = L->consumed;
    if (b >= L->nb) { pthread_mutex_unlock(&L->mu); return OT_OK; }
    /* release the previous batch's slot */
    if (b > 0 && L->free_before < b) {
        L->free_before = b;
        L->slots[(b - 1) % L->K].done = 0;
        pthread_cond_broadcast(&L->cv_work);
    }
    slot *S = &L->slots[b % L->K];
    int n = (int)((b + 1) * L->c.batch_size <= L->ns ? L->c.batch_size : L->ns - b * L->c.batch_size);
    if (L->nth == 0) {
        /* no workers: build the batch here */
        while (L->next_job < (b + 1) * L->c.batch_size && L->next_job < L->total_jobs) {
            int64_t job = L->next_job++;
            pthread_mutex_unlock(&L->mu);
            run_job(L, &L->wc[L->c.workers], L->epoch, job);
            pthread_mutex_lock(&L->mu);
            S->done++;
        }
    }
    while (S->done < n) pthread_cond_wait(&L->cv_done, &L->mu);
    L->consumed = b + 1;
    pthread_mutex_unlock(&L->mu);
    /* collate: targets (image, class, cx, cy, w, h) */
    int64_t nt = 0;
    for (int j = 0; j < n; j++) nt += S->nrows[j];
    free(S->b.targets);
    S->b.targets = malloc(sizeof(float) * 6 * (size_t)(nt ? nt : 1));
    if (!S->b.targets) return ot_fail(err, OT_ERR_NOMEM, "loader: out of memory collating batch %lld", (long long)b);
    int64_t k = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < S->nrows[j]; i++, k++) {
            S->b.targets[6 * k] = (float)j;
            memcpy(S->b.targets + 6 * k + 1, S->rows[j] + 5 * i, 5 * sizeof(float));
        }
    S->b.index = b;
    S->b.n = n;
    S->b.h = L->c.rect ? L->batch_hw[b][0] : L->c.img_size;
    S->b.w = L->c.rect ? L->batch_hw[b][1] : L->c.img_size;
    S->b.n_targets = nt;
    *out = &S->b;
    return OT_OK;
}

ot_status ot_loader_sample(ot_loader *L, int64_t epoch, int64_t pos, ot_sample_out *o, ot_error *err) {
    if (pos < 0 || pos >= L->ns) return ot_fail(err, OT_ERR_INVALID, "loader: sample %lld out of range", (long long)pos);
    /* the caller's scratch; the epoch order must be the epoch's */
    if (L->epoch != epoch) OT_TRY(ot_loader_start(L, epoch, err));
    wctx *W = &L->wc[L->c.workers];
    int ow, oh;
    bool flips[2], hsv;
    double gains[3];
    ot_sample_shape sh;
    int n = build_sample(L, W, epoch, pos, &ow, &oh, flips, &hsv, gains, &sh);
    if (hsv) ot_augment_hsv(W->a, (int64_t)ow * oh, gains[0], gains[1], gains[2]);
    o->w = ow;
    o->h = oh;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int sy = flips[1] ? oh - 1 - y : y, sx = flips[0] ? ow - 1 - x : x;
            memcpy(o->hwc + ((size_t)y * ow + x) * 3, W->a + ((size_t)sy * ow + sx) * 3, 3);
        }
    if (n > o->cap) n = o->cap;
    boxes_to_rows(W->box, n, ow, oh, flips, o->rows);
    o->n = n;
    return OT_OK;
}
