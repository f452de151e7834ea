/* cmd_train.c: `onnx-train train`, with Ultralytics train.py's flags and
 * defaults (train/trainer.h does the work). */
#include "cli.h"
#include "core/backend.h"
#include "core/config.h"
#include "core/dist.h"
#include "export/export_ckpt.h"
#include "train/trainer.h"
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: onnx-train train --model M.onnx|M.ckpt|yolov5n|yolov5s|yolov5m|yolov5l|yolov5x --data D.yaml\n"
            "                        [--epochs 100] [--batch-size 16] [--img 640] [--device 0|0,1|cpu|cpu-guard] [--tf32]\n"
            "                        [--hyp H.yaml] [--workers 8] [--project runs/train] [--name exp] [--exist-ok]\n"
            "                        [--resume [last.ckpt]] [--seed 0] [--cache [ram]] [--noval] [--nosave]\n"
            "                        [--cos-lr] [--optimizer SGD|Adam|AdamW] [--patience 100] [--freeze N]\n"
            "                        [--label-smoothing E] [--rect] [--single-cls] [--noautoanchor]\n"
            "                        [--noplots] [--reset-head] [--no-bn] [--sync-bn] [--bucket-mb 25]\n"
            "                        [--amp fp16|bf16|off] [--channels-last]\n\n"
            "Trains a YOLOv5 detector as Ultralytics YOLOv5 v7.0 train.py does: mosaic and\n"
            "the rest of hyp.scratch-low's augmentation, the v7.0 loss, SGD (Nesterov) with\n"
            "gradient accumulation to a nominal batch of 64, warmup, linear or cosine LR,\n"
            "EMA weights, validation of the EMA each epoch (P, R, mAP50, mAP50-95),\n"
            "results.csv, weights/last.ckpt and best.ckpt (atomic writes), early stopping\n"
            "after --patience epochs without improvement. At the end the best checkpoint is\n"
            "validated with plots (PR/F1 curves, confusion matrix, val batches, results.png)\n"
            "and exported as weights/best.onnx in the form of the model given (an inference\n"
            "export stays one). yolov5n..yolov5x are built here (v7.0 architecture, nc from\n"
            "the data, default anchors) and trained from scratch. A model with another class\n"
            "count than the data is an error unless --reset-head (new detection layers).\n"
            "--resume continues the latest run under --project (or the given last.ckpt)\n"
            "exactly where its last finished epoch left off. --cache keeps decoded images\n"
            "in memory. --no-bn trains a folded export without re-inserting BatchNorm.\n"
            "--amp: mixed precision on a GPU, on by default (fp16) as in train.py: the\n"
            "convolutions in half precision (fp16 or bf16), the activations that only they\n"
            "(through copies) and BatchNorm read stored in half (ONNXT_HALF_ACTIVATIONS=0:\n"
            "float), FP32 master weights, optimizer, EMA, loss, checkpoints and export;\n"
            "fp16 with dynamic loss scaling (GradScaler: a step with non-finite gradients\n"
            "is skipped and the scale halved, doubled after 2000 good steps). off: FP32.\n"
            "The CPU devices train in FP32; the executor's device (onnx-train-cudaemu)\n"
            "too unless --amp is given.\n"
            "--channels-last: with --amp, the convolutions' half copies in NHWC (weights\n"
            "KRSC), the layout of cuDNN's tensor-core kernels, transposed in the same passes\n"
            "that convert them; also ONNXT_CHANNELS_LAST=1. Off by default until measured\n"
            "faster (docs/PERF.md). An error without --amp.\n"
            "On a CUDA device the full-batch step (forward, loss, backward, optimizer, EMA)\n"
            "runs as CUDA graphs, captured once warm and then replayed (ONNXT_CUDA_GRAPH=0:\n"
            "plain launches; the same results).\n");
    cli_device_help(f, true);
    fprintf(f,
            "Data parallel: --device 0,1[,...] starts one process per listed GPU on this\n"
            "machine (under OpenMPI's mpirun, which must be installed; the job stops and\n"
            "exits non-zero when any of them fails). On several machines, or CPU ranks:\n"
            "mpirun -np N onnx-train train ... --device 0 (or cpu); with --device 0,1\n"
            "under mpirun each rank takes the entry of its rank on its machine.\n"
            "--batch-size is the total, split over the ranks; each rank reads its own\n"
            "shard of every epoch; gradients are summed over ranks before each step; rank\n"
            "0 logs, validates and saves; --sync-bn takes BatchNorm statistics over all\n"
            "ranks. On GPUs the gradients are summed (NCCL) in buckets of --bucket-mb MB\n"
            "(default 25, DDP's bucket_cap_mb; also ONNXT_BUCKET_MB) while the backward\n"
            "runs. docs/TRAINING.md, \"Data parallel on CUDA devices\".\n\n"
            "example:\n  onnx-train train --model yolov5n --data coco128.yaml --img 320 --epochs 30\n"
            "  onnx-train train --model yolov5s.onnx --data my.yaml --epochs 50 --batch-size 8 --device 0\n"
            "  onnx-train train --resume\n");
}

