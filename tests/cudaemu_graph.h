/* cudaemu_graph.h: helpers shared by the cudaemu tests (tests/test_cudaemu_*.c):
 * a random generator, device buffers on the guard (the executor's memory),
 * small graphs of CPU ops with graph inputs x0..x{k-1} and one output, and a
 * bitwise compare. */
#ifndef OT_TEST_CUDAEMU_GRAPH_H
#define OT_TEST_CUDAEMU_GRAPH_H
#include "core/backend.h"
#include "core/runtime/autograd.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/ops.h"
#include "testutil.h"
#include <stdio.h>
#include <string.h>

static inline uint64_t rnext(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline float rfloat(uint64_t *s) { return (float)((double)(rnext(s) >> 11) * 0x1p-53 * 4.0 - 2.0); } /* [-2, 2) */
static inline double runi(uint64_t *s) { return (double)(rnext(s) >> 11) * 0x1p-53; }                    /* [0, 1) */
static inline float rsym1(uint64_t *s) { return (float)(runi(s) * 2.0 - 1.0); }                          /* [-1, 1) */

/* Guard (device) memory holding a copy of host (zeroed when host is NULL), and a host copy of device memory. */
static inline void *dev_from(const void *host, size_t bytes) {
    ot_backend *g = ot_backend_cpu_guard();
    void *d = ot_be_alloc(g, bytes ? bytes : 1);
    ck_assert_ptr_nonnull(d);
    if (host) ot_be_upload(g, d, host, bytes);
    else ot_be_memset(g, d, 0, bytes);
    return d;
}
static inline void *host_from(const void *dev, size_t bytes) {
    void *h = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(h);
    if (bytes) ot_be_download(ot_backend_cpu_guard(), h, dev, bytes);
    return h;
}

static inline ot_attr *cg_attr(ot_node *n, const char *name, ot_attr_type type) {
    n->attr = realloc(n->attr, sizeof(ot_attr) * (size_t)(n->n_attr + 1));
    ot_attr *a = &n->attr[n->n_attr++];
    memset(a, 0, sizeof *a);
    a->name = ot_strdup(name);
    a->type = type;
    return a;
}

/* A graph with n_in inputs "x0".. and no nodes yet. */
static inline ot_graph *cg_graph(int n_in) {
    ot_graph *g = ot_graph_create();
    ck_assert_ptr_nonnull(g);
    g->path = ot_strdup("cudaemu.onnx");
    g->opset = 13;
    g->inputs = malloc(sizeof(int) * (size_t)n_in);
    for (int i = 0; i < n_in; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "x%d", i);
        int v = ot_graph_value(g, nm);
        g->values[v].flags |= OT_V_INPUT;
        g->inputs[g->n_inputs++] = v;
    }
    return g;
}

/* Adds node op(in...) -> value named out; returns the node. */
static inline ot_node *cg_node(ot_graph *g, const char *op, const char *const *in, int n_in, const char *out) {
    int vin[64];
    for (int i = 0; i < n_in; i++) vin[i] = ot_graph_value(g, in[i]);
    int vo = ot_graph_value(g, out);
    ot_node *n = ot_graph_add_node(g);
    ck_assert_ptr_nonnull(n);
    n->name = ot_strdup(out);
    n->op_type = ot_strdup(op);
    n->domain = ot_strdup("");
    n->op = ot_op_lookup(op, "");
    n->n_in = n_in;
    n->n_out = 1;
    n->in = malloc(sizeof(int) * (size_t)n_in);
    n->out = malloc(sizeof(int));
    for (int i = 0; i < n_in; i++) n->in[i] = vin[i];
    n->out[0] = vo;
    return n;
}

static inline void cg_finish(ot_graph *g, const char *out) {
    int v = ot_graph_value(g, out);
    g->values[v].flags |= OT_V_OUTPUT;
    g->outputs = malloc(sizeof(int));
    g->outputs[g->n_outputs++] = v;
    ot_error e;
    ck_assert_msg(ot_graph_finalize(g, &e) == OT_OK, "%s", e.msg);
}

