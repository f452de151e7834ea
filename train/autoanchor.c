/* autoanchor.c: Ultralytics YOLOv5 v7.0 utils/autoanchor.py check_anchors,
 * kmean_anchors and check_anchor_order (see autoanchor.h), with
 * scipy.cluster.vq.kmeans written out as a small Lloyd's iteration. */
#include "train/autoanchor.h"
#include "train/augment.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "AutoAnchor: "
#define KMEANS_RESTARTS 30     /* kmeans(..., iter=30) */
#define KMEANS_THRESH 1e-5     /* scipy's default thresh */
#define KMEANS_MAX_LLOYD 1000  /* a guard only: Lloyd's iteration settles long before */

/* ---- the ratio metric (float32, as torch) ---- */

/* x = min(r, 1/r) over w and h for one box and one anchor */
static inline float ratio_x(const float *wh, const float *a) {
    float rw = wh[0] / a[0], rh = wh[1] / a[1];
    float xw = fminf(rw, 1.0f / rw), xh = fminf(rh, 1.0f / rh);
    return fminf(xw, xh);
}

ot_anchor_fit ot_anchor_metric(const float *wh, int64_t n, const float *anchors, int k, double thr) {
    ot_anchor_fit f = {0, 0};
    if (n <= 0 || k <= 0) return f;
    const float t = (float)(1.0 / thr); /* torch compares with the scalar as float32 */
    int64_t above = 0, good = 0;
    for (int64_t i = 0; i < n; i++) {
        float best = -INFINITY;
        for (int j = 0; j < k; j++) {
            float x = ratio_x(wh + 2 * i, anchors + 2 * j);
            above += x > t;
            if (x > best) best = x;
        }
        good += best > t;
    }
    f.bpr = (double)good / (double)n;
    f.aat = (double)above / (double)n;
    return f;
}

/* anchor_fitness: mean(best * (best > thr)) */
static double fitness(const float *wh, int64_t n, const float *a, int k, float t) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        float best = -INFINITY;
        for (int j = 0; j < k; j++) {
            float x = ratio_x(wh + 2 * i, a + 2 * j);
            if (x > best) best = x;
        }
        if (best > t) s += best;
    }
    return n ? s / (double)n : 0.0;
}

/* ---- label sizes ---- */

static int64_t count_boxes(const ot_dataset *d) {
    int64_t n = 0;
    for (int64_t i = 0; i < d->n; i++) n += d->n_labels[i];
    return n;
}

/* shapes = img * (w0, h0) / max(w0, h0) [* uniform(0.9, 1.1)]; wh = label w, h * that, float64 */
static ot_status label_wh_f64(const ot_dataset *d, int img, const uint64_t *seed, double **wh, int64_t *n,
                              ot_error *err) {
    *wh = NULL;
    *n = count_boxes(d);
    if (*n == 0) return OT_OK;
    double *o = malloc((size_t)*n * 2 * sizeof *o);
    if (!o) return ot_fail(err, OT_ERR_NOMEM, "autoanchor: out of memory");
    ot_rng r;
    if (seed) ot_rng_seed(&r, *seed, 0, 0);
    int64_t k = 0;
    for (int64_t i = 0; i < d->n; i++) {
        double w0 = d->w0[i], h0 = d->h0[i], mx = w0 > h0 ? w0 : h0;
        double sw = (double)img * w0 / mx, sh = (double)img * h0 / mx;
        if (seed) {
            double s = ot_rng_range(&r, 0.9, 1.1); /* drawn for every image, as np.random.uniform(size=(n, 1)) */
            sw *= s;
            sh *= s;
        }
        const float *l = d->labels[i];
        for (int j = 0; j < d->n_labels[i]; j++, k++) {
            o[2 * k] = (double)l[5 * j + 3] * sw;
            o[2 * k + 1] = (double)l[5 * j + 4] * sh;
        }
    }
    *wh = o;
    return OT_OK;
}

