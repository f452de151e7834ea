/* plan.c: shape inference, constant folding and arena layout for concrete
 * input shapes (core/plan.h). Runs each node's infer once, folds nodes fed by
 * constants with their own CPU kernels, runs the planner passes (passes.c),
 * checks that the plan's device implements every step, assigns arena offsets
 * first-fit by liveness and prepares the steps. ot_plan_run then calls the
 * device's forward implementations in topological order. */
#include "../plan.h"
#include <time.h>
#include "../../kernels/ops.h"
#include "../layout.h"
#include "passes.h"
#include <string.h>
#include <unistd.h>

/* Folded constants of a YOLO graph are small (anchor grids); a file that asks
 * for more is refused rather than allocated. */
#define MAX_FOLD_BYTES ((size_t)256 << 20)

void ot_plan_destroy(ot_plan *p) {
    if (!p) return;
    if (p->owned) for (int v = 0; v < p->nv; v++) free(p->owned[v]);
    if (p->params)
        for (int i = 0; i < p->g->n_nodes; i++) {
            const ot_op_impl *im = p->params[i] ? ot_op_impl_get(p->g->nodes[i].op, p->be->kind) : NULL;
            if (im && im->release) im->release(p->params[i]);
            free(p->params[i]);
        }
    free(p->owned); free(p->params); free(p->dtype); free(p->shape); free(p->data); free(p->host); free(p->is_const);
    for (int i = 0; i < p->n_state; i++) ot_be_free(p->be, p->state[i]);
    free(p->state); free(p->grad);
    free(p->steps); free(p->gset); free(p->alias); free(p->offset);
    ot_be_free(p->be, p->arena);
    ot_be_free(p->be, p->consts);
    ot_be_free(p->be, p->ws);
    free(p);
}

static size_t value_bytes(const ot_plan *p, int v) {
    return (size_t)ot_numel(&p->shape[v]) * ot_dtype_size(p->dtype[v]);
}

/* ---- inference and folding, node by node ---- */
static ot_status infer_nodes(ot_plan *p, ot_error *err) {
    const ot_graph *g = p->g;
    for (int ni = 0; ni < g->n_nodes; ni++) {
        const ot_node *n = &g->nodes[ni];
        const ot_op_def *def = ot_op_get(n->op);
        char label[600];
        ot_node_label(g, n, label, sizeof label);
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v >= 0 && p->dtype[v] == OT_UNDEF)
                return ot_fail(err, OT_ERR_INTERNAL, "%sinput '%s' has no type yet", label, g->values[v].name);
        }
        p->params[ni] = calloc(1, def->params_size ? def->params_size : 1);
        if (!p->params[ni]) return ot_fail(err, OT_ERR_NOMEM, "%sout of memory", label);
        ot_kctx c = {p, n, (int)g->opset, p->params[ni], err};
        ot_status s = def->infer(&c);
        if (s) return ot_fail_prefix(err, "%s", label);
        bool all_const = true;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && !p->is_const[n->in[k]]) all_const = false;
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v >= 0 && p->dtype[v] == OT_UNDEF)
                return ot_fail(err, OT_ERR_INTERNAL, "%soutput %d was not inferred", label, k);
        }
        if (all_const || (def->flags & OT_OPF_SHAPE_ONLY)) {
            for (int k = 0; k < n->n_out; k++) {
                int v = n->out[k];
                if (v < 0) continue;
                size_t b = value_bytes(p, v);
                if (b > MAX_FOLD_BYTES - p->const_bytes)
                    return ot_fail(err, OT_ERR_NOMEM, "%sconstant folding would need %zu more bytes (limit %zu MiB)", label, b,
                                   MAX_FOLD_BYTES >> 20);
                p->owned[v] = calloc(1, b ? b : 1);
                if (!p->owned[v]) return ot_fail(err, OT_ERR_NOMEM, "%sout of memory folding %zu bytes", label, b);
                p->data[v] = p->host[v] = p->owned[v];
                p->is_const[v] = 1;
                p->const_bytes += b;
            }
            /* folding is planning: the CPU kernel on host memory, with a host workspace */
            void *fold_ws = p->ws_bytes ? malloc(p->ws_bytes) : NULL;
            if (p->ws_bytes && !fold_ws) return ot_fail(err, OT_ERR_NOMEM, "%sout of memory (workspace)", label);
            p->ws = fold_ws;
            s = ot_op_impl_get(n->op, OT_DEV_CPU)->forward(&c);
            p->ws = NULL;
            free(fold_ws);
            if (s) return ot_fail_prefix(err, "%s", label);
        } else if (def->flags & OT_OPF_FOLD_ONLY) {
            return ot_fail(err, OT_ERR_UNSUPPORTED, "%sits inputs are computed at run time; onnx-train evaluates %s only on constants",
                           label, n->op_type);
        } else {
            p->steps[p->n_steps++] = ni;
        }
    }
    return OT_OK;
}

