/* graph.c: the graph IR: values, nodes, attributes, topological order. */
#include "graph.h"
#include <string.h>

ot_graph *ot_graph_create(void) {
    ot_graph *g = calloc(1, sizeof *g);
    return g;
}

void ot_const_free(ot_const *c) {
    if (!c) return;
    free(c->data);
    c->data = NULL;
    c->nbytes = 0;
}

ot_status ot_const_copy(ot_const *dst, const ot_const *src, ot_error *err) {
    *dst = *src;
    dst->data = malloc(src->nbytes ? src->nbytes : 1);
    if (!dst->data) return ot_fail(err, OT_ERR_NOMEM, "out of memory copying a %zu-byte constant", src->nbytes);
    if (src->nbytes) memcpy(dst->data, src->data, src->nbytes);
    return OT_OK;
}

static void attr_free(ot_attr *a) {
    free(a->name);
    free(a->s);
    free(a->ints);
    free(a->floats);
    if (a->strings) {
        for (int64_t i = 0; i < a->n; i++) free(a->strings[i]);
        free(a->strings);
    }
    if (a->t) { ot_const_free(a->t); free(a->t); }
}

void ot_graph_destroy(ot_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_values; i++) {
        ot_value *v = &g->values[i];
        free(v->name);
        for (int k = 0; k < OT_MAX_RANK; k++) free(v->dim_param[k]);
        ot_const_free(&v->init);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        ot_node *n = &g->nodes[i];
        free(n->name); free(n->op_type); free(n->domain);
        free(n->in); free(n->out);
        for (int k = 0; k < n->n_attr; k++) attr_free(&n->attr[k]);
        free(n->attr);
    }
    for (int i = 0; i < g->n_meta; i++) { free(g->meta[i].key); free(g->meta[i].value); }
    for (int i = 0; i < OT_MAX_HEADS; i++) free(g->head_conv_names[i]);
    free(g->meta); free(g->values); free(g->nodes); free(g->inputs); free(g->outputs); free(g->hash);
    free(g->path); free(g->dir); free(g->producer_name); free(g->producer_version); free(g->graph_name);
    free(g);
}

/* ---- name lookup: FNV-1a, open addressing, grows at 50 % load ---- */
static uint32_t name_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 16777619u; }
    return h;
}

static bool hash_rebuild(ot_graph *g, int cap) {
    int *h = malloc((size_t)cap * sizeof *h);
    if (!h) return false;
    for (int i = 0; i < cap; i++) h[i] = -1;
    for (int v = 0; v < g->n_values; v++) {
        uint32_t k = name_hash(g->values[v].name) & (uint32_t)(cap - 1);
        while (h[k] >= 0) k = (k + 1) & (uint32_t)(cap - 1);
        h[k] = v;
    }
    free(g->hash);
    g->hash = h;
    g->hash_cap = cap;
    return true;
}

int ot_graph_find(const ot_graph *g, const char *name) {
    if (!g->hash_cap || !name) return -1;
    uint32_t k = name_hash(name) & (uint32_t)(g->hash_cap - 1);
    while (g->hash[k] >= 0) {
        if (strcmp(g->values[g->hash[k]].name, name) == 0) return g->hash[k];
        k = (k + 1) & (uint32_t)(g->hash_cap - 1);
    }
    return -1;
}

int ot_graph_value(ot_graph *g, const char *name) {
    int id = ot_graph_find(g, name);
    if (id >= 0) return id;
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? g->cap_values * 2 : 64;
        ot_value *nv = realloc(g->values, (size_t)cap * sizeof *nv);
        if (!nv) return -1;
        g->values = nv;
        g->cap_values = cap;
    }
    ot_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = ot_strdup(name);
    if (!v->name) return -1;
    v->shape.rank = -1;
    v->producer = -1;
    id = g->n_values++;
    if (2 * g->n_values > g->hash_cap) {
        if (!hash_rebuild(g, g->hash_cap ? g->hash_cap * 2 : 128)) { g->n_values--; free(v->name); return -1; }
    } else {
        uint32_t k = name_hash(name) & (uint32_t)(g->hash_cap - 1);
        while (g->hash[k] >= 0) k = (k + 1) & (uint32_t)(g->hash_cap - 1);
        g->hash[k] = id;
    }
    return id;
}

