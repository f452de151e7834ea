/* export_ckpt.h: a checkpoint's EMA weights written as a deployable ONNX file
 * (onnx-train export, and weights/best.onnx at the end of training). */
#ifndef OT_EXPORT_CKPT_H
#define OT_EXPORT_CKPT_H

#include "../train/checkpoint.h"

typedef struct ot_export_req {
    ot_form form;       /* OT_FORM_UNKNOWN: the source model's form */
    int img;            /* 0: the source model's input size (or the training size) */
    int64_t opset;      /* 0: the source model's */
} ot_export_req;

/* Loads nothing but c; writes out_path atomically. Prints nothing. */
ot_status ot_export_checkpoint(const ot_ckpt *c, const ot_export_req *r, const char *out_path, ot_error *err);

#endif
