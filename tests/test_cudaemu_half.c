/* test_cudaemu_half.c (ctest label cudaemu): mixed precision's device pieces
 * under the CPU executor (kernels/cuda/amp.cu, the executor's own __half and
 * __nv_bfloat16 in kernels/cuda/compat.h):
 *
 * - conversions, against the definitions: every one of the 65536 half and
 *   bfloat16 patterns to float is its exact value (sign * 2^e * 1.m, the
 *   subnormals, the infinities; NaN -> the canonical 0x7fffffff for half, the
 *   pattern shifted for bfloat16); float to half / bfloat16 rounds to the
 *   nearest representable value, ties to the even pattern, overflowing to
 *   infinity past the largest finite value by half a unit (the oracle searches
 *   the patterns in double arithmetic), NaN -> 0x7fff. Inputs: every pattern's
 *   value, the midpoints between neighbours and the floats just beside them,
 *   the specials, and 2^21 random bit patterns;
 * - where the CUDA headers are present (tests/cuda_fp16_ref.cpp, OT_FP16_REF):
 *   the same inputs give the bits of cuda_fp16.h's and cuda_bf16.h's own host
 *   __float2half_rn, __half2float, __float2bfloat16_rn, __bfloat162float;
 * - round_half is the round trip, in place too; half_accumulate (a half
 *   gradient written or added into an FP32 one, then rounded or not) and
 *   round_add are their definitions, bit for bit;
 * - the channels-last copies (half_nhwc, half_from_nhwc) are the same
 *   conversions transposed, bit for bit, with partial tiles; half_move_from_nhwc
 *   is the transpose itself and half_move_to_nhwc its inverse;
 * - GradScaler (amp_scale, amp_unscale, amp_update) against kernels/slab.c's
 *   CPU oracle, bit for bit: unscale with and without a planted inf / NaN
 *   (found_inf set only with it), the update's backoff on an overflow, growth
 *   after `interval` clean steps, no growth to infinity; torch's constants
 *   (2^16, 2.0, 0.5, 2000) in a run of 2001 updates;
 * - the fused SGD and Adam with the scaler's state: found_inf set leaves p,
 *   the gradients and the optimizer state untouched and still moves the EMA
 *   toward p; found_inf clear gives the bits of the plain fused step. */
#include "core/backend.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_tables.h"
#include "kernels/slab.h"
#include "cudaemu_graph.h"
#include "testutil.h"
#include <float.h>
#include <math.h>
#include <string.h>

#ifdef OT_FP16_REF /* tests/cuda_fp16_ref.cpp: NVIDIA's host implementations */
uint16_t ot_ref_f2h(float f);
float ot_ref_h2f(uint16_t h);
uint16_t ot_ref_f2bf(float f);
float ot_ref_bf2f(uint16_t h);
#endif

static float fbits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* The value of a non-negative pattern p of a format with `mb` mantissa bits and exponent bias `bias`, the
 * all-ones exponent read as if the exponents went on (so the rounding oracle sees infinity as the next step). */
static double pat_value(uint32_t p, int mb, int bias) {
    uint32_t e = p >> mb, m = p & ((1u << mb) - 1u);
    if (e == 0) return ldexp((double)m, 1 - bias - mb);
    return ldexp((double)((1u << mb) | m), (int)e - bias - mb);
}

/* Round to nearest, ties to even pattern: the oracle for half (mb 10, bias 15, inf 0x7c00) and bfloat16
 * (mb 7, bias 127, inf 0x7f80). */
static uint16_t oracle_round(float f, int mb, int bias, uint32_t inf) {
    if (isnan(f)) return 0x7fff;
    uint32_t sign = signbit(f) ? 0x8000u : 0u; /* bit 15 in both formats */
    double a = fabs((double)f);
    uint32_t lo = 0, hi = inf; /* largest p with value(p) <= a, p in [0, inf] */
    if (a >= pat_value(inf, mb, bias)) return (uint16_t)(sign | inf);
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if (pat_value(mid, mb, bias) <= a) lo = mid;
        else hi = mid - 1;
    }
    uint32_t p = lo;
    double dl = a - pat_value(p, mb, bias), du = pat_value(p + 1, mb, bias) - a;
    if (du < dl || (du == dl && (p & 1u))) p++;
    return (uint16_t)(sign | p);
}
static uint16_t oracle_f2h(float f) { return oracle_round(f, 10, 15, 0x7c00); }
static uint16_t oracle_f2bf(float f) { return oracle_round(f, 7, 127, 0x7f80); }