ot_node *ot_graph_add_node(ot_graph *g) {
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        ot_node *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return NULL;
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    ot_node *n = &g->nodes[g->n_nodes++];
    memset(n, 0, sizeof *n);
    n->op = -1;
    return n;
}

const char *ot_graph_meta(const ot_graph *g, const char *key) {
    for (int i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta[i].key, key) == 0) return g->meta[i].value;
    return NULL;
}

const char *ot_node_label(const ot_graph *g, const ot_node *n, char *buf, size_t len) {
    snprintf(buf, len, "%s: node '%s' (%s): ", g->path ? g->path : "model",
             n->name && n->name[0] ? n->name : "(unnamed)", n->op_type ? n->op_type : "?");
    return buf;
}

/* ---- topological order (Kahn), stable with respect to file order ---- */
ot_status ot_graph_finalize(ot_graph *g, ot_error *err) {
    const char *path = g->path ? g->path : "model";
    int nv = g->n_values, nn = g->n_nodes;
    int *prod = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    int *indeg = calloc((size_t)(nn ? nn : 1), sizeof(int));
    int *order = malloc(sizeof(int) * (size_t)(nn ? nn : 1));
    int *users_start = calloc((size_t)nv + 1, sizeof(int));
    int *users = NULL;
    ot_status st = OT_OK;
    if (!prod || !indeg || !order || !users_start) { st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); goto done; }
    for (int v = 0; v < nv; v++) prod[v] = -1;
    for (int i = 0; i < nn; i++) {
        for (int k = 0; k < g->nodes[i].n_out; k++) {
            int v = g->nodes[i].out[k];
            if (v < 0) continue;
            if (prod[v] >= 0) {
                st = ot_fail(err, OT_ERR_INVALID, "%s: value '%s' is produced by two nodes ('%s' and '%s')", path,
                             g->values[v].name, g->nodes[prod[v]].name, g->nodes[i].name);
                goto done;
            }
            if (g->values[v].flags & (OT_V_INPUT | OT_V_INIT)) {
                st = ot_fail(err, OT_ERR_INVALID, "%s: node '%s' (%s) writes '%s', which is a graph input or initializer",
                             path, g->nodes[i].name, g->nodes[i].op_type, g->values[v].name);
                goto done;
            }
            prod[v] = i;
        }
    }
    /* every input must come from somewhere */
    for (int i = 0; i < nn; i++) {
        ot_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0) continue;
            if (prod[v] < 0 && !(g->values[v].flags & (OT_V_INPUT | OT_V_INIT))) {
                st = ot_fail(err, OT_ERR_INVALID,
                             "%s: node '%s' (%s): input %d '%s' is not a graph input, an initializer or any node's output",
                             path, n->name, n->op_type, k, g->values[v].name);
                goto done;
            }
            if (prod[v] >= 0) { indeg[i]++; users_start[v]++; }
        }
    }
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->outputs[k];
        if (prod[v] < 0 && !(g->values[v].flags & (OT_V_INPUT | OT_V_INIT))) {
            st = ot_fail(err, OT_ERR_INVALID, "%s: graph output '%s' is not produced by any node", path, g->values[v].name);
            goto done;
        }
    }
    /* users lists (CSR) */
    int total = 0;
    for (int v = 0; v < nv; v++) { int c = users_start[v]; users_start[v] = total; total += c; }
    users_start[nv] = total;
    users = malloc(sizeof(int) * (size_t)(total ? total : 1));
    int *fill = calloc((size_t)(nv ? nv : 1), sizeof(int));
    if (!users || !fill) { free(fill); st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); goto done; }
    for (int i = 0; i < nn; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v >= 0 && prod[v] >= 0) users[users_start[v] + fill[v]++] = i;
        }
    free(fill);
    /* Kahn with a min-index ready list keeps file order when it is already valid */
    int n_order = 0;
    int *ready = malloc(sizeof(int) * (size_t)(nn ? nn : 1));
    if (!ready) { st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); goto done; }
    int n_ready = 0;
    for (int i = nn - 1; i >= 0; i--) if (indeg[i] == 0) ready[n_ready++] = i; /* stack: smallest on top */
    while (n_ready) {
        /* pick the smallest index among ready (lists are short) */
        int best = 0;
        for (int r = 1; r < n_ready; r++) if (ready[r] < ready[best]) best = r;
        int i = ready[best];
        ready[best] = ready[--n_ready];
        order[n_order++] = i;
        for (int k = 0; k < g->nodes[i].n_out; k++) {
            int v = g->nodes[i].out[k];
            if (v < 0) continue;
            for (int u = users_start[v]; u < users_start[v + 1]; u++)
                if (--indeg[users[u]] == 0) ready[n_ready++] = users[u];
        }
    }
    free(ready);
    if (n_order != nn) {
        int bad = -1;
        for (int i = 0; i < nn; i++) if (indeg[i] > 0) { bad = i; break; }
        st = ot_fail(err, OT_ERR_INVALID, "%s: the graph has a cycle through node '%s' (%s)", path,
                     g->nodes[bad].name, g->nodes[bad].op_type);
        goto done;
    }
    /* permute nodes */
    ot_node *sorted = malloc(sizeof(ot_node) * (size_t)(nn ? nn : 1));
    if (!sorted) { st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); goto done; }
    for (int i = 0; i < nn; i++) sorted[i] = g->nodes[order[i]];
    if (nn) memcpy(g->nodes, sorted, sizeof(ot_node) * (size_t)nn);
    free(sorted);
    for (int v = 0; v < nv; v++) g->values[v].producer = -1;
    for (int i = 0; i < nn; i++)
        for (int k = 0; k < g->nodes[i].n_out; k++)
            if (g->nodes[i].out[k] >= 0) g->values[g->nodes[i].out[k]].producer = i;
