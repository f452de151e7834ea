/* test_train_grad.c: directional-derivative checks of the whole training
 * graph's backward (every op's backward chained, BN in training mode):
 * f(theta) = sum_l <out_l(theta), r_l> for fixed Gaussian r_l, compared along
 * random directions u with central differences
 *     (f(theta + u) - f(theta - u)) / 2  vs  <grad f, u>,
 * u Gaussian, scaled per tensor to 1e-4 of the tensor's RMS. Batch 2 at
 * 128 x 128. Tolerances, measured rather than hoped for: BN with batch
 * statistics over the few values of the deep, small maps (P5 is 4 x 4 here)
 * makes f strongly curved, and float32 evaluation adds ~1e-6 relative noise
 * to f; through the whole YOLOv5n graph the central difference then agrees
 * with the gradient to ~0.5 % (tolerance 3 %; a 10 % error planted in one
 * term of BN's backward gives 24 %), and through YOLOv5s's neck and head
 * (model.13-24: 12 BN layers deep) to 0.02-0.16 % (tolerance 0.5 %). Deeper
 * YOLOv5s directions are checked against PyTorch's autograd instead
 * (test_loss.c), per-op backwards with finite differences in test_grad_ops.c. */
#include "testutil.h"
#include "core/config.h"
#include "core/runtime/autograd.h"
#include "train/prepare.h"
#include <math.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static double gauss(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    double u1 = ((rng >> 11) + 0.5) / 9007199254740992.0;
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    double u2 = ((rng >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static double eval_f(ot_autograd *a, const float *x, float **r) {
    ot_error e;
    ck_assert_msg(ot_autograd_forward(a, &x, &e) == OT_OK, "%s", e.msg);
    double f = 0;
    for (int k = 0; k < a->g->n_outputs; k++) {
        int v = a->g->outputs[k];
        const float *o = a->p->data[v];
        int64_t n = ot_numel(&a->p->shape[v]);
        for (int64_t i = 0; i < n; i++) f += (double)o[i] * r[k][i];
    }
    return f;
}

/* min_layer: perturb only parameters of modules model.N with N >= min_layer. */
static void check_graph(const ot_model *m, const char *what, int min_layer, double tol) {
    ot_graph *g;
    ot_error e;
    ck_assert_msg(ot_prepare_training_graph(m, NULL, &g, &e) == OT_OK, "%s", e.msg);
    const int sz = 128;
    const double fd_scale = 1e-4;
    ot_shape s = {4, {2, 3, sz, sz}};
    ot_autograd *a;
    ck_assert_msg(ot_autograd_create(g, &s, NULL, false, &a, &e) == OT_OK, "%s", e.msg);
    float *x = malloc(sizeof(float) * 2 * 3 * (size_t)sz * (size_t)sz);
    ot_fill_pattern(x, 2 * 3 * (int64_t)sz * sz, 5);
    float *r[OT_MAX_HEADS];
    ck_assert_msg(ot_autograd_forward(a, (const float *const *)&x, &e) == OT_OK, "%s", e.msg);
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->outputs[k];
        int64_t n = ot_numel(&a->p->shape[v]);
        r[k] = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) r[k][i] = (float)gauss();
        memcpy(ot_autograd_output_grad(a, k), r[k], sizeof(float) * (size_t)n);
    }
    ot_autograd_zero_grad(a);
    ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s", e.msg);
    size_t nf = a->slab_floats;
    float *theta = malloc(sizeof(float) * nf), *u = calloc(nf, sizeof(float)), *grad = malloc(sizeof(float) * nf);
    memcpy(theta, a->slab, sizeof(float) * nf);
    memcpy(grad, a->grad_slab, sizeof(float) * nf);
    double worst = 0;
    for (int dir = 0; dir < 3; dir++) {
        double dot = 0, mag = 0;
        for (int i = 0; i < a->n_vars; i++) {
            int v = a->var_vid[i];
            if (a->kind[v] != OT_VAR_PARAM) continue;
            const char *nm = a->g->values[v].name;
            if (strncmp(nm, "model.", 6) == 0 && atoi(nm + 6) < min_layer) continue;
            int64_t n = ot_numel(&a->p->shape[v]);
            const float *t = theta + a->var_off[i];
            double rms = 0;
            for (int64_t j = 0; j < n; j++) rms += (double)t[j] * t[j];
            rms = sqrt(rms / (double)n);
            if (rms < 1e-3) rms = 1e-3; /* zero-initialised biases still move */
            for (int64_t j = 0; j < n; j++) {
                float uj = (float)(fd_scale * rms * gauss());
                u[a->var_off[i] + j] = uj;
                dot += (double)grad[a->var_off[i] + j] * uj;
                mag += fabs((double)grad[a->var_off[i] + j] * uj);
            }
        }
        for (size_t j = 0; j < nf; j++) a->slab[j] = theta[j] + u[j];
        double fp = eval_f(a, x, r);
        for (size_t j = 0; j < nf; j++) a->slab[j] = theta[j] - u[j];
        double fm = eval_f(a, x, r);
        memcpy(a->slab, theta, sizeof(float) * nf);
        double fd = (fp - fm) / 2, err = fabs(fd - dot) / (fabs(dot) + 1e-3 * mag);
        printf("%s direction %d: finite difference %.9g, gradient . u %.9g, relative error %.3g\n", what, dir, fd, dot, err);
        if (err > worst) worst = err;
        ck_assert_msg(err <= tol, "%s: directional derivative error %.3g > %.3g", what, err, tol);
    }
    free(theta); free(u); free(grad); free(x);
    for (int k = 0; k < g->n_outputs; k++) free(r[k]);
    ot_autograd_destroy(a);
    ot_graph_destroy(g);
}

