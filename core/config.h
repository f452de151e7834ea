/* config.h: every ONNXT_* environment switch, read in one place (core/config.c),
 * and the settings the command line may override (tf32, amp, channels_last,
 * bucket_mb).
 *
 * ot_config_get() reads the environment once, on first use (thread-safe), into
 * an ot_config that callers only read. docs/ENVIRONMENT.md lists each switch,
 * its meaning, its default and who reads it. Tests that change a switch after
 * the first read call ot_config_reload(). */
#ifndef OT_CONFIG_H
#define OT_CONFIG_H

#include <stdbool.h>

/* ONNXT_CONV_DNN: which convolutions run as oneDNN primitives, in what layout. */
typedef enum ot_conv_dnn_mode {
    OT_CONV_DNN_AUTO = 0,  /* unset (or another value): the defaults in kernels/conv.c */
    OT_CONV_DNN_OFF,       /* "off": im2col + GEMM everywhere */
    OT_CONV_DNN_PLAIN,     /* "plain": oneDNN on plain NCHW / OIHW layouts */
    OT_CONV_DNN_ANY,       /* "any": oneDNN picks its (blocked) layouts */
} ot_conv_dnn_mode;

typedef struct ot_config {
    /* ---- kernels and planner ---- */
    ot_conv_dnn_mode conv_dnn;  /* ONNXT_CONV_DNN */
    int conv_dnn_train;         /* ONNXT_CONV_DNN_TRAIN: "0" -> 0, "1" -> 1, otherwise -1 (default) */
    bool fuse_silu;             /* ONNXT_FUSE_SILU: false when "0" (default true) */
    bool grad_set;              /* ONNXT_GRAD_SET: false when "0" (default true) */
    bool tf32;                  /* ONNXT_TF32=1 or --tf32 (ot_config_set_tf32): TF32 tensor cores for the
                                 * GPU's convolutions (kernels/cuda/conv_gpu.c); default false (FP32) */
    bool cuda_graph;            /* ONNXT_CUDA_GRAPH: false when "0" (default true): train's CUDA graphs (train/trainer.c) */
    int amp;                    /* ot_config_set_amp (train --amp): 0 FP32, 1 fp16, 2 bf16: the precision of the CUDA
                                 * device's convolutions in plans created afterwards (train/amp.h); default 0 */
    bool half_act;              /* ONNXT_HALF_ACTIVATIONS: false when "0" (default true): under amp, convolution outputs
                                 * that feed only training BatchNorms are stored in half precision
                                 * (core/runtime/passes.c ot_pass_half_act) */
    bool channels_last;         /* ONNXT_CHANNELS_LAST=1 or --channels-last (ot_config_set_channels_last): under amp,
                                 * the GPU's half convolutions take NHWC copies (kernels/cuda/conv_gpu.c); default false */
    /* ---- distributed ---- */
    double dist_timeout_s;      /* ONNXT_DIST_TIMEOUT: seconds > 0, default 7200 */
    double bucket_mb;           /* ONNXT_BUCKET_MB: gradient bucket size on CUDA devices, MB > 0, default 25 */
    bool device_allreduce;      /* ONNXT_DEVICE_ALLREDUCE=1: the bucketed device all-reduce even with one rank
                                 * (a single-rank NCCL communicator: tools/gpu_check.sh, tests) */
    /* ---- trainer (train/trainer.c) ---- */
    const char *loss_log;       /* ONNXT_LOSS_LOG: file to append per-batch losses to, NULL when unset */
    const char *test_kill_at;   /* ONNXT_TEST_KILL_AT as given ("E:I"), NULL when unset */
    int test_kill_epoch, test_kill_iter; /* ...parsed: kill before batch I of epoch E; -1, -1 when unset or malformed */
    int test_kill_rank;         /* ONNXT_TEST_KILL_RANK: the rank that dies; -1 (unset): every rank */
    bool test_hang;             /* ONNXT_TEST_HANG set (any value): hang instead of dying */
    int test_kill_in_ckpt;      /* ONNXT_TEST_KILL_IN_CKPT: die while writing last.ckpt of this epoch; -1 when unset */
    long test_amp_inf;          /* ONNXT_TEST_AMP_INF: plant +inf in the gradients before the unscale of the optimizer
                                 * step at this iteration (--amp fp16); -1 when unset */
} ot_config;

/* The switches, read from the environment on the first call. Never NULL. */
const ot_config *ot_config_get(void);
/* Tests only: reads the environment again (after setenv / unsetenv). Not
 * thread-safe against concurrent readers; pointers from ot_config_get stay valid
 * (the struct is updated in place). */
void ot_config_reload(void);

/* --tf32 (the CLI): sets tf32 whatever ONNXT_TF32 says, for plans created
 * afterwards; kept across ot_config_reload. The only setter: every other
 * switch comes from the environment. */
void ot_config_set_tf32(bool on);
/* train --amp: 0 off, 1 fp16, 2 bf16 (kept across ot_config_reload). */
void ot_config_set_amp(int mode);
/* --channels-last (train, bench train): sets channels_last whatever ONNXT_CHANNELS_LAST says (kept across
 * ot_config_reload). */
void ot_config_set_channels_last(bool on);
/* --bucket-mb (wins over ONNXT_BUCKET_MB); mb > 0. */
void ot_config_set_bucket_mb(double mb);

#endif
