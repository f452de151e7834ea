/* test_grad_ops.c: every op's CPU backward against central finite
 * differences, through the autograd plan (core/runtime/autograd.h).
 *
 * Graphs: the single-op ONNX fixtures (tests/fixtures/ops, made by ONNX Runtime:
 * attribute variants of every op), random-shape broadcasting binary ops built
 * with the IR API, and a few large graphs for the multi-threaded paths.
 * Inputs are drawn here (fixed seeds), not read from the .npy files: distinct,
 * well separated values (magnitudes in [0.5, 2] at least 0.75/n apart, so
 * MaxPool ties and kinks sit further than the step from every input;
 * positive where the fixture's input is positive (Pow bases, divisors); whole
 * numbers where the fixture's are (Pow's integer exponents)). Every output gets
 * a random gradient r in [-1, 1]; f = sum(out * r), accumulated in double. The
 * gradient of every graph input and every parameter (Conv weight/bias, BN
 * scale/bias; perturbed in place in the autograd slab) is compared, all
 * elements up to 256 and a deterministic sample of 200 above, with
 *     fd = (f(x + h) - f(x - h)) / (h+ + h-),
 * h = 1e-3 and h+/h- the steps float32 actually represents.
 *
 * Tolerance |grad - fd| <= K * noise + RTOL * |fd|, justified:
 *  - rounding: the kernels are float32; an output element carries a rounding
 *    error of about eps = 2^-24 ~ 6e-8 of its size, and only the outputs that
 *    the perturbed element changes contribute (the others are bit-identical in
 *    both evaluations and cancel exactly). So f+ - f- is off by about
 *    2 * eps * S, S = sum over the changed outputs of |out * r|, and
 *    noise = 2 * eps * S / (h+ + h-) measures it per element. K = 32 allows for
 *    the several roundings of an output (a convolution or a batch-norm
 *    statistic accumulates many; they add up like a random walk) with margin
 *    (the worst observed ratio is printed).
 *  - truncation: O(h^2 f'''/6); with these value ranges (|x| >= 0.5, bounded
 *    exponents) f'''/f' is at most ~100, so the relative error is below
 *    2e-5, and RTOL = 1e-3 leaves 50x margin. Any real backward bug
 *    (wrong index, missing term, double count) gives an error of order the
 *    gradient itself and fails.
 *  - kinks: where MaxPool's argmax follows a computed value (pools of pools,
 *    Conv -> MaxPool), the step can still cross a near-tie. Such an element is
 *    recognised by its one-sided differences disagreeing and skipped; at most
 *    2% of a tensor's checked elements may be skipped.
 * The accumulation contract is checked too: a second backward without
 * zero_grad doubles the parameter gradients (relative 1e-6). */
#include "core/npy.h"
#include "kernels/ops.h"
#include "core/runtime/autograd.h"
#include "testutil.h"
#include <math.h>
#include <string.h>

#define FD_H 1e-3
#define EPS32 5.9604644775390625e-8 /* 2^-24 */
#define K_ROUND 32.0
#define RTOL 1e-3
#define ALL_UPTO 256
#define SAMPLE 200
#define MAX_KINK_FRAC 0.02

/* ---- random numbers (splitmix64) ---- */
static uint64_t rnext(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double runif(uint64_t *s) { return (double)(rnext(s) >> 11) * 0x1p-53; }
static uint64_t seed_of(const char *name) {
    uint64_t h = 1469598103934665603ull;
    for (; *name; name++) h = (h ^ (unsigned char)*name) * 1099511628211ull;
    return h;
}

/* n distinct magnitudes in [0.5, 2], at least 0.75/n apart, in random order;
 * random signs unless positive. */
static void draw_separated(float *x, int64_t n, bool positive, uint64_t *s) {
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    ck_assert_ptr_nonnull(perm);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(runif(s) * (double)(i + 1));
        int64_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    for (int64_t i = 0; i < n; i++) {
        double mag = 0.5 + 1.5 * ((double)perm[i] + 0.5 + 0.5 * (runif(s) - 0.5)) / (double)n;
        x[i] = (float)(positive || runif(s) < 0.5 ? mag : -mag);
    }
    free(perm);
}

static void draw_uniform(float *x, int64_t n, double lo, double hi, uint64_t *s) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * runif(s));
}

/* ---- per-family results ---- */
typedef struct fam {
    char name[32];
    int cases, tensors, elems, kinks;
    double worst_ratio;   /* max |grad - fd| / tolerance */
    double worst_rel;     /* max |grad - fd| / max(|fd|, 1e-3) */
} fam;
static fam fams[64];
static int n_fams;

