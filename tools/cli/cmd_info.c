/* cmd_info.c: `onnx-train info [MODEL.onnx] [--json] [--ops]`: a model, and
 * this binary's devices and CUDA kernel library. */
#include "cli.h"
#include "core/plan.h"
#include "kernels/ops.h"
#include <jansson.h>
#include <string.h>

static void info_usage(FILE *f) {
    fprintf(f, "usage: onnx-train info [MODEL.onnx] [--json]\n"
               "       onnx-train info --ops\n\n"
               "Describes a model: inputs and outputs with shapes, an op histogram, the\n"
               "parameter count, the YOLO head (nc, anchors, strides) and the export form\n"
               "(inference, raw, raw-bn). --json prints one JSON object instead.\n"
               "Then, and alone without a model, this binary: its version, the devices\n"
               "--device takes, the default device and the CUDA kernel library it links\n"
               "(JSON: the \"build\" object).\n"
               "--ops lists the ONNX ops onnx-train supports.\n\n"
               "example:\n  onnx-train info yolov5s.onnx\n  onnx-train info yolov5s.onnx --json | jq .head\n");
}

static int64_t init_numel_through_identity(const ot_graph *g, int v) {
    for (int hops = 0; v >= 0 && hops < 4; hops++) {
        const ot_value *val = &g->values[v];
        if (val->flags & OT_V_INIT) return val->init.dtype == OT_F32 ? ot_numel(&val->init.shape) : 0;
        if (val->producer < 0 || strcmp(g->nodes[val->producer].op_type, "Identity") != 0) return 0;
        v = g->nodes[val->producer].in[0];
    }
    return 0;
}

int64_t cli_param_count(const ot_graph *g) {
    int64_t total = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ot_node *n = &g->nodes[i];
        int last = strcmp(n->op_type, "Conv") == 0 ? 2 : strcmp(n->op_type, "BatchNormalization") == 0 ? 2 : 0;
        for (int k = 1; k <= last && k < n->n_in; k++) total += init_numel_through_identity(g, n->in[k]);
    }
    return total;
}

static json_t *shape_json(const ot_value *v, const ot_shape *s) {
    json_t *a = json_array();
    for (int d = 0; d < s->rank; d++) {
        if (s->d[d] >= 0) json_array_append_new(a, json_integer(s->d[d]));
        else if (v->dim_param[d]) json_array_append_new(a, json_string(v->dim_param[d]));
        else json_array_append_new(a, json_integer(-1));
    }
    return a;
}

static const char *shape_text(const ot_value *v, const ot_shape *s, char *buf, size_t n) {
    if (s->rank < 0) { snprintf(buf, n, "[?]"); return buf; }
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < s->rank && k < n; d++) {
        if (s->d[d] >= 0) k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? "," : "", (long long)s->d[d]);
        else k += (size_t)snprintf(buf + k, n - k, "%s%s", d ? "," : "", v->dim_param[d] ? v->dim_param[d] : "?");
    }
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* This binary: version, devices, the default device's rule, the CUDA kernels. */
static json_t *build_json(void) {
    const char *kl = cli_cuda_kernels_name();
    json_t *b = json_object();
    json_object_set_new(b, "version", json_string(OT_VERSION));
    json_object_set_new(b, "devices", json_string(ot_backend_list()));
    json_object_set_new(b, "cuda_kernels", kl ? json_string(kl) : json_null());
    return b;
}

