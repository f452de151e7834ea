/* schedule.c: train.py's LR/momentum schedule and warmup (train/schedule.h).
 * np.interp and numpy's round-half-to-even (rint) as train.py uses them. */
#include "schedule.h"
#include <math.h>

static double interp(double x, double x0, double x1, double y0, double y1) {
    if (x <= x0) return y0;
    if (x >= x1) return y1;
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

void ot_schedule_init(ot_schedule *s, const ot_hyp *hyp, int epochs, int nb, int batch, bool cos_lr) {
    s->lr0 = hyp->lr0;
    s->lrf = hyp->lrf;
    s->momentum = hyp->momentum;
    s->warmup_momentum = hyp->warmup_momentum;
    s->warmup_bias_lr = hyp->warmup_bias_lr;
    s->warmup_epochs = hyp->warmup_epochs;
    s->epochs = epochs;
    s->nb = nb;
    s->batch = batch;
    s->nbs = 64;
    s->cos_lr = cos_lr;
    long w = (long)rint(hyp->warmup_epochs * nb); /* Python round(): half to even */
    s->nw = w > 100 ? w : 100;
    int acc = (int)rint((double)s->nbs / batch);
    s->accumulate = acc > 1 ? acc : 1;
}

double ot_schedule_weight_decay(const ot_schedule *s, const ot_hyp *hyp) {
    return hyp->weight_decay * s->batch * s->accumulate / s->nbs;
}

double ot_schedule_lf(const ot_schedule *s, double x) {
    if (s->cos_lr) return ((1 - cos(x * M_PI / s->epochs)) / 2) * (s->lrf - 1) + 1;
    return (1 - x / s->epochs) * (1.0 - s->lrf) + s->lrf;
}

void ot_schedule_epoch(const ot_schedule *s, ot_optimizer *o, int epoch) {
    for (int k = 0; k < OT_NGROUPS; k++) o->lr[k] = o->initial_lr[k] * ot_schedule_lf(s, epoch);
}

int ot_schedule_iteration(const ot_schedule *s, ot_optimizer *o, long ni, int epoch) {
    if (ni > s->nw) return s->accumulate;
    double x0 = 0, x1 = (double)s->nw;
    double acc = rint(interp((double)ni, x0, x1, 1, (double)s->nbs / s->batch));
    for (int k = 0; k < OT_NGROUPS; k++) {
        o->lr[k] = interp((double)ni, x0, x1, k == OT_GROUP_BIAS ? s->warmup_bias_lr : 0.0,
                          o->initial_lr[k] * ot_schedule_lf(s, epoch));
        if (o->kind == OT_OPT_SGD) o->momentum[k] = interp((double)ni, x0, x1, s->warmup_momentum, s->momentum);
    }
    return acc > 1 ? (int)acc : 1;
}
