/* cmd_bench_kernels.c: `onnx-train bench kernels`: the hand-written CUDA
 * kernels (kernels/cuda/, docs/CUDA.md) timed on a GPU against the byte floor
 * and a measured device-to-device copy of the same byte count (issue 14,
 * docs/PERF.md "GPU kernels"). tools/bench/torch_kernels.py times PyTorch's
 * equivalents on the same card from the shapes `--shapes-json` writes.
 *
 * Host part (every build): the shapes come from the built-in model as training
 * sees it (ot_step_create_on the CPU at batch 1: the parameter and buffer
 * slabs' segments and groups as train/optim.c builds them, the Resize inputs,
 * the head outputs), and the loss tables from train/loss.c's host part
 * (ot_yolo_loss_prepare) on `bench train`'s synthetic targets. GPU part (CUDA
 * builds only): device memory through the CUDA backend, launches on its
 * compute stream, CUDA events around each launch. Nothing on the host touches
 * device memory: data crosses through ot_be_upload. */
#include "cli.h"
#include "kernels/slab.h"
#include "kernels/yolo_loss.h"
#include "train/builtin.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/step.h"
#include <jansson.h>
#include <math.h>
#include <string.h>
#ifdef ONNXT_HAVE_CUDA
#include "kernels/cuda/cuda_kernels.h"
#include <cuda_runtime_api.h>
#endif
#ifndef OT_SLAB_EMA_ONLY
#define OT_SLAB_EMA_ONLY (-1) /* as kernels/cuda/cuda_kernels.h: a segment the fused step only averages */
#endif

static void usage(FILE *f) {
    fprintf(f, "usage: onnx-train bench kernels [--device 0|cuda:N] [--iters 50] [--json] [--model yolov5s]\n"
               "                                [--batch-size 16] [--img 640] [--shapes-json F]\n\n"
               "Times the hand-written CUDA kernels on a GPU with CUDA events (5 warm-up\n"
               "launches, then the median of --iters): nearest-2x upsample forward and\n"
               "backward at (16, 32, 80, 80) and at the model's two upsample inputs; the\n"
               "one-launch SGD (Nesterov) + clip scale + EMA step and Adam over a segment\n"
               "table shaped like the model's parameters (BN buffers EMA-only); the clip\n"
               "norm; the YOLOv5 loss kernels (3 heads, targets then objectness, items) on\n"
               "tables built by train/loss.c from 8 boxes an image. For each: microseconds,\n"
               "the byte floor (what the kernel must read and write), GB/s, and the ratio to\n"
               "a cudaMemcpyAsync device-to-device copy moving the same bytes (half read,\n"
               "half written), timed the same way.\n"
               "--shapes-json F writes the shapes used (parameters with their groups, BN\n"
               "buffers, upsample inputs, head outputs, matched targets a head) for\n"
               "tools/bench/torch_kernels.py; without --device it only writes F (any build).\n"
               "--device: the GPU to time (default 0, the first GPU: there is no CPU fallback,\n"
               "as this times GPU kernels). Needs a CUDA build and a GPU; otherwise, and on the\n"
               "CPU executor (onnx-train-cudaemu, -DONNXT_CUDA=EMU builds), it fails (exit 2)\n"
               "saying why. Devices of this binary: \"%s\".\n\n"
               "example:\n  onnx-train bench kernels --device 0 --json --iters 100\n"
               "  onnx-train bench kernels --shapes-json shapes.json\n", ot_backend_list());
}

/* ---- the host part: shapes and tables from the model as training sees it ---- */

typedef struct shapes {
    ot_step *st;          /* CPU, batch 1: the slabs' layout */
    ot_slab_seg *step;    /* stepped parameters (their groups), then BN buffers (OT_SLAB_EMA_ONLY) */
    int nstep, nparam;
    ot_slab_seg *clip;    /* every parameter, group 0 (train/optim.c's clip table) */
    int64_t floats, stepped, ema_only;
    ot_shape up[4];       /* Resize inputs at the benchmark batch */
    int nup;
    ot_shape head[OT_MAX_HEADS];
    int nl;
    float *targets;
    int nt;
} shapes;

