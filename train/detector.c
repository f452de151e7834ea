/* detector.c: eval-mode forward of a training graph and the Detect decode
 * (train/detector.h). */
#include "detector.h"
#include "checkpoint.h"
#include "prepare.h"
#include "../kernels/decode.h"
#include <math.h>
#include <string.h>

void ot_detector_destroy(ot_detector *d) {
    if (!d) return;
    for (int k = 0; k < OT_DETECTOR_PLANS; k++) ot_plan_destroy(d->plan[k]);
    free(d->variable);
    free(d->var_data);
    free(d->pred);
    ot_be_free(d->be, d->dpred);
    free(d);
}

ot_status ot_detector_create(const ot_graph *g, const ot_yolo_head *head, const unsigned char *variable,
                             ot_detector **out, ot_error *err) {
    return ot_detector_create_on(NULL, g, head, variable, out, err);
}

ot_status ot_detector_create_on(ot_backend *be, const ot_graph *g, const ot_yolo_head *head, const unsigned char *variable,
                                ot_detector **out, ot_error *err) {
    *out = NULL;
    be = be ? be : ot_backend_cpu();
    if (!ot_decode_kernels_for(be->kind)) return ot_fail(err, OT_ERR_UNSUPPORTED, "no Detect decode for device %s", be->name);
    if (!head->found || head->nl != g->n_outputs || g->n_inputs != 1)
        return ot_fail(err, OT_ERR_INVALID, "%s: not a YOLOv5 training graph (one input, one output per detection layer)",
                       g->path ? g->path : "model");
    ot_detector *d = calloc(1, sizeof *d);
    if (!d) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    d->g = g;
    d->be = be;
    d->head = *head;
    if (variable) {
        d->variable = malloc((size_t)g->n_values);
        d->var_data = calloc((size_t)g->n_values, sizeof *d->var_data);
        if (!d->variable || !d->var_data) { ot_detector_destroy(d); return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }
        memcpy(d->variable, variable, (size_t)g->n_values);
    }
    *out = d;
    return OT_OK;
}

void ot_detector_set_var(ot_detector *d, int vid, float *data) {
    if (!d->var_data || vid < 0 || vid >= d->g->n_values) return;
    d->var_data[vid] = data;
    for (int k = 0; k < OT_DETECTOR_PLANS; k++)
        if (d->plan[k]) d->plan[k]->data[vid] = data;
}

/* The plan for this input shape: a kept one, else a new one replacing the least recently used. */
static ot_status get_plan(ot_detector *d, const ot_shape *s, ot_plan **out, ot_error *err) {
    int victim = 0;
    for (int k = 0; k < OT_DETECTOR_PLANS; k++) {
        ot_plan *p = d->plan[k];
        if (p && ot_shape_eq(&p->shape[d->g->inputs[0]], s)) {
            d->plan_use[k] = ++d->uses;
            *out = p;
            return OT_OK;
        }
        if (!p || (d->plan[victim] && d->plan_use[k] < d->plan_use[victim])) victim = k;
    }
    ot_plan_destroy(d->plan[victim]);
    d->plan[victim] = NULL;
    ot_plan *p = NULL;
    OT_TRY(ot_plan_create_on(d->be, d->g, s, 0, d->variable, &p, err));
    if (d->variable)
        for (int v = 0; v < d->g->n_values; v++)
            if (d->variable[v]) {
                if (!d->var_data[v]) {
                    ot_plan_destroy(p);
                    return ot_fail(err, OT_ERR_INTERNAL, "detector: variable '%s' has no data", d->g->values[v].name);
                }
                p->data[v] = d->var_data[v];
            }
    d->plan[victim] = p;
    d->plan_use[victim] = ++d->uses;
    *out = p;
    return OT_OK;
}

