/* export.c: training graph -> deployable graph (export/export.h). */
#include "export.h"
#include "../import/detect_head.h"
#include <math.h>
#include <string.h>

static int op_is(const ot_node *n, const char *op) { return strcmp(n->op_type, op) == 0; }

char *ot_names_repr(char *const *names, int nc) {
    size_t cap = 16;
    for (int i = 0; i < nc; i++) cap += strlen(names[i]) * 2 + 24;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    *p++ = '{';
    for (int i = 0; i < nc; i++) {
        p += sprintf(p, "%s%d: '", i ? ", " : "", i);
        for (const char *q = names[i]; *q; q++) {
            if (*q == '\'' || *q == '\\') *p++ = '\\';
            *p++ = *q;
        }
        *p++ = '\'';
    }
    *p++ = '}';
    *p = 0;
    return s;
}

static ot_status set_meta(ot_graph *g, const char *key, const char *value, ot_error *err) {
    for (int k = 0; k < g->n_meta; k++)
        if (strcmp(g->meta[k].key, key) == 0) {
            char *v = ot_strdup(value);
            if (!v) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
            free(g->meta[k].value);
            g->meta[k].value = v;
            return OT_OK;
        }
    ot_meta *m = realloc(g->meta, sizeof *m * (size_t)(g->n_meta + 1));
    if (!m) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    g->meta = m;
    m[g->n_meta].key = ot_strdup(key);
    m[g->n_meta].value = ot_strdup(value);
    if (!m[g->n_meta].key || !m[g->n_meta].value) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    g->n_meta++;
    return OT_OK;
}

/* Consumers of value v. */
static int n_consumers(const ot_graph *g, int v, int *only) {
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == v) { c++; if (only) *only = i; }
    if (g->values[v].flags & OT_V_OUTPUT) c++;
    return c;
}

static const float *init_f32(const ot_graph *g, int v, int64_t n) {
    if (v < 0 || !(g->values[v].flags & OT_V_INIT) || g->values[v].init.dtype != OT_F32) return NULL;
    if ((int64_t)(g->values[v].init.nbytes / sizeof(float)) != n) return NULL;
    return g->values[v].init.data;
}

/* Fold BN node `bn` into Conv node `cv`: new weight and bias initializers in dst. */
static ot_status fold(ot_graph *dst, const ot_graph *g, const ot_node *cv, const ot_node *bn, int x, int y, ot_error *err) {
    const ot_value *wv = &g->values[cv->in[1]];
    if (!(wv->flags & OT_V_INIT) || wv->init.dtype != OT_F32 || wv->init.shape.rank != 4)
        return ot_fail(err, OT_ERR_UNSUPPORTED, "export: Conv '%s' weight is not a float32 initializer", cv->name);
    int64_t m = wv->init.shape.d[0], per = (int64_t)(wv->init.nbytes / sizeof(float)) / (m ? m : 1);
    const float *w = wv->init.data;
    const float *b = cv->n_in > 2 && cv->in[2] >= 0 ? init_f32(g, cv->in[2], m) : NULL;
    const float *gam = init_f32(g, bn->in[1], m), *bet = init_f32(g, bn->in[2], m), *mean = init_f32(g, bn->in[3], m),
                *var = init_f32(g, bn->in[4], m);
    if (!gam || !bet || !mean || !var || (cv->n_in > 2 && cv->in[2] >= 0 && !b))
        return ot_fail(err, OT_ERR_UNSUPPORTED, "export: BatchNormalization '%s' parameters are not float32 initializers of %lld channels",
                       bn->name, (long long)m);
    double eps = ot_attr_float(bn, "epsilon", 1e-5f);
    float *nw = malloc(wv->init.nbytes), *nb = malloc(sizeof(float) * (size_t)m);
    if (!nw || !nb) { free(nw); free(nb); return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }
    for (int64_t o = 0; o < m; o++) {
        /* fuse_conv_and_bn: w_bn = diag(g / sqrt(eps + var)); b_bn = beta - g * mean / sqrt(var + eps) */
        float s = (float)(gam[o] / sqrt((double)var[o] + eps));
        for (int64_t k = 0; k < per; k++) nw[o * per + k] = w[o * per + k] * s;
        nb[o] = (b ? b[o] : 0.0f) * s + (bet[o] - s * mean[o]);
    }
    char wn[512], bnm[512];
    snprintf(wn, sizeof wn, "%s", wv->name);
    /* name the folded bias after the weight: model.N.conv.weight -> model.N.conv.bias */
    size_t l = strlen(wn);
    if (l > 7 && strcmp(wn + l - 7, ".weight") == 0) snprintf(bnm, sizeof bnm, "%.*s.bias", (int)(l - 7), wn);
    else snprintf(bnm, sizeof bnm, "%s.bias", wn);
    while (ot_graph_find(dst, bnm) >= 0 || (ot_graph_find(g, bnm) >= 0 && !(cv->n_in > 2 && cv->in[2] >= 0 && strcmp(g->values[cv->in[2]].name, bnm) == 0)))
        strncat(bnm, "_", sizeof bnm - strlen(bnm) - 1);
    ot_const cw = {OT_F32, wv->init.shape, nw, wv->init.nbytes};
    ot_const cb = {OT_F32, {1, {m}}, nb, sizeof(float) * (size_t)m};
    int in[3] = {x, ot_graph_add_init(dst, wn, &cw), ot_graph_add_init(dst, bnm, &cb)};
    free(nw);
    free(nb);
    if (in[1] < 0 || in[2] < 0) return ot_fail(err, OT_ERR_NOMEM, "export: cannot add '%s'", wn);
    ot_node *d = ot_graph_copy_node_io(dst, cv, 3, in, 1, &y);
    return d ? OT_OK : ot_fail(err, OT_ERR_NOMEM, "out of memory");
}

