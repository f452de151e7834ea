/* backend_cuda.cu: the CUDA device's memory, streams and events (core/backend.h).
 *
 * One backend per GPU: cudaMalloc'd buffers (plans allocate one arena each, so
 * nothing is allocated inside a step), a compute stream and a copy stream,
 * events that order them, page-locked host staging memory for loader batches.
 * Every CUDA call is checked; a failure names the file, the line and the call
 * and stops the process (a failing device cannot continue a training run; the
 * memory calls that can fail on a full device return NULL instead).
 * The comm stream carries the gradient all-reduce (kernels/cuda/comm_gpu.c).
 * Kernels are looked up per device (kernels/); this file holds no kernel. */
extern "C" {
#include "backend.h"
}
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUDA_CHECK(call) cuda_check((call), __FILE__, __LINE__, #call)
static void cuda_check(cudaError_t e, const char *file, int line, const char *what) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "onnx-train: CUDA error at %s:%d in %s: %s\n", file, line, what, cudaGetErrorString(e));
    abort();
}

typedef struct cuda_dev {
    int ordinal;
    cudaStream_t stream[OT_STREAMS];   /* OT_STREAM_COMPUTE, OT_STREAM_COPY, OT_STREAM_COMM */
} cuda_dev;

static cuda_dev *dev_of(ot_backend *be) { return (cuda_dev *)be->impl; }
static void use(ot_backend *be) { CUDA_CHECK(cudaSetDevice(dev_of(be)->ordinal)); }

static void *c_alloc(ot_backend *be, size_t bytes) {
    use(be);
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) { cudaGetLastError(); return NULL; } /* full: the caller names what it wanted */
    return p;
}
static void c_free(ot_backend *be, void *p) { use(be); CUDA_CHECK(cudaFree(p)); }
static void c_memset(ot_backend *be, void *d, int b, size_t n) {
    CUDA_CHECK(cudaMemsetAsync(d, b, n, dev_of(be)->stream[OT_STREAM_COMPUTE]));
}
static void c_upload(ot_backend *be, ot_stream s, void *d, const void *src, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(d, src, n, cudaMemcpyHostToDevice, dev_of(be)->stream[s]));
}
static void c_download(ot_backend *be, ot_stream s, void *d, const void *src, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(d, src, n, cudaMemcpyDeviceToHost, dev_of(be)->stream[s]));
    CUDA_CHECK(cudaStreamSynchronize(dev_of(be)->stream[s])); /* complete on return */
}
static void c_copy(ot_backend *be, void *d, const void *src, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(d, src, n, cudaMemcpyDeviceToDevice, dev_of(be)->stream[OT_STREAM_COMPUTE]));
}
static void c_enter(ot_backend *be) { use(be); } /* kernels launch on the compute stream of the current device */
static void c_leave(ot_backend *be) { (void)be; }
static void c_record(ot_backend *be, ot_stream s, ot_event *e) {
    if (!e->impl) CUDA_CHECK(cudaEventCreateWithFlags((cudaEvent_t *)&e->impl, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)e->impl, dev_of(be)->stream[s]));
    e->seq++;
}
static void c_wait(ot_backend *be, ot_stream s, const ot_event *e) {
    if (e->impl) CUDA_CHECK(cudaStreamWaitEvent(dev_of(be)->stream[s], (cudaEvent_t)e->impl, 0));
}
static void c_wait_host(ot_backend *be, const ot_event *e) {
    (void)be;
    if (e->impl) CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)e->impl));
}
static void c_sync(ot_backend *be) {
    for (int s = 0; s < OT_STREAMS; s++) CUDA_CHECK(cudaStreamSynchronize(dev_of(be)->stream[s]));
}
static void *c_host_alloc(ot_backend *be, size_t bytes) {
    (void)be;
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) { cudaGetLastError(); return NULL; }
    return p;
}
static void c_host_free(ot_backend *be, void *p) { (void)be; CUDA_CHECK(cudaFreeHost(p)); }

