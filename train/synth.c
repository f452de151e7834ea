/* synth.c: the synthetic shapes dataset (see synth.h).
 *
 * Every shape is a signed distance function (negative inside, in pixels),
 * exact outside the shape, sampled at pixel centres: coverage
 * clamp(0.5 - d, 0, 1). A pixel whose centre is at least half a pixel
 * outside the shape's extent therefore gets no colour at all, which is what
 * makes the boxes (the analytic extent) tight. The outline is the band
 * -ow <= d <= 0 inside the shape. */
#include "train/synth.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYNTH_JPEG_QUALITY 90
#define SYNTH_TRIES 50
#define SYNTH_MAX_IOU 0.3
#define SYNTH_MAX_COVER 0.5
#define SYNTH_MIN_VISIBLE 0.6
#define SYNTH_SIZE_LO 0.12
#define SYNTH_SIZE_HI 0.45
#define SYNTH_PI 3.14159265358979323846

static const char *const class_names[OT_SYNTH_MAX_NC] = {"circle", "square", "triangle", "cross", "ring", "diamond"};

const char *ot_synth_class_name(int k) { return k >= 0 && k < OT_SYNTH_MAX_NC ? class_names[k] : NULL; }

void ot_synth_cfg_default(ot_synth_cfg *c) {
    memset(c, 0, sizeof *c);
    c->n_train = 320;
    c->n_val = 64;
    c->img = 256;
    c->nc = 3;
    c->min_obj = 1;
    c->max_obj = 4;
}

static int cfg_w(const ot_synth_cfg *c) { return c->img_w > 0 ? c->img_w : c->img; }
static int cfg_h(const ot_synth_cfg *c) { return c->img_h > 0 ? c->img_h : c->img; }

ot_status ot_synth_cfg_check(const ot_synth_cfg *c, ot_error *err) {
    if (c->n_train < 1 || c->n_val < 1 || c->n_train > 10000000 || c->n_val > 10000000)
        return ot_fail(err, OT_ERR_INVALID, "synth: n_train and n_val must be 1..10000000 (got %d, %d)", c->n_train, c->n_val);
    if (c->img_w < 0 || c->img_h < 0 || cfg_w(c) < 64 || cfg_h(c) < 64 || cfg_w(c) > 8192 || cfg_h(c) > 8192)
        return ot_fail(err, OT_ERR_INVALID, "synth: image size must be 64..8192 pixels per side (got %dx%d)", cfg_w(c), cfg_h(c));
    if (c->nc < 1 || c->nc > OT_SYNTH_MAX_NC)
        return ot_fail(err, OT_ERR_INVALID, "synth: nc must be 1..%d (got %d)", OT_SYNTH_MAX_NC, c->nc);
    if (c->min_obj < 0 || c->max_obj < c->min_obj || c->max_obj > OT_SYNTH_MAX_OBJ)
        return ot_fail(err, OT_ERR_INVALID, "synth: objects per image must satisfy 0 <= min <= max <= %d (got %d..%d)",
                       OT_SYNTH_MAX_OBJ, c->min_obj, c->max_obj);
    if (c->threads < 0 || c->threads > 256) return ot_fail(err, OT_ERR_INVALID, "synth: threads must be 0..256 (got %d)", c->threads);
    return OT_OK;
}