static void shapes_free(shapes *S) {
    ot_step_destroy(S->st);
    free(S->step);
    free(S->clip);
    free(S->targets);
}

static int shapes_build(shapes *S, const char *model, long bs, long img, long nc) {
    memset(S, 0, sizeof *S);
    ot_error e;
    ot_model *m;
    uint8_t *buf;
    size_t len;
    if (!ot_builtin_known(model)) return cli_fail("bench kernels: --model takes a built-in size (yolov5n, s, m, l, x), not '%s'", model);
    if (ot_builtin_onnx(model, (int)nc, (int)img, 0, NULL, &buf, &len, &e)) return cli_error(&e);
    ot_status ls = ot_model_load_buffer(buf, len, ".", model, &m, &e);
    free(buf);
    if (ls) return cli_error(&e);
    ot_hyp hyp;
    ot_hyp_default(&hyp);
    ot_shape in = {4, {1, 3, img, img}};
    ot_status cs = ot_step_create_on(ot_backend_cpu(), m, NULL, &hyp, in, (int)img, &S->st, &e);
    ot_model_destroy(m);
    if (cs) return cli_error(&e);
    ot_optimizer *o;
    if (ot_optimizer_create(S->st->ag, OT_OPT_SGD, hyp.lr0, hyp.momentum, hyp.weight_decay, &o, &e)) return cli_error(&e);
    const ot_autograd *ag = S->st->ag;
    S->step = malloc(sizeof(ot_slab_seg) * (size_t)(ag->n_vars + 1));
    S->clip = malloc(sizeof(ot_slab_seg) * (size_t)(ag->n_vars + 1));
    if (!S->step || !S->clip) { ot_optimizer_destroy(o); return cli_fail("out of memory"); }
    /* as train/optim.c's upload_segments: the stepped tensors with their groups; then the buffers EMA-only */
    for (int i = 0; i < o->n; i++) {
        int64_t n = ot_numel(&ag->p->shape[ag->var_vid[o->var[i]]]);
        S->step[S->nstep++] = (ot_slab_seg){(int64_t)ag->var_off[o->var[i]], n, o->group[i], 0};
        S->stepped += n;
    }
    for (int i = 0; i < ag->n_vars; i++) {
        int v = ag->var_vid[i];
        int64_t n = ot_numel(&ag->p->shape[v]);
        if (ag->kind[v] == OT_VAR_PARAM) {
            S->clip[S->nparam++] = (ot_slab_seg){(int64_t)ag->var_off[i], n, 0, 0};
        } else {
            S->step[S->nstep++] = (ot_slab_seg){(int64_t)ag->var_off[i], n, OT_SLAB_EMA_ONLY, 0};
            S->ema_only += n;
        }
    }
    ot_optimizer_destroy(o);
    S->floats = (int64_t)ag->slab_floats;
    const ot_graph *g = S->st->graph;
    for (int k = 0; k < g->n_nodes && S->nup < 4; k++)
        if (strcmp(g->nodes[k].op_type, "Resize") == 0) {
            S->up[S->nup] = ag->p->shape[g->nodes[k].in[0]];
            S->up[S->nup++].d[0] = bs;
        }
    S->nl = g->n_outputs;
    for (int l = 0; l < S->nl; l++) {
        S->head[l] = ag->p->shape[g->outputs[l]];
        S->head[l].d[0] = bs;
    }
    /* bench train's synthetic targets: 8 boxes an image, spread over sizes and classes */
    int ncls = g->head.nc;
    if (!(S->targets = malloc(sizeof(float) * 6 * 8 * (size_t)bs))) return cli_fail("out of memory");
    for (long b = 0; b < bs; b++)
        for (int k = 0; k < 8; k++, S->nt++) {
            float *r = S->targets + 6 * S->nt;
            r[0] = (float)b; r[1] = (float)((b * 8 + k) % ncls);
            r[2] = 0.1f + 0.1f * (float)k; r[3] = 0.15f + 0.09f * (float)((k * 3 + b) % 8);
            r[4] = 0.03f + 0.05f * (float)(k % 5); r[5] = 0.04f + 0.06f * (float)((k + b) % 4);
        }
    return 0;
}

