/* slab.h: the multi-tensor kernels of training (optimizer steps, the model
 * EMA, clip_grad_norm) over the autograd's slabs (core/runtime/autograd.h).
 * One call covers every tensor: a segment table in backend memory says where
 * each tensor starts, how long it is and which parameter group it is in, so a
 * device launches once for the whole model (no per-tensor argument limit).
 * All pointers are backend memory; the caller brackets a call with
 * ot_be_enter/ot_be_leave. The arithmetic is torch.optim's (PyTorch 1.13
 * single-tensor paths) in float32, element by element, so any device and any
 * thread count give the same bits. */
#ifndef OT_SLAB_H
#define OT_SLAB_H

#include "../core/backend.h"

typedef struct ot_slab_seg {
    int64_t off, n;        /* floats: start in the slab, count */
    int32_t group, pad;    /* parameter group (train/optim.h: 0 biases, 1 weights, 2 BN weights) */
} ot_slab_seg;

#define OT_SLAB_GROUPS 3

/* A fused step's per-step values as its kernel uses them (ot_step_dyn_sgd / ot_step_dyn_adam compute them from
 * the arguments below). A step replayed from a CUDA graph reads them from backend memory that a captured upload
 * refreshes from page-locked host memory at each replay: its learning rates, momentum, first step, Adam's bias
 * corrections and the EMA's decay change every step while the kernel's arguments are frozen at capture. */
typedef struct ot_step_dyn {
    float lr[OT_SLAB_GROUPS], momentum[OT_SLAB_GROUPS], weight_decay[OT_SLAB_GROUPS]; /* Adam: momentum = beta1 */
    float step_size[OT_SLAB_GROUPS], bc2s[OT_SLAB_GROUPS]; /* Adam: (float)(lr / bc1), (float)sqrt(bc2), from doubles */
    float ema_d, ema_omd;  /* the EMA's d and 1 - d (the caller's floats) */
    int32_t first, pad;    /* SGD: the first step */
} ot_step_dyn;

typedef struct ot_sgd_args {
    float lr[OT_SLAB_GROUPS], momentum[OT_SLAB_GROUPS], weight_decay[OT_SLAB_GROUPS];
    bool first;            /* the first step: the momentum buffer starts as the gradient */
    const ot_step_dyn *dyn; /* fused steps on a device: non-NULL, the per-step values are read from this backend
                             * memory when the kernel runs (ot_step_dyn_sgd of these fields and the EMA's d) */
} ot_sgd_args;

typedef struct ot_adam_args {
    float lr[OT_SLAB_GROUPS], beta1[OT_SLAB_GROUPS], weight_decay[OT_SLAB_GROUPS];
    float beta2, eps;
    long step;             /* 1-based, for the bias corrections */
    bool decoupled;        /* AdamW */
    const ot_step_dyn *dyn; /* as ot_sgd_args.dyn (ot_step_dyn_adam); beta2, eps and decoupled stay arguments */
} ot_adam_args;

/* The per-step values of a step with these arguments and EMA decay d, omd = 1 - d (0, 0 without an EMA). */
void ot_step_dyn_sgd(const ot_sgd_args *a, float d, float omd, ot_step_dyn *out);
void ot_step_dyn_adam(const ot_adam_args *a, float d, float omd, ot_step_dyn *out);

/* torch.cuda.amp.GradScaler's state, in backend memory (train/amp.h). */
typedef struct ot_amp_state {
    float scale;       /* the loss scale (init 2^16) */
    float found_inf;   /* set by amp_unscale when a gradient was not finite; cleared by amp_update */
    int32_t tracker;   /* steps since the last growth or backoff (_growth_tracker) */
    float skipped;     /* amp_update's copy of found_inf: the step just taken was skipped (for the host) */
} ot_amp_state;

/* Every entry takes the backend that owns the memory (a device's kernels
 * launch on its compute stream and may keep scratch there). */
