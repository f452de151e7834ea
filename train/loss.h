/* loss.h: the YOLOv5 v7.0 loss (utils/loss.py ComputeLoss), forward and backward.
 * Two parts: the host assigns targets to cells (build_targets, train/loss.c)
 * and the device kernels of the loss's backend compute the losses and the
 * gradients over backend memory (kernels/yolo_loss.h). */
#ifndef OT_LOSS_H
#define OT_LOSS_H

#include "../core/backend.h"
#include "../core/graph.h"
#include "hyp.h"
#include "../kernels/yolo_loss.h" /* ot_yolo_loss_args */

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

/* The loss on one backend, with its scratch there and on the host (grows with
 * the number of targets and the grid size, never per call otherwise).
 * ot_yolo_loss_create: on ot_backend_cpu(). NULL: out of memory. */
typedef struct ot_yolo_loss ot_yolo_loss;
ot_yolo_loss *ot_yolo_loss_create(void);
ot_yolo_loss *ot_yolo_loss_create_on(ot_backend *be);
void ot_yolo_loss_destroy(ot_yolo_loss *L);

/* p[l]: head l's convolution output (bs, na*(nc+5), ny, nx), channel a*(nc+5)+k;
 * dp[l] (dp may be NULL: no gradient): set to d loss / d p[l]. p[l] and dp[l]
 * are memory of L's backend, read and written only by its kernels. targets
 * (host memory): nt rows (image, class, cx, cy, w, h), box normalised to the
 * image. items (host memory): lbox, lobj, lcls (each times its gain) and
 * loss = (lbox + lobj + lcls) * bs, as ComputeLoss returns; items NULL: they
 * stay on the device (no host synchronisation: a training step reads them with
 * ot_yolo_loss_items after the optimizer step is queued). Fails
 * (OT_ERR_UNSUPPORTED) on a device with no loss kernels in this build. */
ot_status ot_yolo_loss_compute(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const float *const *p, const ot_shape *shapes,
                               const float *targets, int nt, float *const *dp, ot_loss_items *items, ot_error *err);
/* The items of L's last ot_yolo_loss_compute, downloaded (waits for them). */
void ot_yolo_loss_items(ot_yolo_loss *L, ot_loss_items *items);
/* The host part of ot_yolo_loss_compute alone: checks, build_targets, the
 * tables uploaded to L's backend, every dp zeroed, and the device kernels'
 * argument struct (*A, kernels/yolo_loss.h) filled; no kernel runs. For
 * callers that launch the device kernels themselves (`bench kernels` times
 * the CUDA loss kernels on tables built exactly as training builds them). */
ot_status ot_yolo_loss_prepare(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const float *const *p, const ot_shape *shapes,
                               const float *targets, int nt, float *const *dp, ot_yolo_loss_args *A, ot_error *err);
/* The host part of ot_yolo_loss_prepare alone (checks, build_targets into the page-locked host tables), for a
 * step whose device part (the upload of the tables, the kernels) replays from a CUDA graph captured from an
 * ot_yolo_loss_compute of the same shapes. The graph is stale when ot_yolo_loss_generation changed since its
 * capture: the tables moved (they grow with the number of targets, by twice at a time). */
ot_status ot_yolo_loss_stage(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const ot_shape *shapes, const float *targets, int nt,
                             ot_error *err);
unsigned ot_yolo_loss_generation(const ot_yolo_loss *L);
/* The device half of ot_yolo_loss_compute after an ot_yolo_loss_stage of the same shapes: the tables' upload, the
 * dp zeroed, the kernels (no host work that depends on the batch: what a graph captures). */
ot_status ot_yolo_loss_run(ot_yolo_loss *L, const ot_yolo_loss_cfg *cfg, const float *const *p, const ot_shape *shapes,
                           float *const *dp, ot_error *err);

#endif