ot_status ot_anchor_label_wh(const ot_dataset *d, int img, uint64_t seed, float **wh, int64_t *n, ot_error *err) {
    *wh = NULL;
    *n = 0;
    if (img < 1) return ot_fail(err, OT_ERR_INVALID, "autoanchor: image size must be >= 1 (got %d)", img);
    double *w64;
    int64_t m;
    OT_TRY(label_wh_f64(d, img, &seed, &w64, &m, err));
    if (m == 0) return OT_OK;
    float *o = malloc((size_t)m * 2 * sizeof *o);
    if (!o) { free(w64); return ot_fail(err, OT_ERR_NOMEM, "autoanchor: out of memory"); }
    for (int64_t i = 0; i < 2 * m; i++) o[i] = (float)w64[i]; /* torch.tensor(...).float() */
    free(w64);
    *wh = o;
    *n = m;
    return OT_OK;
}

/* ---- k-means (scipy.cluster.vq.kmeans with an integer k) ---- */

/* _kmeans from one guess: Lloyd's iteration while the mean distance improves
 * by more than the threshold; clusters without members are dropped. Returns
 * the number of codes left; *avg the mean distance of the last assignment. */
static int lloyd(const double *obs, int64_t n, double *book, int k, int *code, double *sum, int64_t *cnt,
                 double *avg) {
    double prev = INFINITY, diff = INFINITY, cur = INFINITY;
    for (int it = 0; diff > KMEANS_THRESH && it < KMEANS_MAX_LLOYD && k > 0; it++) {
        double dsum = 0;
        for (int64_t i = 0; i < n; i++) { /* vq: nearest code, the first of equals */
            double bd = INFINITY;
            int bj = 0;
            for (int j = 0; j < k; j++) {
                double dx = obs[2 * i] - book[2 * j], dy = obs[2 * i + 1] - book[2 * j + 1];
                double dd = dx * dx + dy * dy;
                if (dd < bd) { bd = dd; bj = j; }
            }
            code[i] = bj;
            dsum += sqrt(bd);
        }
        cur = dsum / (double)n;
        memset(sum, 0, (size_t)k * 2 * sizeof *sum); /* update_cluster_means */
        memset(cnt, 0, (size_t)k * sizeof *cnt);
        for (int64_t i = 0; i < n; i++) {
            sum[2 * code[i]] += obs[2 * i];
            sum[2 * code[i] + 1] += obs[2 * i + 1];
            cnt[code[i]]++;
        }
        int kk = 0;
        for (int j = 0; j < k; j++) {
            if (!cnt[j]) continue; /* code_book[has_members] */
            book[2 * kk] = sum[2 * j] / (double)cnt[j];
            book[2 * kk + 1] = sum[2 * j + 1] / (double)cnt[j];
            kk++;
        }
        k = kk;
        diff = prev - cur;
        prev = cur;
    }
    *avg = cur;
    return k;
}

/* kmeans(obs, k, iter=30): the codebook of the restart with the lowest mean
 * distance, each restart from k distinct observations; *nbest its size. */
static ot_status kmeans(const double *obs, int64_t n, int k, ot_rng *r, double *best_book, ot_error *err, int *nbest) {
    double *book = malloc((size_t)k * 2 * sizeof *book), *sum = malloc((size_t)k * 2 * sizeof *sum);
    int64_t *cnt = malloc((size_t)k * sizeof *cnt), *idx = malloc((size_t)n * sizeof *idx);
    int *code = malloc((size_t)n * sizeof *code);
    if (!book || !sum || !cnt || !idx || !code) {
        free(book); free(sum); free(cnt); free(idx); free(code);
        return ot_fail(err, OT_ERR_NOMEM, "autoanchor: out of memory");
    }
    double best = INFINITY;
    *nbest = 0;
    for (int t = 0; t < KMEANS_RESTARTS; t++) {
        /* rng.choice(n, k, replace=False): a partial Fisher-Yates shuffle */
        for (int64_t i = 0; i < n; i++) idx[i] = i;
        for (int j = 0; j < k; j++) {
            int64_t s = j + ot_rng_below(r, n - j), tmp = idx[j];
            idx[j] = idx[s];
            idx[s] = tmp;
            book[2 * j] = obs[2 * idx[j]];
            book[2 * j + 1] = obs[2 * idx[j] + 1];
        }
        double avg;
        int kk = lloyd(obs, n, book, k, code, sum, cnt, &avg);
        if (avg < best) {
            best = avg;
            *nbest = kk;
            memcpy(best_book, book, (size_t)kk * 2 * sizeof *book);
        }
    }
    free(book); free(sum); free(cnt); free(idx); free(code);
    return OT_OK;
}

