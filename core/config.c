/* config.c: the ONNXT_* environment switches, read once (core/config.h). */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ot_config g_cfg;
static char g_loss_log[4096], g_kill_at[64];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_tf32_set = -1; /* ot_config_set_tf32: -1 none, else 0 / 1 (wins over ONNXT_TF32) */
static int g_amp_set = 0;           /* ot_config_set_amp */
static int g_cl_set = -1;           /* ot_config_set_channels_last: -1 none, else 0 / 1 (wins over ONNXT_CHANNELS_LAST) */
static double g_bucket_mb_set = 0; /* ot_config_set_bucket_mb: > 0 wins over ONNXT_BUCKET_MB */

static bool is(const char *v, const char *s) { return v && strcmp(v, s) == 0; }

/* Copies an environment string (setenv may free getenv's pointer later). */
static const char *keep(const char *v, char *buf, size_t cap) {
    if (!v) return NULL;
    snprintf(buf, cap, "%s", v);
    return buf;
}

static void load(void) {
    ot_config c;
    memset(&c, 0, sizeof c);
    const char *v = getenv("ONNXT_CONV_DNN");
    c.conv_dnn = is(v, "off") ? OT_CONV_DNN_OFF : is(v, "plain") ? OT_CONV_DNN_PLAIN : is(v, "any") ? OT_CONV_DNN_ANY
                                                                                                 : OT_CONV_DNN_AUTO;
    v = getenv("ONNXT_CONV_DNN_TRAIN");
    c.conv_dnn_train = is(v, "0") ? 0 : is(v, "1") ? 1 : -1;
    c.fuse_silu = !is(getenv("ONNXT_FUSE_SILU"), "0");
    c.grad_set = !is(getenv("ONNXT_GRAD_SET"), "0");
    c.tf32 = g_tf32_set >= 0 ? g_tf32_set == 1 : is(getenv("ONNXT_TF32"), "1");
    v = getenv("ONNXT_DIST_TIMEOUT");
    double t = v ? atof(v) : 0;
    c.dist_timeout_s = t > 0 ? t : 7200;
    v = getenv("ONNXT_DEVICE_ALLREDUCE");
    c.device_allreduce = v && strcmp(v, "1") == 0;
    v = getenv("ONNXT_BUCKET_MB");
    t = v ? atof(v) : 0;
    c.bucket_mb = g_bucket_mb_set > 0 ? g_bucket_mb_set : t > 0 ? t : 25;
    c.loss_log = keep(getenv("ONNXT_LOSS_LOG"), g_loss_log, sizeof g_loss_log);
    c.test_kill_at = keep(getenv("ONNXT_TEST_KILL_AT"), g_kill_at, sizeof g_kill_at);
    c.test_kill_epoch = c.test_kill_iter = -1;
    if (c.test_kill_at && sscanf(c.test_kill_at, "%d:%d", &c.test_kill_epoch, &c.test_kill_iter) != 2)
        c.test_kill_epoch = c.test_kill_iter = -1;
    v = getenv("ONNXT_TEST_KILL_RANK");
    c.test_kill_rank = v ? atoi(v) : -1;
    c.test_hang = getenv("ONNXT_TEST_HANG") != NULL;
    v = getenv("ONNXT_TEST_KILL_IN_CKPT");
    c.test_kill_in_ckpt = v ? atoi(v) : -1;
    v = getenv("ONNXT_TEST_AMP_INF");
    c.test_amp_inf = v ? atol(v) : -1;
    c.amp = g_amp_set;
    c.channels_last = g_cl_set >= 0 ? g_cl_set == 1 : is(getenv("ONNXT_CHANNELS_LAST"), "1");
    c.cuda_graph = !is(getenv("ONNXT_CUDA_GRAPH"), "0");
    c.half_act = !is(getenv("ONNXT_HALF_ACTIVATIONS"), "0");
    g_cfg = c;
}

const ot_config *ot_config_get(void) {
    pthread_once(&g_once, load);
    return &g_cfg;
}

void ot_config_reload(void) {
    pthread_once(&g_once, load);
    load();
}

void ot_config_set_bucket_mb(double mb) {
    pthread_once(&g_once, load);
    if (mb > 0) g_bucket_mb_set = g_cfg.bucket_mb = mb;
}

void ot_config_set_amp(int mode) {
    pthread_once(&g_once, load);
    g_amp_set = g_cfg.amp = mode;
}

void ot_config_set_tf32(bool on) {
    pthread_once(&g_once, load);
    g_tf32_set = on ? 1 : 0;
    g_cfg.tf32 = on;
}

void ot_config_set_channels_last(bool on) {
    pthread_once(&g_once, load);
    g_cl_set = on ? 1 : 0;
    g_cfg.channels_last = on;
}
