/* yolo_loss.h: the device part of the YOLOv5 v7.0 loss (train/loss.c is the
 * host part). The host assigns targets to cells (build_targets) and uploads the
 * per-layer tables; these kernels do the rest over backend memory, between
 * ot_be_enter and ot_be_leave of the backend that owns it:
 *
 *   targets(A, l)     per matched target of head l: gather the prediction,
 *                     CIoU forward and backward, class BCE-with-logits
 *                     (cls_pw, label smoothing, focal), the box and class
 *                     gradients, and tobj = ciou.detach().clamp(0) (float32).
 *   objectness(A, l)  BCE-with-logits (obj_pw) over every cell of head l with
 *                     target 0, then each matched cell's term replaced by the
 *                     one with its tobj, the last target written to a cell
 *                     winning (ComputeLoss's tobj[b, a, gj, gi] = iou).
 *   items(A)          the per-head sums into lbox, lobj, lcls (gains, balance)
 *                     and loss = (lbox + lobj + lcls) * bs.
 *
 * Run targets(A, l) before objectness(A, l) for each l, items last. Every
 * pointer in ot_yolo_loss_args is backend memory; the struct itself and its
 * numbers are host values (kernel arguments). Per-element math:
 * kernels/yolo_loss_math.h. */
#ifndef OT_KERNELS_YOLO_LOSS_H
#define OT_KERNELS_YOLO_LOSS_H

#include "../core/backend.h"
#include <stdint.h>

typedef struct ot_yolo_loss_layer_args {
    const float *p;            /* head output (bs, na*(nc+5), ny, nx), channel a*(nc+5)+k */
    float *dp;                 /* d loss / d p, same shape, zeroed; NULL: no gradient */
    int ny, nx;
    int n;                     /* matched targets (rows of the tables below) */
    const int32_t *count;      /* device kernels: n in backend memory, read when they run (a CUDA graph replays them
                                * with each batch's counts); NULL: n. The CPU reads n. */
    int cap;                   /* device kernels: the rows their grids cover (>= every count they will read; 0: n).
                                * A target's block does not depend on it, so neither do the bits */
    const int32_t *b, *a, *gj, *gi, *c; /* n each: image, anchor, cell row, cell column, class */
    const float *tbox;         /* n x 4: gxy - gij, gwh (grid units) */
    const float *anc;          /* n x 2: the anchor's wh (grid units) */
    float *tobj;               /* n: written by targets, read by objectness */
    int32_t *last;             /* bs*na*ny*nx scratch: -1 everywhere on entry, left so */
    double *sums;              /* 3: sum (1 - ciou), sum class BCE, sum objectness BCE (written) */
    int32_t *link;             /* n scratch for device kernels (CUDA: the per-cell chains of targets); the CPU ignores it */
    float balance;
} ot_yolo_loss_layer_args;

/* Doubles of ot_yolo_loss_args.part: the device kernels' per-block partial sums. */
#define OT_YOLO_LOSS_PARTS 2048

typedef struct ot_yolo_loss_args {
    int nl, bs, na, nc;
    float box, obj, cls;       /* gains */
    float cls_pw, obj_pw, fl_gamma, label_smoothing;
    ot_yolo_loss_layer_args layer[OT_MAX_HEADS];
    double *items;             /* 4: lbox, lobj, lcls, loss (written by items) */
    double *part;              /* OT_YOLO_LOSS_PARTS scratch for device kernels (deterministic reductions); the CPU ignores it */
} ot_yolo_loss_args;

typedef struct ot_yolo_loss_kernels {
    const char *name;
    void (*targets)(ot_backend *be, const ot_yolo_loss_args *A, int l);
    void (*objectness)(ot_backend *be, const ot_yolo_loss_args *A, int l);
    void (*items)(ot_backend *be, const ot_yolo_loss_args *A);
} ot_yolo_loss_kernels;

/* The kernels for a device kind: the CPU table for OT_DEV_CPU and
 * OT_DEV_CPU_GUARD, NULL where this build has none (OT_DEV_CUDA for now). */
const ot_yolo_loss_kernels *ot_yolo_loss_kernels_for(ot_device_kind k);

#endif
