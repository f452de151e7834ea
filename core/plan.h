/* plan.h: a graph planned for concrete input shapes.
 *
 * Planning infers the dtype and shape of every value, folds every node whose
 * inputs are constant (Constant, Shape, Gather, Cast, ConstantOfShape and any
 * other op fed only by constants), and lays the remaining activations out in one
 * arena by liveness: values whose lifetimes do not overlap share bytes, view ops
 * (Reshape, Squeeze, ...) alias their input. Nothing is allocated by a run. */
#ifndef OT_PLAN_H
#define OT_PLAN_H

#include "backend.h"
#include "graph.h"

typedef struct ot_plan {
    const ot_graph *g;
    ot_backend *be;        /* the device that owns the plan's memory and runs its kernels */
    int nv;
    ot_dtype *dtype;       /* per value */
    ot_shape *shape;       /* per value, concrete */
    void **data;           /* per value: backend memory (arena, constant copy, caller's variable); host only while planning */
    void **host;           /* per value: host data of constants (initializers, folded values), for infer; NULL otherwise */
    unsigned char *is_const;
    void **owned;          /* per value: folded data owned by the plan */
    void **params;         /* per node: op-specific parsed attributes */
    int n_steps;
    int *steps;            /* node ids run at run time, in order */
    int *alias;            /* per value: value whose storage it shares, or itself */
    size_t *offset;        /* per value: byte offset in the arena (roots only) */
    unsigned char *arena;  /* backend memory: activations (and, in training plans, gradients) laid out by lifetime */
    size_t arena_bytes;
    unsigned char *consts; /* backend memory: the constants runtime steps read */
    size_t consts_bytes;
    size_t const_bytes;    /* folded constant bytes */
    unsigned flags;
    void **grad;           /* per value gradient buffer (training plans), NULL otherwise */
    unsigned *gset;        /* training plans: per node, the input slots whose gradient its backward
                            * writes (=) instead of adding (the only writer; not zeroed beforehand) */
    void **state;          /* backend blocks from ot_plan_state, freed with the plan */
    int n_state, cap_state;
    size_t ws_bytes;       /* one scratch workspace shared by all ops (im2col, ...) */
    void *ws;              /* an op raises ws_bytes in infer or prepare and uses ws in forward / backward */
    void (*bn_sum)(double *buf, int64_t n); /* training plans: BatchNorm's element-wise sum over data-parallel
                            * ranks (synchronised statistics), NULL: local statistics (ot_autograd_set_bn_sync) */
    ot_status (*bn_dev_sum)(void *ctx, double *dev, int64_t n, ot_error *err); /* with bn_sum: the same sum on the
                            * device's memory, enqueued on its compute stream (NCCL); NULL: through the host */
    void *bn_dev_ctx;
    double *prof;          /* NULL, or 2 per node (forward, backward seconds, summed) + 1 (gradient zeroing): bench --profile */
} ot_plan;

/* The plan's one memory timeline. Items 0..nv-1 are the values' activations
 * (times are forward steps 0..n_steps-1); a training plan appends its gradient
 * items and backward times (core/runtime/autograd.c) and commits once. */
typedef struct ot_timeline {
    int n, end;            /* items; the last time (graph outputs live to it) */
    int *birth, *death;    /* inclusive; birth < 0: no storage of its own */
    size_t *size, *off;
} ot_timeline;

ot_status ot_timeline_init(ot_timeline *t, int n_items, ot_error *err);
void ot_timeline_free(ot_timeline *t);
/* Activation lifetimes over the forward steps: views alias their input
 * (p->alias), graph inputs are born at step 0 (the batch slot), a value dies
 * at the last step that reads it, graph outputs live to t->end. */
void ot_plan_lifetimes(ot_plan *p, ot_timeline *t);
/* Place every item first-fit, allocate the arena from the plan's backend,
 * point the activations at it (item offsets stay in t->off), run each step's
 * prepare, then allocate the workspace and upload the constants runtime steps
 * read. what: "activations" or "activations and gradients", for messages. */
ot_status ot_plan_commit(ot_plan *p, ot_timeline *t, const char *what, ot_error *err);

double ot_plan_clock(void); /* monotonic seconds */
/* For planner passes (core/runtime/passes.c): takes a runtime node off the
 * steps (another node computes what it did, fused); false if it is not a step. */
bool ot_plan_unstep(ot_plan *p, int node);

/* shapes: one per graph input (NULL: declared shapes, which must be static). */
ot_status ot_plan_create(const ot_graph *g, const ot_shape *shapes, ot_plan **out, ot_error *err);
/* OT_PLAN_NO_MEMORY: infer and fold only, no arena (for validation and info).
 * OT_PLAN_TRAIN: a training plan (train/autograd.c lays out memory and runs the
 * backward); BatchNormalization runs in training mode. */
#define OT_PLAN_NO_MEMORY 1u
#define OT_PLAN_TRAIN 2u
ot_status ot_plan_create_ex(const ot_graph *g, const ot_shape *shapes, unsigned flags, ot_plan **out, ot_error *err);
/* The same with per-value variables: initializers whose data the caller owns
 * and changes (trainable parameters, running statistics). They are never
 * folded; p->data[v] is NULL until the caller points it at its storage. */
ot_status ot_plan_create_vars(const ot_graph *g, const ot_shape *shapes, unsigned flags, const unsigned char *variable,
                              ot_plan **out, ot_error *err);
/* Same, on a backend (NULL: the CPU). */
ot_status ot_plan_create_on(ot_backend *be, const ot_graph *g, const ot_shape *shapes, unsigned flags, const unsigned char *variable,
                            ot_plan **out, ot_error *err);
/* Runs every runtime step's prepare (kernels/ops.h ot_op_impl) for the plan's
 * device; errors are prefixed with the node label. Called by ot_plan_commit
 * after the layout and before the workspace is allocated. */
ot_status ot_plan_prepare(ot_plan *p, ot_error *err);
/* inputs: one host float32 buffer per graph input, of the planned shape,
 * uploaded into the plan's fixed input slots (NULL: the slots already hold
 * the batch, e.g. from ot_plan_set_input); then every step runs on the backend. */
ot_status ot_plan_run(ot_plan *p, const float *const *inputs, ot_error *err);
/* Upload host data into graph input i's slot. */
void ot_plan_set_input(ot_plan *p, int i, const float *host);
/* Download value v (its planned shape and dtype) into host memory. */
void ot_plan_download(ot_plan *p, int v, void *host);
void ot_plan_destroy(ot_plan *p);

#endif
