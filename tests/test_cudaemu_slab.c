/* test_cudaemu_slab.c (ctest label cudaemu): kernels/cuda/multi_tensor.cu on
 * the CPU executor against kernels/slab.c, both over cpu-guard memory, on a
 * random segment table (odd sizes from 1 up, many segments, the 3 groups,
 * frozen tensors that only the EMA touches, gaps between tensors):
 *
 *   SGD + clip scale + EMA, one launch, first and later steps:  bit for bit
 *     (p, momentum, EMA, the scaled gradient) against slab.c's clip -> sgd -> ema
 *     with the CPU's clip coefficient;
 *   Adam and AdamW + clip scale + EMA, steps 1..3:              bit for bit;
 *   the EMA alone:                                              bit for bit;
 *   clip_grad_norm (device norm, then the scale):  within 1e-6 relative (the
 *     CPU sums 8 lanes over fixed chunks, the device a tree: same doubles,
 *     different order), and the same bits on every run (no float atomics). */
#include "core/backend.h"
#include "kernels/slab.h"
#include "kernels/cuda/cuda_kernels.h"
#include "cudaemu_graph.h" /* rnext, rsym1/runi, dev_from, host_from */
#include "testutil.h"
#include <math.h>
#include <string.h>

static ot_backend *G;



/* A model-like layout: nseg tensors, each followed by a gap of 0..2 floats
 * (EMA-only filler segments, as buffers), every 7th tensor frozen. */
typedef struct layout {
    int n_all, n_step;          /* segments: all (device table), stepped (CPU table) */
    ot_slab_seg *all, *step;    /* host tables */
    int64_t floats;
} layout;

static layout make_layout(int nseg, uint64_t seed) {
    layout L = {0};
    L.all = calloc((size_t)(2 * nseg), sizeof *L.all);
    L.step = calloc((size_t)nseg, sizeof *L.step);
    int64_t off = 0;
    for (int t = 0; t < nseg; t++) {
        uint64_t r = rnext(&seed);
        int64_t n = t % 17 == 3 ? 70001 : t % 5 == 0 ? 1 + (int64_t)(r % 4) : 1 + (int64_t)(r % 3001); /* odd sizes, a few large */
        int grp = (int)((r >> 32) % OT_SLAB_GROUPS);
        bool frozen = t % 7 == 6;
        ot_slab_seg s = {off, n, frozen ? OT_SLAB_EMA_ONLY : grp, 0};
        L.all[L.n_all++] = s;
        if (!frozen) L.step[L.n_step++] = s;
        off += n;
        int64_t gap = (int64_t)((r >> 40) % 3);
        if (gap) {
            L.all[L.n_all++] = (ot_slab_seg){off, gap, OT_SLAB_EMA_ONLY, 0};
            off += gap;
        }
    }
    L.floats = off;
    return L;
}

static float *rand_vec(int64_t n, float scale, uint64_t seed) {
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = rsym1(&seed) * scale;
    return v;
}

static void assert_bits(const char *what, const float *dev, const float *cpu, int64_t n) {
    float *a = host_from(dev, sizeof(float) * (size_t)n), *b = host_from(cpu, sizeof(float) * (size_t)n);
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) bad = i;
    if (bad >= 0) ck_abort_msg("%s: element %lld differs: device %.9g, cpu %.9g", what, (long long)bad, (double)a[bad], (double)b[bad]);
    free(a);
    free(b);
}

/* bits of the gradient over the stepped segments only (frozen ones: the CPU's clip scales them, the fused step does not) */
static void assert_bits_segs(const char *what, const float *dev, const float *cpu, const layout *L) {
    float *a = host_from(dev, sizeof(float) * (size_t)L->floats), *b = host_from(cpu, sizeof(float) * (size_t)L->floats);
    for (int t = 0; t < L->n_step; t++)
        for (int64_t i = L->step[t].off; i < L->step[t].off + L->step[t].n; i++)
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
                ck_abort_msg("%s: element %lld differs: device %.9g, cpu %.9g", what, (long long)i, (double)a[i], (double)b[i]);
    free(a);
    free(b);
}

/* The optimizer + EMA sequence, 3 steps, on both sides. adam: 0 SGD, 1 Adam, 2 AdamW. dyn: the device reads the
 * per-step values from device memory (as a step replayed from a CUDA graph does), its by-value ones garbled. */
