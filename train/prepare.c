/* prepare.c: training-graph preparation (train/prepare.h). Follows the module
 * structure of Ultralytics YOLOv5 v7.0 (models/common.py Conv = Conv2d + BN +
 * SiLU; Detect's convolutions have bias and no BN). */
#include "prepare.h"
#include "../kernels/ops.h"
#include <string.h>

#define BN_EPS 1e-3f
#define BN_ONNX_MOMENTUM 0.97f

/* Initializer behind value v (through Identity), or -1. */
static int init_source(const ot_graph *g, int v) {
    for (int hops = 0; v >= 0 && hops < 8; hops++) {
        if (g->values[v].flags & OT_V_INIT) return v;
        int pn = g->values[v].producer;
        if (pn < 0 || strcmp(g->nodes[pn].op_type, "Identity") != 0) return -1;
        v = g->nodes[pn].in[0];
    }
    return -1;
}

/* "model.0.conv.weight" -> base "model.0.conv"; anything else: the name itself. */
static void base_name(char *dst, size_t n, const char *wname) {
    size_t l = strlen(wname);
    if (l > 7 && strcmp(wname + l - 7, ".weight") == 0) snprintf(dst, n, "%.*s", (int)(l - 7), wname);
    else snprintf(dst, n, "%s", wname);
}

/* A fresh initializer name: name, or name_2, name_3, ... */
static void unique(const ot_graph *g, char *dst, size_t n, const char *name) {
    snprintf(dst, n, "%s", name);
    for (int k = 2; ot_graph_find(g, dst) >= 0; k++) snprintf(dst, n, "%s_%d", name, k);
}

static int add_filled(ot_graph *g, const char *name, int64_t c, float value) {
    ot_const t = {OT_F32, {1, {c}}, NULL, (size_t)c * sizeof(float)};
    float *d = malloc(t.nbytes ? t.nbytes : 1);
    if (!d) return -1;
    for (int64_t i = 0; i < c; i++) d[i] = value;
    t.data = d;
    char nm[512];
    unique(g, nm, sizeof nm, name);
    int id = ot_graph_add_init(g, nm, &t);
    free(d);
    return id;
}

static bool add_float_attr(ot_node *n, const char *name, float f) {
    ot_attr *na = realloc(n->attr, sizeof(ot_attr) * (size_t)(n->n_attr + 1));
    if (!na) return false;
    n->attr = na;
    memset(&na[n->n_attr], 0, sizeof(ot_attr));
    na[n->n_attr].name = ot_strdup(name);
    na[n->n_attr].type = OT_ATTR_FLOAT;
    na[n->n_attr].f = f;
    n->n_attr++;
    return na[n->n_attr - 1].name != NULL;
}

