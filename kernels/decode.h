/* decode.h: Ultralytics YOLOv5 v7.0's Detect decode in eval mode
 * (models/yolo.py Detect.forward): head maps (n, na*no, ny, nx) -> rows
 * cx cy w h obj cls... in input pixels, layer by layer, anchor, y, x (as
 * torch.cat(z, 1)). maps and pred are backend memory; the caller brackets the
 * call with ot_be_enter/ot_be_leave. */
#ifndef OT_DECODE_H
#define OT_DECODE_H

#include "../core/backend.h"
#include "../core/graph.h"
#include <math.h>

typedef struct ot_decode_args {
    int n, nl, na, no;                        /* images, layers, anchors per layer, 5 + nc */
    int64_t ny[OT_MAX_HEADS], nx[OT_MAX_HEADS];
    float stride[OT_MAX_HEADS];
    float anchors[OT_MAX_HEADS][16][2];       /* pixels */
    int64_t total;                            /* rows per image: sum of na * ny * nx */
} ot_decode_args;

/* Under nvcc the cell arithmetic is also device code (kernels/cuda/decode.cu). */
#if defined(__CUDACC__)
#define OT_DECODE_FN static inline __host__ __device__
#else
#define OT_DECODE_FN static inline
#endif

/* One cell of one anchor: the arithmetic every device shares (plain C, so a
 * CUDA kernel can include it). src: the cell's first channel, hw apart. */
OT_DECODE_FN void ot_decode_cell(float *r, const float *src, int64_t hw, int no, int64_t x, int64_t y, float stride,
                                  float aw, float ah) {
    for (int k = 0; k < no; k++) r[k] = 1.0f / (1.0f + expf(-src[(int64_t)k * hw]));
    r[0] = (r[0] * 2 + ((float)x - 0.5f)) * stride;
    r[1] = (r[1] * 2 + ((float)y - 0.5f)) * stride;
    float tw = r[2] * 2, th = r[3] * 2;
    r[2] = tw * tw * aw;
    r[3] = th * th * ah;
}

typedef struct ot_decode_kernels {
    void (*decode)(ot_backend *be, const float *const *maps, const ot_decode_args *a, float *pred); /* pred: (n, total, no) */
} ot_decode_kernels;

const ot_decode_kernels *ot_decode_kernels_for(ot_device_kind k); /* NULL: none for that device */

#endif