static void run_steps(int adam, float max_norm, uint64_t seed, bool dyn) {
    layout L = make_layout(120, seed);
    const int64_t n = L.floats;
    const size_t nb = sizeof(float) * (size_t)n;
    const ot_slab_kernels *K = ot_slab_kernels_for(OT_DEV_CPU_GUARD);
    float *p0 = rand_vec(n, 1.0f, seed + 1);
    /* CPU side, device side */
    float *cp = dev_from(p0, nb), *dp = dev_from(p0, nb);
    float *ce = dev_from(p0, nb), *de = dev_from(p0, nb);
    float *cm = dev_from(NULL, nb), *dm = dev_from(NULL, nb), *cv = dev_from(NULL, nb), *dv = dev_from(NULL, nb);
    float *cclip = dev_from(NULL, 2 * sizeof(float)), *dclip = dev_from(NULL, 2 * sizeof(float));
    ot_slab_seg *cseg = dev_from(L.step, sizeof(ot_slab_seg) * (size_t)L.n_step);
    ot_slab_seg *dseg = dev_from(L.all, sizeof(ot_slab_seg) * (size_t)L.n_all);
    ot_step_dyn *ddyn = dev_from(NULL, sizeof(ot_step_dyn));
    for (int step = 1; step <= 3; step++) {
        float *g0 = rand_vec(n, step == 2 ? 30.0f : 0.5f, seed + 10 + (uint64_t)step); /* step 2 clips */
        float *cg = dev_from(g0, nb), *dg = dev_from(g0, nb);
        double d = 0.9999 * (1.0 - exp(-(double)step / 2000));
        float ed = (float)d, eomd = (float)(1.0 - d);
        ot_be_enter(G);
        K->clip(ot_backend_cpu_guard(), cseg, L.n_step, cg, max_norm, cclip, NULL);
        ot_be_leave(G);
        float clip[2];
        ot_be_download(G, clip, cclip, sizeof clip);
        ot_be_upload(G, dclip, clip, sizeof clip); /* the CPU's coefficient: the fused step alone is compared here */
        ot_cuda_step_extra x = {.clip = dclip, .scale_grad = 1, .ema = de, .ema_d = ed, .ema_omd = eomd};
        ot_be_enter(G);
        if (adam == 0) {
            ot_sgd_args a = {.lr = {0.01f, 0.02f, 0.005f}, .momentum = {0.937f, 0.9f, 0.8f}, .weight_decay = {0.0f, 5e-4f, 1e-3f}, .first = step == 1};
            K->sgd(ot_backend_cpu_guard(), cseg, L.n_step, cp, cg, cm, &a);
            if (dyn) {
                ot_step_dyn v;
                ot_step_dyn_sgd(&a, ed, eomd, &v);
                ot_be_upload(G, ddyn, &v, sizeof v);
                a = (ot_sgd_args){.lr = {1, 1, 1}, .momentum = {0.5f, 0.5f, 0.5f}, .first = step != 1, .dyn = ddyn};
                x.ema_d = x.ema_omd = 0.5f;
            }
            ot_cuda_sgd(dseg, L.n_all, dp, dg, dm, &a, &x, NULL);
        } else {
            ot_adam_args a = {.lr = {0.001f, 0.002f, 0.0005f}, .beta1 = {0.937f, 0.9f, 0.8f}, .weight_decay = {0.0f, 5e-4f, 1e-2f},
                              .beta2 = 0.999f, .eps = 1e-8f, .step = step, .decoupled = adam == 2};
            K->adam(ot_backend_cpu_guard(), cseg, L.n_step, cp, cg, cm, cv, &a);
            if (dyn) {
                ot_step_dyn v;
                ot_step_dyn_adam(&a, ed, eomd, &v);
                ot_be_upload(G, ddyn, &v, sizeof v);
                for (int k = 0; k < 3; k++) a.lr[k] = a.beta1[k] = a.weight_decay[k] = 0.5f;
                a.step = 7;
                a.dyn = ddyn;
                x.ema_d = x.ema_omd = 0.5f;
            }
            ot_cuda_adam(dseg, L.n_all, dp, dg, dm, dv, &a, &x, NULL);
        }
        K->ema(ot_backend_cpu_guard(), ce, cp, n, ed, eomd);
        ot_be_leave(G);
        assert_bits("p", dp, cp, n);
        assert_bits(adam ? "m" : "momentum", dm, cm, n);
        if (adam) assert_bits("v", dv, cv, n);
        assert_bits("ema", de, ce, n);
        assert_bits_segs("scaled gradient", dg, cg, &L);
        ot_be_free(G, cg);
        ot_be_free(G, dg);
        free(g0);
    }
    float *fs[] = {cp, dp, ce, de, cm, dm, cv, dv, cclip, dclip};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) ot_be_free(G, fs[i]);
    ot_be_free(G, cseg);
    ot_be_free(G, dseg);
    ot_be_free(G, ddyn);
    free(p0);
    free(L.all);
    free(L.step);
}

