/* autograd.h: reverse-mode differentiation over a planned graph.
 *
 * One static plan for forward and backward: shapes and folding come from the
 * planner (core/plan.c, OT_PLAN_TRAIN); the backward visits the forward steps in
 * reverse; activations live only until the last backward step that reads them
 * (each op's bwd_reads); activation and gradient buffers share one arena laid
 * out by lifetime on the joint timeline (core/layout.c). Trainable parameters
 * and buffers (BN running statistics) live in one contiguous slab, their
 * gradients in another with the same layout (for multi-tensor optimizers and
 * EMA). Gradients accumulate until ot_autograd_zero_grad. */
#ifndef OT_AUTOGRAD_H
#define OT_AUTOGRAD_H

#include "../plan.h"

typedef enum ot_var_kind { OT_VAR_CONST = 0, OT_VAR_PARAM = 1, OT_VAR_BUFFER = 2 } ot_var_kind;

typedef struct ot_autograd {
    ot_backend *be;        /* owns the slabs and the plan's memory */
    ot_plan *p;
    const ot_graph *g;
    /* variables (params and buffers), in graph value order */
    int n_vars;
    int *var_vid;          /* value id of each variable */
    unsigned char *kind;   /* per value: ot_var_kind */
    size_t *var_off;       /* float offset of each variable in the slab */
    float *slab;           /* all variable data (backend memory) */
    float *grad_slab;      /* gradients, same layout (buffers' entries stay zero; backend memory) */
    size_t slab_floats;
    /* backward schedule */
    int n_bsteps;
    int *bsteps;           /* node ids, reverse of the forward */
    int *zero_start;       /* CSR per backward step: gradient roots to zero first */
    int *zero_vid;
    size_t arena_bytes;    /* the plan's arena: activations and gradients on one timeline */
    unsigned char *requires_grad; /* per value */
    bool shared_vars;      /* slab and grad_slab belong to another autograd */
    /* gradients that become final: CSR over n_bsteps + 1 slots; slot 0 before the
     * first backward step (variables no step writes), slot b + 1 after step b */
    int *final_start;
    int *final_var;        /* variable indices (into var_vid / var_off) */
    void (*grad_ready)(void *ctx, int var);
    void *grad_ready_ctx;
} ot_autograd;

/* Default kinds: float initializers feeding Conv weight/bias and BatchNormalization
 * scale/bias are parameters; BN mean/var are buffers; the rest constant. */
void ot_autograd_default_kinds(const ot_graph *g, unsigned char *kind);

/* kind: per value (NULL: defaults). input_grads: also compute gradients of the
 * graph inputs (for tests). Variable data starts as the initializers' values. */
ot_status ot_autograd_create(const ot_graph *g, const ot_shape *shapes, const unsigned char *kind, bool input_grads,
                             ot_autograd **out, ot_error *err);
/* The same on a backend (NULL: the CPU): slabs, arena and kernels there. */
ot_status ot_autograd_create_on(ot_backend *be, const ot_graph *g, const ot_shape *shapes, const unsigned char *kind,
                                bool input_grads, ot_autograd **out, ot_error *err);
void ot_autograd_destroy(ot_autograd *a);
/* Make dst (same graph, another input shape) use src's variable and gradient
 * slabs, so batches of different shapes (a short last batch, rect batches)
 * train one set of weights. src must outlive dst. Also gives dst src's
 * BatchNorm synchronisation (ot_autograd_set_bn_sync). */
ot_status ot_autograd_share_vars(ot_autograd *dst, ot_autograd *src, ot_error *err);

/* Forward (BN in training mode). inputs: one host float32 buffer per graph
 * input, uploaded into the plan's input slots (NULL: already there). */
ot_status ot_autograd_forward(ot_autograd *a, const float *const *inputs, ot_error *err);
/* Gradient buffer of graph output k (backend memory): fill it completely
 * after the forward and before ot_autograd_backward (a forward reuses its bytes). */
float *ot_autograd_output_grad(ot_autograd *a, int k);
/* Backward: accumulates into the parameter gradients; input gradients (with
 * input_grads) are recomputed by each backward. */
ot_status ot_autograd_backward(ot_autograd *a, ot_error *err);
void ot_autograd_zero_grad(ot_autograd *a);
/* A hook for gradient all-reduce overlapped with the backward: during each
 * ot_autograd_backward, cb(ctx, k) is called once for every variable k (an
 * index into var_vid / var_off, buffers included) as soon as the backward steps
 * queued so far have written the last of its gradient: after the last backward
 * step that writes it (before the first step for variables none writes), from
 * the host, in the same order on every run of this autograd. The steps after it
 * never touch grad_slab[var_off[k] ...]. NULL: no calls (the default). */
void ot_autograd_set_grad_ready(ot_autograd *a, void (*cb)(void *ctx, int var), void *ctx);

/* Synchronised BatchNorm for data-parallel training: with a sum function
 * (element-wise, in place, over every rank: ot_dist_sum_f64), this autograd's
 * BatchNormalization nodes take their batch statistics over every rank's batch
 * (torch SyncBatchNorm); NULL (the default): local statistics. Every rank must
 * run the same plans in the same order. */
void ot_autograd_set_bn_sync(ot_autograd *a, void (*sum)(double *buf, int64_t n));
/* With ot_autograd_set_bn_sync's host sum set, a device whose BatchNorm row
 * can (CUDA) sums the statistics in device memory instead: sum(ctx, dev, n, err)
 * enqueues the in-place sum of n doubles over the ranks on the compute stream
 * (NCCL; kernels/device_kernels.h's allreduce sum_f64). NULL: through the host. */
void ot_autograd_set_bn_sync_device(ot_autograd *a, ot_status (*sum)(void *ctx, double *dev, int64_t n, ot_error *err),
                                    void *ctx);

/* Data / gradient of any value (NULL when it has none): backend memory, for
 * kernels and backend calls only. */
float *ot_autograd_data(ot_autograd *a, int vid);
float *ot_autograd_grad(ot_autograd *a, int vid);
/* Copies of a value's data / gradient in host memory (its planned size). */
void ot_autograd_download(ot_autograd *a, int vid, float *host);
void ot_autograd_download_grad(ot_autograd *a, int vid, float *host);

#endif
