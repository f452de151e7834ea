/* schedule.h: learning rate, momentum and accumulation as Ultralytics train.py
 * v7.0 sets them: LambdaLR with the linear (lrf) or cosine (one_cycle)
 * factor per epoch, warmup over max(warmup_epochs * nb, 100) iterations
 * (bias lr from warmup_bias_lr down, other lrs from 0 up, momentum from
 * warmup_momentum up), nominal batch 64 by gradient accumulation. */
#ifndef OT_SCHEDULE_H
#define OT_SCHEDULE_H

#include "hyp.h"
#include "optim.h"

typedef struct ot_schedule {
    double lr0, lrf, momentum, warmup_momentum, warmup_bias_lr, warmup_epochs;
    int epochs, nb, batch, nbs;  /* nb: batches per epoch; nbs: nominal batch (64) */
    bool cos_lr;
    long nw;                     /* warmup iterations */
    int accumulate;              /* after warmup: max(round(nbs / batch), 1) */
} ot_schedule;

void ot_schedule_init(ot_schedule *s, const ot_hyp *hyp, int epochs, int nb, int batch, bool cos_lr);
/* The weight decay train.py uses: hyp weight_decay * batch * accumulate / nbs. */
double ot_schedule_weight_decay(const ot_schedule *s, const ot_hyp *hyp);
double ot_schedule_lf(const ot_schedule *s, double epoch);
/* Start of an epoch (scheduler.step()): every group's lr = initial_lr * lf(epoch). */
void ot_schedule_epoch(const ot_schedule *s, ot_optimizer *o, int epoch);
/* Before iteration ni (= i + nb * epoch): warmup interpolation when ni <= nw;
 * returns the accumulation count in force. */
int ot_schedule_iteration(const ot_schedule *s, ot_optimizer *o, long ni, int epoch);

#endif
