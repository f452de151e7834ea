/* ops.h: the op table, the ONLY place that lists ops, and the context a
 * kernel sees. Adding an op: one family file (kernels/<family>.c) with its
 * definition row and its CPU implementation row, both rows listed in
 * kernels/optable.c, one test (docs/ADDING_AN_OP.md).
 *
 * An op is split in two:
 *   ot_op_def   what the op IS, the same on every device: arity, params size,
 *               infer (validation, output dtypes and shapes, parsed attributes
 *               in c->params), flags, and which values its backward reads.
 *   ot_op_impl  how one device RUNS it: prepare / forward / backward / release.
 *               The CPU table is built in (kernels/optable.c); the cpu-guard
 *               device runs the same CPU kernels over guarded memory; the
 *               CUDA table is registered at start-up by the CUDA kernel
 *               library (kernels/device_kernels.h, kernels/cuda/cuda_tables.c).
 *               A plan that needs a missing implementation fails at creation,
 *               naming the node, the op and the device.
 * Errors name what was expected; the planner prefixes file, node and op. */
#ifndef OT_OPS_H
#define OT_OPS_H

#include "../core/plan.h"

typedef struct ot_kctx {
    ot_plan *p;
    const ot_node *n;
    int opset;
    void *params;
    ot_error *err;
} ot_kctx;

/* Hot element loops compiled also for AVX-512 and AVX2, picked at load time
 * (gcc's target_clones). C11 mode keeps -ffp-contract=off, so every clone
 * rounds the same way: results do not depend on the machine. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(OT_NO_TARGET_CLONES)
#define OT_KERNEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define OT_KERNEL_CLONES
#endif

enum {
    OT_OPF_ALIAS = 1u,       /* output 0 is a view of input 0 (same bytes) */
    OT_OPF_FOLD_ONLY = 2u,   /* must be folded at plan time (inputs constant) */
    OT_OPF_SHAPE_ONLY = 4u,  /* reads only its input's shape (Shape): always foldable */
    OT_OPF_GRAD_SET = 8u,    /* backward honours ot_gin_set (the autograd then skips zeroing those gradients) */
};

/* Values an op's backward reads (ot_op_def.bwd_reads): activations kept alive for it. */
#define OT_BWD_IN(i) (1u << (i))
#define OT_BWD_OUT(k) (1u << (16 + (k)))

/* The device-neutral definition of an op (one row per op, labelled fields).
 *   infer(c): validates attributes and inputs, sets every output's dtype and
 *             shape with ot_set_out(), and may fill c->params (params_size
 *             bytes, zeroed) with parsed attributes for the implementations.
 *             Constant inputs (weights, shape tensors) are readable here, and
 *             only here. It may raise c->p->ws_bytes (the shared workspace). It
 *             builds no device or library state: that is prepare's work. */
typedef struct ot_op_def {
    const char *name;
    int min_in, max_in;      /* max_in -1: variadic */
    int min_out, max_out;    /* max_out -1: variadic */
    size_t params_size;
    ot_status (*infer)(ot_kctx *c);
    unsigned flags;          /* OT_OPF_* */
    unsigned bwd_reads;      /* OT_BWD_IN / OT_BWD_OUT: activations the backward reads (kept alive for it) */
} ot_op_def;

/* One device's implementation of an op (one row per op and device, labelled fields).
 *   prepare(c)  optional. Runs once per runtime step of a plan, after infer and
 *               after the activation arena is laid out, before the shared
 *               workspace is allocated: it may raise c->p->ws_bytes. Builds
 *               library state in c->params (oneDNN primitives, later cuDNN
 *               descriptors); in training plans (ot_training) also what the
 *               backward needs. Must not read or write tensor memory (data
 *               pointers are backend memory). Never called for folded nodes.
 *   forward(c)  computes the outputs from the inputs (NCHW, row-major). The CPU
 *               forward also folds constants at plan time, on host memory,
 *               without prepare (every plan folds on the CPU).
 *   backward(c) optional (NULL: the op cannot be trained through). Given the
 *               gradients of the outputs (ot_gout, NULL when an output gets
 *               none: treat as zero), ADD the gradients of the inputs that need
 *               one (ot_gin non-NULL) -- backward accumulates, so a value used
 *               twice gets the sum (unless ot_gin_set says it is the only
 *               writer: see OT_OPF_GRAD_SET). Runs after the forward of the same
 *               plan; may read the inputs/outputs named in bwd_reads and anything
 *               infer or prepare saved in params or plan state (ot_plan_state).
 *               For OT_OPF_ALIAS ops the input and output gradients may share
 *               bytes: then there is nothing to do.
 *   release(params) optional. Frees what prepare attached to params (library
 *               handles); called by ot_plan_destroy before params itself is
 *               freed, also when prepare never ran or failed halfway. */
