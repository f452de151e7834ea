/* optim.h: the optimizers of Ultralytics train.py (smart_optimizer: SGD with
 * Nesterov momentum, Adam, AdamW) over the autograd's parameter slab, with
 * its three parameter groups, and the model EMA (utils/torch_utils.py ModelEMA). */
#ifndef OT_OPTIM_H
#define OT_OPTIM_H

#include "../core/runtime/autograd.h"
#include "../kernels/slab.h"

typedef enum ot_opt_kind { OT_OPT_SGD = 0, OT_OPT_ADAM, OT_OPT_ADAMW } ot_opt_kind;

/* Groups in smart_optimizer's order: 0 biases (no decay), 1 weights (decay), 2 BN weights (no decay). */
enum { OT_GROUP_BIAS = 0, OT_GROUP_WEIGHT = 1, OT_GROUP_BN = 2, OT_NGROUPS = 3 };

typedef struct ot_optimizer {
    ot_opt_kind kind;
    ot_autograd *ag;
    int n;                  /* parameter tensors */
    int *var;               /* index into ag's variables */
    int *group;             /* per tensor */
    float *m1, *m2;         /* momentum buffer / Adam moments, slab layout (backend memory) */
    const ot_slab_kernels *k; /* the device's multi-tensor kernels */
    ot_slab_seg *seg;       /* backend memory: the stepped tensors (n), then every parameter (n_params, for clipping) */
    int n_params;
    bool seg_dirty;         /* o->var changed (freeze): upload the table before the next step */
    float *clip;            /* backend memory: clip_grad_norm's total norm and coefficient */
    void *clip_scratch;     /* backend memory: the device clip kernel's scratch (slab.h clip_scratch), NULL on the CPU */
    size_t clip_scratch_bytes;
    bool clip_pending;      /* fused devices: clip computed the coefficient only; the next step scales on read */
    ot_slab_seg *seg_ema;   /* fused devices, backend memory: the stepped tensors, then EMA-only segments covering
                             * the rest of the slab (ot_optimizer_step_ema) */
    int n_seg_ema;
    long steps;             /* optimizer steps taken */
    const ot_amp_state *amp; /* --amp fp16: GradScaler's device state; the fused step skips on its found_inf */
    ot_step_dyn *dyn_host;  /* ot_optimizer_use_graphs: the fused step's per-step values, page-locked host memory, */
    ot_step_dyn *dyn_dev;   /* uploaded into backend memory by the step itself (so a CUDA graph replays the upload) */
    double lr[OT_NGROUPS], initial_lr[OT_NGROUPS], momentum[OT_NGROUPS], weight_decay[OT_NGROUPS];
    double beta2, eps;
} ot_optimizer;

/* lr and momentum start at lr0 and momentum for every group; decay goes to group 1.
 * (For Adam/AdamW momentum is beta1, as smart_optimizer sets.) */
ot_status ot_optimizer_create(ot_autograd *ag, ot_opt_kind kind, double lr0, double momentum, double decay,
                              ot_optimizer **out, ot_error *err);
void ot_optimizer_destroy(ot_optimizer *o);
/* Leave variable var_index (index into ag's variables) out of every step
 * (train.py --freeze: requires_grad False). */
void ot_optimizer_freeze(ot_optimizer *o, int var_index);
/* One step from the accumulated gradients (torch.optim semantics, float32):
 * one multi-tensor kernel on the device. */
void ot_optimizer_step(ot_optimizer *o);
/* torch.nn.utils.clip_grad_norm_(params, max_norm) over every parameter, as
 * train.py calls it before every step: total = L2 norm of the per-tensor L2
 * norms; every gradient is multiplied by min(1, max_norm / (total + 1e-6)).
 * The total and the coefficient stay in backend memory (o->clip). */
void ot_optimizer_clip_grad_norm(ot_optimizer *o, double max_norm);
/* The last clip's total norm and coefficient, copied to the host (tests, logs). */
void ot_optimizer_grad_norm(const ot_optimizer *o, double *total, double *coef);
const char *ot_opt_name(ot_opt_kind k);

typedef struct ot_ema {
    ot_backend *be;
    float *slab;            /* EMA copy of every variable (parameters and BN buffers), backend memory */
    size_t n;
    long updates;
    double decay, tau;      /* 0.9999, 2000 */
} ot_ema;

/* A copy of the current variables (ModelEMA(model), updates 0). */
ot_status ot_ema_create(const ot_autograd *ag, ot_ema **out, ot_error *err);
void ot_ema_destroy(ot_ema *e);
/* updates += 1; d = decay * (1 - exp(-updates / tau)); ema = d * ema + (1 - d) * model. */
void ot_ema_update(ot_ema *e, const ot_autograd *ag);
/* ot_optimizer_step then ot_ema_update (ema NULL: the step alone), the same bits; on a device with fused
 * kernels (slab.h sgd_fused) one launch does both, and scales the gradients by a pending clip coefficient on
 * read: one pass over the weights. */
void ot_optimizer_step_ema(ot_optimizer *o, ot_ema *ema);
/* GradScaler (train/amp.h): later fused steps take the scaler's device state and skip where its found_inf is
 * set (p and the optimizer state unchanged, the EMA still updated, as train.py's scaler.step then ema.update);
 * NULL: never skip. Needs a device with fused kernels. */
void ot_optimizer_set_amp(ot_optimizer *o, const ot_amp_state *amp);
/* Make the fused step replayable from a CUDA graph: its per-step values (learning rates, momentum, first step,
 * bias corrections, EMA decay) go from page-locked host memory through an upload queued with the step into
 * backend memory that the kernel reads, instead of kernel arguments. Same bits. A step's host memory is
 * rewritten by the next step: call it only where each step completes before the next is queued (the trainer
 * waits for each step's loss). Devices without fused kernels: nothing to do. */
ot_status ot_optimizer_use_graphs(ot_optimizer *o, ot_error *err);
/* The host half of ot_optimizer_step_ema for a step whose device half replays from a graph captured from an
 * earlier ot_optimizer_step_ema (after ot_optimizer_use_graphs, with the same clip and EMA): the step count, the
 * EMA's update count and the per-step values the replayed upload will read. */
void ot_optimizer_step_ema_host(ot_optimizer *o, ot_ema *ema);
/* The step just taken was skipped (read from the scaler after it): the step count goes back, so SGD's first
 * step and Adam's bias corrections count the steps taken, as torch.optim's state does. */
void ot_optimizer_unstep(ot_optimizer *o);

#endif