static fam *family(const char *name) {
    char f[32];
    snprintf(f, sizeof f, "%s", name);
    char *u = strchr(f, '_');
    if (u) *u = 0;
    if (!strncmp(f, "conv", 4)) strcpy(f, "conv");
    if (!strcmp(f, "upsample")) strcpy(f, "resize");
    if (!strcmp(f, "unsqueeze")) strcpy(f, "squeeze");
    if (!strcmp(f, "silu")) strcpy(f, "sigmoid");
    for (int i = 0; i < n_fams; i++)
        if (!strcmp(fams[i].name, f)) return &fams[i];
    ck_assert_int_lt(n_fams, 64);
    fam *r = &fams[n_fams++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", f);
    return r;
}

static void print_families(const char *title) {
    printf("%s\n  %-12s %5s %7s %8s %5s %12s %12s\n", title, "family", "cases", "tensors", "elements", "kinks",
           "worst/tol", "worst rel");
    for (int i = 0; i < n_fams; i++)
        printf("  %-12s %5d %7d %8d %5d %12.3g %12.3g\n", fams[i].name, fams[i].cases, fams[i].tensors, fams[i].elems,
               fams[i].kinks, fams[i].worst_ratio, fams[i].worst_rel);
    fflush(stdout);
}

/* ---- one graph under test ---- */
typedef struct gtest {
    const char *name;
    const ot_graph *g;
    ot_autograd *a;
    float **in;        /* graph inputs (ours) */
    int64_t *in_n;
    float **r;         /* output gradients */
    int64_t *out_n;
    int64_t out_total;
    float *plus;       /* outputs of the + evaluation */
} gtest;

/* f = sum(out * r) after a forward; save: copy the outputs; cmp: S = sum of
 * |out * r| over outputs that differ from cmp (max of both sides). */
static double eval_f(gtest *t, float *save, const float *cmp, double *S) {
    ot_error e;
    ck_assert_msg(ot_autograd_forward(t->a, (const float *const *)t->in, &e) == OT_OK, "%s: forward: %s", t->name, e.msg);
    double f = 0, s = 0;
    int64_t off = 0;
    for (int k = 0; k < t->g->n_outputs; k++) {
        const float *o = ot_autograd_data(t->a, t->g->outputs[k]);
        for (int64_t i = 0; i < t->out_n[k]; i++) {
            f += (double)o[i] * (double)t->r[k][i];
            if (cmp && o[i] != cmp[off + i])
                s += fmax(fabs((double)o[i]), fabs((double)cmp[off + i])) * fabs((double)t->r[k][i]);
        }
        if (save) memcpy(save + off, o, sizeof(float) * (size_t)t->out_n[k]);
        off += t->out_n[k];
    }
    if (S) *S = s;
    return f;
}

static void set_output_grads(gtest *t) {
    for (int k = 0; k < t->g->n_outputs; k++) {
        float *go = ot_autograd_output_grad(t->a, k);
        if (go) memcpy(go, t->r[k], sizeof(float) * (size_t)t->out_n[k]);
    }
}

/* Compare grad (a copy) with central differences of f over data[0..n). Returns
 * the number of failing elements (messages on stderr). */
static int check_tensor(gtest *t, const char *what, float *data, const float *grad, int64_t n, double f0, fam *fm) {
    int bad = 0, kinks = 0, checked = 0;
    uint64_t s = seed_of(what) ^ seed_of(t->name);
    int64_t count = n <= ALL_UPTO ? n : SAMPLE;
    for (int64_t q = 0; q < count; q++) {
        int64_t i = n <= ALL_UPTO ? q : (q * n) / SAMPLE + (int64_t)(runif(&s) * (double)(n / SAMPLE));
        if (i >= n) i = n - 1;
        float x0 = data[i], xp = (float)(x0 + FD_H), xm = (float)(x0 - FD_H);
        double hp = (double)xp - x0, hm = x0 - (double)xm, S;
        data[i] = xp;
        double fp = eval_f(t, t->plus, NULL, NULL);
        data[i] = xm;
        double fmn = eval_f(t, NULL, t->plus, &S);
        data[i] = x0;
        double fd = (fp - fmn) / (hp + hm), g = grad[i];
        double noise = 2 * EPS32 * S / (hp + hm);
        if (!isfinite(fd) || !isfinite(g)) {
            /* Pow's exponent at a negative base: NaN both ways (as PyTorch) */
            if (isfinite(fd) != isfinite(g)) {
                fprintf(stderr, "%s: %s[%lld]: grad %.6g, finite difference %.6g\n", t->name, what, (long long)i, g, fd);
                bad++;
            }
            continue;
        }
        double dp = (fp - f0) / hp, dm = (f0 - fmn) / hm;
        if (fabs(dp - dm) > 0.1 * fmax(fmax(fabs(dp), fabs(dm)), 0.1) + 4 * K_ROUND * noise) { kinks++; continue; }
        double tol = K_ROUND * noise + RTOL * fabs(fd), err = fabs(g - fd);
        checked++;
        if (err / tol > fm->worst_ratio) fm->worst_ratio = err / tol;
        if (err / fmax(fabs(fd), 1e-3) > fm->worst_rel) fm->worst_rel = err / fmax(fabs(fd), 1e-3);
        if (!(err <= tol)) {
            if (bad < 5)
                fprintf(stderr, "%s: %s[%lld]: grad %.8g, finite difference %.8g (error %.3g > tolerance %.3g)\n", t->name,
                        what, (long long)i, g, fd, err, tol);
            bad++;
        }
    }
    fm->elems += checked;
    fm->kinks += kinks;
    fm->tensors++;
    if (kinks > MAX_KINK_FRAC * (double)count + 1e-9 && kinks > 0) {
        fprintf(stderr, "%s: %s: %d of %lld elements cross a kink of f at step %g\n", t->name, what, kinks,
                (long long)count, FD_H);
        bad++;
    }
    return bad;
}

static float *copy_of(const float *p, int64_t n) {
    float *c = malloc(sizeof(float) * (size_t)(n ? n : 1));
    ck_assert_ptr_nonnull(c);
    if (n) memcpy(c, p, sizeof(float) * (size_t)n);
    return c;
}

/* Run every check on graph g with the given inputs (owned by the caller).
 * Returns the number of failures. */
static int check_graph(const char *name, const ot_graph *g, const ot_shape *shapes, float **inputs, fam *fm) {
    ot_error e;
    gtest t = {name, g, NULL, inputs, NULL, NULL, NULL, 0, NULL};
    if (ot_autograd_create(g, shapes, NULL, true, &t.a, &e)) {
        fprintf(stderr, "%s: ot_autograd_create: %s\n", name, e.msg);
        return 1;
    }
    int bad = 0, ni = g->n_inputs, no = g->n_outputs;
    const ot_plan *p = t.a->p;
    uint64_t s = seed_of(name) * 3 + 1;
    t.in_n = calloc((size_t)ni + 1, sizeof(int64_t));
    t.r = calloc((size_t)no + 1, sizeof(float *));
    t.out_n = calloc((size_t)no + 1, sizeof(int64_t));
    ck_assert(t.in_n && t.r && t.out_n);
    for (int i = 0; i < ni; i++) t.in_n[i] = ot_numel(&p->shape[g->inputs[i]]);
    for (int k = 0; k < no; k++) {
        t.out_n[k] = ot_numel(&p->shape[g->outputs[k]]);
        ck_assert_int_eq(p->dtype[g->outputs[k]], OT_F32);
        t.r[k] = malloc(sizeof(float) * (size_t)(t.out_n[k] + 1));
        draw_uniform(t.r[k], t.out_n[k], -1, 1, &s);
        t.out_total += t.out_n[k];
    }
    t.plus = malloc(sizeof(float) * (size_t)(t.out_total + 1));

    /* forward, backward, keep the gradients */
    ot_autograd_zero_grad(t.a);
    double f0 = eval_f(&t, NULL, NULL, NULL);
    set_output_grads(&t);
    ck_assert_msg(ot_autograd_backward(t.a, &e) == OT_OK, "%s: backward: %s", name, e.msg);
    float **gin = calloc((size_t)ni + 1, sizeof(float *));
    float **gpar = calloc((size_t)t.a->n_vars + 1, sizeof(float *));
    ck_assert(gin && gpar);
    for (int i = 0; i < ni; i++) {
        const float *gi = ot_autograd_grad(t.a, g->inputs[i]);
        if (!gi) { fprintf(stderr, "%s: input %d has no gradient buffer\n", name, i); bad++; continue; }
        gin[i] = copy_of(gi, t.in_n[i]);
    }
    for (int j = 0; j < t.a->n_vars; j++) {
        int v = t.a->var_vid[j];
        if (t.a->kind[v] != OT_VAR_PARAM) continue;
        const float *gv = ot_autograd_grad(t.a, v);
        if (!gv) { fprintf(stderr, "%s: parameter '%s' has no gradient\n", name, g->values[v].name); bad++; continue; }
        gpar[j] = copy_of(gv, ot_numel(&p->shape[v]));
    }

    /* accumulation: a second backward without zero_grad doubles parameter gradients */
    eval_f(&t, NULL, NULL, NULL);
    set_output_grads(&t);
    ck_assert_msg(ot_autograd_backward(t.a, &e) == OT_OK, "%s: backward: %s", name, e.msg);
    for (int j = 0; j < t.a->n_vars; j++) {
        if (!gpar[j]) continue;
        int v = t.a->var_vid[j];
        const float *gv = ot_autograd_grad(t.a, v);
        int64_t n = ot_numel(&p->shape[v]);
        for (int64_t i = 0; i < n; i++)
            if (!(fabs(gv[i] - 2.0 * gpar[j][i]) <= 1e-6 * fabs(2.0 * gpar[j][i]) + 1e-30)) {
                fprintf(stderr, "%s: '%s'[%lld]: second backward gave %.8g, expected twice %.8g\n", name,
                        g->values[v].name, (long long)i, gv[i], gpar[j][i]);
                bad++;
                break;
            }
    }
    ot_autograd_zero_grad(t.a);
    for (int j = 0; j < t.a->n_vars; j++) {
        int v = t.a->var_vid[j];
        if (!gpar[j]) continue;
        const float *gv = ot_autograd_grad(t.a, v);
        for (int64_t i = 0; i < ot_numel(&p->shape[v]); i++)
            if (gv[i] != 0.0f) { fprintf(stderr, "%s: zero_grad left '%s' non-zero\n", name, g->values[v].name); bad++; break; }
    }

    /* finite differences */
    f0 = eval_f(&t, NULL, NULL, NULL);
    char what[300];
    for (int i = 0; i < ni; i++) {
        if (!gin[i]) continue;
        snprintf(what, sizeof what, "input '%s'", g->values[g->inputs[i]].name);
        bad += check_tensor(&t, what, inputs[i], gin[i], t.in_n[i], f0, fm);
    }
    for (int j = 0; j < t.a->n_vars; j++) {
        if (!gpar[j]) continue;
        int v = t.a->var_vid[j];
        snprintf(what, sizeof what, "parameter '%s'", g->values[v].name);
        bad += check_tensor(&t, what, ot_autograd_data(t.a, v), gpar[j], ot_numel(&p->shape[v]), f0, fm);
    }
    fm->cases++;

    for (int i = 0; i < ni; i++) free(gin[i]);
    for (int j = 0; j < t.a->n_vars; j++) free(gpar[j]);
    for (int k = 0; k < no; k++) free(t.r[k]);
    free(gin); free(gpar); free(t.r); free(t.out_n); free(t.in_n); free(t.plus);
    ot_autograd_destroy(t.a);
    return bad;
}

/* ---- the ONNX Runtime single-op fixtures ---- */

/* Draw input i like the fixture's values: whole numbers stay whole, positive
 * stays positive, anything else gets random signs. */
static void draw_like(float *x, const ot_tensor *ref, uint64_t *s) {
    int64_t n = ot_numel(&ref->shape);
    const float *v = ref->data;
    bool whole = n > 0, positive = n > 0;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (v[i] != floorf(v[i]) || fabsf(v[i]) > 16) whole = false;
        if (!(v[i] > 0)) positive = false;
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
    }
    if (whole) {
        for (int64_t i = 0; i < n; i++) x[i] = (float)floor(lo + (hi - lo + 1) * runif(s));
        return;
    }
    draw_separated(x, n, positive, s);
}