static bool dbl_arg(int argc, char **argv, int *i, const char *name, double *out, bool *bad) {
    if (strcmp(argv[*i], name) != 0) return false;
    if (*i + 1 >= argc) { *bad = true; return true; }
    char *end;
    *out = strtod(argv[++*i], &end);
    if (*end) *bad = true;
    return true;
}

int cmd_train(int argc, char **argv) {
    ot_train_opts o;
    ot_train_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        bool bad = false;
        if (cli_is_help(a)) { usage(stdout); return 0; }
        if ((strcmp(a, "--model") == 0 || strcmp(a, "--weights") == 0 || strcmp(a, "--cfg") == 0) && i + 1 < argc) o.model = argv[++i];
        else if (strcmp(a, "--data") == 0 && i + 1 < argc) o.data = argv[++i];
        else if (strcmp(a, "--hyp") == 0 && i + 1 < argc) o.hyp_path = argv[++i];
        else if (strcmp(a, "--device") == 0 && i + 1 < argc) o.device = argv[++i];
        else if (strcmp(a, "--tf32") == 0) ot_config_set_tf32(true);
        else if (strcmp(a, "--amp") == 0 && i + 1 < argc) o.amp = argv[++i];
        else if (strcmp(a, "--channels-last") == 0) ot_config_set_channels_last(true);
        else if (strcmp(a, "--project") == 0 && i + 1 < argc) o.project = argv[++i];
        else if (strcmp(a, "--name") == 0 && i + 1 < argc) o.name = argv[++i];
        else if (strcmp(a, "--exist-ok") == 0) o.exist_ok = true;
        else if (strcmp(a, "--resume") == 0) o.resume = (i + 1 < argc && argv[i + 1][0] != '-') ? argv[++i] : "";
        else if (strcmp(a, "--cache") == 0) {
            o.cache_ram = true;
            if (i + 1 < argc && (strcmp(argv[i + 1], "ram") == 0)) i++;
            else if (i + 1 < argc && strcmp(argv[i + 1], "disk") == 0) return cli_fail("train: --cache disk is not supported; use --cache ram");
        }
        else if (strcmp(a, "--noval") == 0) o.noval = true;
        else if (strcmp(a, "--nosave") == 0) o.nosave = true;
        else if (strcmp(a, "--cos-lr") == 0) o.cos_lr = true;
        else if (strcmp(a, "--rect") == 0) o.rect = true;
        else if (strcmp(a, "--single-cls") == 0) o.single_cls = true;
        else if (strcmp(a, "--noautoanchor") == 0) o.noautoanchor = true;
        else if (strcmp(a, "--noplots") == 0) o.noplots = true;
        else if (strcmp(a, "--reset-head") == 0) o.reset_head = true;
        else if (strcmp(a, "--no-bn") == 0) o.no_bn = true;
        else if (strcmp(a, "--sync-bn") == 0) o.sync_bn = true;
        else if (strcmp(a, "--bucket-mb") == 0 && i + 1 < argc) {
            char *end;
            double mb = strtod(argv[++i], &end);
            if (*end || !(mb > 0) || mb > 65536) return cli_fail("train: --bucket-mb '%s': expected a size in MB > 0", argv[i]);
            ot_config_set_bucket_mb(mb);
        }
        else if (strcmp(a, "--quiet") == 0) o.quiet = true;
        else if (strcmp(a, "--optimizer") == 0 && i + 1 < argc) {
            const char *s = argv[++i];
            if (strcmp(s, "SGD") == 0) o.optimizer = OT_OPT_SGD;
            else if (strcmp(s, "Adam") == 0) o.optimizer = OT_OPT_ADAM;
            else if (strcmp(s, "AdamW") == 0) o.optimizer = OT_OPT_ADAMW;
            else return cli_fail("train: --optimizer must be SGD, Adam or AdamW (got '%s')", s);
        }
        else if (dbl_arg(argc, argv, &i, "--label-smoothing", &o.label_smoothing, &bad)) {
            if (bad || !(o.label_smoothing >= 0 && o.label_smoothing < 1)) return cli_fail("train: --label-smoothing needs a number in [0, 1)");
        }
        else if (cli_int_arg(argc, argv, &i, "--epochs", 1, 1000000, &v)) { if (v == LONG_MIN) return cli_fail("train: --epochs needs a positive integer"); o.epochs = (int)v; }
        else if (cli_int_arg(argc, argv, &i, "--batch-size", 1, 4096, &v)) { if (v == LONG_MIN) return cli_fail("train: --batch-size needs 1..4096"); o.batch = (int)v; }
        else if (cli_int_arg(argc, argv, &i, "--img", 32, 8192, &v) || cli_int_arg(argc, argv, &i, "--imgsz", 32, 8192, &v) ||
                 cli_int_arg(argc, argv, &i, "--img-size", 32, 8192, &v)) { if (v == LONG_MIN) return cli_fail("train: --img needs 32..8192"); o.img = (int)v; }
        else if (cli_int_arg(argc, argv, &i, "--workers", 0, 256, &v)) { if (v == LONG_MIN) return cli_fail("train: --workers needs 0..256"); o.workers = (int)v; }
        else if (cli_int_arg(argc, argv, &i, "--seed", 0, LONG_MAX, &v)) { if (v == LONG_MIN) return cli_fail("train: --seed needs a non-negative integer"); o.seed = (uint64_t)v; }
        else if (cli_int_arg(argc, argv, &i, "--patience", 0, 1000000, &v)) { if (v == LONG_MIN) return cli_fail("train: --patience needs a non-negative integer"); o.patience = (int)v; }
        else if (cli_int_arg(argc, argv, &i, "--freeze", 0, 1000, &v)) { if (v == LONG_MIN) return cli_fail("train: --freeze needs a layer count"); o.freeze = (int)v; }
        else return cli_fail("train: unknown or incomplete argument '%s' (see onnx-train train --help)", a);
    }
    if (!o.resume && (!o.model || !o.data))
        return cli_fail("train: --model and --data are required (see onnx-train train --help)");
    ot_error e;
    ot_train_result res = {0};
    /* --device 0,1: one rank per device. Without a launcher this process starts them (under mpirun) and
     * becomes that job; each rank runs on the list's entry at its rank on this machine. */
    int ndev = ot_device_list_count(o.device, &e);
    if (ndev < 0) return cli_fail("train: %s", e.msg);
    if (ndev > 0 && !ot_dist_launched()) {
        ot_dist_launch_local(ndev, argc, argv, &e); /* returns only when it failed */
        return cli_fail("train --device %s: %s", o.device, e.msg);
    }
    if (ot_dist_init(NULL, NULL, &e)) return cli_error(&e);
    if (ot_dist_world() > 1) setvbuf(stdout, NULL, _IOLBF, 0); /* rank 0's lines through the launcher's pipe as they come */
    char dev[32];
    if (ndev > 0) {
        if (ot_device_list_pick(o.device, ot_dist_local_rank(), dev, sizeof dev, &e)) {
            fprintf(stderr, "onnx-train: rank %d: %s\n", ot_dist_rank(), e.msg);
            ot_dist_abort(CLI_EXIT_BAD);
        }
        o.device = dev;
    }
    if (ot_train(&o, &res, &e)) {
        if (ot_dist_world() > 1) fprintf(stderr, "onnx-train: rank %d: %s\n", ot_dist_rank(), e.msg);
        else cli_error(&e);
        ot_dist_abort(CLI_EXIT_BAD); /* every rank stops (one rank: exits 2) */
    }
    if (res.best_ckpt[0]) { /* rank 0: the validated checkpoint exported in the form of the model given */
        char onnx[1300];
        snprintf(onnx, sizeof onnx, "%s/best.onnx", res.weights_dir);
        ot_ckpt *bc = NULL;
        ot_export_req er = {0};
        ot_status st = ot_ckpt_load(res.best_ckpt, &bc, &e);
        if (!st) st = ot_export_checkpoint(bc, &er, onnx, &e);
        ot_ckpt_free(bc);
        if (st) { cli_error(&e); ot_dist_abort(CLI_EXIT_BAD); }
        if (!o.quiet)
            printf("\nResults saved to %s\n  weights: %s/last.ckpt, %s/best.ckpt\n  exported: %s\n  metrics: %s/results.csv%s\n",
                   res.save_dir, res.weights_dir, res.weights_dir, onnx, res.save_dir,
                   o.noplots ? "" : " (results.png, PR_curve.png, confusion_matrix.png)");
    }
    ot_dist_finalize();
    return 0;
}