/* ---- random numbers: xoshiro256**, seeded by splitmix64 of (seed, split, index) ---- */
typedef struct rng { uint64_t s[4]; } rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t split, uint64_t index) {
    uint64_t x = seed;
    x = splitmix64(&x) ^ (split + 1) * 0xD1B54A32D192ED03ull;
    x = splitmix64(&x) ^ (index + 1) * 0xABC98388FB8FAC03ull;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

static double U(rng *r, double a, double b) { return a + (b - a) * ((double)(rng_next(r) >> 11) * 0x1.0p-53); }
static int below(rng *r, int n) { return (int)((rng_next(r) >> 33) % (uint64_t)n); }

/* ---- colours (RGB floats 0..255) ---- */
static void hsv_rgb(double h, double s, double v, float rgb[3]) {
    h = (h - floor(h)) * 6.0;
    int i = (int)h;
    double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    double r, g, b;
    switch (i) {
    case 0: r = v; g = t; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
    }
    rgb[0] = (float)(255 * r);
    rgb[1] = (float)(255 * g);
    rgb[2] = (float)(255 * b);
}

static inline double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

/* ---- background ---- */
typedef struct canvas { int w, h; float *px; /* (h, w, 3) RGB */ } canvas;

static double smooth(double t) { return t * t * (3 - 2 * t); }

/* one octave of value noise, amplitude amp, cells of `cell` pixels, on a
 * lattice turned by a random angle (no axis-aligned seams), added to the canvas */
static ot_status add_noise(canvas *cv, rng *r, double cell, double amp, ot_error *err) {
    double th = U(r, 0, 2 * SYNTH_PI), ca = cos(th) / cell, sa = sin(th) / cell;
    /* lattice coordinates u = x ca + y sa, v = -x sa + y ca over the image's corners */
    double u0 = INFINITY, u1 = -INFINITY, v0 = INFINITY, v1 = -INFINITY;
    for (int k = 0; k < 4; k++) {
        double x = (k & 1) ? cv->w : 0, y = (k & 2) ? cv->h : 0, u = x * ca + y * sa, v = -x * sa + y * ca;
        u0 = fmin(u0, u); u1 = fmax(u1, u); v0 = fmin(v0, v); v1 = fmax(v1, v);
    }
    u0 -= U(r, 0, 1);
    v0 -= U(r, 0, 1);
    int gw = (int)ceil(u1 - u0) + 2, gh = (int)ceil(v1 - v0) + 2;
    float *g = malloc(sizeof(float) * 3 * (size_t)gw * gh);
    if (!g) return ot_fail(err, OT_ERR_NOMEM, "synth: out of memory");
    for (int i = 0; i < gw * gh; i++) {
        double l = U(r, -1, 1); /* mostly brightness, a little colour */
        for (int k = 0; k < 3; k++) g[3 * i + k] = (float)(amp * (l + 0.35 * U(r, -1, 1)));
    }
    for (int y = 0; y < cv->h; y++)
        for (int x = 0; x < cv->w; x++) {
            double fu = (x + 0.5) * ca + (y + 0.5) * sa - u0, fv = -(x + 0.5) * sa + (y + 0.5) * ca - v0;
            int iu = (int)fu, iv = (int)fv;
            iu = iu < 0 ? 0 : iu > gw - 2 ? gw - 2 : iu;
            iv = iv < 0 ? 0 : iv > gh - 2 ? gh - 2 : iv;
            double tu = smooth(clamp01(fu - iu)), tv = smooth(clamp01(fv - iv));
            const float *a = g + 3 * ((size_t)iv * gw + iu), *b = a + 3, *c = a + 3 * gw, *d = c + 3;
            float *p = cv->px + 3 * ((size_t)y * cv->w + x);
            for (int k = 0; k < 3; k++) {
                double top = a[k] + (b[k] - a[k]) * tu, bot = c[k] + (d[k] - c[k]) * tu;
                p[k] += (float)(top + (bot - top) * tv);
            }
        }
    free(g);
    return OT_OK;
}

static ot_status draw_background(canvas *cv, rng *r, ot_error *err) {
    int W = cv->w, H = cv->h, side = W < H ? W : H;
    /* gradient between two muted colours */
    float c0[3], c1[3];
    double h0 = U(r, 0, 1);
    hsv_rgb(h0, U(r, 0.04, 0.5), U(r, 0.5, 0.95), c0);
    hsv_rgb(h0 + U(r, -0.35, 0.35), U(r, 0.04, 0.5), U(r, 0.45, 0.95), c1);
    double th = U(r, 0, 2 * SYNTH_PI), dx = cos(th), dy = sin(th), L = fabs(dx) * W + fabs(dy) * H;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double t = clamp01(((x + 0.5 - W / 2.0) * dx + (y + 0.5 - H / 2.0) * dy) / L + 0.5);
            float *p = cv->px + 3 * ((size_t)y * W + x);
            for (int k = 0; k < 3; k++) p[k] = (float)(c0[k] + (c1[k] - c0[k]) * t);
        }
    /* value noise, two octaves */
    double cell = side / U(r, 3, 8), amp = U(r, 6, 26);
    OT_TRY(add_noise(cv, r, cell, amp, err));
    OT_TRY(add_noise(cv, r, cell / U(r, 2.5, 4.5), amp * U(r, 0.3, 0.6), err));
    /* soft blotches */
    int nb = below(r, 6);
    for (int b = 0; b < nb; b++) {
        double cx = U(r, 0, W), cy = U(r, 0, H), rx = side * U(r, 0.05, 0.25), ry = rx * U(r, 0.5, 1.5);
        double a = U(r, 0, SYNTH_PI), ca = cos(a), sa = sin(a), strength = U(r, 0.2, 0.6), rr = rx > ry ? rx : ry;
        float col[3];
        hsv_rgb(U(r, 0, 1), U(r, 0, 0.45), U(r, 0.25, 1), col);
        int x0 = (int)fmax(0, floor(cx - rr)), x1 = (int)fmin(W, ceil(cx + rr)), y0 = (int)fmax(0, floor(cy - rr)),
            y1 = (int)fmin(H, ceil(cy + rr));
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                double px = x + 0.5 - cx, py = y + 0.5 - cy, u = (px * ca + py * sa) / rx, v = (-px * sa + py * ca) / ry;
                double q = u * u + v * v;
                if (q >= 1) continue;
                double wgt = strength * (1 - q) * (1 - q);
                float *p = cv->px + 3 * ((size_t)y * W + x);
                for (int k = 0; k < 3; k++) p[k] += (float)(wgt * (col[k] - p[k]));
            }
    }
    /* thin lines */
    int nl = below(r, 7);
    for (int l = 0; l < nl; l++) {
        double ax = U(r, -0.1, 1.1) * W, ay = U(r, -0.1, 1.1) * H, bx = U(r, -0.1, 1.1) * W, by = U(r, -0.1, 1.1) * H;
        double hw = U(r, 0.3, 1.0) * side / 256.0, alpha = U(r, 0.35, 0.9);
        float col[3];
        hsv_rgb(U(r, 0, 1), U(r, 0, 0.6), U(r, 0.1, 1), col);
        double ex = bx - ax, ey = by - ay, len2 = ex * ex + ey * ey;
        if (len2 < 1) continue;
        double pad = hw + 1;
        int x0 = (int)fmax(0, floor(fmin(ax, bx) - pad)), x1 = (int)fmin(W, ceil(fmax(ax, bx) + pad));
        int y0 = (int)fmax(0, floor(fmin(ay, by) - pad)), y1 = (int)fmin(H, ceil(fmax(ay, by) + pad));
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                double px = x + 0.5 - ax, py = y + 0.5 - ay, t = (px * ex + py * ey) / len2;
                t = clamp01(t);
                double qx = px - t * ex, qy = py - t * ey, d = sqrt(qx * qx + qy * qy);
                double cov = clamp01(hw + 0.5 - d) * alpha;
                if (cov <= 0) continue;
                float *p = cv->px + 3 * ((size_t)y * W + x);
                for (int k = 0; k < 3; k++) p[k] += (float)(cov * (col[k] - p[k]));
            }
    }
    return OT_OK;
}

