/* amp.h: mixed precision for training on CUDA devices (train --amp), the
 * counterpart of torch.cuda.amp in Ultralytics train.py: the mode, and
 * GradScaler with torch's constants (initial scale 2^16, growth 2.0, backoff
 * 0.5, growth interval 2000). The scaler's state lives in device memory
 * (kernels/slab.h ot_amp_state) so a step never waits for it: the loss
 * gradient is scaled on the device, the gradients are unscaled with the
 * non-finite check, the fused optimizer skips on found_inf, the scale is
 * updated; the host reads the state with the step's loss items. docs/CUDA.md,
 * "Mixed precision". */
#ifndef OT_TRAIN_AMP_H
#define OT_TRAIN_AMP_H

#include "../core/backend.h"
#include "../core/status.h"
#include "../kernels/slab.h"

typedef enum ot_amp_mode { OT_AMP_OFF = 0, OT_AMP_FP16 = 1, OT_AMP_BF16 = 2 } ot_amp_mode;

/* "fp16", "bf16", "off" (also "float16", "bfloat16", "fp32"); false otherwise. */
bool ot_amp_parse(const char *s, ot_amp_mode *out);
const char *ot_amp_name(ot_amp_mode m);

#define OT_AMP_INIT_SCALE 65536.0f
#define OT_AMP_GROWTH 2.0f
#define OT_AMP_BACKOFF 0.5f
#define OT_AMP_INTERVAL 2000

typedef struct ot_scaler {
    ot_backend *be;
    const ot_slab_kernels *k;
    ot_amp_state *dev;        /* backend memory */
    ot_amp_state host;        /* the state as last read (ot_scaler_read) or set */
    float growth, backoff;
    int interval;
} ot_scaler;

/* A scaler on be (whose slab kernels must have the amp entries) at `scale`, tracker 0. */
ot_status ot_scaler_create(ot_backend *be, float scale, int tracker, ot_scaler **out, ot_error *err);
void ot_scaler_destroy(ot_scaler *s);
/* x[l][0, n[l]) *= scale for each of the k head gradients (before the backward). */
void ot_scaler_scale(ot_scaler *s, float *const *x, const int64_t *n, int k);
/* The gradients unscaled (after the all-reduce, before clipping), found_inf set on a non-finite one. */
void ot_scaler_unscale(ot_scaler *s, float *g, int64_t n);
/* update() after the optimizer step. */
void ot_scaler_update(ot_scaler *s);
/* Downloads the state (waits for the step); returns whether the step just taken was skipped. */
bool ot_scaler_read(ot_scaler *s);

#endif
