/* conv_gpu.c: Conv (kernels/conv.c's definition) on the CUDA device, as cuDNN
 * calls: the legacy convolution API of cuDNN 9 (cudnn_cnn.h), FP32 tensors in
 * NCHW, weights (M, C/group, kh, kw). Compiled only into onnxtrain_cuda; the
 * executor library answers the same names with the CPU convolution
 * (conv_emu.c). docs/CUDA.md, "Convolution (cuDNN)".
 *
 * prepare  builds the descriptors (x, y, bias (1, M, 1, 1), filter, one
 *          convolution descriptor per direction, as each carries its
 *          algorithm's math type), picks the forward algorithm and, in training
 *          plans, the backward-data and backward-filter ones ONCE per node and
 *          shape, and raises the plan's shared workspace (c->p->ws_bytes) to the
 *          largest workspace they need. Nothing is allocated afterwards.
 * forward  y = conv(x, w) (beta 0), then y += bias (cudnnAddTensor).
 * backward as conv.c's conv_bwd: nothing without dy; dx WRITTEN (beta 0) when
 *          ot_gin_set(c, 0), else added (beta 1); dw and db added (beta 1);
 *          any of them may be NULL.
 * release  destroys the descriptors (the handle is shared, see below).
 *
 * Algorithms: cudnnGet*Algorithm_v7 (heuristics, no benchmarking runs, so
 * planning is quick and the choice depends only on the shape, the GPU and the
 * cuDNN version). From its list, in its order (fastest expected first), the
 * first entry that succeeded, is deterministic (so a training run repeats bit
 * for bit on the same machine), has an allowed math type and needs at most
 * WS_CAP bytes of workspace; failing the cap, the allowed entry with the
 * smallest workspace; with no deterministic entry at all (not expected), the
 * fastest allowed one, with a warning.
 *
 * Math: FP32 by default, CUDNN_FMA_MATH, which excludes TF32 tensor-core
 * kernels (CUDNN_DEFAULT_MATH would allow TF32 on Ampere and later).
 * ot_cuda_conv_set_tf32(1), or the tf32 setting of core/config.h (`--tf32`,
 * ONNXT_TF32=1), before a plan is created asks for
 * CUDNN_DEFAULT_MATH instead: TF32 tensor cores allowed (PyTorch's
 * allow_tf32); the chosen entry's own math type is then set on its descriptor,
 * as cuDNN selects kernels by algorithm and math type together. Entries that
 * would down-convert FP32 data (CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) are never
 * taken, nor tensor-op ones without TF32.
 *
 * Mixed precision (--amp): half copies of x, w and y (dy, dx, dw) in the
 * plan's workspace, converted by amp.cu's fused passes; with --channels-last
 * (core/config.h channels_last) the copies are NHWC (weights KRSC), the
 * transpose riding on the same passes, and the half descriptors say so, so
 * cuDNN's tensor-core kernels need no layout change of their own. The float
 * tensors the rest of the plan sees stay NCHW either way. Activations the
 * planner stores in half precision (core/runtime/passes.h ot_pass_half_act:
 * an output only BatchNorm reads, an input that is a SiLU's output only
 * convolutions read) are cuDNN's own tensors, with no conversion pass (NHWC:
 * moved into or out of the copies).
 *
 * Handle: one cudnnHandle_t per GPU and host thread, created on first use (by
 * prepare, normally) and kept for the life of the process, like the backends;
 * every forward / backward binds it to the plan's compute stream
 * (ot_backend_cuda_stream) before its calls. */
#include "../../core/config.h"
#include "../conv.h"
#include "cuda_kernels.h"
#include "cuda_tables.h"
#include <cuda_runtime.h>
#include <cudnn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER, DIR_N };
static const char *const DIR_NAME[DIR_N] = {"forward", "backward-data", "backward-filter"};

/* Most workspace one algorithm may take before a leaner one is preferred. */
#define WS_CAP ((size_t)512 << 20)
#define MAX_GPUS 16