/* ---- shapes ---- */
enum { SH_CIRCLE, SH_RECT, SH_TRIANGLE, SH_CROSS, SH_RING, SH_DIAMOND };

typedef struct shape {
    int cls;
    double a, b, t;            /* circle/ring: a = radius, b = inner radius; rect/cross: half sizes a, b, cross half thickness t */
    int nv;                    /* polygons (triangle, diamond): vertices, counter-clockwise */
    double vx[4], vy[4];
    double ex0, ey0, ex1, ey1; /* extent, relative to the centre */
} shape;

static double box_sd(double px, double py, double hx, double hy) {
    double qx = fabs(px) - hx, qy = fabs(py) - hy;
    double ox = qx > 0 ? qx : 0, oy = qy > 0 ? qy : 0, in = qx > qy ? qx : qy;
    return sqrt(ox * ox + oy * oy) + (in < 0 ? in : 0);
}

/* convex polygon, vertices in increasing angle (cross(edge, p - vertex) >= 0 inside); exact distance */
static double poly_sd(const shape *s, double px, double py) {
    double dmin = INFINITY;
    bool inside = true;
    for (int i = 0; i < s->nv; i++) {
        int j = (i + 1) % s->nv;
        double ex = s->vx[j] - s->vx[i], ey = s->vy[j] - s->vy[i], wx = px - s->vx[i], wy = py - s->vy[i];
        double t = clamp01((wx * ex + wy * ey) / (ex * ex + ey * ey));
        double qx = wx - t * ex, qy = wy - t * ey, d = qx * qx + qy * qy;
        if (d < dmin) dmin = d;
        if (ex * wy - ey * wx < 0) inside = false;
    }
    return inside ? -sqrt(dmin) : sqrt(dmin);
}