/* The float value of a pattern, from the definition; NaN: half -> 0x7fffffff, bfloat16 -> the pattern << 16. */
static uint32_t oracle_h2f_bits(uint16_t h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) return 0x7fffffffu;
    double v = (h & 0x7c00) == 0x7c00 ? INFINITY : pat_value(h & 0x7fffu, 10, 15);
    float f = (float)((h & 0x8000) ? -v : v);
    return tu_bits(f);
}

/* The inputs: every half and bfloat16 value, the midpoints to the next and the floats beside them, specials,
 * random bit patterns. */
static float *inputs(int64_t *count) {
    const int64_t nrand = 1 << 21, cap = 2 * 65536 * 4 + 64 + nrand;
    float *x = malloc(sizeof(float) * (size_t)cap);
    int64_t n = 0;
    for (uint32_t p = 0; p < 0x7c00; p++) { /* halves, positive and negative */
        double v = pat_value(p, 10, 15), w = pat_value(p + 1, 10, 15), mid = (v + w) / 2;
        float fm = (float)mid;
        float c[4] = {(float)v, fm, nextafterf(fm, 0.0f), nextafterf(fm, INFINITY)};
        for (int k = 0; k < 4; k++) x[n++] = (p & 1) ? -c[k] : c[k];
    }
    for (uint32_t p = 0; p < 0x7f80; p++) { /* bfloat16 */
        float v = fbits(p << 16), mid = fbits((p << 16) | 0x8000u);
        float c[4] = {v, mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 4; k++) x[n++] = (p & 1) ? -c[k] : c[k];
    }
    const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, fbits(0x7f800001u), fbits(0xffc00123u), 65504.0f,
                        65519.99f, 65520.0f, -65520.0f, 65536.0f, 1e30f, FLT_MAX, -FLT_MAX, FLT_MIN, 0x1p-24f, 0x1p-25f,
                        nextafterf(0x1p-25f, 1.0f), 0x1p-26f, 0x1.8p-25f, 0x1p-14f, nextafterf(0x1p-14f, 0.0f),
                        fbits(0x7f7f8000u), fbits(0x7f7f7fffu), fbits(0x7f7fffffu), fbits(1u), fbits(0x00008000u)};
    for (size_t k = 0; k < sizeof sp / sizeof *sp; k++) x[n++] = sp[k];
    uint64_t s = 12345;
    for (int64_t k = 0; k < nrand; k++) x[n++] = fbits((uint32_t)rnext(&s));
    *count = n;
    return x;
}

