/* plots.c: confusion matrix, results.png and the PR / metric-confidence
 * curves (see plots.h), drawn with cairo. A small plotting layer (axes with
 * 1-2-2.5-5 ticks, grid, lines, markers, legends, a heatmap with a colour
 * bar) sized for the fixed pictures here; the numbers are Ultralytics'
 * (utils/metrics.py ConfusionMatrix, ap_per_class, smooth; utils/plots.py
 * plot_results with scipy's gaussian_filter1d). */
#include "train/plots.h"
#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FONT "DejaVu Sans"

/* ================= confusion matrix (ConfusionMatrix) ================= */

ot_status ot_confusion_init(ot_confusion *c, int nc, ot_error *err) {
    c->nc = 0;
    c->m = NULL;
    if (nc < 1 || nc > 100000) return ot_fail(err, OT_ERR_INVALID, "confusion matrix: nc must be 1..100000 (got %d)", nc);
    c->m = calloc((size_t)(nc + 1) * (size_t)(nc + 1), sizeof *c->m);
    if (!c->m) return ot_fail(err, OT_ERR_NOMEM, "confusion matrix: out of memory for %d classes", nc);
    c->nc = nc;
    return OT_OK;
}

void ot_confusion_free(ot_confusion *c) {
    if (!c) return;
    free(c->m);
    c->m = NULL;
    c->nc = 0;
}

/* box_iou(labels[:, 1:], detections[:, :4]) element, float32 as torch */
static float iou_f32(const float *l, const float *d) {
    float wx = fminf(l[2], d[2]) - fmaxf(l[0], d[0]);
    float wy = fminf(l[3], d[3]) - fmaxf(l[1], d[1]);
    if (wx < 0) wx = 0;
    if (wy < 0) wy = 0;
    float inter = wx * wy;
    float a1 = (l[2] - l[0]) * (l[3] - l[1]), a2 = (d[2] - d[0]) * (d[3] - d[1]);
    return inter / (a1 + a2 - inter + 1e-7f);
}

void ot_confusion_process_batch(ot_confusion *c, const float *dets, int n, const float *labels, int m) {
    if (!c->m || m < 0 || n < 0) return;
    const int nc = c->nc, N = nc + 1;
    const float conf = 0.25f, iou_thres = 0.45f;
    int *keep = malloc((size_t)(n ? n : 1) * sizeof *keep);
    int *dbest = malloc((size_t)(n ? n : 1) * sizeof *dbest), *lmatch = malloc((size_t)(m ? m : 1) * sizeof *lmatch);
    float *iou = malloc((size_t)(n ? n : 1) * (size_t)(m ? m : 1) * sizeof *iou);
    if (!keep || !dbest || !lmatch || !iou) goto done; /* out of memory: nothing counted */
    int nk = 0;
    for (int j = 0; j < n; j++)
        if (dets[6 * j + 4] > conf) keep[nk++] = j;
    bool any = false;
    for (int i = 0; i < m; i++)
        for (int k = 0; k < nk; k++) {
            float v = iou_f32(labels + 5 * i + 1, dets + 6 * keep[k]);
            iou[(size_t)i * nk + k] = v;
            any |= v > iou_thres;
        }
    /* matches: each detection its best label (ties: the later label), then each
     * label its best detection among those (ties: the later detection) */
    for (int k = 0; k < nk; k++) {
        dbest[k] = -1;
        for (int i = 0; i < m; i++) {
            float v = iou[(size_t)i * nk + k];
            if (v > iou_thres && (dbest[k] < 0 || v >= iou[(size_t)dbest[k] * nk + k])) dbest[k] = i;
        }
    }
    for (int i = 0; i < m; i++) {
        lmatch[i] = -1;
        for (int k = 0; k < nk; k++)
            if (dbest[k] == i && (lmatch[i] < 0 || iou[(size_t)i * nk + k] >= iou[(size_t)i * nk + lmatch[i]])) lmatch[i] = k;
    }
    for (int i = 0; i < m; i++) {
        int gc = (int)labels[5 * i];
        if (gc < 0 || gc >= nc) continue;
        int dc = nc;
        if (lmatch[i] >= 0) {
            dc = (int)dets[6 * keep[lmatch[i]] + 5];
            if (dc < 0 || dc >= nc) continue;
        }
        c->m[(size_t)dc * N + gc] += 1; /* correct, or true background (a missed label) */
    }
    if (any) /* Ultralytics counts unmatched detections only when something matched */
        for (int k = 0; k < nk; k++) {
            bool matched = false;
            for (int i = 0; i < m && !matched; i++) matched = lmatch[i] == k;
            int dc = (int)dets[6 * keep[k] + 5];
            if (!matched && dc >= 0 && dc < nc) c->m[(size_t)dc * N + nc] += 1; /* predicted background */
        }
done:
    free(keep);
    free(dbest);
    free(lmatch);
    free(iou);
}

void ot_confusion_tp_fp(const ot_confusion *c, double *tp, double *fp) {
    const int nc = c->nc, N = nc + 1;
    for (int i = 0; i < nc; i++) {
        double d = c->m[(size_t)i * N + i], s = 0;
        for (int j = 0; j < N; j++) s += c->m[(size_t)i * N + j];
        if (tp) tp[i] = d;
        if (fp) fp[i] = s - d;
    }
}

/* ================= the plotting layer ================= */

typedef struct rgb { double r, g, b; } rgb;

/* matplotlib's default colour cycle (tab10) */
static const rgb TAB10[10] = {{0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173},
                              {0.839, 0.153, 0.157}, {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294},
                              {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498}, {0.737, 0.741, 0.133},
                              {0.090, 0.745, 0.812}};