ot_status ot_export_graph(const ot_graph *g, const ot_yolo_head *head, const ot_export_opts *o, ot_graph **out,
                          ot_error *err) {
    *out = NULL;
    if (g->n_inputs != 1 || g->n_outputs != head->nl)
        return ot_fail(err, OT_ERR_INVALID, "export: not a training graph (one input, %d head maps)", head->nl);
    if (o->form != OT_FORM_INFERENCE && o->form != OT_FORM_RAW && o->form != OT_FORM_RAW_BN)
        return ot_fail(err, OT_ERR_INVALID, "export: unknown form");
    for (int l = 0; l < head->nl; l++)
        if (o->img_h % head->stride[l] || o->img_w % head->stride[l] || o->img_h <= 0 || o->img_w <= 0)
            return ot_fail(err, OT_ERR_SHAPE, "export: image size %dx%d is not a multiple of stride %lld", o->img_w, o->img_h,
                           (long long)head->stride[l]);
    bool fold_bn = o->form != OT_FORM_RAW_BN;
    ot_graph *d = ot_graph_create();
    if (!d) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    ot_status st = OT_OK;
    unsigned char *skip = calloc((size_t)g->n_nodes + 1, 1);
    int *fold_with = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    if (!skip || !fold_with) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < g->n_nodes; i++) fold_with[i] = -1;
    if (fold_bn)
        for (int i = 0; i < g->n_nodes; i++) {
            const ot_node *n = &g->nodes[i];
            int c = -1;
            if (!op_is(n, "Conv") || n_consumers(g, n->out[0], &c) != 1 || c < 0 || !op_is(&g->nodes[c], "BatchNormalization")) continue;
            if (g->nodes[c].in[0] != n->out[0]) continue;
            fold_with[i] = c;
            skip[c] = 1;
        }
    d->path = ot_strdup(g->path ? g->path : "model");
    d->ir_version = 0;
    d->opset = o->opset ? o->opset : g->opset;
    d->producer_name = ot_strdup("onnx-train");
    d->producer_version = ot_strdup(OT_VERSION);
    d->graph_name = ot_strdup(g->graph_name && *g->graph_name ? g->graph_name : "main_graph");
    /* the image input, fixed shape */
    const char *in_name = o->input_name ? o->input_name : g->values[g->inputs[0]].name;
    int vin = ot_graph_value(d, in_name);
    d->inputs = malloc(sizeof(int));
    if (vin < 0 || !d->inputs) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
    {
        ot_value *v = &d->values[vin];
        v->dtype = OT_F32;
        v->file_dtype = OT_F32;
        v->shape = (ot_shape){4, {o->batch, 3, o->img_h, o->img_w}};
        v->flags |= OT_V_INPUT;
        d->inputs[d->n_inputs++] = vin;
    }
    const char *g_in = g->values[g->inputs[0]].name;
    for (int i = 0; i < g->n_nodes && !st; i++) {
        if (skip[i]) continue;
        const ot_node *n = &g->nodes[i];
        int in[64], outv[64];
        if (n->n_in > 64 || n->n_out > 64) { st = ot_fail(err, OT_ERR_UNSUPPORTED, "export: node '%s' has too many inputs", n->name); break; }
        int nin_import = fold_with[i] >= 0 ? 1 : n->n_in; /* a folded Conv gets new weight and bias */
        for (int k = 0; k < nin_import; k++) {
            if (n->in[k] < 0) { in[k] = -1; continue; }
            const char *nm = g->values[n->in[k]].name;
            in[k] = strcmp(nm, g_in) == 0 ? vin : ot_graph_import_value(d, g, nm);
            if (in[k] < 0) st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
        }
        if (st) break;
        if (fold_with[i] >= 0) {
            const ot_node *bn = &g->nodes[fold_with[i]];
            int y = ot_graph_import_value(d, g, g->values[bn->out[0]].name);
            if (y < 0) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); break; }
            st = fold(d, g, n, bn, in[0], y, err);
            continue;
        }
        for (int k = 0; k < n->n_out; k++) {
            outv[k] = n->out[k] < 0 ? -1 : ot_graph_import_value(d, g, g->values[n->out[k]].name);
            if (n->out[k] >= 0 && outv[k] < 0) st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
        }
        int nout = n->n_out;
        if (op_is(n, "BatchNormalization")) {
            nout = 1; /* inference mode */
        }
        if (!st) {
            ot_node *c = ot_graph_copy_node_io(d, n, n->n_in, in, nout, outv);
            if (!c) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); break; }
            if (op_is(n, "BatchNormalization")) {
                for (int a = 0; a < c->n_attr; a++)
                    if (strcmp(c->attr[a].name, "training_mode") == 0) c->attr[a].i = 0;
            }
        }
    }
    if (st) goto done;
    int maps[OT_MAX_HEADS];
    for (int l = 0; l < head->nl; l++) {
        maps[l] = ot_graph_find(d, g->values[g->outputs[l]].name);
        if (maps[l] < 0) { st = ot_fail(err, OT_ERR_INTERNAL, "export: head map %d lost", l); goto done; }
    }
    const char *names[OT_MAX_HEADS];
    static const char *raw_default[OT_MAX_HEADS] = {"p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10"};
    for (int l = 0; l < OT_MAX_HEADS; l++)
        names[l] = o->out_names[l] ? o->out_names[l] : o->form == OT_FORM_INFERENCE ? "output0" : raw_default[l];
    if ((st = ot_detect_append(d, maps, head, o->form == OT_FORM_INFERENCE ? OT_FORM_INFERENCE : OT_FORM_RAW, o->img_h, o->img_w,
                               o->batch, names, err)))
        goto done;
    for (int k = 0; k < o->n_meta && !st; k++) st = set_meta(d, o->meta[k].key, o->meta[k].value, err);
    if (st) goto done;
    {   /* export.py writes int(max(model.stride)) */
        char sbuf[32];
        int64_t ms = 0;
        for (int l = 0; l < head->nl; l++) if (head->stride[l] > ms) ms = head->stride[l];
        snprintf(sbuf, sizeof sbuf, "%lld", (long long)ms);
        st = set_meta(d, "stride", sbuf, err);
    }
    bool want_anchors = o->form != OT_FORM_INFERENCE;
    for (int k = 0; k < d->n_meta; k++) want_anchors |= strcmp(d->meta[k].key, "anchors") == 0;
    if (!st && want_anchors) { /* pixels, as Ultralytics' model.anchors * stride */
        char abuf[4096];
        int p = snprintf(abuf, sizeof abuf, "[");
        for (int l = 0; l < head->nl && p < (int)sizeof abuf; l++) {
            p += snprintf(abuf + p, sizeof abuf - (size_t)p, "%s[", l ? ", " : "");
            for (int a = 0; a < head->na && p < (int)sizeof abuf; a++)
                p += snprintf(abuf + p, sizeof abuf - (size_t)p, "%s[%.9g, %.9g]", a ? ", " : "", head->anchors[l][a][0], head->anchors[l][a][1]);
            if (p < (int)sizeof abuf) p += snprintf(abuf + p, sizeof abuf - (size_t)p, "]");
        }
        if (p < (int)sizeof abuf) snprintf(abuf + p, sizeof abuf - (size_t)p, "]");
        st = set_meta(d, "anchors", abuf, err);
    }
    if (!st && o->names) {
        char *r = ot_names_repr(o->names, head->nc);
        st = r ? set_meta(d, "names", r, err) : ot_fail(err, OT_ERR_NOMEM, "out of memory");
        free(r);
    }
    if (!st) st = ot_graph_finalize(d, err);
    if (!st) {
        d->head = *head;
        d->head.form = o->form;
    }
done:
    free(skip);
    free(fold_with);
    if (st) { ot_graph_destroy(d); return st; }
    *out = d;
    return OT_OK;
}
