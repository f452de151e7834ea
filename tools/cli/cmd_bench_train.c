/* cmd_bench_train.c: `onnx-train bench train`: images per second of a full
 * training step (upload of the batch, forward with BN in training mode, YOLOv5
 * loss, backward, gradient clipping, SGD step, EMA update) and milliseconds
 * per phase, on a synthetic batch (the shared test pattern and fixed boxes),
 * on any device (--device), as tools/bench/torch_train_step.py measures
 * PyTorch (--device cpu|cuda). On a GPU the timed steps run as train/trainer.c
 * runs them, with no host wait before the loss items are read at the end, and
 * the phases come from further steps synchronised at each phase boundary, so
 * that each phase's time is its kernels' and not only their launches'. */
#include "cli.h"
#include "core/config.h"
#include "core/dist.h"
#include "kernels/ops.h"
#include "train/amp.h"
#include "train/builtin.h"
#include "train/optim.h"
#include "train/step.h"
#include <jansson.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#ifdef ONNXT_HAVE_CUDA
#include <cuda_runtime_api.h> /* the GPU's name and memory for the report */
#endif

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + 1e-6 * (double)t.tv_nsec;
}

static void usage(FILE *f) {
    fprintf(f, "usage: onnx-train bench train --model M.onnx|yolov5n..x [--batch-size 16] [--img 320] [--steps 10]\n"
               "                              [--nc 80] [--device 0|cpu|cpu-guard] [--tf32] [--amp fp16|bf16|off]\n"
               "                              [--channels-last] [--json] [--profile]\n\n"
               "Times full training steps on a synthetic batch (images: the test pattern;\n"
               "targets: 8 fixed boxes an image), as `train` runs them: upload of the batch\n"
               "(from pinned memory on a GPU), forward (BN in training mode), YOLOv5 loss,\n"
               "backward, clip_grad_norm(10), SGD step and EMA update (one fused launch on the\n"
               "CUDA device, then ema shows 0), the loss items read back; warm-up steps\n"
               "first. --amp (CUDA devices; default off here, so FP32 and AMP rows are both\n"
               "explicit): the convolutions in half precision, fp16 with GradScaler's scaled\n"
               "loss gradient, unscale and skip check, as `train --amp` runs a step.\n"
               "--channels-last (with --amp): the half copies in NHWC, as `train\n"
               "--channels-last` (tools/gpu_check.sh times both layouts).\n"
               "--model takes an ONNX export or a built-in size (yolov5n, s, m, l, x: freshly\n"
               "initialised, --nc classes). Prints images/s (from the median step),\n"
               "milliseconds per phase and the process's peak memory; --json prints one JSON\n"
               "object (keys images_per_s, ms: {upload, forward, loss, backward, optimizer,\n"
               "ema, step}, peak_rss_mb, arena_mb, half_values, ranks, device, gpu, tf32, amp,\n"
               "channels_last, fused_step_ema, cuda_graph, conv_gflop_forward,\n"
               "conv_gflop_step, conv_tflops, peak_tflops, share_of_peak). The convolutions'\n"
               "GFLOP (multiply-adds x 2, as Ultralytics' GFLOPs; the step: forward, input and\n"
               "weight gradients) over the median step give TFLOP/s and, on a GPU of a known\n"
               "architecture, the share of its peak (FP32 CUDA cores; with --amp\n"
               "half-precision tensor cores). On a GPU the timed steps have no host waits\n"
               "inside (ms.step and images/s) and, on a CUDA device with one rank, replay the\n"
               "step as one CUDA graph as `train` does (captured by a second warm-up step;\n"
               "ONNXT_CUDA_GRAPH=0 or --profile: plain launches); the phases come from as many\n"
               "more plain steps with the device synchronised at each phase boundary.\n"
               "--profile adds, per op type, the forward and backward milliseconds a step\n"
               "(summed over the timed steps' nodes, divided by the steps), the gradient\n"
               "zeroing, the convolutions' GFLOP a step and rate, and the 12 slowest nodes\n"
               "(GFLOP/s forward and backward for Conv). On a GPU the node clocks time the\n"
               "host's launches, not the kernels (use Nsight Systems for those).\n");
    cli_device_help(f, true);
    fprintf(f, "\nUnder mpirun -np N (CPU ranks, as `train`): each rank runs --batch-size/N\n"
               "images with BatchNorm statistics over all ranks (SyncBatchNorm) and the\n"
               "gradients summed over ranks before clipping, the same step as one rank\n"
               "with the whole batch; rank 0 prints, images/s counts the whole batch.\n\n"
               "example:\n  onnx-train bench train --model yolov5s.onnx --batch-size 16 --img 320 --device cpu\n"
               "  onnx-train bench train --model yolov5s --batch-size 64 --img 640 --device 0 --json\n"
               "  OMP_NUM_THREADS=1 mpirun -np 2 onnx-train bench train --model yolov5s.onnx --device cpu\n");
}