static json_t *shape_json(const ot_shape *s) {
    json_t *a = json_array();
    for (int k = 0; k < s->rank; k++) json_array_append_new(a, json_integer(s->d[k]));
    return a;
}

/* The matched targets a head, from train/loss.c's host part on the CPU (p is not read without dp). */
static int matched_rows(const shapes *S, long img, int *n) {
    ot_yolo_loss *L = ot_yolo_loss_create_on(ot_backend_cpu());
    if (!L) return cli_fail("out of memory");
    const float *p[OT_MAX_HEADS] = {0};
    ot_yolo_loss_args A;
    ot_error e;
    ot_status st = ot_yolo_loss_prepare(L, &S->st->cfg, p, S->head, S->targets, S->nt, NULL, &A, &e);
    ot_yolo_loss_destroy(L);
    if (st) return cli_error(&e);
    for (int l = 0; l < S->nl; l++) n[l] = A.layer[l].n;
    (void)img;
    return 0;
}

static int write_shapes_json(const shapes *S, const char *path, const char *model, long bs, long img) {
    int matched[OT_MAX_HEADS];
    int rc = matched_rows(S, img, matched);
    if (rc) return rc;
    const ot_autograd *ag = S->st->ag;
    const ot_graph *g = S->st->graph;
    json_t *j = json_object(), *params = json_array(), *bufs = json_array(), *up = json_array(), *heads = json_array(),
           *mt = json_array();
    static const char *gname[OT_NGROUPS] = {"bias", "weight", "bn"};
    for (int i = 0; i < S->nstep; i++) {
        /* find the variable by offset (the table keeps the slab's order) */
        for (int k = 0; k < ag->n_vars; k++) {
            if ((int64_t)ag->var_off[k] != S->step[i].off) continue;
            int v = ag->var_vid[k];
            json_t *r = json_object();
            json_object_set_new(r, "name", json_string(g->values[v].name ? g->values[v].name : ""));
            json_object_set_new(r, "shape", shape_json(&ag->p->shape[v]));
            if (S->step[i].group >= 0) {
                json_object_set_new(r, "group", json_string(gname[S->step[i].group]));
                json_array_append_new(params, r);
            } else {
                json_array_append_new(bufs, r);
            }
            break;
        }
    }
    for (int k = 0; k < S->nup; k++) json_array_append_new(up, shape_json(&S->up[k]));
    for (int l = 0; l < S->nl; l++) {
        json_array_append_new(heads, shape_json(&S->head[l]));
        json_array_append_new(mt, json_integer(matched[l]));
    }
    json_object_set_new(j, "model", json_string(model));
    json_object_set_new(j, "batch_size", json_integer(bs));
    json_object_set_new(j, "img", json_integer(img));
    json_object_set_new(j, "nc", json_integer(g->head.nc));
    json_object_set_new(j, "na", json_integer(g->head.na));
    json_object_set_new(j, "params", params);
    json_object_set_new(j, "buffers", bufs);
    json_object_set_new(j, "upsample", up);
    json_object_set_new(j, "heads", heads);
    json_object_set_new(j, "targets_per_image", json_integer(8));
    json_object_set_new(j, "matched", mt);
    rc = json_dump_file(j, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER) ? cli_fail("bench kernels: cannot write %s", path) : 0;
    json_decref(j);
    return rc;
}

#ifdef ONNXT_HAVE_CUDA
/* ---- the GPU part ---- */