static double shape_sd(const shape *s, double px, double py) {
    switch (s->cls) {
    case SH_CIRCLE: return sqrt(px * px + py * py) - s->a;
    case SH_RECT: return box_sd(px, py, s->a, s->b);
    case SH_CROSS: return fmin(box_sd(px, py, s->a, s->t), box_sd(px, py, s->t, s->b));
    case SH_RING: {
        double d = sqrt(px * px + py * py);
        return fmax(d - s->a, s->b - d);
    }
    default: return poly_sd(s, px, py);
    }
}

/* A shape of class cls whose box's long side is `size` pixels. */
static void make_shape(shape *s, int cls, double size, rng *r) {
    memset(s, 0, sizeof *s);
    s->cls = cls;
    double k;
    switch (cls) {
    case SH_CIRCLE:
        s->a = size / 2;
        s->ex0 = s->ey0 = -s->a;
        s->ex1 = s->ey1 = s->a;
        return;
    case SH_RING:
        s->a = size / 2;
        s->b = s->a * U(r, 0.42, 0.62);
        s->ex0 = s->ey0 = -s->a;
        s->ex1 = s->ey1 = s->a;
        return;
    case SH_RECT:
    case SH_CROSS: {
        double asp = exp(U(r, log(0.7), log(1.4))); /* w / h */
        s->a = asp >= 1 ? size / 2 : size / 2 * asp;
        s->b = asp >= 1 ? size / 2 / asp : size / 2;
        if (cls == SH_CROSS) {
            asp = exp(U(r, log(0.8), log(1.25)));
            s->a = asp >= 1 ? size / 2 : size / 2 * asp;
            s->b = asp >= 1 ? size / 2 / asp : size / 2;
            s->t = fmin(s->a, s->b) * U(r, 0.28, 0.42);
        }
        s->ex0 = -s->a;
        s->ex1 = s->a;
        s->ey0 = -s->b;
        s->ey1 = s->b;
        return;
    }
    case SH_TRIANGLE: {
        /* vertices on the unit circle, arcs 120 +- 30 degrees: angles 45..75 degrees */
        double a0 = U(r, 0, 2 * SYNTH_PI), a1 = a0 + (120 + U(r, -15, 15)) * SYNTH_PI / 180,
               a2 = a0 + (240 + U(r, -15, 15)) * SYNTH_PI / 180, ang[3] = {a0, a1, a2};
        s->nv = 3;
        /* increasing angles: the order poly_sd expects */
        for (int i = 0; i < 3; i++) { s->vx[i] = cos(ang[i]); s->vy[i] = sin(ang[i]); }
        break;
    }
    default: { /* SH_DIAMOND */
        double asp = exp(U(r, log(0.75), log(1.33)));
        s->nv = 4;
        double hx = asp >= 1 ? 1 : asp, hy = asp >= 1 ? 1 / asp : 1;
        const double vx[4] = {hx, 0, -hx, 0}, vy[4] = {0, hy, 0, -hy};
        memcpy(s->vx, vx, sizeof vx);
        memcpy(s->vy, vy, sizeof vy);
        break;
    }
    }
    /* polygons: scale so the long side of the extent is `size`, centre the extent */
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < s->nv; i++) {
        x0 = fmin(x0, s->vx[i]); x1 = fmax(x1, s->vx[i]);
        y0 = fmin(y0, s->vy[i]); y1 = fmax(y1, s->vy[i]);
    }
    k = size / fmax(x1 - x0, y1 - y0);
    double mx = (x0 + x1) / 2, my = (y0 + y1) / 2;
    for (int i = 0; i < s->nv; i++) { s->vx[i] = (s->vx[i] - mx) * k; s->vy[i] = (s->vy[i] - my) * k; }
    s->ex0 = (x0 - mx) * k;
    s->ex1 = (x1 - mx) * k;
    s->ey0 = (y0 - my) * k;
    s->ey1 = (y1 - my) * k;
}