static void build_text(void) {
    const char *kl = cli_cuda_kernels_name();
    printf("onnx-train %s\n", OT_VERSION);
    printf("devices    %s\n", ot_backend_list());
    printf("default    GPU 0 when this binary has the CUDA kernels and a GPU is present, else cpu\n");
    printf("CUDA       %s\n", kl ? kl : "no CUDA kernels linked");
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { info_usage(stdout); return 0; }
        if (strcmp(argv[i], "--json") == 0) json = true;
        else if (strcmp(argv[i], "--ops") == 0) {
            for (int k = 0; k < ot_op_count(); k++) printf("%s\n", ot_op_get(k)->name);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) { return cli_fail("info: unknown option '%s'" " (see onnx-train info --help)", argv[i]); }
        else if (!path) path = argv[i];
        else { return cli_fail("info: more than one model given" " (see onnx-train info --help)"); }
    }
    if (!path) { /* the binary alone */
        if (json) {
            json_t *o = json_object();
            json_object_set_new(o, "build", build_json());
            char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            printf("%s\n", s);
            free(s);
            json_decref(o);
        } else {
            build_text();
        }
        return 0;
    }
    ot_model *g;
    ot_error e;
    if (ot_model_load(path, &g, &e)) return cli_error(&e);

    /* inferred output shapes when the inputs are static */
    ot_plan *p = NULL;
    bool static_in = true;
    for (int i = 0; i < g->n_inputs; i++) static_in = static_in && ot_shape_known(&g->values[g->inputs[i]].shape);
    if (static_in && ot_plan_create_ex(g, NULL, OT_PLAN_NO_MEMORY, &p, &e)) { ot_model_destroy(g); return cli_error(&e); }

    /* op histogram in first-seen order */
    const char *ops[256];
    int counts[256], nops = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        int k = 0;
        while (k < nops && strcmp(ops[k], g->nodes[i].op_type) != 0) k++;
        if (k == nops && nops < 256) { ops[nops] = g->nodes[i].op_type; counts[nops++] = 0; }
        if (k < nops) counts[k]++;
    }
    for (int a = 0; a < nops; a++) /* by count, descending */
        for (int b = a + 1; b < nops; b++)
            if (counts[b] > counts[a]) {
                int t = counts[a]; counts[a] = counts[b]; counts[b] = t;
                const char *s = ops[a]; ops[a] = ops[b]; ops[b] = s;
            }
    int64_t params = cli_param_count(g);
    const ot_yolo_head *h = &g->head;
    char buf[256];

    if (json) {
        json_t *o = json_object(), *ins = json_array(), *outs = json_array(), *jops = json_object(), *meta = json_object();
        json_object_set_new(o, "model", json_string(path));
        json_object_set_new(o, "opset", json_integer(g->opset));
        json_object_set_new(o, "ir_version", json_integer(g->ir_version));
        json_object_set_new(o, "producer", json_string(g->producer_name));
        for (int i = 0; i < g->n_inputs; i++) {
            const ot_value *v = &g->values[g->inputs[i]];
            json_t *x = json_object();
            json_object_set_new(x, "name", json_string(v->name));
            json_object_set_new(x, "dtype", json_string(ot_dtype_name(v->dtype)));
            json_object_set_new(x, "shape", shape_json(v, &v->shape));
            json_array_append_new(ins, x);
        }
        for (int i = 0; i < g->n_outputs; i++) {
            const ot_value *v = &g->values[g->outputs[i]];
            json_t *x = json_object();
            json_object_set_new(x, "name", json_string(v->name));
            json_object_set_new(x, "dtype", json_string(ot_dtype_name(p ? p->dtype[g->outputs[i]] : v->dtype)));
            json_object_set_new(x, "shape", shape_json(v, p ? &p->shape[g->outputs[i]] : &v->shape));
            json_array_append_new(outs, x);
        }
        for (int k = 0; k < nops; k++) json_object_set_new(jops, ops[k], json_integer(counts[k]));
        for (int k = 0; k < g->n_meta; k++) json_object_set_new(meta, g->meta[k].key, json_string(g->meta[k].value));
        json_object_set_new(o, "inputs", ins);
        json_object_set_new(o, "outputs", outs);
        json_object_set_new(o, "ops", jops);
        json_object_set_new(o, "nodes", json_integer(g->n_nodes));
        json_object_set_new(o, "parameters", json_integer(params));
        if (h->found) {
            json_t *jh = json_object(), *st = json_array(), *an = json_array(), *cv = json_array();
            for (int l = 0; l < h->nl; l++) {
                json_array_append_new(st, json_integer(h->stride[l]));
                json_t *la = json_array();
                for (int a = 0; a < h->na; a++) {
                    json_t *pr = json_array();
                    json_array_append_new(pr, json_real(h->anchors[l][a][0]));
                    json_array_append_new(pr, json_real(h->anchors[l][a][1]));
                    json_array_append_new(la, pr);
                }
                json_array_append_new(an, la);
                json_array_append_new(cv, json_string(h->conv_node[l]));
            }
            json_object_set_new(jh, "nc", json_integer(h->nc));
            json_object_set_new(jh, "na", json_integer(h->na));
            json_object_set_new(jh, "nl", json_integer(h->nl));
            json_object_set_new(jh, "strides", st);
            json_object_set_new(jh, "anchors", an);
            json_object_set_new(jh, "anchor_source", json_string(h->anchor_source));
            json_object_set_new(jh, "convs", cv);
            json_object_set_new(o, "head", jh);
        } else {
            json_object_set_new(o, "head", json_null());
        }
        json_object_set_new(o, "form", json_string(ot_form_name(h->found ? h->form : OT_FORM_UNKNOWN)));
        json_object_set_new(o, "metadata", meta);
        json_object_set_new(o, "build", build_json());
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("model      %s (opset %lld, IR %lld, %s %s)\n", path, (long long)g->opset, (long long)g->ir_version,
               g->producer_name, g->producer_version);
        for (int i = 0; i < g->n_inputs; i++) {
            const ot_value *v = &g->values[g->inputs[i]];
            printf("%s %-16s %s %s\n", i ? "          " : "input     ", v->name, ot_dtype_name(v->dtype), shape_text(v, &v->shape, buf, sizeof buf));
        }
        for (int i = 0; i < g->n_outputs; i++) {
            const ot_value *v = &g->values[g->outputs[i]];
            const ot_shape *s = p ? &p->shape[g->outputs[i]] : &v->shape;
            printf("%s %-16s %s %s\n", i ? "          " : "output    ", v->name, ot_dtype_name(p ? p->dtype[g->outputs[i]] : v->dtype),
                   shape_text(v, s, buf, sizeof buf));
        }
        printf("parameters %lld\n", (long long)params);
        printf("nodes      %d:", g->n_nodes);
        for (int k = 0; k < nops; k++) printf(" %s %d%s", ops[k], counts[k], k + 1 < nops ? "," : "\n");
        if (h->found) {
            printf("head       YOLO Detect: nc %d, na %d, %d layers, strides", h->nc, h->na, h->nl);
            for (int l = 0; l < h->nl; l++) printf(" %lld", (long long)h->stride[l]);
            printf("\nform       %s\n", ot_form_name(h->form));
            printf("anchors    (%s)", h->anchor_source);
            for (int l = 0; l < h->nl; l++) {
                printf("%s P%d/%lld:", l ? "\n          " : "", l + 3, (long long)h->stride[l]);
                for (int a = 0; a < h->na; a++) printf(" %g,%g", h->anchors[l][a][0], h->anchors[l][a][1]);
            }
            printf("\n");
        } else {
            printf("head       none found (not a YOLO detector)\n");
        }
        for (int k = 0; k < g->n_meta; k++) {
            const char *val = g->meta[k].value;
            printf("%s %s = %.60s%s\n", k ? "          " : "metadata  ", g->meta[k].key, val, strlen(val) > 60 ? "..." : "");
        }
        printf("\n");
        build_text();
    }
    ot_plan_destroy(p);
    ot_model_destroy(g);
    return 0;
}