static const rgb BLACK = {0.1, 0.1, 0.1}, GRID = {0.87, 0.87, 0.87}, GREY = {0.5, 0.5, 0.5}, BLUE = {0, 0, 1};

static void set_rgb(cairo_t *cr, rgb c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }

static void font(cairo_t *cr, double size, bool bold) {
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

static bool utf8_ok(const char *s);
static double text_w(cairo_t *cr, const char *s) {
    if (!utf8_ok(s)) return 0.6 * 14 * (double)strlen(s); /* drawn with '?' for bad bytes: about this wide */
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    return e.x_advance;
}

static bool utf8_ok(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = *p < 0x80 ? 0 : (*p >> 5) == 6 ? 1 : (*p >> 4) == 14 ? 2 : (*p >> 3) == 30 ? 3 : -1;
        if (n < 0 || (n == 1 && *p < 0xc2)) return false;
        p++;
        for (int k = 0; k < n; k++, p++)
            if ((*p & 0xc0) != 0x80) return false;
    }
    return true;
}

/* Text anchored at (x, y): ax, ay are the fractions of its width and of the
 * font's height (ascent + descent) left of / above the anchor; angle in
 * radians (counter-clockwise positive, as seen). Uses the current font. */
static void text(cairo_t *cr, double x, double y, const char *s, double ax, double ay, double angle) {
    char safe[256];
    if (!utf8_ok(s)) { /* cairo refuses invalid UTF-8 (and stops drawing): show '?' for bad bytes */
        size_t k = 0;
        for (const unsigned char *p = (const unsigned char *)s; *p && k < sizeof safe - 1; p++) safe[k++] = *p < 0x80 ? (char)*p : '?';
        safe[k] = 0;
        s = safe;
    }
    cairo_font_extents_t fe;
    cairo_font_extents(cr, &fe);
    double w = text_w(cr, s);
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, -angle);
    cairo_move_to(cr, -ax * w, -ay * (fe.ascent + fe.descent) + fe.ascent);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

typedef struct axes {
    double L, T, W, H;     /* plot area in pixels */
    double x0, x1, y0, y1; /* data limits */
} axes;

static double AX(const axes *a, double x) { return a->L + (x - a->x0) / (a->x1 - a->x0) * a->W; }
static double AY(const axes *a, double y) { return a->T + a->H - (y - a->y0) / (a->y1 - a->y0) * a->H; }

#define MAXT 40
/* Ticks inside [lo, hi] at multiples of a 1, 2, 2.5, 5 x 10^k step, at most maxn
 * of them (integer steps only when integer). Returns the count; *dec the decimals. */
static int nice_ticks(double lo, double hi, int maxn, bool integer, double *t, int *dec) {
    *dec = 0;
    if (!(hi > lo) || !isfinite(lo) || !isfinite(hi)) return 0;
    static const double mult[4] = {1, 2, 2.5, 5};
    double step = 0;
    for (int e = (int)floor(log10((hi - lo) / maxn)) - 1; step == 0 && e < 400; e++)
        for (int k = 0; k < 4 && step == 0; k++) {
            double s = mult[k] * pow(10.0, e);
            if (integer && s < 1) continue;
            if (integer && k == 2 && e == 0) continue; /* 2.5 */
            if (floor(hi / s) - ceil(lo / s) + 1 <= maxn) step = s;
        }
    if (step == 0) return 0;
    int n = 0;
    for (double k = ceil(lo / step - 1e-9); k <= floor(hi / step + 1e-9) && n < MAXT; k++) {
        double v = k * step;
        t[n++] = fabs(v) < step * 1e-9 ? 0.0 : v;
    }
    for (int d = 0; d <= 10; d++) { /* decimals that show the step exactly */
        double s = step * pow(10.0, d);
        *dec = d;
        if (fabs(s - rint(s)) < 1e-6 * s) break;
    }
    return n;
}

/* matplotlib-like automatic limits: data range with 5 % margins */
static void auto_limits(const double *v, int n, double *lo, double *hi) {
    double a = INFINITY, b = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) { a = fmin(a, v[i]); b = fmax(b, v[i]); }
    if (!(a <= b)) { a = 0; b = 1; }
    if (b - a <= 1e-9 * (fabs(a) + fabs(b))) { /* one value (smoothing may move it by an ulp) */
        a = b = (a + b) / 2;
        double d = a == 0 ? 0.5 : fabs(a) * 0.1;
        a -= d;
        b += d;
    }
    double r = b - a;
    *lo = a - 0.05 * r;
    *hi = b + 0.05 * r;
}

