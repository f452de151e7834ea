/* cmd_forward.c: `onnx-train forward MODEL --input X.npy --out DIR`: the
 * forward pass on --device (a plan on that backend), every graph output
 * written as DIR/<output name>.npy. */
#include "cli.h"
#include "core/config.h"
#include "core/plan.h"
#include "core/npy.h"
#include "train/checkpoint.h"
#include "train/detector.h"
#include <math.h>
#include <string.h>
#include <time.h>

static void fwd_usage(FILE *f) {
    fprintf(f, "usage: onnx-train forward MODEL.onnx|CKPT (--input X.npy | --random-input SEED) --out DIR [--repeat N]\n"
               "                          [--device 0|cpu|cpu-guard] [--tf32]\n\n"
               "Runs the forward pass (float32, NCHW) on --device and writes every graph\n"
               "output as DIR/<output name>.npy. Give one --input per model input, in order\n"
               "(a float32 C-order .npy of the model's input shape; its shape sets the batch\n"
               "size of a dynamic model). --random-input SEED feeds a deterministic 8-bit test\n"
               "image pattern instead (also written to DIR). --repeat N (up to 64) runs N\n"
               "times and reports the fastest and the median time. A training checkpoint\n"
               "(.ckpt) runs its EMA weights in eval mode with the Detect decode and writes\n"
               "DIR/output0.npy (n, rows, 5 + nc), what its inference export computes. Times\n"
               "include the inputs' upload and the outputs' download.\n");
    cli_device_help(f, true);
    fprintf(f, "\nexample:\n  onnx-train forward yolov5s.onnx --input images.npy --out out/\n"
               "  onnx-train forward yolov5s.onnx --random-input 1 --out out/ --device 0 --repeat 10\n");
}