static int run_fixture(const char *dir, const char *name, int *skipped) {
    char path[4096];
    ot_error e;
    ot_model *m;
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, name);
    ck_assert_msg(ot_model_load(path, &m, &e) == OT_OK, "%s: %s", name, e.msg);
    const ot_graph *g = m;
    int ni = g->n_inputs, bad = 0;
    ck_assert_int_le(ni, 8);
    /* every op that runs must have a backward */
    for (int k = 0; k < g->n_nodes; k++) {
        const ot_op_def *d = ot_op_get(g->nodes[k].op);
        const ot_op_impl *im = ot_op_impl_get(g->nodes[k].op, OT_DEV_CPU);
        if (d && (!im || !im->backward) && strcmp(d->name, "Constant") && strcmp(d->name, "Shape") && strcmp(d->name, "Gather") &&
            strcmp(d->name, "Cast") && strcmp(d->name, "ConstantOfShape")) {
            fprintf(stderr, "%s: op %s has no backward yet: case skipped\n", name, d->name);
            (*skipped)++;
            ot_model_destroy(m);
            return 0;
        }
    }
    ot_shape shapes[8];
    float *in[8];
    uint64_t s = seed_of(name);
    for (int i = 0; i < ni; i++) {
        ot_tensor ref;
        snprintf(path, sizeof path, "%s/%s/in%d.npy", dir, name, i);
        ck_assert_msg(ot_npy_read(path, &ref, &e) == OT_OK, "%s", e.msg);
        shapes[i] = ref.shape;
        in[i] = malloc(sizeof(float) * (size_t)(ot_numel(&ref.shape) + 1));
        draw_like(in[i], &ref, &s);
        free(ref.data);
    }
    bad += check_graph(name, g, shapes, in, family(name));
    for (int i = 0; i < ni; i++) free(in[i]);
    ot_model_destroy(m);
    return bad;
}

