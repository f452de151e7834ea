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

/* A device collective: the gradient all-reduce over the data-parallel ranks of
 * core/dist.h (mpirun), on the device's memory. One communicator per training
 * run; every rank makes the same calls with the same sizes in the same order.
 * kernels/cuda/comm_gpu.c: NCCL (core/nccl.h) on the GPU's comm stream;
 * kernels/cuda/comm_emu.c: the executor's answer, MPI (ot_dist_sum_f32) on the
 * guarded memory, done before the call returns. */
typedef struct ot_allreduce ot_allreduce;
typedef struct ot_allreduce_kernels {
    /* One communicator over every rank for device be (collective: every rank calls it). */
    ot_status (*create)(ot_backend *be, ot_allreduce **out, ot_error *err);
    /* In place: the element-wise sum over the ranks of n floats of device memory,
     * enqueued on stream s after what s already holds (order it against the
     * compute stream with ot_be_record / ot_be_wait). */
    ot_status (*sum_f32)(ot_allreduce *c, float *x, int64_t n, ot_stream s, ot_error *err);
    /* The same for n doubles (SyncBatchNorm's statistics, on the compute stream). */
    ot_status (*sum_f64)(ot_allreduce *c, double *x, int64_t n, ot_stream s, ot_error *err);
    /* The host waits for every sum enqueued on s so far, polling the peers'
     * errors and ONNXT_DIST_TIMEOUT: an error, never a hang. */
    ot_status (*wait)(ot_allreduce *c, ot_stream s, ot_error *err);
    void (*destroy)(ot_allreduce *c);
} ot_allreduce_kernels;

typedef struct ot_device_kernels {
    const char *name;            /* for messages: "CUDA (sm_86, sm_90)", "CUDA on the CPU executor" */
    const ot_op_row *ops;
    int n_ops;
    const ot_slab_kernels *slab;
    const ot_yolo_loss_kernels *loss;
    const ot_decode_kernels *decode;
    const ot_allreduce_kernels *allreduce; /* NULL: gradients cross ranks through the host (ot_dist_sum_f32_on) */
} ot_device_kernels;

/* Makes t the tables of device kind k (not the CPU kinds, whose tables are
 * built in); t must outlive the process. Registering again replaces. Returns
 * false, and registers nothing, when a row names an op the op table lacks
 * (printed on stderr). */
bool ot_device_kernels_register(ot_device_kind k, const ot_device_kernels *t);
/* The registered tables of k, NULL when none (and for the CPU kinds). */
const ot_device_kernels *ot_device_kernels_get(ot_device_kind k);

#endif
