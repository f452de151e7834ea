/* validate.h: Ultralytics YOLOv5 v7.0 val.py run() over a data loader: the
 * eval-mode forward (train/detector.h), the validation loss on the raw maps
 * (ComputeLoss items, as train.py logs val/box_loss...), NMS (conf 0.001,
 * IoU 0.6, multi-label, max_det 300), boxes and labels mapped back to the
 * original images (scale_boxes with each image's letterbox gain and pad),
 * process_batch matching and ap_per_class (train/metrics.h). */
#ifndef OT_VALIDATE_H
#define OT_VALIDATE_H

#include "detector.h"
#include "loader.h"
#include "loss.h"
#include "metrics.h"

typedef struct ot_val_cfg {
    ot_nms_cfg nms;                  /* val.py: conf 0.001, iou 0.6, multi_label, max_det 300 */
    const ot_yolo_loss_cfg *loss_cfg; /* NULL: no validation loss */
    bool progress;                   /* a progress line on stderr when it is a terminal */
    const char *what;                /* label for the progress line */
    /* Called for every image with its detections and labels in original pixels
     * (labels (nl, 5) class x1 y1 x2 y2), e.g. for COCO JSON, confusion matrix,
     * pictures. A non-OK return stops the validation. */
    ot_status (*on_image)(void *ctx, const ot_batch *b, int i, const ot_det *dets, int nd, const float *labels, int nl,
                          ot_error *err);
    void *ctx;
} ot_val_cfg;

void ot_val_cfg_default(ot_val_cfg *c);

typedef struct ot_val_out {
    ot_ap_result ap;     /* P, R, mAP50, mAP50-95, per class */
    ot_val_stats stats;  /* kept for curves (PR_curve.png) */
    double loss[3];      /* box, obj, cls: mean over batches (0 without loss_cfg) */
    int64_t images, instances;
    double ms_per_image; /* inference + NMS */
} ot_val_out;

/* Runs one pass over the loader's epoch 0 (build it with ot_loader_cfg_val). */
ot_status ot_validate(ot_detector *det, ot_loader *loader, const ot_val_cfg *c, ot_val_out *out, ot_error *err);
void ot_val_out_free(ot_val_out *o);

/* val.py's table: the `all` line and, when nc > 1, one line per class with labels. */
void ot_val_print_table(FILE *f, const ot_ap_result *r, char *const *names, int nc);
/* The figures as JSON (keys precision, recall, map50, map50_95, images,
 * instances, classes[]); the caller owns the object. */
struct json_t;
struct json_t *ot_val_json(const ot_ap_result *r, char *const *names);

/* scale_boxes of Ultralytics: from the letterboxed batch image back to the
 * original image (subtract pad, divide by the load gain, clip to it). */
void ot_scale_box_to_original(const ot_sample_shape *s, float *x1, float *y1, float *x2, float *y2);

#endif
