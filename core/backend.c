/* backend.c: the CPU and guarded CPU devices, and --device names (core/backend.h). */
#define _DEFAULT_SOURCE 1 /* MAP_ANONYMOUS, MAP_NORESERVE */
#include "backend.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void *ot_be_alloc_zero(ot_backend *be, size_t bytes) {
    void *p = ot_be_alloc(be, bytes);
    if (p) ot_be_memset(be, p, 0, bytes ? bytes : 1);
    return p;
}

/* ---- cpu: plain host memory ---- */
static void *cpu_alloc(ot_backend *be, size_t bytes) {
    (void)be;
    return aligned_alloc(OT_BE_ALIGN, (bytes + OT_BE_ALIGN - 1) / OT_BE_ALIGN * OT_BE_ALIGN);
}
static void cpu_free(ot_backend *be, void *p) { (void)be; free(p); }
#define MEMSET_CHUNK ((size_t)256 << 10) /* bytes a thread sets at a time */
static void cpu_memset(ot_backend *be, void *d, int b, size_t n) {
    (void)be;
    size_t nch = (n + MEMSET_CHUNK - 1) / MEMSET_CHUNK;
    unsigned char *c = d;
#pragma omp parallel for if (nch > 4)
    for (size_t k = 0; k < nch; k++) memset(c + k * MEMSET_CHUNK, b, n - k * MEMSET_CHUNK < MEMSET_CHUNK ? n - k * MEMSET_CHUNK : MEMSET_CHUNK);
}
static void cpu_upload(ot_backend *be, ot_stream s, void *d, const void *src, size_t n) { (void)be; (void)s; memcpy(d, src, n); }
static void cpu_download(ot_backend *be, ot_stream s, void *d, const void *src, size_t n) { (void)be; (void)s; memcpy(d, src, n); }
static void cpu_copy(ot_backend *be, void *d, const void *src, size_t n) { (void)be; memmove(d, src, n); }
static void cpu_nop(ot_backend *be) { (void)be; }
static void cpu_record(ot_backend *be, ot_stream s, ot_event *e) { (void)be; (void)s; e->seq++; } /* in order: done at once */
static void cpu_wait(ot_backend *be, ot_stream s, const ot_event *e) { (void)be; (void)s; (void)e; }
static void cpu_wait_host(ot_backend *be, const ot_event *e) { (void)be; (void)e; }

static const ot_backend_vtbl cpu_vtbl = {
    .alloc = cpu_alloc, .free = cpu_free, .memset = cpu_memset, .upload = cpu_upload, .download = cpu_download,
    .copy = cpu_copy, .enter = cpu_nop, .leave = cpu_nop, .record = cpu_record, .wait = cpu_wait, .sync = cpu_nop, .wait_host = cpu_wait_host,
    .host_alloc = cpu_alloc, .host_free = cpu_free,
};

static ot_backend cpu_backend = {.v = &cpu_vtbl, .kind = OT_DEV_CPU, .name = "cpu"};
ot_backend *ot_backend_cpu(void) { return &cpu_backend; }

/* ---- cpu-guard: one mapping per buffer, PROT_NONE outside the backend's calls ----
 * The registry is kept sorted by address so frees and ot_guard_owns are
 * binary searches; a mutex guards it (loader threads may free pinned batches
 * while the main thread runs). enter/leave flip every live mapping. */
typedef struct gbuf { unsigned char *p; size_t len; } gbuf;
static struct {
    pthread_mutex_t mu;
    gbuf *b;
    int n, cap;
    bool open;            /* between enter and leave: mappings are readable and writable */
} G = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t page_round(size_t n) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) / pg * pg;
}

static int guard_find(const void *p) { /* index of the buffer containing p, or -1 (G.mu held) */
    int lo = 0, hi = G.n - 1;
    const unsigned char *c = p;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < G.b[mid].p) hi = mid - 1;
        else if (c >= G.b[mid].p + G.b[mid].len) lo = mid + 1;
        else return mid;
    }
    return -1;
}