/* ---- one memory timeline (core/layout.c places it) ---- */
ot_status ot_timeline_init(ot_timeline *t, int n, ot_error *err) {
    memset(t, 0, sizeof *t);
    size_t m = (size_t)(n ? n : 1);
    t->n = n;
    t->birth = malloc(sizeof(int) * m);
    t->death = malloc(sizeof(int) * m);
    t->size = calloc(m, sizeof(size_t));
    t->off = calloc(m, sizeof(size_t));
    if (!t->birth || !t->death || !t->size || !t->off) { ot_timeline_free(t); return ot_fail(err, OT_ERR_NOMEM, "out of memory planning memory"); }
    for (int i = 0; i < n; i++) t->birth[i] = t->death[i] = -1;
    return OT_OK;
}

void ot_timeline_free(ot_timeline *t) {
    free(t->birth); free(t->death); free(t->size); free(t->off);
    memset(t, 0, sizeof *t);
}

void ot_plan_lifetimes(ot_plan *p, ot_timeline *t) {
    const ot_graph *g = p->g;
    int nv = p->nv, ns = p->n_steps;
    for (int v = 0; v < nv; v++) p->alias[v] = v;
    /* graph inputs: a fixed slot from the first step (addresses stay put from batch to batch) */
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        t->birth[v] = 0;
        t->death[v] = 0;
        t->size[v] = value_bytes(p, v);
    }
    /* aliases and births */
    for (int s = 0; s < ns; s++) {
        const ot_node *n = &g->nodes[p->steps[s]];
        const ot_op_def *def = ot_op_get(n->op);
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v < 0) continue;
            if (k == 0 && (def->flags & OT_OPF_ALIAS) && n->in[0] >= 0) p->alias[v] = p->alias[n->in[0]];
            else { t->birth[v] = s; t->size[v] = value_bytes(p, v); }
        }
    }
    /* deaths: last step that reads any view of a root; graph outputs live to the end */
    for (int s = 0; s < ns; s++) {
        const ot_node *n = &g->nodes[p->steps[s]];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && t->death[p->alias[n->in[k]]] < s) t->death[p->alias[n->in[k]]] = s;
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0 && t->death[p->alias[n->out[k]]] < s) t->death[p->alias[n->out[k]]] = s;
    }
    for (int k = 0; k < g->n_outputs; k++) t->death[p->alias[g->outputs[k]]] = t->end;
    for (int v = 0; v < nv; v++) {
        if (t->birth[v] >= 0 && p->alias[v] != v) t->birth[v] = -1;
    }
}

