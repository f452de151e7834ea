/* autograd.c: the static forward+backward plan (train/autograd.h).
 *
 * Timeline: forward step s runs at time s, its backward at time 2*ns-1-s.
 * An activation lives from its producer's step to the last forward or
 * backward step that reads it (bwd_reads); a gradient from the backward of its
 * last consumer (where it is zeroed, then accumulated into) to the backward of
 * its producer. View ops (OT_OPF_ALIAS) share the bytes of their input, for
 * values and for gradients. */
#include "autograd.h"
#include "../layout.h"
#include "../../kernels/ops.h"
#include "../config.h"
#include <string.h>
#include <unistd.h>

/* Deprecated shim (train/trainer.c until it calls ot_autograd_set_bn_sync):
 * the sum autograds created afterwards start with. */

void ot_autograd_default_kinds(const ot_graph *g, unsigned char *kind) {
    memset(kind, 0, (size_t)g->n_values);
    for (int i = 0; i < g->n_nodes; i++) {
        const ot_node *n = &g->nodes[i];
        int np = 0, nb = 0;
        if (strcmp(n->op_type, "Conv") == 0) np = 3;
        else if (strcmp(n->op_type, "BatchNormalization") == 0) { np = 3; nb = 5; }
        for (int k = 1; k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0 || !(g->values[v].flags & OT_V_INIT) || g->values[v].init.dtype != OT_F32) continue;
            if (k < np) kind[v] = OT_VAR_PARAM;
            else if (k < nb) kind[v] = OT_VAR_BUFFER;
        }
    }
}

void ot_autograd_destroy(ot_autograd *a) {
    if (!a) return;
    ot_plan_destroy(a->p);
    free(a->var_vid); free(a->kind); free(a->var_off);
    if (!a->shared_vars) { ot_be_free(a->be, a->slab); ot_be_free(a->be, a->grad_slab); }
    free(a->bsteps); free(a->zero_start); free(a->zero_vid); free(a->requires_grad);
    free(a->final_start); free(a->final_var);
    free(a);
}

ot_status ot_autograd_share_vars(ot_autograd *dst, ot_autograd *src, ot_error *err) {
    if (dst->g != src->g || dst->n_vars != src->n_vars || dst->slab_floats != src->slab_floats)
        return ot_fail(err, OT_ERR_INTERNAL, "autograd: sharing variables between different graphs");
    if (dst->be != src->be) return ot_fail(err, OT_ERR_INTERNAL, "autograd: sharing variables across devices");
    if (!dst->shared_vars) { ot_be_free(dst->be, dst->slab); ot_be_free(dst->be, dst->grad_slab); }
    dst->slab = src->slab;
    dst->grad_slab = src->grad_slab;
    dst->shared_vars = true;
    dst->p->bn_sum = src->p->bn_sum; /* one training: the same BatchNorm synchronisation */
    dst->p->bn_dev_sum = src->p->bn_dev_sum;
    dst->p->bn_dev_ctx = src->p->bn_dev_ctx;
    for (int i = 0; i < dst->n_vars; i++) {
        int v = dst->var_vid[i];
        dst->p->data[v] = dst->slab + dst->var_off[i];
        if (dst->kind[v] == OT_VAR_PARAM) dst->p->grad[v] = dst->grad_slab + dst->var_off[i];
    }
    return OT_OK;
}

static size_t vbytes(const ot_plan *p, int v) { return (size_t)ot_numel(&p->shape[v]) * ot_dtype_size(p->dtype[v]); }