typedef struct bench {
    ot_backend *be;
    cudaStream_t s;
    cudaEvent_t a, b;
    int iters;
    void *cp_src, *cp_dst;  /* the copy reference's buffers */
    size_t cp_cap;
    json_t *rows;
    bool json;
} bench;

#define CK(call) do { cudaError_t ce_ = (call); if (ce_ != cudaSuccess) return cuda_fail(#call, ce_); } while (0)
static double cuda_fail(const char *what, cudaError_t e) {
    fprintf(stderr, "onnx-train: bench kernels: %s: %s\n", what, cudaGetErrorString(e));
    return -1;
}

typedef void (*launch_fn)(const void *ctx, cudaStream_t s);

static int cmp_d(const void *x, const void *y) {
    double p = *(const double *)x, q = *(const double *)y;
    return p < q ? -1 : p > q;
}

/* Median microseconds of one launch of fn (events around each launch on the stream). */
static double time_us(bench *B, launch_fn fn, const void *ctx) {
    for (int w = 0; w < 5; w++) fn(ctx, B->s);
    CK(cudaStreamSynchronize(B->s));
    double *t = malloc(sizeof(double) * (size_t)B->iters);
    if (!t) return -1;
    for (int i = 0; i < B->iters; i++) {
        float ms = 0;
        cudaEventRecord(B->a, B->s);
        fn(ctx, B->s);
        cudaEventRecord(B->b, B->s);
        cudaError_t e = cudaEventSynchronize(B->b);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, B->a, B->b);
        if (e != cudaSuccess) { free(t); return cuda_fail("timing a launch", e); }
        t[i] = 1e3 * (double)ms;
    }
    qsort(t, (size_t)B->iters, sizeof(double), cmp_d);
    double med = t[B->iters / 2];
    free(t);
    return med;
}

typedef struct copy_ctx { void *dst; const void *src; size_t n; } copy_ctx;
static void launch_copy(const void *c, cudaStream_t s) {
    const copy_ctx *x = c;
    cudaMemcpyAsync(x->dst, x->src, x->n, cudaMemcpyDeviceToDevice, s);
}

/* One row: time fn, time a copy that moves the same bytes (bytes / 2 read, bytes / 2 written). */
static int report(bench *B, const char *name, const char *shape, double bytes, launch_fn fn, const void *ctx, const char *goal) {
    double us = time_us(B, fn, ctx);
    if (us < 0) return cli_fail("bench kernels: %s failed", name);
    size_t half = (size_t)(bytes / 2) & ~(size_t)255;
    if (half > B->cp_cap) {
        ot_be_free(B->be, B->cp_src);
        ot_be_free(B->be, B->cp_dst);
        B->cp_src = ot_be_alloc(B->be, half);
        B->cp_dst = ot_be_alloc(B->be, half);
        if (!B->cp_src || !B->cp_dst) return cli_fail("bench kernels: out of GPU memory for a %zu-byte copy", half);
        ot_be_memset(B->be, B->cp_src, 0, half);
        B->cp_cap = half;
    }
    copy_ctx cc = {B->cp_dst, B->cp_src, half ? half : 256};
    double cus = time_us(B, launch_copy, &cc);
    if (cus < 0) return cli_fail("bench kernels: the reference copy failed");
    double gbps = bytes / (us * 1e3), ratio = us / cus;
    if (B->json) {
        json_t *r = json_object();
        json_object_set_new(r, "kernel", json_string(name));
        json_object_set_new(r, "shape", json_string(shape));
        json_object_set_new(r, "us", json_real(us));
        json_object_set_new(r, "bytes", json_real(bytes));
        json_object_set_new(r, "gbps", json_real(gbps));
        json_object_set_new(r, "copy_us", json_real(cus));
        json_object_set_new(r, "copy_gbps", json_real(bytes / (cus * 1e3)));
        json_object_set_new(r, "ratio_to_copy", json_real(ratio));
        json_object_set_new(r, "pct_of_copy", json_real(100.0 / ratio));
        json_object_set_new(r, "goal", json_string(goal));
        json_array_append_new(B->rows, r);
    } else {
        printf("  %-26s %-22s %9.1f us %9.2f MB %8.1f GB/s  copy %8.1f us  %5.1f%% of copy  (goal: %s)\n", name, shape, us,
               bytes / 1e6, gbps, cus, 100.0 / ratio, goal);
    }
    return 0;
}

