/* hyp.h: training hyperparameters, the keys of Ultralytics YOLOv5 hyp YAML files
 * (data/hyps/hyp.scratch-low.yaml). One struct and one reader for the whole
 * trainer: augmentation keys (read by train/augment, train/loader) and
 * loss/optimizer keys (read by the training step). Defaults are
 * hyp.scratch-low.yaml's values. */
#ifndef OT_HYP_H
#define OT_HYP_H

#include "core/status.h"

typedef struct ot_hyp {
    /* optimizer and schedule */
    double lr0, lrf, momentum, weight_decay;
    double warmup_epochs, warmup_momentum, warmup_bias_lr;
    /* loss */
    double box, cls, cls_pw, obj, obj_pw, iou_t, anchor_t, fl_gamma, label_smoothing;
    double anchors; /* anchors per output layer; 0 = keep the model's (the key is optional) */
    /* augmentation */
    double hsv_h, hsv_s, hsv_v;
    double degrees, translate, scale, shear, perspective;
    double flipud, fliplr, mosaic, mixup, copy_paste;
} ot_hyp;

/* hyp.scratch-low.yaml */
void ot_hyp_default(ot_hyp *h);
/* Read a hyp YAML (a flat mapping of numbers) over the values already in h.
 * Unknown keys and copy_paste > 0 (needs polygon masks; boxes only here) get one warning each; a
 * non-number or out-of-range value is an error naming file and line. */
ot_status ot_hyp_load(const char *path, ot_hyp *h, ot_error *err);
/* Number of known keys, and the name/value of key i (for printing). */
int ot_hyp_count(void);
const char *ot_hyp_name(int i);
double ot_hyp_get(const ot_hyp *h, int i);
void ot_hyp_set(ot_hyp *h, int i, double v);

#endif