/* The GPU's name for the report: the CUDA runtime's, "CPU executor" for the
 * executor's CUDA device, NULL for the CPU devices. */
static const char *gpu_name(ot_backend *be, char *buf, size_t n) {
    if (be->kind != OT_DEV_CUDA) return NULL;
    if (!ot_backend_cuda_stream(be, OT_STREAM_COMPUTE)) return "CPU executor";
#ifdef ONNXT_HAVE_CUDA
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, be->ordinal) == cudaSuccess) {
        snprintf(buf, n, "%s", prop.name);
        return buf;
    }
#endif
    (void)buf;
    (void)n;
    return "unknown GPU";
}

/* MiB of the GPU's memory in use (every process's, the CUDA context's too); -1 when not a GPU. */
static double gpu_used_mb(ot_backend *be) {
#ifdef ONNXT_HAVE_CUDA
    size_t free_b = 0, total_b = 0;
    if (be->kind == OT_DEV_CUDA && ot_backend_cuda_stream(be, OT_STREAM_COMPUTE) && cudaSetDevice(be->ordinal) == cudaSuccess &&
        cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        return (double)(total_b - free_b) / (1 << 20);
#endif
    (void)be;
    return -1;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Forward multiply-adds x 2 of a Conv node (output elements x weight fan-in). */
static double conv_fwd_flops(const ot_plan *p, const ot_node *nd) {
    const ot_shape *ys = &p->shape[nd->out[0]], *wsh = &p->shape[nd->in[1]];
    return 2.0 * (double)ot_numel(ys) * (double)(wsh->d[1] * wsh->d[2] * wsh->d[3]);
}

/* The convolutions' work a training step: forward FLOPs (multiply-adds x 2, as Ultralytics' GFLOPs) into *fwd, and
 * the forward with the input and weight gradients (twice the forward each; no input gradient for the first)
 * returned. */
static double conv_step_flops(const ot_step *st, double *fwd) {
    const ot_graph *g = st->graph;
    double f = 0, all = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ot_node *nd = &g->nodes[i];
        if (strcmp(nd->op_type, "Conv") != 0 || nd->n_out < 1 || nd->out[0] < 0) continue;
        double fl = conv_fwd_flops(st->ag->p, nd);
        f += fl;
        all += fl * (st->ag->p->grad[nd->in[0]] ? 3 : 2);
    }
    if (fwd) *fwd = f;
    return all;
}

/* The card's peak dense TFLOP/s, FP32 on its CUDA cores (*fp32) and half precision on its tensor cores with FP32
 * accumulation, what --amp's convolutions run (*half): SMs x the maximum clock x the per-SM rate of the
 * architecture from NVIDIA's whitepapers (A100 19.5 / 312, RTX 3090 35.6 / 71, RTX 4090 82.6 / 165, H100 SXM
 * 67 / 989 at their boost clocks); 0 where unknown (not a GPU, another architecture). */
static void gpu_peak(ot_backend *be, double *fp32, double *half) {
    *fp32 = *half = 0;
#ifdef ONNXT_HAVE_CUDA
    int sms = 0, khz = 0, major = 0, minor = 0;
    if (be->kind != OT_DEV_CUDA || !ot_backend_cuda_stream(be, OT_STREAM_COMPUTE) ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, be->ordinal) != cudaSuccess ||
        cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, be->ordinal) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, be->ordinal) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, be->ordinal) != cudaSuccess)
        return;
    double f32 = 0, f16 = 0; /* FLOP per clock per SM */
    char name[256];
    const char *gn = gpu_name(be, name, sizeof name);
    const bool geforce = gn && strstr(gn, "GeForce") != NULL;
    if (major == 8 && minor == 0) { f32 = 128; f16 = 2048; }           /* A100 */
    else if (major == 8 && minor == 6) { f32 = 256; f16 = geforce ? 512 : 1024; } /* RTX 30 (half rate), A6000 */
    else if (major == 8 && minor == 9) { f32 = 256; f16 = 512; }        /* RTX 40, L40 */
    else if (major == 9 && minor == 0) { f32 = 256; f16 = 4096; }       /* H100, H200 */
    const double clk = (double)khz * 1e3 * (double)sms / 1e12;
    *fp32 = f32 * clk;
    *half = f16 * clk;