typedef struct up_ctx { float *y; const float *x; int64_t nc, h, w; } up_ctx;
static void launch_up_fwd(const void *c, cudaStream_t s) {
    const up_ctx *u = c;
    ot_cuda_upsample2x_fwd(u->y, u->x, u->nc, u->h, u->w, s);
}
static void launch_up_bwd(const void *c, cudaStream_t s) {
    const up_ctx *u = c;
    ot_cuda_upsample2x_bwd(u->y, u->x, u->nc, u->h, u->w, 0, s);
}

typedef struct step_ctx {
    const ot_slab_seg *seg;
    int nseg;
    float *p, *g, *m1, *m2;
    ot_sgd_args sgd;
    ot_adam_args adam;
    ot_cuda_step_extra x;
    float *clip;
    double *scratch;
} step_ctx;
static void launch_sgd(const void *c, cudaStream_t s) {
    const step_ctx *k = c;
    ot_cuda_sgd(k->seg, k->nseg, k->p, k->g, k->m1, &k->sgd, &k->x, s);
}
static void launch_adam(const void *c, cudaStream_t s) {
    const step_ctx *k = c;
    ot_cuda_adam(k->seg, k->nseg, k->p, k->g, k->m1, k->m2, &k->adam, &k->x, s);
}
static void launch_clip(const void *c, cudaStream_t s) {
    const step_ctx *k = c;
    ot_cuda_clip_norm(k->seg, k->nseg, k->g, 10.0f, k->clip, k->scratch, s);
}

static void launch_loss(const void *c, cudaStream_t s) {
    const ot_yolo_loss_args *A = c;
    for (int l = 0; l < A->nl; l++) {
        ot_cuda_yolo_loss_targets(A, l, s);
        ot_cuda_yolo_loss_objectness(A, l, s);
    }
    ot_cuda_yolo_loss_items(A, s);
}

static uint64_t rnext(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Device floats uniform in [-a, a] (made on the host, uploaded). */
static float *dev_random(ot_backend *be, int64_t n, float a, uint64_t seed) {
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1)), *d = ot_be_alloc(be, sizeof(float) * (size_t)(n ? n : 1));
    if (!h || !d) { free(h); ot_be_free(be, d); return NULL; }
    for (int64_t i = 0; i < n; i++) h[i] = a * (float)((double)(rnext(&seed) >> 11) * 0x1p-52 - 1.0);
    ot_be_upload(be, d, h, sizeof(float) * (size_t)n);
    ot_be_sync(be); /* h is pageable: make sure the copy is done before it is freed */
    free(h);
    return d;
}

static void shape_str(char *buf, size_t n, const int64_t *d, int rank) {
    size_t o = 0;
    buf[0] = 0;
    for (int k = 0; k < rank && o < n; k++) o += (size_t)snprintf(buf + o, n - o, k ? "x%lld" : "%lld", (long long)d[k]);
}

static int bench_upsample(bench *B, const int64_t d[4]) {
    int64_t nc = d[0] * d[1], h = d[2], w = d[3], n = nc * h * w;
    float *x = dev_random(B->be, n, 1, 1), *y = dev_random(B->be, 4 * n, 1, 2);
    if (!x || !y) { ot_be_free(B->be, x); ot_be_free(B->be, y); return cli_fail("bench kernels: out of GPU memory"); }
    char sh[64];
    shape_str(sh, sizeof sh, d, 4);
    double bytes = 4.0 * (double)(n + 4 * n); /* read x, write 4x (forward); read 4x, write x (backward) */
    up_ctx f = {y, x, nc, h, w}, b = {x, y, nc, h, w};
    int rc = report(B, "upsample2x_fwd", sh, bytes, launch_up_fwd, &f, ">= 85% of copy");
    if (!rc) rc = report(B, "upsample2x_bwd", sh, bytes, launch_up_bwd, &b, ">= 85% of copy");
    ot_be_free(B->be, x);
    ot_be_free(B->be, y);
    return rc;
}