/* Constants read by runtime steps: one backend block, uploaded once. */
static ot_status upload_consts(ot_plan *p, ot_error *err) {
    const ot_graph *g = p->g;
    size_t *at = calloc((size_t)(p->nv ? p->nv : 1), sizeof(size_t));
    if (!at) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    size_t total = 0;
    for (int s = 0; s < p->n_steps; s++) {
        const ot_node *n = &g->nodes[p->steps[s]];
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0 || !p->is_const[v] || at[v]) continue;
            at[v] = total + 1;
            total += (value_bytes(p, v) + OT_ARENA_ALIGN - 1) / OT_ARENA_ALIGN * OT_ARENA_ALIGN;
        }
    }
    if (total) {
        p->consts = ot_be_alloc(p->be, total);
        if (!p->consts) { free(at); return ot_fail(err, OT_ERR_NOMEM, "%s: cannot allocate %zu bytes of constants on %s", g->path, total, p->be->name); }
        p->consts_bytes = total;
        for (int v = 0; v < p->nv; v++)
            if (at[v]) {
                p->data[v] = p->consts + at[v] - 1;
                ot_be_upload(p->be, p->data[v], p->host[v], value_bytes(p, v));
            }
    }
    free(at);
    return OT_OK;
}

ot_status ot_plan_commit(ot_plan *p, ot_timeline *t, const char *what, ot_error *err) {
    const ot_graph *g = p->g;
    size_t top = ot_layout_first_fit(t->n, t->birth, t->death, t->size, t->off);
    if (top == (size_t)-1) return ot_fail(err, OT_ERR_NOMEM, "out of memory planning memory");
    p->arena_bytes = top;
    for (int v = 0; v < p->nv; v++) p->offset[v] = t->birth[v] >= 0 ? t->off[v] : 0;
    if (p->flags & OT_PLAN_NO_MEMORY) return OT_OK;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (p->be->kind != OT_DEV_CUDA && pages > 0 && page > 0 && top + p->ws_bytes > (size_t)pages * (size_t)page)
        return ot_fail(err, OT_ERR_NOMEM, "%s: these input shapes need %.1f GiB of %s, more than this machine's %.1f GiB", g->path,
                       (double)(top + p->ws_bytes) / (1 << 30), what, (double)pages * (double)page / (1 << 30));
    if (top && !(p->arena = ot_be_alloc(p->be, top)))
        return ot_fail(err, OT_ERR_NOMEM, "%s: cannot allocate %zu bytes of %s on %s", g->path, top, what, p->be->name);
    for (int v = 0; v < p->nv; v++) if (t->birth[v] >= 0) p->data[v] = p->arena + t->off[v];
    for (int v = 0; v < p->nv; v++) if (p->alias[v] != v && t->birth[p->alias[v]] >= 0) p->data[v] = p->data[p->alias[v]];
    OT_TRY(ot_plan_prepare(p, err)); /* may raise ws_bytes (library workspaces) */
    if (p->ws_bytes && !(p->ws = ot_be_alloc(p->be, p->ws_bytes)))
        return ot_fail(err, OT_ERR_NOMEM, "%s: cannot allocate a %zu-byte workspace on %s", g->path, p->ws_bytes, p->be->name);
    return upload_consts(p, err);
}

static ot_status layout(ot_plan *p, ot_error *err) {
    ot_timeline t;
    OT_TRY(ot_timeline_init(&t, p->nv, err));
    t.end = p->n_steps;
    ot_plan_lifetimes(p, &t);
    ot_status st = ot_plan_commit(p, &t, "activations", err);
    ot_timeline_free(&t);
    return st;
}

/* Every runtime step needs a forward on the plan's device. */
static ot_status check_impls(ot_plan *p, ot_error *err) {
    for (int s = 0; s < p->n_steps; s++) {
        const ot_node *n = &p->g->nodes[p->steps[s]];
        const ot_op_impl *im = ot_op_impl_get(n->op, p->be->kind);
        if (!im || !im->forward) {
            char label[600];
            return ot_fail(err, OT_ERR_UNSUPPORTED, "%sno implementation of %s for device %s",
                           ot_node_label(p->g, n, label, sizeof label), ot_op_get(n->op)->name, p->be->name);
        }
    }
    return OT_OK;
}