/* grid, frame, ticks, tick labels, title and axis labels */
static void draw_axes(cairo_t *cr, const axes *a, const char *title, const char *xlabel, const char *ylabel,
                      double fs, bool xint) {
    double xt[MAXT], yt[MAXT];
    int xd, yd;
    int nx = nice_ticks(a->x0, a->x1, a->W > 400 ? 10 : 6, xint, xt, &xd);
    int ny = nice_ticks(a->y0, a->y1, a->H > 400 ? 10 : 7, false, yt, &yd);
    cairo_set_line_width(cr, 1);
    set_rgb(cr, GRID);
    for (int i = 0; i < nx; i++) {
        double x = round(AX(a, xt[i])) + 0.5;
        cairo_move_to(cr, x, a->T);
        cairo_line_to(cr, x, a->T + a->H);
    }
    for (int i = 0; i < ny; i++) {
        double y = round(AY(a, yt[i])) + 0.5;
        cairo_move_to(cr, a->L, y);
        cairo_line_to(cr, a->L + a->W, y);
    }
    cairo_stroke(cr);
    set_rgb(cr, BLACK);
    cairo_set_line_width(cr, 1.2);
    cairo_rectangle(cr, round(a->L) + 0.5, round(a->T) + 0.5, round(a->W), round(a->H));
    for (int i = 0; i < nx; i++) {
        double x = round(AX(a, xt[i])) + 0.5;
        cairo_move_to(cr, x, a->T + a->H);
        cairo_line_to(cr, x, a->T + a->H + 5);
    }
    for (int i = 0; i < ny; i++) {
        double y = round(AY(a, yt[i])) + 0.5;
        cairo_move_to(cr, a->L - 5, y);
        cairo_line_to(cr, a->L, y);
    }
    cairo_stroke(cr);
    font(cr, fs, false);
    char b[64];
    for (int i = 0; i < nx; i++) {
        snprintf(b, sizeof b, "%.*f", xd, xt[i]);
        text(cr, AX(a, xt[i]), a->T + a->H + 8, b, 0.5, 0, 0);
    }
    for (int i = 0; i < ny; i++) {
        snprintf(b, sizeof b, "%.*f", yd, yt[i]);
        text(cr, a->L - 8, AY(a, yt[i]), b, 1, 0.5, 0);
    }
    if (xlabel) {
        font(cr, fs * 1.15, false);
        text(cr, a->L + a->W / 2, a->T + a->H + 10 + fs * 1.5, xlabel, 0.5, 0, 0);
    }
    if (ylabel) {
        font(cr, fs * 1.15, false);
        double w = 0;
        font(cr, fs, false);
        for (int i = 0; i < ny; i++) {
            snprintf(b, sizeof b, "%.*f", yd, yt[i]);
            w = fmax(w, text_w(cr, b));
        }
        font(cr, fs * 1.15, false);
        text(cr, a->L - 14 - w, a->T + a->H / 2, ylabel, 0.5, 1, M_PI / 2);
    }
    if (title) {
        font(cr, fs * 1.25, false);
        text(cr, a->L + a->W / 2, a->T - 8, title, 0.5, 1, 0);
    }
}

/* a polyline through the finite points, clipped to the axes; dashed: dotted ':' */
static void plot_line(cairo_t *cr, const axes *a, const double *x, const double *y, int n, rgb c, double lw,
                      bool dotted) {
    cairo_save(cr);
    cairo_rectangle(cr, a->L, a->T, a->W, a->H);
    cairo_clip(cr);
    set_rgb(cr, c);
    cairo_set_line_width(cr, lw);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    if (dotted) {
        double d[2] = {0.01, 2 * lw};
        cairo_set_dash(cr, d, 2, 0);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    }
    bool pen = false;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) { pen = false; continue; }
        if (pen) cairo_line_to(cr, AX(a, x[i]), AY(a, y[i]));
        else cairo_move_to(cr, AX(a, x[i]), AY(a, y[i]));
        pen = true;
    }
    cairo_stroke(cr);
    cairo_restore(cr);
}

static void plot_markers(cairo_t *cr, const axes *a, const double *x, const double *y, int n, rgb c, double r) {
    cairo_save(cr);
    cairo_rectangle(cr, a->L - r, a->T - r, a->W + 2 * r, a->H + 2 * r);
    cairo_clip(cr);
    set_rgb(cr, c);
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        cairo_new_sub_path(cr);
        cairo_arc(cr, AX(a, x[i]), AY(a, y[i]), r, 0, 2 * M_PI);
    }
    cairo_fill(cr);
    cairo_restore(cr);
}

typedef struct legend_item { const char *label; rgb c; double lw; bool dotted, marker; } legend_item;

static double legend_width(cairo_t *cr, const legend_item *it, int n, double fs) {
    font(cr, fs, false);
    double w = 0;
    for (int i = 0; i < n; i++) w = fmax(w, text_w(cr, it[i].label));
    return w + 3.6 * fs;
}

/* a framed legend with its top-left (anchor_right: top-right) at (x, y) */
static void legend(cairo_t *cr, double x, double y, bool anchor_right, const legend_item *it, int n, double fs) {
    if (n <= 0) return;
    double w = legend_width(cr, it, n, fs), row = fs * 1.45, h = n * row + 0.6 * fs;
    if (anchor_right) x -= w;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_rectangle(cr, x, y, w, h);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    font(cr, fs, false);
    for (int i = 0; i < n; i++) {
        double cy = y + 0.3 * fs + row * (i + 0.5);
        cairo_save(cr);
        set_rgb(cr, it[i].c);
        cairo_set_line_width(cr, it[i].lw);
        if (it[i].dotted) {
            double d[2] = {0.01, 2 * it[i].lw};
            cairo_set_dash(cr, d, 2, 0);
            cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
        }
        cairo_move_to(cr, x + 0.5 * fs, cy);
        cairo_line_to(cr, x + 2.5 * fs, cy);
        cairo_stroke(cr);
        if (it[i].marker) {
            cairo_arc(cr, x + 1.5 * fs, cy, 3.5, 0, 2 * M_PI);
            cairo_fill(cr);
        }
        cairo_restore(cr);
        set_rgb(cr, BLACK);
        text(cr, x + 3.0 * fs, cy, it[i].label, 0, 0.5, 0);
    }
}

/* a white canvas */
static cairo_t *canvas(int w, int h, cairo_surface_t **sf) {
    *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_t *cr = cairo_create(*sf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    return cr;
}

/* write to a temporary name next to the target, then rename into place */
static ot_status finish(cairo_t *cr, cairo_surface_t *sf, const char *path, ot_error *err) {
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_flush(sf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(sf);
        return ot_fail(err, OT_ERR_INTERNAL, "%s: drawing failed (%s)", path, cairo_status_to_string(cs));
    }
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) { cairo_surface_destroy(sf); return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); }
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    cs = cairo_surface_write_to_png(sf, tmp);
    cairo_surface_destroy(sf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        remove(tmp);
        free(tmp);
        return ot_fail(err, OT_ERR_IO, "%s: cannot write the PNG (%s)", path, cairo_status_to_string(cs));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        free(tmp);
        return ot_fail(err, OT_ERR_IO, "%s: cannot write the PNG (%s)", path, strerror(e));
    }
    free(tmp);
    return OT_OK;
}