#else
    (void)be;
#endif
}

/* Per op type and slowest nodes, ms per step, from the plan's per-node clock. */
static void print_profile(const ot_step *st, long steps) {
    const ot_graph *g = st->graph;
    const double *pr = st->ag->p->prof;
    enum { MAXT = 64 };
    const char *op[MAXT];
    double tf[MAXT] = {0}, tb[MAXT] = {0};
    int cnt[MAXT] = {0}, nt = 0;
    double sf = 0, sb = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        int k = 0;
        while (k < nt && strcmp(op[k], g->nodes[i].op_type) != 0) k++;
        if (k == nt) { if (nt == MAXT) continue; op[nt++] = g->nodes[i].op_type; }
        tf[k] += pr[2 * i]; tb[k] += pr[2 * i + 1]; cnt[k]++;
        sf += pr[2 * i]; sb += pr[2 * i + 1];
    }
    double sc = 1e3 / (double)steps;
    printf("profile, ms per step (node clocks):\n  %-20s %6s %9s %9s\n", "op", "nodes", "forward", "backward");
    for (int k = 0; k < nt; k++)
        if (tf[k] + tb[k] > 0) printf("  %-20s %6d %9.1f %9.1f\n", op[k], cnt[k], tf[k] * sc, tb[k] * sc);
    printf("  %-20s %6s %9s %9.1f\n", "(gradient zeroing)", "", "", pr[2 * g->n_nodes] * sc);
    double cfl = conv_step_flops(st, NULL), ct = 0; /* convolution work a step: forward, input and weight gradients */
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].op_type, "Conv") == 0) ct += pr[2 * i] + pr[2 * i + 1];
    printf("  %-20s %6d %9.1f %9.1f\n", "total", g->n_nodes, sf * sc, sb * sc + pr[2 * g->n_nodes] * sc);
    if (ct > 0)
        printf("  convolutions: %.1f GFLOP a step (forward and backward), %.0f GFLOP/s over their time\n", cfl / 1e9,
               cfl / 1e9 / (ct / (double)steps));
    int *idx = malloc(sizeof(int) * (size_t)g->n_nodes);
    if (!idx) return;
    for (int i = 0; i < g->n_nodes; i++) idx[i] = i;
    for (int r = 0; r < 12 && r < g->n_nodes; r++) { /* partial selection sort: the 12 slowest */
        int b = r;
        for (int j = r + 1; j < g->n_nodes; j++)
            if (pr[2 * idx[j]] + pr[2 * idx[j] + 1] > pr[2 * idx[b]] + pr[2 * idx[b] + 1]) b = j;
        int tmp = idx[r]; idx[r] = idx[b]; idx[b] = tmp;
        const ot_node *nd = &g->nodes[idx[r]];
        const ot_shape *ys = nd->n_out ? &st->ag->p->shape[nd->out[0]] : NULL;
        char sb2[160] = "";
        if (ys) ot_shape_str(ys, sb2, sizeof sb2);
        printf("  %-34s %-10s %-18s %8.1f %8.1f", nd->name ? nd->name : "", nd->op_type, sb2, pr[2 * idx[r]] * sc,
               pr[2 * idx[r] + 1] * sc);
        if (strcmp(nd->op_type, "Conv") == 0 && ys && pr[2 * idx[r]] > 0 && pr[2 * idx[r] + 1] > 0) {
            double fl = conv_fwd_flops(st->ag->p, nd);
            bool dx = st->ag->p->grad[nd->in[0]] != NULL;
            printf("  %5.0f %5.0f GFLOP/s", fl / (pr[2 * idx[r]] / (double)steps) / 1e9,
                   (dx ? 2 : 1) * fl / (pr[2 * idx[r] + 1] / (double)steps) / 1e9);
        }
        printf("\n");
    }
    free(idx);
}