START_TEST(fixture_ops_match_finite_differences) {
    const char *dir = OT_FIXTURES "/ops";
    char path[4096], name[256];
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "missing %s", path);
    int n = 0, failed = 0, skipped = 0;
    while (fscanf(f, "%255s", name) == 1) {
        int b = run_fixture(dir, name, &skipped);
        if (b) fprintf(stderr, "%s: %d failure(s)\n", name, b);
        failed += b != 0;
        n++;
    }
    fclose(f);
    print_families("fixture ops: finite-difference check of every input and parameter gradient");
    printf("%d fixture cases, %d failed, %d skipped (op without backward)\n", n, failed, skipped);
    fflush(stdout);
    ck_assert_int_ge(n, 98);
    ck_assert_int_eq(skipped, 0);
    ck_assert_int_eq(failed, 0);
}
END_TEST

/* ---- graphs built with the IR API ---- */

static ot_graph *graph_new(int64_t opset) {
    ot_graph *g = ot_graph_create();
    ck_assert_ptr_nonnull(g);
    g->path = ot_strdup("generated.onnx");
    g->opset = opset;
    return g;
}

static int graph_input(ot_graph *g, const char *name) {
    int v = ot_graph_value(g, name);
    g->values[v].flags |= OT_V_INPUT;
    g->inputs = realloc(g->inputs, sizeof(int) * (size_t)(g->n_inputs + 1));
    g->inputs[g->n_inputs++] = v;
    return v;
}

static void graph_output(ot_graph *g, const char *name) {
    int v = ot_graph_value(g, name);
    g->values[v].flags |= OT_V_OUTPUT;
    g->outputs = realloc(g->outputs, sizeof(int) * (size_t)(g->n_outputs + 1));
    g->outputs[g->n_outputs++] = v;
}

/* An initializer (float32 or int64 data, copied). */
static void graph_init(ot_graph *g, const char *name, ot_dtype t, int rank, const int64_t *dims, const void *data) {
    int v = ot_graph_value(g, name);
    ot_value *val = &g->values[v];
    val->flags |= OT_V_INIT;
    val->dtype = t;
    val->init.dtype = t;
    val->init.shape = ot_shape_make(rank, dims);
    val->shape = val->init.shape;
    val->init.nbytes = (size_t)ot_numel(&val->init.shape) * ot_dtype_size(t);
    val->init.data = malloc(val->init.nbytes ? val->init.nbytes : 1);
    memcpy(val->init.data, data, val->init.nbytes);
}

/* A node; ins/outs are value names ("" for an omitted input). */
static ot_node *graph_node(ot_graph *g, const char *op, int n_in, const char *const *ins, int n_out, const char *const *outs) {
    ot_node *n = ot_graph_add_node(g);
    ck_assert_ptr_nonnull(n);
    n->name = ot_strdup(outs[0]);
    n->op_type = ot_strdup(op);
    n->domain = ot_strdup("");
    n->op = ot_op_lookup(op, "");
    ck_assert_int_ge(n->op, 0);
    n->n_in = n_in;
    n->n_out = n_out;
    n->in = malloc(sizeof(int) * (size_t)(n_in ? n_in : 1));
    n->out = malloc(sizeof(int) * (size_t)n_out);
    for (int k = 0; k < n_in; k++) n->in[k] = ins[k][0] ? ot_graph_value(g, ins[k]) : -1;
    for (int k = 0; k < n_out; k++) n->out[k] = ot_graph_value(g, outs[k]);
    return n;
}

static ot_attr *node_attr(ot_node *n, const char *name, ot_attr_type type) {
    n->attr = realloc(n->attr, sizeof(ot_attr) * (size_t)(n->n_attr + 1));
    ot_attr *a = &n->attr[n->n_attr++];
    memset(a, 0, sizeof *a);
    a->name = ot_strdup(name);
    a->type = type;
    return a;
}

static void attr_ints(ot_node *n, const char *name, int64_t count, const int64_t *v) {
    ot_attr *a = node_attr(n, name, OT_ATTR_INTS);
    a->n = count;
    a->ints = malloc(sizeof(int64_t) * (size_t)count);
    memcpy(a->ints, v, sizeof(int64_t) * (size_t)count);
}