typedef struct ot_slab_kernels {
    /* SGD with Nesterov momentum and per-group weight decay: p, g, buf slabs. */
    void (*sgd)(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, const float *g, float *buf, const ot_sgd_args *a);
    /* Adam / AdamW: m, v moment slabs. */
    void (*adam)(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, const float *g, float *m, float *v, const ot_adam_args *a);
    /* ema = d * ema + (1 - d) * model over n floats (omd = 1 - d, rounded by the caller as ModelEMA does). */
    void (*ema)(ot_backend *be, float *ema, const float *model, int64_t n, float d, float omd);
    /* torch.nn.utils.clip_grad_norm_: total = L2 norm of the per-tensor float
     * norms; every gradient *= min(1, max_norm / (total + 1e-6)). out[0] = total,
     * out[1] = the coefficient (backend memory: it stays on the device).
     * scratch: clip_scratch(nseg) bytes of backend memory (NULL when that is 0). */
    void (*clip)(ot_backend *be, const ot_slab_seg *seg, int nseg, float *g, float max_norm, float *out, void *scratch);
    /* Bytes of backend scratch clip needs for nseg segments (the caller owns it); NULL: none. */
    size_t (*clip_scratch)(int nseg);

    /* ---- optional: the fused forms of a device (NULL on the CPU, which runs the calls above in turn) ---- */
    /* clip's norm and coefficient only (out as clip's); the fused steps scale the gradient on read. */
    void (*clip_norm)(ot_backend *be, const ot_slab_seg *seg, int nseg, const float *g, float max_norm, float *out,
                      void *scratch);
    /* One pass: the step of sgd / adam with every gradient multiplied by clip[1] on read (clip: clip_norm's out,
     * NULL: no clipping), then, with ema non-NULL, ema = ema * d + omd * p over the same segments (ema's order).
     * Segments of group OT_SLAB_EMA_ONLY are only averaged (BatchNorm buffers, frozen parameters, gaps): the
     * table then covers the whole slab. Same bits as clip -> step -> ema. */
    void (*sgd_fused)(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, float *g, float *buf, const ot_sgd_args *a,
                      const float *clip, float *ema, float d, float omd);
    void (*adam_fused)(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, float *g, float *m, float *v,
                       const ot_adam_args *a, const float *clip, float *ema, float d, float omd);
    /* The same with GradScaler's skip: where amp->found_inf is set (amp_unscale found a non-finite gradient) p,
     * the gradients and the optimizer state stay as they are and ema still averages p (train.py updates the EMA
     * after a skipped scaler.step). amp NULL: sgd_fused / adam_fused. */
    void (*sgd_fused_amp)(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, float *g, float *buf,
                          const ot_sgd_args *a, const float *clip, float *ema, float d, float omd, const ot_amp_state *amp);
    void (*adam_fused_amp)(ot_backend *be, const ot_slab_seg *seg, int nseg, float *p, float *g, float *m, float *v,
                           const ot_adam_args *a, const float *clip, float *ema, float d, float omd, const ot_amp_state *amp);

    /* ---- mixed precision (torch.cuda.amp.GradScaler; NULL on a device without it) ---- */
    /* x[0, n) *= st->scale: the loss gradient's seed (scaler.scale(loss)). */
    void (*amp_scale)(ot_backend *be, float *x, int64_t n, const ot_amp_state *st);
    /* g[0, n) *= (float)(1 / (double)st->scale) (unchanged where that is 1); st->found_inf = 1 where any g was
     * not finite before (unscale_). */
    void (*amp_unscale)(ot_backend *be, float *g, int64_t n, ot_amp_state *st);
    /* update(): found_inf: scale *= backoff, tracker = 0; else tracker + 1 == interval: scale *= growth (kept
     * only when finite), tracker = 0; else tracker + 1. Then skipped = found_inf, found_inf = 0. */
    void (*amp_update)(ot_backend *be, ot_amp_state *st, float growth, float backoff, int interval);
} ot_slab_kernels;

/* A segment that the fused steps only average into the EMA. */
#define OT_SLAB_EMA_ONLY (-1)

/* The device's implementation; NULL when it has none. */
const ot_slab_kernels *ot_slab_kernels_for(ot_device_kind k);

#endif