static void guard_protect(gbuf *b, bool open) {
    if (mprotect(b->p, b->len, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) {
        fprintf(stderr, "onnx-train: cpu-guard: mprotect failed on a %zu-byte buffer\n", b->len);
        abort();
    }
}

static void *guard_alloc(ot_backend *be, size_t bytes) {
    (void)be;
    size_t len = page_round(bytes);
    void *m = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    pthread_mutex_lock(&G.mu);
    if (G.n == G.cap) {
        int cap = G.cap ? 2 * G.cap : 64;
        gbuf *nb = realloc(G.b, sizeof *nb * (size_t)cap);
        if (!nb) { pthread_mutex_unlock(&G.mu); munmap(m, len); return NULL; }
        G.b = nb;
        G.cap = cap;
    }
    int at = G.n;
    while (at > 0 && G.b[at - 1].p > (unsigned char *)m) at--;
    memmove(G.b + at + 1, G.b + at, sizeof *G.b * (size_t)(G.n - at));
    G.b[at] = (gbuf){m, len};
    G.n++;
    if (G.open) guard_protect(&G.b[at], true);
    pthread_mutex_unlock(&G.mu);
    return m;
}

static void guard_free(ot_backend *be, void *p) {
    (void)be;
    pthread_mutex_lock(&G.mu);
    int i = guard_find(p);
    if (i < 0 || G.b[i].p != p) {
        pthread_mutex_unlock(&G.mu);
        fprintf(stderr, "onnx-train: cpu-guard: free of %p, which is not a guard buffer\n", p);
        abort();
    }
    munmap(G.b[i].p, G.b[i].len);
    memmove(G.b + i, G.b + i + 1, sizeof *G.b * (size_t)(G.n - i - 1));
    G.n--;
    pthread_mutex_unlock(&G.mu);
}

static void guard_enter(ot_backend *be) {
    (void)be;
    pthread_mutex_lock(&G.mu);
    for (int i = 0; i < G.n; i++) guard_protect(&G.b[i], true);
    G.open = true;
    pthread_mutex_unlock(&G.mu);
}

static void guard_leave(ot_backend *be) {
    (void)be;
    pthread_mutex_lock(&G.mu);
    for (int i = 0; i < G.n; i++) guard_protect(&G.b[i], false);
    G.open = false;
    pthread_mutex_unlock(&G.mu);
}

/* The transfers open only the buffer they touch. */
static void guard_span(const void *p, size_t n, bool open) {
    if (G.open) return; /* inside a bracket: already open */
    pthread_mutex_lock(&G.mu);
    const unsigned char *c = p;
    int i = guard_find(c);
    if (i < 0 || c + n > G.b[i].p + G.b[i].len) {
        pthread_mutex_unlock(&G.mu);
        fprintf(stderr, "onnx-train: cpu-guard: a %zu-byte transfer at %p is not inside one guard buffer\n", n, p);
        abort();
    }
    guard_protect(&G.b[i], open);
    pthread_mutex_unlock(&G.mu);
}

static void guard_memset(ot_backend *be, void *d, int b, size_t n) {
    (void)be;
    guard_span(d, n, true); memset(d, b, n); guard_span(d, n, false);
}
static void guard_upload(ot_backend *be, ot_stream s, void *d, const void *src, size_t n) {
    (void)be; (void)s;
    guard_span(d, n, true); memcpy(d, src, n); guard_span(d, n, false);
}
static void guard_download(ot_backend *be, ot_stream s, void *d, const void *src, size_t n) {
    (void)be; (void)s;
    guard_span(src, n, true); memcpy(d, src, n); guard_span(src, n, false);
}
static void guard_copy(ot_backend *be, void *d, const void *src, size_t n) {
    ot_be_enter(be); memmove(d, src, n); ot_be_leave(be);
}

static const ot_backend_vtbl guard_vtbl = {
    .alloc = guard_alloc, .free = guard_free, .memset = guard_memset, .upload = guard_upload, .download = guard_download,
    .copy = guard_copy, .enter = guard_enter, .leave = guard_leave, .record = cpu_record, .wait = cpu_wait, .sync = cpu_nop, .wait_host = cpu_wait_host,
    .host_alloc = cpu_alloc, .host_free = cpu_free, /* staging memory is the host's: open to host code */
};

static ot_backend guard_backend = {.v = &guard_vtbl, .kind = OT_DEV_CPU_GUARD, .name = "cpu-guard"};
ot_backend *ot_backend_cpu_guard(void) { return &guard_backend; }

/* ---- the CUDA device on the CPU executor ----
 * Kind OT_DEV_CUDA (so plans take the CUDA kernel table), memory from the
 * guard. Unlike cpu-guard, its enter/leave keep the memory closed: only the
 * executor's launches (kernels/cuda/emu.cpp) and the emulated library calls
 * (kernels/cuda/conv_emu.c) open the guard, so any host code that touches this
 * device's memory dies at once, as it would on a GPU. */
static void emu_copy_now(void *d, const void *src, size_t n) {
    ot_be_enter(&guard_backend); memmove(d, src, n); ot_be_leave(&guard_backend);
}

/* ---- the executor's graphs: a thread's recording of its launches, transfers and library calls ---- */
typedef struct rec_node { void (*run)(void *); void *ctx; void (*drop)(void *); } rec_node;
struct ot_be_graph { rec_node *v; int n, cap; };
static _Thread_local ot_be_graph *g_capture; /* the graph being captured on this thread, NULL: none */

bool ot_emu_capturing(void) { return g_capture != NULL; }

void ot_emu_record(void (*run)(void *), void *ctx, void (*drop)(void *)) {
    ot_be_graph *g = g_capture;
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 256;
        rec_node *nv = realloc(g->v, sizeof *nv * (size_t)cap);
        if (!nv) { fprintf(stderr, "onnx-train: cuda-emu: out of memory recording a graph\n"); abort(); }
        g->v = nv;
        g->cap = cap;
    }
    g->v[g->n++] = (rec_node){run, ctx, drop};
}