static void attr_int(ot_node *n, const char *name, int64_t v) { node_attr(n, name, OT_ATTR_INT)->i = v; }

static void attr_str(ot_node *n, const char *name, const char *v) { node_attr(n, name, OT_ATTR_STRING)->s = ot_strdup(v); }

static void finalize(ot_graph *g) {
    ot_error e;
    ck_assert_msg(ot_graph_finalize(g, &e) == OT_OK, "%s", e.msg);
}

/* ---- random broadcasting binary ops ---- */

static const char *const BIN_OPS[] = {"Add", "Sub", "Mul", "Div", "Pow"};

/* Reference gradients of out = op(a, b) with numpy broadcasting, in double:
 * ga/gb get the sums, aa/ab the sums of |terms| (for the tolerance). */
static void bin_reference(int op, const ot_shape *sa, const float *a, const ot_shape *sb, const float *b, const ot_shape *so,
                          const float *r, double *ga, double *gb, double *aa, double *ab) {
    int R = so->rank;
    int64_t n = ot_numel(so), idx[OT_MAX_RANK] = {0};
    for (int64_t o = 0; o < n; o++) {
        int64_t ia = 0, ib = 0;
        for (int d = 0; d < R; d++) {
            int da = d - (R - sa->rank), db = d - (R - sb->rank);
            if (da >= 0) ia = ia * sa->d[da] + (sa->d[da] == 1 ? 0 : idx[d]);
            if (db >= 0) ib = ib * sb->d[db] + (sb->d[db] == 1 ? 0 : idx[d]);
        }
        double g = r[o], x = a[ia], y = b[ib], dx, dy;
        switch (op) {
        case 0: dx = g; dy = g; break;
        case 1: dx = g; dy = -g; break;
        case 2: dx = g * y; dy = g * x; break;
        case 3: dx = g / y; dy = -g * x / (y * y); break;
        default: dx = g * y * pow(x, y - 1); dy = g * pow(x, y) * log(x); break;
        }
        ga[ia] += dx; gb[ib] += dy;
        aa[ia] += fabs(dx); ab[ib] += fabs(dy);
        for (int d = R - 1; d >= 0 && ++idx[d] == so->d[d]; d--) idx[d] = 0;
    }
}

/* One random binary case: exact reference (all sizes) and, for small ones,
 * finite differences through check_graph. */
static int bin_case(int op, const ot_shape *sa, const ot_shape *sb, int id, bool fd) {
    char name[64];
    snprintf(name, sizeof name, "%s_random%d", op == 0 ? "add" : op == 1 ? "sub" : op == 2 ? "mul" : op == 3 ? "div" : "pow", id);
    ot_graph *g = graph_new(13);
    graph_input(g, "a");
    graph_input(g, "b");
    const char *ins[2] = {"a", "b"}, *outs[1] = {"y"};
    graph_node(g, BIN_OPS[op], 2, ins, 1, outs);
    graph_output(g, "y");
    finalize(g);
    uint64_t s = seed_of(name);
    int64_t na = ot_numel(sa), nb = ot_numel(sb);
    float *in[2] = {malloc(sizeof(float) * (size_t)(na + 1)), malloc(sizeof(float) * (size_t)(nb + 1))};
    draw_separated(in[0], na, op == 4, &s);                 /* Pow: positive base */
    draw_separated(in[1], nb, op == 3 && id % 2 == 0, &s);  /* Div: divisors of both signs, |b| >= 0.5 */
    ot_shape shapes[2] = {*sa, *sb}, so;
    ck_assert(ot_shape_broadcast(sa, sb, &so));
    int bad = 0;

    /* exact reference */
    ot_error e;
    ot_autograd *a;
    ck_assert_msg(ot_autograd_create(g, shapes, NULL, true, &a, &e) == OT_OK, "%s: %s", name, e.msg);
    int64_t no = ot_numel(&so);
    float *r = malloc(sizeof(float) * (size_t)(no + 1));
    draw_uniform(r, no, -1, 1, &s);
    ck_assert_msg(ot_autograd_forward(a, (const float *const *)in, &e) == OT_OK, "%s", e.msg);
    memcpy(ot_autograd_output_grad(a, 0), r, sizeof(float) * (size_t)no);
    ck_assert_msg(ot_autograd_backward(a, &e) == OT_OK, "%s", e.msg);
    double *ref[2] = {calloc((size_t)na + 1, sizeof(double)), calloc((size_t)nb + 1, sizeof(double))};
    double *mag[2] = {calloc((size_t)na + 1, sizeof(double)), calloc((size_t)nb + 1, sizeof(double))};
    bin_reference(op, sa, in[0], sb, in[1], &so, r, ref[0], ref[1], mag[0], mag[1]);
    for (int side = 0; side < 2; side++) {
        const float *gx = ot_autograd_grad(a, g->inputs[side]);
        int64_t n = side ? nb : na;
        ck_assert_ptr_nonnull(gx);
        for (int64_t i = 0; i < n; i++) {
            /* float32 terms summed in double: a few ulps of the sum of |terms| */
            double tol = 1e-5 * mag[side][i] + 1e-30;
            if (!(fabs(gx[i] - ref[side][i]) <= tol)) {
                char b1[160], b2[160];
                fprintf(stderr, "%s %s %s: grad %s[%lld] = %.8g, reference %.8g\n", name, ot_shape_str(sa, b1, sizeof b1),
                        ot_shape_str(sb, b2, sizeof b2), side ? "b" : "a", (long long)i, gx[i], ref[side][i]);
                bad++;
                break;
            }
        }
    }
    ot_autograd_destroy(a);
    if (fd && !bad) bad += check_graph(name, g, shapes, in, family(name));
    free(r); free(ref[0]); free(ref[1]); free(mag[0]); free(mag[1]); free(in[0]); free(in[1]);
    ot_graph_destroy(g);
    return bad;
}

