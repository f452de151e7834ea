/* test_train_steps.c: optimizer steps on one fixed batch against PyTorch
 * running Ultralytics v7.0's own optimizer code (smart_optimizer's three
 * groups, SGD Nesterov or AdamW, train.py's warmup, accumulation, gradient
 * clipping at 10 and LambdaLR schedule, ModelEMA), from
 * tests/fixtures/train_steps (tools/ref/make_train_steps_fixtures.py).
 *
 * The loss sequence must match within 1e-4 relative (issue 3). With
 * hyp.scratch-low.yaml's warmup (bias lr 0.1) a fixed-batch run is chaotic:
 * PyTorch itself, with and without its mkldnn convolutions, drifts apart by
 * ~1e-3 after about 12 steps. Each fixture therefore carries that second
 * PyTorch run ("alt_loss"), and an iteration's tolerance is
 * max(1e-4, 2 x |alt - ref| / |ref|): where PyTorch reproduces itself we must
 * match to 1e-4; beyond, we must stay within twice PyTorch's own spread.
 * While the reference reproduces itself to 1e-5 we also check the loss items
 * (1e-4), the gradient norm before clipping (1e-3: a norm of millions of
 * float32 sums drifts faster than the loss), the group learning rates
 * and momenta (1e-9) and the norms of parameters, BN statistics and their EMA
 * (1e-5). The *_gentle cases (10x smaller learning rates) stay reproducible:
 * all their 20 steps must pass the strict checks. */
#include "testutil.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "train/step.h"
#include "train/targets.h"
#include <jansson.h>
#include <math.h>
#include <string.h>

static void rel_check(const char *what, int at, double ours, double ref, double tol, double *worst) {
    double e = fabs(ours - ref) / fmax(fabs(ref), 1e-12);
    if (ref == 0 && fabs(ours) < 1e-12) e = 0;
    if (e > *worst) *worst = e;
    ck_assert_msg(e <= tol, "%s at %d: %.9g vs PyTorch %.9g (rel %.3g > %.1g)", what, at, ours, ref, e, tol);
}

/* norms over parameters and BN buffers, as the fixture's checksums */
static void norms(const ot_autograd *a, const float *slab, double *param, double *all) {
    double p2 = 0, a2 = 0;
    for (int i = 0; i < a->n_vars; i++) {
        int v = a->var_vid[i];
        const float *d = slab + a->var_off[i];
        int64_t n = ot_numel(&a->p->shape[v]);
        double s = 0;
        for (int64_t j = 0; j < n; j++) s += (double)d[j] * d[j];
        if (a->kind[v] == OT_VAR_PARAM) p2 += s;
        a2 += s;
    }
    *param = sqrt(p2);
    *all = sqrt(a2);
}

static void set_hyp(ot_hyp *h, json_t *given) {
    ot_hyp_default(h);
    for (int i = 0; i < ot_hyp_count(); i++) ck_assert_ptr_nonnull(ot_hyp_name(i));
    h->lr0 = tu_jnum(given, "lr0");
    h->lrf = tu_jnum(given, "lrf");
    h->momentum = tu_jnum(given, "momentum");
    h->weight_decay = tu_jnum(given, "weight_decay");
    h->warmup_epochs = tu_jnum(given, "warmup_epochs");
    h->warmup_momentum = tu_jnum(given, "warmup_momentum");
    h->warmup_bias_lr = tu_jnum(given, "warmup_bias_lr");
    h->box = tu_jnum(given, "box");
    h->cls = tu_jnum(given, "cls");
    h->obj = tu_jnum(given, "obj");
    h->cls_pw = tu_jnum(given, "cls_pw");
    h->obj_pw = tu_jnum(given, "obj_pw");
    h->anchor_t = tu_jnum(given, "anchor_t");
    h->fl_gamma = tu_jnum(given, "fl_gamma");
}

