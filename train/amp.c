/* amp.c: the --amp mode and GradScaler on a device (train/amp.h). */
#include "amp.h"
#include <stdlib.h>
#include <string.h>

bool ot_amp_parse(const char *s, ot_amp_mode *out) {
    if (!s) return false;
    if (!strcmp(s, "fp16") || !strcmp(s, "float16")) *out = OT_AMP_FP16;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *out = OT_AMP_BF16;
    else if (!strcmp(s, "off") || !strcmp(s, "fp32")) *out = OT_AMP_OFF;
    else return false;
    return true;
}

const char *ot_amp_name(ot_amp_mode m) { return m == OT_AMP_FP16 ? "fp16" : m == OT_AMP_BF16 ? "bf16" : "off"; }

ot_status ot_scaler_create(ot_backend *be, float scale, int tracker, ot_scaler **out, ot_error *err) {
    *out = NULL;
    const ot_slab_kernels *k = ot_slab_kernels_for(be->kind);
    if (!k || !k->amp_scale || !k->amp_unscale || !k->amp_update)
        return ot_fail(err, OT_ERR_UNSUPPORTED, "%s has no loss-scaling kernels (--amp fp16 needs a CUDA device)", be->name);
    ot_scaler *s = calloc(1, sizeof *s);
    if (!s) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    s->be = be;
    s->k = k;
    s->growth = OT_AMP_GROWTH;
    s->backoff = OT_AMP_BACKOFF;
    s->interval = OT_AMP_INTERVAL;
    s->host = (ot_amp_state){.scale = scale, .tracker = tracker};
    s->dev = ot_be_alloc(be, sizeof *s->dev);
    if (!s->dev) { free(s); return ot_fail(err, OT_ERR_NOMEM, "out of device memory"); }
    ot_be_upload(be, s->dev, &s->host, sizeof s->host);
    *out = s;
    return OT_OK;
}

void ot_scaler_destroy(ot_scaler *s) {
    if (!s) return;
    ot_be_free(s->be, s->dev);
    free(s);
}

void ot_scaler_scale(ot_scaler *s, float *const *x, const int64_t *n, int k) {
    ot_be_enter(s->be);
    for (int l = 0; l < k; l++)
        if (x[l]) s->k->amp_scale(s->be, x[l], n[l], s->dev);
    ot_be_leave(s->be);
}

void ot_scaler_unscale(ot_scaler *s, float *g, int64_t n) {
    ot_be_enter(s->be);
    s->k->amp_unscale(s->be, g, n, s->dev);
    ot_be_leave(s->be);
}

void ot_scaler_update(ot_scaler *s) {
    ot_be_enter(s->be);
    s->k->amp_update(s->be, s->dev, s->growth, s->backoff, s->interval);
    ot_be_leave(s->be);
}

bool ot_scaler_read(ot_scaler *s) {
    ot_be_download(s->be, &s->host, s->dev, sizeof s->host);
    return s->host.skipped != 0.0f;
}