/* ================= confusion matrix picture ================= */

/* matplotlib's 'Blues' (the ColorBrewer 9-class Blues), t in 0..1, 256 levels */
static rgb blues(double t) {
    static const unsigned hex[9] = {0xf7fbff, 0xdeebf7, 0xc6dbef, 0x9ecae1, 0x6baed6,
                                    0x4292c6, 0x2171b5, 0x08519c, 0x08306b};
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    t = floor(t * 255.999) / 255.0;
    double p = t * 8;
    int i = (int)p;
    if (i > 7) i = 7;
    double f = p - i;
    rgb c;
    c.r = (((hex[i] >> 16) & 255) * (1 - f) + ((hex[i + 1] >> 16) & 255) * f) / 255.0;
    c.g = (((hex[i] >> 8) & 255) * (1 - f) + ((hex[i + 1] >> 8) & 255) * f) / 255.0;
    c.b = ((hex[i] & 255) * (1 - f) + (hex[i + 1] & 255) * f) / 255.0;
    return c;
}

/* WCAG relative luminance (seaborn picks the annotation colour by it) */
static double luminance(rgb c) {
    double v[3] = {c.r, c.g, c.b};
    for (int i = 0; i < 3; i++) v[i] = v[i] <= 0.03928 ? v[i] / 12.92 : pow((v[i] + 0.055) / 1.055, 2.4);
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}

ot_status ot_plot_confusion(const ot_confusion *c, char *const *names, const char *png_path, ot_error *err) {
    if (!c->m || c->nc < 1) return ot_fail(err, OT_ERR_INVALID, "%s: empty confusion matrix", png_path);
    const int nc = c->nc, N = nc + 1;
    double *a = malloc((size_t)N * N * sizeof *a);
    char **lab = calloc((size_t)N, sizeof *lab);
    if (!a || !lab) { free(a); free(lab); return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", png_path); }
    double vmax = 0;
    for (int j = 0; j < N; j++) { /* normalise columns; under 0.005 not shown */
        double s = 0;
        for (int i = 0; i < N; i++) s += c->m[(size_t)i * N + j];
        for (int i = 0; i < N; i++) {
            double v = c->m[(size_t)i * N + j] / (s + 1e-9);
            a[(size_t)i * N + j] = v < 0.005 ? NAN : v;
            if (v >= 0.005 && v > vmax) vmax = v;
        }
    }
    if (!(vmax > 0)) vmax = 1;
    bool use_names = names && nc < 99;
    char b[64];
    for (int i = 0; i < N; i++) {
        if (i == nc) lab[i] = ot_strdup("background");
        else if (use_names && names[i]) lab[i] = ot_strdup(names[i]);
        else { snprintf(b, sizeof b, "%d", i); lab[i] = ot_strdup(b); }
        if (!lab[i]) {
            for (int k = 0; k < i; k++) free(lab[k]);
            free(lab);
            free(a);
            return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", png_path);
        }
    }

    const int W = OT_PLOT_CONFUSION_W, H = OT_PLOT_CONFUSION_H;
    cairo_surface_t *sf;
    cairo_t *cr = canvas(W, H, &sf);
    /* layout: the tick font follows the cell size; the square fits what is left */
    double fs = 13, cell = 0, side = 0, lw = 0, L = 0, T = 70, cbw = 110;
    bool rot = false;
    for (int pass = 0; pass < 3; pass++) {
        font(cr, fs, false);
        lw = 0;
        for (int i = 0; i < N; i++) lw = fmax(lw, text_w(cr, lab[i]));
        L = 40 + 1.6 * fs + lw;
        double bottom = 40 + 1.6 * fs + (rot ? lw : fs * 1.5);
        side = fmin(W - L - cbw - 20, H - T - bottom);
        cell = side / N;
        double want = fmax(6, fmin(13, cell * 0.75));
        rot = lw > cell - 4;
        if (fabs(want - fs) < 0.01 && pass > 0) break;
        fs = want;
    }
    font(cr, fs, false);
    double bottom = 40 + 1.6 * fs + (rot ? lw : fs * 1.5);
    side = fmin(W - L - cbw - 20, H - T - bottom);
    cell = side / N;
    L += (W - L - cbw - 20 - side) / 2; /* centre horizontally in the room left */

    /* cells: empty ones show the white background */
    double afs = fmax(5, fmin(14, cell * 0.3));
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double v = a[(size_t)i * N + j];
            if (isnan(v)) continue;
            rgb col = blues(v / vmax);
            set_rgb(cr, col);
            cairo_rectangle(cr, L + j * cell, T + i * cell, cell + 0.5, cell + 0.5);
            cairo_fill(cr);
            if (nc < 30) {
                snprintf(b, sizeof b, "%.2f", v);
                font(cr, afs, false);
                if (luminance(col) > 0.408) cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
                else cairo_set_source_rgb(cr, 1, 1, 1);
                text(cr, L + (j + 0.5) * cell, T + (i + 0.5) * cell, b, 0.5, 0.5, 0);
            }
        }
    set_rgb(cr, BLACK);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, round(L) + 0.5, round(T) + 0.5, round(side), round(side));
    for (int i = 0; i < N; i++) { /* tick marks */
        double p = round(L + (i + 0.5) * cell) + 0.5, q = round(T + (i + 0.5) * cell) + 0.5;
        cairo_move_to(cr, p, T + side);
        cairo_line_to(cr, p, T + side + 4);
        cairo_move_to(cr, L - 4, q);
        cairo_line_to(cr, L, q);
    }
    cairo_stroke(cr);
    font(cr, fs, false);
    for (int i = 0; i < N; i++) {
        if (rot) text(cr, L + (i + 0.5) * cell, T + side + 7, lab[i], 1, 0.5, M_PI / 2);
        else text(cr, L + (i + 0.5) * cell, T + side + 7, lab[i], 0.5, 0, 0);
        text(cr, L - 7, T + (i + 0.5) * cell, lab[i], 1, 0.5, 0);
    }
    font(cr, 16, false);
    text(cr, L + side / 2, T + side + 14 + (rot ? lw : fs * 1.5), "True", 0.5, 0, 0);
    text(cr, L - 16 - lw, T + side / 2, "Predicted", 0.5, 1, M_PI / 2);
    font(cr, 20, false);
    text(cr, L + side / 2, T - 18, "Confusion Matrix", 0.5, 1, 0);

    /* colour bar */
    double cx = L + side + 30, cw = 24;
    for (int k = 0; k < 256; k++) {
        set_rgb(cr, blues(k / 255.0));
        cairo_rectangle(cr, cx, T + side - (k + 1) * side / 256, cw, side / 256 + 0.6);
        cairo_fill(cr);
    }
    set_rgb(cr, BLACK);
    cairo_rectangle(cr, round(cx) + 0.5, round(T) + 0.5, cw, round(side));
    cairo_stroke(cr);
    double t[MAXT];
    int dec, nt = nice_ticks(0, vmax, 6, false, t, &dec);
    font(cr, 12, false);
    for (int k = 0; k < nt; k++) {
        double y = round(T + side - t[k] / vmax * side) + 0.5;
        cairo_move_to(cr, cx + cw, y);
        cairo_line_to(cr, cx + cw + 4, y);
        cairo_stroke(cr);
        snprintf(b, sizeof b, "%.*f", dec, t[k]);
        text(cr, cx + cw + 7, y, b, 0, 0.5, 0);
    }
    for (int i = 0; i < N; i++) free(lab[i]);
    free(lab);
    free(a);
    return finish(cr, sf, png_path, err);
}