/* ---- variables: one slab for data, one for gradients ---- */
static ot_status make_slabs(ot_autograd *a, ot_error *err) {
    const ot_graph *g = a->g;
    ot_plan *p = a->p;
    int nv = g->n_values;
    a->var_vid = malloc(sizeof(int) * (size_t)nv);
    a->var_off = malloc(sizeof(size_t) * (size_t)nv);
    if (!a->var_vid || !a->var_off) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    size_t total = 0;
    for (int v = 0; v < nv; v++) {
        if (!a->kind[v]) continue;
        a->var_vid[a->n_vars] = v;
        a->var_off[a->n_vars++] = total;
        total += ((size_t)ot_numel(&p->shape[v]) + 15) & ~(size_t)15; /* 64-byte aligned tensors */
    }
    a->slab_floats = total;
    size_t bytes = (total ? total : 16) * sizeof(float);
    a->slab = ot_be_alloc(a->be, bytes);
    a->grad_slab = ot_be_alloc(a->be, bytes);
    if (!a->slab || !a->grad_slab) return ot_fail(err, OT_ERR_NOMEM, "out of memory for %zu parameters on %s", total, a->be->name);
    ot_be_memset(a->be, a->slab, 0, bytes);
    ot_be_memset(a->be, a->grad_slab, 0, bytes);
    for (int i = 0; i < a->n_vars; i++) {
        int v = a->var_vid[i];
        float *d = a->slab + a->var_off[i];
        ot_be_upload(a->be, d, g->values[v].init.data, vbytes(p, v));
        p->data[v] = d;
        if (a->kind[v] == OT_VAR_PARAM) p->grad[v] = a->grad_slab + a->var_off[i];
    }
    return OT_OK;
}