/* A recorded transfer: memset (src NULL, byte), upload (src host memory, read at replay) or device copy. */
typedef struct rec_xfer { void *d; const void *src; size_t n; int byte, kind; } rec_xfer;
enum { X_MEMSET, X_UPLOAD, X_COPY };
static void xfer_run(void *ctx) {
    rec_xfer *x = ctx;
    if (x->kind == X_MEMSET) guard_memset(NULL, x->d, x->byte, x->n);
    else if (x->kind == X_UPLOAD) guard_upload(NULL, OT_STREAM_COMPUTE, x->d, x->src, x->n);
    else emu_copy_now(x->d, x->src, x->n);
}
static bool xfer_record(void *d, const void *src, size_t n, int byte, int kind) {
    if (!g_capture) return false;
    rec_xfer *x = malloc(sizeof *x);
    if (!x) { fprintf(stderr, "onnx-train: cuda-emu: out of memory recording a graph\n"); abort(); }
    *x = (rec_xfer){d, src, n, byte, kind};
    ot_emu_record(xfer_run, x, free);
    return true;
}

static void emu_memset(ot_backend *be, void *d, int b, size_t n) {
    if (!xfer_record(d, NULL, n, b, X_MEMSET)) guard_memset(be, d, b, n);
}
static void emu_upload(ot_backend *be, ot_stream s, void *d, const void *src, size_t n) {
    if (!xfer_record(d, src, n, 0, X_UPLOAD)) guard_upload(be, s, d, src, n);
}
static void emu_download(ot_backend *be, ot_stream s, void *d, const void *src, size_t n) {
    if (g_capture) { /* as cudaMemcpy to pageable memory inside a stream capture: an error, here a programmer's */
        fprintf(stderr, "onnx-train: cuda-emu: a download (%zu bytes) while a graph is being captured\n", n);
        abort();
    }
    guard_download(be, s, d, src, n);
}
static void emu_copy(ot_backend *be, void *d, const void *src, size_t n) {
    (void)be;
    if (!xfer_record(d, src, n, 0, X_COPY)) emu_copy_now(d, src, n);
}
static void emu_sync(ot_backend *be) {
    (void)be;
    if (g_capture) { fprintf(stderr, "onnx-train: cuda-emu: a device synchronisation while a graph is being captured\n"); abort(); }
}

