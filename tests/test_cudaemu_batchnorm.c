/* test_cudaemu_batchnorm.c (ctest label cudaemu): kernels/cuda/batchnorm.cu on
 * the CPU executor against the CPU BatchNormalization (kernels/batchnorm.c).
 *
 * Training: a one-node BatchNormalization graph (YOLOv5's epsilon 1e-3 and
 * momentum 0.97, i.e. PyTorch's 0.03) run by the CPU autograd (a training
 * plan: batch statistics, running statistics updated in place), forward and
 * backward; the kernels get the same x, scale, bias, running statistics and dy
 * on cpu-guard memory, outputs NaN-filled so an unwritten element fails.
 * TOLERANCES: the statistics are double sums in a GPU block tree, which cannot
 * be the CPU's 8-lane order, so they differ in the last bits of a double and
 * the float results derived from them may differ by an ulp or so:
 *   - running_mean, running_var, saved mean / invstd (against a long double
 *     reference computed here; the CPU op keeps its own in plan state):
 *     within 1e-6 relative (to max(|r|, 1e-2 max|r|) for the means, which may
 *     be near 0);
 *   - y: within 1e-6 relative to max(|y_ref|, 1);
 *   - dx, dscale, dbias: within 1e-5 relative, |a - r| <= 1e-5 (|r| + max|r|)
 *     (dx is a difference of sums and may cancel to ~0 in single elements).
 * The accumulate paths (dx_set = 0, dscale / dbias +=) run a second backward
 * on the first's results and must give twice the reference.
 * Inference: bit for bit against the CPU op's float expression (bn_infer_fwd's
 * a = scale / sqrtf(var + eps), b = bias - mean * a, y = x * a + b), written
 * out here (ISO C, no contraction, as the library).
 * A half-precision x (xt 1, 2: a convolution's output stored in half under
 * --amp): every training kernel, local and split, gives the bits it gives for
 * the float x of the same values.
 * SyncBatchNorm (the ot_cuda_bn_sync_* split kernels, kernels/batchnorm.c's
 * bn_train_fwd_sync / bn_train_bwd_sync): the CPU's synchronised path on one
 * rank (the sum over ranks the identity) gives its local path's bits; the split
 * kernels on 1 rank give the local kernels' bits, on 2 and 3 simulated ranks
 * (the batch split, each rank its own buffers, the stats summed on the host in
 * rank order, dscale / dbias summed in float afterwards) the CPU's results
 * within the tolerances above, every rank the same running / saved statistics
 * bit for bit; the CUDA device's BatchNormalization row on the executor,
 * synchronised on one rank, gives the local kernels' bits (3 sums per step).
 * Odd N, C, H, W (1s and primes), S above and below the block size. */
#include "core/backend.h"
#include "core/runtime/autograd.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_tables.h"
#include "kernels/ops.h"
#include "cudaemu_graph.h" /* rnext, rfloat, cg_attr */
#include "testutil.h"
#include <math.h>
#include <string.h>

#define EPS 1e-3f
#define MOMENTUM 0.97f

static void set_init(ot_graph *g, int vid, const float *data, int64_t c) {
    ot_value *v = &g->values[vid];
    v->flags |= OT_V_INIT;
    v->dtype = v->init.dtype = OT_F32;
    v->init.shape = v->shape = ot_shape_make(1, (int64_t[]){c});
    v->init.nbytes = sizeof(float) * (size_t)c;
    v->init.data = malloc(v->init.nbytes);
    memcpy(v->init.data, data, v->init.nbytes);
}

/* x -> BatchNormalization(x, scale, B, mean, var) -> y; vid[] = x, scale, B, mean, var, y */
static ot_graph *bn_graph(int64_t c, const float *scale, const float *bias, const float *mean, const float *var, int vid[6]) {
    ot_graph *g = ot_graph_create();
    ck_assert_ptr_nonnull(g);
    g->path = ot_strdup("bn.onnx");
    g->opset = 13;
    const char *names[6] = {"x", "scale", "B", "mean", "var", "y"};
    for (int i = 0; i < 6; i++) vid[i] = ot_graph_value(g, names[i]);
    g->values[vid[0]].flags |= OT_V_INPUT;
    g->inputs = malloc(sizeof(int));
    g->inputs[g->n_inputs++] = vid[0];
    g->values[vid[5]].flags |= OT_V_OUTPUT;
    g->outputs = malloc(sizeof(int));
    g->outputs[g->n_outputs++] = vid[5];
    set_init(g, vid[1], scale, c);
    set_init(g, vid[2], bias, c);
    set_init(g, vid[3], mean, c);
    set_init(g, vid[4], var, c);
    ot_node *n = ot_graph_add_node(g);
    ck_assert_ptr_nonnull(n);
    n->name = ot_strdup("bn");
    n->op_type = ot_strdup("BatchNormalization");
    n->domain = ot_strdup("");
    n->op = ot_op_lookup("BatchNormalization", "");
    n->n_in = 5;
    n->n_out = 1;
    n->in = malloc(sizeof(int) * 5);
    n->out = malloc(sizeof(int));
    for (int i = 0; i < 5; i++) n->in[i] = vid[i];
    n->out[0] = vid[5];
    cg_attr(n, "epsilon", OT_ATTR_FLOAT)->f = EPS;
    cg_attr(n, "momentum", OT_ATTR_FLOAT)->f = MOMENTUM;
    ot_error e;
    ck_assert_msg(ot_graph_finalize(g, &e) == OT_OK, "%s", e.msg);
    return g;
}