/* ---- graphs: stream capture of the compute stream (thread-local mode: other threads' CUDA calls are
 * unaffected), instantiated once, launched on the compute stream ---- */
struct ot_be_graph { cudaGraph_t graph; cudaGraphExec_t exec; };
static bool c_graph_begin(ot_backend *be) {
    use(be);
    return cudaStreamBeginCapture(dev_of(be)->stream[OT_STREAM_COMPUTE], cudaStreamCaptureModeThreadLocal) == cudaSuccess;
}
static ot_be_graph *c_graph_end(ot_backend *be) {
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(dev_of(be)->stream[OT_STREAM_COMPUTE], &g);
    if (e != cudaSuccess || !g) { /* something in the capture cannot be captured: the caller runs plain launches */
        fprintf(stderr, "onnx-train: warning: %s: CUDA graph capture failed (%s); plain launches instead\n", be->name,
                cudaGetErrorString(e));
        cudaGetLastError();
        if (g) cudaGraphDestroy(g);
        return NULL;
    }
    ot_be_graph *r = (ot_be_graph *)calloc(1, sizeof *r);
    if (!r || cudaGraphInstantiate(&r->exec, g, 0) != cudaSuccess) {
        fprintf(stderr, "onnx-train: warning: %s: CUDA graph instantiation failed; plain launches instead\n", be->name);
        cudaGetLastError();
        cudaGraphDestroy(g);
        free(r);
        return NULL;
    }
    r->graph = g;
    return r;
}
static void c_graph_launch(ot_backend *be, ot_be_graph *g) {
    use(be);
    CUDA_CHECK(cudaGraphLaunch(g->exec, dev_of(be)->stream[OT_STREAM_COMPUTE]));
}
static void c_graph_free(ot_backend *be, ot_be_graph *g) {
    (void)be;
    cudaGraphExecDestroy(g->exec);
    cudaGraphDestroy(g->graph);
    free(g);
}

static const ot_backend_vtbl cuda_vtbl = {
    c_alloc, c_free, c_memset, c_upload, c_download, c_copy, c_enter, c_leave, c_record, c_wait, c_sync, c_wait_host, c_host_alloc,
    c_host_free, c_graph_begin, c_graph_end, c_graph_launch, c_graph_free,
};

#define MAX_GPUS 16
static ot_backend gpus[MAX_GPUS];

/* The backend of GPU `ordinal` (made once); NULL with the reason when there is none. */
extern "C" ot_backend *ot_backend_cuda(int ordinal, char *why, size_t n) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        if (why && n) snprintf(why, n, "no usable CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        cudaGetLastError();
        return NULL;
    }
    if (ordinal < 0 || ordinal >= count || ordinal >= MAX_GPUS) {
        if (why && n) snprintf(why, n, "this machine has %d CUDA device%s (0..%d)", count, count == 1 ? "" : "s", count - 1);
        return NULL;
    }
    ot_backend *be = &gpus[ordinal];
    if (!be->impl) {
        cuda_dev *d = (cuda_dev *)calloc(1, sizeof *d);
        if (!d) { if (why && n) snprintf(why, n, "out of memory"); return NULL; }
        d->ordinal = ordinal;
        CUDA_CHECK(cudaSetDevice(ordinal));
        for (int s = 0; s < OT_STREAMS; s++) CUDA_CHECK(cudaStreamCreateWithFlags(&d->stream[s], cudaStreamNonBlocking));
        be->v = &cuda_vtbl;
        be->kind = OT_DEV_CUDA;
        be->ordinal = ordinal;
        snprintf(be->name, sizeof be->name, "cuda:%d", ordinal);
        be->impl = d;
    }
    return be;
}

extern "C" void *ot_backend_cuda_stream(ot_backend *be, ot_stream s) {
    if (!be || be->kind != OT_DEV_CUDA || !be->impl || (int)s < 0 || s >= OT_STREAMS) return NULL;
    return (void *)dev_of(be)->stream[s];
}