done:
    free(prod); free(indeg); free(order); free(users_start); free(users);
    return st;
}

/* ---- attributes ---- */
const ot_attr *ot_attr_find(const ot_node *n, const char *name) {
    for (int i = 0; i < n->n_attr; i++)
        if (strcmp(n->attr[i].name, name) == 0) {
            ((ot_attr *)&n->attr[i])->used = true;
            return &n->attr[i];
        }
    return NULL;
}

int64_t ot_attr_int(const ot_node *n, const char *name, int64_t def) {
    const ot_attr *a = ot_attr_find(n, name);
    return a && a->type == OT_ATTR_INT ? a->i : def;
}

float ot_attr_float(const ot_node *n, const char *name, float def) {
    const ot_attr *a = ot_attr_find(n, name);
    return a && a->type == OT_ATTR_FLOAT ? a->f : def;
}

const char *ot_attr_string(const ot_node *n, const char *name, const char *def) {
    const ot_attr *a = ot_attr_find(n, name);
    return a && a->type == OT_ATTR_STRING ? a->s : def;
}

int64_t ot_attr_ints(const ot_node *n, const char *name, const int64_t **v) {
    const ot_attr *a = ot_attr_find(n, name);
    if (!a || a->type != OT_ATTR_INTS) return -1;
    *v = a->ints;
    return a->n;
}

int64_t ot_attr_floats(const ot_node *n, const char *name, const float **v) {
    const ot_attr *a = ot_attr_find(n, name);
    if (!a || a->type != OT_ATTR_FLOATS) return -1;
    *v = a->floats;
    return a->n;
}

/* ---- building graphs ---- */
static bool attr_copy(ot_attr *d, const ot_attr *a) {
    *d = *a;
    d->name = ot_strdup(a->name);
    d->s = a->s ? ot_strdup(a->s) : NULL;
    d->ints = NULL; d->floats = NULL; d->strings = NULL; d->t = NULL;
    if (a->ints) { d->ints = ot_calloc((size_t)a->n, sizeof(int64_t)); if (!d->ints) return false; if (a->n) memcpy(d->ints, a->ints, sizeof(int64_t) * (size_t)a->n); }
    if (a->floats) { d->floats = ot_calloc((size_t)a->n, sizeof(float)); if (!d->floats) return false; if (a->n) memcpy(d->floats, a->floats, sizeof(float) * (size_t)a->n); }
    if (a->strings) {
        d->strings = ot_calloc((size_t)a->n, sizeof(char *));
        if (!d->strings) return false;
        for (int64_t i = 0; i < a->n; i++) if (!(d->strings[i] = ot_strdup(a->strings[i]))) return false;
    }
    if (a->t) {
        d->t = calloc(1, sizeof *d->t);
        if (!d->t || ot_const_copy(d->t, a->t, NULL)) return false;
    }
    return d->name != NULL;
}