/* The variable whose gradient holds gp (a pointer into grad_slab), -1 when gp is not in the slab. */
static int var_at(const ot_autograd *a, const float *gp) {
    if (!gp || a->n_vars == 0 || gp < a->grad_slab || gp >= a->grad_slab + a->slab_floats) return -1;
    size_t off = (size_t)(gp - a->grad_slab);
    int lo = 0, hi = a->n_vars - 1; /* the last variable starting at or before off */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (a->var_off[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* When each variable's gradient is final (ot_autograd_set_grad_ready): after the
 * last backward step with it, or a view sharing its gradient, among its inputs. */
static ot_status final_steps(ot_autograd *a, ot_error *err) {
    int nv = a->n_vars, nb = a->n_bsteps;
    int *last = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    a->final_start = calloc((size_t)nb + 2, sizeof(int));
    a->final_var = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    if (!last || !a->final_start || !a->final_var) { free(last); return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }
    for (int k = 0; k < nv; k++) last[k] = -1;
    for (int b = 0; b < nb; b++) {
        const ot_node *n = &a->g->nodes[a->bsteps[b]];
        for (int i = 0; i < n->n_in; i++) {
            int k = n->in[i] >= 0 ? var_at(a, a->p->grad[n->in[i]]) : -1;
            if (k >= 0) last[k] = b;
        }
    }
    for (int k = 0; k < nv; k++) a->final_start[last[k] + 2]++; /* slot last + 1 counted at start[slot + 1] */
    for (int s = 1; s <= nb + 1; s++) a->final_start[s] += a->final_start[s - 1];
    int *cur = malloc(sizeof(int) * ((size_t)nb + 1));
    if (!cur) { free(last); return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }
    memcpy(cur, a->final_start, sizeof(int) * ((size_t)nb + 1));
    for (int k = 0; k < nv; k++) a->final_var[cur[last[k] + 1]++] = k;
    free(cur);
    free(last);
    return OT_OK;
}

ot_status ot_autograd_create(const ot_graph *g, const ot_shape *shapes, const unsigned char *kind, bool input_grads,
                             ot_autograd **out, ot_error *err) {
    return ot_autograd_create_on(NULL, g, shapes, kind, input_grads, out, err);
}

ot_status ot_autograd_create_on(ot_backend *be, const ot_graph *g, const ot_shape *shapes, const unsigned char *kind, bool input_grads,
                                ot_autograd **out, ot_error *err) {
    *out = NULL;
    ot_autograd *a = calloc(1, sizeof *a);
    if (!a) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    a->g = g;
    a->be = be ? be : ot_backend_cpu();
    int nv = g->n_values;
    size_t nvs = (size_t)(nv ? nv : 1);
    a->kind = calloc(nvs, 1);
    a->requires_grad = calloc(nvs, 1);
    ot_timeline tl = {0};
    ot_status st = ot_timeline_init(&tl, 2 * nv, err);
    if (st) { ot_autograd_destroy(a); return st; }
    int *birth = tl.birth, *death = tl.death;
    size_t *size = tl.size;
    int *galias = malloc(sizeof(int) * nvs), *tfwd = NULL;
    if (!a->kind || !a->requires_grad || !galias) {
        st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (kind) memcpy(a->kind, kind, (size_t)nv);
    else ot_autograd_default_kinds(g, a->kind);
    unsigned char *var = malloc(nvs);
    if (!var) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto fail; }
    for (int v = 0; v < nv; v++) var[v] = a->kind[v] != OT_VAR_CONST;
    st = ot_plan_create_on(a->be, g, shapes, OT_PLAN_TRAIN, var, &a->p, err);
    free(var);
    if (st) goto fail;
    ot_plan *p = a->p;
    p->grad = calloc(nvs, sizeof(void *));
    if (!p->grad) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto fail; }
    if ((st = make_slabs(a, err))) goto fail;

    /* which values need a gradient */
    for (int v = 0; v < nv; v++) a->requires_grad[v] = a->kind[v] == OT_VAR_PARAM;
    if (input_grads) for (int i = 0; i < g->n_inputs; i++) a->requires_grad[g->inputs[i]] = 1;
    int ns = p->n_steps;
    tfwd = malloc(sizeof(int) * (size_t)(g->n_nodes ? g->n_nodes : 1)); /* node -> forward step */
    a->bsteps = malloc(sizeof(int) * (size_t)(ns ? ns : 1));
    if (!tfwd || !a->bsteps) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < g->n_nodes; i++) tfwd[i] = -1;
    for (int s = 0; s < ns; s++) {
        const ot_node *n = &g->nodes[p->steps[s]];
        tfwd[p->steps[s]] = s;
        bool rg = false;
        for (int k = 0; k < n->n_in; k++) if (n->in[k] >= 0 && a->requires_grad[n->in[k]]) rg = true;
        if (!rg) continue;
        for (int k = 0; k < n->n_out; k++) /* float outputs, and on the CUDA device those the planner stores in half
                                            * (--amp, core/runtime/passes.h ot_pass_half_act): their gradients are float */
            if (n->out[k] >= 0 && (p->dtype[n->out[k]] == OT_F32 ||
                                   (p->be->kind == OT_DEV_CUDA && (p->dtype[n->out[k]] == OT_F16 || p->dtype[n->out[k]] == OT_BF16))))
                a->requires_grad[n->out[k]] = 1;
        const ot_op_impl *im = ot_op_impl_get(n->op, p->be->kind);
        if (!im || !im->backward) {
            char label[600];
            st = ot_fail(err, OT_ERR_UNSUPPORTED, "%sno implementation of %s's backward for device %s, which training needs here",
                         ot_node_label(g, n, label, sizeof label), ot_op_get(n->op)->name, p->be->name);
            goto fail;
        }
    }
    for (int s = ns - 1; s >= 0; s--) {
        const ot_node *n = &g->nodes[p->steps[s]];
        bool any = false;
        for (int k = 0; k < n->n_in; k++) if (n->in[k] >= 0 && a->requires_grad[n->in[k]]) any = true;
        if (any) a->bsteps[a->n_bsteps++] = p->steps[s];
    }
#define TB(node) (2 * ns - 1 - tfwd[node])
    /* ---- one timeline: items 0..nv-1 activations (the plan's forward
     * lifetimes, extended to the backward steps that read them), nv..2nv-1
     * gradients; times 0..ns-1 forward, ns..2ns-1 backward ---- */
    tl.end = 2 * ns;
    ot_plan_lifetimes(p, &tl);
    for (int v = 0; v < nv; v++) galias[v] = v;
    for (int s = 0; s < ns; s++) {
        const ot_node *n = &g->nodes[p->steps[s]];
        const ot_op_def *def = ot_op_get(n->op);
        int v = n->n_out > 0 ? n->out[0] : -1;
        /* a graph output's gradient is the caller's: its own buffer, added into the input's by the view's backward */
        if (v >= 0 && (def->flags & OT_OPF_ALIAS) && n->in[0] >= 0)
            galias[v] = (g->values[v].flags & OT_V_OUTPUT) ? v : galias[n->in[0]];
    }
    for (int s = 0; s < ns; s++) {
        int ni = p->steps[s];
        const ot_node *n = &g->nodes[ni];
        const ot_op_def *def = ot_op_get(n->op);
        bool has_b = false;
        for (int b = 0; b < a->n_bsteps; b++) if (a->bsteps[b] == ni) has_b = true;
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0) continue;
            int r = p->alias[v], t = s;
            if (has_b && (def->bwd_reads & OT_BWD_IN(k))) t = TB(ni);
            if (death[r] < t) death[r] = t;
            /* gradient of an input: from this consumer's backward (earliest) */
            if (has_b && a->requires_grad[v] && a->kind[v] != OT_VAR_PARAM) {
                int gr = galias[v];
                if (birth[nv + gr] < 0 || TB(ni) < birth[nv + gr]) birth[nv + gr] = TB(ni);
                if (death[nv + gr] < TB(ni)) death[nv + gr] = TB(ni);
            }
        }
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v < 0) continue;
            int r = p->alias[v], t = s;
            if (has_b && (def->bwd_reads & OT_BWD_OUT(k))) t = TB(ni);
            if (death[r] < t) death[r] = t;
            if (has_b && a->requires_grad[v]) { /* the producer's backward reads it last */
                int gr = galias[v];
                if (death[nv + gr] < TB(ni)) death[nv + gr] = TB(ni);
                if (birth[nv + gr] < 0 || TB(ni) < birth[nv + gr]) birth[nv + gr] = TB(ni);
            }
        }
    }
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->outputs[k];
        death[p->alias[v]] = 2 * ns;
        if (a->requires_grad[v]) {
            int gr = galias[v];
            birth[nv + gr] = ns > 0 ? ns - 1 : 0; /* written by the caller between forward and backward */
            if (death[nv + gr] < ns) death[nv + gr] = ns;
        }
    }
    if (input_grads)
        for (int i = 0; i < g->n_inputs; i++) {
            int gr = galias[g->inputs[i]];
            if (birth[nv + gr] >= 0) death[nv + gr] = 2 * ns;
        }
    for (int v = 0; v < nv; v++) {
        if (galias[v] != v || !a->requires_grad[v] || a->kind[v] == OT_VAR_PARAM) birth[nv + v] = -1;
        if (birth[nv + v] >= 0) size[nv + v] = (size_t)ot_numel(&p->shape[v]) * sizeof(float);
        /* a gradient of an input or parameter-free value that no backward touches */
        if (birth[nv + v] >= 0 && death[nv + v] < birth[nv + v]) death[nv + v] = birth[nv + v];
    }
    if ((st = ot_plan_commit(p, &tl, "activations and gradients", err))) goto fail;
    a->arena_bytes = p->arena_bytes;
    for (int v = 0; v < nv; v++)
        if (birth[nv + v] >= 0) p->grad[v] = p->arena + tl.off[nv + v];
    for (int v = 0; v < nv; v++)
        if (galias[v] != v && p->grad[galias[v]]) p->grad[v] = p->grad[galias[v]];
    if ((st = final_steps(a, err))) goto fail;
    /* gradients written, not added: a gradient with one writer (one input slot
     * of one backward step), not shared with a view, not the caller's (graph
     * input or output), whose op can write it (OT_OPF_GRAD_SET), is not zeroed:
     * the writer sets it. ONNXT_GRAD_SET=0 zeroes every gradient. */
    unsigned char *nozero = calloc(nvs, 1);
    int *writers = calloc(nvs, sizeof(int)), *views = calloc(nvs, sizeof(int));
    p->gset = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(unsigned));
    if (!nozero || !writers || !views || !p->gset) {
        free(nozero); free(writers); free(views);
        st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (ot_config_get()->grad_set) {
        for (int v = 0; v < nv; v++) views[galias[v]]++;
        for (int b = 0; b < a->n_bsteps; b++) {
            const ot_node *n = &g->nodes[a->bsteps[b]];
            for (int k = 0; k < n->n_in; k++) {
                int v = n->in[k];
                if (v >= 0 && a->requires_grad[v] && a->kind[v] != OT_VAR_PARAM) writers[galias[v]]++;
            }
        }
        for (int b = 0; b < a->n_bsteps; b++) {
            int ni = a->bsteps[b];
            const ot_node *n = &g->nodes[ni];
            if (!(ot_op_get(n->op)->flags & OT_OPF_GRAD_SET)) continue;
            for (int k = 0; k < n->n_in && k < 32; k++) {
                int v = n->in[k];
                if (v < 0 || !a->requires_grad[v] || a->kind[v] == OT_VAR_PARAM || galias[v] != v || writers[v] != 1 ||
                    views[v] != 1 || (g->values[v].flags & (OT_V_INPUT | OT_V_OUTPUT)) || !p->grad[v])
                    continue;
                p->gset[ni] |= 1u << k;
                nozero[v] = 1;
            }
        }
    }
    free(writers); free(views);
    /* gradients to zero before each backward step: those born at its time */
    a->zero_start = calloc((size_t)a->n_bsteps + 1, sizeof(int));
    a->zero_vid = malloc(sizeof(int) * nvs);
    if (!a->zero_start || !a->zero_vid) { free(nozero); st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto fail; }
    int nz = 0;
    for (int b = 0; b < a->n_bsteps; b++) {
        a->zero_start[b] = nz;
        int t = TB(a->bsteps[b]);
        for (int v = 0; v < nv; v++)
            if (birth[nv + v] == t && !nozero[v]) a->zero_vid[nz++] = v;
    }
    a->zero_start[a->n_bsteps] = nz;
    free(nozero);
    /* input gradients that no backward step births (unused inputs): zero once */
#undef TB
    ot_timeline_free(&tl); free(galias); free(tfwd);
    *out = a;
    return OT_OK;
fail:
    ot_timeline_free(&tl); free(galias); free(tfwd);
    ot_autograd_destroy(a);
    return st;
}