ot_status ot_plan_prepare(ot_plan *p, ot_error *err) {
    for (int s = 0; s < p->n_steps; s++) {
        const ot_node *n = &p->g->nodes[p->steps[s]];
        const ot_op_impl *im = ot_op_impl_get(n->op, p->be->kind);
        if (!im || !im->prepare) continue; /* check_impls reported a missing one */
        ot_kctx c = {p, n, (int)p->g->opset, p->params[p->steps[s]], err};
        if (im->prepare(&c)) {
            char label[600];
            return ot_fail_prefix(err, "%s", ot_node_label(p->g, n, label, sizeof label));
        }
    }
    return OT_OK;
}

ot_status ot_plan_create(const ot_graph *g, const ot_shape *shapes, ot_plan **out, ot_error *err) {
    return ot_plan_create_ex(g, shapes, 0, out, err);
}

ot_status ot_plan_create_ex(const ot_graph *g, const ot_shape *shapes, unsigned flags, ot_plan **out, ot_error *err) {
    return ot_plan_create_vars(g, shapes, flags, NULL, out, err);
}

void *ot_plan_state(ot_kctx *c, size_t bytes) {
    ot_plan *p = c->p;
    if (p->n_state == p->cap_state) {
        int cap = p->cap_state ? 2 * p->cap_state : 32;
        void **ns = realloc(p->state, sizeof(void *) * (size_t)cap);
        if (!ns) return NULL;
        p->state = ns;
        p->cap_state = cap;
    }
    if (p->flags & OT_PLAN_NO_MEMORY) bytes = 0; /* nothing runs: a placeholder */
    void *b = ot_be_alloc_zero(p->be, bytes ? bytes : 1);
    if (b) p->state[p->n_state++] = b;
    return b;
}

ot_status ot_plan_create_vars(const ot_graph *g, const ot_shape *shapes, unsigned flags, const unsigned char *variable,
                              ot_plan **out, ot_error *err) {
    return ot_plan_create_on(NULL, g, shapes, flags, variable, out, err);
}

ot_status ot_plan_create_on(ot_backend *be, const ot_graph *g, const ot_shape *shapes, unsigned flags, const unsigned char *variable,
                            ot_plan **out, ot_error *err) {
    *out = NULL;
    ot_plan *p = calloc(1, sizeof *p);
    if (!p) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    p->g = g;
    p->be = be ? be : ot_backend_cpu();
    p->flags = flags;
    p->nv = g->n_values;
    size_t nv = (size_t)(g->n_values ? g->n_values : 1), nn = (size_t)(g->n_nodes ? g->n_nodes : 1);
    p->dtype = calloc(nv, sizeof *p->dtype);
    p->shape = calloc(nv, sizeof *p->shape);
    p->data = calloc(nv, sizeof *p->data);
    p->host = calloc(nv, sizeof *p->host);
    p->is_const = calloc(nv, 1);
    p->owned = calloc(nv, sizeof *p->owned);
    p->alias = calloc(nv, sizeof *p->alias);
    p->offset = calloc(nv, sizeof *p->offset);
    p->params = calloc(nn, sizeof *p->params);
    p->steps = calloc(nn, sizeof *p->steps);
    if (!p->dtype || !p->shape || !p->data || !p->host || !p->is_const || !p->owned || !p->alias || !p->offset || !p->params || !p->steps) {
        ot_plan_destroy(p);
        return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    }
    for (int v = 0; v < g->n_values; v++) {
        const ot_value *val = &g->values[v];
        p->shape[v].rank = -1;
        if (val->flags & OT_V_INIT) {
            p->dtype[v] = val->init.dtype;
            p->shape[v] = val->init.shape;
            bool var = variable && variable[v];
            p->data[v] = p->host[v] = var ? NULL : val->init.data;
            p->is_const[v] = !var;
        }
    }
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        const ot_value *val = &g->values[v];
        ot_shape s = shapes ? shapes[i] : val->shape;
        char want[160], got[160];
        ot_shape_str(&val->shape, want, sizeof want);
        ot_shape_str(&s, got, sizeof got);
        int64_t numel;
        if (!ot_shape_known(&s) || !ot_shape_numel(&s, &numel)) {
            ot_plan_destroy(p);
            return ot_fail(err, OT_ERR_SHAPE, "%s: input '%s' needs a concrete shape (declared %s, given %s)", g->path, val->name, want, got);
        }
        bool ok = val->shape.rank < 0 || val->shape.rank == s.rank;
        for (int d = 0; ok && d < s.rank && val->shape.rank >= 0; d++)
            if (val->shape.d[d] >= 0 && val->shape.d[d] != s.d[d]) ok = false;
        if (!ok) {
            ot_plan_destroy(p);
            return ot_fail(err, OT_ERR_SHAPE, "%s: input '%s' expects shape %s, got %s", g->path, val->name, want, got);
        }
        p->dtype[v] = OT_F32;
        p->shape[v] = s;
    }
    ot_status s = infer_nodes(p, err);
    if (!s) s = ot_plan_passes(p, err);
    if (!s) s = check_impls(p, err);
    if (!s && !(flags & OT_PLAN_TRAIN)) s = layout(p, err); /* training plans: train/autograd.c lays out memory */
    if (s) { ot_plan_destroy(p); return s; }
    *out = p;
    return OT_OK;
}

