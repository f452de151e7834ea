/* hyp.c: the hyperparameter YAML reader (libyaml), Ultralytics key names. */
#include "train/hyp.h"
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <yaml.h>

static const struct { const char *name; size_t off; double def, lo, hi; } keys[] = {
#define K(n, d, lo, hi) {#n, offsetof(ot_hyp, n), d, lo, hi}
    K(lr0, 0.01, 0, 10), K(lrf, 0.01, 0, 10), K(momentum, 0.937, 0, 1), K(weight_decay, 0.0005, 0, 1),
    K(warmup_epochs, 3.0, 0, 1e6), K(warmup_momentum, 0.8, 0, 1), K(warmup_bias_lr, 0.1, 0, 10),
    K(box, 0.05, 0, 1e3), K(cls, 0.5, 0, 1e3), K(cls_pw, 1.0, 0, 1e3), K(obj, 1.0, 0, 1e3), K(obj_pw, 1.0, 0, 1e3),
    K(iou_t, 0.20, 0, 1), K(anchor_t, 4.0, 1, 1e3), K(fl_gamma, 0.0, 0, 1e3), K(label_smoothing, 0.0, 0, 1),
    K(anchors, 0.0, 0, 16),
    K(hsv_h, 0.015, 0, 1), K(hsv_s, 0.7, 0, 10), K(hsv_v, 0.4, 0, 10),
    K(degrees, 0.0, 0, 360), K(translate, 0.1, 0, 0.9), K(scale, 0.5, 0, 0.95), K(shear, 0.0, 0, 89),
    K(perspective, 0.0, 0, 0.01), K(flipud, 0.0, 0, 1), K(fliplr, 0.5, 0, 1), K(mosaic, 1.0, 0, 1),
    K(mixup, 0.0, 0, 1), K(copy_paste, 0.0, 0, 1),
#undef K
};
#define NKEYS ((int)(sizeof keys / sizeof keys[0]))

int ot_hyp_count(void) { return NKEYS; }
const char *ot_hyp_name(int i) { return i >= 0 && i < NKEYS ? keys[i].name : NULL; }
double ot_hyp_get(const ot_hyp *h, int i) { return *(const double *)((const char *)h + keys[i].off); }
void ot_hyp_set(ot_hyp *h, int i, double v) { if (i >= 0 && i < NKEYS) *(double *)((char *)h + keys[i].off) = v; }

void ot_hyp_default(ot_hyp *h) {
    memset(h, 0, sizeof *h);
    for (int i = 0; i < NKEYS; i++) *(double *)((char *)h + keys[i].off) = keys[i].def;
}

ot_status ot_hyp_load(const char *path, ot_hyp *h, ot_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot open hyp file: %s", path, strerror(errno));
    yaml_parser_t p;
    yaml_document_t doc;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    ot_status st = OT_OK;
    if (!yaml_parser_load(&p, &doc)) {
        st = ot_fail(err, OT_ERR_PARSE, "%s:%zu: invalid YAML: %s", path, p.problem_mark.line + 1,
                     p.problem ? p.problem : "parse error");
        yaml_parser_delete(&p);
        fclose(f);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        st = ot_fail(err, OT_ERR_PARSE, "%s: a hyp file is a mapping of names to numbers", path);
        goto done;
    }
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(&doc, pr->key), *v = yaml_document_get_node(&doc, pr->value);
        size_t line = k->start_mark.line + 1;
        if (k->type != YAML_SCALAR_NODE) { st = ot_fail(err, OT_ERR_PARSE, "%s:%zu: key is not a name", path, line); goto done; }
        const char *name = (const char *)k->data.scalar.value;
        int i = 0;
        while (i < NKEYS && strcmp(keys[i].name, name) != 0) i++;
        if (i == NKEYS) { ot_warn("%s:%zu: unknown hyperparameter '%s' ignored", path, line, name); continue; }
        char *end = NULL;
        double x = v->type == YAML_SCALAR_NODE ? strtod((const char *)v->data.scalar.value, &end) : NAN;
        if (v->type != YAML_SCALAR_NODE || end == (const char *)v->data.scalar.value || *end || !isfinite(x)) {
            st = ot_fail(err, OT_ERR_PARSE, "%s:%zu: %s must be a number", path, line, name);
            goto done;
        }
        if (x < keys[i].lo || x > keys[i].hi) {
            st = ot_fail(err, OT_ERR_INVALID, "%s:%zu: %s = %g is outside [%g, %g]", path, line, name, x, keys[i].lo, keys[i].hi);
            goto done;
        }
        *(double *)((char *)h + keys[i].off) = x;
        if (strcmp(name, "copy_paste") == 0 && x > 0)
            ot_warn("%s:%zu: copy_paste = %g ignored: segment copy-paste needs polygon masks, and onnx-train trains boxes only", path, line, x);
    }
done:
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    fclose(f);
    return st;
}