/* What one benchmark step needs. */
typedef struct bstep {
    ot_backend *be;
    ot_step *st;
    ot_optimizer *o;
    ot_ema *ema;
    const float *x, *t; /* the batch (staging memory) and its targets (host) */
    int nt, world;
    ot_scaler *scaler;  /* --amp fp16 */
} bstep;

/* One training step's device work as train/trainer.c queues it, after the host staged the loss's targets:
 * the batch uploaded, forward, the loss (its items stay on the device), backward, the gradient sum over ranks,
 * clip_grad_norm(10), the optimizer step with the EMA update (one launch on a device with fused slab kernels;
 * on the others the step, then the EMA, as ot_optimizer_step_ema does there), zero_grad. c[0..6]: the clock at
 * each phase boundary (upload, forward, loss, backward, optimizer (clip, step, zero_grad; with the EMA when
 * fused), ema), with the device synchronised first when phases. */
static ot_status step_device(const bstep *B, bool phases, double *c, ot_error *e) {
    ot_step *st = B->st;
#define MARK(k) do { if (phases) ot_be_sync(B->be); c[k] = now_ms(); } while (0)
    ot_plan_set_input(st->ag->p, 0, B->x);
    MARK(1);
    OT_TRY(ot_autograd_forward(st->ag, NULL, e));
    MARK(2);
    const float *outs[OT_MAX_HEADS];
    float *douts[OT_MAX_HEADS];
    ot_shape shp[OT_MAX_HEADS];
    for (int l = 0; l < st->graph->n_outputs; l++) {
        outs[l] = st->ag->p->data[st->graph->outputs[l]];
        shp[l] = st->ag->p->shape[st->graph->outputs[l]];
        douts[l] = ot_autograd_output_grad(st->ag, l);
    }
    OT_TRY(ot_yolo_loss_run(st->loss, &st->cfg, outs, shp, douts, e));
    if (B->scaler) {
        int64_t n[OT_MAX_HEADS];
        for (int l = 0; l < st->graph->n_outputs; l++) n[l] = ot_numel(&shp[l]);
        ot_scaler_scale(B->scaler, douts, n, st->graph->n_outputs);
    }
    MARK(3);
    OT_TRY(ot_autograd_backward(st->ag, e));
    if (B->world > 1) ot_dist_sum_f32_on(st->ag->be, st->ag->grad_slab, (int64_t)st->ag->slab_floats);
    MARK(4);
    if (B->scaler) ot_scaler_unscale(B->scaler, st->ag->grad_slab, (int64_t)st->ag->slab_floats);
    ot_optimizer_clip_grad_norm(B->o, 10.0);
    const ot_slab_kernels *sk = B->o->k; /* fused step + EMA on this device: ot_optimizer_step_ema is one launch */
    const bool fused = sk->clip_norm && sk->sgd_fused && sk->adam_fused;
    if (fused) ot_optimizer_step_ema(B->o, B->ema);
    else ot_optimizer_step(B->o);
    if (B->scaler) ot_scaler_update(B->scaler);
    ot_autograd_zero_grad(st->ag);
    MARK(5);
    if (!fused) ot_ema_update(B->ema, st->ag);
    MARK(6);
#undef MARK
    return OT_OK;
}

/* One training step: build_targets on the host, the device work (step_device; with g non-NULL replayed from
 * the CUDA graph *g, captured by the first such call, after the host half of the optimizer step, as
 * train/trainer.c replays its steps), and the loss items read back, which waits for the device. ms[0..5]: the
 * phases of step_device (0 unless phases); ms[6]: the whole step, ended by a synchronisation. */