static size_t value_bytes_c(const ot_plan *p, int v) { return value_bytes(p, v); }

void ot_plan_set_input(ot_plan *p, int i, const float *host) {
    int v = p->g->inputs[i];
    ot_be_upload(p->be, p->data[v], host, value_bytes_c(p, v));
}

void ot_plan_download(ot_plan *p, int v, void *host) { ot_be_download(p->be, host, p->data[v], value_bytes_c(p, v)); }

ot_status ot_plan_run(ot_plan *p, const float *const *inputs, ot_error *err) {
    const ot_graph *g = p->g;
    if (p->flags & OT_PLAN_NO_MEMORY) return ot_fail(err, OT_ERR_INTERNAL, "a plan made without memory cannot run");
    if (inputs) for (int i = 0; i < g->n_inputs; i++) ot_plan_set_input(p, i, inputs[i]);
    ot_status st = OT_OK;
    ot_be_enter(p->be);
    for (int s = 0; s < p->n_steps && !st; s++) {
        const ot_node *n = &g->nodes[p->steps[s]];
        const ot_op_def *def = ot_op_get(n->op);
        /* a view of a caller's variable follows wherever the caller points it */
        if ((def->flags & OT_OPF_ALIAS) && n->out[0] >= 0 && n->in[0] >= 0) p->data[n->out[0]] = p->data[n->in[0]];
        ot_kctx c = {p, n, (int)g->opset, p->params[p->steps[s]], err};
        double t0 = p->prof ? ot_plan_clock() : 0;
        st = ot_op_impl_get(n->op, p->be->kind)->forward(&c); /* present: checked at creation */
        if (p->prof) p->prof[2 * p->steps[s]] += ot_plan_clock() - t0;
        if (st) {
            char label[600];
            ot_fail_prefix(err, "%s", ot_node_label(g, n, label, sizeof label));
        }
    }
    ot_be_leave(p->be);
    return st;
}

bool ot_plan_unstep(ot_plan *p, int node) {
    for (int s = p->n_steps - 1; s >= 0; s--)
        if (p->steps[s] == node) {
            memmove(p->steps + s, p->steps + s + 1, sizeof(int) * (size_t)(p->n_steps - s - 1));
            p->n_steps--;
            return true;
        }
    return false;
}

double ot_plan_clock(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