START_TEST(t_conversions) {
    int64_t n;
    float *x = inputs(&n);
    float *dx = dev_from(x, sizeof(float) * (size_t)n);
    uint16_t *dh = dev_from(NULL, sizeof(uint16_t) * (size_t)n), *db = dev_from(NULL, sizeof(uint16_t) * (size_t)n);
    ot_cuda_f32_to_f16(dh, dx, n, NULL);
    ot_cuda_f32_to_bf16(db, dx, n, NULL);
    uint16_t *h = host_from(dh, sizeof(uint16_t) * (size_t)n), *b = host_from(db, sizeof(uint16_t) * (size_t)n);
    int64_t checked_ref = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t eh = oracle_f2h(x[i]), eb = oracle_f2bf(x[i]);
        ck_assert_msg(h[i] == eh, "float %a (0x%08x) -> half 0x%04x, nearest-even is 0x%04x", (double)x[i], tu_bits(x[i]), h[i], eh);
        ck_assert_msg(b[i] == eb, "float %a (0x%08x) -> bfloat16 0x%04x, nearest-even is 0x%04x", (double)x[i], tu_bits(x[i]), b[i], eb);
#ifdef OT_FP16_REF
        ck_assert_msg(h[i] == ot_ref_f2h(x[i]), "float 0x%08x -> half 0x%04x, cuda_fp16.h 0x%04x", tu_bits(x[i]), h[i], ot_ref_f2h(x[i]));
        ck_assert_msg(b[i] == ot_ref_f2bf(x[i]), "float 0x%08x -> bfloat16 0x%04x, cuda_bf16.h 0x%04x", tu_bits(x[i]), b[i],
                      ot_ref_f2bf(x[i]));
        checked_ref++;
#endif
    }
    /* every pattern back to float */
    uint16_t all[65536];
    for (uint32_t p = 0; p < 65536; p++) all[p] = (uint16_t)p;
    uint16_t *dall = dev_from(all, sizeof all);
    float *df = dev_from(NULL, sizeof(float) * 65536), *dg = dev_from(NULL, sizeof(float) * 65536);
    ot_cuda_f16_to_f32(df, dall, 65536, NULL);
    ot_cuda_bf16_to_f32(dg, dall, 65536, NULL);
    float *fh = host_from(df, sizeof(float) * 65536), *fb = host_from(dg, sizeof(float) * 65536);
    for (uint32_t p = 0; p < 65536; p++) {
        ck_assert_msg(tu_bits(fh[p]) == oracle_h2f_bits((uint16_t)p), "half 0x%04x -> 0x%08x, expected 0x%08x", p, tu_bits(fh[p]),
                      oracle_h2f_bits((uint16_t)p));
        ck_assert_msg(tu_bits(fb[p]) == p << 16, "bfloat16 0x%04x -> 0x%08x", p, tu_bits(fb[p]));
#ifdef OT_FP16_REF
        float r = ot_ref_h2f((uint16_t)p), rb = ot_ref_bf2f((uint16_t)p);
        ck_assert_msg(tu_bits(fh[p]) == tu_bits(r), "half 0x%04x -> 0x%08x, cuda_fp16.h 0x%08x", p, tu_bits(fh[p]), tu_bits(r));
        ck_assert_msg(tu_bits(fb[p]) == tu_bits(rb), "bfloat16 0x%04x -> 0x%08x, cuda_bf16.h 0x%08x", p, tu_bits(fb[p]), tu_bits(rb));
#endif
    }
    /* round_half = the round trip, out of place and in place */
    for (int bf = 0; bf <= 1; bf++) {
        float *dy = dev_from(NULL, sizeof(float) * (size_t)n);
        ot_cuda_round_half(dy, dx, n, bf, NULL);
        float *y = host_from(dy, sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            uint16_t q = bf ? b[i] : h[i];
            uint32_t e = bf ? (uint32_t)q << 16 : oracle_h2f_bits(q);
            ck_assert_msg(tu_bits(y[i]) == e, "round_half(%s) of 0x%08x: 0x%08x, expected 0x%08x", bf ? "bf16" : "f16", tu_bits(x[i]),
                          tu_bits(y[i]), e);
        }
        ot_cuda_round_half(dx, dx, n, bf, NULL); /* in place: round again = the same values */
        float *z = host_from(dx, sizeof(float) * (size_t)n);
        ck_assert_int_eq(memcmp(z, y, sizeof(float) * (size_t)n), 0);
        ot_be_upload(ot_backend_cpu_guard(), dx, x, sizeof(float) * (size_t)n);
        free(y); free(z);
        ot_be_free(ot_backend_cpu_guard(), dy);
    }
    fprintf(stderr, "conversions: %lld floats to half and bfloat16, 65536 patterns of each back%s\n", (long long)n,
            checked_ref ? ", also against cuda_fp16.h / cuda_bf16.h" : " (no CUDA headers: the definitions only)");
    ot_backend *g = ot_backend_cpu_guard();
    ot_be_free(g, dx); ot_be_free(g, dh); ot_be_free(g, db); ot_be_free(g, dall); ot_be_free(g, df); ot_be_free(g, dg);
    free(x); free(h); free(b); free(fh); free(fb);
}
END_TEST

/* half_accumulate and round_add (the convolutions' --amp gradients) against their definitions on the host. */
START_TEST(t_accumulate) {
    enum { N = 5000 };
    uint64_t s = 7;
    float y0[N], saved[N];
    uint16_t h[N];
    for (int i = 0; i < N; i++) { y0[i] = rsym1(&s) * 3.0f; saved[i] = rsym1(&s); h[i] = (uint16_t)(rnext(&s) & 0x7bff); }
    for (int bf = 0; bf <= 1; bf++)
        for (int acc = 0; acc <= 1; acc++)
            for (int rnd = 0; rnd <= 1; rnd++) {
                float *dy = dev_from(y0, sizeof y0);
                uint16_t *dh = dev_from(h, sizeof h);
                ot_cuda_half_accumulate(dy, dh, N, bf, acc, rnd, NULL);
                float *y = host_from(dy, sizeof y0);
                for (int i = 0; i < N; i++) {
                    float v = bf ? fbits((uint32_t)h[i] << 16) : fbits(oracle_h2f_bits(h[i]));
                    if (acc) v = y0[i] + v;
                    if (rnd) v = bf ? fbits((uint32_t)oracle_f2bf(v) << 16) : fbits(oracle_h2f_bits(oracle_f2h(v)));
                    ck_assert_msg(tu_bits(y[i]) == tu_bits(v), "half_accumulate(bf16 %d, acc %d, round %d)[%d]: %a, expected %a", bf, acc, rnd,
                                  i, (double)y[i], (double)v);
                }
                free(y);
                ot_be_free(ot_backend_cpu_guard(), dy);
                ot_be_free(ot_backend_cpu_guard(), dh);
            }
    for (int bf = 0; bf <= 1; bf++) {
        float *dg = dev_from(y0, sizeof y0), *ds = dev_from(saved, sizeof saved);
        ot_cuda_round_add(dg, ds, N, bf, NULL);
        float *g = host_from(dg, sizeof y0);
        for (int i = 0; i < N; i++) {
            float r = bf ? fbits((uint32_t)oracle_f2bf(y0[i]) << 16) : fbits(oracle_h2f_bits(oracle_f2h(y0[i])));
            ck_assert(tu_bits(g[i]) == tu_bits(saved[i] + r));
        }
        free(g);
        ot_be_free(ot_backend_cpu_guard(), dg);
        ot_be_free(ot_backend_cpu_guard(), ds);
    }
}
END_TEST

