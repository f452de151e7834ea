/* backend.h: the device interface. Every tensor buffer (plan arenas, the
 * workspace, op state, parameter / gradient / optimizer / EMA slabs, loss and
 * decode scratch, the batch slot) is allocated by a backend, and data crosses
 * between host and backend memory only through the calls below (ggml's way:
 * ggml_backend_tensor_set / _get). Host code never dereferences backend memory;
 * kernels do, between ot_be_enter and ot_be_leave (the runtime brackets every
 * kernel launch, plan run and slab kernel that way). See docs/BACKENDS.md.
 *
 * Devices:
 *   cpu        ordinary aligned host memory; every call is a plain memcpy/memset.
 *   cuda:N     cudaMalloc'd memory, a compute and a copy stream, events, pinned
 *              staging memory (core/backend_cuda.cu, CUDA builds). Its kernels
 *              are registered by the CUDA kernel library a binary links
 *              (kernels/cuda/, ot_cuda_kernels_install); without it plans on it
 *              fail at creation naming the first op without a CUDA implementation.
 *   cuda:N (executor)  the same kernels on the CPU executor over guarded
 *              memory (ot_backend_cuda_emu; tests and -DONNXT_CUDA=EMU builds).
 *   cpu-guard  the CPU kernels over memory that host code cannot touch: each
 *              buffer is its own mapping, PROT_NONE except while one of this
 *              backend's calls (or a bracketed kernel) runs, so a stray host
 *              dereference crashes at once (tests, `--device cpu-guard`). The
 *              CUDA backend's CPU executor uses the same guard.
 * A backend has a compute, a copy and a communication stream; events order them. The CPU
 * devices run everything in order, so their streams and events are trivial. */
#ifndef OT_BACKEND_H
#define OT_BACKEND_H

#include "status.h"

typedef enum ot_device_kind { OT_DEV_CPU = 0, OT_DEV_CPU_GUARD = 1, OT_DEV_CUDA = 2, OT_DEV_KINDS } ot_device_kind;
/* OT_STREAM_COMM: collectives over data-parallel ranks (the gradient buckets of
 * kernels/device_kernels.h's allreduce table), overlapped with the backward. */
typedef enum ot_stream { OT_STREAM_COMPUTE = 0, OT_STREAM_COPY = 1, OT_STREAM_COMM = 2, OT_STREAMS } ot_stream;

typedef struct ot_backend ot_backend;
typedef struct ot_event { uint64_t seq; void *impl; } ot_event;
typedef struct ot_be_graph ot_be_graph; /* a captured sequence of a device's work (ot_be_graph_begin) */

typedef struct ot_backend_vtbl {
    void *(*alloc)(ot_backend *be, size_t bytes);             /* uninitialised, OT_BE_ALIGN-aligned; NULL: out of memory */
    void (*free)(ot_backend *be, void *ptr);
    void (*memset)(ot_backend *be, void *dst, int byte, size_t bytes);
    void (*upload)(ot_backend *be, ot_stream s, void *dst, const void *src, size_t bytes);   /* host -> backend */
    void (*download)(ot_backend *be, ot_stream s, void *dst, const void *src, size_t bytes); /* backend -> host, complete on return */
    void (*copy)(ot_backend *be, void *dst, const void *src, size_t bytes);                 /* backend -> backend */
    void (*enter)(ot_backend *be);                             /* kernels may now touch this backend's memory */
    void (*leave)(ot_backend *be);
    void (*record)(ot_backend *be, ot_stream s, ot_event *e);  /* e completes when s reaches this point */
    void (*wait)(ot_backend *be, ot_stream s, const ot_event *e); /* s waits for e */
    void (*sync)(ot_backend *be);                              /* every stream drained */
    void (*wait_host)(ot_backend *be, const ot_event *e);      /* the host waits for e (recorded or never recorded) */
    void *(*host_alloc)(ot_backend *be, size_t bytes);         /* host staging memory for uploads (loader batches):
                                                                * page-locked on a GPU; plain, aligned on the CPU */
    void (*host_free)(ot_backend *be, void *ptr);
    /* Graphs (optional; NULL: the device has none): the work issued to the compute stream between begin and end
     * is captured instead of run, and replayed as one by launch, reading and writing the same addresses (a
     * CUDA graph on a GPU; the executor's recording on the CPU executor). Between begin and end nothing may
     * wait for the device (no download, no sync). end returns NULL when the capture failed. */
    bool (*graph_begin)(ot_backend *be);
    ot_be_graph *(*graph_end)(ot_backend *be);
    void (*graph_launch)(ot_backend *be, ot_be_graph *g);
    void (*graph_free)(ot_backend *be, ot_be_graph *g);
} ot_backend_vtbl;

struct ot_backend {
    const ot_backend_vtbl *v;
    ot_device_kind kind;
    int ordinal;                /* the device number (CUDA), 0 otherwise */
    char name[32];              /* "cpu", "cpu-guard", "cuda:0" */
    int depth;                  /* ot_be_enter nesting */
    void *impl;
};

#define OT_BE_ALIGN 64

/* The device named by --device: "cpu", "cpu-guard", or a GPU number ("0");
 * "" picks Ultralytics' default (the first GPU when this build and machine have
 * one, else the CPU). Backends are process-wide and never destroyed. */
ot_status ot_backend_get(const char *device, ot_backend **out, ot_error *err);
/* A list of GPU numbers such as "0,1" (or "cuda:0,1"), which only `train` takes
 * (one process per device, core/dist.h): its length when `device` is such a
 * list of two or more distinct numbers; 0 when it is not a list (one device,
 * cpu, ""); -1 with the reason in err when it is a malformed list ("0,", "0,0"). */
