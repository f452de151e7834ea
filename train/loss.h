/* loss.h: the YOLOv5 v7.0 loss (utils/loss.py ComputeLoss), forward and backward. */
#ifndef OT_LOSS_H
#define OT_LOSS_H

#include "../core/graph.h"
#include "hyp.h"

typedef struct ot_yolo_loss_cfg {
    int nl, na, nc;
    float anchors[OT_MAX_HEADS][16][2]; /* grid units (pixels / stride), as Detect.anchors */
    float box, obj, cls;                /* gains, scaled as train.py does */
    float cls_pw, obj_pw, anchor_t, fl_gamma, label_smoothing;
    float balance[OT_MAX_HEADS];
} ot_yolo_loss_cfg;

/* Gains as train.py sets them: box *= 3/nl, cls *= nc/80 * 3/nl,
 * obj *= (imgsz/640)^2 * 3/nl; anchors from the head in pixels / stride. */
void ot_yolo_loss_cfg_init(ot_yolo_loss_cfg *cfg, const ot_yolo_head *head, const ot_hyp *hyp, int imgsz);

typedef struct ot_loss_items { double lbox, lobj, lcls, loss; } ot_loss_items;

/* Reusable scratch (grows with the number of targets, never per call otherwise). */
typedef struct ot_yolo_loss ot_yolo_loss;
ot_yolo_loss *ot_yolo_loss_create(void);
void ot_yolo_loss_destroy(ot_yolo_loss *L);

/* p[l]: head l's convolution output (bs, na*(nc+5), ny, nx), channel a*(nc+5)+k;
 * targets: nt rows (image, class, cx, cy, w, h), box normalised to the image;
 * dp[l] (may be NULL): set to d loss / d p[l]. items: lbox, lobj, lcls (each
 * times its gain) and loss = (lbox + lobj + lcls) * bs, as ComputeLoss returns. */
ot_status ot_yolo_loss_compute(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const float *const *p, const ot_shape *shapes,
                               const float *targets, int nt, float *const *dp, ot_loss_items *items, ot_error *err);

#endif