static double box_area(const ot_synth_box *b) { return (b->x2 - b->x1) * (b->y2 - b->y1); }

/* 0: rejected (IoU or box cover too high); 1: fine, touches no earlier box; 2: fine, overlaps some */
static int placement_ok(const ot_synth_box *b, const ot_synth_box *prev, int n) {
    int res = 1;
    for (int i = 0; i < n; i++) {
        double iw = fmin(b->x2, prev[i].x2) - fmax(b->x1, prev[i].x1), ih = fmin(b->y2, prev[i].y2) - fmax(b->y1, prev[i].y1);
        if (iw <= 0 || ih <= 0) continue;
        double inter = iw * ih, a = box_area(b), c = box_area(&prev[i]);
        if (inter / (a + c - inter) > SYNTH_MAX_IOU || inter > SYNTH_MAX_COVER * fmin(a, c)) return 0;
        res = 2;
    }
    return res;
}

/* Pixels (centres) of each object: owner[y * W + x] is the topmost object whose
 * shape holds the pixel's centre (-1: none); vis[j] of area[j] are still seen. */
typedef struct cover { int8_t *owner; int64_t vis[OT_SYNTH_MAX_OBJ], area[OT_SYNTH_MAX_OBJ]; } cover;

static void box_pixels(const canvas *cv, const ot_synth_box *b, int *x0, int *y0, int *x1, int *y1) {
    *x0 = (int)fmax(0, floor(b->x1));
    *x1 = (int)fmin(cv->w, ceil(b->x2));
    *y0 = (int)fmax(0, floor(b->y1));
    *y1 = (int)fmin(cv->h, ceil(b->y2));
}

/* Placing shape s at (cx, cy) on top leaves every earlier object (n of them)
 * at least SYNTH_MIN_VISIBLE of its pixels. */
static bool cover_ok(const cover *co, const canvas *cv, const shape *s, double cx, double cy, const ot_synth_box *b, int n) {
    int64_t lost[OT_SYNTH_MAX_OBJ] = {0};
    int x0, y0, x1, y1;
    box_pixels(cv, b, &x0, &y0, &x1, &y1);
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            int8_t o = co->owner[(size_t)y * cv->w + x];
            if (o >= 0 && shape_sd(s, x + 0.5 - cx, y + 0.5 - cy) < 0) lost[o]++;
        }
    for (int j = 0; j < n; j++)
        if ((double)(co->vis[j] - lost[j]) < SYNTH_MIN_VISIBLE * (double)co->area[j]) return false;
    return true;
}