/* v rounded to half (bf 0) or bfloat16 (1) precision by the oracle, kept in float. */
static float rnd(int bf, float v) { return bf ? fbits((uint32_t)oracle_f2bf(v) << 16) : fbits(oracle_h2f_bits(oracle_f2h(v))); }

/* round_to_half, half_out and half_bias (conv_gpu.c's fused --amp passes, conv_emu.c's bias) against their
 * definitions on the host: the oracle conversions; the rounded bias added in float, the sum rounded. */
START_TEST(t_fused_passes) {
    enum { M = 7, HW = 53, NB = 3, N = NB * M * HW };
    uint64_t s = 11;
    float x0[N], bias[M];
    uint16_t h[N];
    for (int i = 0; i < N; i++) {
        x0[i] = rsym1(&s) * (i % 5 == 0 ? 7e4f : 4.0f); /* some past half's range */
        h[i] = (uint16_t)(rnext(&s) & 0xfbff);            /* both signs, no infinities or NaNs */
    }
    x0[3] = NAN; x0[8] = -INFINITY; x0[13] = 0x1p-26f;
    for (int c = 0; c < M; c++) bias[c] = rsym1(&s) * 2.0f;
    ot_backend *g = ot_backend_cpu_guard();
    for (int bf = 0; bf <= 1; bf++) {
        float *dx = dev_from(x0, sizeof x0);
        uint16_t *dh = dev_from(NULL, sizeof h);
        ot_cuda_round_to_half(dx, dh, N, bf, NULL);
        float *x = host_from(dx, sizeof x0);
        uint16_t *hh = host_from(dh, sizeof h);
        for (int i = 0; i < N; i++) {
            uint16_t q = bf ? oracle_f2bf(x0[i]) : oracle_f2h(x0[i]);
            uint32_t e = bf ? (uint32_t)q << 16 : oracle_h2f_bits(q);
            ck_assert_msg(hh[i] == q, "round_to_half(bf16 %d)[%d] of %a: half 0x%04x, expected 0x%04x", bf, i, (double)x0[i], hh[i], q);
            ck_assert_msg(tu_bits(x[i]) == e, "round_to_half(bf16 %d)[%d] of %a: %a in place, expected 0x%08x", bf, i, (double)x0[i],
                          (double)x[i], e);
        }
        free(x); free(hh);
        ot_be_free(g, dx); ot_be_free(g, dh);
        for (int wb = 0; wb <= 1; wb++) {
            float *dy = dev_from(NULL, sizeof x0), *db = dev_from(bias, sizeof bias);
            uint16_t *dhh = dev_from(h, sizeof h);
            ot_cuda_half_out(dy, dhh, wb ? db : NULL, N, HW, M, bf, NULL);
            float *y = host_from(dy, sizeof x0);
            for (int i = 0; i < N; i++) {
                float v = bf ? fbits((uint32_t)h[i] << 16) : fbits(oracle_h2f_bits(h[i]));
                if (wb) v = rnd(bf, v + rnd(bf, bias[(i / HW) % M]));
                ck_assert_msg(tu_bits(y[i]) == tu_bits(v), "half_out(bf16 %d, bias %d)[%d]: %a, expected %a", bf, wb, i, (double)y[i],
                              (double)v);
            }
            free(y);
            ot_be_free(g, dy); ot_be_free(g, db); ot_be_free(g, dhh);
        }
        /* half_bias on values of half precision (conv_emu.c's biased output) */
        float *dy = dev_from(x0, sizeof x0), *db = dev_from(bias, sizeof bias);
        ot_cuda_half_bias(dy, db, N, HW, M, bf, NULL);
        float *y = host_from(dy, sizeof x0);
        for (int i = 0; i < N; i++) {
            float v = rnd(bf, x0[i] + rnd(bf, bias[(i / HW) % M]));
            ck_assert_msg(tu_bits(y[i]) == tu_bits(v) || (isnan(y[i]) && isnan(v)), "half_bias(bf16 %d)[%d]: %a, expected %a", bf, i,
                          (double)y[i], (double)v);
        }
        free(y);
        ot_be_free(g, dy); ot_be_free(g, db);
    }
}
END_TEST