static ot_status bench_step(const bstep *B, bool phases, ot_be_graph **g, double *ms, ot_error *e) {
    ot_step *st = B->st;
    double c[7] = {0};
    c[0] = now_ms();
    ot_shape shp[OT_MAX_HEADS];
    for (int l = 0; l < st->graph->n_outputs; l++) shp[l] = st->ag->p->shape[st->graph->outputs[l]];
    OT_TRY(ot_yolo_loss_stage(st->loss, &st->cfg, shp, B->t, B->nt, e));
    if (g && *g) {
        ot_optimizer_step_ema_host(B->o, B->ema);
        ot_be_graph_launch(B->be, *g);
    } else if (g) {
        if (!ot_be_graph_begin(B->be)) return ot_fail(e, OT_ERR_INTERNAL, "%s: cannot begin a graph capture", B->be->name);
        ot_status s = step_device(B, false, c, e);
        ot_be_graph *cg = ot_be_graph_end(B->be);
        if (s) { ot_be_graph_free(B->be, cg); return s; }
        if (!cg) return ot_fail(e, OT_ERR_UNSUPPORTED, "%s: the step could not be captured as a CUDA graph (run with ONNXT_CUDA_GRAPH=0)",
                                B->be->name);
        *g = cg;
        ot_be_graph_launch(B->be, cg);
    } else {
        OT_TRY(step_device(B, phases, c, e));
    }
    ot_loss_items li;
    ot_yolo_loss_items(st->loss, &li);
    ot_be_sync(B->be);
    double end = now_ms();
    for (int k = 0; k < 6; k++) ms[k] = phases ? c[k + 1] - c[k] : 0;
    ms[6] = end - c[0];
    return OT_OK;
}