struct ot_conv_cudnn {
    int ordinal;              /* the GPU the descriptors were built for */
    bool train;               /* backward algorithms chosen */
    cudnnTensorDescriptor_t x, y, b;   /* y also describes dy, x dx */
    cudnnFilterDescriptor_t w;         /* also dw */
    cudnnConvolutionDescriptor_t conv[DIR_N];
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws[DIR_N];         /* workspace bytes of each chosen algorithm */
    /* mixed precision (core/config.h amp: 1 fp16, 2 bf16; 0 off): the half descriptors and, after the algorithms'
     * workspace (ws_algo bytes), the half copies in the plan's workspace: byte offsets of x, w, y (forward) and
     * dy, dx, dw (backward; x and w shared) */
    int amp;
    bool nhwc;                /* --channels-last: the half copies in NHWC (weights KRSC) */
    bool xhalf;               /* x is stored in half precision (a SiLU output, ot_pass_half_act): cuDNN reads it (NHWC:
                               * moved into the workspace first) */
    bool yhalf;               /* y is stored in half precision (core/runtime/passes.c ot_pass_half_act): cuDNN
                               * writes it (NHWC: through the workspace and moved) */
    cudnnTensorDescriptor_t xh, yh;
    cudnnFilterDescriptor_t wh;
    size_t ws_algo, off_x, off_w, off_y, off_dy, off_dx, off_dw, off_db;
};

static int g_tf32;            /* ot_cuda_conv_set_tf32; read by prepare (with ot_config_get()->tf32) */
static _Thread_local cudnnHandle_t tl_handle[MAX_GPUS];

void ot_cuda_conv_set_tf32(int on) { g_tf32 = on != 0; }