/* ---- kmean_anchors ---- */

static double rng_normal(ot_rng *r) { /* Box-Muller */
    double u1 = ot_rng_uniform(r), u2 = ot_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

typedef struct area_idx { double area; int i; } area_idx;
static int cmp_area(const void *a, const void *b) {
    const area_idx *x = a, *y = b;
    if (x->area != y->area) return x->area < y->area ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* k = k[np.argsort(k.prod(1))] */
static void sort_by_area(double *k, int n) {
    area_idx *o = malloc((size_t)n * sizeof *o);
    double *c = malloc((size_t)n * 2 * sizeof *c);
    if (!o || !c) { free(o); free(c); return; } /* leaves the order as it is */
    for (int i = 0; i < n; i++) o[i] = (area_idx){k[2 * i] * k[2 * i + 1], i};
    qsort(o, (size_t)n, sizeof *o, cmp_area);
    for (int i = 0; i < n; i++) { c[2 * i] = k[2 * o[i].i]; c[2 * i + 1] = k[2 * o[i].i + 1]; }
    memcpy(k, c, (size_t)n * 2 * sizeof *c);
    free(o);
    free(c);
}

/* print_results: the two summary lines of kmean_anchors on wh0 */
static void print_results(FILE *log, const double *k, int n, const float *wh0, int64_t m, float t, int img) {
    if (!log) return;
    float *a = malloc((size_t)n * 2 * sizeof *a);
    if (!a) return;
    for (int i = 0; i < 2 * n; i++) a[i] = (float)k[i];
    double xsum = 0, bsum = 0, psum = 0;
    int64_t good = 0, above = 0;
    for (int64_t i = 0; i < m; i++) {
        float best = -INFINITY;
        for (int j = 0; j < n; j++) {
            float x = ratio_x(wh0 + 2 * i, a + 2 * j);
            xsum += x;
            if (x > t) { above++; psum += x; }
            if (x > best) best = x;
        }
        bsum += best;
        good += best > t;
    }
    double mm = m ? (double)m : NAN;
    fprintf(log, PREFIX "thr=%.2f: %.4f best possible recall, %.2f anchors past thr\n", (double)t, good / mm,
            above / (mm * n) * n);
    fprintf(log, PREFIX "n=%d, img_size=%d, metric_all=%.3f/%.3f-mean/best, past_thr=%.3f-mean: ", n, img,
            xsum / (mm * n), bsum / mm, above ? psum / (double)above : NAN);
    for (int i = 0; i < n; i++) fprintf(log, "%s%d,%d", i ? ", " : "", (int)rint(k[2 * i]), (int)rint(k[2 * i + 1]));
    fputc('\n', log);
    free(a);
}

ot_status ot_kmean_anchors(const ot_dataset *d, int n, int img, double thr, int gen, uint64_t seed, FILE *log,
                           float *anchors, ot_error *err) {
    if (n < 1 || img < 1 || !(thr > 0) || gen < 0)
        return ot_fail(err, OT_ERR_INVALID, "kmean_anchors: need n >= 1, img >= 1, thr > 0, gen >= 0 (got %d, %d, %g, %d)",
                       n, img, thr, gen);
    double *w64;
    int64_t m0;
    OT_TRY(label_wh_f64(d, img, NULL, &w64, &m0, err));
    ot_status st = OT_ERR_NOMEM;
    float *wh0 = malloc((size_t)(m0 ? m0 : 1) * 2 * sizeof *wh0), *wh = malloc((size_t)(m0 ? m0 : 1) * 2 * sizeof *wh);
    double *obs = malloc((size_t)(m0 ? m0 : 1) * 2 * sizeof *obs), *k = malloc((size_t)n * 2 * sizeof *k);
    double *book = malloc((size_t)n * 2 * sizeof *book), *kg = malloc((size_t)n * 2 * sizeof *kg);
    double *v = malloc((size_t)n * 2 * sizeof *v);
    float *kf = malloc((size_t)n * 2 * sizeof *kf);
    if (!wh0 || !wh || !obs || !k || !book || !kg || !v || !kf) goto done;
    const float t = (float)(1.0 / thr);
    ot_rng r;
    ot_rng_seed(&r, seed, 1, 0);

    /* filter */
    int64_t small = 0, m = 0;
    for (int64_t i = 0; i < m0; i++) {
        double w = w64[2 * i], h = w64[2 * i + 1];
        wh0[2 * i] = (float)w;
        wh0[2 * i + 1] = (float)h;
        small += w < 3.0 || h < 3.0;
        if (w >= 2.0 || h >= 2.0) { wh[2 * m] = (float)w; wh[2 * m + 1] = (float)h; m++; }
    }
    if (small && log)
        fprintf(log, PREFIX "WARNING ⚠️ Extremely small objects found: %lld of %lld labels are <3 pixels in size\n",
                (long long)small, (long long)m0);

    /* k-means on whitened sizes */
    if (log) fprintf(log, PREFIX "Running kmeans for %d anchors on %lld points...\n", n, (long long)m);
    bool ok = n <= m;
    float s[2] = {0, 0};
    if (ok) {
        for (int c = 0; c < 2; c++) { /* wh.std(0): population deviation */
            double mean = 0, var = 0;
            for (int64_t i = 0; i < m; i++) mean += wh[2 * i + c];
            mean /= (double)m;
            for (int64_t i = 0; i < m; i++) var += (wh[2 * i + c] - mean) * (wh[2 * i + c] - mean);
            s[c] = (float)sqrt(var / (double)m);
            ok &= s[c] > 0; /* wh / 0 is not finite: scipy refuses it */
        }
    }
    if (ok) {
        for (int64_t i = 0; i < m; i++) {
            obs[2 * i] = (double)(wh[2 * i] / s[0]);
            obs[2 * i + 1] = (double)(wh[2 * i + 1] / s[1]);
        }
        int got = 0;
        if ((st = kmeans(obs, m, n, &r, book, err, &got)) != OT_OK) goto done;
        st = OT_ERR_NOMEM;
        ok = got == n; /* kmeans may return fewer points than requested */
        for (int j = 0; ok && j < n; j++) { k[2 * j] = book[2 * j] * s[0]; k[2 * j + 1] = book[2 * j + 1] * s[1]; }
    }
    if (!ok) {
        if (log) fprintf(log, PREFIX "WARNING ⚠️ switching strategies from kmeans to random init\n");
        for (int i = 0; i < 2 * n; i++) k[i] = ot_rng_uniform(&r);
        for (int i = 1; i < 2 * n; i++) /* np.sort, then reshape(n, 2) * img_size */
            for (int j = i; j > 0 && k[j - 1] > k[j]; j--) { double x = k[j]; k[j] = k[j - 1]; k[j - 1] = x; }
        for (int i = 0; i < 2 * n; i++) k[i] *= img;
    }
    sort_by_area(k, n);

    /* evolve */
    for (int i = 0; i < 2 * n; i++) kf[i] = (float)k[i];
    double f = fitness(wh, m, kf, n, t);
    for (int g = 0; g < gen; g++) {
        bool same = true;
        while (same) { /* mutate until a change occurs */
            double rr = ot_rng_uniform(&r);
            for (int i = 0; i < 2 * n; i++) {
                double x = (ot_rng_uniform(&r) < 0.9) * rr * rng_normal(&r) * 0.1 + 1.0;
                v[i] = x < 0.3 ? 0.3 : x > 3.0 ? 3.0 : x;
                same &= v[i] == 1.0;
            }
        }
        for (int i = 0; i < 2 * n; i++) {
            kg[i] = k[i] * v[i];
            if (kg[i] < 2.0) kg[i] = 2.0;
            kf[i] = (float)kg[i];
        }
        double fg = fitness(wh, m, kf, n, t);
        if (fg > f) {
            f = fg;
            memcpy(k, kg, (size_t)n * 2 * sizeof *k);
        }
    }
    if (log) fprintf(log, PREFIX "Evolving anchors with Genetic Algorithm: fitness = %.4f\n", f);
    sort_by_area(k, n);
    print_results(log, k, n, wh0, m0, t, img);
    for (int i = 0; i < 2 * n; i++) anchors[i] = (float)k[i];
    st = OT_OK;
done:
    free(w64); free(wh0); free(wh); free(obs); free(k); free(book); free(kg); free(v); free(kf);
    if (st == OT_ERR_NOMEM && (!err || !err->msg[0])) return ot_fail(err, OT_ERR_NOMEM, "kmean_anchors: out of memory");
    return st;
}

/* ---- check_anchors ---- */

ot_status ot_autoanchor(const ot_dataset *d, int img, float *anchors, int nl, int na, double thr, uint64_t seed,
                        FILE *log, bool *changed, ot_anchor_fit *before, ot_anchor_fit *after, ot_error *err) {
    if (changed) *changed = false;
    if (nl < 1 || na < 1 || !(thr > 0) || img < 1)
        return ot_fail(err, OT_ERR_INVALID, "autoanchor: need nl >= 1, na >= 1, thr > 0, img >= 1 (got %d, %d, %g, %d)",
                       nl, na, thr, img);
    const int n = nl * na;
    float *wh;
    int64_t m;
    OT_TRY(ot_anchor_label_wh(d, img, seed, &wh, &m, err));
    ot_anchor_fit b = ot_anchor_metric(wh, m, anchors, n, thr), a = b;
    if (m == 0) {
        if (log) fprintf(log, PREFIX "no labels in the dataset, anchors left as they are\n");
    } else if (log) {
        fprintf(log, "\n" PREFIX "%.2f anchors/target, %.3f Best Possible Recall (BPR). ", b.aat, b.bpr);
    }
    if (m > 0 && b.bpr > 0.98) {
        if (log) fprintf(log, "Current anchors are a good fit to dataset ✅\n");
    } else if (m > 0) {
        if (log) fprintf(log, "Anchors are a poor fit to dataset ⚠️, attempting to improve...\n");
        float *k = malloc((size_t)n * 2 * sizeof *k);
        if (!k) { free(wh); return ot_fail(err, OT_ERR_NOMEM, "autoanchor: out of memory"); }
        ot_status st = ot_kmean_anchors(d, n, img, thr, 1000, seed, log, k, err);
        if (st != OT_OK) { free(k); free(wh); return st; }
        ot_anchor_fit nf = ot_anchor_metric(wh, m, k, n, thr);
        if (nf.bpr > b.bpr) {
            /* check_anchor_order: mean anchor area per layer against the (increasing) strides */
            double a0 = 0, a1 = 0;
            for (int j = 0; j < na; j++) {
                a0 += (double)k[2 * j] * k[2 * j + 1];
                a1 += (double)k[2 * ((nl - 1) * na + j)] * k[2 * ((nl - 1) * na + j) + 1];
            }
            if (a1 - a0 < 0) {
                if (log) fprintf(log, PREFIX "Reversing anchor order\n");
                for (int l = 0; l < nl; l++) memcpy(anchors + 2 * na * l, k + 2 * na * (nl - 1 - l), (size_t)na * 2 * sizeof *k);
            } else {
                memcpy(anchors, k, (size_t)n * 2 * sizeof *k);
            }
            a = nf;
            if (changed) *changed = true;
            if (log) fprintf(log, PREFIX "Done ✅ (optional: update model *.yaml to use these anchors in the future)\n");
        } else if (log) {
            fprintf(log, PREFIX "Done ⚠️ (original anchors better than new anchors, proceeding with original anchors)\n");
        }
        free(k);
    }
    free(wh);
    if (before) *before = b;
    if (after) *after = a;
    return OT_OK;
}