static int bench_step(bench *B, const shapes *S) {
    ot_backend *be = B->be;
    int64_t F = S->floats + 1;
    step_ctx k;
    memset(&k, 0, sizeof k);
    ot_slab_seg *seg = ot_be_alloc(be, sizeof(ot_slab_seg) * (size_t)S->nstep);
    ot_slab_seg *cseg = ot_be_alloc(be, sizeof(ot_slab_seg) * (size_t)S->nparam);
    k.p = dev_random(be, F, 0.1f, 3);
    k.g = dev_random(be, F, 0.01f, 4);
    k.m1 = dev_random(be, F, 0.01f, 5);
    k.m2 = ot_be_alloc_zero(be, sizeof(float) * (size_t)F);
    k.x.ema = dev_random(be, F, 0.1f, 6);
    k.clip = ot_be_alloc_zero(be, 2 * sizeof(float));
    k.scratch = ot_be_alloc(be, ot_cuda_clip_scratch_bytes(S->nparam));
    int rc = 0;
    if (!seg || !cseg || !k.p || !k.g || !k.m1 || !k.m2 || !k.x.ema || !k.clip || !k.scratch) {
        rc = cli_fail("bench kernels: out of GPU memory for the slabs");
        goto done;
    }
    ot_be_upload(be, seg, S->step, sizeof(ot_slab_seg) * (size_t)S->nstep);
    ot_be_upload(be, cseg, S->clip, sizeof(ot_slab_seg) * (size_t)S->nparam);
    ot_be_sync(be);
    char sh[96];
    /* the clip norm over every parameter (its coefficient feeds the fused steps) */
    k.seg = cseg;
    k.nseg = S->nparam;
    int64_t np = 0;
    for (int i = 0; i < S->nparam; i++) np += S->clip[i].n;
    snprintf(sh, sizeof sh, "%d tensors, %.2fM", S->nparam, (double)np / 1e6);
    rc = report(B, "clip_norm", sh, 4.0 * (double)np, launch_clip, &k, "(part of the step)");
    if (rc) goto done;
    /* the fused steps: stepped parameters p, g, state and EMA; BN buffers EMA only */
    k.seg = seg;
    k.nseg = S->nstep;
    k.x.clip = k.clip;
    k.x.scale_grad = 0;
    k.x.ema_d = 0.9999f;
    k.x.ema_omd = (float)(1.0 - 0.9999);
    for (int gi = 0; gi < OT_SLAB_GROUPS; gi++) {
        k.sgd.lr[gi] = k.adam.lr[gi] = 0.01f;
        k.sgd.momentum[gi] = 0.937f;
        k.adam.beta1[gi] = 0.937f;
        k.sgd.weight_decay[gi] = k.adam.weight_decay[gi] = gi == OT_GROUP_WEIGHT ? 5e-4f : 0.0f;
    }
    k.sgd.first = false;
    k.adam.beta2 = 0.999f;
    k.adam.eps = 1e-8f;
    k.adam.step = 10;
    snprintf(sh, sizeof sh, "%d segs, %.2fM+%.0fk", S->nstep, (double)S->stepped / 1e6, (double)S->ema_only / 1e3);
    double tab = (double)sizeof(ot_slab_seg) * S->nstep + 8;
    /* SGD: p r/w, g r, buf r/w, ema r/w; EMA-only: p r, ema r/w */
    rc = report(B, "sgd+clip+ema (1 launch)", sh, 28.0 * (double)S->stepped + 12.0 * (double)S->ema_only + tab, launch_sgd, &k,
                "<= 1.3x byte floor");
    /* Adam: p r/w, g r, m r/w, v r/w, ema r/w */
    if (!rc)
        rc = report(B, "adam+clip+ema (1 launch)", sh, 36.0 * (double)S->stepped + 12.0 * (double)S->ema_only + tab, launch_adam,
                    &k, "<= 1.3x byte floor");
done:
    ot_be_free(be, seg); ot_be_free(be, cseg); ot_be_free(be, k.p); ot_be_free(be, k.g); ot_be_free(be, k.m1);
    ot_be_free(be, k.m2); ot_be_free(be, k.x.ema); ot_be_free(be, k.clip); ot_be_free(be, k.scratch);
    return rc;
}

