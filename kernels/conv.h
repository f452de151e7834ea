/* conv.h: 2-D convolution geometry and the typed CPU kernels (kernels/conv.c). */
#ifndef OT_CONV_H
#define OT_CONV_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ot_conv_params {
    int64_t n, c, h, w;          /* input  (N, C, H, W) */
    int64_t m, oh, ow;           /* output (N, M, OH, OW) */
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pt, pl, pb, pr;      /* pads: top, left, bottom, right */
    int64_t group;
    int has_bias;
    struct ot_conv_dnn *dnn;     /* oneDNN primitives built by prepare (kernels/conv.c), NULL: im2col + GEMM */
    struct ot_conv_cudnn *cudnn; /* cuDNN state built by the CUDA device's prepare (kernels/cuda/conv_gpu.c), NULL elsewhere */
} ot_conv_params;

/* Workspace floats the forward needs (im2col of one image and group). */
int64_t ot_conv_ws_floats(const ot_conv_params *p);
/* y: (N, M, OH, OW); x: (N, C, H, W); w: (M, C/group, kh, kw); b: (M) or NULL; ws: workspace. */
void ot_conv2d_forward(float *y, const float *x, const float *w, const float *b, float *ws, const ot_conv_params *p);
/* Backward, accumulating: dx like x, dw like w, db (M); any may be NULL. dy like y.
 * dx_set: dx is written, not added to. */
void ot_conv2d_backward(float *dx, bool dx_set, float *dw, float *db, const float *dy, const float *x, const float *w,
                       float *ws, const ot_conv_params *p);
/* col: (C/group*kh*kw, OH*OW) for one image's group slice x: (C/group, H, W). */
void ot_im2col(float *col, const float *x, int64_t c, const ot_conv_params *p);

#endif