START_TEST(yolov5s_bn_directional) {
    const char *sh = tu_shared();
    if (!sh) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/yolov5s-bn.onnx", sh);
    ot_model *m;
    ot_error e;
    ck_assert_msg(ot_model_load(path, &m, &e) == OT_OK, "%s", e.msg);
    check_graph(m, "yolov5s-bn, model.13-24", 13, 5e-3);
    ot_model_destroy(m);
}
END_TEST

START_TEST(yolov5n_folded_directional) {
    char cmd[8192], path[4096];
    snprintf(cmd, sizeof cmd, "tar -xJf '%s/yolov5n-c3-416.tar.xz' -C '%s'", OT_FIXTURES, tu_work());
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/yolov5n-c3-416.onnx", tu_work());
    ot_model *m;
    ot_error e;
    ck_assert_msg(ot_model_load(path, &m, &e) == OT_OK, "%s", e.msg);
    check_graph(m, "yolov5n-c3 (BN inserted), all layers", 0, 3e-2);
    ot_model_destroy(m);
}
END_TEST

/* The speed-ups that must not change a bit: SiLU fused into one kernel
 * (Sigmoid taken off the steps) and gradients written by their only writer
 * instead of zeroed then added. The same forward and backward with both
 * switched off (ONNXT_FUSE_SILU=0, ONNXT_GRAD_SET=0) give the same outputs
 * and parameter gradients, bit for bit; and the switches did switch. */
static void run_once(const ot_graph *g, const float *x, float **outs, float *grads, int *steps, int *zeroed) {
    ot_shape s = {4, {2, 3, 128, 128}};
    ot_autograd *a;
    ot_error e;
    ck_assert_msg(ot_autograd_create(g, &s, NULL, false, &a, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_autograd_forward(a, &x, &e) == OT_OK, "%s", e.msg);
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->outputs[k];
        int64_t n = ot_numel(&a->p->shape[v]);
        memcpy(outs[k], a->p->data[v], sizeof(float) * (size_t)n);
        float *go = ot_autograd_output_grad(a, k);
        for (int64_t i = 0; i < n; i++) go[i] = (float)(0.001 * (double)((i * 7919) % 2001 - 1000));
    }
    ot_autograd_zero_grad(a);
    ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s", e.msg);
    memcpy(grads, a->grad_slab, sizeof(float) * a->slab_floats);
    *steps = a->p->n_steps;
    *zeroed = a->zero_start[a->n_bsteps];
    ot_autograd_destroy(a);
}