typedef struct ot_op_impl {
    ot_status (*prepare)(ot_kctx *c);
    ot_status (*forward)(ot_kctx *c);
    ot_status (*backward)(ot_kctx *c);
    void (*release)(void *params);
} ot_op_impl;

/* Table lookup; -1 when the op is not supported. domain "" or "ai.onnx". */
int ot_op_lookup(const char *op_type, const char *domain);
const ot_op_def *ot_op_get(int index);
int ot_op_count(void);
/* Op `index`'s implementation on a device kind: OT_DEV_CPU and OT_DEV_CPU_GUARD
 * share the CPU table; other kinds take their registered table
 * (kernels/device_kernels.h); NULL when the device has none. */
const ot_op_impl *ot_op_impl_get(int index, ot_device_kind dev);

/* ---- accessors for kernels ---- */
static inline bool ot_has_in(const ot_kctx *c, int i) { return i < c->n->n_in && c->n->in[i] >= 0; }
static inline int ot_in_vid(const ot_kctx *c, int i) { return c->n->in[i]; }
static inline const ot_shape *ot_ishape(const ot_kctx *c, int i) { return &c->p->shape[c->n->in[i]]; }
static inline ot_dtype ot_idtype(const ot_kctx *c, int i) { return c->p->dtype[c->n->in[i]]; }
/* Constant data of input i, or NULL when it is computed at run time. */
static inline const void *ot_iconst(const ot_kctx *c, int i) {
    return ot_has_in(c, i) && c->p->is_const[c->n->in[i]] ? c->p->host[c->n->in[i]] : NULL;
}
static inline const void *ot_in(const ot_kctx *c, int i) { return c->p->data[c->n->in[i]]; }
static inline const float *ot_inf(const ot_kctx *c, int i) { return (const float *)c->p->data[c->n->in[i]]; }
static inline bool ot_has_out(const ot_kctx *c, int i) { return i < c->n->n_out && c->n->out[i] >= 0; }
static inline void *ot_out(const ot_kctx *c, int i) { return c->p->data[c->n->out[i]]; }
static inline float *ot_outf(const ot_kctx *c, int i) { return (float *)c->p->data[c->n->out[i]]; }
static inline const ot_shape *ot_oshape(const ot_kctx *c, int i) { return &c->p->shape[c->n->out[i]]; }

/* Gradient buffers (training plans only; NULL when none is needed). */
static inline float *ot_gin(const ot_kctx *c, int i) {
    return ot_has_in(c, i) && c->p->grad ? (float *)c->p->grad[c->n->in[i]] : NULL;
}
/* True when this node is the only writer of input i's gradient and its op has
 * OT_OPF_GRAD_SET: the backward must then WRITE (=) every element of ot_gin(c, i)
 * instead of adding (the buffer was not zeroed). */
static inline bool ot_gin_set(const ot_kctx *c, int i) {
    return c->p->gset && i < 32 && ((c->p->gset[c->n - c->p->g->nodes] >> i) & 1u);
}
static inline const float *ot_gout(const ot_kctx *c, int k) {
    return ot_has_out(c, k) && c->p->grad ? (const float *)c->p->grad[c->n->out[k]] : NULL;
}
/* Training plan: BatchNormalization uses batch statistics and updates its
 * running statistics in place (PyTorch semantics); see core/plan.h. */
static inline bool ot_training(const ot_kctx *c) { return (c->p->flags & OT_PLAN_TRAIN) != 0; }
/* Synchronised BatchNorm (data-parallel training): the plan's element-wise sum
 * over ranks (core/plan.h bn_sum), or NULL for local batch statistics. */
static inline void (*ot_bn_sum(const ot_kctx *c))(double *, int64_t) { return c->p->bn_sum; }
/* Zeroed memory owned by the plan (freed with it), for state an op keeps
 * between its forward and backward (batch statistics, argmax, ...). Call from infer. */
void *ot_plan_state(ot_kctx *c, size_t bytes);

/* Set output i's dtype and shape (checks sizes; ignores omitted outputs). */
ot_status ot_set_out(ot_kctx *c, int i, ot_dtype t, const ot_shape *s);
/* Require input i to have one of the dtypes (OT_UNDEF-terminated list). */
ot_status ot_require_dtype(ot_kctx *c, int i, const ot_dtype *allowed);
ot_status ot_require_float(ot_kctx *c, int i);   /* float32 */
/* Read a constant int64/int32 input as int64 values into v (at most max); count or error. */
ot_status ot_const_ints(ot_kctx *c, int i, int64_t *v, int64_t max, int64_t *count);
/* Normalise an axis in [-rank, rank) to [0, rank). */
ot_status ot_axis(ot_kctx *c, int64_t axis, int rank, int64_t *out);

#endif