/* Draw shape s (object n) at (cx, cy) and take the pixels whose centres it holds. */
static void draw_shape(canvas *cv, cover *co, int n, const shape *s, double cx, double cy, const ot_synth_box *b, rng *r) {
    int side = cv->w < cv->h ? cv->w : cv->h;
    float fill[3], line[3];
    hsv_rgb(U(r, 0, 1), U(r, 0.7, 1.0), U(r, 0.65, 1.0), fill);
    double dark = U(r, 0.2, 0.45), ow = U(r, 1.2, 3.0) * side / 256.0;
    for (int k = 0; k < 3; k++) line[k] = (float)(fill[k] * dark);
    double sh = U(r, 0, 2 * SYNTH_PI), sdx = cos(sh), sdy = sin(sh), g = U(r, 0, 0.3) / fmax(1, (b->x2 - b->x1 + b->y2 - b->y1) / 4);
    int x0, y0, x1, y1;
    box_pixels(cv, b, &x0, &y0, &x1, &y1);
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            double px = x + 0.5 - cx, py = y + 0.5 - cy, d = shape_sd(s, px, py), a = clamp01(0.5 - d);
            if (a <= 0) continue;
            if (d < 0) {
                int8_t *o = co->owner + (size_t)y * cv->w + x;
                if (*o >= 0) co->vis[*o]--;
                *o = (int8_t)n;
                co->vis[n]++;
                co->area[n]++;
            }
            double t = clamp01(d + ow + 0.5), shade = 1 + g * (px * sdx + py * sdy);
            float *p = cv->px + 3 * ((size_t)y * cv->w + x);
            for (int k = 0; k < 3; k++) {
                double f = fill[k] * shade;
                f = f > 255 ? 255 : f;
                double col = f + (line[k] - f) * t;
                p[k] += (float)(a * (col - p[k]));
            }
        }
}

static void to_bgr8(const canvas *cv, ot_image *im) {
    size_t n = (size_t)cv->w * cv->h;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            float v = cv->px[3 * i + k];
            v = v < 0 ? 0 : v > 255 ? 255 : v;
            im->px[3 * i + 2 - k] = (uint8_t)lrintf(v);
        }
}

ot_status ot_synth_render(const ot_synth_cfg *c, int split, int64_t index, ot_image *im, ot_image *bg,
                          ot_synth_box *boxes, int *n_boxes, ot_error *err) {
    OT_TRY(ot_synth_cfg_check(c, err));
    int W = cfg_w(c), H = cfg_h(c), side = W < H ? W : H;
    memset(im, 0, sizeof *im);
    if (bg) memset(bg, 0, sizeof *bg);
    *n_boxes = 0;
    canvas cv = {W, H, malloc(sizeof(float) * 3 * (size_t)W * H)};
    cover co;
    memset(&co, 0, sizeof co);
    co.owner = malloc((size_t)W * H);
    if (!cv.px || !co.owner || !ot_image_alloc(im, W, H) || (bg && !ot_image_alloc(bg, W, H))) {
        free(cv.px);
        free(co.owner);
        ot_image_free(im);
        if (bg) ot_image_free(bg);
        return ot_fail(err, OT_ERR_NOMEM, "synth: out of memory for a %dx%d image", W, H);
    }
    memset(co.owner, 0xff, (size_t)W * H); /* -1: no object */
    rng r;
    rng_seed(&r, c->seed, (uint64_t)split, (uint64_t)index);
    ot_status st = draw_background(&cv, &r, err);
    if (st == OT_OK) {
        if (bg) to_bgr8(&cv, bg);
        int want = c->min_obj + below(&r, c->max_obj - c->min_obj + 1), n = 0;
        const double margin = 1;
        for (int o = 0; o < want; o++) {
            int cls = below(&r, c->nc);
            shape s;
            make_shape(&s, cls, side * U(&r, SYNTH_SIZE_LO, SYNTH_SIZE_HI), &r);
            for (int tr = 0; tr < SYNTH_TRIES; tr++) {
                double cx = U(&r, margin - s.ex0, W - margin - s.ex1), cy = U(&r, margin - s.ey0, H - margin - s.ey1);
                ot_synth_box b = {cls, cx + s.ex0, cy + s.ey0, cx + s.ex1, cy + s.ey1};
                int ok = placement_ok(&b, boxes, n);
                if (ok == 0 || (ok == 2 && !cover_ok(&co, &cv, &s, cx, cy, &b, n))) continue;
                draw_shape(&cv, &co, n, &s, cx, cy, &b, &r);
                boxes[n++] = b;
                break;
            }
        }
        *n_boxes = n;
        to_bgr8(&cv, im);
    } else {
        ot_image_free(im);
        if (bg) ot_image_free(bg);
    }
    free(cv.px);
    free(co.owner);
    return st;
}

