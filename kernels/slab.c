/* slab.c: the CPU implementation of the multi-tensor training kernels
 * (kernels/slab.h), used by the cpu and cpu-guard devices. */
#include "slab.h"
#include "device_kernels.h"
#include "ops.h"
#include <math.h>
#include <string.h>

static void sgd_tensor(float *p, const float *g, float *buf, int64_t n, float lr, float mom, float wd, bool first) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (wd != 0.0f) d = d + wd * p[i];
        float b = first ? d : buf[i] * mom + d;
        buf[i] = b;
        d = d + mom * b; /* nesterov */
        p[i] = p[i] + (-lr) * d;
    }
}

static void cpu_sgd(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, const float *g, float *buf, const ot_sgd_args *a) {
    for (int t = 0; t < nseg; t++) {
        int64_t o = seg[t].off;
        int grp = seg[t].group;
        sgd_tensor(p + o, g + o, buf + o, seg[t].n, a->lr[grp], a->momentum[grp], a->weight_decay[grp], a->first);
    }
}

void ot_step_dyn_sgd(const ot_sgd_args *a, float d, float omd, ot_step_dyn *out) {
    memset(out, 0, sizeof *out);
    for (int k = 0; k < OT_SLAB_GROUPS; k++) {
        out->lr[k] = a->lr[k];
        out->momentum[k] = a->momentum[k];
        out->weight_decay[k] = a->weight_decay[k];
    }
    out->first = a->first;
    out->ema_d = d;
    out->ema_omd = omd;
}

void ot_step_dyn_adam(const ot_adam_args *a, float d, float omd, ot_step_dyn *out) {
    memset(out, 0, sizeof *out);
    for (int k = 0; k < OT_SLAB_GROUPS; k++) {
        out->lr[k] = a->lr[k];
        out->momentum[k] = a->beta1[k];
        out->weight_decay[k] = a->weight_decay[k];
        /* torch's bias corrections in double */
        double bc1 = 1.0 - pow(a->beta1[k], (double)a->step), bc2 = 1.0 - pow(a->beta2, (double)a->step);
        out->step_size[k] = (float)(a->lr[k] / bc1);
        out->bc2s[k] = (float)sqrt(bc2);
    }
    out->ema_d = d;
    out->ema_omd = omd;
}

static void adam_tensor(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps,
                        float wd, bool decoupled, float step_size, float bc2s) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        if (decoupled) p[i] = p[i] * (1.0f - lr * wd);
        else if (wd != 0.0f) gi = gi + wd * p[i];
        m[i] = m[i] + (gi - m[i]) * (1.0f - b1); /* lerp, as torch */
        v[i] = v[i] * b2 + (1.0f - b2) * gi * gi;
        float denom = sqrtf(v[i]) / bc2s + eps;
        p[i] = p[i] + (-step_size) * (m[i] / denom);
    }
}

static void cpu_adam(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, const float *g, float *m, float *v, const ot_adam_args *a) {
    ot_step_dyn s;
    ot_step_dyn_adam(a, 0.0f, 0.0f, &s);
    for (int t = 0; t < nseg; t++) {
        int64_t o = seg[t].off;
        int grp = seg[t].group;
        adam_tensor(p + o, g + o, m + o, v + o, seg[t].n, a->lr[grp], a->beta1[grp], a->beta2, a->eps, a->weight_decay[grp],
                    a->decoupled, s.step_size[grp], s.bc2s[grp]);
    }
}

static void cpu_ema(ot_backend *be, float *e, const float *m, int64_t n, float df, float omd) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = e[i] * df;
        float t = omd * m[i];
        e[i] = v + t;
    }
}

/* Sum of squares in double: 8 independent lanes (vectorizable; one
 * accumulator waits on every add), over fixed chunks summed in order, so the
 * result depends on n only, not on the machine or the thread count. */
OT_KERNEL_CLONES static double sumsq_run(const float *g, int64_t n) {
    double a[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) a[k] += (double)g[j + k] * g[j + k];
    for (int k = 0; j < n; j++, k++) a[k] += (double)g[j] * g[j];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

#define NORM_PARTS 256
static double tensor_sumsq(const float *g, int64_t n) {
    int64_t chunk = (n + NORM_PARTS - 1) / NORM_PARTS;
    if (chunk < 8192) chunk = 8192;
    int64_t parts = (n + chunk - 1) / chunk;
    double part[NORM_PARTS];
#pragma omp parallel for if (parts > 2)
    for (int64_t k = 0; k < parts; k++) part[k] = sumsq_run(g + k * chunk, n - k * chunk < chunk ? n - k * chunk : chunk);
    double s = 0;
    for (int64_t k = 0; k < parts; k++) s += part[k];
    return s;
}

static void cpu_clip(ot_backend *be, const ot_slab_seg *seg, int nseg, float *g, float max_norm, float *out, void *scratch) {
    double total2 = 0;
    for (int t = 0; t < nseg; t++) {
        float tn = (float)sqrt(tensor_sumsq(g + seg[t].off, seg[t].n)); /* per-tensor norms are float32 tensors in torch */
        total2 += (double)tn * tn;
    }
    float total = (float)sqrt(total2);
    float c = max_norm / (total + 1e-6f);
    if (c > 1.0f) c = 1.0f;
    out[0] = total;
    out[1] = c;
    for (int t = 0; t < nseg; t++) {
        float *x = g + seg[t].off;
        int64_t n = seg[t].n;
#pragma omp parallel for if (n > 65536)
        for (int64_t j = 0; j < n; j++) x[j] *= c;
    }
}

/* ---- GradScaler (torch.cuda.amp): the oracle of the devices' amp kernels; the CPU itself trains in FP32 ---- */
static void cpu_amp_scale(ot_backend *be, float *x, int64_t n, const ot_amp_state *st) {
    (void)be;
    const float s = st->scale;
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * s;
}

static void cpu_amp_unscale(ot_backend *be, float *g, int64_t n, ot_amp_state *st) {
    (void)be;
    const float inv = (float)(1.0 / (double)st->scale);
    for (int64_t i = 0; i < n; i++) {
        const float v = g[i];
        if (!isfinite(v)) st->found_inf = 1.0f;
        g[i] = inv == 1.0f ? v : v * inv;
    }
}

static void cpu_amp_update(ot_backend *be, ot_amp_state *st, float growth, float backoff, int interval) {
    (void)be;
    if (st->found_inf != 0.0f) {
        st->scale = st->scale * backoff;
        st->tracker = 0;
    } else if (st->tracker + 1 == interval) {
        const float s = st->scale * growth;
        if (isfinite(s)) st->scale = s;
        st->tracker = 0;
    } else
        st->tracker++;
    st->skipped = st->found_inf;
    st->found_inf = 0.0f;
}

static const ot_slab_kernels cpu_slab = {.sgd = cpu_sgd, .adam = cpu_adam, .ema = cpu_ema, .clip = cpu_clip,
                                         .amp_scale = cpu_amp_scale, .amp_unscale = cpu_amp_unscale,
                                         .amp_update = cpu_amp_update};

const ot_slab_kernels *ot_slab_kernels_for(ot_device_kind k) {
    if (k == OT_DEV_CPU || k == OT_DEV_CPU_GUARD) return &cpu_slab;
    const ot_device_kernels *t = ot_device_kernels_get(k); /* a registered device (kernels/device_kernels.h) */
    return t ? t->slab : NULL;
}
