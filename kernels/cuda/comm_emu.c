/* comm_emu.c: the CUDA device's gradient all-reduce under the CPU executor
 * (onnxtrain_cudaemu): the names comm_gpu.c exports, answered by the MPI
 * collectives of core/dist.h (ot_dist_sum_f32) on the executor device's memory.
 * docs/CUDA.md, "The gradient all-reduce".
 *
 * The executor's device memory is cpu-guard memory, closed to host code outside
 * ot_be_enter(ot_backend_cpu_guard()) ... ot_be_leave, so the sum runs inside
 * that bracket, in place (no host copy). The executor is one in-order queue:
 * the sum is done when sum_f32 returns, and wait has nothing left to wait for.
 * MPI's float sum of two ranks is the same whatever the split into buckets, so
 * bucketed sums give the bits of one sum over the whole slab. While a graph is being
 * captured the sums are recorded into it and run at each replay (NCCL's calls
 * are captured the same way on a GPU). */
#include "cuda_tables.h"
#include "core/dist.h"
#include <stdlib.h>

struct ot_allreduce {
    ot_backend *be;
};

static ot_status emu_create(ot_backend *be, ot_allreduce **out, ot_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    (*out)->be = be;
    return OT_OK;
}

/* One sum, now or (while a graph is being captured on this thread, as NCCL calls are captured on a GPU) at each
 * replay of the graph. */
typedef struct emu_sum_call { void *x; int64_t n; bool f64; } emu_sum_call;

static void emu_sum_run(void *ctx) {
    const emu_sum_call *a = ctx;
    ot_backend *g = ot_backend_cpu_guard();
    ot_be_enter(g);
    if (a->f64) ot_dist_sum_f64(a->x, a->n);
    else ot_dist_sum_f32(a->x, a->n); /* a dead or hung peer stops every rank (ONNXT_DIST_TIMEOUT) */
    ot_be_leave(g);
}

static ot_status emu_sum_any(void *x, int64_t n, bool f64, ot_error *err) {
    if (n <= 0 || ot_dist_world() <= 1) return OT_OK;
    emu_sum_call a = {x, n, f64};
    if (!ot_emu_capturing()) {
        emu_sum_run(&a);
        return OT_OK;
    }
    emu_sum_call *rec = malloc(sizeof *rec);
    if (!rec) return ot_fail(err, OT_ERR_NOMEM, "out of memory recording an all-reduce");
    *rec = a;
    ot_emu_record(emu_sum_run, rec, free);
    return OT_OK;
}

static ot_status emu_sum(ot_allreduce *c, float *x, int64_t n, ot_stream s, ot_error *err) {
    (void)c; (void)s;
    return emu_sum_any(x, n, false, err);
}

static ot_status emu_sum_f64(ot_allreduce *c, double *x, int64_t n, ot_stream s, ot_error *err) {
    (void)c; (void)s;
    return emu_sum_any(x, n, true, err);
}

static ot_status emu_wait(ot_allreduce *c, ot_stream s, ot_error *err) {
    (void)c; (void)s; (void)err;
    return OT_OK;
}

static void emu_destroy(ot_allreduce *c) { free(c); }

const ot_allreduce_kernels ot_cuda_allreduce = {
    .create = emu_create, .sum_f32 = emu_sum, .sum_f64 = emu_sum_f64, .wait = emu_wait, .destroy = emu_destroy,
};