/* A random shape pair broadcasting to a random output of rank <= 5. */
static void random_bcast(uint64_t *s, int64_t maxdim, ot_shape *sa, ot_shape *sb) {
    int r = (int)(runif(s) * 6);   /* 0..5 */
    int64_t d[OT_MAX_RANK];
    for (int i = 0; i < r; i++) d[i] = 1 + (int64_t)(runif(s) * (double)maxdim);
    ot_shape *ops[2] = {sa, sb};
    int full = (int)(runif(s) * 3);   /* 0: a full, 1: b full, 2: neither forced */
    for (int k = 0; k < 2; k++) {
        int rk = k == full ? r : (int)(runif(s) * (r + 1));
        ops[k]->rank = rk;
        for (int i = 0; i < rk; i++) {
            int64_t od = d[r - rk + i];
            ops[k]->d[i] = k == full || runif(s) < 0.6 ? od : 1;
        }
    }
}

START_TEST(random_broadcast_binary_ops) {
    uint64_t s = 12345;
    int bad = 0, id = 0;
    for (int op = 0; op < 5; op++)
        for (int k = 0; k < 24; k++) {
            ot_shape sa, sb;
            random_bcast(&s, 4, &sa, &sb);
            bad += bin_case(op, &sa, &sb, id++, true) != 0;
        }
    /* large: the chunked and multi-threaded paths (exact reference only) */
    static const struct { int ra; int64_t a[4]; int rb; int64_t b[4]; } big[] = {
        {4, {2, 64, 24, 24}, 4, {2, 64, 24, 24}},   /* same shape */
        {4, {2, 64, 24, 24}, 3, {64, 1, 1}},        /* per channel */
        {4, {2, 64, 24, 24}, 0, {0}},               /* scalar: chunked partial sums */
        {4, {2, 64, 24, 24}, 2, {24, 24}},          /* innermost kept, large reduction */
        {4, {2, 3, 1, 2000}, 4, {2, 1, 40, 1}},     /* both broadcast, long rows */
        {3, {3, 5, 3000}, 1, {3000}},               /* rows longer than a chunk */
    };
    for (size_t k = 0; k < sizeof big / sizeof big[0]; k++)
        for (int op = 0; op < 5; op++)
            for (int swap = 0; swap < 2; swap++) {
                ot_shape sa = ot_shape_make(big[k].ra, big[k].a), sb = ot_shape_make(big[k].rb, big[k].b);
                bad += bin_case(op, swap ? &sb : &sa, swap ? &sa : &sb, id++, false) != 0;
            }
    print_families("random broadcasting binary ops (exact reference, and finite differences on the small ones)");
    ck_assert_int_eq(bad, 0);
}
END_TEST

/* ---- large graphs: multi-threaded paths, checked by the adjoint identity ----
 * Each graph here is positively homogeneous of degree 1 in its input x (linear
 * or piecewise linear: MaxPool, copies, Add of x with itself...), so by
 * Euler's theorem f(x) = sum(out * r) equals <x, grad f(x)> exactly; a lost or
 * misplaced update (a race, a wrong index) breaks it. Both sides are sums of
 * float32 products in double: tolerance 1e-5 of sum |x * grad|. Linear graphs
 * also get a directional check with a random direction v and step 1 (exact for
 * a linear f). */
static int homogeneous_case(const char *name, ot_graph *g, const ot_shape *xs, bool linear) {
    ot_error e;
    ot_autograd *a;
    ck_assert_msg(ot_autograd_create(g, xs, NULL, true, &a, &e) == OT_OK, "%s: %s", name, e.msg);
    uint64_t s = seed_of(name);
    int64_t nx = ot_numel(xs), ny = ot_numel(&a->p->shape[g->outputs[0]]);
    float *x = malloc(sizeof(float) * (size_t)nx), *r = malloc(sizeof(float) * (size_t)ny);
    float *gx = malloc(sizeof(float) * (size_t)nx);
    draw_uniform(x, nx, -1, 1, &s);
    draw_uniform(r, ny, -1, 1, &s);
    const float *in[1] = {x};
    ck_assert(ot_autograd_forward(a, in, &e) == OT_OK);
    const float *y = ot_autograd_data(a, g->outputs[0]);
    double f = 0, fa = 0;
    for (int64_t i = 0; i < ny; i++) { f += (double)y[i] * r[i]; fa += fabs((double)y[i] * r[i]); }
    memcpy(ot_autograd_output_grad(a, 0), r, sizeof(float) * (size_t)ny);
    ck_assert(ot_autograd_backward(a, &e) == OT_OK);
    memcpy(gx, ot_autograd_grad(a, g->inputs[0]), sizeof(float) * (size_t)nx);
    double dot = 0, da = 0;
    for (int64_t i = 0; i < nx; i++) { dot += (double)x[i] * gx[i]; da += fabs((double)x[i] * gx[i]); }
    int bad = 0;
    if (!(fabs(dot - f) <= 1e-5 * fmax(fa, da))) {
        fprintf(stderr, "%s: <x, grad> = %.10g but f = %.10g\n", name, dot, f);
        bad++;
    }
    printf("  %-28s f = %13.6f  <x, grad> - f = %10.3g (tolerance %.3g)\n", name, f, dot - f, 1e-5 * fmax(fa, da));
    fflush(stdout);
    if (linear) {
        float *v = malloc(sizeof(float) * (size_t)nx);
        draw_uniform(v, nx, -1, 1, &s);
        double fp = 0, fm = 0, vg = 0, va = 0;
        for (int sign = 1; sign >= -1; sign -= 2) {
            float *xv = malloc(sizeof(float) * (size_t)nx);
            for (int64_t i = 0; i < nx; i++) xv[i] = x[i] + (float)sign * v[i];
            const float *in2[1] = {xv};
            ck_assert(ot_autograd_forward(a, in2, &e) == OT_OK);
            y = ot_autograd_data(a, g->outputs[0]);
            double acc = 0;
            for (int64_t i = 0; i < ny; i++) acc += (double)y[i] * r[i];
            if (sign > 0) fp = acc; else fm = acc;
            free(xv);
        }
        for (int64_t i = 0; i < nx; i++) { vg += (double)v[i] * gx[i]; va += fabs((double)v[i] * gx[i]); }
        if (!(fabs((fp - fm) / 2 - vg) <= 1e-5 * (va + fa))) {
            fprintf(stderr, "%s: directional derivative %.10g, <v, grad> %.10g\n", name, (fp - fm) / 2, vg);
            bad++;
        }
        free(v);
    }
    free(x); free(r); free(gx);
    ot_autograd_destroy(a);
    ot_graph_destroy(g);
    return bad;
}