static double maxabs(const float *r, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)r[i]));
    return m;
}

/* |a - k*r| <= rtol * (|k*r| + floor) for every element; NaN fails. */
static void check_close(const char *what, const float *a, const float *r, double k, int64_t n, double rtol, double floor,
                        const int64_t dims[4]) {
    for (int64_t i = 0; i < n; i++) {
        double ref = k * (double)r[i], err = fabs((double)a[i] - ref);
        ck_assert_msg(err <= rtol * (fabs(ref) + floor), "%s (%lld,%lld,%lld,%lld)[%lld] = %.9g, CPU %.9g (err %.3g)", what,
                      (long long)dims[0], (long long)dims[1], (long long)dims[2], (long long)dims[3], (long long)i,
                      (double)a[i], ref, err);
    }
}

static float *gput(ot_backend *G, const float *h, int64_t n) {
    float *d = ot_be_alloc(G, sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (n > 0) ot_be_upload(G, d, h, sizeof(float) * (size_t)n);
    return d;
}
static float *gnan(ot_backend *G, int64_t n) {
    float *d = ot_be_alloc(G, sizeof(float) * (size_t)(n > 0 ? n : 1));
    ot_be_memset(G, d, 0xff, sizeof(float) * (size_t)(n > 0 ? n : 1));
    return d;
}
static void gget(ot_backend *G, float *h, const float *d, int64_t n) {
    if (n > 0) ot_be_download(G, h, d, sizeof(float) * (size_t)n);
}

/* SyncBatchNorm on one rank: the sum over ranks is the identity (counted). */
static int sum_calls;
static void sum_one_rank(double *buf, int64_t n) {
    (void)buf;
    ck_assert_int_ge(n, 1);
    sum_calls++;
}

/* The device form (core/plan.h bn_dev_sum, the trainer's communicator): the sum of the stats range on the
 * device's memory, the identity on one rank (counted); the forward's first and the backward's range end in the
 * element count the kernels wrote (checked). */
static int dev_calls;
static int64_t dev_count;
static ot_status dev_sum_one_rank(void *ctx, double *dev, int64_t n, ot_error *err) {
    (void)err;
    ck_assert_int_ge(n, 1);
    if (dev_calls % 3 != 1) { /* the ranges [0, c] and [0, 2c] */
        double last;
        ot_be_download(ctx, &last, dev + n - 1, sizeof last);
        ck_assert_msg(last == (double)dev_count, "the count in the stats buffer: %g, expected %lld", last, (long long)dev_count);
    }
    dev_calls++;
    return OT_OK;
}

/* One training step of the one-node graph on be (the CPU, or the CUDA device's row on the executor), local
 * statistics (sync 0) or synchronised: through the host (1: sum_one_rank) or on the device (2: dev_sum_one_rank,
 * the CUDA row only): y, running mean / var, dx, dscale, dbias into host arrays. */
static void run_graph(ot_backend *be, int sync, int64_t N, int64_t C, int64_t H, int64_t W, const float *x, const float *dy,
                      const float *scale, const float *bias, const float *rm, const float *rv, float *y, float *rmo, float *rvo,
                      float *dx, float *ds, float *db) {
    const int64_t nx = N * C * H * W;
    int vid[6];
    ot_graph *g = bn_graph(C, scale, bias, rm, rv, vid);
    ot_shape xs = ot_shape_make(4, (int64_t[]){N, C, H, W});
    ot_autograd *a;
    ot_error e;
    ck_assert_msg(ot_autograd_create_on(be, g, &xs, NULL, true, &a, &e) == OT_OK, "%s", e.msg);
    ot_autograd_set_bn_sync(a, sync ? sum_one_rank : NULL);
    if (sync == 2) ot_autograd_set_bn_sync_device(a, dev_sum_one_rank, be);
    int calls = sum_calls, dcalls = dev_calls = 0;
    dev_count = N * H * W;
    ck_assert_msg(ot_autograd_forward(a, (const float *const[]){x}, &e) == OT_OK, "%s", e.msg);
    ot_autograd_download(a, vid[5], y);
    ot_autograd_download(a, vid[3], rmo);
    ot_autograd_download(a, vid[4], rvo);
    if (nx > 0) ot_be_upload(a->be, ot_autograd_output_grad(a, 0), dy, sizeof(float) * (size_t)nx);
    ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(sum_calls - calls, sync == 1 ? 3 : 0); /* the forward's two sums, the backward's one */
    ck_assert_int_eq(dev_calls - dcalls, sync == 2 ? 3 : 0);
    ot_autograd_download_grad(a, vid[0], dx);
    ot_autograd_download_grad(a, vid[1], ds);
    ot_autograd_download_grad(a, vid[2], db);
    ot_autograd_destroy(a);
    ot_graph_destroy(g);
}

static void check_bits(const char *what, const float *a, const float *r, int64_t n, const int64_t dims[4]) {
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &r[i], sizeof(float)) == 0, "%s (%lld,%lld,%lld,%lld)[%lld] = %.9g, expected the bits of %.9g",
                      what, (long long)dims[0], (long long)dims[1], (long long)dims[2], (long long)dims[3], (long long)i,
                      (double)a[i], (double)r[i]);
}