int ot_device_list_count(const char *device, ot_error *err);
/* Entry k of such a list, as a one-device name ("1") in out[n]. */
ot_status ot_device_list_pick(const char *device, int k, char *out, size_t n, ot_error *err);
ot_backend *ot_backend_cpu(void);
ot_backend *ot_backend_cpu_guard(void);
/* GPU `ordinal`'s memory, streams and events (core/backend_cuda.cu); NULL with
 * the reason in why when there is no such GPU or the build has no CUDA. */
ot_backend *ot_backend_cuda(int ordinal, char *why, size_t n);
/* The cudaStream_t (as void *) of a CUDA backend's compute, copy or comm stream, for
 * code that launches kernels or records timing events on it; NULL for a
 * backend that is not a GPU (the executor's launches ignore streams). */
void *ot_backend_cuda_stream(ot_backend *be, ot_stream s);
/* The CUDA device on the CPU executor (kernels/cuda/emu.cpp): kind
 * OT_DEV_CUDA, named "cuda:N (executor)", its memory the guard's and closed to
 * host code even inside ot_be_enter (only executor launches open it); no
 * streams (ot_backend_cuda_stream gives NULL). Ordinals 0..7; NULL with the
 * reason otherwise. */
ot_backend *ot_backend_cuda_emu(int ordinal, char *why, size_t n);
/* What --device N opens: set by a CUDA kernel library's install
 * (ot_cuda_kernels_install, kernels/cuda/cuda_tables.h) to the GPU
 * (ot_backend_cuda, real = true) or to the executor (ot_backend_cuda_emu).
 * Unset, N opens ot_backend_cuda (memory and streams only). The default
 * device ("") is GPU 0 only when real. */
typedef ot_backend *(*ot_gpu_open_fn)(int ordinal, char *why, size_t n);
void ot_backend_set_gpu(ot_gpu_open_fn open, bool real);
/* The CUDA device kind opens real GPUs (not the executor). */
bool ot_backend_gpu_is_real(void);
/* What this build offers, for --help and `info`: "cpu, cpu-guard[, 0 (CUDA)]". */
const char *ot_backend_list(void);

/* ---- calls (inline: the CPU path stays a direct call) ---- */
static inline void *ot_be_alloc(ot_backend *be, size_t bytes) { return be->v->alloc(be, bytes ? bytes : 1); }
void *ot_be_alloc_zero(ot_backend *be, size_t bytes);
static inline void ot_be_free(ot_backend *be, void *p) { if (p) be->v->free(be, p); }
static inline void ot_be_memset(ot_backend *be, void *dst, int byte, size_t n) { if (n) be->v->memset(be, dst, byte, n); }
static inline void ot_be_upload(ot_backend *be, void *dst, const void *src, size_t n) { if (n) be->v->upload(be, OT_STREAM_COMPUTE, dst, src, n); }
static inline void ot_be_download(ot_backend *be, void *dst, const void *src, size_t n) { if (n) be->v->download(be, OT_STREAM_COMPUTE, dst, src, n); }
static inline void ot_be_copy(ot_backend *be, void *dst, const void *src, size_t n) { if (n && dst != src) be->v->copy(be, dst, src, n); }
static inline void ot_be_sync(ot_backend *be) { be->v->sync(be); }
/* Upload on stream s (OT_STREAM_COPY: overlapped with the compute stream; order
 * it with ot_be_record / ot_be_wait, and keep src unchanged until the event has
 * passed, ot_be_wait_host). */
static inline void ot_be_upload_on(ot_backend *be, ot_stream s, void *dst, const void *src, size_t n) {
    if (n) be->v->upload(be, s, dst, src, n);
}
static inline void ot_be_record(ot_backend *be, ot_stream s, ot_event *e) { be->v->record(be, s, e); }
static inline void ot_be_wait(ot_backend *be, ot_stream s, const ot_event *e) { be->v->wait(be, s, e); }
static inline void ot_be_wait_host(ot_backend *be, const ot_event *e) { be->v->wait_host(be, e); }
static inline void *ot_be_host_alloc(ot_backend *be, size_t n) { return be->v->host_alloc(be, n ? n : 1); }
static inline void ot_be_host_free(ot_backend *be, void *p) { if (p) be->v->host_free(be, p); }
static inline void ot_be_enter(ot_backend *be) { if (be->depth++ == 0) be->v->enter(be); }
static inline void ot_be_leave(ot_backend *be) { if (--be->depth == 0) be->v->leave(be); }

/* Graphs: begin returns false (nothing captured) on a device without them. */
static inline bool ot_be_graph_begin(ot_backend *be) { return be->v->graph_begin && be->v->graph_begin(be); }
static inline ot_be_graph *ot_be_graph_end(ot_backend *be) { return be->v->graph_end(be); }
static inline void ot_be_graph_launch(ot_backend *be, ot_be_graph *g) { be->v->graph_launch(be, g); }
static inline void ot_be_graph_free(ot_backend *be, ot_be_graph *g) { if (g) be->v->graph_free(be, g); }

/* The CPU executor's recorder (core/backend.c), for the executor's library code (kernels/cuda/emu.cpp's
 * launches, conv_emu.c): while a graph is being captured on this thread, work is recorded, as a function and
 * its context (drop frees the context with the graph), instead of run; the graph's launch runs the records in
 * order. */
bool ot_emu_capturing(void);
void ot_emu_record(void (*run)(void *ctx), void *ctx, void (*drop)(void *ctx));

/* ---- the guard, for tests ---- */
/* True when p lies in a live cpu-guard buffer. */
bool ot_guard_owns(const void *p);
/* Buffers the guard holds now (leak checks in tests). */
int ot_guard_live(void);

#endif