START_TEST(large_graphs_adjoint_identity) {
    int bad = 0;
    printf("large graphs (2 threads): Euler / adjoint identity\n");
    int64_t dx[4] = {2, 16, 40, 40};
    ot_shape xs = ot_shape_make(4, dx);
    {   /* SPPF: x, three chained k5 s1 p2 pools, concatenated */
        ot_graph *g = graph_new(12);
        graph_input(g, "x");
        const char *names[4] = {"x", "p1", "p2", "p3"};
        for (int k = 1; k < 4; k++) {
            const char *i1[1] = {names[k - 1]}, *o1[1] = {names[k]};
            ot_node *n = graph_node(g, "MaxPool", 1, i1, 1, o1);
            attr_ints(n, "kernel_shape", 2, (int64_t[]){5, 5});
            attr_ints(n, "strides", 2, (int64_t[]){1, 1});
            attr_ints(n, "pads", 4, (int64_t[]){2, 2, 2, 2});
        }
        const char *o[1] = {"y"};
        attr_int(graph_node(g, "Concat", 4, names, 1, o), "axis", 1);
        graph_output(g, "y");
        finalize(g);
        bad += homogeneous_case("sppf_maxpool_concat", g, &xs, false);
    }
    {   /* MaxPool k3 s2 p1 ceil, then 2x nearest Resize (integer factor path) */
        ot_graph *g = graph_new(12);
        graph_input(g, "x");
        const char *i1[1] = {"x"}, *o1[1] = {"p"};
        ot_node *n = graph_node(g, "MaxPool", 1, i1, 1, o1);
        attr_ints(n, "kernel_shape", 2, (int64_t[]){3, 3});
        attr_ints(n, "strides", 2, (int64_t[]){2, 2});
        attr_ints(n, "pads", 4, (int64_t[]){1, 1, 1, 1});
        attr_int(n, "ceil_mode", 1);
        float sc[4] = {1, 1, 2, 2};
        graph_init(g, "scales", OT_F32, 1, (int64_t[]){4}, sc);
        const char *i2[3] = {"p", "", "scales"}, *o2[1] = {"y"};
        n = graph_node(g, "Resize", 3, i2, 1, o2);
        attr_str(n, "mode", "nearest");
        attr_str(n, "coordinate_transformation_mode", "asymmetric");
        attr_str(n, "nearest_mode", "floor");
        graph_output(g, "y");
        finalize(g);
        bad += homogeneous_case("maxpool_ceil_resize2x", g, &xs, false);
    }
    {   /* Resize by sizes, half_pixel (tabulated map), then 3x2 and a downscale */
        ot_graph *g = graph_new(13);
        graph_input(g, "x");
        int64_t sz[4] = {2, 16, 57, 61};
        graph_init(g, "sizes", OT_I64, 1, (int64_t[]){4}, sz);
        const char *i1[4] = {"x", "", "", "sizes"}, *o1[1] = {"r1"};
        attr_str(graph_node(g, "Resize", 4, i1, 1, o1), "mode", "nearest");
        float sc[4] = {1, 1, 0.6f, 0.7f};
        graph_init(g, "scales", OT_F32, 1, (int64_t[]){4}, sc);
        const char *i2[3] = {"r1", "", "scales"}, *o2[1] = {"y"};
        ot_node *n = graph_node(g, "Resize", 3, i2, 1, o2);
        attr_str(n, "mode", "nearest");
        attr_str(n, "coordinate_transformation_mode", "pytorch_half_pixel");
        attr_str(n, "nearest_mode", "round_prefer_ceil");
        graph_output(g, "y");
        finalize(g);
        bad += homogeneous_case("resize_sizes_then_down", g, &xs, true);
    }
    {   /* Transpose (tiled and generic), Split, Slice with negative steps, Concat, Reshape, Add */
        ot_graph *g = graph_new(13);
        graph_input(g, "x");
        const char *i1[1] = {"x"}, *o1[1] = {"t1"};
        attr_ints(graph_node(g, "Transpose", 1, i1, 1, o1), "perm", 4, (int64_t[]){0, 1, 3, 2});
        const char *i2[1] = {"t1"}, *o2[1] = {"t2"};
        attr_ints(graph_node(g, "Transpose", 1, i2, 1, o2), "perm", 4, (int64_t[]){2, 0, 3, 1});   /* (40,2,40,16) */
        graph_init(g, "split", OT_I64, 1, (int64_t[]){3}, (int64_t[]){10, 25, 5});
        const char *i3[2] = {"t2", "split"}, *o3[3] = {"s0", "s1", "s2"};
        attr_int(graph_node(g, "Split", 2, i3, 3, o3), "axis", 2);
        graph_init(g, "st", OT_I64, 1, (int64_t[]){2}, (int64_t[]){-1, 14});
        graph_init(g, "en", OT_I64, 1, (int64_t[]){2}, (int64_t[]){INT64_MIN, 1});
        graph_init(g, "ax", OT_I64, 1, (int64_t[]){2}, (int64_t[]){0, 3});
        graph_init(g, "sp", OT_I64, 1, (int64_t[]){2}, (int64_t[]){-1, -2});
        const char *i4[5] = {"s1", "st", "en", "ax", "sp"}, *o4[1] = {"sl"};   /* (40,2,25,7) */
        graph_node(g, "Slice", 5, i4, 1, o4);
        graph_init(g, "shape", OT_I64, 1, (int64_t[]){2}, (int64_t[]){80, -1});
        const char *i5[2] = {"sl", "shape"}, *o5[1] = {"f1"};
        graph_node(g, "Reshape", 2, i5, 1, o5);
        const char *i6[2] = {"s0", "shape"}, *o6[1] = {"f0"};
        graph_node(g, "Reshape", 2, i6, 1, o6);
        const char *i7[3] = {"f0", "f1", "f0"}, *o7[1] = {"c"};   /* s0 twice; s2 unused */
        attr_int(graph_node(g, "Concat", 3, i7, 1, o7), "axis", 1);
        const char *i8[2] = {"c", "c"}, *o8[1] = {"y"};
        graph_node(g, "Add", 2, i8, 1, o8);
        graph_output(g, "y");
        finalize(g);
        bad += homogeneous_case("transpose_split_slice_concat", g, &xs, true);
    }
    ck_assert_int_eq(bad, 0);
}
END_TEST

