/* nccl.c: NCCL loaded at run time (core/nccl.h). */
#include "nccl.h"
#include "config.h"
#include "dist.h"
#include <stdlib.h>

#if defined(ONNXT_HAVE_CUDA) && __has_include(<nccl.h>)
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>
#include <time.h>

typedef ncclResult_t (*fn_id)(ncclUniqueId *);
typedef ncclResult_t (*fn_init)(ncclComm_t *, int, ncclUniqueId, int);
typedef ncclResult_t (*fn_allreduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
typedef ncclResult_t (*fn_async)(ncclComm_t, ncclResult_t *);
typedef ncclResult_t (*fn_comm)(ncclComm_t);
typedef const char *(*fn_str)(ncclResult_t);

struct ot_nccl {
    void *lib;
    fn_id get_id;
    fn_init init;
    fn_allreduce allreduce;
    fn_async async_error;
    fn_comm abort_comm, destroy;
    fn_str str;
    ncclComm_t comm;
    int ranks, device;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double deadline_s(void) { return ot_config_get()->dist_timeout_s; } /* ONNXT_DIST_TIMEOUT */

void ot_nccl_destroy(ot_nccl *c) {
    if (!c) return;
    if (c->comm && c->destroy) c->destroy(c->comm);
    if (c->lib) dlclose(c->lib);
    free(c);
}

int ot_nccl_ranks(const ot_nccl *c) { return c->ranks; }

ot_status ot_nccl_create(int device, ot_nccl **out, ot_error *err) {
    *out = NULL;
    ot_nccl *c = calloc(1, sizeof *c);
    if (!c) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    c->lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!c->lib) c->lib = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!c->lib) {
        free(c);
        return ot_fail(err, OT_ERR_UNSUPPORTED, "NCCL: cannot load libnccl.so.2 (%s); put its folder on LD_LIBRARY_PATH", dlerror());
    }
    c->get_id = (fn_id)dlsym(c->lib, "ncclGetUniqueId");
    c->init = (fn_init)dlsym(c->lib, "ncclCommInitRank");
    c->allreduce = (fn_allreduce)dlsym(c->lib, "ncclAllReduce");
    c->async_error = (fn_async)dlsym(c->lib, "ncclCommGetAsyncError");
    c->abort_comm = (fn_comm)dlsym(c->lib, "ncclCommAbort");
    c->destroy = (fn_comm)dlsym(c->lib, "ncclCommDestroy");
    c->str = (fn_str)dlsym(c->lib, "ncclGetErrorString");
    if (!c->get_id || !c->init || !c->allreduce || !c->async_error || !c->abort_comm || !c->destroy || !c->str) {
        ot_nccl_destroy(c);
        return ot_fail(err, OT_ERR_UNSUPPORTED, "NCCL: libnccl.so.2 lacks an entry point this build needs");
    }
    cudaError_t ce = cudaSetDevice(device);
    if (ce != cudaSuccess) {
        ot_nccl_destroy(c);
        return ot_fail(err, OT_ERR_INVALID, "NCCL: CUDA device %d: %s", device, cudaGetErrorString(ce));
    }
    c->device = device;
    c->ranks = ot_dist_world();
    ncclUniqueId id;
    ncclResult_t r = ncclSuccess;
    if (ot_dist_rank() == 0) r = c->get_id(&id);
    int32_t ok = r == ncclSuccess;
    ot_dist_bcast_i32(&ok, 1, 0);
    if (!ok) {
        ot_nccl_destroy(c);
        return ot_fail(err, OT_ERR_INTERNAL, "NCCL: ncclGetUniqueId failed on rank 0 (%s)", r != ncclSuccess ? "here" : "elsewhere");
    }
    ot_dist_bcast_bytes(&id, sizeof id, 0);
    r = c->init(&c->comm, c->ranks, id, ot_dist_rank());
    if (r != ncclSuccess) {
        c->comm = NULL;
        ot_status st = ot_fail(err, OT_ERR_INTERNAL, "NCCL: ncclCommInitRank (rank %d of %d): %s", ot_dist_rank(), c->ranks, c->str(r));
        ot_nccl_destroy(c);
        return st;
    }
    *out = c;
    return OT_OK;
}