/* Channels-last half copies (conv_gpu.c under --channels-last): half_nhwc is round_to_half transposed to
 * (nb, sp, ch), half_from_nhwc is half_out / half_accumulate read from it, bit for bit, on shapes with partial
 * 32x32 tiles on both axes, one tile, one element and sp 1 (a 1x1 weight). */
START_TEST(t_nhwc) {
    static const int64_t shapes[][3] = {{3, 7, 53}, {2, 45, 70}, {1, 32, 32}, {1, 1, 1}, {5, 33, 1}};
    ot_backend *g = ot_backend_cpu_guard();
    uint64_t s = 29;
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        const int64_t nb = shapes[k][0], ch = shapes[k][1], sp = shapes[k][2], n = nb * ch * sp;
        const size_t fb = sizeof(float) * (size_t)n, hb = sizeof(uint16_t) * (size_t)n;
        float *x0 = malloc(fb), *y0 = malloc(fb), *bias = malloc(sizeof(float) * (size_t)ch);
        uint16_t *h = malloc(hb);
        for (int64_t i = 0; i < n; i++) {
            x0[i] = rsym1(&s) * (i % 5 == 0 ? 7e4f : 4.0f);
            y0[i] = rsym1(&s) * 3.0f;
            h[i] = (uint16_t)(rnext(&s) & 0xfbff);
        }
        if (n > 3) x0[3] = NAN;
        for (int64_t c = 0; c < ch; c++) bias[c] = rsym1(&s) * 2.0f;
        for (int bf = 0; bf <= 1; bf++) {
            for (int inplace = 0; inplace <= 1; inplace++) {
                float *dx = dev_from(x0, fb);
                uint16_t *dh = dev_from(NULL, hb);
                ot_cuda_half_nhwc(dx, inplace ? dx : NULL, dh, nb, ch, sp, bf, NULL);
                float *x = host_from(dx, fb);
                uint16_t *hh = host_from(dh, hb);
                for (int64_t b = 0; b < nb; b++)
                    for (int64_t c = 0; c < ch; c++)
                        for (int64_t t = 0; t < sp; t++) {
                            const int64_t i = (b * ch + c) * sp + t, o = (b * sp + t) * ch + c;
                            const uint16_t q = bf ? oracle_f2bf(x0[i]) : oracle_f2h(x0[i]);
                            const uint32_t e = inplace ? (bf ? (uint32_t)q << 16 : oracle_h2f_bits(q)) : tu_bits(x0[i]);
                            ck_assert_msg(hh[o] == q, "half_nhwc(%lld, %lld, %lld; bf16 %d) [%lld, %lld, %lld]: 0x%04x, expected 0x%04x",
                                          (long long)nb, (long long)ch, (long long)sp, bf, (long long)b, (long long)c, (long long)t,
                                          hh[o], q);
                            ck_assert_msg(tu_bits(x[i]) == e, "half_nhwc(in place %d, bf16 %d)[%lld]: x 0x%08x, expected 0x%08x",
                                          inplace, bf, (long long)i, tu_bits(x[i]), e);
                        }
                free(x); free(hh);
                ot_be_free(g, dx); ot_be_free(g, dh);
            }
            if (bf == 0) { /* the 16-bit move back to NCHW (a half convolution output stored in half) */
                uint16_t *dhh = dev_from(h, hb), *dm = dev_from(NULL, hb);
                ot_cuda_half_move_from_nhwc(dm, dhh, nb, ch, sp, NULL);
                uint16_t *m = host_from(dm, hb);
                for (int64_t b = 0; b < nb; b++)
                    for (int64_t c = 0; c < ch; c++)
                        for (int64_t t = 0; t < sp; t++)
                            ck_assert_msg(m[(b * ch + c) * sp + t] == h[(b * sp + t) * ch + c],
                                          "half_move_from_nhwc(%lld, %lld, %lld) [%lld, %lld, %lld]", (long long)nb, (long long)ch,
                                          (long long)sp, (long long)b, (long long)c, (long long)t);
                ot_cuda_half_move_to_nhwc(dhh, dm, nb, ch, sp, NULL); /* and back */
                uint16_t *back = host_from(dhh, hb);
                ck_assert_msg(memcmp(back, h, hb) == 0, "half_move_to_nhwc(%lld, %lld, %lld) is not the inverse", (long long)nb,
                              (long long)ch, (long long)sp);
                free(back);
                free(m);
                ot_be_free(g, dhh); ot_be_free(g, dm);
            }
            for (int mode = 0; mode < 8; mode++) { /* bit 0 bias, bit 1 accumulate, bit 2 round */
                const int wb = mode & 1, acc = (mode >> 1) & 1, rn = (mode >> 2) & 1;
                float *dy = dev_from(y0, fb), *db = dev_from(bias, sizeof(float) * (size_t)ch);
                uint16_t *dhh = dev_from(h, hb);
                ot_cuda_half_from_nhwc(dy, dhh, wb ? db : NULL, nb, ch, sp, bf, acc, rn, NULL);
                float *y = host_from(dy, fb);
                for (int64_t b = 0; b < nb; b++)
                    for (int64_t c = 0; c < ch; c++)
                        for (int64_t t = 0; t < sp; t++) {
                            const int64_t i = (b * ch + c) * sp + t, o = (b * sp + t) * ch + c;
                            float v = bf ? fbits((uint32_t)h[o] << 16) : fbits(oracle_h2f_bits(h[o]));
                            if (wb) v = rnd(bf, v + rnd(bf, bias[c]));
                            if (acc) v = y0[i] + v;
                            if (rn) v = rnd(bf, v);
                            ck_assert_msg(tu_bits(y[i]) == tu_bits(v),
                                          "half_from_nhwc(%lld, %lld, %lld; bf16 %d, bias %d, acc %d, round %d)[%lld]: %a, expected %a",
                                          (long long)nb, (long long)ch, (long long)sp, bf, wb, acc, rn, (long long)i, (double)y[i],
                                          (double)v);
                        }
                free(y);
                ot_be_free(g, dy); ot_be_free(g, db); ot_be_free(g, dhh);
            }
        }
        free(x0); free(y0); free(bias); free(h);
    }
}
END_TEST