/* Output names become file names: keep [A-Za-z0-9._-], map the rest to '_'. */
static void safe_name(char *dst, size_t n, const char *name) {
    size_t k = 0;
    for (; name[k] && k + 1 < n; k++) {
        char ch = name[k];
        dst[k] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' ? ch : '_';
    }
    dst[k] = 0;
    if (dst[0] == '.' || !dst[0]) dst[0] = '_';
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* A checkpoint: its EMA weights in eval mode and the Detect decode, written as
 * DIR/output0.npy (n, rows, 5 + nc), what the inference export computes. */
static int forward_ckpt(ot_backend *be, const char *model, const char *input, long seed, const char *out) {
    ot_error e;
    ot_ckpt *c;
    if (ot_ckpt_load(model, &c, &e)) return cli_error(&e);
    json_t *src = json_object_get(c->header, "source");
    int64_t ih = json_integer_value(json_object_get(src, "img_h")), iw = json_integer_value(json_object_get(src, "img_w"));
    ot_graph *g = NULL;
    ot_detector *det = NULL;
    ot_tensor in = {0};
    int rc = 0;
    if (ot_ckpt_graph(c, &g, &e) || ot_ckpt_apply_ema(c, g, &e) || ot_detector_create_on(be, g, &g->head, NULL, &det, &e)) { rc = cli_error(&e); goto done; }
    if (cli_mkdirs(out) != 0) { rc = cli_fail("forward: cannot create output folder '%s'", out); goto done; }
    if (input) {
        if (ot_npy_read(input, &in, &e)) { rc = cli_error(&e); goto done; }
        if (in.dtype != OT_F32 || in.shape.rank != 4 || in.shape.d[1] != 3) { rc = cli_fail("%s: expected float32 images (n, 3, h, w)", input); goto done; }
    } else {
        in.dtype = OT_F32;
        in.shape = (ot_shape){4, {1, 3, ih > 0 ? ih : 640, iw > 0 ? iw : 640}};
        if (!(in.data = malloc(sizeof(float) * (size_t)ot_numel(&in.shape)))) { rc = cli_fail("out of memory"); goto done; }
        ot_fill_pattern(in.data, ot_numel(&in.shape), (uint32_t)seed);
        char fn[4096];
        snprintf(fn, sizeof fn, "%s/images.npy", out);
        if (ot_npy_write(fn, &in, &e)) { rc = cli_error(&e); goto done; }
    }
    const float *pred;
    int64_t rows;
    double t0 = now_ms();
    if (ot_detector_run(det, in.data, (int)in.shape.d[0], (int)in.shape.d[2], (int)in.shape.d[3], &pred, &rows, &e)) { rc = cli_error(&e); goto done; }
    double t1 = now_ms();
    ot_tensor o = {OT_F32, {3, {in.shape.d[0], rows, g->head.nc + 5}}, (void *)pred};
    char fn[4096], sb[160];
    snprintf(fn, sizeof fn, "%s/output0.npy", out);
    if (ot_npy_write(fn, &o, &e)) { rc = cli_error(&e); goto done; }
    printf("%-12s %-20s -> %s\nforward %.1f ms on %s\n", "output0", ot_shape_str(&o.shape, sb, sizeof sb), fn, t1 - t0, be->name);
done:
    free(in.data);
    ot_detector_destroy(det);
    ot_graph_destroy(g);
    ot_ckpt_free(c);
    return rc;
}

int cmd_forward(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *inputs[8], *device = "";
    int n_inputs = 0, repeat = 1;
    long seed = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fwd_usage(stdout); return 0; }
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--input") == 0 && has_val) {
            if (n_inputs == 8) return cli_fail("forward: at most 8 --input files");
            inputs[n_inputs++] = argv[++i];
        } else if (strcmp(a, "--out") == 0 && has_val) out = argv[++i];
        else if (strcmp(a, "--device") == 0 && has_val) device = argv[++i];
        else if (strcmp(a, "--tf32") == 0) ot_config_set_tf32(true);
        else if (strcmp(a, "--random-input") == 0 && has_val) {
            char *end;
            seed = strtol(argv[++i], &end, 10);
            if (*end || seed < 0) return cli_fail("forward: --random-input needs a non-negative integer seed, got '%s'", argv[i]);
        } else if (strcmp(a, "--repeat") == 0 && has_val) {
            repeat = atoi(argv[++i]);
            if (repeat < 1) return cli_fail("forward: --repeat needs a positive count");
        } else if (a[0] == '-' && a[1]) { return cli_fail("forward: unknown option or missing value '%s'" " (see onnx-train forward --help)", a); }
        else if (!model) model = a;
        else { return cli_fail("forward: unexpected argument '%s'" " (see onnx-train forward --help)", a); }
    }
    if (!model) { return cli_fail("forward: no model given" " (see onnx-train forward --help)"); }
    if (!out) { return cli_fail("forward: --out DIR is required" " (see onnx-train forward --help)"); }
    if ((n_inputs > 0) == (seed >= 0)) { return cli_fail("forward: give --input files or --random-input SEED (one of them)" " (see onnx-train forward --help)"); }

    ot_error e;
    ot_backend *be;
    if (ot_backend_get(device, &be, &e)) return cli_error(&e);
    size_t ml = strlen(model);
    if (ml > 5 && strcmp(model + ml - 5, ".ckpt") == 0) {
        if (n_inputs > 1) return cli_fail("forward: a checkpoint takes one --input (images)");
        return forward_ckpt(be, model, n_inputs ? inputs[0] : NULL, seed, out);
    }
    ot_model *g;
    if (ot_model_load(model, &g, &e)) return cli_error(&e);
    int rc = 0, ni = g->n_inputs;
    ot_tensor in[8], outs[64];
    ot_shape shapes[8];
    ot_plan *s = NULL;
    memset(in, 0, sizeof in);
    memset(outs, 0, sizeof outs);
    if (ni > 8) { rc = cli_fail("%s: %d inputs; at most 8 are supported", model, ni); goto done; }
    if (n_inputs && n_inputs != ni) { rc = cli_fail("%s: the model has %d input(s), %d --input file(s) given", model, ni, n_inputs); goto done; }
    if (cli_mkdirs(out) != 0) { rc = cli_fail("forward: cannot create output folder '%s'", out); goto done; }
    for (int i = 0; i < ni; i++) {
        const ot_value *v = &g->values[g->inputs[i]];
        if (n_inputs) {
            if (ot_npy_read(inputs[i], &in[i], &e)) { rc = cli_error(&e); goto done; }
        } else {
            int64_t n;
            if (!ot_shape_numel(&v->shape, &n)) {
                rc = cli_fail("%s: input '%s' has a dynamic shape; give --input X.npy to set it", model, v->name);
                goto done;
            }
            in[i].dtype = OT_F32;
            in[i].shape = v->shape;
            in[i].data = malloc((size_t)n * sizeof(float) + 1);
            if (!in[i].data) { rc = cli_fail("out of memory"); goto done; }
            ot_fill_pattern(in[i].data, n, (uint32_t)seed + (uint32_t)i);
            char fn[4096], nm[256];
            safe_name(nm, sizeof nm, v->name);
            snprintf(fn, sizeof fn, "%s/%s.npy", out, nm);
            if (ot_npy_write(fn, &in[i], &e)) { rc = cli_error(&e); goto done; }
        }
        shapes[i] = in[i].shape;
    }
    if (ot_plan_create_on(be, g, shapes, 0, NULL, &s, &e)) { /* the planned shapes are the inputs' */
        rc = cli_error(&e);
        goto done;
    }
    if (g->n_outputs > 64) { rc = cli_fail("%s: more than 64 outputs", model); goto done; }
    for (int k = 0; k < g->n_outputs; k++) { /* host copies of the outputs (the plan's memory is the backend's) */
        int v = g->outputs[k];
        size_t b = (size_t)ot_numel(&s->shape[v]) * ot_dtype_size(s->dtype[v]);
        outs[k] = (ot_tensor){s->dtype[v], s->shape[v], malloc(b ? b : 1)};
        if (!outs[k].data) { rc = cli_fail("out of memory for output '%s'", g->values[v].name); goto done; }
    }
    for (int i = 0; i < ni; i++)
        if (in[i].dtype != OT_F32 || !ot_shape_eq(&in[i].shape, &s->shape[g->inputs[i]])) {
            char want[160], got[160];
            rc = cli_fail("%s: input '%s' expects float32 %s, got %s %s", model, g->values[g->inputs[i]].name,
                          ot_shape_str(&s->shape[g->inputs[i]], want, sizeof want), ot_dtype_name(in[i].dtype),
                          ot_shape_str(&in[i].shape, got, sizeof got));
            goto done;
        }
    double times[64];
    if (repeat > 64) repeat = 64;
    for (int r = 0; r < repeat; r++) { /* upload, run, download (complete on return): the device's whole forward */
        double t0 = now_ms();
        for (int i = 0; i < ni; i++) ot_plan_set_input(s, i, in[i].data);
        if (ot_plan_run(s, NULL, &e)) { rc = cli_error(&e); goto done; }
        for (int k = 0; k < g->n_outputs; k++) ot_plan_download(s, g->outputs[k], outs[k].data);
        times[r] = now_ms() - t0;
    }
    for (int a = 0; a < repeat; a++) /* sort for min and median */
        for (int b = a + 1; b < repeat; b++)
            if (times[b] < times[a]) { double t = times[a]; times[a] = times[b]; times[b] = t; }
    for (int k = 0; k < g->n_outputs; k++) {
        char fn[4096], nm[256], sb[160];
        safe_name(nm, sizeof nm, g->values[g->outputs[k]].name);
        snprintf(fn, sizeof fn, "%s/%s.npy", out, nm);
        if (outs[k].dtype != OT_F32) { rc = cli_fail("%s: output '%s' is %s, only float32 outputs are written", model, nm, ot_dtype_name(outs[k].dtype)); goto done; }
        if (ot_npy_write(fn, &outs[k], &e)) { rc = cli_error(&e); goto done; }
        const float *d = outs[k].data;
        int64_t n = ot_numel(&outs[k].shape);
        double mn = INFINITY, mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++) { mn = fmin(mn, d[i]); mx = fmax(mx, d[i]); sum += d[i]; }
        printf("%-12s %-20s min %-12.6g max %-12.6g mean %-12.6g -> %s\n", g->values[g->outputs[k]].name,
               ot_shape_str(&outs[k].shape, sb, sizeof sb), n ? mn : 0, n ? mx : 0, n ? sum / (double)n : 0, fn);
    }
    if (repeat > 1) printf("forward %.1f ms fastest, %.1f ms median of %d runs on %s\n", times[0], times[repeat / 2], repeat, be->name);
    else printf("forward %.1f ms on %s\n", times[0], be->name);
done:
    for (int k = 0; k < g->n_outputs && k < 64; k++) free(outs[k].data);
    ot_plan_destroy(s);
    for (int i = 0; i < ni && i < 8; i++) free(in[i].data);
    ot_model_destroy(g);
    return rc;
}
