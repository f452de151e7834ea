/* op_params.h: the parsed parameters (ot_kctx.params) of the ops whose
 * implementations exist on more than one device. Each op's infer (in its
 * family file, kernels/<family>.c) fills them; the CPU rows there and the CUDA
 * rows (kernels/cuda/cuda_tables.c) read them. Internal to the kernels. */
#ifndef OT_OP_PARAMS_H
#define OT_OP_PARAMS_H

#include "../core/tensor.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Add, Sub, Mul, Div, Pow (kernels/elementwise.c) ---- */
typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW } bin_kind;

typedef struct bin_params {
    int kind;                        /* bin_kind */
    ot_dtype ta, tb;                 /* element types of A and B */
    int rank;                        /* merged rank, >= 1 */
    int64_t d[OT_MAX_RANK];          /* merged output dims */
    int64_t sa[OT_MAX_RANK];         /* element strides of A per merged dim (0: broadcast) */
    int64_t sb[OT_MAX_RANK];         /* same for B */
    int64_t numel;
    int silu;                        /* Mul fused with the Sigmoid of one operand: 0, or 1 + the side of x */
} bin_params;

/* ---- Concat (kernels/concat.c) ---- */
typedef struct concat_params {
    int axis;        /* normalised, in [0, rank) */
} concat_params;

/* ---- MaxPool (kernels/pool.c) ---- */
typedef struct pool_params {
    int64_t kh, kw;          /* kernel */
    int64_t sh, sw;          /* strides */
    int64_t dh, dw;          /* dilations */
    int64_t pt, pl;          /* top / left padding actually used */
    bool sep;                /* unit strides and dilations: separable forward */
    int32_t *arg;            /* training plans with sep: each output's argmax (offset in its
                              * plane), written by the forward for the backward */
} pool_params;

/* ---- Resize, Upsample (kernels/resize.c) ---- */
enum { CT_HALF_PIXEL, CT_ASYMMETRIC, CT_PYTORCH_HALF_PIXEL, CT_TF_HALF_PIXEL_FOR_NN, CT_ALIGN_CORNERS };
enum { NM_SIMPLE, NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL };

typedef struct rs_params {
    int rank;
    int coord;                     /* CT_* */
    int nearest;                   /* NM_* */
    size_t es;                     /* element size in bytes */
    float scale[OT_MAX_RANK];
    int64_t in[OT_MAX_RANK], out[OT_MAX_RANK];
    int64_t factor[OT_MAX_RANK];   /* k when index o maps to o / k for every o, else 0 */
} rs_params;

/* ---- BatchNormalization (kernels/batchnorm.c) ---- */
typedef struct bn_params {
    int64_t n, c, s;     /* x viewed as (N, C, S) */
    float eps, momentum;
    int training;        /* batch statistics */
    int inplace_stats;   /* training plan: update the running statistics in place, PyTorch style */
    float *mean, *invstd; /* (C) batch statistics kept for the backward (training plans) */
} bn_params;

/* ---- Transpose (kernels/shape_ops.c) ---- */
typedef struct tr_params {
    int m;                      /* merged rank (size-1 dims dropped, adjacent runs merged) */
    int64_t din[OT_MAX_RANK];   /* merged input dims */
    int perm[OT_MAX_RANK];      /* output merged axis i = input merged axis perm[i] */
    size_t es;
} tr_params;

/* ---- Split (kernels/shape_ops.c) ---- */
#define SPLIT_MAX 64

typedef struct split_params {
    int axis, n;
    int64_t size[SPLIT_MAX];    /* length of each output along the axis */
    size_t es;
} split_params;

#endif