int ot_graph_import_value(ot_graph *dst, const ot_graph *src, const char *name) {
    bool fresh = ot_graph_find(dst, name) < 0;
    int id = ot_graph_value(dst, name);
    if (id < 0 || !fresh) return id;
    int sid = ot_graph_find(src, name);
    if (sid < 0) return id;
    const ot_value *sv = &src->values[sid];
    ot_value *dv = &dst->values[id];
    dv->dtype = sv->dtype;
    dv->file_dtype = sv->file_dtype;
    dv->shape = sv->shape;
    for (int k = 0; k < OT_MAX_RANK; k++) dv->dim_param[k] = sv->dim_param[k] ? ot_strdup(sv->dim_param[k]) : NULL;
    if (sv->flags & OT_V_INIT) {
        if (ot_const_copy(&dv->init, &sv->init, NULL)) return -1;
        dv->flags |= OT_V_INIT;
    }
    return id;
}

bool ot_node_set_io(ot_node *n, int n_in, const int *in, int n_out, const int *out) {
    int *ni = ot_calloc((size_t)n_in, sizeof(int)), *no = ot_calloc((size_t)n_out, sizeof(int));
    if (!ni || !no) { free(ni); free(no); return false; }
    if (n_in) memcpy(ni, in, sizeof(int) * (size_t)n_in);
    if (n_out) memcpy(no, out, sizeof(int) * (size_t)n_out);
    free(n->in); free(n->out);
    n->in = ni; n->out = no; n->n_in = n_in; n->n_out = n_out;
    return true;
}

ot_node *ot_graph_copy_node(ot_graph *dst, const ot_graph *src, const ot_node *n) {
    int in[64], out[64];
    if (n->n_in > 64 || n->n_out > 64) return NULL;
    for (int k = 0; k < n->n_in; k++) in[k] = n->in[k] < 0 ? -1 : ot_graph_import_value(dst, src, src->values[n->in[k]].name);
    for (int k = 0; k < n->n_out; k++) out[k] = n->out[k] < 0 ? -1 : ot_graph_import_value(dst, src, src->values[n->out[k]].name);
    for (int k = 0; k < n->n_in; k++) if (n->in[k] >= 0 && in[k] < 0) return NULL;
    for (int k = 0; k < n->n_out; k++) if (n->out[k] >= 0 && out[k] < 0) return NULL;
    return ot_graph_copy_node_io(dst, n, n->n_in, in, n->n_out, out);
}

ot_node *ot_graph_copy_node_io(ot_graph *dst, const ot_node *n, int n_in, const int *in, int n_out, const int *out) {
    ot_node *d = ot_graph_add_node(dst);
    if (!d) return NULL;
    d->op = n->op;
    d->name = ot_strdup(n->name);
    d->op_type = ot_strdup(n->op_type);
    d->domain = ot_strdup(n->domain);
    d->attr = ot_calloc((size_t)n->n_attr, sizeof(ot_attr));
    if (!d->name || !d->op_type || !d->domain || !d->attr || !ot_node_set_io(d, n_in, in, n_out, out)) return NULL;
    for (int k = 0; k < n->n_attr; k++) {
        d->n_attr++;
        if (!attr_copy(&d->attr[k], &n->attr[k])) return NULL;
    }
    return d;
}

int ot_graph_add_init(ot_graph *dst, const char *name, const ot_const *c) {
    if (ot_graph_find(dst, name) >= 0) return -1;
    int id = ot_graph_value(dst, name);
    if (id < 0) return -1;
    ot_value *v = &dst->values[id];
    if (ot_const_copy(&v->init, c, NULL)) return -1;
    v->flags |= OT_V_INIT;
    v->dtype = c->dtype;
    v->file_dtype = c->dtype;
    v->shape = c->shape;
    return id;
}