/* ================= results.png ================= */

typedef struct csv_table {
    int ncol, nrow;
    char **names; /* (ncol) stripped */
    double *v;    /* (nrow, ncol) */
} csv_table;

static void csv_free(csv_table *t) {
    if (t->names)
        for (int i = 0; i < t->ncol; i++) free(t->names[i]);
    free(t->names);
    free(t->v);
    memset(t, 0, sizeof *t);
}

static char *strip(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = 0;
    return s;
}

static int count_fields(const char *s) {
    int n = 1;
    for (; *s; s++) n += *s == ',';
    return n;
}

static ot_status csv_read(const char *path, csv_table *t, ot_error *err) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); }
            buf = nb;
        }
        size_t k = fread(buf + len, 1, 4096, f);
        len += k;
        if (k < 4096) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return ot_fail(err, OT_ERR_IO, "%s: read error", path); }
    buf[len] = 0;
    if (memchr(buf, 0, len)) { free(buf); return ot_fail(err, OT_ERR_PARSE, "%s: not a text file", path); }

    ot_status st = OT_OK;
    int lineno = 0, rcap = 0;
    char *p = buf;
    while (*p && st == OT_OK) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        lineno++;
        char *line = strip(p);
        p = nl ? nl + 1 : p + strlen(p);
        if (!*line) continue; /* blank lines (a trailing newline) */
        int nf = count_fields(line);
        if (!t->names) { /* header */
            if (nf < 11) {
                st = ot_fail(err, OT_ERR_PARSE,
                             "%s:%d: %d column%s, expected Ultralytics' results.csv header (epoch, train/box_loss, "
                             "train/obj_loss, train/cls_loss, metrics/precision, metrics/recall, metrics/mAP_0.5, "
                             "metrics/mAP_0.5:0.95, val/box_loss, val/obj_loss, val/cls_loss, ...)",
                             path, lineno, nf, nf == 1 ? "" : "s");
                break;
            }
            t->names = calloc((size_t)nf, sizeof *t->names);
            if (!t->names) { st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); break; }
            t->ncol = nf;
            char *q = line;
            for (int i = 0; i < nf; i++) {
                char *c = strchr(q, ',');
                if (c) *c = 0;
                char *nm = strip(q);
                t->names[i] = ot_strdup(nm);
                if (!t->names[i]) { st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); break; }
                if (!*nm) { st = ot_fail(err, OT_ERR_PARSE, "%s:%d: column %d has no name", path, lineno, i + 1); break; }
                q = c ? c + 1 : q + strlen(q);
            }
            char *e;
            if (st == OT_OK && (strtod(t->names[0], &e), e != t->names[0]))
                st = ot_fail(err, OT_ERR_PARSE, "%s:%d: the first line is not a header (column names)", path, lineno);
            continue;
        }
        if (nf != t->ncol) {
            st = ot_fail(err, OT_ERR_PARSE, "%s:%d: %d fields, the header has %d", path, lineno, nf, t->ncol);
            break;
        }
        if (t->nrow == rcap) {
            rcap = rcap ? 2 * rcap : 64;
            double *nv = realloc(t->v, (size_t)rcap * t->ncol * sizeof *nv);
            if (!nv) { st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); break; }
            t->v = nv;
        }
        char *q = line;
        for (int i = 0; i < nf; i++) {
            char *c = strchr(q, ',');
            if (c) *c = 0;
            char *tok = strip(q), *e;
            double v = strtod(tok, &e);
            if (!*tok || *e) {
                st = ot_fail(err, OT_ERR_PARSE, "%s:%d: column %d (%s): '%.40s' is not a number", path, lineno, i + 1,
                             t->names[i], tok);
                break;
            }
            t->v[(size_t)t->nrow * t->ncol + i] = v;
            q = c ? c + 1 : q + strlen(q);
        }
        t->nrow++;
    }
    free(buf);
    if (st == OT_OK && !t->names) st = ot_fail(err, OT_ERR_PARSE, "%s: empty file, expected a header line", path);
    if (st == OT_OK && t->nrow == 0) st = ot_fail(err, OT_ERR_PARSE, "%s: no data rows after the header", path);
    if (st != OT_OK) csv_free(t);
    return st;
}