/* ---- GradScaler ---- */
static const ot_slab_kernels *cpu_k(void) { return ot_slab_kernels_for(OT_DEV_CPU); }
static const ot_slab_kernels *dev_k(void) { return ot_slab_kernels_for(OT_DEV_CUDA); }

/* One unscale of n random gradients with, optionally, a planted non-finite value: the device against the CPU. */
static void unscale_case(int64_t n, float scale, float plant, int64_t at) {
    uint64_t s = (uint64_t)n * 7919u + (uint64_t)at;
    float *g = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) g[i] = rsym1(&s) * scale;
    if (at >= 0 && at < n) g[at] = plant;
    ot_amp_state st = {.scale = scale}, dst_h;
    ot_backend *D = ot_backend_cpu_guard();
    float *dg = dev_from(g, sizeof(float) * (size_t)n);
    ot_amp_state *dst = dev_from(&st, sizeof st);
    ot_be_enter(D);
    dev_k()->amp_unscale(NULL, dg, n, dst);
    ot_be_leave(D);
    cpu_k()->amp_unscale(NULL, g, n, &st);
    float *got = host_from(dg, sizeof(float) * (size_t)n);
    ot_be_download(D, &dst_h, dst, sizeof dst_h);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(tu_bits(got[i]) == tu_bits(g[i]), "unscale n=%lld [%lld]: 0x%08x, CPU 0x%08x", (long long)n, (long long)i,
                      tu_bits(got[i]), tu_bits(g[i]));
    ck_assert(dst_h.found_inf == st.found_inf);
    ck_assert(st.found_inf == (at >= 0 && at < n && !isfinite(plant) ? 1.0f : 0.0f));
    if (!(at >= 0 && at < n))
        for (int64_t i = 0; i < n; i++) /* clean: the unscaled values are g * (1/scale), exactly the CPU's */
            ck_assert(isfinite(got[i]));
    free(g); free(got);
    ot_be_free(D, dg); ot_be_free(D, dst);
}

START_TEST(t_unscale) {
    const int64_t sizes[] = {0, 1, 7, 255, 256, 257, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int64_t n = sizes[k];
        unscale_case(n, 65536.0f, 0, -1);
        unscale_case(n, 1.0f, 0, -1);            /* inv_scale 1: untouched */
        unscale_case(n, 3.0f, 0, -1);            /* an inexact reciprocal */
        unscale_case(n, 65536.0f, INFINITY, n - 1);
        unscale_case(n, 65536.0f, -INFINITY, n / 2);
        unscale_case(n, 32768.0f, NAN, 0);
        unscale_case(n, 65536.0f, FLT_MAX, n / 3); /* finite: no overflow */
    }
}
END_TEST