/* The split kernels over ranks batches x[b0, b1) of x, each with its own stats buffer, running statistics,
 * saved statistics and local dscale / dbias; the sums over the ranks done here on the host in rank order (as
 * MPI's sum for two ranks). Returns y, the running statistics of rank 0 (every rank's must be the same bits),
 * the saved statistics, dx, and dscale / dbias summed over the ranks in float (the gradient all-reduce). */
#define MAXR 3
static void run_sync_kernels(int ranks, int64_t N, int64_t C, int64_t S, const float *x, const float *dy, const float *scale,
                             const float *bias, const float *rm, const float *rv, float *y, float *rmo, float *rvo, float *mu,
                             float *inv, float *dx, float *ds, float *db, const int64_t dims[4]) {
    ot_backend *G = ot_backend_cpu_guard();
    const int64_t nst = 2 * C + 1, cs = C * S;
    int64_t lo[MAXR + 1];
    for (int r = 0; r <= ranks; r++) lo[r] = N * r / ranks;
    double *st[MAXR], *h[MAXR], *tot = calloc((size_t)nst, sizeof(double));
    float *gx[MAXR], *gdy[MAXR], *gy[MAXR], *grm[MAXR], *grv[MAXR], *gmu[MAXR], *ginv[MAXR], *gdx[MAXR], *gds[MAXR], *gdb[MAXR];
    float *gscale = gput(G, scale, C), *gbias = gput(G, bias, C);
    for (int r = 0; r < ranks; r++) {
        int64_t n = lo[r + 1] - lo[r];
        st[r] = ot_be_alloc(G, sizeof(double) * (size_t)nst);
        ot_be_memset(G, st[r], 0xff, sizeof(double) * (size_t)nst);
        h[r] = malloc(sizeof(double) * (size_t)nst);
        gx[r] = gput(G, x + lo[r] * cs, n * cs);
        gdy[r] = gput(G, dy + lo[r] * cs, n * cs);
        gy[r] = gnan(G, n * cs);
        gdx[r] = gnan(G, n * cs);
        grm[r] = gput(G, rm, C);
        grv[r] = gput(G, rv, C);
        gmu[r] = gnan(G, C);
        ginv[r] = gnan(G, C);
        gds[r] = gnan(G, C);
        gdb[r] = gnan(G, C);
        ot_be_memset(G, gds[r], 0, sizeof(float) * (size_t)C);
        ot_be_memset(G, gdb[r], 0, sizeof(float) * (size_t)C);
    }
    /* the host sum of st[r][lo, lo + n) over the ranks; COUNTED: the range's last element is each rank's count,
     * written by the kernel (checked here) */
#define SUM_RANKS(LO, NN, COUNTED)                                                                                            \
    do {                                                                                                                     \
        for (int64_t k = 0; k < (NN); k++) tot[k] = 0;                                                                       \
        for (int r = 0; r < ranks; r++) {                                                                                    \
            ot_be_download(G, h[r], st[r] + (LO), sizeof(double) * (size_t)(NN));                                            \
            if (COUNTED) ck_assert_msg(h[r][(NN) - 1] == (double)((lo[r + 1] - lo[r]) * S),                                  \
                                       "rank %d: the kernel's count %g, expected %lld", r, h[r][(NN) - 1],                  \
                                       (long long)((lo[r + 1] - lo[r]) * S));                                                \
            for (int64_t k = 0; k < (NN); k++) tot[k] += h[r][k];                                                            \
        }                                                                                                                    \
        for (int r = 0; r < ranks; r++) ot_be_upload(G, st[r] + (LO), tot, sizeof(double) * (size_t)(NN));                  \
    } while (0)
    for (int r = 0; r < ranks; r++) ot_cuda_bn_sync_fwd_sum(st[r], gx[r], 0, lo[r + 1] - lo[r], C, S, NULL);
    SUM_RANKS(0, C + 1, 1);
    for (int r = 0; r < ranks; r++) ot_cuda_bn_sync_fwd_sqdev(st[r], gx[r], 0, lo[r + 1] - lo[r], C, S, NULL);
    SUM_RANKS(C + 1, C, 0);
    for (int r = 0; r < ranks; r++)
        ot_cuda_bn_sync_fwd_apply(gy[r], gmu[r], ginv[r], grm[r], grv[r], gx[r], 0, gscale, gbias, st[r], lo[r + 1] - lo[r], C, S,
                                  EPS, MOMENTUM, NULL);
    for (int r = 0; r < ranks; r++) ot_cuda_bn_sync_bwd_sums(st[r], gds[r], gdb[r], gdy[r], gx[r], 0, gmu[r], ginv[r],
                                                             lo[r + 1] - lo[r], C, S, NULL);
    SUM_RANKS(0, 2 * C + 1, 1);
#undef SUM_RANKS
    for (int r = 0; r < ranks; r++)
        ot_cuda_bn_sync_bwd_dx(gdx[r], 1, gdy[r], gx[r], 0, gscale, gmu[r], ginv[r], st[r], lo[r + 1] - lo[r], C, S, NULL);
    float *t = malloc(sizeof(float) * (size_t)(C > 0 ? C : 1));
    for (int r = 0; r < ranks; r++) {
        int64_t n = lo[r + 1] - lo[r];
        gget(G, y + lo[r] * cs, gy[r], n * cs);
        gget(G, dx + lo[r] * cs, gdx[r], n * cs);
        float *dst[4] = {rmo, rvo, mu, inv};
        float *src[4] = {grm[r], grv[r], gmu[r], ginv[r]};
        const char *names[4] = {"running_mean of a rank", "running_var of a rank", "saved_mean of a rank", "saved_invstd of a rank"};
        for (int k = 0; k < 4; k++) {
            if (r == 0) gget(G, dst[k], src[k], C);
            else { gget(G, t, src[k], C); check_bits(names[k], t, dst[k], C, dims); }
        }
        gget(G, t, gds[r], C);
        for (int64_t ch = 0; ch < C; ch++) ds[ch] = r ? ds[ch] + t[ch] : t[ch];
        gget(G, t, gdb[r], C);
        for (int64_t ch = 0; ch < C; ch++) db[ch] = r ? db[ch] + t[ch] : t[ch];
        float *bufs[] = {gx[r], gdy[r], gy[r], grm[r], grv[r], gmu[r], ginv[r], gdx[r], gds[r], gdb[r]};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) ot_be_free(G, bufs[i]);
        ot_be_free(G, st[r]);
        free(h[r]);
    }
    ot_be_free(G, gscale);
    ot_be_free(G, gbias);
    free(t);
    free(tot);
}

