/* yolo_head.c: find the YOLOv5 Detect head in an imported graph.
 *
 * The detection convolutions are the Convs whose output is reshaped to
 * (bs, na, no, ny, nx) with no = nc + 5 (models/yolo.py, Detect.forward).
 * Strides are the input size over the map size. Anchors (pixels) come from the
 * decode constants of an inference export (the anchor_grid operand of a Mul,
 * shape (1, na, ny, nx, 2)), else from the "anchors" metadata, else the
 * YOLOv5 defaults with a warning. The form is inference when a graph output
 * has shape (bs, N, no), else raw, or raw with BatchNormalization. */
#include "import.h"
#include "../kernels/ops.h"
#include <string.h>

static const float default_p5[3][3][2] = {{{10, 13}, {16, 30}, {33, 23}},
                                          {{30, 61}, {62, 45}, {59, 119}},
                                          {{116, 90}, {156, 198}, {373, 326}}};
static const float default_p6[4][3][2] = {{{19, 27}, {44, 40}, {38, 94}},
                                          {{96, 68}, {86, 152}, {180, 137}},
                                          {{140, 301}, {303, 264}, {238, 542}},
                                          {{436, 615}, {739, 380}, {925, 792}}};

const char *ot_form_name(ot_form f) {
    switch (f) {
    case OT_FORM_INFERENCE: return "inference";
    case OT_FORM_RAW: return "raw";
    case OT_FORM_RAW_BN: return "raw-bn";
    default: return "unknown";
    }
}

static int op_is(const ot_node *n, const char *op) { return strcmp(n->op_type, op) == 0; }

/* Conv feeding value v, looking through Identity. */
static int conv_producer(const ot_graph *g, int v) {
    for (int hops = 0; v >= 0 && hops < 4; hops++) {
        int pn = g->values[v].producer;
        if (pn < 0) return -1;
        if (op_is(&g->nodes[pn], "Conv")) return pn;
        if (!op_is(&g->nodes[pn], "Identity")) return -1;
        v = g->nodes[pn].in[0];
    }
    return -1;
}

/* Search forward from value `start` (at most `depth` nodes) for a Mul with a
 * constant operand of shape (1, na, *, *, 2): the anchor grid. */
static const float *find_anchor_grid(const ot_graph *g, const ot_plan *p, int start, int na, int *stride_w) {
    int queue[64], nq = 0, qi = 0;
    queue[nq++] = start;
    while (qi < nq) {
        int v = queue[qi++];
        for (int i = 0; i < g->n_nodes; i++) {
            const ot_node *n = &g->nodes[i];
            bool uses = false;
            for (int k = 0; k < n->n_in; k++) if (n->in[k] == v) uses = true;
            if (!uses) continue;
            if (op_is(n, "Mul")) {
                for (int k = 0; k < 2 && k < n->n_in; k++) {
                    int c = n->in[k];
                    if (c < 0 || !p->is_const[c] || p->dtype[c] != OT_F32) continue;
                    const ot_shape *s = &p->shape[c];
                    if (s->rank == 5 && s->d[0] == 1 && s->d[1] == na && s->d[4] == 2) {
                        *stride_w = (int)(s->d[2] * s->d[3]);
                        return p->host[c];
                    }
                }
            }
            for (int k = 0; k < n->n_out && nq < 64; k++) if (n->out[k] >= 0) queue[nq++] = n->out[k];
        }
    }
    return NULL;
}

/* Parse "[[[10.0, 13.0], ...]]": all numbers in order. */
static int parse_numbers(const char *s, float *out, int max) {
    int n = 0;
    while (*s && n < max) {
        if ((*s >= '0' && *s <= '9') || *s == '.' || *s == '-') {
            char *end;
            out[n++] = strtof(s, &end);
            if (end == s) return -1;
            s = end;
        } else s++;
    }
    return n;
}