/* The update's state machine, device against CPU, over a sequence of found_inf flags. */
static void update_run(float scale0, int interval, float growth, float backoff, const int *inf, int steps, ot_amp_state *out) {
    ot_backend *D = ot_backend_cpu_guard();
    ot_amp_state c = {.scale = scale0}, h;
    ot_amp_state *d = dev_from(&c, sizeof c);
    for (int i = 0; i < steps; i++) {
        c.found_inf = inf[i] ? 1.0f : 0.0f;
        ot_be_upload(D, &d->found_inf, &c.found_inf, sizeof(float));
        ot_be_enter(D);
        dev_k()->amp_update(NULL, d, growth, backoff, interval);
        ot_be_leave(D);
        cpu_k()->amp_update(NULL, &c, growth, backoff, interval);
        ot_be_download(D, &h, d, sizeof h);
        ck_assert_msg(memcmp(&h, &c, sizeof h) == 0, "update %d: device scale %g tracker %d skipped %g, CPU %g %d %g", i, (double)h.scale,
                      h.tracker, (double)h.skipped, (double)c.scale, c.tracker, (double)c.skipped);
        ck_assert(c.found_inf == 0.0f && c.skipped == (inf[i] ? 1.0f : 0.0f));
    }
    *out = c;
    ot_be_free(D, d);
}

START_TEST(t_update) {
    ot_amp_state s;
    /* a planted overflow at step 2: scale halves, tracker resets; 3 clean steps later (interval 3) it doubles */
    int seq[] = {0, 0, 1, 0, 0, 0, 0};
    update_run(65536.0f, 3, 2.0f, 0.5f, seq, 3, &s);
    ck_assert(s.scale == 32768.0f && s.tracker == 0 && s.skipped == 1.0f);
    update_run(65536.0f, 3, 2.0f, 0.5f, seq, 6, &s);
    ck_assert(s.scale == 65536.0f && s.tracker == 0 && s.skipped == 0.0f);
    update_run(65536.0f, 3, 2.0f, 0.5f, seq, 7, &s);
    ck_assert(s.scale == 65536.0f && s.tracker == 1);
    /* no growth to infinity: the tracker resets, the scale stays */
    int clean[4] = {0};
    update_run(FLT_MAX, 2, 2.0f, 0.5f, clean, 2, &s);
    ck_assert(s.scale == FLT_MAX && s.tracker == 0);
    /* torch's constants: 2000 clean steps double 2^16; the 2001st is counted */
    int *none = calloc(2001, sizeof(int));
    update_run(65536.0f, 2000, 2.0f, 0.5f, none, 1999, &s);
    ck_assert(s.scale == 65536.0f && s.tracker == 1999);
    update_run(65536.0f, 2000, 2.0f, 0.5f, none, 2001, &s);
    ck_assert(s.scale == 131072.0f && s.tracker == 1);
    free(none);
    /* the loss gradient's seed: x *= scale */
    float x[5] = {1.0f, -0.5f, 3e-5f, 0.0f, 7.0f}, y[5];
    ot_amp_state st = {.scale = 65536.0f};
    float *dx = dev_from(x, sizeof x);
    ot_amp_state *dst = dev_from(&st, sizeof st);
    ot_be_enter(ot_backend_cpu_guard());
    dev_k()->amp_scale(NULL, dx, 5, dst);
    ot_be_leave(ot_backend_cpu_guard());
    ot_be_download(ot_backend_cpu_guard(), y, dx, sizeof y);
    cpu_k()->amp_scale(NULL, x, 5, &st);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0);
    ck_assert(y[0] == 65536.0f && y[2] == 3e-5f * 65536.0f);
    ot_be_free(ot_backend_cpu_guard(), dx);
    ot_be_free(ot_backend_cpu_guard(), dst);
}
END_TEST