static void check_case(int64_t N, int64_t C, int64_t H, int64_t W, uint64_t seed) {
    const int64_t S = H * W, nx = N * C * S, dims[4] = {N, C, H, W};
    float *x = malloc(sizeof(float) * (size_t)nx), *dy = malloc(sizeof(float) * (size_t)nx);
    float *scale = malloc(sizeof(float) * (size_t)C), *bias = malloc(sizeof(float) * (size_t)C);
    float *rm = malloc(sizeof(float) * (size_t)C), *rv = malloc(sizeof(float) * (size_t)C);
    for (int64_t ch = 0; ch < C; ch++) {
        scale[ch] = rfloat(&seed);
        bias[ch] = rfloat(&seed);
        rm[ch] = rfloat(&seed);
        rv[ch] = 1.5f + rfloat(&seed) * 0.5f;
    }
    for (int64_t i = 0; i < nx; i++) {
        int64_t ch = (i / S) % C;
        x[i] = rfloat(&seed) * (1.0f + (float)(ch % 3)) + (float)(ch % 5) - 2.0f;
        dy[i] = rfloat(&seed);
    }

    /* ---- the CPU op: one training step through the autograd ---- */
    int vid[6];
    ot_graph *g = bn_graph(C, scale, bias, rm, rv, vid);
    ot_shape xs = ot_shape_make(4, (int64_t[]){N, C, H, W});
    ot_autograd *a;
    ot_error e;
    ck_assert_msg(ot_autograd_create(g, &xs, NULL, true, &a, &e) == OT_OK, "%s", e.msg);
    ck_assert(a->be == ot_backend_cpu());
    ck_assert_msg(ot_autograd_forward(a, (const float *const[]){x}, &e) == OT_OK, "%s", e.msg);
    float *yref = malloc(sizeof(float) * (size_t)nx), *dxref = malloc(sizeof(float) * (size_t)nx);
    float *rmref = malloc(sizeof(float) * (size_t)C), *rvref = malloc(sizeof(float) * (size_t)C);
    float *dsref = malloc(sizeof(float) * (size_t)C), *dbref = malloc(sizeof(float) * (size_t)C);
    memcpy(yref, ot_autograd_data(a, vid[5]), sizeof(float) * (size_t)nx);
    ot_autograd_download(a, vid[3], rmref);
    ot_autograd_download(a, vid[4], rvref);
    memcpy(ot_autograd_output_grad(a, 0), dy, sizeof(float) * (size_t)nx);
    ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s", e.msg);
    memcpy(dxref, ot_autograd_grad(a, vid[0]), sizeof(float) * (size_t)nx);
    ot_autograd_download_grad(a, vid[1], dsref);
    ot_autograd_download_grad(a, vid[2], dbref);
    ot_autograd_destroy(a);
    ot_graph_destroy(g);

    /* long double statistics, for the saved mean / invstd */
    float *muref = malloc(sizeof(float) * (size_t)C), *invref = malloc(sizeof(float) * (size_t)C);
    for (int64_t ch = 0; ch < C; ch++) {
        long double sum = 0, sq = 0;
        for (int64_t b = 0; b < N; b++)
            for (int64_t j = 0; j < S; j++) sum += x[(b * C + ch) * S + j];
        long double mu = sum / (long double)(N * S);
        for (int64_t b = 0; b < N; b++)
            for (int64_t j = 0; j < S; j++) {
                long double d = x[(b * C + ch) * S + j] - mu;
                sq += d * d;
            }
        muref[ch] = (float)mu;
        invref[ch] = (float)(1.0L / sqrtl(sq / (long double)(N * S) + (long double)EPS));
    }

    /* ---- the kernels ---- */
    ot_backend *G = ot_backend_cpu_guard();
    float *gx = gput(G, x, nx), *gdy = gput(G, dy, nx), *gscale = gput(G, scale, C), *gbias = gput(G, bias, C);
    float *grm = gput(G, rm, C), *grv = gput(G, rv, C), *gy = gnan(G, nx), *gmu = gnan(G, C), *ginv = gnan(G, C);
    float *gdx = gnan(G, nx), *gds = gnan(G, C), *gdb = gnan(G, C);
    ot_be_memset(G, gds, 0, sizeof(float) * (size_t)C);
    ot_be_memset(G, gdb, 0, sizeof(float) * (size_t)C);
    ot_cuda_bn_train_fwd(gy, gmu, ginv, grm, grv, gx, 0, gscale, gbias, N, C, S, EPS, MOMENTUM, NULL);
    ot_cuda_bn_train_bwd(gdx, 1, gds, gdb, gdy, gx, 0, gscale, gmu, ginv, N, C, S, NULL);

    float *y = malloc(sizeof(float) * (size_t)nx), *dx = malloc(sizeof(float) * (size_t)nx);
    float *h = malloc(sizeof(float) * (size_t)C);
    gget(G, y, gy, nx);
    check_close("y", y, yref, 1, nx, 1e-6, 1, dims);
    gget(G, h, grm, C);
    check_close("running_mean", h, rmref, 1, C, 1e-6, 1e-2 * maxabs(rmref, C), dims);
    gget(G, h, grv, C);
    check_close("running_var", h, rvref, 1, C, 1e-6, 0, dims);
    gget(G, h, gmu, C);
    check_close("saved_mean", h, muref, 1, C, 1e-6, 1e-2 * maxabs(muref, C), dims);
    gget(G, h, ginv, C);
    check_close("saved_invstd", h, invref, 1, C, 1e-6, 0, dims);
    gget(G, dx, gdx, nx);
    check_close("dx", dx, dxref, 1, nx, 1e-5, maxabs(dxref, nx), dims);
    gget(G, h, gds, C);
    check_close("dscale", h, dsref, 1, C, 1e-5, maxabs(dsref, C), dims);
    gget(G, h, gdb, C);
    check_close("dbias", h, dbref, 1, C, 1e-5, maxabs(dbref, C), dims);

    /* ---- SyncBatchNorm ----
     * the CPU's synchronised path on one rank (bn_train_fwd_sync / bn_train_bwd_sync, the sum the identity)
     * gives its local path's bits */
    float *y2 = malloc(sizeof(float) * (size_t)nx), *dx2 = malloc(sizeof(float) * (size_t)nx);
    float *c6[6];
    for (int k = 0; k < 6; k++) c6[k] = malloc(sizeof(float) * (size_t)(C > 0 ? C : 1));
    run_graph(ot_backend_cpu(), 1, N, C, H, W, x, dy, scale, bias, rm, rv, y2, c6[0], c6[1], dx2, c6[2], c6[3]);
    check_bits("CPU sync y", y2, yref, nx, dims);
    check_bits("CPU sync running_mean", c6[0], rmref, C, dims);
    check_bits("CPU sync running_var", c6[1], rvref, C, dims);
    check_bits("CPU sync dx", dx2, dxref, nx, dims);
    check_bits("CPU sync dscale", c6[2], dsref, C, dims);
    check_bits("CPU sync dbias", c6[3], dbref, C, dims);
    /* the split kernels on 1 rank: the local kernels' bits; on 2 and 3 ranks (batches split, sums on the
     * host): the CPU's statistics and gradients within the local kernels' tolerances */
    float *lk[8];
    for (int k = 0; k < 8; k++) lk[k] = malloc(sizeof(float) * (size_t)(k < 2 ? (nx > 0 ? nx : 1) : (C > 0 ? C : 1)));
    gget(G, lk[0], gy, nx);
    gget(G, lk[1], gdx, nx);
    gget(G, lk[2], grm, C);
    gget(G, lk[3], grv, C);
    gget(G, lk[4], gmu, C);
    gget(G, lk[5], ginv, C);
    gget(G, lk[6], gds, C);
    gget(G, lk[7], gdb, C);
    for (int ranks = 1; ranks <= MAXR; ranks++) {
        run_sync_kernels(ranks, N, C, S, x, dy, scale, bias, rm, rv, y2, c6[0], c6[1], c6[4], c6[5], dx2, c6[2], c6[3], dims);
        if (ranks == 1) {
            check_bits("sync kernels y", y2, lk[0], nx, dims);
            check_bits("sync kernels dx", dx2, lk[1], nx, dims);
            check_bits("sync kernels running_mean", c6[0], lk[2], C, dims);
            check_bits("sync kernels running_var", c6[1], lk[3], C, dims);
            check_bits("sync kernels saved_mean", c6[4], lk[4], C, dims);
            check_bits("sync kernels saved_invstd", c6[5], lk[5], C, dims);
            check_bits("sync kernels dscale", c6[2], lk[6], C, dims);
            check_bits("sync kernels dbias", c6[3], lk[7], C, dims);
        }
        check_close("sync y", y2, yref, 1, nx, 1e-6, 1, dims);
        check_close("sync running_mean", c6[0], rmref, 1, C, 1e-6, 1e-2 * maxabs(rmref, C), dims);
        check_close("sync running_var", c6[1], rvref, 1, C, 1e-6, 0, dims);
        check_close("sync saved_mean", c6[4], muref, 1, C, 1e-6, 1e-2 * maxabs(muref, C), dims);
        check_close("sync saved_invstd", c6[5], invref, 1, C, 1e-6, 0, dims);
        check_close("sync dx", dx2, dxref, 1, nx, 1e-5, maxabs(dxref, nx), dims);
        check_close("sync dscale", c6[2], dsref, 1, C, 1e-5, maxabs(dsref, C), dims);
        check_close("sync dbias", c6[3], dbref, 1, C, 1e-5, maxabs(dbref, C), dims);
    }
    /* the CUDA device's row (cuda_tables.c) on the executor, synchronised on one rank: the local kernels' bits */
    char why[200];
    ot_backend *D = ot_backend_cuda_emu(0, why, sizeof why);
    ck_assert_msg(D != NULL, "%s", why);
    for (int mode = 1; mode <= 2; mode++) { /* the host sum, then the device sum */
        run_graph(D, mode, N, C, H, W, x, dy, scale, bias, rm, rv, y2, c6[0], c6[1], dx2, c6[2], c6[3]);
        check_bits("row sync y", y2, lk[0], nx, dims);
        check_bits("row sync running_mean", c6[0], lk[2], C, dims);
        check_bits("row sync running_var", c6[1], lk[3], C, dims);
        check_bits("row sync dx", dx2, lk[1], nx, dims);
        check_bits("row sync dscale", c6[2], lk[6], C, dims);
        check_bits("row sync dbias", c6[3], lk[7], C, dims);
    }
    free(y2); free(dx2);
    for (int k = 0; k < 6; k++) free(c6[k]);
    for (int k = 0; k < 8; k++) free(lk[k]);

    /* the accumulate paths: a second backward adds the same gradients again */
    ot_cuda_bn_train_bwd(gdx, 0, gds, gdb, gdy, gx, 0, gscale, gmu, ginv, N, C, S, NULL);
    gget(G, dx, gdx, nx);
    check_close("dx (accumulated)", dx, dxref, 2, nx, 1e-5, 2 * maxabs(dxref, nx), dims);
    gget(G, h, gds, C);
    check_close("dscale (accumulated)", h, dsref, 2, C, 1e-5, 2 * maxabs(dsref, C), dims);
    gget(G, h, gdb, C);
    check_close("dbias (accumulated)", h, dbref, 2, C, 1e-5, 2 * maxabs(dbref, C), dims);

    /* inference with the original running statistics: bit for bit */
    ot_be_upload(G, grm, rm, sizeof(float) * (size_t)C);
    ot_be_upload(G, grv, rv, sizeof(float) * (size_t)C);
    ot_be_memset(G, gy, 0xff, sizeof(float) * (size_t)(nx > 0 ? nx : 1));
    ot_cuda_bn_infer_fwd(gy, gx, gscale, gbias, grm, grv, N, C, S, EPS, NULL);
    gget(G, y, gy, nx);
    for (int64_t i = 0; i < nx; i++) {
        int64_t ch = (i / S) % C;
        float ka = scale[ch] / sqrtf(rv[ch] + EPS), kb = bias[ch] - rm[ch] * ka, r = x[i] * ka + kb;
        ck_assert_msg(memcmp(&y[i], &r, sizeof r) == 0, "inference (%lld,%lld,%lld,%lld)[%lld] = %.9g, CPU %.9g", (long long)N,
                      (long long)C, (long long)H, (long long)W, (long long)i, (double)y[i], (double)r);
    }

    float *bufs[] = {gx, gdy, gscale, gbias, grm, grv, gy, gmu, ginv, gdx, gds, gdb};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) ot_be_free(G, bufs[i]);
    free(x); free(dy); free(scale); free(bias); free(rm); free(rv); free(yref); free(dxref); free(rmref); free(rvref);
    free(dsref); free(dbref); free(muref); free(invref); free(y); free(dx); free(h);
}