/* scipy.ndimage.gaussian_filter1d(y, sigma), truncate 4, mode 'reflect' */
static void gaussian_filter1d(const double *y, int n, double sigma, double *out) {
    int rad = (int)(4.0 * sigma + 0.5);
    double w[64], s = 0;
    if (rad > 31) rad = 31;
    for (int k = -rad; k <= rad; k++) s += w[k + rad] = exp(-0.5 * k * k / (sigma * sigma));
    for (int k = 0; k <= 2 * rad; k++) w[k] /= s;
    for (int i = 0; i < n; i++) {
        double acc = 0;
        for (int k = -rad; k <= rad; k++) {
            long j = (long)i + k, p = 2L * n;
            j %= p;
            if (j < 0) j += p;
            if (j >= n) j = p - 1 - j; /* d c b a | a b c d | d c b a */
            acc += w[k + rad] * y[j];
        }
        out[i] = acc;
    }
}

ot_status ot_plot_results(const char *csv_path, const char *png_path, ot_error *err) {
    csv_table t;
    OT_TRY(csv_read(csv_path, &t, err));
    const int n = t.nrow;
    double *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y), *ys = malloc((size_t)n * sizeof *ys);
    if (!x || !y || !ys) {
        free(x); free(y); free(ys);
        csv_free(&t);
        return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", png_path);
    }
    bool xint = true;
    for (int r = 0; r < n; r++) {
        x[r] = t.v[(size_t)r * t.ncol];
        xint &= x[r] == rint(x[r]);
    }
    const int W = OT_PLOT_RESULTS_W, H = OT_PLOT_RESULTS_H;
    cairo_surface_t *sf;
    cairo_t *cr = canvas(W, H, &sf);
    static const int cols[10] = {1, 2, 3, 4, 5, 8, 9, 10, 6, 7}; /* plot_results' order */
    const double cw = W / 5.0, ch = H / 2.0;
    for (int i = 0; i < 10; i++) {
        int j = cols[i];
        for (int r = 0; r < n; r++) y[r] = t.v[(size_t)r * t.ncol + j];
        gaussian_filter1d(y, n, 3.0, ys);
        axes a;
        a.L = (i % 5) * cw + 62;
        a.T = (i / 5) * ch + 40;
        a.W = cw - 62 - 14;
        a.H = ch - 40 - 40;
        auto_limits(x, n, &a.x0, &a.x1);
        double *both = malloc((size_t)2 * n * sizeof *both);
        if (both) {
            memcpy(both, y, (size_t)n * sizeof *y);
            memcpy(both + n, ys, (size_t)n * sizeof *ys);
            auto_limits(both, 2 * n, &a.y0, &a.y1);
            free(both);
        } else {
            auto_limits(y, n, &a.y0, &a.y1);
        }
        draw_axes(cr, &a, t.names[j], NULL, NULL, 11, xint);
        plot_line(cr, &a, x, y, n, TAB10[0], 2, false);
        plot_markers(cr, &a, x, y, n, TAB10[0], 3.5);
        plot_line(cr, &a, x, ys, n, TAB10[1], 2, true);
        if (i == 1) {
            legend_item it[2] = {{"results", TAB10[0], 2, false, true}, {"smooth", TAB10[1], 2, true, false}};
            legend(cr, a.L + a.W - 6, a.T + 6, true, it, 2, 11);
        }
    }
    free(x);
    free(y);
    free(ys);
    csv_free(&t);
    return finish(cr, sf, png_path, err);
}

/* ================= PR and metric-confidence curves ================= */


void ot_pr_curves_free(ot_pr_curves *c) {
    if (!c) return;
    free(c->cls); free(c->nt); free(c->npred); free(c->ap50); free(c->px); free(c->py);
    free(c->p); free(c->r); free(c->f1);
    memset(c, 0, sizeof *c);
}

typedef struct conf_idx { float conf; int64_t i; } conf_idx;
static int cmp_conf(const void *a, const void *b) { /* decreasing confidence, ties in order */
    const conf_idx *x = a, *y = b;
    if (x->conf != y->conf) return x->conf > y->conf ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}
static int cmp_int(const void *a, const void *b) { int x = *(const int *)a, y = *(const int *)b; return (x > y) - (x < y); }

