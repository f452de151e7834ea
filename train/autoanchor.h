/* autoanchor.h: AutoAnchor as Ultralytics YOLOv5 v7.0 utils/autoanchor.py does
 * it before training: check_anchors (the fit of the model's anchors to the
 * dataset's label sizes), kmean_anchors (k-means on whitened label sizes with
 * scipy.cluster.vq.kmeans semantics, then 1000 generations of a genetic
 * evolution) and check_anchor_order.
 *
 * The arithmetic of the ratio metric is Ultralytics' (float32, as torch); the
 * random numbers are our own (ot_rng: the per-image label scale, the k-means
 * initial points, the mutations), so results are deterministic for a seed but
 * are not Ultralytics' random draws. */
#ifndef OT_AUTOANCHOR_H
#define OT_AUTOANCHOR_H

#include "train/dataset.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct ot_anchor_fit {
    double bpr; /* best possible recall: fraction of boxes whose best anchor ratio metric > 1/thr */
    double aat; /* anchors above threshold: mean count of anchors with ratio metric > 1/thr per box */
} ot_anchor_fit;

/* check_anchors' metric(). wh (n, 2) label sizes in pixels, anchors (k, 2) in
 * pixels, thr = hyp anchor_t (4.0): r = wh / anchor, x = min(r, 1/r) taken
 * over w and h, best = max of x over the anchors (float32, as torch);
 * aat = mean count of x > 1/thr per box, bpr = mean(best > 1/thr), as exact
 * counts / n. n == 0 gives zeros. */
ot_anchor_fit ot_anchor_metric(const float *wh, int64_t n, const float *anchors, int k, double thr);

/* The label sizes check_anchors uses: the image shapes scaled so the long
 * side is img (img * shape / max side), times a per-image uniform(0.9, 1.1)
 * scale (every image draws one, in dataset order, from ot_rng seeded with
 * seed), label w, h times that. *wh is (n, 2) float32, malloc'd; NULL when
 * the dataset has no boxes (*n = 0). */
ot_status ot_anchor_label_wh(const ot_dataset *d, int img, uint64_t seed, float **wh, int64_t *n, ot_error *err);

/* kmean_anchors: n anchors (n, 2) in pixels, sorted by area, for the labels
 * of d at img (no random scale: the long side is img). Labels under 3 pixels
 * are counted (a warning line), sizes with neither side >= 2 pixels are left
 * out; k-means on sizes whitened by their standard deviation (30 restarts
 * from distinct random points, each Lloyd iteration until the mean distance
 * improves by <= 1e-5, the restart with the lowest mean distance kept; empty
 * clusters dropped as scipy does; too few points, a zero deviation or fewer
 * clusters than asked fall back to random anchors, with Ultralytics' warning),
 * then gen generations of mutations (probability 0.9, sigma 0.1, factors
 * clipped to 0.3..3, anchors to >= 2 px) kept when the fitness
 * mean(best * (best > 1/thr)) improves. Lines go to log (may be NULL). */
ot_status ot_kmean_anchors(const ot_dataset *d, int n, int img, double thr, int gen, uint64_t seed, FILE *log,
                           float *anchors, ot_error *err);

/* check_anchors: anchors (nl * na, 2) in pixels, the layers in increasing
 * stride order (P3/8, P4/16, P5/32, as Ultralytics' Detect). Prints
 * Ultralytics' lines to log (may be NULL):
 *   "AutoAnchor: 4.45 anchors/target, 0.995 Best Possible Recall (BPR). Current anchors are a good fit to dataset ✅"
 * or "... Anchors are a poor fit to dataset ⚠️, attempting to improve..." then
 * kmean_anchors (gen 1000) and "AutoAnchor: Done ✅ ..." when its anchors give a
 * better BPR (they replace anchors in place, layers reversed when their mean
 * areas run against the strides, as check_anchor_order; *changed = true), or
 * "AutoAnchor: Done ⚠️ (original anchors better than new anchors, ...)".
 * BPR > 0.98 is a good fit. before/after (may be NULL): the fit of the anchors
 * given and of those returned, on the same randomly scaled label sizes. A
 * dataset without boxes leaves the anchors as they are (one line). */
ot_status ot_autoanchor(const ot_dataset *d, int img, float *anchors, int nl, int na, double thr, uint64_t seed,
                        FILE *log, bool *changed, ot_anchor_fit *before, ot_anchor_fit *after, ot_error *err);

#endif
