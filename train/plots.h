/* plots.h: the pictures Ultralytics YOLOv5 v7.0 saves with a training run,
 * drawn with cairo: the confusion matrix (utils/metrics.py ConfusionMatrix,
 * its counts exactly), results.png (utils/plots.py plot_results), and the
 * precision-recall and metric-confidence curves of ap_per_class
 * (PR_curve.png, F1_curve.png, P_curve.png, R_curve.png).
 *
 * Every picture is a PNG on a white background with axes, ticks, tick labels,
 * grid and titles, written to a temporary name next to the target and renamed
 * into place. Text uses cairo's font selection (DejaVu Sans through fontconfig). */
#ifndef OT_PLOTS_H
#define OT_PLOTS_H

#include "core/status.h"
#include "train/metrics.h"
#include <stdint.h>

/* picture sizes in pixels */
#define OT_PLOT_RESULTS_W 1600   /* results.png: 2 x 5 panels (12 x 6 in Ultralytics) */
#define OT_PLOT_RESULTS_H 800
#define OT_PLOT_CURVE_W 1200     /* PR / F1 / P / R curves (9 x 6 in Ultralytics) */
#define OT_PLOT_CURVE_H 800
#define OT_PLOT_CONFUSION_W 1200 /* confusion matrix (12 x 9 in Ultralytics) */
#define OT_PLOT_CONFUSION_H 900

/* ---- confusion matrix ---- */
/* ConfusionMatrix(nc, conf=0.25, iou_thres=0.45): m is (nc + 1) x (nc + 1),
 * row-major, m[predicted * (nc + 1) + true], background the last row/column. */
typedef struct ot_confusion {
    int nc;
    double *m;
} ot_confusion;
ot_status ot_confusion_init(ot_confusion *c, int nc, ot_error *err);
void ot_confusion_free(ot_confusion *c);
/* process_batch for one image. dets: (n, 6) x1 y1 x2 y2 conf cls; labels: (m, 5)
 * cls x1 y1 x2 y2, the same pixel space. Detections with conf <= 0.25 are
 * dropped; a label matched (IoU > 0.45, float32 box_iou with eps 1e-7, each
 * detection to its best label, then each label to its best detection) counts
 * at (detection class, label class), an unmatched label at (background, class);
 * unmatched detections count at (class, background) only when the image has
 * at least one match, as Ultralytics. Classes outside 0..nc-1 are ignored. */
void ot_confusion_process_batch(ot_confusion *c, const float *dets, int n, const float *labels, int m);
/* tp_fp(): per class (nc) the diagonal and the row sum minus it; either may be NULL. */
void ot_confusion_tp_fp(const ot_confusion *c, double *tp, double *fp);
/* confusion_matrix.png: columns normalised (sum + 1e-9), cells under 0.005
 * left blank, the 'Blues' heatmap with a colour bar, values annotated when
 * nc < 30, class names + "background" on the axes when names is given
 * (nc of them) and nc < 99 (numbers otherwise), "True" across, "Predicted" down. */
ot_status ot_plot_confusion(const ot_confusion *c, char *const *names, const char *png_path, ot_error *err);

/* ---- results.png ---- */
/* From results.csv as Ultralytics' loggers write it: a header of column names
 * padded with spaces (epoch, train/box_loss, train/obj_loss, train/cls_loss,
 * metrics/precision, metrics/recall, metrics/mAP_0.5, metrics/mAP_0.5:0.95,
 * val/box_loss, val/obj_loss, val/cls_loss, x/lr0, x/lr1, x/lr2, ...) and one
 * row per epoch. 2 x 5 panels: columns 1, 2, 3, 4, 5 over 8, 9, 10, 6, 7
 * against column 0, titled with the column names, each series with dot
 * markers and its gaussian_filter1d(sigma=3) smoothing dotted. A malformed
 * file (fewer than 11 columns, a row with another count of fields, a field
 * that is not a number, no rows) is an error naming the file and line. */
ot_status ot_plot_results(const char *csv_path, const char *png_path, ot_error *err);

/* ---- precision-recall and metric-confidence curves ---- */
#define OT_PLOT_NPX 1000 /* px = np.linspace(0, 1, 1000) */
/* The curve data of ap_per_class (ot_ap_result holds only the values at the
 * chosen confidence): per class with labels (np.unique of the target classes,
 * ascending, as ot_ap_result.cls), at IoU 0.5. */
typedef struct ot_pr_curves {
    int n;              /* classes with labels */
    int *cls;           /* (n) class ids */
    int64_t *nt;        /* (n) labels */
    int64_t *npred;     /* (n) detections of that class; py is all zero and left out of the plot when 0 */
    double *ap50;       /* (n) AP at IoU 0.5 (0 without detections) */
    double *px;         /* (OT_PLOT_NPX) linspace(0, 1, 1000) */
    double *py;         /* (n, OT_PLOT_NPX) precision at recall px: np.interp(px, mrec, mpre) of compute_ap */
    double *p, *r, *f1; /* (n, OT_PLOT_NPX) precision, recall, F1 at confidence px */
} ot_pr_curves;
/* As ap_per_class computes them (any stats, also without a true positive). */
ot_status ot_pr_curves_compute(const ot_val_stats *s, ot_pr_curves *c, ot_error *err);
void ot_pr_curves_free(ot_pr_curves *c);
/* PR_curve.png: plot_pr_curve: one line per class with detections, labelled
 * "<name> 0.xxx" (AP50) when 0 < classes < 21 (grey, unlabelled otherwise),
 * their mean in bold blue "all classes 0.xxx mAP@0.5" (the mean AP50 over all
 * classes with labels). names: class names by class id (NULL: the ids). */
ot_status ot_plot_pr_curve(const ot_pr_curves *c, char *const *names, const char *png_path, ot_error *err);
/* plot_mc_curve: F1_curve.png, P_curve.png, R_curve.png: one line per class
 * against confidence, the class mean smoothed (box filter, 5 %) in bold blue
 * "all classes 0.xx at 0.xxx" (its maximum and where). */
typedef enum ot_curve_kind { OT_CURVE_F1 = 0, OT_CURVE_P, OT_CURVE_R } ot_curve_kind;
ot_status ot_plot_mc_curve(const ot_pr_curves *c, char *const *names, ot_curve_kind kind, const char *png_path,
                           ot_error *err);

#endif