static void run_case(const char *sh, const char *name) {
    char path[4096];
    ot_error e;
    tu_refcase rc;
    tu_refcase_load(&rc, sh, "train_steps", name);
    json_t *ref = rc.ref;
    ot_model *m = rc.model;
    ot_shape s = rc.shape;
    float *x = rc.x;
    ot_hyp hyp;
    set_hyp(&hyp, json_object_get(ref, "hyp_given"));
    float *t;
    int nt;
    snprintf(path, sizeof path, "%s/train_steps/%s", OT_FIXTURES, json_string_value(json_object_get(ref, "targets")));
    ck_assert_msg(ot_targets_read(path, (int)s.d[0], 80, &t, &nt, &e) == OT_OK, "%s", e.msg);
    ot_step *st;
    ck_assert_msg(ot_step_create(m, NULL, &hyp, s, (int)tu_jnum(ref, "img"), &st, &e) == OT_OK, "%s", e.msg);
    const char *opt = json_string_value(json_object_get(ref, "optimizer"));
    ot_opt_kind kind = strcmp(opt, "SGD") == 0 ? OT_OPT_SGD : strcmp(opt, "Adam") == 0 ? OT_OPT_ADAM : OT_OPT_ADAMW;
    ot_schedule sch;
    ot_schedule_init(&sch, &hyp, (int)tu_jnum(ref, "epochs"), (int)tu_jnum(ref, "nb"), (int)s.d[0],
                     json_is_true(json_object_get(ref, "cos_lr")));
    ck_assert_int_eq(sch.nw, (long)tu_jnum(ref, "nw"));
    ot_optimizer *o;
    ck_assert_int_eq(ot_optimizer_create(st->ag, kind, hyp.lr0, hyp.momentum, ot_schedule_weight_decay(&sch, &hyp), &o, &e), OT_OK);
    ot_ema *ema;
    ck_assert_int_eq(ot_ema_create(st->ag, &ema, &e), OT_OK);
    json_t *iters = json_object_get(ref, "iters"), *steps = json_object_get(ref, "steps");
    long ni = (long)tu_jnum(ref, "start_ni"), last_opt = -1;
    int start_epoch = (int)tu_jnum(ref, "start_epoch"), last_epoch = start_epoch - 1, k_step = 0;
    /* LambdaLR: lr = initial_lr * lf(0) at construction; +1 epoch at each epoch end */
    ot_schedule_epoch(&sch, o, start_epoch > 0 ? start_epoch - 1 : 0);
    double w_loss = 0, w_step = 0, w_norm = 0;
    json_t *alt = json_object_get(ref, "alt_loss");
    ck_assert_int_eq(json_array_size(alt), json_array_size(iters));
    int strict_steps = 0;
    bool strict = true;
    for (size_t it = 0; it < json_array_size(iters); it++, ni++) {
        json_t *ri = json_array_get(iters, it);
        int epoch = (int)(ni / sch.nb);
        if (ni % sch.nb == 0 || it == 0) {
            if (it > 0) { last_epoch++; ot_schedule_epoch(&sch, o, last_epoch); }
            ot_autograd_zero_grad(st->ag); /* train.py: optimizer.zero_grad() at each epoch start */
        }
        ck_assert_int_eq(epoch, (int)tu_jnum(ri, "epoch"));
        int acc = ot_schedule_iteration(&sch, o, ni, epoch);
        ck_assert_int_eq(acc, (int)tu_jnum(ri, "accumulate"));
        ot_loss_items li;
        ck_assert_msg(ot_step_run(st, x, t, nt, true, &li, &e) == OT_OK, "%s", e.msg);
        double rl = tu_jnum(ri, "loss"), noise = fabs(json_number_value(json_array_get(alt, it)) - rl) / fabs(rl);
        strict = strict && noise <= 1e-5; /* once PyTorch stops reproducing itself, later steps inherit it */
        if (getenv("OT_STEPS_VERBOSE")) fprintf(stderr, "it %ld %.9g ref %.9g noise %.2g\n", ni, li.loss, rl, noise);
        rel_check("loss", (int)ni, li.loss, rl, fmax(1e-4, 2 * noise), &w_loss);
        if (strict) {
            rel_check("lbox", (int)ni, li.lbox, tu_jnum(ri, "lbox"), 1e-4, &w_loss);
            rel_check("lobj", (int)ni, li.lobj, tu_jnum(ri, "lobj"), 1e-4, &w_loss);
            rel_check("lcls", (int)ni, li.lcls, tu_jnum(ri, "lcls"), 1e-4, &w_loss);
        }
        bool step = ni - last_opt >= acc;
        ck_assert_int_eq(step, json_is_true(json_object_get(ri, "step")));
        if (!step) continue;
        json_t *rs = json_array_get(steps, (size_t)k_step++);
        for (int g = 0; g < 3; g++) {
            rel_check("lr", (int)ni, o->lr[g], json_number_value(json_array_get(json_object_get(rs, "lr"), (size_t)g)), 1e-9, &w_step);
            rel_check("momentum", (int)ni, o->momentum[g],
                      json_number_value(json_array_get(json_object_get(rs, "momentum"), (size_t)g)), 1e-9, &w_step);
        }
        double coef, gn;
        ot_optimizer_clip_grad_norm(o, 10.0);
        ot_optimizer_grad_norm(o, &gn, &coef);
        if (strict) rel_check("grad_norm", (int)ni, gn, tu_jnum(rs, "grad_norm"), 1e-3, &w_step);
        ot_optimizer_step(o);
        ot_autograd_zero_grad(st->ag);
        ot_ema_update(ema, st->ag);
        last_opt = ni;
        if (!strict) continue;
        strict_steps++;
        double pn, an;
        norms(st->ag, st->ag->slab, &pn, &an);
        rel_check("param_norm", (int)ni, pn, tu_jnum(json_object_get(rs, "model"), "param_norm"), 1e-5, &w_norm);
        rel_check("all_norm", (int)ni, an, tu_jnum(json_object_get(rs, "model"), "all_norm"), 1e-5, &w_norm);
        norms(st->ag, ema->slab, &pn, &an);
        rel_check("ema param_norm", (int)ni, pn, tu_jnum(json_object_get(rs, "ema"), "param_norm"), 1e-5, &w_norm);
        rel_check("ema all_norm", (int)ni, an, tu_jnum(json_object_get(rs, "ema"), "all_norm"), 1e-5, &w_norm);
    }
    ck_assert_int_eq(k_step, (int)json_array_size(steps));
    printf("%-17s %3zu iterations, %2d %s steps (%2d while PyTorch reproduces itself): worst loss error %.3g, "
           "schedule %.3g, parameter/EMA norms %.3g\n", name, json_array_size(iters), k_step, opt, strict_steps, w_loss, w_step, w_norm);
    if (strstr(name, "gentle")) ck_assert_int_eq(strict_steps, k_step);
    ot_ema_destroy(ema);
    ot_optimizer_destroy(o);
    ot_step_destroy(st);
    free(t);
    tu_refcase_free(&rc);
}

START_TEST(steps_match_ultralytics) {
    const char *sh = tu_shared();
    if (!sh) return;
    FILE *f = fopen(OT_FIXTURES "/train_steps/cases.txt", "r");
    ck_assert(f != NULL);
    char name[256];
    int n = 0;
    while (fscanf(f, "%255s", name) == 1) {
        char path[4096];
        snprintf(path, sizeof path, "%s/train_steps/%s.json", OT_FIXTURES, name);
        if (!tu_exists(path)) continue;
        run_case(sh, name);
        n++;
    }
    fclose(f);
    ck_assert_int_ge(n, 2);
}
END_TEST

int main(void) {
    ot_set_quiet(true);
    Suite *s = suite_create("train_steps");
    TCase *t = tcase_create("train_steps");
    tcase_set_timeout(t, 1200);
    tcase_add_test(t, steps_match_ultralytics);
    suite_add_tcase(s, t);
    return tu_main(s);
}