ot_status ot_autograd_forward(ot_autograd *a, const float *const *inputs, ot_error *err) {
    return ot_plan_run(a->p, inputs, err);
}

float *ot_autograd_output_grad(ot_autograd *a, int k) { return a->p->grad[a->g->outputs[k]]; }
float *ot_autograd_data(ot_autograd *a, int vid) { return a->p->data[vid]; }
float *ot_autograd_grad(ot_autograd *a, int vid) { return a->p->grad[vid]; }

void ot_autograd_download(ot_autograd *a, int vid, float *host) { ot_plan_download(a->p, vid, host); }

void ot_autograd_download_grad(ot_autograd *a, int vid, float *host) {
    ot_be_download(a->be, host, a->p->grad[vid], (size_t)ot_numel(&a->p->shape[vid]) * sizeof(float));
}

ot_status ot_autograd_backward(ot_autograd *a, ot_error *err) {
    ot_plan *p = a->p;
    const ot_graph *g = a->g;
    ot_status st = OT_OK;
    void (*ready)(void *, int) = a->grad_ready;
    ot_be_enter(a->be);
    if (ready)
        for (int z = a->final_start[0]; z < a->final_start[1]; z++) ready(a->grad_ready_ctx, a->final_var[z]);
    for (int b = 0; b < a->n_bsteps && !st; b++) {
        double tz = p->prof ? ot_plan_clock() : 0;
        for (int z = a->zero_start[b]; z < a->zero_start[b + 1]; z++) {
            int v = a->zero_vid[z];
            ot_be_memset(a->be, p->grad[v], 0, sizeof(float) * (size_t)ot_numel(&p->shape[v]));
        }
        if (p->prof) p->prof[2 * g->n_nodes] += ot_plan_clock() - tz;
        int ni = a->bsteps[b];
        const ot_node *n = &g->nodes[ni];
        ot_kctx c = {p, n, (int)g->opset, p->params[ni], err};
        double t0 = p->prof ? ot_plan_clock() : 0;
        st = ot_op_impl_get(n->op, p->be->kind)->backward(&c); /* present: checked at creation */
        if (p->prof) p->prof[2 * ni + 1] += ot_plan_clock() - t0;
        if (st) {
            char label[600];
            ot_fail_prefix(err, "%s", ot_node_label(g, n, label, sizeof label));
        } else if (ready) {
            for (int z = a->final_start[b + 1]; z < a->final_start[b + 2]; z++) ready(a->grad_ready_ctx, a->final_var[z]);
        }
    }
    ot_be_leave(a->be);
    return st;
}

void ot_autograd_set_grad_ready(ot_autograd *a, void (*cb)(void *ctx, int var), void *ctx) {
    a->grad_ready = cb;
    a->grad_ready_ctx = ctx;
}

void ot_autograd_set_bn_sync(ot_autograd *a, void (*sum)(double *buf, int64_t n)) { a->p->bn_sum = sum; }
void ot_autograd_set_bn_sync_device(ot_autograd *a, ot_status (*sum)(void *ctx, double *dev, int64_t n, ot_error *err),
                                    void *ctx) {
    a->p->bn_dev_sum = sum;
    a->p->bn_dev_ctx = ctx;
}

void ot_autograd_zero_grad(ot_autograd *a) { ot_be_memset(a->be, a->grad_slab, 0, a->slab_floats * sizeof(float)); }
