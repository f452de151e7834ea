/* detector.h: a training graph run in eval mode (BatchNormalization with its
 * running statistics) on batches of any size, and the Detect decode of
 * Ultralytics YOLOv5 v7.0 (models/yolo.py Detect.forward in eval mode) done
 * in C, so validation, prediction and the training loop's per-epoch
 * validation share one path whatever the batch shape (rect batches differ per
 * batch). The variables (weights, running statistics) can live outside the
 * graph: the trainer points them at the EMA copy. */
#ifndef OT_DETECTOR_H
#define OT_DETECTOR_H

#include "../core/plan.h"

#define OT_DETECTOR_PLANS 2 /* plans kept, by input shape (rect batches come sorted by shape) */

typedef struct ot_detector {
    ot_backend *be;             /* runs the plans and the decode; owns their memory */
    const ot_graph *g;          /* training graph: outputs are the head convs' maps */
    ot_yolo_head head;          /* strides and anchors (pixels) used by the decode */
    unsigned char *variable;    /* per value, or NULL: the graph's own initializers */
    float **var_data;           /* per value: storage of each variable */
    ot_plan *plan[OT_DETECTOR_PLANS];
    long plan_use[OT_DETECTOR_PLANS], uses;
    float *pred;                /* decoded (n, rows, no), host copy */
    float *dpred;               /* the same in backend memory */
    size_t pred_cap;
    int64_t rows;               /* rows per image of the last run */
    const ot_plan *last;        /* plan of the last run (raw maps for the val loss) */
} ot_detector;

/* variable: per value of g, 1 for the values whose data the caller supplies with
 * ot_detector_set_var (NULL: every initializer is the graph's own data). */
ot_status ot_detector_create(const ot_graph *g, const ot_yolo_head *head, const unsigned char *variable,
                             ot_detector **out, ot_error *err);
/* The same on a backend (NULL: the CPU); variables then point into its memory. */
ot_status ot_detector_create_on(ot_backend *be, const ot_graph *g, const ot_yolo_head *head, const unsigned char *variable,
                                ot_detector **out, ot_error *err);
void ot_detector_destroy(ot_detector *d);
void ot_detector_set_var(ot_detector *d, int vid, float *data);
/* Forward of images (n, 3, h, w) and the decode: *pred (n, rows, 5 + nc) rows
 * cx cy w h obj cls... in input pixels, layer by layer, anchor, y, x (as
 * Detect's torch.cat(z, 1)); valid until the next run. */
ot_status ot_detector_run(ot_detector *d, const float *images, int n, int h, int w, const float **pred,
                          int64_t *rows, ot_error *err);
/* The raw head maps of the last run (for the validation loss): backend memory. */
void ot_detector_maps(const ot_detector *d, const float **maps, ot_shape *shapes);

/* A model file for inference: an ONNX export of any form (its training graph
 * is made without inserting BatchNormalization) or a checkpoint (its EMA
 * weights). *names: class names from the checkpoint, or the ONNX "names"
 * metadata (Ultralytics' dict repr), else "class0".. (nc of them, malloc'd;
 * free with ot_names_free). */
ot_status ot_open_inference_model(const char *path, ot_graph **g, char ***names, ot_error *err);
void ot_names_free(char **names, int n);

#endif
