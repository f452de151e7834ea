/* optim.c: SGD (Nesterov), Adam, AdamW and the model EMA, with the arithmetic
 * of torch.optim (PyTorch 1.13 single-tensor paths) in float32, over the
 * autograd's contiguous parameter slab (train/optim.h). */
#include "optim.h"
#include <math.h>
#include <string.h>

const char *ot_opt_name(ot_opt_kind k) { return k == OT_OPT_ADAM ? "Adam" : k == OT_OPT_ADAMW ? "AdamW" : "SGD"; }

void ot_optimizer_destroy(ot_optimizer *o) {
    if (!o) return;
    ot_backend *be = o->ag->be;
    free(o->var); free(o->group);
    ot_be_free(be, o->m1); ot_be_free(be, o->m2); ot_be_free(be, o->seg); ot_be_free(be, o->clip); ot_be_free(be, o->clip_scratch); ot_be_free(be, o->seg_ema);
    ot_be_free(be, o->dyn_dev); ot_be_host_free(be, o->dyn_host);
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
    ot_backend *be = ag->be;
    size_t slab_bytes = (ag->slab_floats + 1) * sizeof(float);
    o->k = ot_slab_kernels_for(be->kind);
    o->m1 = ot_be_alloc_zero(be, slab_bytes);
    o->m2 = kind == OT_OPT_SGD ? NULL : ot_be_alloc_zero(be, slab_bytes);
    o->seg = ot_be_alloc(be, sizeof(ot_slab_seg) * (size_t)(2 * ag->n_vars + 1));
    o->clip = ot_be_alloc_zero(be, 2 * sizeof(float));
    if (!o->var || !o->group || !o->m1 || (kind != OT_OPT_SGD && !o->m2) || !o->seg || !o->clip) {
        ot_optimizer_destroy(o);
        return ot_fail(err, OT_ERR_NOMEM, "out of memory for optimizer state");
    }
    if (!o->k) {
        ot_optimizer_destroy(o);
        return ot_fail(err, OT_ERR_UNSUPPORTED, "no optimizer kernels for device %s", be->name);
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
    o->seg_dirty = true;
    *out = o;
    return OT_OK;
}

void ot_optimizer_freeze(ot_optimizer *o, int var_index) {
    int k = 0;
    for (int i = 0; i < o->n; i++)
        if (o->var[i] != var_index) { o->var[k] = o->var[i]; o->group[k] = o->group[i]; k++; }
    o->n = k;
    o->seg_dirty = true;
}

static bool fused(const ot_optimizer *o) { return o->k->clip_norm && o->k->sgd_fused && o->k->adam_fused; }

static int seg_by_off(const void *a, const void *b) {
    int64_t x = ((const ot_slab_seg *)a)->off, y = ((const ot_slab_seg *)b)->off;
    return (x > y) - (x < y);
}

/* Fused devices: the stepped tensors, then EMA-only segments over every float of the slab outside them. */
static void upload_ema_segments(ot_optimizer *o, const ot_slab_seg *stepped) {
    ot_autograd *ag = o->ag;
    ot_slab_seg *s = malloc(sizeof *s * (size_t)(o->n + 1)), *t = malloc(sizeof *t * (size_t)(2 * o->n + 2));
    if (!s || !t) { fprintf(stderr, "onnx-train: out of memory for the optimizer's segment table\n"); abort(); }
    memcpy(s, stepped, sizeof *s * (size_t)o->n);
    qsort(s, (size_t)o->n, sizeof *s, seg_by_off);
    int m = 0;
    for (int i = 0; i < o->n; i++) t[m++] = s[i];
    int64_t at = 0, end = (int64_t)ag->slab_floats;
    for (int i = 0; i <= o->n; i++) {
        int64_t next = i < o->n ? s[i].off : end;
        if (next > at) t[m++] = (ot_slab_seg){at, next - at, OT_SLAB_EMA_ONLY, 0};
        if (i < o->n && s[i].off + s[i].n > at) at = s[i].off + s[i].n;
    }
    ot_be_sync(ag->be);
    ot_be_free(ag->be, o->seg_ema);
    o->seg_ema = ot_be_alloc(ag->be, sizeof *t * (size_t)m);
    if (!o->seg_ema) { fprintf(stderr, "onnx-train: out of device memory for the optimizer's segment table\n"); abort(); }
    ot_be_upload(ag->be, o->seg_ema, t, sizeof *t * (size_t)m);
    o->n_seg_ema = m;
    free(s);
    free(t);
}

/* The segment table: the stepped tensors, then every parameter (clipping), uploaded once per change. */
static void upload_segments(ot_optimizer *o) {
    ot_autograd *ag = o->ag;
    ot_slab_seg *t = malloc(sizeof *t * (size_t)(2 * ag->n_vars + 1));
    if (!t) { fprintf(stderr, "onnx-train: out of memory for the optimizer's segment table\n"); abort(); }
    int m = 0;
    for (int i = 0; i < o->n; i++)
        t[m++] = (ot_slab_seg){(int64_t)ag->var_off[o->var[i]], ot_numel(&ag->p->shape[ag->var_vid[o->var[i]]]), o->group[i], 0};
    o->n_params = 0;
    for (int i = 0; i < ag->n_vars; i++) {
        int v = ag->var_vid[i];
        if (ag->kind[v] != OT_VAR_PARAM) continue;
        t[m++] = (ot_slab_seg){(int64_t)ag->var_off[i], ot_numel(&ag->p->shape[v]), 0, 0};
        o->n_params++;
    }
    ot_be_upload(ag->be, o->seg, t, sizeof *t * (size_t)m);
    if (fused(o)) upload_ema_segments(o, t);
    free(t);
    size_t scratch = o->k->clip_scratch ? o->k->clip_scratch(o->n_params) : 0;
    if (scratch > o->clip_scratch_bytes) { /* the device's clip scratch, once per table (the first step) */
        ot_be_sync(ag->be);
        ot_be_free(ag->be, o->clip_scratch);
        o->clip_scratch = ot_be_alloc(ag->be, scratch);
        if (!o->clip_scratch) { fprintf(stderr, "onnx-train: out of device memory for clip_grad_norm's scratch\n"); abort(); }
        o->clip_scratch_bytes = scratch;
    }
    o->seg_dirty = false;
}

static ot_sgd_args sgd_args(const ot_optimizer *o) {
    ot_sgd_args a = {.first = o->steps == 1};
    for (int k = 0; k < OT_NGROUPS; k++) {
        a.lr[k] = (float)o->lr[k];
        a.momentum[k] = (float)o->momentum[k];
        a.weight_decay[k] = (float)o->weight_decay[k];
    }
    return a;
}

static ot_adam_args adam_args(const ot_optimizer *o) {
    ot_adam_args a = {.beta2 = (float)o->beta2, .eps = (float)o->eps, .step = o->steps, .decoupled = o->kind == OT_OPT_ADAMW};
    for (int k = 0; k < OT_NGROUPS; k++) {
        a.lr[k] = (float)o->lr[k];
        a.beta1[k] = (float)o->momentum[k];
        a.weight_decay[k] = (float)o->weight_decay[k];
    }
    return a;
}

/* ot_optimizer_use_graphs: the per-step values of the step with these arguments into the host buffer. */
static void dyn_fill(ot_optimizer *o, float d, float omd) {
    if (o->kind == OT_OPT_SGD) {
        ot_sgd_args a = sgd_args(o);
        ot_step_dyn_sgd(&a, d, omd, o->dyn_host);
    } else {
        ot_adam_args a = adam_args(o);
        ot_step_dyn_adam(&a, d, omd, o->dyn_host);
    }
}

/* The fused launch: seg/nseg the stepped table (ema NULL) or seg_ema (the whole slab); with
 * ot_optimizer_use_graphs the per-step values (dyn_fill's) uploaded first and read by the kernel from there. */
static void step_fused(ot_optimizer *o, const ot_slab_seg *seg, int nseg, float *ema, float d, float omd) {
    ot_autograd *ag = o->ag;
    const float *clip = o->clip_pending ? o->clip : NULL;
    o->clip_pending = false;
    if (o->dyn_host) {
        dyn_fill(o, d, omd);
        ot_be_upload(ag->be, o->dyn_dev, o->dyn_host, sizeof *o->dyn_host);
    }
    if (o->kind == OT_OPT_SGD) {
        ot_sgd_args a = sgd_args(o);
        a.dyn = o->dyn_dev;
        if (o->amp) o->k->sgd_fused_amp(ag->be, seg, nseg, ag->slab, ag->grad_slab, o->m1, &a, clip, ema, d, omd, o->amp);
        else o->k->sgd_fused(ag->be, seg, nseg, ag->slab, ag->grad_slab, o->m1, &a, clip, ema, d, omd);
    } else {
        ot_adam_args a = adam_args(o);
        a.dyn = o->dyn_dev;
        if (o->amp)
            o->k->adam_fused_amp(ag->be, seg, nseg, ag->slab, ag->grad_slab, o->m1, o->m2, &a, clip, ema, d, omd, o->amp);
        else o->k->adam_fused(ag->be, seg, nseg, ag->slab, ag->grad_slab, o->m1, o->m2, &a, clip, ema, d, omd);
    }
}

void ot_optimizer_step(ot_optimizer *o) {
    ot_autograd *ag = o->ag;
    if (o->seg_dirty) upload_segments(o);
    o->steps++;
    ot_be_enter(ag->be);
    if (fused(o)) {
        step_fused(o, o->seg, o->n, NULL, 0.0f, 0.0f);
    } else if (o->kind == OT_OPT_SGD) {
        ot_sgd_args a = sgd_args(o);
        o->k->sgd(ag->be, o->seg, o->n, ag->slab, ag->grad_slab, o->m1, &a);
    } else {
        ot_adam_args a = adam_args(o);
        o->k->adam(ag->be, o->seg, o->n, ag->slab, ag->grad_slab, o->m1, o->m2, &a);
    }
    ot_be_leave(ag->be);
}

/* The EMA's next decay (ModelEMA.update): updates += 1, d = decay * (1 - exp(-updates / tau)). */
static void ema_next(ot_ema *e, float *d, float *omd) {
    e->updates++;
    double dd = e->decay * (1.0 - exp(-(double)e->updates / e->tau));
    *d = (float)dd;
    *omd = (float)(1.0 - dd);
}

void ot_optimizer_step_ema(ot_optimizer *o, ot_ema *ema) {
    if (!ema || !fused(o) || ema->n != o->ag->slab_floats) {
        ot_optimizer_step(o);
        if (ema) ot_ema_update(ema, o->ag);
        return;
    }
    ot_autograd *ag = o->ag;
    if (o->seg_dirty) upload_segments(o);
    o->steps++;
    float d, omd;
    ema_next(ema, &d, &omd);
    ot_be_enter(ag->be);
    step_fused(o, o->seg_ema, o->n_seg_ema, ema->slab, d, omd);
    ot_be_leave(ag->be);
}

ot_status ot_optimizer_use_graphs(ot_optimizer *o, ot_error *err) {
    if (!fused(o) || o->dyn_host) return OT_OK;
    ot_backend *be = o->ag->be;
    o->dyn_host = ot_be_host_alloc(be, sizeof *o->dyn_host);
    o->dyn_dev = ot_be_alloc(be, sizeof *o->dyn_dev);
    if (!o->dyn_host || !o->dyn_dev) {
        ot_be_host_free(be, o->dyn_host); ot_be_free(be, o->dyn_dev);
        o->dyn_host = NULL; o->dyn_dev = NULL;
        return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory for the optimizer's per-step values", be->name);
    }
    return OT_OK;
}

void ot_optimizer_step_ema_host(ot_optimizer *o, ot_ema *ema) {
    o->steps++;
    float d = 0.0f, omd = 0.0f;
    if (ema) ema_next(ema, &d, &omd);
    if (o->dyn_host) dyn_fill(o, d, omd);
    o->clip_pending = false;
}

void ot_optimizer_set_amp(ot_optimizer *o, const ot_amp_state *amp) { o->amp = amp; }

void ot_optimizer_unstep(ot_optimizer *o) {
    if (o->steps > 0) o->steps--;
}

void ot_optimizer_clip_grad_norm(ot_optimizer *o, double max_norm) {
    ot_autograd *ag = o->ag;
    if (o->seg_dirty) upload_segments(o);
    ot_be_enter(ag->be);
    if (fused(o)) { /* the coefficient stays on the device; the next step scales on read */
        o->k->clip_norm(ag->be, o->seg + o->n, o->n_params, ag->grad_slab, (float)max_norm, o->clip, o->clip_scratch);
        o->clip_pending = true;
    } else {
        o->k->clip(ag->be, o->seg + o->n, o->n_params, ag->grad_slab, (float)max_norm, o->clip, o->clip_scratch);
    }
    ot_be_leave(ag->be);
}

void ot_optimizer_grad_norm(const ot_optimizer *o, double *total, double *coef) {
    float c[2];
    ot_be_download(o->ag->be, c, o->clip, sizeof c);
    if (total) *total = c[0];
    if (coef) *coef = c[1];
}

/* ---- EMA ---- */
ot_status ot_ema_create(const ot_autograd *ag, ot_ema **out, ot_error *err) {
    *out = NULL;
    ot_ema *e = calloc(1, sizeof *e);
    if (!e || !(e->slab = ot_be_alloc(ag->be, sizeof(float) * (ag->slab_floats + 1)))) {
        free(e);
        return ot_fail(err, OT_ERR_NOMEM, "out of memory for the EMA");
    }
    e->be = ag->be;
    if (!ot_slab_kernels_for(e->be->kind)) { ot_ema_destroy(e); return ot_fail(err, OT_ERR_UNSUPPORTED, "no EMA kernel for device %s", ag->be->name); }
    e->n = ag->slab_floats;
    ot_be_copy(e->be, e->slab, ag->slab, sizeof(float) * e->n);
    e->decay = 0.9999;
    e->tau = 2000;
    *out = e;
    return OT_OK;
}

void ot_ema_destroy(ot_ema *e) {
    if (e) { ot_be_free(e->be, e->slab); free(e); }
}

void ot_ema_update(ot_ema *e, const ot_autograd *ag) {
    float d, omd;
    ema_next(e, &d, &omd);
    const ot_slab_kernels *k = ot_slab_kernels_for(e->be->kind); /* an EMA exists only where the optimizer's kernels do */
    ot_be_enter(e->be);
    k->ema(e->be, e->slab, ag->slab, (int64_t)e->n, d, omd);
    ot_be_leave(e->be);
}