/* ---- MaxPool ties: not differentiable, so checked directly ----
 * The gradient of each window goes to its first maximum in scan order (rows,
 * then columns), as PyTorch's CPU max_pool2d; padded positions never get any,
 * even when every in-image value is below zero. Expected values from a plain
 * loop here. */
static void maxpool_tie_case(const char *name, int64_t H, int64_t W, const float *plane, int64_t k, int64_t st, int64_t pad,
                             int *bad) {
    ot_graph *g = graph_new(12);
    graph_input(g, "x");
    const char *i1[1] = {"x"}, *o1[1] = {"y"};
    ot_node *n = graph_node(g, "MaxPool", 1, i1, 1, o1);
    attr_ints(n, "kernel_shape", 2, (int64_t[]){k, k});
    attr_ints(n, "strides", 2, (int64_t[]){st, st});
    attr_ints(n, "pads", 4, (int64_t[]){pad, pad, pad, pad});
    graph_output(g, "y");
    finalize(g);
    ot_shape xs = ot_shape_make(4, (int64_t[]){1, 1, H, W});
    ot_error e;
    ot_autograd *a;
    ck_assert_msg(ot_autograd_create(g, &xs, NULL, true, &a, &e) == OT_OK, "%s", e.msg);
    const ot_shape *ys = &a->p->shape[g->outputs[0]];
    int64_t OH = ys->d[2], OW = ys->d[3];
    float *r = malloc(sizeof(float) * (size_t)(OH * OW));
    double *want = calloc((size_t)(H * W), sizeof(double));
    for (int64_t i = 0; i < OH * OW; i++) r[i] = (float)(i + 1);
    for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
            int64_t best = -1;
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++) {
                    int64_t h = oh * st - pad + i, w = ow * st - pad + j;
                    if (h < 0 || h >= H || w < 0 || w >= W) continue;
                    if (best < 0 || plane[h * W + w] > plane[best]) best = h * W + w;
                }
            want[best] += r[oh * OW + ow];
        }
    const float *in[1] = {plane};
    ck_assert(ot_autograd_forward(a, in, &e) == OT_OK);
    memcpy(ot_autograd_output_grad(a, 0), r, sizeof(float) * (size_t)(OH * OW));
    ck_assert(ot_autograd_backward(a, &e) == OT_OK);
    const float *gx = ot_autograd_grad(a, g->inputs[0]);
    for (int64_t i = 0; i < H * W; i++)
        if (gx[i] != (float)want[i]) {
            fprintf(stderr, "%s: grad[%lld] = %g, expected %g\n", name, (long long)i, gx[i], want[i]);
            (*bad)++;
            break;
        }
    free(r); free(want);
    ot_autograd_destroy(a);
    ot_graph_destroy(g);
}

START_TEST(maxpool_ties_first_in_scan_order) {
    int bad = 0;
    float flat[7 * 6], neg[7 * 6], steps[7 * 6];
    for (int i = 0; i < 42; i++) {
        flat[i] = 1.0f;
        neg[i] = -2.0f - (float)((i * 7) % 3);   /* all below the zero a padded tap would be; ties */
        steps[i] = (float)((i / 6) / 2 + (i % 6) / 3);   /* plateaus */
    }
    maxpool_tie_case("ties_flat_k2s1", 7, 6, flat, 2, 1, 0, &bad);
    maxpool_tie_case("ties_flat_k3s2p1", 7, 6, flat, 3, 2, 1, &bad);
    maxpool_tie_case("ties_negative_k5s1p2", 7, 6, neg, 5, 1, 2, &bad);
    maxpool_tie_case("ties_plateaus_k3s1p1", 7, 6, steps, 3, 1, 1, &bad);
    ck_assert_int_eq(bad, 0);
}
END_TEST

int main(void) {
    ot_set_quiet(true);
    Suite *s = suite_create("grad_ops");
    TCase *t = tcase_create("grad_ops");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, fixture_ops_match_finite_differences);
    tcase_add_test(t, random_broadcast_binary_ops);
    tcase_add_test(t, large_graphs_adjoint_identity);
    tcase_add_test(t, maxpool_ties_first_in_scan_order);
    suite_add_tcase(s, t);
    return tu_main(s);
}