ot_status ot_pr_curves_compute(const ot_val_stats *s, ot_pr_curves *c, ot_error *err) {
    memset(c, 0, sizeof *c);
    const int64_t n = s->n;
    const double eps = 1e-16;
    int *tc = malloc((size_t)(s->nl ? s->nl : 1) * sizeof *tc);
    conf_idx *ord = malloc((size_t)(n ? n : 1) * sizeof *ord);
    int64_t *sel = malloc((size_t)(n ? n : 1) * sizeof *sel);
    double *xp = malloc((size_t)(n ? n : 1) * sizeof *xp), *rec = malloc((size_t)(n + 2) * sizeof *rec);
    double *pre = malloc((size_t)(n + 2) * sizeof *pre);
    c->px = malloc(OT_PLOT_NPX * sizeof *c->px);
    if (!tc || !ord || !sel || !xp || !rec || !pre || !c->px) goto nomem;
    for (int k = 0; k < OT_PLOT_NPX; k++) c->px[k] = ot_np_linspace01(k, OT_PLOT_NPX);
    if (s->nl) memcpy(tc, s->tcls, (size_t)s->nl * sizeof *tc);
    qsort(tc, (size_t)s->nl, sizeof *tc, cmp_int);
    int nu = 0;
    for (int64_t i = 0; i < s->nl; i++) nu += i == 0 || tc[i] != tc[i - 1];
    c->n = nu;
    size_t nn = nu ? (size_t)nu : 1;
    c->cls = malloc(nn * sizeof *c->cls);
    c->nt = calloc(nn, sizeof *c->nt);
    c->npred = calloc(nn, sizeof *c->npred);
    c->ap50 = calloc(nn, sizeof *c->ap50);
    c->py = calloc(nn * OT_PLOT_NPX, sizeof *c->py);
    c->p = calloc(nn * OT_PLOT_NPX, sizeof *c->p);
    c->r = calloc(nn * OT_PLOT_NPX, sizeof *c->r);
    c->f1 = calloc(nn * OT_PLOT_NPX, sizeof *c->f1);
    if (!c->cls || !c->nt || !c->npred || !c->ap50 || !c->py || !c->p || !c->r || !c->f1) goto nomem;
    for (int64_t i = 0, k = -1; i < s->nl; i++) {
        if (i == 0 || tc[i] != tc[i - 1]) c->cls[++k] = tc[i];
        c->nt[k]++;
    }
    for (int64_t i = 0; i < n; i++) ord[i] = (conf_idx){s->conf[i], i};
    qsort(ord, (size_t)n, sizeof *ord, cmp_conf); /* np.argsort(-conf) */
    for (int ci = 0; ci < nu; ci++) {
        int64_t np_ = 0;
        for (int64_t k = 0; k < n; k++)
            if (s->pcls[ord[k].i] == c->cls[ci]) sel[np_++] = ord[k].i;
        c->npred[ci] = np_;
        if (np_ == 0) continue;
        int64_t tpc = 0, fpc = 0;
        double nl = (double)c->nt[ci];
        for (int64_t k = 0; k < np_; k++) { /* IoU 0.5 column */
            bool tp = s->correct[sel[k] * OT_NIOU] != 0;
            tpc += tp;
            fpc += !tp;
            xp[k] = -(double)s->conf[sel[k]];
            rec[k + 1] = (double)tpc / (nl + eps);
            pre[k + 1] = (double)tpc / (double)(tpc + fpc);
        }
        double *P = c->p + (size_t)ci * OT_PLOT_NPX, *R = c->r + (size_t)ci * OT_PLOT_NPX;
        for (int k = 0; k < OT_PLOT_NPX; k++) {
            R[k] = ot_np_interp(-c->px[k], xp, rec + 1, np_, 0.0, rec[np_]);
            P[k] = ot_np_interp(-c->px[k], xp, pre + 1, np_, 1.0, pre[np_]);
            c->f1[(size_t)ci * OT_PLOT_NPX + k] = 2 * P[k] * R[k] / (P[k] + R[k] + eps);
        }
        c->ap50[ci] = ot_compute_ap(rec + 1, pre + 1, np_, err);
        if (isnan(c->ap50[ci])) goto nomem;
        /* compute_ap's curves: sentinels, precision envelope; py = np.interp(px, mrec, mpre) */
        rec[0] = 0.0; pre[0] = 1.0;
        rec[np_ + 1] = 1.0; pre[np_ + 1] = 0.0;
        for (int64_t k = np_; k >= 0; k--) pre[k] = fmax(pre[k], pre[k + 1]);
        for (int k = 0; k < OT_PLOT_NPX; k++)
            c->py[(size_t)ci * OT_PLOT_NPX + k] = ot_np_interp(c->px[k], rec, pre, np_ + 2, pre[0], pre[np_ + 1]);
    }
    free(tc); free(ord); free(sel); free(xp); free(rec); free(pre);
    return OT_OK;
nomem:
    free(tc); free(ord); free(sel); free(xp); free(rec); free(pre);
    ot_pr_curves_free(c);
    return ot_fail(err, OT_ERR_NOMEM, "PR curves: out of memory");
}

static void class_label(char *b, size_t n, char *const *names, int cls) {
    if (names && cls >= 0 && names[cls]) snprintf(b, n, "%s", names[cls]);
    else snprintf(b, n, "%d", cls);
}

/* the curve picture shared by PR and metric-confidence: lines (n, NPX), the
 * bold mean, and a legend right of the axes */