int bench_train(int argc, char **argv) {
    const char *model = NULL, *device = "";
    long bs = 16, img = 320, steps = 10, nc = 80;
    bool json = false, profile = false;
    ot_amp_mode amp = OT_AMP_OFF;
    double *prof = NULL; /* --profile's node clocks (the plan's prof while the first pass runs) */
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { usage(stdout); return 0; }
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = argv[++i];
        else if (strcmp(argv[i], "--tf32") == 0) ot_config_set_tf32(true);
        else if (strcmp(argv[i], "--amp") == 0 && i + 1 < argc) {
            if (!ot_amp_parse(argv[++i], &amp)) {
                fprintf(stderr, "onnx-train bench train: --amp %s: expected fp16, bf16 or off\n", argv[i]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--channels-last") == 0) ot_config_set_channels_last(true);
        else if (strcmp(argv[i], "--json") == 0) json = true;
        else if (strcmp(argv[i], "--profile") == 0) profile = true;
        else if (cli_int_arg(argc, argv, &i, "--batch-size", 1, 1024, &bs)) { if (bs == LONG_MIN) return cli_fail("bench train: bad --batch-size"); }
        else if (cli_int_arg(argc, argv, &i, "--img", 32, 4096, &img)) { if (img == LONG_MIN || img % 32) return cli_fail("bench train: --img must be a multiple of 32"); }
        else if (cli_int_arg(argc, argv, &i, "--steps", 1, 100000, &steps)) { if (steps == LONG_MIN) return cli_fail("bench train: bad --steps"); }
        else if (cli_int_arg(argc, argv, &i, "--nc", 1, 10000, &nc)) { if (nc == LONG_MIN) return cli_fail("bench train: --nc needs 1..10000"); }
        else return cli_fail("bench train: unknown argument '%s' (see onnx-train bench train --help)", argv[i]);
    }
    if (!model) return cli_fail("bench train: --model M.onnx is required (see onnx-train bench train --help)");
    ot_error e;
    ot_backend *be = NULL;
    if (ot_backend_get(device, &be, &e)) return cli_error(&e);
    if (ot_dist_init(NULL, NULL, &e)) return cli_error(&e);
    int world = ot_dist_world(), rank = ot_dist_rank();
    const long total_bs = bs;
    if (bs % world) return cli_fail("bench train: --batch-size %ld is not a multiple of the %d ranks", bs, world);
    bs /= world;
    ot_model *m;
    if (ot_builtin_known(model)) { /* a built-in size, as `train --model yolov5s` */
        uint8_t *buf;
        size_t len;
        if (ot_builtin_onnx(model, (int)nc, (int)img, 0, NULL, &buf, &len, &e)) return cli_error(&e);
        ot_status ls = ot_model_load_buffer(buf, len, ".", model, &m, &e);
        free(buf);
        if (ls) return cli_error(&e);
    } else if (ot_model_load(model, &m, &e)) {
        return cli_error(&e);
    }
    if (!m->head.found) { ot_model_destroy(m); return cli_fail("%s: no YOLOv5 Detect head found", model); }
    if (amp != OT_AMP_OFF && be->kind != OT_DEV_CUDA) {
        ot_model_destroy(m);
        return cli_fail("bench train: --amp %s needs a CUDA device (%s trains in FP32)", ot_amp_name(amp), be->name);
    }
    const bool cl = ot_config_get()->channels_last;
    if (cl && amp == OT_AMP_OFF) {
        ot_model_destroy(m);
        return cli_fail("bench train: --channels-last (or ONNXT_CHANNELS_LAST=1) lays out the half-precision convolutions "
                        "of --amp fp16|bf16 on a CUDA device; this run is FP32");
    }
    ot_config_set_amp((int)amp); /* before the plan: the convolutions read it */
    ot_hyp hyp;
    ot_hyp_default(&hyp);
    ot_shape s = {4, {bs, 3, img, img}};
    ot_scaler *scaler = NULL;
    ot_step *st = NULL;
    ot_optimizer *o = NULL;
    ot_ema *ema = NULL;
    ot_be_graph *sg = NULL; /* the timed step as a CUDA graph */
    /* the batch in the backend's staging memory (pinned on a GPU), as the loader's */
    float *x = ot_be_host_alloc(be, sizeof(float) * (size_t)ot_numel(&s)), *t = malloc(sizeof(float) * 6 * 8 * (size_t)bs);
    int rc = 0, nt = 0;
    if (!x || !t) { rc = cli_fail("out of memory"); goto done; }
    ot_fill_pattern(x, ot_numel(&s), 3);
    for (long b = 0; b < bs; b++) /* 8 boxes an image, spread over sizes and classes */
        for (int k = 0; k < 8; k++, nt++) {
            float *r = t + 6 * nt;
            r[0] = (float)b; r[1] = (float)((b * 8 + k) % m->head.nc);
            r[2] = 0.1f + 0.1f * (float)k; r[3] = 0.15f + 0.09f * (float)((k * 3 + b) % 8);
            r[4] = 0.03f + 0.05f * (float)(k % 5); r[5] = 0.04f + 0.06f * (float)((k + b) % 4);
        }
    if (ot_step_create_on(be, m, NULL, &hyp, s, (int)img, &st, &e) || ot_optimizer_create(st->ag, OT_OPT_SGD, hyp.lr0, hyp.momentum, hyp.weight_decay, &o, &e) ||
        ot_ema_create(st->ag, &ema, &e) || (amp == OT_AMP_FP16 && ot_scaler_create(be, OT_AMP_INIT_SCALE, 0, &scaler, &e))) {
        rc = cli_error(&e);
        goto done;
    }
    if (scaler) ot_optimizer_set_amp(o, scaler->dev);
    ot_autograd_set_bn_sync(st->ag, world > 1 ? ot_dist_sum_f64 : NULL); /* SyncBatchNorm across ranks */
    enum { NPH = 7 };
    static double ph[NPH][1024];
    long n = steps > 1024 ? 1024 : steps;
    /* A real GPU runs the step twice over: without host waits inside the step (as train/trainer.c does), for
     * images/s and ms.step; then with the device synchronised at each phase boundary, for the phases. On the
     * CPU devices and the executor, where a synchronisation is nothing, one pass gives both. */
    /* The timed pass replays the step as one CUDA graph where train would (a CUDA device, one rank, fused
     * optimizer kernels, ONNXT_CUDA_GRAPH not 0; not with --profile, whose clocks time the launches); it is
     * then captured by the second warm-up step and the phases come from the plain second pass. */
    const bool fused_k = o->k->clip_norm && o->k->sgd_fused && o->k->adam_fused;
    const bool graphs = ot_config_get()->cuda_graph && be->v->graph_begin && world == 1 && fused_k && !profile;
    const bool split = graphs || (be->kind == OT_DEV_CUDA && ot_backend_cuda_stream(be, OT_STREAM_COMPUTE) != NULL);
    if (graphs && ot_optimizer_use_graphs(o, &e)) { rc = cli_error(&e); goto done; }
    bstep B = {be, st, o, ema, x, t, nt, world, scaler};
    double tp[NPH] = {0};
    ot_be_sync(be);
    for (int pass = 0; pass < (split ? 2 : 1); pass++) {
        const bool phases = !split || pass == 1;
        for (long it = pass ? 0 : -2; it < n; it++) { /* it -2, -1: warm-up (-1 captures the graph) */
            if (profile && pass == 0 && it == 0 && !(prof = st->ag->p->prof = calloc(2 * (size_t)st->graph->n_nodes + 1, sizeof(double)))) {
                rc = cli_fail("out of memory");
                goto done;
            }
            ot_be_graph **g = graphs && pass == 0 && it >= -1 ? &sg : NULL;
            if (bench_step(&B, phases, g, tp, &e)) { rc = cli_error(&e); goto done; }
            if (it < 0) continue;
            if (phases) for (int k = 0; k < NPH - 1; k++) ph[k][it] = tp[k];
            if (pass == 0) ph[NPH - 1][it] = tp[NPH - 1];
        }
        st->ag->p->prof = NULL; /* the profile covers the first pass's timed steps */
    }
    st->ag->p->prof = prof;
    double med[NPH];
    for (int k = 0; k < NPH; k++) { qsort(ph[k], (size_t)n, sizeof(double), cmp_d); med[k] = ph[k][n / 2]; }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double ips = (double)total_bs / (med[NPH - 1] / 1e3), rss = (double)ru.ru_maxrss / 1024.0, gpu_mb = gpu_used_mb(be);
    char gbuf[256];
    const char *gpu = gpu_name(be, gbuf, sizeof gbuf);
    const bool real_gpu = gpu && ot_backend_cuda_stream(be, OT_STREAM_COMPUTE) != NULL;
    const bool tf32 = real_gpu && ot_config_get()->tf32; /* what the convolutions ran with */
    const bool fused = o->k->clip_norm && o->k->sgd_fused && o->k->adam_fused; /* the EMA rides the optimizer's launch */
    /* the convolutions' work over the whole batch, the rate it was done at over the median step, the card's peak
     * for the row's precision (TF32 rows: none known) */
    double cfwd, cfl = conv_step_flops(st, &cfwd) * world, p32, p16;
    cfwd *= world;
    gpu_peak(be, &p32, &p16);
    const double tflops = cfl / (med[NPH - 1] / 1e3) / 1e12, peak = amp != OT_AMP_OFF ? p16 : tf32 ? 0 : p32;
    if (world > 1) { /* the collectives keep the ranks in step; memory: all ranks together */
        double v = rss;
        ot_dist_sum_f64(&v, 1);
        rss = v;
    }
    int nhalf = 0; /* activations stored in half precision (--amp, core/runtime/passes.h ot_pass_half_act) */
    for (int v = 0; v < st->ag->p->nv; v++) nhalf += st->ag->p->dtype[v] == OT_F16 || st->ag->p->dtype[v] == OT_BF16;
    if (rank != 0) goto done;
    static const char *names[NPH] = {"upload", "forward", "loss", "backward", "optimizer", "ema", "step"};
    if (json) {
        json_t *j = json_object(), *ms = json_object();
        json_object_set_new(j, "model", json_string(model));
        json_object_set_new(j, "device", json_string(be->name));
        json_object_set_new(j, "gpu", gpu ? json_string(gpu) : json_null());
        json_object_set_new(j, "tf32", json_boolean(tf32));
        json_object_set_new(j, "amp", json_string(ot_amp_name(amp)));
        json_object_set_new(j, "channels_last", json_boolean(cl));
        json_object_set_new(j, "batch_size", json_integer(total_bs));
        json_object_set_new(j, "ranks", json_integer(world));
        json_object_set_new(j, "img", json_integer(img));
        json_object_set_new(j, "steps", json_integer(n));
        json_object_set_new(j, "images_per_s", json_real(ips));
        for (int k = 0; k < NPH; k++) json_object_set_new(ms, names[k], json_real(med[k]));
        json_object_set_new(j, "ms", ms);
        json_object_set_new(j, "fused_step_ema", json_boolean(fused));
        json_object_set_new(j, "cuda_graph", json_boolean(graphs));
        json_object_set_new(j, "conv_gflop_forward", json_real(cfwd / 1e9));
        json_object_set_new(j, "conv_gflop_step", json_real(cfl / 1e9));
        json_object_set_new(j, "conv_tflops", json_real(tflops));
        json_object_set_new(j, "peak_tflops", peak > 0 ? json_real(peak) : json_null());
        json_object_set_new(j, "share_of_peak", peak > 0 ? json_real(tflops / peak) : json_null());
        json_object_set_new(j, "phases", json_string(split ? "from separate steps synchronised at each phase" : "the same steps"));
        json_object_set_new(j, "peak_rss_mb", json_real(rss));
        json_object_set_new(j, "arena_mb", json_real((double)st->ag->arena_bytes / (1 << 20)));
        json_object_set_new(j, "half_values", json_integer(nhalf));
        if (gpu_mb >= 0) json_object_set_new(j, "gpu_used_mb", json_real(gpu_mb));
        char *js = json_dumps(j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        printf("%s\n", js);
        free(js);
        json_decref(j);
    } else {
        printf("%s, batch %ld at %ld px on %s%s%s%s%s%s%s%s (%d rank%s), %ld steps (median):\n", model, total_bs, img, be->name,
               real_gpu ? " (" : "", real_gpu ? gpu : "", real_gpu ? ")" : "", tf32 ? ", TF32 convolutions" : "",
               amp != OT_AMP_OFF ? ", AMP " : "", amp != OT_AMP_OFF ? ot_amp_name(amp) : "", cl ? " channels-last" : "", world,
               world > 1 ? "s" : "", n);
        for (int k = 0; k < NPH; k++)
            printf("  %-10s %9.1f ms%s\n", names[k], med[k], k == 5 && fused ? " (in the optimizer's fused launch)"
                                                          : k == NPH - 1 && graphs ? " (one CUDA graph, as train replays it; the phases from separate plain synchronised steps)"
                                                          : k == NPH - 1 && split ? " (no waits inside; the phases from separate synchronised steps)" : "");
        printf("  %.2f images/s, peak memory %.0f MiB (activations and gradients arena %.0f MiB%s", ips, rss,
               (double)st->ag->arena_bytes / (1 << 20), nhalf ? ", " : ")\n");
        if (nhalf) printf("%d activations in half precision)\n", nhalf);
        printf("  convolutions: %.2f GFLOP a step (forward %.2f), %.3g TFLOP/s over the step", cfl / 1e9, cfwd / 1e9, tflops);
        if (peak > 0) printf(", %.1f%% of the card's %s peak (%.0f TFLOP/s)", 100 * tflops / peak, amp != OT_AMP_OFF ? "half-precision tensor" : "FP32", peak);
        printf("\n");
        if (gpu_mb >= 0) printf("  GPU memory in use at the end: %.0f MiB (every process's, the CUDA context's too)\n", gpu_mb);
    }
    if (profile) {
        print_profile(st, n);
        if (be->kind == OT_DEV_CUDA)
            printf("  (on %s the node clocks time the host's launches and waits, not the kernels themselves)\n", be->name);
    }
done:
    ot_be_graph_free(be, sg);
    if (st) st->ag->p->prof = NULL;
    free(prof);
    ot_scaler_destroy(scaler);
    ot_ema_destroy(ema);
    ot_optimizer_destroy(o);
    ot_step_destroy(st);
    ot_be_host_free(be, x);
    free(t);
    ot_model_destroy(m);
    if (rc && world > 1) ot_dist_abort(rc); /* the other ranks would wait in a collective */
    ot_dist_finalize();
    return rc;
}