ot_status ot_nccl_enqueue_sum_f32(ot_nccl *c, float *dev, int64_t n, void *stream, ot_error *err) {
    if (!c->comm) return ot_fail(err, OT_ERR_INTERNAL, "NCCL: the communicator was aborted");
    ncclResult_t r = c->allreduce(dev, dev, (size_t)n, ncclFloat32, ncclSum, c->comm, (cudaStream_t)stream);
    if (r != ncclSuccess) return ot_fail(err, OT_ERR_INTERNAL, "NCCL: ncclAllReduce: %s", c->str(r));
    return OT_OK;
}

ot_status ot_nccl_enqueue_sum_f64(ot_nccl *c, double *dev, int64_t n, void *stream, ot_error *err) {
    if (!c->comm) return ot_fail(err, OT_ERR_INTERNAL, "NCCL: the communicator was aborted");
    ncclResult_t r = c->allreduce(dev, dev, (size_t)n, ncclFloat64, ncclSum, c->comm, (cudaStream_t)stream);
    if (r != ncclSuccess) return ot_fail(err, OT_ERR_INTERNAL, "NCCL: ncclAllReduce (double): %s", c->str(r));
    return OT_OK;
}

/* Polls the event (NULL: the stream) until it completes, with the asynchronous error and the deadline. */
static ot_status poll(ot_nccl *c, cudaStream_t s, cudaEvent_t e, ot_error *err) {
    double t0 = now_s(), lim = deadline_s();
    for (;;) {
        cudaError_t q = e ? cudaEventQuery(e) : cudaStreamQuery(s);
        if (q == cudaSuccess) return OT_OK;
        if (q != cudaErrorNotReady) return ot_fail(err, OT_ERR_INTERNAL, "NCCL: stream error: %s", cudaGetErrorString(q));
        ncclResult_t a = ncclSuccess;
        c->async_error(c->comm, &a);
        bool late = now_s() - t0 > lim;
        if ((a != ncclSuccess && a != ncclInProgress) || late) {
            c->abort_comm(c->comm);
            c->comm = NULL;
            return ot_fail(err, OT_ERR_INTERNAL, "NCCL: rank %d: %s; communicator aborted", ot_dist_rank(),
                           late ? "no answer from the other ranks before ONNXT_DIST_TIMEOUT" : c->str(a));
        }
        struct timespec d = {0, 100000};
        nanosleep(&d, NULL);
    }
}

ot_status ot_nccl_sum_f32(ot_nccl *c, float *dev, int64_t n, void *stream, ot_error *err) {
    OT_TRY(ot_nccl_enqueue_sum_f32(c, dev, n, stream, err));
    return poll(c, (cudaStream_t)stream, NULL, err);
}

ot_status ot_nccl_wait_event(ot_nccl *c, void *event, ot_error *err) {
    if (!c->comm) return ot_fail(err, OT_ERR_INTERNAL, "NCCL: the communicator was aborted");
    return poll(c, NULL, (cudaEvent_t)event, err);
}
#else
struct ot_nccl { int ranks; };
ot_status ot_nccl_create(int device, ot_nccl **out, ot_error *err) {
    (void)device;
    *out = NULL;
    return ot_fail(err, OT_ERR_UNSUPPORTED, "NCCL: this build has no CUDA (or no nccl.h)");
}
ot_status ot_nccl_sum_f32(ot_nccl *c, float *dev, int64_t n, void *stream, ot_error *err) {
    (void)c; (void)dev; (void)n; (void)stream;
    return ot_fail(err, OT_ERR_UNSUPPORTED, "NCCL: this build has no CUDA");
}
ot_status ot_nccl_enqueue_sum_f32(ot_nccl *c, float *dev, int64_t n, void *stream, ot_error *err) {
    return ot_nccl_sum_f32(c, dev, n, stream, err);
}
ot_status ot_nccl_enqueue_sum_f64(ot_nccl *c, double *dev, int64_t n, void *stream, ot_error *err) {
    (void)c; (void)dev; (void)n; (void)stream;
    return ot_fail(err, OT_ERR_UNSUPPORTED, "NCCL: this build has no CUDA");
}
ot_status ot_nccl_wait_event(ot_nccl *c, void *event, ot_error *err) {
    (void)c; (void)event;
    return ot_fail(err, OT_ERR_UNSUPPORTED, "NCCL: this build has no CUDA");
}
void ot_nccl_destroy(ot_nccl *c) { free(c); }
int ot_nccl_ranks(const ot_nccl *c) { return c ? c->ranks : 0; }
#endif
