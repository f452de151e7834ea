/* main.c: the onnx-train command line: dispatch to subcommands. The only
 * place that exits. */
#include "cli.h"
#include "core/backend.h"
#include "kernels/device_kernels.h"
#ifdef ONNXT_CLI_KERNELS
#include "kernels/cuda/cuda_tables.h"
#endif
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

static const struct { const char *name; cli_cmd_fn fn; const char *what; } cmds[] = {
    {"info", cmd_info, "describe a model: inputs, outputs, ops, parameters, YOLO head"},
    {"forward", cmd_forward, "run the forward pass (CPU or GPU) and write every output as .npy"},
    {"loss", cmd_loss, "one training forward, the YOLOv5 loss and its gradients for a batch"},
    {"data", cmd_data, "check a dataset (counts, bad files) or show an augmented batch"},
    {"coco2yolo", cmd_coco2yolo, "convert COCO instances JSON to YOLO label files"},
    {"train", cmd_train, "train a YOLOv5 model (an ONNX export, a checkpoint or yolov5n..x) on a dataset"},
    {"val", cmd_val, "score YOLO prediction files against a dataset: P, R, mAP50, mAP50-95 (val.py)"},
    {"export", cmd_export, "write a checkpoint's EMA weights as ONNX, in the form the model came in"},
    {"predict", cmd_predict, "detect objects in images: boxes drawn on JPEGs and YOLO-format txt files"},
    {"bench", cmd_bench, "measure speed: bench data (loader samples/s), bench train (step images/s), bench kernels (GPU)"},
};

static void usage(FILE *f) {
    fprintf(f,
            "onnx-train %s: train YOLOv5 ONNX models natively\n\n"
            "usage: onnx-train <command> [options]   (onnx-train <command> --help for details)\n\ncommands:\n",
            OT_VERSION);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].what);
    const char *kl = cli_cuda_kernels_name();
    fprintf(f, "\ndevices in this build (--device): %s\n", ot_backend_list());
    fprintf(f, "CUDA kernels: %s\n", kl ? kl : "none linked (the CUDA device, if any, has memory and streams only)");
    fprintf(f, "default device (no --device): GPU 0 when this binary has the CUDA kernels and a GPU is present, else cpu\n");
    fprintf(f, "\nexample:\n  onnx-train train --model yolov5n --data coco128.yaml --img 320 --epochs 30\n"
               "  onnx-train info yolov5s.onnx\n"
               "  onnx-train forward yolov5s.onnx --random-input 1 --out out/\n");
}

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("onnx-train: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_BAD;
}

int cli_error(const ot_error *e) { return cli_fail("%s", e->msg); }

bool cli_is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

const char *cli_cuda_kernels_name(void) {
    const ot_device_kernels *k = ot_device_kernels_get(OT_DEV_CUDA);
    return k ? k->name : NULL;
}

void cli_device_help(FILE *f, bool tf32) {
    const char *kl = cli_cuda_kernels_name();
    fprintf(f,
            "--device DEV: 0 (CUDA GPU 0; cuda:0 is the same), cpu, or cpu-guard (the CPU\n"
            "kernels over memory that host code cannot touch, docs/BACKENDS.md). Without\n"
            "--device, as Ultralytics: GPU 0 when this binary has the CUDA kernels and a\n"
            "GPU is present, else cpu. onnx-train-cudaemu and -DONNXT_CUDA=EMU builds run\n"
            "--device 0 on the CPU executor (the CUDA kernels emulated on the CPU; slow,\n"
            "for tests). One device at a time, except train: --device 0,1 trains on\n"
            "GPUs 0 and 1, one process per device (train --help).\n");
    if (tf32)
        fprintf(f, "--tf32: TF32 tensor cores for the convolutions (GPU only; faster, at about\n"
                   "1e-3 relative precision; also ONNXT_TF32=1). Default: FP32. Does nothing on\n"
                   "cpu, cpu-guard or the executor.\n");
    fprintf(f, "This binary's devices: %s.\nIts CUDA kernels: %s.\n", ot_backend_list(), kl ? kl : "none");
}

int cli_mkdirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    struct stat st;
    return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

int main(int argc, char **argv) {
#ifdef ONNXT_CLI_KERNELS
    ot_cuda_kernels_install(); /* the CUDA device's kernels: the GPU's, or the executor's (onnx-train-cudaemu) */
#endif
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_BAD : 0;
    }
    if (strcmp(argv[1], "--version") == 0) { printf("onnx-train %s\n", OT_VERSION); return 0; }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
    return cli_fail("unknown command '%s' (see onnx-train --help)", argv[1]);
}