static int bench_loss(bench *B, const shapes *S) {
    ot_backend *be = B->be;
    float *p[OT_MAX_HEADS] = {0}, *dp[OT_MAX_HEADS] = {0};
    int rc = 0;
    ot_yolo_loss *L = ot_yolo_loss_create_on(be);
    if (!L) return cli_fail("bench kernels: out of GPU memory for the loss");
    for (int l = 0; l < S->nl; l++) {
        int64_t n = ot_numel(&S->head[l]);
        p[l] = dev_random(be, n, 3, 10 + (uint64_t)l);
        dp[l] = ot_be_alloc(be, sizeof(float) * (size_t)n);
        if (!p[l] || !dp[l]) { rc = cli_fail("bench kernels: out of GPU memory for the heads"); goto done; }
    }
    ot_yolo_loss_args A;
    ot_error e;
    if (ot_yolo_loss_prepare(L, &S->st->cfg, (const float *const *)p, S->head, S->targets, S->nt, dp, &A, &e)) {
        rc = cli_error(&e);
        goto done;
    }
    ot_be_sync(be);
    /* floor: objectness reads p's objectness channel of every cell and writes its gradient;
     * each matched row reads its prediction (no floats) and writes its gradient, reads its
     * 11 table words and writes tobj */
    double bytes = 0;
    int rows = 0, no = A.nc + 5;
    for (int l = 0; l < A.nl; l++) {
        bytes += 8.0 * (double)A.bs * A.na * A.layer[l].ny * A.layer[l].nx;
        bytes += (double)A.layer[l].n * (8.0 * no + 48.0);
        rows += A.layer[l].n;
    }
    char sh[96];
    snprintf(sh, sizeof sh, "bs %lld, %d heads, %d rows", (long long)A.bs, A.nl, rows);
    rc = report(B, "yolo_loss (all kernels)", sh, bytes, launch_loss, &A, "< 300 us");
done:
    for (int l = 0; l < S->nl; l++) { ot_be_free(be, p[l]); ot_be_free(be, dp[l]); }
    ot_yolo_loss_destroy(L);
    return rc;
}

