/* export_ckpt.c: checkpoint -> ONNX file (export/export_ckpt.h). */
#include "export_ckpt.h"
#include "export.h"
#include "../import/onnx_write.h"
#include <string.h>

static ot_form form_from_name(const char *s) {
    if (!s) return OT_FORM_UNKNOWN;
    if (strcmp(s, "inference") == 0) return OT_FORM_INFERENCE;
    if (strcmp(s, "raw") == 0) return OT_FORM_RAW;
    if (strcmp(s, "raw-bn") == 0) return OT_FORM_RAW_BN;
    return OT_FORM_UNKNOWN;
}

ot_status ot_export_checkpoint(const ot_ckpt *c, const ot_export_req *r, const char *out_path, ot_error *err) {
    json_t *src = json_object_get(c->header, "source");
    if (!json_is_object(src)) return ot_fail(err, OT_ERR_PARSE, "%s: checkpoint has no source model description", c->path);
    ot_graph *g = NULL, *e = NULL;
    OT_TRY(ot_ckpt_graph(c, &g, err));
    ot_status st = ot_ckpt_apply_ema(c, g, err);
    ot_export_opts o = {0};
    o.form = r->form != OT_FORM_UNKNOWN ? r->form : form_from_name(json_string_value(json_object_get(src, "form")));
    if (o.form == OT_FORM_UNKNOWN) o.form = OT_FORM_INFERENCE;
    o.batch = (int)json_integer_value(json_object_get(src, "batch"));
    if (o.batch < 1) o.batch = 1;
    o.img_h = r->img ? r->img : (int)json_integer_value(json_object_get(src, "img_h"));
    o.img_w = r->img ? r->img : (int)json_integer_value(json_object_get(src, "img_w"));
    o.opset = r->opset ? r->opset : json_integer_value(json_object_get(src, "opset"));
    o.input_name = json_string_value(json_object_get(src, "input"));
    json_t *outs = json_object_get(src, "outputs");
    /* output names carry over when the form (and so the output count) is the source's */
    ot_form sf = form_from_name(json_string_value(json_object_get(src, "form")));
    bool same_kind = (sf == OT_FORM_INFERENCE) == (o.form == OT_FORM_INFERENCE);
    for (size_t k = 0; same_kind && k < json_array_size(outs) && k < OT_MAX_HEADS; k++)
        o.out_names[k] = json_string_value(json_array_get(outs, k));
    json_t *meta = json_object_get(src, "meta");
    ot_meta mv[64];
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        if (o.n_meta == 64) break;
        mv[o.n_meta].key = (char *)key;
        mv[o.n_meta].value = (char *)json_string_value(val);
        if (mv[o.n_meta].value) o.n_meta++;
    }
    o.meta = mv;
    json_t *names = json_object_get(c->header, "names");
    char *nv[4096];
    int nn = 0;
    for (size_t k = 0; json_is_array(names) && k < json_array_size(names) && k < 4096; k++) nv[nn++] = (char *)json_string_value(json_array_get(names, k));
    if (nn == g->head.nc) o.names = nv;
    if (!st) st = ot_export_graph(g, &g->head, &o, &e, err);
    uint8_t *buf = NULL;
    size_t len = 0;
    ot_onnx_write_opts wo = {0};
    wo.opset = o.opset;
    if (!st) st = ot_onnx_serialize(e, &wo, &buf, &len, err);
    if (!st) st = ot_file_write_atomic(out_path, buf, len, err);
    free(buf);
    ot_graph_destroy(e);
    ot_graph_destroy(g);
    return st;
}