/* ---- errors: name the call and cuDNN's / CUDA's reason ---- */
static ot_status dnn_fail(ot_kctx *c, cudnnStatus_t st, const char *call) {
    char detail[256] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    ot_status code = OT_ERR_INTERNAL;
    if (CUDNN_STATUS_CATEGORY(st) == CUDNN_STATUS_NOT_SUPPORTED) code = OT_ERR_UNSUPPORTED;
    else if (st == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED || st == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
        code = OT_ERR_NOMEM;
    return ot_fail(c->err, code, "%s on %s failed: %s%s%s", call, c->p->be->name, cudnnGetErrorString(st),
                   detail[0] ? ": " : "", detail);
}
static ot_status cuda_fail(ot_kctx *c, cudaError_t e, const char *call) {
    return ot_fail(c->err, OT_ERR_INTERNAL, "%s on %s failed: %s", call, c->p->be->name, cudaGetErrorString(e));
}
/* DNN(fn, (args)): a checked cuDNN call; CU likewise for the CUDA runtime. Both return from the caller. */
#define DNN(fn, args)                                                      \
    do {                                                                   \
        cudnnStatus_t st_ = fn args;                                       \
        if (st_ != CUDNN_STATUS_SUCCESS) return dnn_fail(c, st_, #fn);    \
    } while (0)
#define CU(fn, args)                                                       \
    do {                                                                   \
        cudaError_t e_ = fn args;                                          \
        if (e_ != cudaSuccess) return cuda_fail(c, e_, #fn);               \
    } while (0)

/* This thread's handle for the plan's GPU, bound to the plan's compute stream. */
static ot_status bind_handle(ot_kctx *c, int ordinal, bool set_stream, cudnnHandle_t *out) {
    if (ordinal < 0 || ordinal >= MAX_GPUS)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "Conv on %s: GPU %d is beyond the %d this build handles", c->p->be->name,
                       ordinal, MAX_GPUS);
    if (!tl_handle[ordinal]) { /* it belongs to the current device: the plan's (entered, or set by prepare) */
        cudnnHandle_t h = NULL;
        DNN(cudnnCreate, (&h));
        tl_handle[ordinal] = h;
    }
    if (set_stream)
        DNN(cudnnSetStream, (tl_handle[ordinal], (cudaStream_t)ot_backend_cuda_stream(c->p->be, OT_STREAM_COMPUTE)));
    *out = tl_handle[ordinal];
    return OT_OK;
}

/* ---- release ---- */
static void warn_destroy(cudnnStatus_t st, const char *call) {
    if (st != CUDNN_STATUS_SUCCESS) ot_warn("Conv: %s failed: %s", call, cudnnGetErrorString(st));
}

static void gpu_release(void *params) {
    ot_conv_params *p = params;
    struct ot_conv_cudnn *s = p->cudnn;
    if (!s) return;
    if (s->x) warn_destroy(cudnnDestroyTensorDescriptor(s->x), "cudnnDestroyTensorDescriptor");
    if (s->y) warn_destroy(cudnnDestroyTensorDescriptor(s->y), "cudnnDestroyTensorDescriptor");
    if (s->b) warn_destroy(cudnnDestroyTensorDescriptor(s->b), "cudnnDestroyTensorDescriptor");
    if (s->w) warn_destroy(cudnnDestroyFilterDescriptor(s->w), "cudnnDestroyFilterDescriptor");
    if (s->xh) warn_destroy(cudnnDestroyTensorDescriptor(s->xh), "cudnnDestroyTensorDescriptor");
    if (s->yh) warn_destroy(cudnnDestroyTensorDescriptor(s->yh), "cudnnDestroyTensorDescriptor");
    if (s->wh) warn_destroy(cudnnDestroyFilterDescriptor(s->wh), "cudnnDestroyFilterDescriptor");
    for (int d = 0; d < DIR_N; d++)
        if (s->conv[d]) warn_destroy(cudnnDestroyConvolutionDescriptor(s->conv[d]), "cudnnDestroyConvolutionDescriptor");
    free(s);
    p->cudnn = NULL;
}

/* ---- algorithm choice ---- */
/* One entry of a cudnn*AlgoPerf_t list, whatever the direction. */
typedef struct algo_cand {
    int algo;
    cudnnStatus_t status;
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t math;
} algo_cand;

/* The n entries of any direction's cudnn*AlgoPerf_t list (the three structs have these members). */
#define TO_CANDS(a, perf, n)                                                                                   \
    for (int i_ = 0; i_ < (n); i_++)                                                                           \
        (a)[i_] = (algo_cand){(int)(perf)[i_].algo, (perf)[i_].status, (perf)[i_].memory, (perf)[i_].determinism, \
                              (perf)[i_].mathType}

/* The descriptors the algorithms run on: the half ones under mixed precision. */
#define XD(s) ((s)->amp ? (s)->xh : (s)->x)
#define YD(s) ((s)->amp ? (s)->yh : (s)->y)
#define WD(s) ((s)->amp ? (s)->wh : (s)->w)

static bool math_allowed(cudnnMathType_t m, bool tf32) {
    if (m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false; /* FP32 data down-converted: never */
    return tf32 || m != CUDNN_TENSOR_OP_MATH;
}

/* Index of the entry to use (the rule in the file comment), or -1. */
static int pick_algo(const algo_cand *a, int n, bool tf32, bool *nondet) {
    for (int pass = 0; pass < 2; pass++) { /* pass 0: deterministic entries only */
        int lean = -1;
        for (int i = 0; i < n; i++) {
            if (a[i].status != CUDNN_STATUS_SUCCESS || !math_allowed(a[i].math, tf32)) continue;
            if (pass == 0 && a[i].determinism != CUDNN_DETERMINISTIC) continue;
            if (a[i].memory <= WS_CAP) { *nondet = pass == 1; return i; }
            if (lean < 0 || a[i].memory < a[lean].memory) lean = i;
        }
        if (lean >= 0) { *nondet = pass == 1; return lean; }
    }
    return -1;
}

/* After the pick: the math type onto the direction's descriptor (FMA stays
 * unless TF32 was asked for), or a clear error when nothing was usable. */
static ot_status use_pick(ot_kctx *c, struct ot_conv_cudnn *s, int dir, const algo_cand *a, int n, int k, bool tf32, bool nondet) {
    if (k < 0) {
        int ok = 0;
        for (int i = 0; i < n; i++) ok += a[i].status == CUDNN_STATUS_SUCCESS;
        const ot_conv_params *p = c->params;
        return ot_fail(c->err, OT_ERR_UNSUPPORTED,
                       "cuDNN offers no usable %s algorithm for this convolution on %s (%d listed, %d succeeded, math %s): "
                       "input (%lld, %lld, %lld, %lld), kernel %lldx%lld, stride %lldx%lld, dilation %lldx%lld, group %lld",
                       DIR_NAME[dir], c->p->be->name, n, ok, tf32 ? "TF32 allowed" : "FP32 only", (long long)p->n,
                       (long long)p->c, (long long)p->h, (long long)p->w, (long long)p->kh, (long long)p->kw,
                       (long long)p->sh, (long long)p->sw, (long long)p->dh, (long long)p->dw, (long long)p->group);
    }
    if (nondet)
        ot_warn("Conv on %s: cuDNN lists no deterministic %s algorithm for this shape; using algorithm %d (results may "
                "differ between runs)", c->p->be->name, DIR_NAME[dir], a[k].algo);
    if (tf32) DNN(cudnnSetConvolutionMathType, (s->conv[dir], a[k].math));
    s->ws[dir] = a[k].memory;
    return OT_OK;
}

static ot_status choose_fwd(ot_kctx *c, struct ot_conv_cudnn *s, cudnnHandle_t h, bool tf32) {
    int max = 0, n = 0;
    DNN(cudnnGetConvolutionForwardAlgorithmMaxCount, (h, &max));
    if (max < 1) max = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    cudnnConvolutionFwdAlgoPerf_t *perf = calloc((size_t)max, sizeof *perf);
    algo_cand *a = calloc((size_t)max, sizeof *a);
    if (!perf || !a) { free(perf); free(a); return ot_fail(c->err, OT_ERR_NOMEM, "out of memory"); }
    cudnnStatus_t st = cudnnGetConvolutionForwardAlgorithm_v7(h, XD(s), WD(s), s->conv[DIR_FWD], YD(s), max, &n, perf);
    if (st != CUDNN_STATUS_SUCCESS) {
        free(perf); free(a);
        return dnn_fail(c, st, "cudnnGetConvolutionForwardAlgorithm_v7");
    }
    TO_CANDS(a, perf, n);
    bool nondet = false;
    int k = pick_algo(a, n, tf32, &nondet);
    ot_status r = use_pick(c, s, DIR_FWD, a, n, k, tf32, nondet);
    if (!r) s->fwd = perf[k].algo;
    free(perf); free(a);
    if (r) return r;
    size_t bytes = 0; /* the size for the descriptor as finally set, which may exceed the list's estimate */
    DNN(cudnnGetConvolutionForwardWorkspaceSize, (h, XD(s), WD(s), s->conv[DIR_FWD], YD(s), s->fwd, &bytes));
    if (bytes > s->ws[DIR_FWD]) s->ws[DIR_FWD] = bytes;
    return OT_OK;
}

static ot_status choose_bwd_data(ot_kctx *c, struct ot_conv_cudnn *s, cudnnHandle_t h, bool tf32) {
    int max = 0, n = 0;
    DNN(cudnnGetConvolutionBackwardDataAlgorithmMaxCount, (h, &max));
    if (max < 1) max = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    cudnnConvolutionBwdDataAlgoPerf_t *perf = calloc((size_t)max, sizeof *perf);
    algo_cand *a = calloc((size_t)max, sizeof *a);
    if (!perf || !a) { free(perf); free(a); return ot_fail(c->err, OT_ERR_NOMEM, "out of memory"); }
    cudnnStatus_t st = cudnnGetConvolutionBackwardDataAlgorithm_v7(h, WD(s), YD(s), s->conv[DIR_BWD_DATA], XD(s), max, &n, perf);
    if (st != CUDNN_STATUS_SUCCESS) {
        free(perf); free(a);
        return dnn_fail(c, st, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    }
    TO_CANDS(a, perf, n);
    bool nondet = false;
    int k = pick_algo(a, n, tf32, &nondet);
    ot_status r = use_pick(c, s, DIR_BWD_DATA, a, n, k, tf32, nondet);
    if (!r) s->bwd_data = perf[k].algo;
    free(perf); free(a);
    if (r) return r;
    size_t bytes = 0;
    DNN(cudnnGetConvolutionBackwardDataWorkspaceSize, (h, WD(s), YD(s), s->conv[DIR_BWD_DATA], XD(s), s->bwd_data, &bytes));
    if (bytes > s->ws[DIR_BWD_DATA]) s->ws[DIR_BWD_DATA] = bytes;
    return OT_OK;
}

static ot_status choose_bwd_filter(ot_kctx *c, struct ot_conv_cudnn *s, cudnnHandle_t h, bool tf32) {
    int max = 0, n = 0;
    DNN(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount, (h, &max));
    if (max < 1) max = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    cudnnConvolutionBwdFilterAlgoPerf_t *perf = calloc((size_t)max, sizeof *perf);
    algo_cand *a = calloc((size_t)max, sizeof *a);
    if (!perf || !a) { free(perf); free(a); return ot_fail(c->err, OT_ERR_NOMEM, "out of memory"); }
    cudnnStatus_t st = cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, XD(s), YD(s), s->conv[DIR_BWD_FILTER], WD(s), max, &n, perf);
    if (st != CUDNN_STATUS_SUCCESS) {
        free(perf); free(a);
        return dnn_fail(c, st, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    }
    TO_CANDS(a, perf, n);
    bool nondet = false;
    int k = pick_algo(a, n, tf32, &nondet);
    ot_status r = use_pick(c, s, DIR_BWD_FILTER, a, n, k, tf32, nondet);
    if (!r) s->bwd_filter = perf[k].algo;
    free(perf); free(a);
    if (r) return r;
    size_t bytes = 0;
    DNN(cudnnGetConvolutionBackwardFilterWorkspaceSize, (h, XD(s), YD(s), s->conv[DIR_BWD_FILTER], WD(s), s->bwd_filter, &bytes));
    if (bytes > s->ws[DIR_BWD_FILTER]) s->ws[DIR_BWD_FILTER] = bytes;
    return OT_OK;
}

/* ---- prepare ---- */
static bool fits_int(int64_t v, int64_t lo) { return v >= lo && v <= INT_MAX; }

static ot_status gpu_prepare(ot_kctx *c) {
    ot_conv_params *p = c->params;
    ot_backend *be = c->p->be;
    gpu_release(p); /* prepared again: built afresh */
    if (be->kind != OT_DEV_CUDA)
        return ot_fail(c->err, OT_ERR_INTERNAL, "the cuDNN convolution runs on CUDA devices only, not %s", be->name);
    if (p->pt != p->pb || p->pl != p->pr)
        return ot_fail(c->err, OT_ERR_UNSUPPORTED,
                       "asymmetric pads (top %lld, left %lld, bottom %lld, right %lld) are not supported on the CUDA device "
                       "(cuDNN pads both sides of an axis equally)",
                       (long long)p->pt, (long long)p->pl, (long long)p->pb, (long long)p->pr);
    const int64_t dims[] = {p->n, p->c, p->h, p->w, p->m, p->oh, p->ow, p->kh, p->kw, p->sh, p->sw, p->dh, p->dw, p->group};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        if (!fits_int(dims[i], 1))
            return ot_fail(c->err, OT_ERR_UNSUPPORTED,
                           "a convolution with a size of %lld (empty, or beyond cuDNN's int range) is not supported on the "
                           "CUDA device",
                           (long long)dims[i]);
    if (!fits_int(p->pt, 0) || !fits_int(p->pl, 0))
        return ot_fail(c->err, OT_ERR_UNSUPPORTED, "pads %lld, %lld are beyond cuDNN's int range", (long long)p->pt, (long long)p->pl);

    struct ot_conv_cudnn *s = calloc(1, sizeof *s);
    if (!s) return ot_fail(c->err, OT_ERR_NOMEM, "out of memory");
    p->cudnn = s; /* from here on release frees whatever was built, also after a failure */
    s->ordinal = be->ordinal;
    s->train = ot_training(c);
    s->amp = ot_config_get()->amp; /* train --amp: half data, FP32 accumulation, tensor cores */
    s->yhalf = c->p->dtype[c->n->out[0]] != OT_F32;
    s->xhalf = c->p->dtype[c->n->in[0]] != OT_F32;
    if (s->xhalf && (!s->amp || (c->p->dtype[c->n->in[0]] == OT_BF16) != (s->amp == 2)))
        return ot_fail(c->err, OT_ERR_INTERNAL, "Conv on %s: a %s input needs --amp of that type", be->name,
                       ot_dtype_name(c->p->dtype[c->n->in[0]]));
    if (s->yhalf && (!s->amp || p->has_bias || (c->p->dtype[c->n->out[0]] == OT_BF16) != (s->amp == 2)))
        return ot_fail(c->err, OT_ERR_INTERNAL, "Conv on %s: a %s output needs --amp of that type and no bias", be->name,
                       ot_dtype_name(c->p->dtype[c->n->out[0]]));
    /* ot_cuda_conv_set_tf32(1), --tf32 or ONNXT_TF32=1; half data (--amp) takes tensor-op math as well */
    const bool tf32 = g_tf32 != 0 || ot_config_get()->tf32 || s->amp;
    CU(cudaSetDevice, (s->ordinal)); /* the runtime enters the device for steps only; cuDNN calls run on the current one */
    cudnnHandle_t h = NULL;
    OT_TRY(bind_handle(c, s->ordinal, false, &h));

    const int n = (int)p->n, ci = (int)p->c, hi = (int)p->h, wi = (int)p->w, m = (int)p->m, oh = (int)p->oh, ow = (int)p->ow;
    const int g = (int)p->group;
    DNN(cudnnCreateTensorDescriptor, (&s->x));
    DNN(cudnnSetTensor4dDescriptor, (s->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, ci, hi, wi));
    DNN(cudnnCreateTensorDescriptor, (&s->y));
    DNN(cudnnSetTensor4dDescriptor, (s->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, m, oh, ow));
    if (p->has_bias) {
        DNN(cudnnCreateTensorDescriptor, (&s->b));
        DNN(cudnnSetTensor4dDescriptor, (s->b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, m, 1, 1));
    }
    DNN(cudnnCreateFilterDescriptor, (&s->w));
    DNN(cudnnSetFilter4dDescriptor, (s->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, m, ci / g, (int)p->kh, (int)p->kw));
    if (s->amp) {
        const cudnnDataType_t ht = s->amp == 2 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF;
        /* --channels-last: NHWC half copies (weights KRSC), the layout of cuDNN's tensor-core kernels; grouped
         * convolutions stay NCHW */
        s->nhwc = ot_config_get()->channels_last && g == 1;
        const cudnnTensorFormat_t hf = s->nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
        DNN(cudnnCreateTensorDescriptor, (&s->xh));
        DNN(cudnnSetTensor4dDescriptor, (s->xh, hf, ht, n, ci, hi, wi));
        DNN(cudnnCreateTensorDescriptor, (&s->yh));
        DNN(cudnnSetTensor4dDescriptor, (s->yh, hf, ht, n, m, oh, ow));
        DNN(cudnnCreateFilterDescriptor, (&s->wh));
        DNN(cudnnSetFilter4dDescriptor, (s->wh, ht, hf, m, ci / g, (int)p->kh, (int)p->kw));
    }
    const int ndir = s->train ? DIR_N : 1;
    for (int d = 0; d < ndir; d++) {
        DNN(cudnnCreateConvolutionDescriptor, (&s->conv[d]));
        /* ONNX Conv is a cross-correlation (no kernel flip); accumulate in FP32 */
        DNN(cudnnSetConvolution2dDescriptor, (s->conv[d], (int)p->pt, (int)p->pl, (int)p->sh, (int)p->sw, (int)p->dh, (int)p->dw,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        DNN(cudnnSetConvolutionGroupCount, (s->conv[d], g));
        DNN(cudnnSetConvolutionMathType, (s->conv[d], tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    }
    int yn = 0, yc = 0, yh = 0, yw = 0; /* cuDNN's output shape must be the planner's */
    DNN(cudnnGetConvolution2dForwardOutputDim, (s->conv[DIR_FWD], XD(s), WD(s), &yn, &yc, &yh, &yw));
    if (yn != n || yc != m || yh != oh || yw != ow)
        return ot_fail(c->err, OT_ERR_INTERNAL, "cuDNN computes an output of (%d, %d, %d, %d), the plan (%d, %d, %d, %d)", yn, yc,
                       yh, yw, n, m, oh, ow);

    OT_TRY(choose_fwd(c, s, h, tf32));
    if (s->train) {
        OT_TRY(choose_bwd_data(c, s, h, tf32));
        OT_TRY(choose_bwd_filter(c, s, h, tf32));
    }
    size_t need = 0;
    for (int d = 0; d < ndir; d++)
        if (s->ws[d] > need) need = s->ws[d];
    if (s->amp) { /* the half copies after the algorithms' workspace, each 256-byte aligned */
        const size_t nx = (size_t)p->n * (size_t)p->c * (size_t)p->h * (size_t)p->w, ny = (size_t)p->n * (size_t)p->m * (size_t)p->oh * (size_t)p->ow;
        const size_t nw = (size_t)p->m * (size_t)(p->c / p->group) * (size_t)p->kh * (size_t)p->kw;
#define HALVES(k) ((((k) * 2u) + 255u) & ~(size_t)255u)
        s->ws_algo = (need + 255u) & ~(size_t)255u;
        s->off_x = s->ws_algo;
        s->off_w = s->off_x + HALVES(nx);
        s->off_y = s->off_w + HALVES(nw);
        s->off_dy = s->off_y; /* the backward reuses y's place for dy */
        s->off_dx = s->off_dy + HALVES(ny);
        s->off_dw = s->off_dx + HALVES(nx);
        s->off_db = s->off_dw + HALVES(nw);         /* the bias gradient in FP32, before its rounding */
        need = s->off_db + HALVES(2 * (size_t)p->m);
#undef HALVES
    } else
        s->ws_algo = need;
    if (need > c->p->ws_bytes) c->p->ws_bytes = need;
    return OT_OK;
}

/* ---- mixed precision: the float tensors converted for a half convolution ---- */
static unsigned char *ws_at(ot_kctx *c, size_t off) { return (unsigned char *)c->p->ws + off; }

/* A call's stream, and bfloat16 or not. */
typedef struct amp_call { void *st; int bf; } amp_call;
static amp_call amp_of(ot_kctx *c) {
    const ot_conv_params *p = c->params;
    return (amp_call){ot_backend_cuda_stream(c->p->be, OT_STREAM_COMPUTE), p->cudnn->amp == 2};
}

/* The half copies in the descriptors' layout. The tensors are (nb, ch, sp) in float: x (N, C, H*W), y / dy
 * (N, M, OH*OW), w / dw (M, C/group, kh*kw). to_half: the copy of src, with round (src itself) src rounded in
 * place as well; from_half: dst from the copy, with bias half_out's add, with acc added to dst, with rnd rounded
 * (half_out / half_accumulate's arithmetic, transposed back from NHWC under --channels-last). */
static void to_half(const struct ot_conv_cudnn *s, const amp_call *a, void *dst, const float *src, float *round, int64_t nb,
                    int64_t ch, int64_t sp) {
    if (s->nhwc) ot_cuda_half_nhwc(src, round, dst, nb, ch, sp, a->bf, a->st);
    else if (round) ot_cuda_round_to_half(round, dst, nb * ch * sp, a->bf, a->st);
    else if (a->bf) ot_cuda_f32_to_bf16(dst, src, nb * ch * sp, a->st);
    else ot_cuda_f32_to_f16(dst, src, nb * ch * sp, a->st);
}
static void from_half(const struct ot_conv_cudnn *s, const amp_call *a, float *dst, const void *src, const float *bias, int64_t nb,
                      int64_t ch, int64_t sp, int acc, int rnd) {
    if (s->nhwc) ot_cuda_half_from_nhwc(dst, src, bias, nb, ch, sp, a->bf, acc, rnd, a->st);
    else if (bias) ot_cuda_half_out(dst, src, bias, nb * ch * sp, sp, ch, a->bf, a->st); /* forward: acc 0, rnd 0 */
    else ot_cuda_half_accumulate(dst, src, nb * ch * sp, a->bf, acc, rnd, a->st);
}

/* forward under --amp: x rounded in place (autocast stores activations in half) and converted in one pass, w
 * converted, the half convolution (FP32 accumulation), y back to float with the bias added and rounded in one
 * pass: conv_emu.c's semantics. A y stored in half precision (yhalf: no bias) is cuDNN's output itself, NHWC
 * results moved into it. */
/* x in half precision for cuDNN, in the descriptors' layout: a half x itself (NHWC: moved into the workspace),
 * else the converted copy (with round, x also rounded in place, as autocast stores it). */
static const void *half_x(ot_kctx *c, const amp_call *a, int round) {
    const ot_conv_params *p = c->params;
    const struct ot_conv_cudnn *s = p->cudnn;
    float *x = (float *)ot_inf(c, 0);
    void *copy = ws_at(c, s->off_x);
    if (s->xhalf && !s->nhwc) return x;
    if (s->xhalf) ot_cuda_half_move_to_nhwc(copy, (const uint16_t *)x, p->n, p->c, p->h * p->w, a->st);
    else to_half(s, a, copy, x, round ? x : NULL, p->n, p->c, p->h * p->w);
    return copy;
}

static ot_status amp_forward(ot_kctx *c, cudnnHandle_t h) {
    ot_conv_params *p = c->params;
    struct ot_conv_cudnn *s = p->cudnn;
    const amp_call a = amp_of(c);
    float *y = ot_outf(c, 0);
    const int64_t khw = p->kh * p->kw, cg = p->c / p->group;
    const void *xh = half_x(c, &a, 1);
    to_half(s, &a, ws_at(c, s->off_w), ot_inf(c, 1), NULL, p->m, cg, khw);
    const float one = 1.0f, zero = 0.0f;
    void *out = s->yhalf && !s->nhwc ? (void *)y : ws_at(c, s->off_y); /* a half y in NCHW: cuDNN writes it */
    DNN(cudnnConvolutionForward, (h, &one, s->xh, xh, s->wh, ws_at(c, s->off_w), s->conv[DIR_FWD], s->fwd,
                                  c->p->ws, s->ws_algo, &zero, s->yh, out));
    if (s->yhalf && s->nhwc) ot_cuda_half_move_from_nhwc((uint16_t *)y, out, p->n, p->m, p->oh * p->ow, a.st);
    else if (!s->yhalf) from_half(s, &a, y, out, p->has_bias ? ot_inf(c, 2) : NULL, p->n, p->m, p->oh * p->ow, 0, 0);
    return OT_OK;
}

/* backward under --amp: dy rounded in place and converted in one pass (x and w converted); dx and dw from the half
 * convolutions, added to (or, dx when set, written into) the FP32 gradients, dx rounded; db summed from the
 * rounded dy, rounded and added (conv_emu.c's semantics). */
static ot_status amp_backward(ot_kctx *c, cudnnHandle_t h, float *dx, float *dw, float *db) {
    ot_conv_params *p = c->params;
    struct ot_conv_cudnn *s = p->cudnn;
    const amp_call a = amp_of(c);
    float *dy = (float *)ot_gout(c, 0);
    const int64_t khw = p->kh * p->kw, cg = p->c / p->group;
    to_half(s, &a, ws_at(c, s->off_dy), dy, dy, p->n, p->m, p->oh * p->ow);
    to_half(s, &a, ws_at(c, s->off_w), ot_inf(c, 1), NULL, p->m, cg, khw);
    const float one = 1.0f, zero = 0.0f;
    if (dx) {
        DNN(cudnnConvolutionBackwardData, (h, &one, s->wh, ws_at(c, s->off_w), s->yh, ws_at(c, s->off_dy), s->conv[DIR_BWD_DATA],
                                           s->bwd_data, c->p->ws, s->ws_algo, &zero, s->xh, ws_at(c, s->off_dx)));
        from_half(s, &a, dx, ws_at(c, s->off_dx), NULL, p->n, p->c, p->h * p->w, !ot_gin_set(c, 0), 1);
    }
    if (dw) {
        const void *xh = half_x(c, &a, 0);
        DNN(cudnnConvolutionBackwardFilter, (h, &one, s->xh, xh, s->yh, ws_at(c, s->off_dy),
                                             s->conv[DIR_BWD_FILTER], s->bwd_filter, c->p->ws, s->ws_algo, &zero, s->wh,
                                             ws_at(c, s->off_dw)));
        from_half(s, &a, dw, ws_at(c, s->off_dw), NULL, p->m, cg, khw, 1, 0);
    }
    if (db) { /* the half bias's gradient: the sum of the rounded dy, rounded, added to the FP32 gradient */
        float *t = (float *)ws_at(c, s->off_db);
        DNN(cudnnConvolutionBackwardBias, (h, &one, s->y, dy, &zero, s->b, t));
        ot_cuda_round_add(t, db, p->m, a.bf, a.st);
        ot_be_copy(c->p->be, db, t, sizeof(float) * (size_t)p->m);
    }
    return OT_OK;
}

/* ---- forward / backward ---- */
static ot_status gpu_forward(ot_kctx *c) {
    ot_conv_params *p = c->params;
    struct ot_conv_cudnn *s = p->cudnn;
    if (!s) return ot_fail(c->err, OT_ERR_INTERNAL, "Conv on %s: forward before prepare", c->p->be->name);
    cudnnHandle_t h = NULL;
    OT_TRY(bind_handle(c, s->ordinal, true, &h));
    if (s->amp) return amp_forward(c, h);
    const float one = 1.0f, zero = 0.0f;
    float *y = ot_outf(c, 0);
    DNN(cudnnConvolutionForward, (h, &one, s->x, ot_inf(c, 0), s->w, ot_inf(c, 1), s->conv[DIR_FWD], s->fwd, c->p->ws,
                                  s->ws_algo, &zero, s->y, y));
    if (p->has_bias) DNN(cudnnAddTensor, (h, &one, s->b, ot_inf(c, 2), &one, s->y, y));
    return OT_OK;
}

static ot_status gpu_backward(ot_kctx *c) {
    ot_conv_params *p = c->params;
    struct ot_conv_cudnn *s = p->cudnn;
    const float *dy = ot_gout(c, 0);
    if (!dy) return OT_OK;
    float *dx = ot_gin(c, 0), *dw = ot_gin(c, 1), *db = p->has_bias ? ot_gin(c, 2) : NULL;
    if (!dx && !dw && !db) return OT_OK;
    if (!s || !s->train)
        return ot_fail(c->err, OT_ERR_INTERNAL, "Conv on %s: backward without a training prepare", c->p->be->name);
    cudnnHandle_t h = NULL;
    OT_TRY(bind_handle(c, s->ordinal, true, &h));
    if (s->amp) return amp_backward(c, h, dx, dw, db);
    const float one = 1.0f, zero = 0.0f;
    if (dx) /* beta 0: cuDNN does not read dx, so an unzeroed buffer is fine */
        DNN(cudnnConvolutionBackwardData, (h, &one, s->w, ot_inf(c, 1), s->y, dy, s->conv[DIR_BWD_DATA], s->bwd_data, c->p->ws,
                                           s->ws_algo, ot_gin_set(c, 0) ? &zero : &one, s->x, dx));
    if (dw)
        DNN(cudnnConvolutionBackwardFilter, (h, &one, s->x, ot_inf(c, 0), s->y, dy, s->conv[DIR_BWD_FILTER], s->bwd_filter,
                                             c->p->ws, s->ws_algo, &one, s->w, dw));
    if (db) DNN(cudnnConvolutionBackwardBias, (h, &one, s->y, dy, &one, s->b, db));
    return OT_OK;
}

const ot_op_impl ot_cuda_conv = {
    .prepare = gpu_prepare, .forward = gpu_forward, .backward = gpu_backward, .release = gpu_release,
};