START_TEST(sgd_ema_bits) { run_steps(0, 10.0f, 11, false); run_steps(0, 10.0f, 11, true); }
END_TEST
START_TEST(adam_ema_bits) { run_steps(1, 10.0f, 12, false); run_steps(1, 10.0f, 12, true); }
END_TEST
START_TEST(adamw_ema_bits) { run_steps(2, 10.0f, 13, false); run_steps(2, 10.0f, 13, true); }
END_TEST

/* without extras: no clip, no EMA (the plain step) */
START_TEST(sgd_plain_bits) {
    layout L = make_layout(40, 21);
    const int64_t n = L.floats;
    const size_t nb = sizeof(float) * (size_t)n;
    const ot_slab_kernels *K = ot_slab_kernels_for(OT_DEV_CPU_GUARD);
    float *p0 = rand_vec(n, 1.0f, 22), *g0 = rand_vec(n, 1.0f, 23);
    float *cp = dev_from(p0, nb), *dp = dev_from(p0, nb), *cg = dev_from(g0, nb), *dg = dev_from(g0, nb);
    float *cm = dev_from(NULL, nb), *dm = dev_from(NULL, nb);
    ot_slab_seg *seg = dev_from(L.step, sizeof(ot_slab_seg) * (size_t)L.n_step);
    for (int step = 1; step <= 2; step++) {
        ot_sgd_args a = {.lr = {0.1f, 0.2f, 0.05f}, .momentum = {0.9f, 0.9f, 0.9f}, .weight_decay = {0.0f, 5e-4f, 0.0f}, .first = step == 1};
        ot_be_enter(G);
        K->sgd(ot_backend_cpu_guard(), seg, L.n_step, cp, cg, cm, &a);
        ot_cuda_sgd(seg, L.n_step, dp, dg, dm, &a, NULL, NULL);
        ot_be_leave(G);
        assert_bits("p", dp, cp, n);
        assert_bits("momentum", dm, cm, n);
        assert_bits("gradient untouched", dg, cg, n);
    }
    float *fs[] = {cp, dp, cg, dg, cm, dm};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) ot_be_free(G, fs[i]);
    ot_be_free(G, seg);
    free(p0);
    free(g0);
    free(L.all);
    free(L.step);
}
END_TEST

START_TEST(ema_bits) {
    const int64_t n = 100003;
    float *m0 = rand_vec(n, 1.0f, 31), *e0 = rand_vec(n, 1.0f, 32);
    float *m = dev_from(m0, sizeof(float) * n), *ce = dev_from(e0, sizeof(float) * n), *de = dev_from(e0, sizeof(float) * n);
    double d = 0.9999 * (1.0 - exp(-5.0 / 2000));
    ot_be_enter(G);
    ot_slab_kernels_for(OT_DEV_CPU_GUARD)->ema(ot_backend_cpu_guard(), ce, m, n, (float)d, (float)(1.0 - d));
    ot_cuda_ema(de, m, n, (float)d, (float)(1.0 - d), NULL);
    ot_be_leave(G);
    assert_bits("ema", de, ce, n);
    ot_be_free(G, m);
    ot_be_free(G, ce);
    ot_be_free(G, de);
    free(m0);
    free(e0);
}
END_TEST

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

