/* cmd_loss.c: `onnx-train loss MODEL --input X.npy --targets T.txt`: one
 * forward with BatchNormalization in training mode, the YOLOv5 loss and the
 * backward for that batch. */
#include "cli.h"
#include "core/config.h"
#include "core/npy.h"
#include "train/step.h"
#include "train/targets.h"
#include <jansson.h>
#include <string.h>

static void loss_usage(FILE *f) {
    fprintf(f, "usage: onnx-train loss MODEL.onnx --input X.npy --targets T.txt [--hyp H.yaml] [--img N]\n"
               "                        [--grads DIR] [--no-bn] [--device 0|cpu|cpu-guard] [--tf32] [--json]\n\n"
               "One training forward (BatchNormalization with batch statistics), the YOLOv5 v7.0\n"
               "loss (ComputeLoss) and the backward for one batch. The model may be any YOLOv5\n"
               "export: the Detect decode is cut and, in folded exports, BatchNormalization is\n"
               "re-inserted after every Conv but the head's (--no-bn keeps the graph as it is).\n"
               "X.npy: float32 images (B, 3, H, W) in 0..1. T.txt: one box a line,\n"
               "`image_index class cx cy w h`, normalised; '#' starts a comment.\n"
               "Prints lbox, lobj, lcls and loss = (lbox + lobj + lcls) * B as Ultralytics does;\n"
               "--json prints one JSON object with exactly those keys. --grads DIR writes the\n"
               "gradient of every trainable initializer as DIR/<name>.npy. --hyp reads an\n"
               "Ultralytics hyp YAML (default: hyp.scratch-low.yaml's values); --img sets the\n"
               "image size of the obj gain (default: the input's width).\n");
    cli_device_help(f, true);
    fprintf(f, "\nexample:\n  onnx-train loss yolov5s.onnx --input batch.npy --targets batch.txt --json\n");
}

int cmd_loss(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *tfile = NULL, *hypf = NULL, *grads = NULL, *device = "";
    int img = 0;
    bool json = false, no_bn = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (cli_is_help(a)) { loss_usage(stdout); return 0; }
        if (strcmp(a, "--input") == 0 && v) input = argv[++i];
        else if (strcmp(a, "--targets") == 0 && v) tfile = argv[++i];
        else if (strcmp(a, "--hyp") == 0 && v) hypf = argv[++i];
        else if (strcmp(a, "--grads") == 0 && v) grads = argv[++i];
        else if (strcmp(a, "--device") == 0 && v) device = argv[++i];
        else if (strcmp(a, "--tf32") == 0) ot_config_set_tf32(true);
        else if (strcmp(a, "--img") == 0 && v) {
            char *end;
            img = (int)strtol(argv[++i], &end, 10);
            if (*end || img <= 0) return cli_fail("loss: --img needs a positive size, got '%s'", argv[i]);
        } else if (strcmp(a, "--json") == 0) json = true;
        else if (strcmp(a, "--no-bn") == 0) no_bn = true;
        else if (a[0] == '-' && a[1]) return cli_fail("loss: unknown option or missing value '%s' (see onnx-train loss --help)", a);
        else if (!model) model = a;
        else return cli_fail("loss: unexpected argument '%s' (see onnx-train loss --help)", a);
    }
    if (!model || !input || !tfile) return cli_fail("loss: MODEL, --input and --targets are required (see onnx-train loss --help)");
    ot_hyp hyp;
    ot_hyp_default(&hyp);
    ot_error e;
    if (hypf && ot_hyp_load(hypf, &hyp, &e)) return cli_error(&e);
    ot_model *m = NULL;
    ot_tensor x = {0};
    float *targets = NULL;
    ot_step *s = NULL;
    int rc = 0, nt = 0;
    if (ot_model_load(model, &m, &e)) return cli_error(&e);
    if (ot_npy_read(input, &x, &e)) { rc = cli_error(&e); goto done; }
    if (x.shape.rank != 4 || x.shape.d[1] != 3) {
        char b[160];
        rc = cli_fail("%s: expected images of shape (B, 3, H, W), got %s", input, ot_shape_str(&x.shape, b, sizeof b));
        goto done;
    }
    if (!m->head.found) { rc = cli_fail("%s: no YOLOv5 Detect head found; `loss` needs a YOLOv5 detector", model); goto done; }
    if (ot_targets_read(tfile, (int)x.shape.d[0], m->head.nc, &targets, &nt, &e)) { rc = cli_error(&e); goto done; }
    ot_prepare_opts po = {no_bn};
    ot_backend *be = NULL;
    if (ot_backend_get(device, &be, &e) || ot_step_create_on(be, m, &po, &hyp, x.shape, img ? img : (int)x.shape.d[3], &s, &e)) {
        rc = cli_error(&e);
        goto done;
    }
    ot_loss_items it;
    if (ot_step_run(s, x.data, targets, nt, true, &it, &e)) { rc = cli_error(&e); goto done; }
    if (grads) {
        if (cli_mkdirs(grads) != 0) { rc = cli_fail("loss: cannot create folder '%s'", grads); goto done; }
        ot_autograd *ag = s->ag;
        float *host = malloc(sizeof(float) * (ag->slab_floats + 1)); /* the gradients, copied from the backend once */
        if (!host) { rc = cli_fail("loss: out of memory"); goto done; }
        ot_be_download(ag->be, host, ag->grad_slab, sizeof(float) * ag->slab_floats);
        for (int i = 0; i < ag->n_vars && !rc; i++) {
            int v = ag->var_vid[i];
            if (ag->kind[v] != OT_VAR_PARAM) continue;
            char fn[4096];
            snprintf(fn, sizeof fn, "%s/%s.npy", grads, s->graph->values[v].name);
            ot_tensor t = {OT_F32, s->ag->p->shape[v], host + ag->var_off[i]};
            if (ot_npy_write(fn, &t, &e)) rc = cli_error(&e);
        }
        free(host);
        if (rc) goto done;
    }
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "lbox", json_real(it.lbox));
        json_object_set_new(o, "lobj", json_real(it.lobj));
        json_object_set_new(o, "lcls", json_real(it.lcls));
        json_object_set_new(o, "loss", json_real(it.loss));
        char *js = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        printf("%s\n", js);
        free(js);
        json_decref(o);
    } else {
        printf("lbox %.9g\nlobj %.9g\nlcls %.9g\nloss %.9g\n", it.lbox, it.lobj, it.lcls, it.loss);
        printf("(%d targets, batch %lld, %dx%d%s)\n", nt, (long long)x.shape.d[0], (int)x.shape.d[2], (int)x.shape.d[3],
               grads ? ", gradients written" : "");
    }
done:
    ot_step_destroy(s);
    free(targets);
    free(x.data);
    ot_model_destroy(m);
    return rc;
}