static ot_status curve_plot(const ot_pr_curves *c, const double *rows, const bool *show,
                            char (*labels)[96], const double *mean, const char *mean_label, const char *title,
                            const char *xlabel, const char *ylabel, const char *png_path, ot_error *err) {
    const int W = OT_PLOT_CURVE_W, H = OT_PLOT_CURVE_H;
    int nshow = 0;
    for (int i = 0; i < c->n; i++) nshow += show[i];
    bool per_class = nshow > 0 && c->n < 21;
    legend_item *it = calloc((size_t)c->n + 1, sizeof *it);
    if (!it) return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", png_path);
    int ni = 0;
    for (int i = 0, k = 0; i < c->n; i++) {
        if (!show[i]) continue;
        if (per_class) it[ni++] = (legend_item){labels[i], TAB10[k % 10], 1.5, false, false};
        k++;
    }
    it[ni++] = (legend_item){mean_label, BLUE, 4, false, false};
    cairo_surface_t *sf;
    cairo_t *cr = canvas(W, H, &sf);
    double lw = legend_width(cr, it, ni, 12);
    if (lw > 420) lw = 420;
    axes a = {.L = 90, .T = 50, .W = W - 90 - lw - 50, .H = H - 50 - 80, .x0 = 0, .x1 = 1, .y0 = 0, .y1 = 1};
    draw_axes(cr, &a, title, xlabel, ylabel, 13, false);
    for (int i = 0, k = 0; i < c->n; i++) {
        if (!show[i]) continue;
        plot_line(cr, &a, c->px, rows + (size_t)i * OT_PLOT_NPX, OT_PLOT_NPX, per_class ? TAB10[k % 10] : GREY, 1.5, false);
        k++;
    }
    if (mean) plot_line(cr, &a, c->px, mean, OT_PLOT_NPX, BLUE, 4, false);
    cairo_save(cr);
    cairo_rectangle(cr, a.L + a.W + 10, 0, W - a.L - a.W - 10, H);
    cairo_clip(cr);
    legend(cr, a.L + a.W + 0.04 * a.W, a.T, false, it, ni, 12);
    cairo_restore(cr);
    free(it);
    return finish(cr, sf, png_path, err);
}

ot_status ot_plot_pr_curve(const ot_pr_curves *c, char *const *names, const char *png_path, ot_error *err) {
    if (!c->px) return ot_fail(err, OT_ERR_INVALID, "%s: no curves (ot_pr_curves_compute first)", png_path);
    bool *show = calloc((size_t)c->n + 1, sizeof *show);
    char(*labels)[96] = calloc((size_t)c->n + 1, sizeof *labels);
    double *mean = calloc(OT_PLOT_NPX, sizeof *mean);
    if (!show || !labels || !mean) {
        free(show); free(labels); free(mean);
        return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", png_path);
    }
    int np_ = 0;
    double map50 = 0;
    for (int i = 0; i < c->n; i++) {
        show[i] = c->npred[i] > 0; /* py holds the classes with detections */
        np_ += show[i];
        map50 += c->ap50[i];
        char nm[80];
        class_label(nm, sizeof nm, names, c->cls[i]);
        snprintf(labels[i], sizeof labels[i], "%s %.3f", nm, c->ap50[i]);
        if (show[i])
            for (int k = 0; k < OT_PLOT_NPX; k++) mean[k] += c->py[(size_t)i * OT_PLOT_NPX + k];
    }
    for (int k = 0; k < OT_PLOT_NPX; k++) mean[k] = np_ ? mean[k] / np_ : NAN;
    char ml[96];
    snprintf(ml, sizeof ml, "all classes %.3f mAP@0.5", c->n ? map50 / c->n : 0.0);
    ot_status st = curve_plot(c, c->py, show, labels, np_ ? mean : NULL, ml, "Precision-Recall Curve", "Recall",
                              "Precision", png_path, err);
    free(show);
    free(labels);
    free(mean);
    return st;
}

/* smooth(y, f): box filter of round(n * f * 2) // 2 + 1 points, ends padded with the end values */
static void smooth(const double *y, int n, double f, double *out) {
    int nf = (int)rint(n * f * 2) / 2 + 1, h = nf / 2;
    for (int i = 0; i < n; i++) {
        double acc = 0;
        for (int k = 0; k < nf; k++) {
            int q = i + k - h;
            acc += y[q < 0 ? 0 : q >= n ? n - 1 : q] * (1.0 / nf);
        }
        out[i] = acc;
    }
}

ot_status ot_plot_mc_curve(const ot_pr_curves *c, char *const *names, ot_curve_kind kind, const char *png_path,
                           ot_error *err) {
    if (!c->px) return ot_fail(err, OT_ERR_INVALID, "%s: no curves (ot_pr_curves_compute first)", png_path);
    const double *rows = kind == OT_CURVE_P ? c->p : kind == OT_CURVE_R ? c->r : c->f1;
    const char *ylabel = kind == OT_CURVE_P ? "Precision" : kind == OT_CURVE_R ? "Recall" : "F1";
    bool *show = calloc((size_t)c->n + 1, sizeof *show);
    char(*labels)[96] = calloc((size_t)c->n + 1, sizeof *labels);
    double *mean = calloc(OT_PLOT_NPX, sizeof *mean), *sm = calloc(OT_PLOT_NPX, sizeof *sm);
    if (!show || !labels || !mean || !sm) {
        free(show); free(labels); free(mean); free(sm);
        return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", png_path);
    }
    for (int i = 0; i < c->n; i++) { /* every class with labels, as plot_mc_curve */
        show[i] = true;
        class_label(labels[i], sizeof labels[i], names, c->cls[i]);
        for (int k = 0; k < OT_PLOT_NPX; k++) mean[k] += rows[(size_t)i * OT_PLOT_NPX + k];
    }
    for (int k = 0; k < OT_PLOT_NPX; k++) mean[k] = c->n ? mean[k] / c->n : 0;
    smooth(mean, OT_PLOT_NPX, 0.05, sm);
    int bi = 0;
    for (int k = 1; k < OT_PLOT_NPX; k++)
        if (sm[k] > sm[bi]) bi = k;
    char ml[96], title[64];
    snprintf(ml, sizeof ml, "all classes %.2f at %.3f", sm[bi], c->px[bi]);
    snprintf(title, sizeof title, "%s-Confidence Curve", ylabel);
    ot_status st = curve_plot(c, rows, show, labels, c->n ? sm : NULL, ml, title, "Confidence", ylabel, png_path, err);
    free(show);
    free(labels);
    free(mean);
    free(sm);
    return st;
}