static bool emu_graph_begin(ot_backend *be) {
    (void)be;
    if (g_capture) return false; /* one capture at a time on a thread */
    g_capture = calloc(1, sizeof *g_capture);
    return g_capture != NULL;
}
static ot_be_graph *emu_graph_end(ot_backend *be) {
    (void)be;
    ot_be_graph *g = g_capture;
    g_capture = NULL;
    return g;
}
static void emu_graph_launch(ot_backend *be, ot_be_graph *g) {
    (void)be;
    for (int i = 0; i < g->n; i++) g->v[i].run(g->v[i].ctx);
}
static void emu_graph_free(ot_backend *be, ot_be_graph *g) {
    (void)be;
    for (int i = 0; i < g->n; i++)
        if (g->v[i].drop) g->v[i].drop(g->v[i].ctx);
    free(g->v);
    free(g);
}

static const ot_backend_vtbl cuda_emu_vtbl = {
    .alloc = guard_alloc, .free = guard_free, .memset = emu_memset, .upload = emu_upload, .download = emu_download,
    .copy = emu_copy, .enter = cpu_nop, .leave = cpu_nop, .record = cpu_record, .wait = cpu_wait, .sync = emu_sync, .wait_host = cpu_wait_host,
    .host_alloc = cpu_alloc, .host_free = cpu_free,
    .graph_begin = emu_graph_begin, .graph_end = emu_graph_end, .graph_launch = emu_graph_launch, .graph_free = emu_graph_free,
};
#define EMU_DEVICES 8
static ot_backend cuda_emu[EMU_DEVICES];
static pthread_mutex_t cuda_emu_mu = PTHREAD_MUTEX_INITIALIZER;

ot_backend *ot_backend_cuda_emu(int ordinal, char *why, size_t n) {
    if (ordinal < 0 || ordinal >= EMU_DEVICES) {
        if (why && n) snprintf(why, n, "the CPU executor has devices 0..%d", EMU_DEVICES - 1);
        return NULL;
    }
    pthread_mutex_lock(&cuda_emu_mu);
    ot_backend *be = &cuda_emu[ordinal];
    if (!be->v) {
        be->kind = OT_DEV_CUDA;
        be->ordinal = ordinal;
        snprintf(be->name, sizeof be->name, "cuda:%d (executor)", ordinal);
        be->v = &cuda_emu_vtbl;
    }
    pthread_mutex_unlock(&cuda_emu_mu);
    return be;
}

/* ---- the GPU that --device N names ---- */
static ot_gpu_open_fn gpu_open;
static bool gpu_real;
void ot_backend_set_gpu(ot_gpu_open_fn open, bool real) { gpu_open = open; gpu_real = real; }
bool ot_backend_gpu_is_real(void) { return gpu_open && gpu_real; }

#ifndef ONNXT_HAVE_CUDA
ot_backend *ot_backend_cuda(int ordinal, char *why, size_t n) {
    (void)ordinal;
    if (why && n) snprintf(why, n, "this build has no CUDA backend (configure with the CUDA toolkit installed)");
    return NULL;
}
void *ot_backend_cuda_stream(ot_backend *be, ot_stream s) { (void)be; (void)s; return NULL; }
#endif

bool ot_guard_owns(const void *p) {
    pthread_mutex_lock(&G.mu);
    bool r = guard_find(p) >= 0;
    pthread_mutex_unlock(&G.mu);
    return r;
}

int ot_guard_live(void) {
    pthread_mutex_lock(&G.mu);
    int n = G.n;
    pthread_mutex_unlock(&G.mu);
    return n;
}

