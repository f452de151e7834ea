/* test_cudaemu_upsample.c (ctest label cudaemu): kernels/cuda/upsample.cu on
 * the CPU executor against the CPU Resize op (kernels/resize.c, its
 * integer-factor path), forward and backward, through a one-node Resize graph
 * (scales 1,1,2,2; YOLOv5's asymmetric/floor and ONNX's default
 * half_pixel/round_prefer_floor, both exact 2x maps) run by the CPU autograd.
 *
 * Random inputs, (nc, h, w) with 1s, odd sizes and widths that are not
 * multiples of 4, on cpu-guard memory; every case runs with aligned pointers
 * (the float4/float2 paths) and with pointers one float off (the scalar path).
 * Outputs start as NaN bytes, so an element the kernels do not write fails.
 * Both directions compare BIT FOR BIT: the forward copies; the backward adds
 * the four gradients as (top pair) + (bottom pair), the CPU backward's order
 * (it adds the two output rows one after the other, each row's pair first,
 * onto a zeroed gradient; 0 + a == a). */
#include "core/backend.h"
#include "core/runtime/autograd.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/ops.h"
#include "cudaemu_graph.h" /* rnext, rfloat, cg_attr, first_diff */
#include "testutil.h"
#include <string.h>
#include <time.h>

/* ---- a one-node Resize graph (as tests/test_grad_ops.c builds graphs) ---- */
static ot_graph *resize_graph(bool yolo) {
    ot_graph *g = ot_graph_create();
    ck_assert_ptr_nonnull(g);
    g->path = ot_strdup("resize2x.onnx");
    g->opset = 13;
    int x = ot_graph_value(g, "x"), y = ot_graph_value(g, "y"), sc = ot_graph_value(g, "scales");
    g->values[x].flags |= OT_V_INPUT;
    g->inputs = malloc(sizeof(int));
    g->inputs[g->n_inputs++] = x;
    g->values[y].flags |= OT_V_OUTPUT;
    g->outputs = malloc(sizeof(int));
    g->outputs[g->n_outputs++] = y;
    float scales[4] = {1, 1, 2, 2};
    ot_value *v = &g->values[sc];
    v->flags |= OT_V_INIT;
    v->dtype = v->init.dtype = OT_F32;
    v->init.shape = v->shape = ot_shape_make(1, (int64_t[]){4});
    v->init.nbytes = sizeof scales;
    v->init.data = malloc(sizeof scales);
    memcpy(v->init.data, scales, sizeof scales);
    ot_node *n = ot_graph_add_node(g);
    ck_assert_ptr_nonnull(n);
    n->name = ot_strdup("y");
    n->op_type = ot_strdup("Resize");
    n->domain = ot_strdup("");
    n->op = ot_op_lookup("Resize", "");
    n->n_in = 3;
    n->n_out = 1;
    n->in = malloc(sizeof(int) * 3);
    n->out = malloc(sizeof(int));
    n->in[0] = x; n->in[1] = -1; n->in[2] = sc;
    n->out[0] = y;
    cg_attr(n, "mode", OT_ATTR_STRING)->s = ot_strdup("nearest");
    if (yolo) {
        cg_attr(n, "coordinate_transformation_mode", OT_ATTR_STRING)->s = ot_strdup("asymmetric");
        cg_attr(n, "nearest_mode", OT_ATTR_STRING)->s = ot_strdup("floor");
    }
    ot_error e;
    ck_assert_msg(ot_graph_finalize(g, &e) == OT_OK, "%s", e.msg);
    return g;
}

/* One case: CPU reference by the autograd, then the kernels at float offset off. */
typedef struct up_half_ctx { const float *x; int xt; int64_t nc, h, w; } up_half_ctx;
/* xt 1: x converted to y's half type first */
static void up_half_run(void *ctx, uint16_t *y, int bf16) {
    const up_half_ctx *u = ctx;
    const int64_t n = u->nc * u->h * u->w;
    uint16_t *xh = NULL;
    if (u->xt) {
        xh = ot_be_alloc(ot_backend_cpu_guard(), 2 * (size_t)(n ? n : 1));
        if (bf16) ot_cuda_f32_to_bf16(xh, u->x, n, NULL);
        else ot_cuda_f32_to_f16(xh, u->x, n, NULL);
    }
    ot_cuda_upsample2x_fwd_half(y, xh ? (const void *)xh : (const void *)u->x, u->xt, u->nc, u->h, u->w, bf16, NULL);
    if (xh) ot_be_free(ot_backend_cpu_guard(), xh);
}