ot_status ot_detector_run(ot_detector *d, const float *images, int n, int h, int w, const float **pred,
                          int64_t *rows, ot_error *err) {
    const ot_yolo_head *hd = &d->head;
    ot_shape s = {4, {n, 3, h, w}};
    for (int l = 0; l < hd->nl; l++)
        if (h % hd->stride[l] || w % hd->stride[l])
            return ot_fail(err, OT_ERR_SHAPE, "image size %dx%d is not a multiple of the model's stride %lld", w, h,
                           (long long)hd->stride[l]);
    ot_plan *p = NULL;
    OT_TRY(get_plan(d, &s, &p, err));
    OT_TRY(ot_plan_run(p, &images, err));
    d->last = p;
    ot_decode_args a = {.n = n, .nl = hd->nl, .na = hd->na, .no = hd->nc + 5};
    const float *maps[OT_MAX_HEADS];
    for (int l = 0; l < hd->nl; l++) {
        const ot_shape *ms = &p->shape[d->g->outputs[l]];
        if (ms->rank != 4 || ms->d[1] != (int64_t)a.na * a.no)
            return ot_fail(err, OT_ERR_SHAPE, "detection layer %d: expected %d channels, got a map of rank %d", l, a.na * a.no,
                           ms->rank);
        a.ny[l] = ms->d[2];
        a.nx[l] = ms->d[3];
        a.stride[l] = (float)hd->stride[l];
        for (int k = 0; k < a.na && k < 16; k++) { a.anchors[l][k][0] = hd->anchors[l][k][0]; a.anchors[l][k][1] = hd->anchors[l][k][1]; }
        a.total += (int64_t)a.na * ms->d[2] * ms->d[3];
        maps[l] = p->data[d->g->outputs[l]];
    }
    size_t need = (size_t)n * (size_t)a.total * (size_t)a.no;
    if (need > d->pred_cap) {
        float *np = realloc(d->pred, need * sizeof(float));
        if (!np) return ot_fail(err, OT_ERR_NOMEM, "out of memory for %zu predictions", need);
        d->pred = np;
        ot_be_free(d->be, d->dpred);
        d->pred_cap = 0;
        if (!(d->dpred = ot_be_alloc(d->be, need * sizeof(float))))
            return ot_fail(err, OT_ERR_NOMEM, "out of memory for %zu predictions on %s", need, d->be->name);
        d->pred_cap = need;
    }
    ot_be_enter(d->be);
    ot_decode_kernels_for(d->be->kind)->decode(d->be, maps, &a, d->dpred);
    ot_be_leave(d->be);
    ot_be_download(d->be, d->pred, d->dpred, need * sizeof(float));
    *pred = d->pred;
    *rows = d->rows = a.total;
    return OT_OK;
}

void ot_detector_maps(const ot_detector *d, const float **maps, ot_shape *shapes) {
    for (int l = 0; l < d->head.nl; l++) {
        maps[l] = d->last ? d->last->data[d->g->outputs[l]] : NULL;
        if (shapes) shapes[l] = d->last ? d->last->shape[d->g->outputs[l]] : (ot_shape){-1, {0}};
    }
}

void ot_names_free(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* "{0: 'person', 1: 'bicycle'}" or "['a', 'b']": the quoted strings in order. */
static int parse_names(const char *s, char **out, int max) {
    int n = 0;
    while (s && *s && n < max) {
        if (*s != '\'' && *s != '"') { s++; continue; }
        char q = *s++;
        char buf[512];
        size_t k = 0;
        while (*s && *s != q) {
            if (*s == '\\' && s[1]) s++;
            if (k + 1 < sizeof buf) buf[k++] = *s;
            s++;
        }
        buf[k] = 0;
        if (*s) s++;
        out[n++] = ot_strdup(buf);
        while (*s && *s != ',' && *s != '}' && *s != ']') s++; /* skip to the next entry */
    }
    return n;
}

ot_status ot_open_inference_model(const char *path, ot_graph **g, char ***names, ot_error *err) {
    *g = NULL;
    *names = NULL;
    size_t l = strlen(path);
    char **nm = NULL;
    int nn = 0;
    ot_graph *tg = NULL;
    ot_status st = OT_OK;
    if (l > 5 && strcmp(path + l - 5, ".ckpt") == 0) {
        ot_ckpt *c;
        OT_TRY(ot_ckpt_load(path, &c, err));
        st = ot_ckpt_graph(c, &tg, err);
        if (!st) st = ot_ckpt_apply_ema(c, tg, err);
        json_t *jn = json_object_get(c->header, "names");
        if (!st && tg->head.nc > 0 && (nm = calloc((size_t)tg->head.nc, sizeof *nm)))
            for (size_t k = 0; k < json_array_size(jn) && (int)k < tg->head.nc; k++)
                if (json_string_value(json_array_get(jn, k))) nm[nn++] = ot_strdup(json_string_value(json_array_get(jn, k)));
        ot_ckpt_free(c);
    } else {
        ot_model *m;
        OT_TRY(ot_model_load(path, &m, err));
        if (!m->head.found) st = ot_fail(err, OT_ERR_INVALID, "%s: no YOLOv5 Detect head found (see onnx-train info)", path);
        ot_prepare_opts po = {.no_bn = true};
        if (!st) st = ot_prepare_training_graph(m, &po, &tg, err);
        if (!st && (nm = calloc((size_t)m->head.nc, sizeof *nm))) {
            nn = parse_names(ot_graph_meta(m, "names"), nm, m->head.nc);
            if (nn != m->head.nc) { for (int i = 0; i < nn; i++) free(nm[i]); nn = 0; }
        }
        ot_model_destroy(m);
    }
    if (!st && !nm) st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
    if (!st)
        for (int i = nn; i < tg->head.nc; i++) {
            char b[32];
            snprintf(b, sizeof b, "class%d", i);
            nm[i] = ot_strdup(b);
        }
    if (st) {
        ot_names_free(nm, nn);
        ot_graph_destroy(tg);
        return st;
    }
    *g = tg;
    *names = nm;
    return OT_OK;
}
