/* step.h: one training step's forward, loss and backward on a prepared graph. */
#ifndef OT_STEP_H
#define OT_STEP_H

#include "../core/runtime/autograd.h"
#include "loss.h"
#include "prepare.h"

typedef struct ot_step {
    ot_graph *graph;          /* the training graph (train/prepare.h) */
    ot_autograd *ag;
    ot_yolo_loss *loss;
    ot_yolo_loss_cfg cfg;
    ot_shape in_shape;        /* (batch, 3, H, W) */
} ot_step;

/* imgsz: the size the obj gain uses (train.py's --img). */
ot_status ot_step_create(const ot_model *m, const ot_prepare_opts *opts, const ot_hyp *hyp, ot_shape in_shape, int imgsz,
                         ot_step **out, ot_error *err);
/* The same on a backend (NULL: the CPU). */
ot_status ot_step_create_on(ot_backend *be, const ot_model *m, const ot_prepare_opts *opts, const ot_hyp *hyp, ot_shape in_shape,
                            int imgsz, ot_step **out, ot_error *err);
void ot_step_destroy(ot_step *s);
/* Forward (BN in training mode), the YOLOv5 loss and, when backward, the
 * backward: parameter gradients accumulate. images and targets: host memory
 * (the images are uploaded into the plan's input slot). */
ot_status ot_step_run(ot_step *s, const float *images, const float *targets, int nt, bool backward, ot_loss_items *items,
                      ot_error *err);

#endif