/* ---- names ---- */
const char *ot_backend_list(void) {
    if (gpu_open && gpu_real) return "cpu, cpu-guard, 0..N (CUDA GPUs)";
    if (gpu_open) return "cpu, cpu-guard, 0..7 (the CUDA backend on the CPU executor)";
#ifdef ONNXT_HAVE_CUDA
    return "cpu, cpu-guard, 0..N (a CUDA GPU's memory and streams; this binary links no CUDA kernels)";
#else
    return "cpu, cpu-guard";
#endif
}

ot_status ot_backend_get(const char *device, ot_backend **out, ot_error *err) {
    *out = NULL;
    char why[256];
    if (!device || !device[0]) { /* Ultralytics' default: the first GPU when there is one, else the CPU */
        ot_backend *be = gpu_open && gpu_real ? gpu_open(0, why, sizeof why) : NULL;
        *out = be ? be : ot_backend_cpu();
        return OT_OK;
    }
    if (strcmp(device, "cpu") == 0) { *out = ot_backend_cpu(); return OT_OK; }
    if (strcmp(device, "cpu-guard") == 0) { *out = ot_backend_cpu_guard(); return OT_OK; }
    const char *num = strncmp(device, "cuda:", 5) == 0 ? device + 5 : device;
    bool digits = *num != 0, comma = false;
    for (const char *c = num; *c; c++) {
        if (*c == ',') comma = true;
        else if (!isdigit((unsigned char)*c)) digits = false;
    }
    if (!digits) return ot_fail(err, OT_ERR_INVALID, "--device '%s': expected one of %s", device, ot_backend_list());
    if (comma)
        return ot_fail(err, OT_ERR_UNSUPPORTED, "--device %s: one device at a time for this command (a list is for train: one process per device)",
                       device);
    ot_backend *be = gpu_open ? gpu_open(atoi(num), why, sizeof why) : ot_backend_cuda(atoi(num), why, sizeof why);
    if (be) { *out = be; return OT_OK; }
    return ot_fail(err, OT_ERR_UNSUPPORTED, "--device %s: %s; devices here: cpu, cpu-guard", device, why);
}

/* ---- device lists (train --device 0,1) ---- */
int ot_device_list_count(const char *device, ot_error *err) {
    if (!device || !strchr(device, ',')) return 0;
    const char *c = strncmp(device, "cuda:", 5) == 0 ? device + 5 : device;
    int n = 0;
    long seen[64];
    for (;;) {
        if (!isdigit((unsigned char)*c)) break;
        char *end;
        long v = strtol(c, &end, 10);
        for (int k = 0; k < n; k++)
            if (seen[k] == v) {
                ot_fail(err, OT_ERR_INVALID, "--device %s: device %ld is listed twice (one process per device)", device, v);
                return -1;
            }
        if (n == (int)(sizeof seen / sizeof seen[0])) {
            ot_fail(err, OT_ERR_INVALID, "--device %s: more than %d devices", device, n);
            return -1;
        }
        seen[n++] = v;
        c = end;
        if (*c == 0) return n;
        if (*c != ',') break;
        c++;
    }
    ot_fail(err, OT_ERR_INVALID, "--device '%s': expected one device (%s) or a list of GPU numbers such as 0,1", device, ot_backend_list());
    return -1;
}

ot_status ot_device_list_pick(const char *device, int k, char *out, size_t n, ot_error *err) {
    int count = ot_device_list_count(device, err);
    if (count < 0) return OT_ERR_INVALID;
    if (count == 0) return ot_fail(err, OT_ERR_INVALID, "--device %s: not a list of devices", device);
    if (k < 0 || k >= count)
        return ot_fail(err, OT_ERR_INVALID, "--device %s lists %d devices, and this is process %d on its machine (one process per listed device)",
                       device, count, k);
    const char *c = strncmp(device, "cuda:", 5) == 0 ? device + 5 : device;
    for (int i = 0; i < k; i++) c = strchr(c, ',') + 1;
    snprintf(out, n, "%ld", strtol(c, NULL, 10));
    return OT_OK;
}