ot_status ot_prepare_training_graph(const ot_graph *src, const ot_prepare_opts *opts, ot_graph **out, ot_error *err) {
    *out = NULL;
    const ot_yolo_head *h = &src->head;
    if (!h->found) return ot_fail(err, OT_ERR_UNSUPPORTED, "%s: no YOLOv5 Detect head found; onnx-train trains YOLOv5 detectors", src->path);
    if (src->n_inputs != 1) return ot_fail(err, OT_ERR_UNSUPPORTED, "%s: %d inputs; a YOLOv5 detector has one", src->path, src->n_inputs);
    int nn = src->n_nodes;
    int head_out[OT_MAX_HEADS], head_node[OT_MAX_HEADS];
    for (int l = 0; l < h->nl; l++) {
        head_node[l] = -1;
        for (int i = 0; i < nn; i++) if (strcmp(src->nodes[i].name, h->conv_node[l]) == 0) head_node[l] = i;
        if (head_node[l] < 0) return ot_fail(err, OT_ERR_INTERNAL, "head conv '%s' vanished", h->conv_node[l]);
        head_out[l] = src->nodes[head_node[l]].out[0];
    }
    bool has_bn = false;
    for (int i = 0; i < nn; i++) if (strcmp(src->nodes[i].op_type, "BatchNormalization") == 0) has_bn = true;
    bool insert_bn = !has_bn && !(opts && opts->no_bn);

    /* nodes the head outputs depend on (Identity feeding Conv parameters excluded below) */
    unsigned char *need = calloc((size_t)(nn ? nn : 1), 1);
    int *stack = malloc(sizeof(int) * (size_t)(src->n_values + 1));
    ot_graph *g = ot_graph_create();
    ot_status st = OT_OK;
    if (!need || !stack || !g) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
    int sp = 0;
    unsigned char *seen = calloc((size_t)src->n_values, 1);
    if (!seen) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
    for (int l = 0; l < h->nl; l++) if (!seen[head_out[l]]) { seen[head_out[l]] = 1; stack[sp++] = head_out[l]; }
    while (sp) {
        int v = stack[--sp];
        int pn = src->values[v].producer;
        if (pn < 0 || need[pn]) continue;
        need[pn] = 1;
        const ot_node *n = &src->nodes[pn];
        bool conv = strcmp(n->op_type, "Conv") == 0;
        for (int k = 0; k < n->n_in; k++) {
            int u = n->in[k];
            if (u >= 0 && !(conv && k >= 1) && !seen[u]) { seen[u] = 1; stack[sp++] = u; }
        }
    }
    free(seen);

    g->path = ot_strdup(src->path);
    g->dir = src->dir ? ot_strdup(src->dir) : NULL;
    g->ir_version = src->ir_version;
    g->opset = src->opset;
    g->producer_name = ot_strdup("onnx-train");
    g->producer_version = ot_strdup(OT_VERSION);
    g->graph_name = ot_strdup(src->graph_name ? src->graph_name : "");
    for (int k = 0; k < src->n_meta; k++) {
        ot_meta *m = realloc(g->meta, sizeof *m * (size_t)(g->n_meta + 1));
        if (!m) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
        g->meta = m;
        m[g->n_meta].key = ot_strdup(src->meta[k].key);
        m[g->n_meta].value = ot_strdup(src->meta[k].value);
        g->n_meta++;
    }
    /* the image input, with dynamic batch and size */
    const ot_value *sin = &src->values[src->inputs[0]];
    int vin = ot_graph_import_value(g, src, sin->name);
    g->inputs = malloc(sizeof(int));
    g->outputs = malloc(sizeof(int) * (size_t)h->nl);
    if (vin < 0 || !g->inputs || !g->outputs) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
    {
        ot_value *v = &g->values[vin];
        static const char *dyn[4] = {"batch", NULL, "height", "width"};
        if (v->shape.rank == 4)
            for (int d = 0; d < 4; d++)
                if (dyn[d]) { v->shape.d[d] = -1; free(v->dim_param[d]); v->dim_param[d] = ot_strdup(dyn[d]); }
        v->flags |= OT_V_INPUT;
        g->inputs[g->n_inputs++] = vin;
    }
    for (int i = 0; i < nn; i++) {
        if (!need[i]) continue;
        const ot_node *n = &src->nodes[i];
        char label[600];
        ot_node_label(src, n, label, sizeof label);
        if (strcmp(n->op_type, "Conv") != 0) {
            ot_node *d = ot_graph_copy_node(g, src, n);
            if (!d) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
            if (strcmp(n->op_type, "BatchNormalization") == 0 && d->n_out > 1) d->n_out = 1;
            continue;
        }
        /* Conv: own copies of weight and bias */
        int w = init_source(src, n->in[1]), b = n->n_in > 2 ? init_source(src, n->in[2]) : -1;
        if (w < 0) { st = ot_fail(err, OT_ERR_UNSUPPORTED, "%sthe weight is not an initializer; cannot train it", label); goto done; }
        if (n->n_in > 2 && n->in[2] >= 0 && b < 0) { st = ot_fail(err, OT_ERR_UNSUPPORTED, "%sthe bias is not an initializer; cannot train it", label); goto done; }
        bool is_head = false;
        for (int l = 0; l < h->nl; l++) if (head_node[l] == i) is_head = true;
        char base[400], nm[512];
        base_name(base, sizeof base, src->values[w].name);
        snprintf(nm, sizeof nm, "%s.weight", base);
        char wname[512];
        unique(g, wname, sizeof wname, nm);
        int wid = ot_graph_add_init(g, wname, &src->values[w].init);
        int xin = ot_graph_import_value(g, src, src->values[n->in[0]].name);
        int yout = ot_graph_import_value(g, src, src->values[n->out[0]].name);
        if (wid < 0 || xin < 0 || yout < 0) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
        int64_t m = src->values[w].init.shape.rank == 4 ? src->values[w].init.shape.d[0] : 0;
        int tmp_in[2] = {xin, wid}, tmp_out[1] = {yout};
        ot_node *d = ot_graph_copy_node_io(g, n, 2, tmp_in, 1, tmp_out); /* attributes; io set below */
        if (!d) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
        if (insert_bn && !is_head) {
            /* Conv (no bias) -> BN(gamma 1, beta = bias, mean 0, var 1 - eps) */
            char pre[600], bnb[420];
            snprintf(pre, sizeof pre, "%s/prebn", src->values[n->out[0]].name);
            int mid = ot_graph_value(g, pre);
            size_t bl = strlen(base);
            if (bl > 5 && strcmp(base + bl - 5, ".conv") == 0) snprintf(bnb, sizeof bnb, "%.*s.bn", (int)(bl - 5), base);
            else snprintf(bnb, sizeof bnb, "%s.bn", base);
            char k1[512], k2[512], k3[512], k4[512];
            snprintf(k1, sizeof k1, "%s.weight", bnb);
            snprintf(k2, sizeof k2, "%s.bias", bnb);
            snprintf(k3, sizeof k3, "%s.running_mean", bnb);
            snprintf(k4, sizeof k4, "%s.running_var", bnb);
            int gid = add_filled(g, k1, m, 1.0f), bid;
            if (b >= 0) { char bn2[512]; unique(g, bn2, sizeof bn2, k2); bid = ot_graph_add_init(g, bn2, &src->values[b].init); }
            else bid = add_filled(g, k2, m, 0.0f);
            int mid3 = add_filled(g, k3, m, 0.0f), vid4 = add_filled(g, k4, m, 1.0f - BN_EPS);
            int cin[2] = {xin, wid}, cout[1] = {mid};
            if (mid < 0 || gid < 0 || bid < 0 || mid3 < 0 || vid4 < 0 || !ot_node_set_io(d, 2, cin, 1, cout)) {
                st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
                goto done;
            }
            ot_node *bn = ot_graph_add_node(g);
            if (!bn) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
            char bnname[600];
            snprintf(bnname, sizeof bnname, "%s/bn", n->name);
            bn->name = ot_strdup(bnname);
            bn->op_type = ot_strdup("BatchNormalization");
            bn->domain = ot_strdup("");
            bn->op = ot_op_lookup("BatchNormalization", "");
            int bin[5] = {mid, gid, bid, mid3, vid4}, bout[1] = {yout};
            if (!bn->name || !bn->op_type || !bn->domain || !ot_node_set_io(bn, 5, bin, 1, bout) ||
                !add_float_attr(bn, "epsilon", BN_EPS) || !add_float_attr(bn, "momentum", BN_ONNX_MOMENTUM)) {
                st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
                goto done;
            }
        } else {
            int cin[3] = {xin, wid, -1}, cout[1] = {yout}, nin = 2;
            if (b >= 0) {
                snprintf(nm, sizeof nm, "%s.bias", base);
                char bname[512];
                unique(g, bname, sizeof bname, nm);
                cin[2] = ot_graph_add_init(g, bname, &src->values[b].init);
                if (cin[2] < 0) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
                nin = 3;
            }
            if (!ot_node_set_io(d, nin, cin, 1, cout)) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
        }
    }
    for (int l = 0; l < h->nl; l++) {
        int v = ot_graph_find(g, src->values[head_out[l]].name);
        if (v < 0) { st = ot_fail(err, OT_ERR_INTERNAL, "head output lost"); goto done; }
        g->values[v].flags |= OT_V_OUTPUT;
        g->outputs[g->n_outputs++] = v;
    }
    if ((st = ot_graph_finalize(g, err))) goto done;
    g->head = *h;
    g->head.form = insert_bn || has_bn ? OT_FORM_RAW_BN : OT_FORM_RAW;
    for (int l = 0; l < h->nl; l++) {
        g->head_conv_names[l] = ot_strdup(h->conv_node[l]);
        g->head.conv_node[l] = g->head_conv_names[l];
    }
done:
    free(need);
    free(stack);
    if (st) { ot_graph_destroy(g); return st; }
    *out = g;
    return OT_OK;
}
