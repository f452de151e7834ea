/* cmd_export.c: `onnx-train export`: a checkpoint's EMA weights as ONNX
 * (export/export_ckpt.h), in the form of the model trained from unless --form. */
#include "cli.h"
#include "export/export_ckpt.h"
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: onnx-train export --weights CKPT --out OUT.onnx [--form inference|raw|raw-bn] [--img N] [--opset N]\n\n"
               "Writes the checkpoint's EMA weights as an ONNX model of the form the training\n"
               "started from (an inference export stays an inference export: BatchNorm folded\n"
               "back into Conv, the Detect decode kept, the same input and output names,\n"
               "metadata names and stride kept). --form raw writes the three raw maps\n"
               "(b, na, ny, nx, no) as Ultralytics' --train export; raw-bn keeps\n"
               "BatchNormalization. --img sets the fixed input size (default: the source\n"
               "model's, or the training size); --opset the opset (default: the source's).\n"
               "The file is written atomically.\n\n"
               "example:\n  onnx-train export --weights runs/train/exp/weights/best.ckpt --out best.onnx\n");
}

int cmd_export(int argc, char **argv) {
    const char *w = NULL, *out = NULL;
    ot_export_req r = {0};
    for (int i = 1; i < argc; i++) {
        long v;
        if (cli_is_help(argv[i])) { usage(stdout); return 0; }
        if ((strcmp(argv[i], "--weights") == 0 || strcmp(argv[i], "--model") == 0) && i + 1 < argc) w = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--form") == 0 && i + 1 < argc) {
            const char *f = argv[++i];
            if (strcmp(f, "inference") == 0) r.form = OT_FORM_INFERENCE;
            else if (strcmp(f, "raw") == 0) r.form = OT_FORM_RAW;
            else if (strcmp(f, "raw-bn") == 0) r.form = OT_FORM_RAW_BN;
            else return cli_fail("export: --form must be inference, raw or raw-bn (got '%s')", f);
        }
        else if (cli_int_arg(argc, argv, &i, "--img", 32, 8192, &v)) { if (v == LONG_MIN) return cli_fail("export: --img needs 32..8192"); r.img = (int)v; }
        else if (cli_int_arg(argc, argv, &i, "--opset", 7, 21, &v)) { if (v == LONG_MIN) return cli_fail("export: --opset needs 7..21"); r.opset = v; }
        else return cli_fail("export: unknown or incomplete argument '%s' (see onnx-train export --help)", argv[i]);
    }
    if (!w || !out) return cli_fail("export: --weights CKPT and --out OUT.onnx are required (see onnx-train export --help)");
    ot_error e;
    ot_ckpt *c;
    if (ot_ckpt_load(w, &c, &e)) return cli_error(&e);
    ot_status st = ot_export_checkpoint(c, &r, out, &e);
    ot_ckpt_free(c);
    if (st) return cli_error(&e);
    printf("exported %s -> %s\n", w, out);
    return 0;
}
