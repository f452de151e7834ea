/* device_kernels.h: kernel tables that a kernel library registers at run time
 * for a device kind. The CPU tables are built in (kernels/optable.c, slab.c,
 * yolo_loss.c, decode.c). The CUDA device's tables live in kernels/cuda/
 * (cuda_tables.c), in one of two libraries a binary links: onnxtrain_cuda (the
 * GPU) or onnxtrain_cudaemu (the same kernels on the CPU executor). The library's
 * ot_cuda_kernels_install() registers them here; until then the CUDA device has
 * no kernels and a plan on it fails at creation naming the op.
 *
 * Ops are listed by ONNX name, so a table need not follow the op table's order
 * and an op it does not list stays unimplemented on that device. */
#ifndef OT_DEVICE_KERNELS_H
#define OT_DEVICE_KERNELS_H

#include "ops.h"
#include "slab.h"
#include "yolo_loss.h"
#include "decode.h"

typedef struct ot_op_row {
    const char *op;              /* ONNX op type, as ot_op_def.name */
    const ot_op_impl *impl;
} ot_op_row;

typedef struct ot_device_kernels {
    const char *name;            /* for messages: "CUDA (sm_86, sm_90)", "CUDA on the CPU executor" */
    const ot_op_row *ops;
    int n_ops;
    const ot_slab_kernels *slab;
    const ot_yolo_loss_kernels *loss;
    const ot_decode_kernels *decode;
} ot_device_kernels;

/* Makes t the tables of device kind k (not the CPU kinds, whose tables are
 * built in); t must outlive the process. Registering again replaces. Returns
 * false, and registers nothing, when a row names an op the op table lacks
 * (printed on stderr). */
bool ot_device_kernels_register(ot_device_kind k, const ot_device_kernels *t);
/* The registered tables of k, NULL when none (and for the CPU kinds). */
const ot_device_kernels *ot_device_kernels_get(ot_device_kind k);

#endif