static const int64_t CASES[][4] = {
    {1, 1, 1, 1}, {2, 1, 1, 1}, {1, 3, 1, 2}, {3, 5, 7, 3}, {1, 2, 17, 19}, {5, 7, 11, 13},
    {2, 3, 16, 16}, {3, 1, 23, 29}, {1, 33, 3, 5}, {7, 2, 1, 1},
};

START_TEST(train_and_infer_match_cpu_batchnorm) {
    for (size_t k = 0; k < sizeof CASES / sizeof *CASES; k++)
        check_case(CASES[k][0], CASES[k][1], CASES[k][2], CASES[k][3], 4242 + 31 * k);
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(random_shapes) {
    uint64_t s = 99;
    for (int k = 0; k < 8; k++) {
        int64_t N = 1 + (int64_t)(rnext(&s) % 5), C = 1 + (int64_t)(rnext(&s) % 9), H = 1 + (int64_t)(rnext(&s) % 21),
                W = 1 + (int64_t)(rnext(&s) % 21);
        check_case(N, C, H, W, rnext(&s));
    }
}
END_TEST

/* Zero-sized work launches nothing and touches nothing. */
START_TEST(empty_is_a_no_op) {
    ot_cuda_bn_infer_fwd(NULL, NULL, NULL, NULL, NULL, NULL, 0, 3, 5, EPS, NULL);
    ot_cuda_bn_infer_fwd(NULL, NULL, NULL, NULL, NULL, NULL, 2, 3, 0, EPS, NULL);
    ot_cuda_bn_train_fwd(NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, 2, 0, 5, EPS, MOMENTUM, NULL);
    ot_cuda_bn_train_bwd(NULL, 1, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, 2, 0, 5, NULL);
    ot_cuda_bn_sync_fwd_sum(NULL, NULL, 0, 2, 0, 5, NULL);
    ot_cuda_bn_sync_fwd_sqdev(NULL, NULL, 0, 2, 0, 5, NULL);
    ot_cuda_bn_sync_fwd_apply(NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, 2, 0, 5, EPS, MOMENTUM, NULL);
    ot_cuda_bn_sync_bwd_sums(NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, 2, 0, 5, NULL);
    ot_cuda_bn_sync_bwd_dx(NULL, 1, NULL, NULL, 0, NULL, NULL, NULL, NULL, 2, 0, 5, NULL);
}
END_TEST

/* ---- a half-precision x (--amp: a convolution's output stored in half, docs/CUDA.md "Mixed precision") ----
 * The training kernels, local and split (SyncBatchNorm on one rank), given x as IEEE half (xt 1) or bfloat16
 * (xt 2) give the bits they give for the float x holding the same values. */
enum { BN_OUTS = 7 }; /* y, saved mean, saved invstd, running mean, running var, dx, dscale + dbias */
static void run_typed(const void *hx, int xt, int64_t N, int64_t C, int64_t S, const float *dy, const float *scale,
                      const float *bias, int sync, float *out[BN_OUTS]) {
    ot_backend *G = ot_backend_cpu_guard();
    const int64_t nx = N * C * S;
    const size_t xb = (xt ? 2u : 4u) * (size_t)nx;
    void *gx = ot_be_alloc(G, xb);
    ot_be_upload(G, gx, hx, xb);
    float *gdy = gput(G, dy, nx), *gscale = gput(G, scale, C), *gbias = gput(G, bias, C);
    float rm0[64], rv0[64];
    for (int64_t c = 0; c < C; c++) { rm0[c] = 0.25f * (float)c; rv0[c] = 1.0f + 0.5f * (float)c; }
    float *grm = gput(G, rm0, C), *grv = gput(G, rv0, C), *gy = gnan(G, nx), *gmu = gnan(G, C), *ginv = gnan(G, C);
    float *gdx = gnan(G, nx), *gd = gnan(G, 2 * C);
    ot_be_memset(G, gd, 0, sizeof(float) * (size_t)(2 * C));
    if (sync) {
        double *st = ot_be_alloc(G, sizeof(double) * (size_t)(2 * C + 1));
        ot_cuda_bn_sync_fwd_sum(st, gx, xt, N, C, S, NULL);
        ot_cuda_bn_sync_fwd_sqdev(st, gx, xt, N, C, S, NULL);
        ot_cuda_bn_sync_fwd_apply(gy, gmu, ginv, grm, grv, gx, xt, gscale, gbias, st, N, C, S, EPS, MOMENTUM, NULL);
        ot_cuda_bn_sync_bwd_sums(st, gd, gd + C, gdy, gx, xt, gmu, ginv, N, C, S, NULL);
        ot_cuda_bn_sync_bwd_dx(gdx, 1, gdy, gx, xt, gscale, gmu, ginv, st, N, C, S, NULL);
        ot_be_free(G, st);
    } else {
        ot_cuda_bn_train_fwd(gy, gmu, ginv, grm, grv, gx, xt, gscale, gbias, N, C, S, EPS, MOMENTUM, NULL);
        ot_cuda_bn_train_bwd(gdx, 1, gd, gd + C, gdy, gx, xt, gscale, gmu, ginv, N, C, S, NULL);
    }
    float *g[BN_OUTS] = {gy, gmu, ginv, grm, grv, gdx, gd};
    const int64_t len[BN_OUTS] = {nx, C, C, C, C, nx, 2 * C};
    for (int k = 0; k < BN_OUTS; k++) {
        out[k] = malloc(sizeof(float) * (size_t)len[k]);
        gget(G, out[k], g[k], len[k]);
        ot_be_free(G, g[k]);
    }
    ot_be_free(G, gx); ot_be_free(G, gdy); ot_be_free(G, gscale); ot_be_free(G, gbias);
}

START_TEST(half_input_is_its_float_value) {
    static const char *names[BN_OUTS] = {"y", "saved_mean", "saved_invstd", "running_mean", "running_var", "dx", "dscale/dbias"};
    const int64_t N = 3, C = 5, S = 37, nx = N * C * S;
    uint64_t seed = 77;
    float *x = malloc(sizeof(float) * (size_t)nx), *xr = malloc(sizeof(float) * (size_t)nx), *dy = malloc(sizeof(float) * (size_t)nx);
    uint16_t *xh = malloc(sizeof(uint16_t) * (size_t)nx);
    float scale[5], bias[5];
    for (int64_t i = 0; i < nx; i++) { x[i] = 3.0f * rsym1(&seed) + 0.5f; dy[i] = rsym1(&seed); }
    for (int c = 0; c < 5; c++) { scale[c] = 1.0f + 0.1f * rsym1(&seed); bias[c] = 0.2f * rsym1(&seed); }
    for (int xt = 1; xt <= 2; xt++) {
        for (int64_t i = 0; i < nx; i++) {
            if (xt == 1) xr[i] = ot_half_to_float(xh[i] = ot_float_to_half(x[i]));
            else { /* bfloat16: round to nearest even on the top 16 bits (finite inputs) */
                uint32_t u;
                memcpy(&u, &x[i], 4);
                u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
                xh[i] = (uint16_t)(u >> 16);
                memcpy(&xr[i], &u, 4);
            }
        }
        for (int sync = 0; sync <= 1; sync++) {
            float *a[BN_OUTS], *b[BN_OUTS];
            run_typed(xh, xt, N, C, S, dy, scale, bias, sync, a);
            run_typed(xr, 0, N, C, S, dy, scale, bias, sync, b);
            const int64_t len[BN_OUTS] = {nx, C, C, C, C, nx, 2 * C};
            for (int k = 0; k < BN_OUTS; k++) {
                ck_assert_msg(memcmp(a[k], b[k], sizeof(float) * (size_t)len[k]) == 0, "xt %d, %s: %s differs from the float x's", xt,
                              sync ? "split kernels" : "local kernels", names[k]);
                free(a[k]); free(b[k]);
            }
        }
    }
    free(x); free(xr); free(dy); free(xh);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cudaemu_batchnorm");
    TCase *t = tcase_create("batchnorm");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, train_and_infer_match_cpu_batchnorm);
    tcase_add_test(t, random_shapes);
    tcase_add_test(t, empty_is_a_no_op);
    tcase_add_test(t, half_input_is_its_float_value);
    suite_add_tcase(s, t);
    return s;
}

int main(void) {
    ot_cuda_kernels_install(); /* the executor's CUDA tables, for the BatchNormalization row */
    return tu_main(suite());
}
