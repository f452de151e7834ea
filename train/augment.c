/* augment.c: YOLOv5 augmentation primitives (see augment.h). CPU only; the
 * loader runs them on its worker threads. */
#include "train/augment.h"
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* The per-pixel loops are written for the auto-vectoriser. On x86-64 the
 * hottest ones are also compiled for AVX2 (target_clones: chosen at load time,
 * plain x86-64 elsewhere); AVX2 brings the byte shuffles that de-interleave
 * BGR (SSE2 has none: the loops would stay scalar) and 8 lanes. Same integer
 * and float operations on both paths (no FMA), so the same results. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(OT_NO_TARGET_CLONES)
#define OT_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define OT_SIMD_CLONES
#endif
#define OT_INLINE static inline __attribute__((always_inline))

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void ot_rng_seed(ot_rng *r, uint64_t seed, uint64_t epoch, uint64_t index) {
    uint64_t x = seed;
    x = splitmix64(&x) ^ (epoch * 0xD1B54A32D192ED03ull);
    x = splitmix64(&x) ^ (index * 0xAEF17502108EF2D9ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ot_rng_next(ot_rng *r) {
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

double ot_rng_uniform(ot_rng *r) { return (double)(ot_rng_next(r) >> 11) * 0x1.0p-53; }
double ot_rng_range(ot_rng *r, double a, double b) { return a + (b - a) * ot_rng_uniform(r); }
int64_t ot_rng_below(ot_rng *r, int64_t n) { return n <= 1 ? 0 : (int64_t)(ot_rng_uniform(r) * (double)n); }

static double rng_normal(ot_rng *r) {
    double u1 = ot_rng_uniform(r), u2 = ot_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

/* Marsaglia and Tsang, shape >= 1 */
static double rng_gamma(ot_rng *r, double a) {
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(r), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = ot_rng_uniform(r);
        if (log(1.0 - u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

double ot_rng_beta(ot_rng *r, double a, double b) {
    double x = rng_gamma(r, a), y = rng_gamma(r, b);
    return x / (x + y);
}

/* ---- resizing ---- */

void ot_load_size(int w0, int h0, int img_size, int *w, int *h) {
    double r = (double)img_size / (double)(w0 > h0 ? w0 : h0);
    if (r == 1.0) { *w = w0; *h = h0; return; }
    *w = (int)ceil(w0 * r);
    *h = (int)ceil(h0 * r);
}

/* Source indices and an 11-bit weight per destination coordinate (cv2 INTER_LINEAR rule). */
static void linear_taps(int sn, int dn, int *i0, int *i1, int *w1) {
    double sc = (double)sn / dn;
    for (int d = 0; d < dn; d++) {
        double f = (d + 0.5) * sc - 0.5;
        int i = (int)floor(f);
        double t = f - i;
        if (i < 0) { i = 0; t = 0; }
        if (i >= sn - 1) { i = sn - 1; t = 0; }
        i0[d] = i;
        i1[d] = i + 1 < sn ? i + 1 : sn - 1;
        w1[d] = (int)lrint(t * 2048);
    }
}

void ot_resize_linear(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
    int *xi0 = malloc(sizeof(int) * (size_t)dw * 3), *xi1 = xi0 + dw, *xw = xi1 + dw;
    int *yi0 = malloc(sizeof(int) * (size_t)dh * 3), *yi1 = yi0 + dh, *yw = yi1 + dh;
    int32_t *row0 = malloc(sizeof(int32_t) * (size_t)dw * 3 * 2), *row1 = row0 + (size_t)dw * 3;
    if (!xi0 || !yi0 || !row0) { free(xi0); free(yi0); free(row0); memset(dst, 114, (size_t)dw * dh * 3); return; }
    linear_taps(sw, dw, xi0, xi1, xw);
    linear_taps(sh, dh, yi0, yi1, yw);
    int tag[2] = {-1, -1};
    int32_t *buf[2] = {row0, row1};
    for (int y = 0; y < dh; y++) {
        /* horizontal pass of the two source rows, each computed once and reused */
        int need[2] = {yi0[y], yi1[y]}, slot[2];
        for (int k = 0; k < 2; k++) {
            slot[k] = tag[0] == need[k] ? 0 : tag[1] == need[k] ? 1 : -1;
            if (slot[k] >= 0) continue;
            slot[k] = k == 0 ? (tag[0] == need[1] ? 1 : 0) : 1 - slot[0];
            const uint8_t *s = src + (size_t)need[k] * sw * 3;
            int32_t *o = buf[slot[k]];
            for (int x = 0; x < dw; x++) {
                const uint8_t *a = s + xi0[x] * 3, *b = s + xi1[x] * 3;
                int w = xw[x];
                for (int c = 0; c < 3; c++) o[3 * x + c] = a[c] * (2048 - w) + b[c] * w;
            }
            tag[slot[k]] = need[k];
        }
        const int32_t *ra = buf[slot[0]], *rb = buf[slot[1]];
        int w = yw[y];
        uint8_t *o = dst + (size_t)y * dw * 3;
        for (int i = 0; i < dw * 3; i++) {
            int64_t v = (int64_t)ra[i] * (2048 - w) + (int64_t)rb[i] * w;
            o[i] = (uint8_t)((v + (1 << 21)) >> 22);
        }
    }
    free(xi0);
    free(yi0);
    free(row0);
}

/* Area weights: for destination cell d, the source cells covering [d*sc, (d+1)*sc). */
void ot_resize_area(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
    if (dw >= sw || dh >= sh) { ot_resize_linear(src, sw, sh, dst, dw, dh); return; }
    double sx = (double)sw / dw, sy = (double)sh / dh;
    float *acc = calloc((size_t)dw * 3, sizeof(float)), *hrow = malloc(sizeof(float) * (size_t)dw * 3);
    if (!acc || !hrow) { free(acc); free(hrow); memset(dst, 114, (size_t)dw * dh * 3); return; }
    for (int y = 0; y < dh; y++) {
        double y0 = y * sy, y1 = (y + 1) * sy;
        memset(acc, 0, sizeof(float) * (size_t)dw * 3);
        for (int j = (int)floor(y0); j < sh && j < y1; j++) {
            double wy = fmin(y1, j + 1.0) - fmax(y0, (double)j);
            if (wy <= 1e-9) continue;
            const uint8_t *s = src + (size_t)j * sw * 3;
            for (int x = 0; x < dw; x++) {
                double x0 = x * sx, x1 = (x + 1) * sx;
                float c0 = 0, c1 = 0, c2 = 0;
                for (int i = (int)floor(x0); i < sw && i < x1; i++) {
                    float wx = (float)(fmin(x1, i + 1.0) - fmax(x0, (double)i));
                    c0 += wx * s[3 * i]; c1 += wx * s[3 * i + 1]; c2 += wx * s[3 * i + 2];
                }
                hrow[3 * x] = c0; hrow[3 * x + 1] = c1; hrow[3 * x + 2] = c2;
            }
            for (int i = 0; i < dw * 3; i++) acc[i] += (float)wy * hrow[i];
        }
        float inv = (float)(1.0 / (sx * sy));
        uint8_t *o = dst + (size_t)y * dw * 3;
        for (int i = 0; i < dw * 3; i++) {
            long v = lrintf(acc[i] * inv);
            o[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(acc);
    free(hrow);
}

/* ---- letterbox ---- */

void ot_letterbox_geom(int in_w, int in_h, int out_w, int out_h, bool scaleup, ot_lbox *g) {
    double r = fmin((double)out_h / in_h, (double)out_w / in_w);
    if (!scaleup) r = fmin(r, 1.0);
    g->in_w = in_w;
    g->in_h = in_h;
    g->out_w = out_w;
    g->out_h = out_h;
    g->ratio = r;
    g->new_w = (int)nearbyint(in_w * r); /* Python round(): half to even */
    g->new_h = (int)nearbyint(in_h * r);
    g->dw = (out_w - g->new_w) / 2.0;
    g->dh = (out_h - g->new_h) / 2.0;
    g->top = (int)nearbyint(g->dh - 0.1);
    g->left = (int)nearbyint(g->dw - 0.1);
}

void ot_letterbox(const uint8_t *src, const ot_lbox *g, uint8_t *dst) {
    memset(dst, 114, (size_t)g->out_w * g->out_h * 3);
    const uint8_t *rs = src;
    uint8_t *tmp = NULL;
    if (g->new_w != g->in_w || g->new_h != g->in_h) {
        tmp = malloc((size_t)g->new_w * g->new_h * 3);
        if (!tmp) return;
        ot_resize_linear(src, g->in_w, g->in_h, tmp, g->new_w, g->new_h);
        rs = tmp;
    }
    for (int y = 0; y < g->new_h; y++) {
        int oy = y + g->top;
        if (oy < 0 || oy >= g->out_h) continue;
        int x0 = g->left < 0 ? -g->left : 0, x1 = g->new_w;
        if (g->left + x1 > g->out_w) x1 = g->out_w - g->left;
        if (x1 > x0) memcpy(dst + ((size_t)oy * g->out_w + g->left + x0) * 3, rs + ((size_t)y * g->new_w + x0) * 3, (size_t)(x1 - x0) * 3);
    }
    free(tmp);
}

/* ---- random_perspective ---- */

static void matmul3(const double *a, const double *b, double *c) {
    double t[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) t[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
    memcpy(c, t, sizeof t);
}

void ot_perspective_draw(ot_rng *r, const ot_hyp *h, int in_w, int in_h, int border, ot_persp *p) {
    int height = in_h + border * 2, width = in_w + border * 2;
    double C[9] = {1, 0, -in_w / 2.0, 0, 1, -in_h / 2.0, 0, 0, 1};
    double P[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    P[6] = ot_rng_range(r, -h->perspective, h->perspective);
    P[7] = ot_rng_range(r, -h->perspective, h->perspective);
    double a = ot_rng_range(r, -h->degrees, h->degrees);
    double s = ot_rng_range(r, 1 - h->scale, 1 + h->scale);
    double al = s * cos(a * M_PI / 180), be = s * sin(a * M_PI / 180); /* cv2.getRotationMatrix2D */
    double R[9] = {al, be, 0, -be, al, 0, 0, 0, 1};
    double S[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    S[1] = tan(ot_rng_range(r, -h->shear, h->shear) * M_PI / 180);
    S[3] = tan(ot_rng_range(r, -h->shear, h->shear) * M_PI / 180);
    double T[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    T[2] = ot_rng_range(r, 0.5 - h->translate, 0.5 + h->translate) * width;
    T[5] = ot_rng_range(r, 0.5 - h->translate, 0.5 + h->translate) * height;
    double M[9];
    matmul3(T, S, M);
    matmul3(M, R, M);
    matmul3(M, P, M);
    matmul3(M, C, M);
    memcpy(p->M, M, sizeof M);
    p->s = s;
    p->perspective = h->perspective != 0;
    static const double I[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    p->warp = border != 0 || memcmp(M, I, sizeof I) != 0;
    for (int i = 0; i < 9 && !p->warp; i++) p->warp = M[i] != I[i];
    p->out_w = width;
    p->out_h = height;
}

static bool inv3(const double *m, double *o) {
    double d = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
    if (d == 0 || !isfinite(d)) return false;
    double id = 1 / d;
    o[0] = (m[4] * m[8] - m[5] * m[7]) * id; o[1] = (m[2] * m[7] - m[1] * m[8]) * id; o[2] = (m[1] * m[5] - m[2] * m[4]) * id;
    o[3] = (m[5] * m[6] - m[3] * m[8]) * id; o[4] = (m[0] * m[8] - m[2] * m[6]) * id; o[5] = (m[2] * m[3] - m[0] * m[5]) * id;
    o[6] = (m[3] * m[7] - m[4] * m[6]) * id; o[7] = (m[1] * m[6] - m[0] * m[7]) * id; o[8] = (m[0] * m[4] - m[1] * m[3]) * id;
    return true;
}

/* One output pixel from source position (X, Y) in 16.16 fixed point. */
static inline void sample_fx(const uint8_t *src, int sw, int sh, int32_t X, int32_t Y, uint8_t *o) {
    int ix = X >> 16, iy = Y >> 16;
    int fx = (X >> 8) & 255, fy = (Y >> 8) & 255;
    int w00 = (256 - fx) * (256 - fy), w01 = fx * (256 - fy), w10 = (256 - fx) * fy, w11 = fx * fy;
    if (ix >= 0 && iy >= 0 && ix < sw - 1 && iy < sh - 1) {
        const uint8_t *p = src + ((size_t)iy * sw + ix) * 3, *q = p + (size_t)sw * 3;
        for (int c = 0; c < 3; c++) o[c] = (uint8_t)((p[c] * w00 + p[c + 3] * w01 + q[c] * w10 + q[c + 3] * w11 + 32768) >> 16);
        return;
    }
    if (ix < -1 || iy < -1 || ix >= sw || iy >= sh) { o[0] = o[1] = o[2] = 114; return; }
    static const uint8_t fill[3] = {114, 114, 114};
    bool x0 = ix >= 0, x1 = ix + 1 < sw, y0 = iy >= 0, y1 = iy + 1 < sh;
    const uint8_t *p00 = x0 && y0 ? src + ((size_t)iy * sw + ix) * 3 : fill;
    const uint8_t *p01 = x1 && y0 ? src + ((size_t)iy * sw + ix + 1) * 3 : fill;
    const uint8_t *p10 = x0 && y1 ? src + ((size_t)(iy + 1) * sw + ix) * 3 : fill;
    const uint8_t *p11 = x1 && y1 ? src + ((size_t)(iy + 1) * sw + ix + 1) * 3 : fill;
    for (int c = 0; c < 3; c++) o[c] = (uint8_t)((p00[c] * w00 + p01[c] * w01 + p10[c] * w10 + p11[c] * w11 + 32768) >> 16);
}

/* Axis-aligned affine (no rotation or shear: the default hyp): separable.
 * Each source row needed is interpolated horizontally once into 8.8 fixed
 * point (uint16), then output rows blend two of those (vectorisable). The
 * horizontal taps of the columns whose two taps are inside ([xa, xb)) run two
 * pixels a step in SSE2 where available: 8 bytes from the left tap (B G R of
 * both taps and 2 spare bytes, read only where they lie inside the row) times
 * kw[x] = (256-w, 256-w, 256-w, w, w, w, 0, 0), the two halves added. Same
 * integers as the scalar loop. o has 2 spare elements at its end. */
OT_INLINE void hpass(const uint8_t *row, int sw, const int *xi, const int *xw, const int16_t *kw, int xa, int xb,
                     int ow, uint16_t *o) {
    if (!row) { for (int i = 0; i < ow * 3; i++) o[i] = 114 * 256; return; }
    for (int x = 0; x < ow; x++) {
        if (x == xa && xb > xa) {
#if defined(__SSE2__)
            const __m128i zero = _mm_setzero_si128(), low3 = _mm_setr_epi16(-1, -1, -1, 0, 0, 0, 0, 0);
            for (; x + 2 <= xb && xi[x] + 3 <= sw && xi[x + 1] + 3 <= sw; x += 2) { /* 8-byte reads inside the row */
                __m128i pa = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(row + 3 * xi[x])), zero);
                __m128i pb = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(row + 3 * xi[x + 1])), zero);
                pa = _mm_mullo_epi16(pa, _mm_load_si128((const __m128i *)(const void *)(kw + 8 * x)));
                pb = _mm_mullo_epi16(pb, _mm_load_si128((const __m128i *)(const void *)(kw + 8 * x + 8)));
                pa = _mm_add_epi16(pa, _mm_srli_si128(pa, 6)); /* lanes 0..2: the pixel (<= 65280) */
                pb = _mm_add_epi16(pb, _mm_srli_si128(pb, 6));
                /* lanes 6, 7 spill into pixel x + 2, written after this */
                _mm_storeu_si128((__m128i *)(void *)(o + 3 * x), _mm_or_si128(_mm_and_si128(pa, low3), _mm_slli_si128(pb, 6)));
            }
#endif
            for (; x < xb; x++) {
                const uint8_t *p = row + 3 * xi[x];
                int w = xw[x], v = 256 - w;
                o[3 * x] = (uint16_t)(p[0] * v + p[3] * w);
                o[3 * x + 1] = (uint16_t)(p[1] * v + p[4] * w);
                o[3 * x + 2] = (uint16_t)(p[2] * v + p[5] * w);
            }
            if (x >= ow) break;
        }
        int ix = xi[x], w = xw[x];
        for (int c = 0; c < 3; c++) {
            int a = ix >= 0 && ix < sw ? row[3 * ix + c] : 114, b = ix + 1 >= 0 && ix + 1 < sw ? row[3 * (ix + 1) + c] : 114;
            o[3 * x + c] = (uint16_t)(a * (256 - w) + b * w);
        }
    }
}

/* src rows come from src, or from rowfn when src is NULL (rowbuf: its scratch row). */
OT_SIMD_CLONES static void warp_axis(const uint8_t *src, ot_row_fn rowfn, void *ctx, uint8_t *rowbuf, int sw, int sh,
                                     const double *Mi, int ow, int oh, uint8_t *dst) {
    int *xi = malloc(sizeof(int) * 2 * (size_t)ow);
    uint16_t *buf = malloc(sizeof(uint16_t) * (6 * (size_t)ow + 4));
    int16_t *kw = aligned_alloc(16, sizeof(int16_t) * 8 * ((size_t)ow + 1));
    if (!xi || !buf || !kw) { free(xi); free(buf); free(kw); memset(dst, 114, (size_t)ow * oh * 3); return; }
    int *xw = xi + ow;
    int xa = -1, xb = -1; /* the run of columns whose two taps are inside */
    for (int x = 0; x < ow; x++) {
        double X = Mi[0] * x + Mi[2];
        if (!(X > -2 && X < sw + 1)) X = -3; /* both taps outside */
        int64_t f = (int64_t)floor(X * 256 + 0.5);
        xi[x] = (int)(f >> 8);
        xw[x] = (int)(f & 255);
        for (int k = 0; k < 8; k++) kw[8 * x + k] = (int16_t)(k < 3 ? 256 - xw[x] : k < 6 ? xw[x] : 0);
        if (xi[x] >= 0 && xi[x] + 1 < sw) { if (xa < 0) xa = x; xb = x + 1; }
    }
    for (int x = xa; x >= 0 && x < xb; x++)
        if (!(xi[x] >= 0 && xi[x] + 1 < sw)) { xb = x; break; } /* monotone map: one run */
    uint16_t *rb[2] = {buf, buf + 3 * (size_t)ow + 2};
    int tag[2] = {-100, -100};
    for (int y = 0; y < oh; y++) {
        uint8_t *o = dst + (size_t)y * ow * 3;
        double Y = Mi[4] * y + Mi[5];
        if (!(Y > -2 && Y < sh + 1)) { memset(o, 114, (size_t)ow * 3); continue; }
        int64_t f = (int64_t)floor(Y * 256 + 0.5);
        int iy = (int)(f >> 8), fy = (int)(f & 255);
        int need[2] = {iy, iy + 1}, slot[2];
        for (int k = 0; k < 2; k++) {
            slot[k] = tag[0] == need[k] ? 0 : tag[1] == need[k] ? 1 : -1;
            if (slot[k] >= 0) continue;
            slot[k] = k == 0 ? (tag[0] == need[1] ? 1 : 0) : 1 - slot[0];
            const uint8_t *row = need[k] < 0 || need[k] >= sh ? NULL
                                 : src ? src + (size_t)need[k] * sw * 3 : rowfn(ctx, need[k], rowbuf);
            hpass(row, sw, xi, xw, kw, xa, xb, ow, rb[slot[k]]);
            tag[slot[k]] = need[k];
        }
        const uint16_t *restrict r0 = rb[slot[0]], *restrict r1 = rb[slot[1]];
        uint32_t w1 = (uint32_t)fy, w0 = 256 - w1;
        for (int i = 0; i < ow * 3; i++) o[i] = (uint8_t)((r0[i] * w0 + r1[i] * w1 + 32768) >> 16);
    }
    free(xi);
    free(buf);
    free(kw);
}

void ot_warp(const uint8_t *src, int sw, int sh, const ot_persp *p, uint8_t *dst) {
    int ow = p->out_w, oh = p->out_h;
    double Mi[9];
    if (!inv3(p->M, Mi)) { memset(dst, 114, (size_t)ow * oh * 3); return; }
    if (!p->perspective && Mi[1] == 0 && Mi[3] == 0) { warp_axis(src, NULL, NULL, NULL, sw, sh, Mi, ow, oh, dst); return; }
    for (int y = 0; y < oh; y++) {
        uint8_t *o = dst + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++) {
            double W = p->perspective ? Mi[6] * x + Mi[7] * y + Mi[8] : 1.0;
            double X = (Mi[0] * x + Mi[1] * y + Mi[2]) / W, Y = (Mi[3] * x + Mi[4] * y + Mi[5]) / W;
            if (!(X > -2 && Y > -2 && X < sw + 1 && Y < sh + 1)) { o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = 114; continue; }
            sample_fx(src, sw, sh, (int32_t)floor(X * 65536 + 0.5), (int32_t)floor(Y * 65536 + 0.5), o + 3 * x);
        }
    }
}

bool ot_warp_axis_src_rows(const ot_persp *p, int sh, int *y0, int *y1) {
    double Mi[9];
    if (p->perspective || !inv3(p->M, Mi) || Mi[1] != 0 || Mi[3] != 0) return false;
    *y0 = sh;
    *y1 = 0;
    for (int y = 0; y < p->out_h; y++) { /* as warp_axis asks */
        double Y = Mi[4] * y + Mi[5];
        if (!(Y > -2 && Y < sh + 1)) continue;
        int iy = (int)((int64_t)floor(Y * 256 + 0.5) >> 8);
        for (int k = iy; k <= iy + 1; k++)
            if (k >= 0 && k < sh) { *y0 = k < *y0 ? k : *y0; *y1 = k + 1 > *y1 ? k + 1 : *y1; }
    }
    if (*y1 <= *y0) *y0 = *y1 = 0;
    return true;
}

bool ot_warp_axis_rows(ot_row_fn rowfn, void *ctx, int sw, int sh, const ot_persp *p, uint8_t *dst) {
    double Mi[9];
    if (p->perspective || !inv3(p->M, Mi) || Mi[1] != 0 || Mi[3] != 0) return false;
    uint8_t *rowbuf = calloc((size_t)sw * 3 + 16, 1);
    if (!rowbuf) return false;
    warp_axis(NULL, rowfn, ctx, rowbuf, sw, sh, Mi, p->out_w, p->out_h, dst);
    free(rowbuf);
    return true;
}

bool ot_box_candidate(const ot_box *b1, const ot_box *b2, double wh_thr, double ar_thr, double area_thr) {
    const double eps = 1e-16;
    double w1 = b1->x2 - b1->x1, h1 = b1->y2 - b1->y1, w2 = b2->x2 - b2->x1, h2 = b2->y2 - b2->y1;
    double ar = fmax(w2 / (h2 + eps), h2 / (w2 + eps));
    return w2 > wh_thr && h2 > wh_thr && w2 * h2 / (w1 * h1 + eps) > area_thr && ar < ar_thr;
}

int ot_warp_boxes(ot_box *b, int n, const ot_persp *p) {
    const double *M = p->M;
    int k = 0;
    for (int i = 0; i < n; i++) {
        double cx[4] = {b[i].x1, b[i].x2, b[i].x1, b[i].x2}, cy[4] = {b[i].y1, b[i].y2, b[i].y2, b[i].y1};
        double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
        for (int c = 0; c < 4; c++) {
            double X = M[0] * cx[c] + M[1] * cy[c] + M[2], Y = M[3] * cx[c] + M[4] * cy[c] + M[5];
            if (p->perspective) {
                double W = M[6] * cx[c] + M[7] * cy[c] + M[8];
                X /= W;
                Y /= W;
            }
            x0 = fmin(x0, X); x1 = fmax(x1, X); y0 = fmin(y0, Y); y1 = fmax(y1, Y);
        }
        ot_box nb = {b[i].cls, fmin(fmax(x0, 0), p->out_w), fmin(fmax(y0, 0), p->out_h),
                     fmin(fmax(x1, 0), p->out_w), fmin(fmax(y1, 0), p->out_h)};
        ot_box sb = {b[i].cls, b[i].x1 * p->s, b[i].y1 * p->s, b[i].x2 * p->s, b[i].y2 * p->s};
        if (ot_box_candidate(&sb, &nb, 2, 100, 0.10)) b[k++] = nb;
    }
    return k;
}

/* ---- mosaic ---- */

static int imax(int a, int b) { return a > b ? a : b; }
static int imin(int a, int b) { return a < b ? a : b; }

ot_mosaic_tile ot_mosaic_place(int i, int xc, int yc, int w, int h, int s) {
    ot_mosaic_tile t;
    switch (i) {
    case 0: /* top left */
        t.x1a = imax(xc - w, 0); t.y1a = imax(yc - h, 0); t.x2a = xc; t.y2a = yc;
        t.x1b = w - (t.x2a - t.x1a); t.y1b = h - (t.y2a - t.y1a); t.x2b = w; t.y2b = h;
        break;
    case 1: /* top right */
        t.x1a = xc; t.y1a = imax(yc - h, 0); t.x2a = imin(xc + w, s * 2); t.y2a = yc;
        t.x1b = 0; t.y1b = h - (t.y2a - t.y1a); t.x2b = imin(w, t.x2a - t.x1a); t.y2b = h;
        break;
    case 2: /* bottom left */
        t.x1a = imax(xc - w, 0); t.y1a = yc; t.x2a = xc; t.y2a = imin(s * 2, yc + h);
        t.x1b = w - (t.x2a - t.x1a); t.y1b = 0; t.x2b = w; t.y2b = imin(t.y2a - t.y1a, h);
        break;
    default: /* bottom right */
        t.x1a = xc; t.y1a = yc; t.x2a = imin(xc + w, s * 2); t.y2a = imin(s * 2, yc + h);
        t.x1b = 0; t.y1b = 0; t.x2b = imin(w, t.x2a - t.x1a); t.y2b = imin(t.y2a - t.y1a, h);
        break;
    }
    return t;
}

/* ---- colour ---- */

enum { HSV_SHIFT = 12 };
static int sdiv_table[256], hdiv_table[256];
static void hsv_tables(void) {
    if (sdiv_table[1]) return; /* idempotent; racing initialisations write the same values */
    for (int i = 1; i < 256; i++) {
        hdiv_table[i] = (int)lrint((180 << HSV_SHIFT) / (6.0 * i));
        sdiv_table[i] = (int)lrint((255 << HSV_SHIFT) / (1.0 * i));
    }
}

static inline void bgr2hsv_px(int b, int g, int r, int *ho, int *so, int *vo) {
    int v = b, vmin = b;
    if (g > v) v = g;
    if (r > v) v = r;
    if (g < vmin) vmin = g;
    if (r < vmin) vmin = r;
    int diff = v - vmin;
    int vr = v == r ? -1 : 0, vg = v == g ? -1 : 0;
    int s = (diff * sdiv_table[v] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
    int h = (vr & (g - b)) + (~vr & ((vg & (b - r + 2 * diff)) + ((~vg) & (r - g + 4 * diff))));
    h = (h * hdiv_table[diff] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
    h += h < 0 ? 180 : 0;
    *ho = h;
    *so = s;
    *vo = v;
}

static inline uint8_t sat8(float x) { /* x >= 0: round half up (cvRound differs only at exact .5) */
    return x >= 255.f ? 255 : (uint8_t)(int)(x + 0.5f);
}

static const int sector_data[6][3] = {{1, 3, 0}, {1, 0, 2}, {3, 0, 1}, {0, 2, 1}, {0, 1, 3}, {2, 1, 0}};

/* cv2 HSV2BGR (8-bit: h in 0..180 scaled by 6/180, s and v by 1/255, result *255 rounded) */
static inline void hsv2bgr_px(int hi, int si, int vi, uint8_t *o) {
    if (si == 0) { o[0] = o[1] = o[2] = (uint8_t)vi; return; }
    float s = (float)si * (1.f / 255.f), v = (float)vi * (1.f / 255.f);
    float h = (float)hi * (6.f / 180.f);
    if (h >= 6.f) h -= 6.f;
    int sector = (int)h;
    h -= (float)sector;
    if ((unsigned)sector >= 6u) { sector = 0; h = 0.f; }
    float tab[4] = {v, v * (1.f - s), v * (1.f - s * h), v * (1.f - s * (1.f - h))};
    o[0] = sat8(tab[sector_data[sector][0]] * 255.f);
    o[1] = sat8(tab[sector_data[sector][1]] * 255.f);
    o[2] = sat8(tab[sector_data[sector][2]] * 255.f);
}

void ot_bgr2hsv(const uint8_t bgr[3], uint8_t hsv[3]) {
    hsv_tables();
    int h, s, v;
    bgr2hsv_px(bgr[0], bgr[1], bgr[2], &h, &s, &v);
    hsv[0] = (uint8_t)h; hsv[1] = (uint8_t)s; hsv[2] = (uint8_t)v;
}

void ot_hsv2bgr(const uint8_t hsv[3], uint8_t bgr[3]) { hsv2bgr_px(hsv[0], hsv[1], hsv[2], bgr); }

/* augment_hsv as per-sample tables: the hue, saturation and value LUTs of
 * Ultralytics, folded with cv2's HSV2BGR constants. */
typedef struct hsv_lut {
    float H6[256]; /* lh[h] * 6/180 wrapped to [0, 6): sector = (int)H6, fraction = H6 - sector */
    float S[256];  /* ls[s] / 255 */
    float V[256];  /* lv[v] / 255 * 255 (cv2's float round trip) */
    bool arith;    /* the usual gains: the same values computed in SIMD, no look-ups */
    double rh, rs, rv;
} hsv_lut;

static void hsv_lut_init(hsv_lut *t, double rh, double rs, double rv) {
    for (int x = 0; x < 256; x++) {
        int lh = (int)fmod(x * rh, 180.0);
        double s = x * rs, v = x * rv;
        int ls = s < 0 ? 0 : s > 255 ? 255 : (int)s, lv = v < 0 ? 0 : v > 255 ? 255 : (int)v;
        float h = (float)(uint8_t)lh * (6.f / 180.f);
        if (h >= 6.f) h -= 6.f;
        if (!(h >= 0.f && h < 6.f)) h = 0.f;
        t->H6[x] = h;
        t->S[x] = (float)ls * (1.f / 255.f);
        t->V[x] = (float)lv * (1.f / 255.f) * 255.f;
    }
    /* h * rh < 360 (then fmod is one subtraction); s * rs and v * rv in int32
     * range after clamping the gains to [-1, 256], which clips the same */
    t->arith = rh >= 0 && rh < 2 && isfinite(rs) && isfinite(rv);
    t->rh = rh;
    t->rs = fmin(fmax(rs, -1.0), 256.0);
    t->rv = fmin(fmax(rv, -1.0), 256.0);
}

enum { HSV_BLK = 256 };

static inline uint32_t fbits(float f) { union { float f; uint32_t u; } x = {.f = f}; return x.u; }
static inline float bitsf(uint32_t u) { union { uint32_t u; float f; } x = {.u = u}; return x.f; }

/* cv2's integer BGR2HSV for n pixels (vectorisable: the two divisions of
 * cv2's tables, round((255 << 12) / v) and round((180 << 12) / (6 diff)), are
 * recomputed in float, which rounds to the same integers for divisors <= 255). */
OT_INLINE void bgr2hsv_block(const uint8_t *restrict px, int n, int32_t *restrict ho, int32_t *restrict so,
                          int32_t *restrict vo) {
    int32_t dd[HSV_BLK];
    for (int i = 0; i < n; i++) { /* V, V - min and the hue numerator */
        int b = px[3 * i], g = px[3 * i + 1], r = px[3 * i + 2];
        int v = b > g ? b : g;
        v = v > r ? v : r;
        int vmin = b < g ? b : g;
        vmin = vmin < r ? vmin : r;
        int diff = v - vmin;
        int vr = v == r ? -1 : 0, vg = v == g ? -1 : 0;
        ho[i] = (vr & (g - b)) + (~vr & ((vg & (b - r + 2 * diff)) + ((~vg) & (r - g + 4 * diff))));
        vo[i] = v;
        dd[i] = diff;
    }
    const float magic = 12582912.f; /* 1.5 * 2^23: x + magic - magic rounds half to even */
    for (int i = 0; i < n; i++) { /* in 32-bit lanes: int32 -> float converts in SIMD */
        int32_t v = vo[i], diff = dd[i];
        float qs = (float)(255 << HSV_SHIFT) / (float)(v | (v == 0)); /* v or 1 */
        float qh = (float)((180 << HSV_SHIFT) / 6) / (float)(diff | (diff == 0));
        int32_t sd = (int32_t)((qs + magic) - magic) & -(int32_t)(v > 0);
        int32_t hd = (int32_t)((qh + magic) - magic) & -(int32_t)(diff > 0);
        so[i] = (diff * sd + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
        int32_t h = (ho[i] * hd + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
        ho[i] = h + (h < 0 ? 180 : 0);
    }
}

/* The augmented pixel before rounding, one plane per channel (B, G, R), for n
 * pixels; cv2 HSV2BGR with the branches turned into selects. */
OT_INLINE void hsv_block(const uint8_t *restrict px, int n, const hsv_lut *restrict t, float *restrict ob,
                      float *restrict og, float *restrict orr) {
    int32_t hi[HSV_BLK], si[HSV_BLK], vi[HSV_BLK];
    float Hf[HSV_BLK], Sf[HSV_BLK], Vf[HSV_BLK];
    bgr2hsv_block(px, n, hi, si, vi);
    if (t->arith) {
        const double rh = t->rh, rs = t->rs, rv = t->rv;
        for (int i = 0; i < n; i++) { /* the LUT entries of hsv_lut_init, computed */
            int32_t lh = (int32_t)((double)hi[i] * rh); /* (int)fmod(h * rh, 180) for h * rh < 360 */
            lh -= 180 & -(int32_t)(lh >= 180);
            int32_t ls = (int32_t)((double)si[i] * rs), lv = (int32_t)((double)vi[i] * rv);
            ls = ls < 0 ? 0 : ls > 255 ? 255 : ls;
            lv = lv < 0 ? 0 : lv > 255 ? 255 : lv;
            Hf[i] = (float)lh * (6.f / 180.f);
            Sf[i] = (float)ls * (1.f / 255.f);
            Vf[i] = (float)lv * (1.f / 255.f) * 255.f;
        }
    } else {
        for (int i = 0; i < n; i++) { /* table look-ups */
            Hf[i] = t->H6[hi[i] & 255];
            Sf[i] = t->S[si[i] & 255];
            Vf[i] = t->V[vi[i] & 255];
        }
    }
    for (int i = 0; i < n; i++) {
        float H = Hf[i], S = Sf[i], V = Vf[i];
        int sec = (int)H;
        float f = H - (float)sec;
        float t0 = V, t1 = V * (1.f - S), t2 = V * (1.f - S * f), t3 = V * (1.f - S * (1.f - f));
        /* sectors 0..5: (b, g, r) = (t1,t3,t0) (t1,t0,t2) (t3,t0,t1) (t0,t2,t1) (t0,t1,t3) (t2,t1,t0),
         * selected with bit masks (integer selects vectorise where float ones may not) */
        uint32_t u0 = fbits(t0), u1 = fbits(t1), u2 = fbits(t2), u3 = fbits(t3);
        uint32_t m0 = -(uint32_t)(sec == 0), m1 = -(uint32_t)(sec == 1), m2 = -(uint32_t)(sec == 2),
                 m3 = -(uint32_t)(sec == 3), m4 = -(uint32_t)(sec == 4), m5 = -(uint32_t)(sec >= 5);
        ob[i] = bitsf((u1 & (m0 | m1)) | (u3 & m2) | (u0 & (m3 | m4)) | (u2 & m5));
        og[i] = bitsf((u3 & m0) | (u0 & (m1 | m2)) | (u2 & m3) | (u1 & (m4 | m5)));
        orr[i] = bitsf((u0 & (m0 | m5)) | (u2 & m1) | (u1 & (m2 | m3)) | (u3 & m4));
    }
}

/* sat8 of the pixel as an integer (0 <= x < 2^30: round half up, 255 at most) */
static inline int sat8i(float x) {
    int i = (int)(x + 0.5f);
    return i < 255 ? i : 255;
}

OT_SIMD_CLONES void ot_augment_hsv(uint8_t *im, int64_t npx, double rh, double rs, double rv) {
    hsv_lut t;
    hsv_lut_init(&t, rh, rs, rv);
    float b[HSV_BLK], g[HSV_BLK], r[HSV_BLK];
    for (int64_t i = 0; i < npx; i += HSV_BLK) {
        int n = npx - i < HSV_BLK ? (int)(npx - i) : HSV_BLK;
        uint8_t *p = im + 3 * i;
        hsv_block(p, n, &t, b, g, r);
        for (int k = 0; k < n; k++) {
            p[3 * k] = (uint8_t)sat8i(b[k]);
            p[3 * k + 1] = (uint8_t)sat8i(g[k]);
            p[3 * k + 2] = (uint8_t)sat8i(r[k]);
        }
    }
}

/* Copy n floats to the batch with non-temporal stores where aligned (the
 * batch is written once and is much larger than the caches: no read for
 * ownership, no eviction of the source pixels). Needs an sfence after. */
OT_INLINE void store_stream(float *restrict d, const float *restrict s, int n) {
    int i = 0;
#if defined(__SSE2__)
    for (; i < n && ((uintptr_t)(d + i) & 15); i++) d[i] = s[i];
    for (; i + 4 <= n; i += 4) _mm_stream_ps(d + i, _mm_loadu_ps(s + i));
#endif
    for (; i < n; i++) d[i] = s[i];
}

/* One output row of n pixels from src (BGR HWC) into three planes, the
 * columns reversed when flip_lr. */
OT_INLINE void chw_row(const uint8_t *restrict s, int n, bool flip_lr, float *restrict r, float *restrict g,
                    float *restrict b) {
    const float k = 1.f / 255.f;
    if (!flip_lr)
        for (int x = 0; x < n; x++) { b[x] = s[3 * x] * k; g[x] = s[3 * x + 1] * k; r[x] = s[3 * x + 2] * k; }
    else
        for (int x = 0; x < n; x++) { b[n - 1 - x] = s[3 * x] * k; g[n - 1 - x] = s[3 * x + 1] * k; r[n - 1 - x] = s[3 * x + 2] * k; }
}

OT_SIMD_CLONES void ot_hwc_to_chw(const uint8_t *src, int w, int h, bool flip_lr, bool flip_ud, float *dst) {
    size_t plane = (size_t)w * h;
    for (int y = 0; y < h; y++) {
        float *r = dst + (size_t)y * w;
        chw_row(src + (size_t)(flip_ud ? h - 1 - y : y) * w * 3, w, flip_lr, r, r + plane, r + 2 * plane);
    }
}

OT_SIMD_CLONES void ot_hsv_to_chw(const uint8_t *src, int w, int h, const double *gains, bool flip_lr, bool flip_ud, float *dst) {
    if (!gains) { ot_hwc_to_chw(src, w, h, flip_lr, flip_ud, dst); return; }
    hsv_lut t;
    hsv_lut_init(&t, gains[0], gains[1], gains[2]);
    const float k = 1.f / 255.f;
    size_t plane = (size_t)w * h;
    float fb[HSV_BLK], fg[HSV_BLK], fr[HSV_BLK];
    for (int y = 0; y < h; y++) {
        const uint8_t *s = src + (size_t)(flip_ud ? h - 1 - y : y) * w * 3;
        float *R = dst + (size_t)y * w, *G = R + plane, *B = G + plane;
        for (int x0 = 0; x0 < w; x0 += HSV_BLK) {
            int n = w - x0 < HSV_BLK ? w - x0 : HSV_BLK;
            hsv_block(s + 3 * x0, n, &t, fb, fg, fr);
            float ob[HSV_BLK], og[HSV_BLK], orr[HSV_BLK]; /* in destination order */
            if (!flip_lr) {
                for (int i = 0; i < n; i++) {
                    ob[i] = (float)sat8i(fb[i]) * k;
                    og[i] = (float)sat8i(fg[i]) * k;
                    orr[i] = (float)sat8i(fr[i]) * k;
                }
            } else {
                for (int i = 0; i < n; i++) {
                    ob[n - 1 - i] = (float)sat8i(fb[i]) * k;
                    og[n - 1 - i] = (float)sat8i(fg[i]) * k;
                    orr[n - 1 - i] = (float)sat8i(fr[i]) * k;
                }
            }
            int d0 = flip_lr ? w - x0 - n : x0;
            store_stream(B + d0, ob, n);
            store_stream(G + d0, og, n);
            store_stream(R + d0, orr, n);
        }
    }
#if defined(__SSE2__)
    _mm_sfence(); /* the streamed stores before the batch is handed over */
#endif
}

void ot_mixup(uint8_t *im, const uint8_t *im2, int64_t n, double r) {
    for (int64_t i = 0; i < n; i++) im[i] = (uint8_t)(int)(im[i] * r + im2[i] * (1 - r));
}

void ot_boxes_to_xywhn(const ot_box *b, int n, int w, int h, float *rows) {
    const double eps = 1e-3;
    for (int i = 0; i < n; i++) {
        double x1 = fmin(fmax(b[i].x1, 0), w - eps), x2 = fmin(fmax(b[i].x2, 0), w - eps);
        double y1 = fmin(fmax(b[i].y1, 0), h - eps), y2 = fmin(fmax(b[i].y2, 0), h - eps);
        rows[5 * i] = (float)b[i].cls;
        rows[5 * i + 1] = (float)(((x1 + x2) / 2) / w);
        rows[5 * i + 2] = (float)(((y1 + y2) / 2) / h);
        rows[5 * i + 3] = (float)((x2 - x1) / w);
        rows[5 * i + 4] = (float)((y2 - y1) / h);
    }
}