/* Runs g on the CPU autograd: y (ny floats) and each input's gradient gx[i]
 * (caller-allocated, nx[i] floats) for output gradient dy. */
static inline void cg_run(ot_graph *g, const ot_shape *shapes, const float *const *x, const float *dy, float *y, int64_t ny,
                   float **gx, const int64_t *nx) {
    ot_autograd *a;
    ot_error e;
    ck_assert_msg(ot_autograd_create(g, shapes, NULL, true, &a, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_autograd_forward(a, x, &e) == OT_OK, "%s", e.msg);
    memcpy(y, ot_autograd_data(a, g->outputs[0]), sizeof(float) * (size_t)ny);
    memcpy(ot_autograd_output_grad(a, 0), dy, sizeof(float) * (size_t)ny);
    ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s", e.msg);
    for (int i = 0; i < g->n_inputs; i++)
        if (gx[i]) memcpy(gx[i], ot_autograd_grad(a, g->inputs[i]), sizeof(float) * (size_t)nx[i]);
    ot_autograd_destroy(a);
}

static inline int first_diff(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return (int)i;
    return -1;
}
#define CK_SAME(got, ref, n, ...)                                                                              \
    do {                                                                                                       \
        int i_ = first_diff((got), (ref), (n));                                                                \
        if (i_ >= 0) {                                                                                         \
            char m_[256];                                                                                      \
            snprintf(m_, sizeof m_, __VA_ARGS__);                                                              \
            ck_abort_msg("%s: [%d] = %.9g (0x%08x), CPU %.9g", m_, i_, (got)[i_], tu_bits((got)[i_]), (ref)[i_]); \
        }                                                                                                      \
    } while (0)
static inline unsigned tu_bits(float f) { unsigned u; memcpy(&u, &f, 4); return u; }

/* A device buffer of n floats at float offset off (0: 16-byte aligned), NaN-filled, optionally uploaded. */
static inline float *dbuf(float **base, int64_t n, int off, const float *src) {
    ot_backend *G = ot_backend_cpu_guard();
    *base = ot_be_alloc(G, sizeof(float) * (size_t)(n + 4));
    ot_be_memset(G, *base, 0xff, sizeof(float) * (size_t)(n + 4));
    if (src && n) ot_be_upload(G, *base + off, src, sizeof(float) * (size_t)n);
    return *base + off;
}
static inline void dget(float *dst, const float *d, int64_t n) {
    if (n) ot_be_download(ot_backend_cpu_guard(), dst, d, sizeof(float) * (size_t)n);
}
static inline void dfree(float *base) { ot_be_free(ot_backend_cpu_guard(), base); }

/* A kernel's half-precision output (--amp, core/runtime/passes.h ot_pass_half_act): run(ctx, y, bf16) writes the
 * n values into the device buffer y as half (bf16 0) or bfloat16 (1); they must be the bits amp.cu's conversion
 * gives for `want`, the same kernel's float output on the device. Both types are checked. */
static inline void cg_check_half_out(void (*run)(void *ctx, uint16_t *y, int bf16), void *ctx, const float *want, int64_t n,
                                     const char *what) {
    ot_backend *G = ot_backend_cpu_guard();
    for (int bf = 0; bf <= 1; bf++) {
        uint16_t *dh = ot_be_alloc(G, 2 * (size_t)n), *dr = ot_be_alloc(G, 2 * (size_t)n);
        run(ctx, dh, bf);
        if (bf) ot_cuda_f32_to_bf16(dr, want, n, NULL);
        else ot_cuda_f32_to_f16(dr, want, n, NULL);
        uint16_t *hh = malloc(2 * (size_t)n), *hr = malloc(2 * (size_t)n);
        ot_be_download(G, hh, dh, 2 * (size_t)n);
        ot_be_download(G, hr, dr, 2 * (size_t)n);
        ck_assert_msg(memcmp(hh, hr, 2 * (size_t)n) == 0, "%s (bf16 %d): not the float result converted", what, bf);
        free(hh); free(hr);
        ot_be_free(G, dh); ot_be_free(G, dr);
    }
}
#endif
