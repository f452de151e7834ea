/* metrics.h: validation metrics exactly as Ultralytics YOLOv5 v7.0 computes
 * them: non_max_suppression (utils/general.py), the correct matrix of val.py
 * process_batch, ap_per_class / compute_ap / smooth (utils/metrics.py), and
 * COCO-format detections for pycocotools (val.py save_one_json).
 *
 * Boxes, IoU and NMS are float32 as Ultralytics computes them in torch (the
 * IoU thresholds are torch.linspace(0.5, 0.95, 10) in float32); the curves and
 * averages of ap_per_class are double, as numpy computes them. */
#ifndef OT_METRICS_H
#define OT_METRICS_H

#include "core/status.h"
#include <stdbool.h>
#include <stdint.h>

#define OT_NIOU 10          /* IoU thresholds 0.5:0.05:0.95 */
extern const float ot_iouv[OT_NIOU];

/* One detection: pixel xyxy, confidence, class; index = the candidate row it
 * came from (NMS) or its position in the caller's list. */
typedef struct ot_det {
    float x1, y1, x2, y2, conf;
    int cls;
    int64_t index;
} ot_det;

/* ---- NMS ---- */
typedef struct ot_nms_cfg {
    double conf_thres;   /* 0.25 */
    double iou_thres;    /* 0.45 */
    int max_det;         /* 300 */
    bool multi_label;    /* false: best class only (val.py passes true) */
    bool agnostic;       /* false: per class (class offset max_wh = 7680) */
} ot_nms_cfg;
ot_nms_cfg ot_nms_cfg_default(void);

/* non_max_suppression for one image. pred: (n, 5 + nc) rows cx cy w h obj
 * cls_0..cls_{nc-1} (the inference output). Candidates obj > conf_thres,
 * conf = obj * cls > conf_thres, sorted by conf (at most 30000), per-class
 * NMS (suppressed when IoU > iou_thres), at most max_det kept, in
 * decreasing confidence. *dets is malloc'd (NULL when *ndet == 0). */
ot_status ot_nms(const float *pred, int64_t n, int nc, const ot_nms_cfg *cfg, ot_det **dets, int *ndet,
                 ot_error *err);

/* ---- matching (val.py process_batch) ---- */
/* labels: (nl, 5) class x1 y1 x2 y2 in the same space as the detections.
 * correct: (nd, OT_NIOU), 1 where the detection is a true positive at that
 * threshold. Detections should be in decreasing confidence (NMS order): at
 * each threshold a detection takes its highest-IoU label of the same class,
 * and a label claimed by several detections goes to the first of them (the
 * np.unique order of val.py). */
ot_status ot_match(const ot_det *dets, int nd, const float *labels, int nl, uint8_t *correct, ot_error *err);

/* ---- accumulated statistics (the `stats` list of val.py) ---- */
typedef struct ot_val_stats {
    int64_t n, cap;         /* detections */
    uint8_t *correct;       /* (n, OT_NIOU) */
    float *conf;            /* (n) */
    int *pcls;              /* (n) */
    int64_t nl, lcap;       /* labels */
    int *tcls;              /* (nl) */
    int64_t seen;           /* images */
} ot_val_stats;
/* One image: match its detections (NMS order) with its labels ((nl, 5) class
 * x1 y1 x2 y2) and append everything. */
ot_status ot_val_stats_add(ot_val_stats *s, const ot_det *dets, int nd, const float *labels, int nl, ot_error *err);
void ot_val_stats_free(ot_val_stats *s);

/* ---- ap_per_class and the figures val.py prints ---- */
typedef struct ot_ap_result {
    int n;              /* classes with labels (np.unique of target classes); 0 when no detection is a TP */
    int *cls;           /* (n) class ids, ascending */
    int64_t *nt;        /* (n) labels per class */
    double *p, *r, *f1; /* (n) at the max of the smoothed mean F1 */
    double *ap;         /* (n, OT_NIOU) */
    double *ap50, *ap50_95; /* (n) */
    double mp, mr, map50, map; /* what val.py prints on the `all` line */
    int64_t nt_total;   /* all labels */
    int64_t seen;       /* images */
} ot_ap_result;
/* ap_per_class over the stats, then val.py's averages (all zero, and no
 * classes, when no detection is a true positive, as val.py). */
ot_status ot_ap_per_class(const ot_val_stats *s, ot_ap_result *res, ot_error *err);
void ot_ap_result_free(ot_ap_result *res);

/* compute_ap: 101-point interpolated AP of one recall/precision curve (n
 * points); exposed for tests. */
double ot_compute_ap(const double *recall, const double *precision, int64_t n, ot_error *err);

/* numpy's interp(x, xp, fp, left, right) for one x (xp non-decreasing) and
 * linspace(0, 1, num)[k], as ap_per_class uses them (shared with train/plots.c). */
double ot_np_interp(double x, const double *xp, const double *fp, int64_t n, double left, double right);
double ot_np_linspace01(int64_t k, int64_t num);

/* ---- COCO detections (val.py save_one_json) ---- */
/* image_id: the image's stem; written as a number when it is all digits.
 * Class mapped by coco80_to_coco91_class when coco91, else written as is;
 * bbox [x, y, w, h] in pixels rounded to 3 decimals, score to 5. */
typedef struct ot_coco_det {
    const char *image_id;
    ot_det det;
} ot_coco_det;
/* COCO category id of a 0-based class of the 80 (1..90), -1 outside 0..79. */
int ot_coco80_to_91(int cls);
ot_status ot_coco_json_write(const char *path, const ot_coco_det *dets, int64_t n, bool coco91, ot_error *err);

#endif