START_TEST(clip_norm_within_1e6) {
    layout L = make_layout(150, 41);
    const int64_t n = L.floats;
    const size_t nb = sizeof(float) * (size_t)n;
    const ot_slab_kernels *K = ot_slab_kernels_for(OT_DEV_CPU_GUARD);
    ot_slab_seg *seg = dev_from(L.step, sizeof(ot_slab_seg) * (size_t)L.n_step);
    double *scratch = dev_from(NULL, ot_cuda_clip_scratch_bytes(L.n_step));
    float max_norms[] = {10.0f, 1e9f};
    for (int k = 0; k < 2; k++) {
        float *g0 = rand_vec(n, 3.0f, 42 + (uint64_t)k);
        float *cg = dev_from(g0, nb), *dg = dev_from(g0, nb);
        float *cclip = dev_from(NULL, 8), *dclip = dev_from(NULL, 8), *dclip2 = dev_from(NULL, 8);
        ot_be_enter(G);
        K->clip(ot_backend_cpu_guard(), seg, L.n_step, cg, max_norms[k], cclip, NULL);
        ot_cuda_clip_norm(seg, L.n_step, dg, max_norms[k], dclip, scratch, NULL);
        ot_cuda_clip_norm(seg, L.n_step, dg, max_norms[k], dclip2, scratch, NULL);
        ot_cuda_clip_scale(seg, L.n_step, dg, dclip, NULL);
        ot_be_leave(G);
        float c[2], d[2], d2[2];
        ot_be_download(G, c, cclip, 8);
        ot_be_download(G, d, dclip, 8);
        ot_be_download(G, d2, dclip2, 8);
        ck_assert_msg(memcmp(d, d2, sizeof d) == 0, "clip norm not deterministic");
        ck_assert_msg(rel(d[0], c[0]) <= 1e-6, "total %.9g vs cpu %.9g", (double)d[0], (double)c[0]);
        ck_assert_msg(rel(d[1], c[1]) <= 1e-6, "coefficient %.9g vs cpu %.9g", (double)d[1], (double)c[1]);
        if (k == 1) ck_assert(d[1] == 1.0f && c[1] == 1.0f);
        float *a = host_from(dg, nb), *b = host_from(cg, nb);
        double worst = 0;
        for (int64_t i = 0; i < n; i++)
            if (b[i] != 0) worst = fmax(worst, rel(a[i], b[i]));
        ck_assert_msg(worst <= 1e-6, "scaled gradient differs by %g relative", worst);
        if (d[1] == c[1]) assert_bits_segs("scaled gradient (same coefficient)", dg, cg, &L);
        free(a);
        free(b);
        free(g0);
        float *fs[] = {cg, dg, cclip, dclip, dclip2};
        for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) ot_be_free(G, fs[i]);
    }
    ot_be_free(G, seg);
    ot_be_free(G, scratch);
    free(L.all);
    free(L.step);
}
END_TEST

/* segment count past one block row: blockIdx.y strides (tiny segments) */
START_TEST(many_segments) {
    const int nseg = 3000;
    ot_slab_seg *t = calloc(nseg, sizeof *t);
    int64_t off = 0;
    for (int s = 0; s < nseg; s++) {
        t[s] = (ot_slab_seg){off, 1 + s % 5, s % 3, 0};
        off += t[s].n;
    }
    float *p0 = rand_vec(off, 1.0f, 51), *g0 = rand_vec(off, 1.0f, 52);
    const size_t nb = sizeof(float) * (size_t)off;
    float *cp = dev_from(p0, nb), *dp = dev_from(p0, nb), *g = dev_from(g0, nb), *cm = dev_from(NULL, nb), *dm = dev_from(NULL, nb);
    ot_slab_seg *seg = dev_from(t, sizeof *t * nseg);
    ot_sgd_args a = {.lr = {0.1f, 0.2f, 0.05f}, .momentum = {0.9f, 0.8f, 0.7f}, .weight_decay = {1e-3f, 5e-4f, 0.0f}, .first = true};
    ot_be_enter(G);
    ot_slab_kernels_for(OT_DEV_CPU_GUARD)->sgd(ot_backend_cpu_guard(), seg, nseg, cp, g, cm, &a);
    ot_cuda_sgd(seg, nseg, dp, g, dm, &a, NULL, NULL);
    ot_be_leave(G);
    assert_bits("p", dp, cp, off);
    float *fs[] = {cp, dp, g, cm, dm};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) ot_be_free(G, fs[i]);
    ot_be_free(G, seg);
    free(t);
    free(p0);
    free(g0);
}
END_TEST

int main(void) {
    G = ot_backend_cpu_guard();
    Suite *s = suite_create("cudaemu_slab");
    TCase *t = tcase_create("multi_tensor");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, sgd_ema_bits);
    tcase_add_test(t, adam_ema_bits);
    tcase_add_test(t, adamw_ema_bits);
    tcase_add_test(t, sgd_plain_bits);
    tcase_add_test(t, ema_bits);
    tcase_add_test(t, clip_norm_within_1e6);
    tcase_add_test(t, many_segments);
    suite_add_tcase(s, t);
    return tu_main(s);
}