static void check_case(int64_t nc, int64_t h, int64_t w, bool yolo, uint64_t seed) {
    int64_t n_in = nc * h * w, n_out = 4 * n_in;
    float *x = malloc(sizeof(float) * (size_t)n_in), *dy = malloc(sizeof(float) * (size_t)n_out);
    ck_assert(x && dy);
    for (int64_t i = 0; i < n_in; i++) x[i] = rfloat(&seed);
    for (int64_t i = 0; i < n_out; i++) dy[i] = rfloat(&seed);

    ot_graph *g = resize_graph(yolo);
    ot_shape xs = ot_shape_make(4, (int64_t[]){1, nc, h, w});
    ot_autograd *a;
    ot_error e;
    ck_assert_msg(ot_autograd_create(g, &xs, NULL, true, &a, &e) == OT_OK, "%s", e.msg);
    ck_assert(a->be == ot_backend_cpu());
    ck_assert_msg(ot_autograd_forward(a, (const float *const[]){x}, &e) == OT_OK, "%s", e.msg);
    float *yref = malloc(sizeof(float) * (size_t)n_out), *dxref = malloc(sizeof(float) * (size_t)n_in);
    memcpy(yref, ot_autograd_data(a, g->outputs[0]), sizeof(float) * (size_t)n_out);
    memcpy(ot_autograd_output_grad(a, 0), dy, sizeof(float) * (size_t)n_out);
    ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s", e.msg);
    memcpy(dxref, ot_autograd_grad(a, g->inputs[0]), sizeof(float) * (size_t)n_in);
    ot_autograd_destroy(a);
    ot_graph_destroy(g);

    ot_backend *G = ot_backend_cpu_guard();
    float *y = malloc(sizeof(float) * (size_t)n_out), *dx = malloc(sizeof(float) * (size_t)n_in);
    for (int off = 0; off < 2; off++) {   /* 0: aligned (vector paths), 1: one float off (scalar paths) */
        float *gx = ot_be_alloc(G, sizeof(float) * (size_t)(n_in + 1)), *gy = ot_be_alloc(G, sizeof(float) * (size_t)(n_out + 1));
        float *gdy = ot_be_alloc(G, sizeof(float) * (size_t)(n_out + 1)), *gdx = ot_be_alloc(G, sizeof(float) * (size_t)(n_in + 1));
        ot_be_upload(G, gx + off, x, sizeof(float) * (size_t)n_in);
        ot_be_upload(G, gdy + off, dy, sizeof(float) * (size_t)n_out);
        ot_be_memset(G, gy, 0xff, sizeof(float) * (size_t)(n_out + 1));   /* NaN: unwritten elements fail */
        ot_be_memset(G, gdx, 0xff, sizeof(float) * (size_t)(n_in + 1));
        ot_cuda_upsample2x_fwd(gy + off, gx + off, nc, h, w, NULL);
        ot_cuda_upsample2x_bwd(gdx + off, gdy + off, nc, h, w, 0, NULL);
        if (off == 0) /* into a half-precision y (--amp): the float forward converted, from x float or already half */
            for (int xt = 0; xt <= 1; xt++) {
                up_half_ctx hc = {gx, xt, nc, h, w};
                cg_check_half_out(up_half_run, &hc, gy, n_out, xt ? "upsample half (x half)" : "upsample half");
            }
        ot_be_download(G, y, gy + off, sizeof(float) * (size_t)n_out);
        ot_be_download(G, dx, gdx + off, sizeof(float) * (size_t)n_in);
        int i = first_diff(y, yref, n_out);
        ck_assert_msg(i < 0, "forward (%lld,%lld,%lld)%s off %d: y[%d] = %.9g, CPU Resize %.9g", (long long)nc, (long long)h,
                      (long long)w, yolo ? " asymmetric" : "", off, i, i < 0 ? 0.0 : y[i], i < 0 ? 0.0 : yref[i]);
        i = first_diff(dx, dxref, n_in);
        ck_assert_msg(i < 0, "backward (%lld,%lld,%lld)%s off %d: dx[%d] = %.9g, CPU Resize %.9g", (long long)nc,
                      (long long)h, (long long)w, yolo ? " asymmetric" : "", off, i, i < 0 ? 0.0 : dx[i],
                      i < 0 ? 0.0 : dxref[i]);
        /* accumulate: onto another consumer's gradient, in kernels/resize.c's scatter order
         * (gx += top pair, then += bottom pair, per input row) */
        float *base = malloc(sizeof(float) * (size_t)n_in), *want = malloc(sizeof(float) * (size_t)n_in);
        ck_assert(base && want);
        for (int64_t k = 0; k < n_in; k++) base[k] = rfloat(&seed);
        for (int64_t r = 0; r < nc * h; r++)
            for (int64_t j = 0; j < w; j++) {
                const float *t = dy + 4 * r * w + 2 * j, *b = t + 2 * w;
                float v = base[r * w + j];
                v += t[0] + t[1];
                v += b[0] + b[1];
                want[r * w + j] = v;
            }
        ot_be_upload(G, gdx + off, base, sizeof(float) * (size_t)n_in);
        ot_cuda_upsample2x_bwd(gdx + off, gdy + off, nc, h, w, 1, NULL);
        ot_be_download(G, dx, gdx + off, sizeof(float) * (size_t)n_in);
        i = first_diff(dx, want, n_in);
        ck_assert_msg(i < 0, "accumulating backward (%lld,%lld,%lld) off %d: dx[%d] = %.9g, expected %.9g", (long long)nc,
                      (long long)h, (long long)w, off, i, i < 0 ? 0.0 : dx[i], i < 0 ? 0.0 : want[i]);
        free(base); free(want);
        ot_be_free(G, gx); ot_be_free(G, gy); ot_be_free(G, gdy); ot_be_free(G, gdx);
    }
    free(x); free(dy); free(y); free(dx); free(yref); free(dxref);
}