START_TEST(fusions_change_nothing) {
    char cmd[8192], path[4096];
    snprintf(cmd, sizeof cmd, "tar -xJf '%s/yolov5n-c3-416.tar.xz' -C '%s'", OT_FIXTURES, tu_work());
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/yolov5n-c3-416.onnx", tu_work());
    ot_model *m;
    ot_graph *g;
    ot_error e;
    ck_assert_msg(ot_model_load(path, &m, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_prepare_training_graph(m, NULL, &g, &e) == OT_OK, "%s", e.msg);
    int64_t nx = 2 * 3 * 128 * 128;
    float *x = malloc(sizeof(float) * (size_t)nx);
    ot_fill_pattern(x, nx, 9);
    ot_shape s = {4, {2, 3, 128, 128}};
    ot_autograd *probe;
    ck_assert_msg(ot_autograd_create(g, &s, NULL, false, &probe, &e) == OT_OK, "%s", e.msg);
    size_t nf = probe->slab_floats;
    float *outs[2][OT_MAX_HEADS], *grads[2];
    for (int r = 0; r < 2; r++) {
        grads[r] = malloc(sizeof(float) * nf);
        for (int k = 0; k < g->n_outputs; k++) outs[r][k] = malloc(sizeof(float) * (size_t)ot_numel(&probe->p->shape[g->outputs[k]]));
    }
    int steps[2], zeroed[2];
    run_once(g, x, outs[0], grads[0], &steps[0], &zeroed[0]);
    setenv("ONNXT_FUSE_SILU", "0", 1);
    setenv("ONNXT_GRAD_SET", "0", 1);
    ot_config_reload(); /* the switches were read at the first plan */
    run_once(g, x, outs[1], grads[1], &steps[1], &zeroed[1]);
    unsetenv("ONNXT_FUSE_SILU");
    unsetenv("ONNXT_GRAD_SET");
    ot_config_reload();
    printf("fused: %d steps, %d gradients zeroed; unfused: %d steps, %d zeroed\n", steps[0], zeroed[0], steps[1], zeroed[1]);
    ck_assert_int_lt(steps[0], steps[1]);
    ck_assert_int_lt(zeroed[0], zeroed[1]);
    for (int k = 0; k < g->n_outputs; k++)
        ck_assert_msg(memcmp(outs[0][k], outs[1][k], sizeof(float) * (size_t)ot_numel(&probe->p->shape[g->outputs[k]])) == 0,
                      "output %d differs with the fusions", k);
    for (int i = 0; i < probe->n_vars; i++) {
        int v = probe->var_vid[i];
        if (probe->kind[v] != OT_VAR_PARAM) continue;
        ck_assert_msg(memcmp(grads[0] + probe->var_off[i], grads[1] + probe->var_off[i],
                             sizeof(float) * (size_t)ot_numel(&probe->p->shape[v])) == 0,
                      "gradient of %s differs with the fusions", g->values[v].name);
    }
    for (int r = 0; r < 2; r++) {
        free(grads[r]);
        for (int k = 0; k < g->n_outputs; k++) free(outs[r][k]);
    }
    free(x);
    ot_autograd_destroy(probe);
    ot_graph_destroy(g);
    ot_model_destroy(m);
}
END_TEST

int main(void) {
    ot_set_quiet(true);
    Suite *s = suite_create("train_grad");
    TCase *t = tcase_create("train_grad");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, yolov5n_folded_directional);
    tcase_add_test(t, fusions_change_nothing);
    tcase_add_test(t, yolov5s_bn_directional);
    suite_add_tcase(s, t);
    return tu_main(s);
}
