/* augment.h: YOLOv5 geometry and colour augmentation on 8-bit BGR HWC images,
 * with the semantics of Ultralytics YOLOv5 v7.0 utils/augmentations.py and
 * utils/dataloaders.py (load_image, letterbox, load_mosaic, random_perspective,
 * box_candidates, augment_hsv, mixup, flips). The random numbers are our own
 * (ot_rng, seeded per sample); the geometry and the box rules are theirs.
 * Resampling is bilinear with pixel centres at integers, as cv2.warpAffine and
 * cv2.resize(INTER_LINEAR) do; fill colour 114. */
#ifndef OT_AUGMENT_H
#define OT_AUGMENT_H

#include "train/hyp.h"
#include "train/image_io.h"
#include <stdbool.h>

/* ---- random numbers: xoshiro256**, seeded by splitmix64 of (seed, epoch, index) ---- */
typedef struct ot_rng { uint64_t s[4]; } ot_rng;
void ot_rng_seed(ot_rng *r, uint64_t seed, uint64_t epoch, uint64_t index);
uint64_t ot_rng_next(ot_rng *r);
double ot_rng_uniform(ot_rng *r);                 /* [0, 1) */
double ot_rng_range(ot_rng *r, double a, double b); /* [a, b) */
int64_t ot_rng_below(ot_rng *r, int64_t n);       /* [0, n) */
double ot_rng_beta(ot_rng *r, double a, double b);

/* A label in pixels: class and corners. */
typedef struct ot_box { double cls, x1, y1, x2, y2; } ot_box;

/* ---- resizing ---- */
/* cv2.resize INTER_LINEAR (half-pixel centres, edge replicate). */
void ot_resize_linear(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);
/* cv2.resize INTER_AREA for shrinking (pixel-area average). */
void ot_resize_area(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);
/* load_image: the long side to img_size keeping aspect: (ceil(w0*r), ceil(h0*r)), r = img_size/max(w0,h0). */
void ot_load_size(int w0, int h0, int img_size, int *w, int *h);

/* ---- letterbox (auto=False, as the training/validation loader calls it) ---- */
typedef struct ot_lbox {
    int in_w, in_h;       /* image given */
    int out_w, out_h;     /* new_shape */
    int new_w, new_h;     /* resized, unpadded */
    int top, left;        /* integer padding of the pixels */
    double ratio;         /* r */
    double dw, dh;        /* padding per side as a float (the labels' offset) */
} ot_lbox;
void ot_letterbox_geom(int in_w, int in_h, int out_w, int out_h, bool scaleup, ot_lbox *g);
/* dst: (out_h, out_w, 3) */
void ot_letterbox(const uint8_t *src, const ot_lbox *g, uint8_t *dst);

/* ---- random_perspective ---- */
typedef struct ot_persp {
    double M[9];          /* row-major 3x3, input pixels -> output pixels */
    double s;             /* the scale drawn (box_candidates compares areas with it) */
    bool perspective;     /* M has a projective row */
    bool warp;            /* the image changes (border or M != I) */
    int out_w, out_h;
} ot_persp;
/* Draw M as Ultralytics: M = T @ S @ R @ P @ C for an input of in_w x in_h and
 * an output of (in + 2*border) on each axis. */
void ot_perspective_draw(ot_rng *r, const ot_hyp *h, int in_w, int in_h, int border, ot_persp *p);
/* Warp src into dst (out_w x out_h): dst(x,y) = src(M^-1 (x,y)), bilinear, 114 outside. */
void ot_warp(const uint8_t *src, int sw, int sh, const ot_persp *p, uint8_t *dst);
/* ot_warp of an image given row by row, for the axis-aligned case (no
 * rotation, shear or perspective: the default hyp); false (nothing done)
 * otherwise. rowfn(ctx, y, buf) returns source row y (0 <= y < sh): a pointer
 * to sw*3 bytes, valid until the next call; buf (sw*3 + 16 bytes) is its to fill. */
typedef const uint8_t *(*ot_row_fn)(void *ctx, int y, uint8_t *buf);
bool ot_warp_axis_rows(ot_row_fn rowfn, void *ctx, int sw, int sh, const ot_persp *p, uint8_t *dst);
/* The source rows [*y0, *y1) ot_warp_axis_rows will ask for (false: not the axis-aligned case). */
bool ot_warp_axis_src_rows(const ot_persp *p, int sh, int *y0, int *y1);
/* Transform boxes (corners through M, min/max, clip to the output) and keep
 * box_candidates(wh_thr=2, ar_thr=100, area_thr=0.1); returns the count kept. */
int ot_warp_boxes(ot_box *b, int n, const ot_persp *p);
/* box1 before (already scaled by s), box2 after. */
bool ot_box_candidate(const ot_box *b1, const ot_box *b2, double wh_thr, double ar_thr, double area_thr);

/* ---- mosaic ---- */
typedef struct ot_mosaic_tile { int x1a, y1a, x2a, y2a, x1b, y1b, x2b, y2b; } ot_mosaic_tile;
/* Placement of tile i (0..3) of size w x h around centre (xc, yc) in a 2s x 2s canvas. */
ot_mosaic_tile ot_mosaic_place(int i, int xc, int yc, int w, int h, int s);

/* ---- colour and flips ---- */
/* augment_hsv: gains (1 + u*g) applied through cv2's 8-bit HSV; in place. */
void ot_augment_hsv(uint8_t *im, int64_t npx, double rh, double rs, double rv);
/* cv2.cvtColor 8-bit BGR<->HSV (H in 0..179), one pixel. */
void ot_bgr2hsv(const uint8_t bgr[3], uint8_t hsv[3]);
void ot_hsv2bgr(const uint8_t hsv[3], uint8_t bgr[3]);
/* (im * r + im2 * (1 - r)) truncated to uint8, in place into im. */
void ot_mixup(uint8_t *im, const uint8_t *im2, int64_t n, double r);

/* HWC BGR uint8 -> CHW RGB float32 / 255, optionally flipped. */
void ot_hwc_to_chw(const uint8_t *src, int w, int h, bool flip_lr, bool flip_ud, float *dst);
/* ot_augment_hsv(gains[0..2]) then ot_hwc_to_chw in one pass, src unchanged;
 * the same floats as the two calls (gains NULL: no HSV). */
void ot_hsv_to_chw(const uint8_t *src, int w, int h, const double *gains, bool flip_lr, bool flip_ud, float *dst);

/* xyxy pixels -> normalised xywh with Ultralytics' clip (0..w-eps, 0..h-eps), eps 1e-3. */
void ot_boxes_to_xywhn(const ot_box *b, int n, int w, int h, float *rows /* (n, 5) */);

#endif