static const int64_t CASES[][3] = {
    {1, 1, 1}, {1, 1, 2}, {1, 2, 1}, {3, 5, 7}, {2, 3, 4}, {5, 1, 9}, {1, 9, 1},
    {7, 13, 6}, {4, 6, 10}, {33, 17, 19}, {16, 20, 20}, {3, 11, 3},
};

START_TEST(forward_backward_match_cpu_resize) {
    uint64_t seed = 1234;
    for (size_t k = 0; k < sizeof CASES / sizeof *CASES; k++)
        for (int yolo = 0; yolo < 2; yolo++) check_case(CASES[k][0], CASES[k][1], CASES[k][2], yolo, seed + 17 * k + (uint64_t)yolo);
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

/* Random shapes, odd and even, up to 40 on each side of the plane. */
START_TEST(random_shapes) {
    uint64_t s = 77;
    for (int k = 0; k < 12; k++) {
        int64_t nc = 1 + (int64_t)(rnext(&s) % 9), h = 1 + (int64_t)(rnext(&s) % 40), w = 1 + (int64_t)(rnext(&s) % 40);
        check_case(nc, h, w, k & 1, rnext(&s));
    }
}
END_TEST

/* Zero-sized tensors launch nothing and touch nothing. */
START_TEST(empty_is_a_no_op) {
    ot_cuda_upsample2x_fwd(NULL, NULL, 0, 5, 5, NULL);
    ot_cuda_upsample2x_bwd(NULL, NULL, 3, 0, 5, 0, NULL);
    ot_cuda_upsample2x_bwd(NULL, NULL, 3, 5, 0, 1, NULL);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cudaemu_upsample");
    TCase *t = tcase_create("upsample2x");
    tcase_add_test(t, forward_backward_match_cpu_resize);
    tcase_add_test(t, random_shapes);
    tcase_add_test(t, empty_is_a_no_op);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_main(suite()); }