static int run_gpu(const char *device, const shapes *S, int iters, bool json, const char *model, long bs, long img) {
    ot_backend *be;
    ot_error e;
    if (ot_backend_get(device, &be, &e)) return cli_fail("bench kernels: %s", e.msg);
    if (be->kind != OT_DEV_CUDA) return cli_fail("bench kernels: --device %s is not a GPU (give a CUDA device number, e.g. 0)", device);
    if (!ot_backend_cuda_stream(be, OT_STREAM_COMPUTE))
        return cli_fail("bench kernels: --device %s is %s, not a GPU: this binary runs the CUDA kernels on the CPU executor", device, be->name);
    bench B;
    memset(&B, 0, sizeof B);
    B.be = be;
    B.s = (cudaStream_t)ot_backend_cuda_stream(be, OT_STREAM_COMPUTE);
    B.iters = iters;
    B.json = json;
    B.rows = json_array();
    if (cudaEventCreate(&B.a) != cudaSuccess || cudaEventCreate(&B.b) != cudaSuccess)
        return cli_fail("bench kernels: cannot create CUDA events");
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, be->ordinal) != cudaSuccess) return cli_fail("bench kernels: cannot read the device's properties");
    if (!json) printf("bench kernels on %s (%s), median of %d launches:\n", be->name, prop.name, iters);
    ot_be_enter(be);
    static const int64_t issue[4] = {16, 32, 80, 80};
    int rc = bench_upsample(&B, issue);
    for (int k = 0; k < S->nup && !rc; k++) rc = bench_upsample(&B, S->up[k].d);
    if (!rc) rc = bench_step(&B, S);
    if (!rc) rc = bench_loss(&B, S);
    ot_be_leave(be);
    cudaError_t ce = cudaStreamSynchronize(B.s);
    if (!rc && ce != cudaSuccess) rc = cli_fail("bench kernels: a kernel failed: %s", cudaGetErrorString(ce));
    if (!rc && json) {
        json_t *j = json_object();
        json_object_set_new(j, "device", json_string(be->name));
        json_object_set_new(j, "gpu", json_string(prop.name));
        json_object_set_new(j, "model", json_string(model));
        json_object_set_new(j, "batch_size", json_integer(bs));
        json_object_set_new(j, "img", json_integer(img));
        json_object_set_new(j, "iters", json_integer(iters));
        json_object_set_new(j, "kernels", B.rows);
        B.rows = NULL;
        char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        printf("%s\n", s);
        free(s);
        json_decref(j);
    }
    json_decref(B.rows);
    ot_be_free(be, B.cp_src);
    ot_be_free(be, B.cp_dst);
    cudaEventDestroy(B.a);
    cudaEventDestroy(B.b);
    return rc;
}
#endif

int bench_kernels(int argc, char **argv) {
    const char *device = NULL, *shapes_path = NULL, *model = "yolov5s";
    long iters = 50, bs = 16, img = 640, nc = 80;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { usage(stdout); return 0; }
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = argv[++i];
        else if (strcmp(argv[i], "--shapes-json") == 0 && i + 1 < argc) shapes_path = argv[++i];
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) json = true;
        else if (cli_int_arg(argc, argv, &i, "--iters", 1, 100000, &iters)) { if (iters == LONG_MIN) return cli_fail("bench kernels: bad --iters"); }
        else if (cli_int_arg(argc, argv, &i, "--batch-size", 1, 1024, &bs)) { if (bs == LONG_MIN) return cli_fail("bench kernels: bad --batch-size"); }
        else if (cli_int_arg(argc, argv, &i, "--img", 32, 4096, &img)) { if (img == LONG_MIN || img % 32) return cli_fail("bench kernels: --img must be a multiple of 32"); }
        else return cli_fail("bench kernels: unknown argument '%s' (see onnx-train bench kernels --help)", argv[i]);
    }
    bool run = device || !shapes_path;
    if (!device) device = "0";
#ifndef ONNXT_HAVE_CUDA
    if (run) return cli_fail("bench kernels: this build has no CUDA (configure with the CUDA toolkit installed); nothing to time");
#else
    if (run) { /* say why there is no GPU before minutes of set-up */
        ot_backend *be;
        ot_error e;
        if (ot_backend_get(device, &be, &e)) return cli_fail("bench kernels: %s", e.msg);
        if (be->kind != OT_DEV_CUDA) return cli_fail("bench kernels: --device %s is not a GPU (give a CUDA device number, e.g. 0)", device);
        if (!ot_backend_cuda_stream(be, OT_STREAM_COMPUTE))
            return cli_fail("bench kernels: --device %s is %s, not a GPU: this binary runs the CUDA kernels on the CPU executor", device, be->name);
    }
#endif
    shapes S;
    int rc = shapes_build(&S, model, bs, img, nc);
    if (!rc && shapes_path) rc = write_shapes_json(&S, shapes_path, model, bs, img);
#ifdef ONNXT_HAVE_CUDA
    if (!rc && run) rc = run_gpu(device, &S, (int)iters, json, model, bs, img);
#else
    (void)json;
    (void)iters;
#endif
    shapes_free(&S);
    return rc;
}
