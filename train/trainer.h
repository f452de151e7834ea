/* trainer.h: `onnx-train train`, Ultralytics YOLOv5 v7.0 train.py on the CPU.
 *
 * The model (an ONNX export of any form, a checkpoint, or a built-in size made
 * by train/builtin.h) becomes a training graph (train/prepare.h); AutoAnchor
 * checks the anchors; each epoch runs the loader (mosaic and the rest of the
 * augmentation), forward, loss and backward with gradient accumulation to the
 * nominal batch 64, clip_grad_norm(10), the optimizer step and the EMA update
 * with train.py's warmup and LR schedule; then validation of the EMA weights
 * (val.py), results.csv, weights/last.ckpt and best.ckpt (atomic). At the end:
 * the best checkpoint validated with plots and exported as weights/best.onnx
 * in the form of the model given. --resume continues exactly (same losses as
 * an uninterrupted run). */
#ifndef OT_TRAINER_H
#define OT_TRAINER_H

#include "hyp.h"
#include "optim.h"

typedef struct ot_train_opts {
    const char *model;        /* path.onnx, path.ckpt or yolov5n/s/m/l/x */
    const char *data;         /* dataset YAML */
    const char *hyp_path;     /* NULL: hyp.scratch-low */
    int epochs, batch, img, workers;
    uint64_t seed;
    int patience, freeze;
    const char *project, *name;
    bool exist_ok;
    const char *resume;       /* NULL: no; "": the latest last.ckpt under project; else a path */
    bool cache_ram, noval, nosave, cos_lr, rect, single_cls, noautoanchor, reset_head, no_bn, noplots;
    bool sync_bn;             /* data-parallel ranks: BatchNorm statistics over every rank */
    const char *amp;          /* --amp "fp16" | "bf16" | "off"; NULL: fp16 on a GPU, off on the CPU devices and the
                               * executor's CUDA device (train/amp.h) */
    ot_opt_kind optimizer;
    double label_smoothing;   /* < 0: the hyp's */
    const char *device;       /* --device: "" (the first GPU when there is one, else the CPU), "cpu", "cpu-guard", "0" */
    bool quiet;               /* no progress output (tests) */
} ot_train_opts;

void ot_train_opts_default(ot_train_opts *o);

typedef struct ot_train_result {
    char save_dir[1024];
    int epochs_done;
    double best_fitness, map50, map;  /* of the best checkpoint's final validation */
    char best_ckpt[1300];     /* rank 0: the checkpoint validated at the end (best, else last); "" otherwise */
    char weights_dir[1100];
} ot_train_result;

ot_status ot_train(const ot_train_opts *o, ot_train_result *res, ot_error *err);

#endif
