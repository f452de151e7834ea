/* comm_gpu.c: the CUDA device's gradient all-reduce on the GPU (onnxtrain_cuda):
 * kernels/device_kernels.h's allreduce table with NCCL (core/nccl.h: loaded at
 * run time, one communicator over the MPI ranks, its unique id broadcast by MPI).
 * docs/CUDA.md, "The gradient all-reduce".
 *
 * sum_f32 only enqueues ncclAllReduce on the requested stream (the trainer uses
 * the backend's comm stream, ordered after the compute stream with an event per
 * bucket); wait records an event on that stream and polls it with the peers'
 * errors and ONNXT_DIST_TIMEOUT. Verified to build here; running it needs two
 * GPUs (one per rank). */
#include "cuda_tables.h"
#include "core/nccl.h"
#include <stdlib.h>

struct ot_allreduce {
    ot_backend *be;
    ot_nccl *nccl;
    ot_event done; /* recorded by wait */
};

static ot_status gpu_create(ot_backend *be, ot_allreduce **out, ot_error *err) {
    *out = NULL;
    ot_allreduce *c = calloc(1, sizeof *c);
    if (!c) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    c->be = be;
    ot_status st = ot_nccl_create(be->ordinal, &c->nccl, err);
    if (st) { free(c); return st; }
    *out = c;
    return OT_OK;
}

static ot_status gpu_sum(ot_allreduce *c, float *x, int64_t n, ot_stream s, ot_error *err) {
    if (n <= 0) return OT_OK;
    return ot_nccl_enqueue_sum_f32(c->nccl, x, n, ot_backend_cuda_stream(c->be, s), err);
}

static ot_status gpu_sum_f64(ot_allreduce *c, double *x, int64_t n, ot_stream s, ot_error *err) {
    if (n <= 0) return OT_OK;
    return ot_nccl_enqueue_sum_f64(c->nccl, x, n, ot_backend_cuda_stream(c->be, s), err);
}

static ot_status gpu_wait(ot_allreduce *c, ot_stream s, ot_error *err) {
    ot_be_record(c->be, s, &c->done);
    return ot_nccl_wait_event(c->nccl, c->done.impl, err);
}

static void gpu_destroy(ot_allreduce *c) {
    if (!c) return;
    ot_nccl_destroy(c->nccl); /* the event stays with the process, as the trainer's staging events */
    free(c);
}

const ot_allreduce_kernels ot_cuda_allreduce = {
    .create = gpu_create, .sum_f32 = gpu_sum, .sum_f64 = gpu_sum_f64, .wait = gpu_wait, .destroy = gpu_destroy,
};