/* ---- files ---- */
static ot_status mkdir_p(const char *path, ot_error *err) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return ot_fail(err, OT_ERR_INVALID, "synth: path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return ot_fail(err, OT_ERR_IO, "%s: cannot create: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return ot_fail(err, OT_ERR_IO, "%s: cannot create: %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) return ot_fail(err, OT_ERR_IO, "%s: not a folder", buf);
    return OT_OK;
}

/* remove files named <digits>.<ext> (an earlier run's) */
static ot_status clean_dir(const char *dir, const char *ext, ot_error *err) {
    DIR *d = opendir(dir);
    if (!d) return ot_fail(err, OT_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    struct dirent *e;
    ot_status st = OT_OK;
    size_t el = strlen(ext);
    while ((e = readdir(d)) != NULL && st == OT_OK) {
        const char *n = e->d_name;
        size_t k = strspn(n, "0123456789"), len = strlen(n);
        if (k == 0 || len != k + el || strcmp(n + k, ext) != 0) continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, n);
        if (unlink(p) != 0 && errno != ENOENT) st = ot_fail(err, OT_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
    }
    closedir(d);
    return st;
}

static ot_status write_text(const char *path, const char *text, size_t len, ot_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    ot_status st = OT_OK;
    if (len && fwrite(text, 1, len, f) != len) st = ot_fail(err, OT_ERR_IO, "%s: short write", path);
    if (fclose(f) != 0 && st == OT_OK) st = ot_fail(err, OT_ERR_IO, "%s: cannot write", path);
    return st;
}

static const char *const split_dir[2] = {"train", "val"};

typedef struct job {
    const ot_synth_cfg *c;
    const char *dir;
    int64_t total;
    atomic_llong next;
    atomic_llong boxes;
    atomic_int failed;
    pthread_mutex_t mu;
    ot_error err;
} job;

static ot_status make_one(job *j, int split, int64_t i, ot_image *im, ot_synth_box *boxes, int64_t *nb, ot_error *err) {
    int n;
    OT_TRY(ot_synth_render(j->c, split, i, im, NULL, boxes, &n, err));
    char path[PATH_MAX], text[OT_SYNTH_MAX_OBJ * 64 + 1];
    snprintf(path, sizeof path, "%s/images/%s/%06lld.jpg", j->dir, split_dir[split], (long long)i);
    double W = im->w, H = im->h;
    ot_status st = ot_image_write_jpeg(path, im, SYNTH_JPEG_QUALITY, err);
    ot_image_free(im);
    if (st != OT_OK) return st;
    size_t len = 0;
    for (int b = 0; b < n; b++) {
        double x1 = fmax(0, boxes[b].x1), x2 = fmin(W, boxes[b].x2), y1 = fmax(0, boxes[b].y1), y2 = fmin(H, boxes[b].y2);
        len += (size_t)snprintf(text + len, sizeof text - len, "%d %.6f %.6f %.6f %.6f\n", boxes[b].cls, (x1 + x2) / 2 / W,
                                (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H);
    }
    snprintf(path, sizeof path, "%s/labels/%s/%06lld.txt", j->dir, split_dir[split], (long long)i);
    OT_TRY(write_text(path, text, len, err));
    *nb += n;
    return OT_OK;
}

static void *worker(void *arg) {
    job *j = arg;
    ot_synth_box boxes[OT_SYNTH_MAX_OBJ];
    int64_t nb = 0;
    while (!atomic_load(&j->failed)) {
        int64_t k = atomic_fetch_add(&j->next, 1);
        if (k >= j->total) break;
        int split = k < j->c->n_train ? 0 : 1;
        int64_t i = split ? k - j->c->n_train : k;
        ot_image im;
        ot_error e;
        if (make_one(j, split, i, &im, boxes, &nb, &e) != OT_OK) {
            pthread_mutex_lock(&j->mu);
            if (!atomic_load(&j->failed)) { j->err = e; atomic_store(&j->failed, 1); }
            pthread_mutex_unlock(&j->mu);
            break;
        }
    }
    atomic_fetch_add(&j->boxes, nb);
    return NULL;
}

ot_status ot_synth_make(const ot_synth_cfg *c, int64_t *n_boxes, ot_error *err) {
    if (n_boxes) *n_boxes = 0;
    if (!c->out_dir || !*c->out_dir) return ot_fail(err, OT_ERR_INVALID, "synth: no output folder given");
    OT_TRY(ot_synth_cfg_check(c, err));
    OT_TRY(mkdir_p(c->out_dir, err));
    char dir[PATH_MAX], p[PATH_MAX];
    if (!realpath(c->out_dir, dir)) return ot_fail(err, OT_ERR_IO, "%s: cannot resolve: %s", c->out_dir, strerror(errno));
    if (strlen(dir) > PATH_MAX - 64) return ot_fail(err, OT_ERR_INVALID, "%s: path too long", c->out_dir);
    /* data.yaml goes last: an interrupted run leaves none */
    snprintf(p, sizeof p, "%s/data.yaml", dir);
    if (unlink(p) != 0 && errno != ENOENT) return ot_fail(err, OT_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
    for (int s = 0; s < 2; s++) {
        snprintf(p, sizeof p, "%s/images/%s", dir, split_dir[s]);
        OT_TRY(mkdir_p(p, err));
        OT_TRY(clean_dir(p, ".jpg", err));
        snprintf(p, sizeof p, "%s/labels/%s", dir, split_dir[s]);
        OT_TRY(mkdir_p(p, err));
        OT_TRY(clean_dir(p, ".txt", err));
    }

    job j;
    memset(&j, 0, sizeof j);
    j.c = c;
    j.dir = dir;
    j.total = (int64_t)c->n_train + c->n_val;
    atomic_init(&j.next, 0);
    atomic_init(&j.boxes, 0);
    atomic_init(&j.failed, 0);
    pthread_mutex_init(&j.mu, NULL);
    long nt = c->threads;
    if (nt == 0) {
        nt = sysconf(_SC_NPROCESSORS_ONLN);
        if (nt < 1) nt = 1;
        if (nt > 16) nt = 16;
    }
    if (nt > j.total) nt = (long)j.total;
    pthread_t th[256];
    int started = 0;
    for (long t = 1; t < nt; t++)
        if (pthread_create(&th[started], NULL, worker, &j) == 0) started++;
    worker(&j);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&j.mu);
    if (atomic_load(&j.failed)) {
        if (err) *err = j.err;
        return j.err.code;
    }

    /* data.yaml: the folder single-quoted (quotes doubled) */
    char yaml[PATH_MAX * 2 + 512];
    size_t len = (size_t)snprintf(yaml, sizeof yaml,
                                  "# synthetic shapes written by onnx-train data synth: seed %llu, %d train + %d val images of %dx%d\n"
                                  "path: '",
                                  (unsigned long long)c->seed, c->n_train, c->n_val, cfg_w(c), cfg_h(c));
    for (const char *q = dir; *q; q++) {
        if (*q == '\'') yaml[len++] = '\'';
        yaml[len++] = *q;
    }
    len += (size_t)snprintf(yaml + len, sizeof yaml - len, "'\ntrain: images/train\nval: images/val\nnc: %d\nnames: [", c->nc);
    for (int k = 0; k < c->nc; k++) len += (size_t)snprintf(yaml + len, sizeof yaml - len, "%s%s", k ? ", " : "", class_names[k]);
    len += (size_t)snprintf(yaml + len, sizeof yaml - len, "]\n");
    snprintf(p, sizeof p, "%s/data.yaml", dir);
    OT_TRY(write_text(p, yaml, len, err));
    if (n_boxes) *n_boxes = atomic_load(&j.boxes);
    return OT_OK;
}
