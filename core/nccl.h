/* nccl.h: gradient sums over data-parallel ranks on CUDA devices with NCCL
 * (the copy that comes with the CUDA toolkit or with PyTorch), loaded at run
 * time (dlopen "libnccl.so.2"), so the binary runs on machines without it.
 *
 * One communicator spans the ranks of core/dist.h (mpirun; one rank without
 * it): rank 0 makes the NCCL unique id and MPI broadcasts it. Every wait polls
 * the communicator's asynchronous error and a deadline (ONNXT_DIST_TIMEOUT,
 * as the CPU collectives): a dead or hung peer aborts the communicator and
 * returns an error instead of waiting forever. Verified only on a GPU machine
 * (tests/test_nccl.c, label cuda); this build has no GPU training step yet. */
#ifndef OT_NCCL_H
#define OT_NCCL_H

#include "status.h"
#include <stdint.h>

typedef struct ot_nccl ot_nccl;

ot_status ot_nccl_create(int device, ot_nccl **out, ot_error *err);
/* In place: the element-wise sum over ranks of n floats in device memory,
 * enqueued on stream (a cudaStream_t; NULL: the legacy default stream) and
 * waited for. */
ot_status ot_nccl_sum_f32(ot_nccl *c, float *dev, int64_t n, void *stream, ot_error *err);
/* The same, only enqueued: returns once the sum is on the stream (the
 * gradient buckets of kernels/cuda/comm_gpu.c); ot_nccl_wait_event waits. */
ot_status ot_nccl_enqueue_sum_f32(ot_nccl *c, float *dev, int64_t n, void *stream, ot_error *err);
ot_status ot_nccl_enqueue_sum_f64(ot_nccl *c, double *dev, int64_t n, void *stream, ot_error *err);
/* The host waits for a cudaEvent_t (as void *) recorded after enqueued sums,
 * polling the communicator's asynchronous error and ONNXT_DIST_TIMEOUT (a dead
 * or hung peer aborts the communicator and returns an error). */
ot_status ot_nccl_wait_event(ot_nccl *c, void *event, ot_error *err);
void ot_nccl_destroy(ot_nccl *c);
int ot_nccl_ranks(const ot_nccl *c);

#endif