ot_status ot_yolo_discover(ot_graph *g, ot_error *err) {
    ot_yolo_head *h = &g->head;
    memset(h, 0, sizeof *h);
    /* plan with the declared input shape; unknown dims: batch 1, others 640 */
    ot_shape shapes[8];
    if (g->n_inputs > 8) return OT_OK;
    for (int i = 0; i < g->n_inputs; i++) {
        shapes[i] = g->values[g->inputs[i]].shape;
        if (shapes[i].rank < 0) return OT_OK;
        for (int d = 0; d < shapes[i].rank; d++)
            if (shapes[i].d[d] < 0) shapes[i].d[d] = d == 0 ? 1 : d == 1 ? 3 : 640;
    }
    ot_plan *p = NULL;
    ot_error e2;
    if (ot_plan_create_ex(g, shapes, OT_PLAN_NO_MEMORY, &p, &e2) != OT_OK) return OT_OK; /* not plannable at a guessed size: no head */
    const ot_shape *in = &p->shape[g->inputs[0]];
    int conv[OT_MAX_HEADS], nl = 0, na = 0, no = 0, reshape_out[OT_MAX_HEADS];
    int64_t mh[OT_MAX_HEADS];
    for (int i = 0; i < g->n_nodes && nl < OT_MAX_HEADS; i++) {
        const ot_node *n = &g->nodes[i];
        if (!op_is(n, "Reshape") || n->out[0] < 0) continue;
        const ot_shape *s = &p->shape[n->out[0]];
        int cv = conv_producer(g, n->in[0]);
        if (cv < 0 || s->rank != 5 || s->d[2] < 6) continue;
        const ot_shape *cs = &p->shape[g->nodes[cv].out[0]];
        if (cs->rank != 4 || cs->d[1] != s->d[1] * s->d[2] || cs->d[2] != s->d[3] || cs->d[3] != s->d[4]) continue;
        if (nl && (s->d[1] != na || s->d[2] != no)) continue;
        na = (int)s->d[1];
        no = (int)s->d[2];
        conv[nl] = cv;
        reshape_out[nl] = n->out[0];
        mh[nl] = s->d[3];
        nl++;
    }
    if (nl == 0 || na > 16 || in->rank != 4) { ot_plan_destroy(p); return OT_OK; }
    /* order by map size, largest first (stride ascending) */
    for (int a = 0; a < nl; a++)
        for (int b = a + 1; b < nl; b++)
            if (mh[b] > mh[a]) {
                int t = conv[a]; conv[a] = conv[b]; conv[b] = t;
                t = reshape_out[a]; reshape_out[a] = reshape_out[b]; reshape_out[b] = t;
                int64_t u = mh[a]; mh[a] = mh[b]; mh[b] = u;
            }
    h->nl = nl; h->na = na; h->nc = no - 5;
    for (int l = 0; l < nl; l++) {
        h->stride[l] = mh[l] ? in->d[2] / mh[l] : 0;
        free(g->head_conv_names[l]);
        g->head_conv_names[l] = ot_strdup(g->nodes[conv[l]].name);
        h->conv_node[l] = g->head_conv_names[l];
    }
    /* form */
    bool inference = false, has_bn = false;
    for (int k = 0; k < g->n_outputs; k++) {
        const ot_shape *s = &p->shape[g->outputs[k]];
        if (s->rank == 3 && s->d[2] == no) inference = true;
    }
    for (int i = 0; i < g->n_nodes; i++) if (op_is(&g->nodes[i], "BatchNormalization")) has_bn = true;
    h->form = inference ? OT_FORM_INFERENCE : has_bn ? OT_FORM_RAW_BN : OT_FORM_RAW;
    /* anchors: decode constants, metadata, defaults */
    int found = 0;
    for (int l = 0; l < nl; l++) {
        int cells = 0;
        const float *ag = find_anchor_grid(g, p, reshape_out[l], na, &cells);
        if (!ag) break;
        for (int a = 0; a < na; a++) {
            h->anchors[l][a][0] = ag[(size_t)a * cells * 2];
            h->anchors[l][a][1] = ag[(size_t)a * cells * 2 + 1];
        }
        found++;
    }
    if (found == nl) h->anchor_source = "decode";
    else {
        const char *meta = ot_graph_meta(g, "anchors");
        float v[OT_MAX_HEADS * 16 * 2];
        if (meta && parse_numbers(meta, v, OT_MAX_HEADS * 32) == nl * na * 2) {
            for (int l = 0; l < nl; l++)
                for (int a = 0; a < na; a++) {
                    h->anchors[l][a][0] = v[(l * na + a) * 2];
                    h->anchors[l][a][1] = v[(l * na + a) * 2 + 1];
                }
            h->anchor_source = "metadata";
        } else if (na == 3 && (nl == 3 || nl == 4)) {
            for (int l = 0; l < nl; l++)
                for (int a = 0; a < na; a++)
                    for (int k = 0; k < 2; k++) h->anchors[l][a][k] = nl == 3 ? default_p5[l][a][k] : default_p6[l][a][k];
            h->anchor_source = "default";
            ot_warn("%s: no anchors in the decode or the metadata; using the YOLOv5 %s defaults", g->path, nl == 3 ? "P5" : "P6");
        } else {
            h->anchor_source = "unknown";
            ot_warn("%s: no anchors found for %d layers x %d anchors", g->path, nl, na);
        }
    }
    h->found = 1;
    ot_plan_destroy(p);
    (void)err;
    return OT_OK;
}
