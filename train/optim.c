/* optim.c: SGD (Nesterov), Adam, AdamW and the model EMA, with the arithmetic
 * of torch.optim (PyTorch 1.13 single-tensor paths) in float32, over the
 * autograd's contiguous parameter slab (train/optim.h). */
#include "optim.h"
#include "../kernels/ops.h"
#include <math.h>
#include <string.h>

const char *ot_opt_name(ot_opt_kind k) { return k == OT_OPT_ADAM ? "Adam" : k == OT_OPT_ADAMW ? "AdamW" : "SGD"; }

void ot_optimizer_destroy(ot_optimizer *o) {
    if (!o) return;
    free(o->var); free(o->group); free(o->m1); free(o->m2);
    free(o);
}

ot_status ot_optimizer_create(ot_autograd *ag, ot_opt_kind kind, double lr0, double momentum, double decay,
                              ot_optimizer **out, ot_error *err) {
    *out = NULL;
    ot_optimizer *o = calloc(1, sizeof *o);
    if (!o) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    o->kind = kind;
    o->ag = ag;
    o->var = malloc(sizeof(int) * (size_t)(ag->n_vars + 1));
    o->group = malloc(sizeof(int) * (size_t)(ag->n_vars + 1));
    o->m1 = calloc(ag->slab_floats + 1, sizeof(float));
    o->m2 = kind == OT_OPT_SGD ? NULL : calloc(ag->slab_floats + 1, sizeof(float));
    if (!o->var || !o->group || !o->m1 || (kind != OT_OPT_SGD && !o->m2)) {
        ot_optimizer_destroy(o);
        return ot_fail(err, OT_ERR_NOMEM, "out of memory for optimizer state");
    }
    /* groups by the consumer of each parameter: Conv input 1 -> weights, BN input 1 -> BN weights, else biases */
    const ot_graph *g = ag->g;
    for (int i = 0; i < ag->n_vars; i++) {
        int v = ag->var_vid[i];
        if (ag->kind[v] != OT_VAR_PARAM) continue;
        int grp = OT_GROUP_BIAS;
        for (int k = 0; k < g->n_nodes; k++) {
            const ot_node *n = &g->nodes[k];
            if (n->n_in > 1 && n->in[1] == v)
                grp = strcmp(n->op_type, "BatchNormalization") == 0 ? OT_GROUP_BN : OT_GROUP_WEIGHT;
        }
        o->var[o->n] = i;
        o->group[o->n++] = grp;
    }
    for (int k = 0; k < OT_NGROUPS; k++) {
        o->lr[k] = o->initial_lr[k] = lr0;
        o->momentum[k] = momentum;
        o->weight_decay[k] = k == OT_GROUP_WEIGHT ? decay : 0.0;
    }
    o->beta2 = 0.999;
    o->eps = 1e-8;
    *out = o;
    return OT_OK;
}

void ot_optimizer_freeze(ot_optimizer *o, int var_index) {
    int k = 0;
    for (int i = 0; i < o->n; i++)
        if (o->var[i] != var_index) { o->var[k] = o->var[i]; o->group[k] = o->group[i]; k++; }
    o->n = k;
}

/* ---- one tensor ---- */
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

static void adam_tensor(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps,
                        float wd, bool decoupled, long step) {
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    float step_size = (float)(lr / bc1), bc2s = (float)sqrt(bc2);
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

void ot_optimizer_step(ot_optimizer *o) {
    ot_autograd *ag = o->ag;
    o->steps++;
    for (int t = 0; t < o->n; t++) {
        int i = o->var[t], grp = o->group[t];
        size_t off = ag->var_off[i];
        int64_t n = ot_numel(&ag->p->shape[ag->var_vid[i]]);
        float *p = ag->slab + off, *g = ag->grad_slab + off;
        float lr = (float)o->lr[grp], wd = (float)o->weight_decay[grp];
        if (o->kind == OT_OPT_SGD)
            sgd_tensor(p, g, o->m1 + off, n, lr, (float)o->momentum[grp], wd, o->steps == 1);
        else
            adam_tensor(p, g, o->m1 + off, o->m2 + off, n, lr, (float)o->momentum[grp], (float)o->beta2, (float)o->eps, wd,
                        o->kind == OT_OPT_ADAMW, o->steps);
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

double ot_clip_grad_norm(ot_autograd *ag, double max_norm, double *coef) {
    double total2 = 0;
    for (int i = 0; i < ag->n_vars; i++) {
        int v = ag->var_vid[i];
        if (ag->kind[v] != OT_VAR_PARAM) continue;
        const float *g = ag->grad_slab + ag->var_off[i];
        int64_t n = ot_numel(&ag->p->shape[v]);
        double s = tensor_sumsq(g, n);
        float tn = (float)sqrt(s); /* per-tensor norms are float32 tensors in torch */
        total2 += (double)tn * tn;
    }
    float total = (float)sqrt(total2);
    float c = (float)max_norm / (total + 1e-6f);
    if (c > 1.0f) c = 1.0f;
    if (coef) *coef = c;
    for (int i = 0; i < ag->n_vars; i++) {
        int v = ag->var_vid[i];
        if (ag->kind[v] != OT_VAR_PARAM) continue;
        float *g = ag->grad_slab + ag->var_off[i];
        int64_t n = ot_numel(&ag->p->shape[v]);
#pragma omp parallel for if (n > 65536)
        for (int64_t j = 0; j < n; j++) g[j] *= c;
    }
    return total;
}

/* ---- EMA ---- */
ot_status ot_ema_create(const ot_autograd *ag, ot_ema **out, ot_error *err) {
    *out = NULL;
    ot_ema *e = calloc(1, sizeof *e);
    if (!e || !(e->slab = malloc(sizeof(float) * (ag->slab_floats + 1)))) {
        free(e);
        return ot_fail(err, OT_ERR_NOMEM, "out of memory for the EMA");
    }
    e->n = ag->slab_floats;
    memcpy(e->slab, ag->slab, sizeof(float) * e->n);
    e->decay = 0.9999;
    e->tau = 2000;
    *out = e;
    return OT_OK;
}

void ot_ema_destroy(ot_ema *e) {
    if (e) { free(e->slab); free(e); }
}

void ot_ema_update(ot_ema *e, const ot_autograd *ag) {
    e->updates++;
    double d = e->decay * (1.0 - exp(-(double)e->updates / e->tau));
    float df = (float)d, omd = (float)(1.0 - d);
    const float *m = ag->slab;
    int64_t n = (int64_t)e->n;
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = e->slab[i] * df;
        float t = omd * m[i];
        e->slab[i] = v + t;
    }
}