/* The fused steps with the scaler's state: skipped (found_inf) and not. */
START_TEST(t_fused_skip) {
    enum { N = 1000 };
    ot_backend *D = ot_backend_cpu_guard();
    ot_slab_seg seg[3] = {{0, 400, 1, 0}, {400, 100, OT_SLAB_EMA_ONLY, 0}, {500, 500, 0, 0}};
    uint64_t s = 99;
    float p[N], g[N], m1[N], m2[N], e[N];
    for (int i = 0; i < N; i++) { p[i] = rsym1(&s); g[i] = rsym1(&s); m1[i] = rsym1(&s) * 0.1f; m2[i] = fabsf(rsym1(&s)) * 0.01f; e[i] = rsym1(&s); }
    ot_sgd_args sa = {.lr = {0.01f, 0.01f, 0.01f}, .momentum = {0.9f, 0.9f, 0.9f}, .weight_decay = {0, 5e-4f, 0}, .first = false};
    ot_adam_args aa = {.lr = {1e-3f, 1e-3f, 1e-3f}, .beta1 = {0.9f, 0.9f, 0.9f}, .weight_decay = {0, 0.05f, 0}, .beta2 = 0.999f,
                       .eps = 1e-8f, .step = 3, .decoupled = true};
    for (int adam = 0; adam <= 1; adam++)
        for (int inf = 0; inf <= 1; inf++) {
            ot_amp_state st = {.scale = 1024.0f, .found_inf = inf ? 1.0f : 0.0f};
            ot_slab_seg *dseg = dev_from(seg, sizeof seg);
            float *P[2], *Gd[2], *M1[2], *M2[2], *E[2];
            for (int k = 0; k < 2; k++) { /* k 0: with the scaler's state, 1: the plain fused step */
                P[k] = dev_from(p, sizeof p); Gd[k] = dev_from(g, sizeof g); M1[k] = dev_from(m1, sizeof m1);
                M2[k] = dev_from(m2, sizeof m2); E[k] = dev_from(e, sizeof e);
            }
            ot_amp_state *dst = dev_from(&st, sizeof st);
            const ot_slab_kernels *k = dev_k();
            ot_be_enter(D);
            if (adam) {
                k->adam_fused_amp(NULL, dseg, 3, P[0], Gd[0], M1[0], M2[0], &aa, NULL, E[0], 0.9f, 0.1f, dst);
                k->adam_fused(NULL, dseg, 3, P[1], Gd[1], M1[1], M2[1], &aa, NULL, E[1], 0.9f, 0.1f);
            } else {
                k->sgd_fused_amp(NULL, dseg, 3, P[0], Gd[0], M1[0], &sa, NULL, E[0], 0.9f, 0.1f, dst);
                k->sgd_fused(NULL, dseg, 3, P[1], Gd[1], M1[1], &sa, NULL, E[1], 0.9f, 0.1f);
            }
            ot_be_leave(D);
            float *hp = host_from(P[0], sizeof p), *hm1 = host_from(M1[0], sizeof m1), *hm2 = host_from(M2[0], sizeof m2);
            float *hg = host_from(Gd[0], sizeof g), *he = host_from(E[0], sizeof e);
            float *rp = host_from(P[1], sizeof p), *rm1 = host_from(M1[1], sizeof m1), *re = host_from(E[1], sizeof e);
            if (inf) { /* skipped: p, g, moments as they were; ema = ema * d + omd * p */
                ck_assert_int_eq(memcmp(hp, p, sizeof p), 0);
                ck_assert_int_eq(memcmp(hg, g, sizeof g), 0);
                ck_assert_int_eq(memcmp(hm1, m1, sizeof m1), 0);
                ck_assert_int_eq(memcmp(hm2, m2, sizeof m2), 0);
                for (int i = 0; i < N; i++) {
                    float want = e[i] * 0.9f + 0.1f * p[i];
                    ck_assert_msg(tu_bits(he[i]) == tu_bits(want), "%s skipped: ema[%d] 0x%08x, expected 0x%08x", adam ? "adam" : "sgd", i,
                                  tu_bits(he[i]), tu_bits(want));
                }
            } else { /* not skipped: the plain step's bits */
                ck_assert_int_eq(memcmp(hp, rp, sizeof p), 0);
                ck_assert_int_eq(memcmp(hm1, rm1, sizeof m1), 0);
                ck_assert_int_eq(memcmp(he, re, sizeof e), 0);
                ck_assert_int_ne(memcmp(hp, p, sizeof p), 0);
            }
            free(hp); free(hm1); free(hm2); free(hg); free(he); free(rp); free(rm1); free(re);
            for (int k2 = 0; k2 < 2; k2++) { ot_be_free(D, P[k2]); ot_be_free(D, Gd[k2]); ot_be_free(D, M1[k2]); ot_be_free(D, M2[k2]); ot_be_free(D, E[k2]); }
            ot_be_free(D, dst); ot_be_free(D, dseg);
        }
}
END_TEST

int main(void) {
    ot_cuda_kernels_install(); /* the executor's CUDA tables (OT_DEV_CUDA's slab kernels) */
    Suite *s = suite_create("cudaemu_half");
    TCase *t = tcase_create("half");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, t_conversions);
    tcase_add_test(t, t_accumulate);
    tcase_add_test(t, t_fused_passes);
    tcase_add_test(t, t_nhwc);
    tcase_add_test(t, t_unscale);
    tcase_add_test(t, t_update);
    tcase_add_test(t, t_fused_skip);
    suite_add_tcase(s, t);
    return tu_main(s);
}
