/* export.h: a trained training graph back to a deployable ONNX graph of the
 * form the user gave (or asked for).
 *
 * From the training graph (train/prepare.h: Conv [+ BatchNormalization] +
 * SiLU ..., outputs the raw head maps) with the final weights in its
 * initializers: for the inference and raw forms every BatchNormalization that
 * follows a Conv is folded back into it (w' = w * g / sqrt(var + eps),
 * b' = (b - mean) * g / sqrt(var + eps) + beta, as Ultralytics fuse_conv_and_bn);
 * the raw-bn form keeps them (inference mode). Then Detect's exported tail is
 * appended (import/detect_head.h): the decode for the inference form, the
 * (b, na, ny, nx, no) maps for the raw forms, for a fixed batch and image size.
 * Input and output names, metadata (names, stride, anything else the source
 * carried) and the opset come from the options. */
#ifndef OT_EXPORT_H
#define OT_EXPORT_H

#include "../core/graph.h"

typedef struct ot_export_opts {
    ot_form form;               /* inference, raw or raw-bn */
    int img_h, img_w, batch;    /* the fixed input shape (batch, 3, img_h, img_w) */
    int64_t opset;              /* 0: the training graph's */
    const char *input_name;     /* NULL: the training graph's */
    const char *out_names[OT_MAX_HEADS]; /* inference: [0]; raw: one per layer; NULL: output0 / p3.. */
    const ot_meta *meta;        /* metadata to write (names, stride replaced below) */
    int n_meta;
    char *const *names;         /* class names (nc) for the "names" metadata; NULL: keep meta's */
} ot_export_opts;

/* A new finalized graph ready for import/onnx_write.h. */
ot_status ot_export_graph(const ot_graph *train_g, const ot_yolo_head *head, const ot_export_opts *o, ot_graph **out,
                          ot_error *err);
/* Ultralytics' metadata spelling of class names: "{0: 'person', 1: 'bicycle'}". malloc'd. */
char *ot_names_repr(char *const *names, int nc);

#endif
