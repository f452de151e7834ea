/* step.c: forward, YOLOv5 loss and backward of one batch (train/step.h). */
#include "step.h"

void ot_step_destroy(ot_step *s) {
    if (!s) return;
    ot_autograd_destroy(s->ag);
    ot_yolo_loss_destroy(s->loss);
    ot_graph_destroy(s->graph);
    free(s);
}

ot_status ot_step_create(const ot_model *m, const ot_prepare_opts *opts, const ot_hyp *hyp, ot_shape in_shape, int imgsz,
                         ot_step **out, ot_error *err) {
    return ot_step_create_on(NULL, m, opts, hyp, in_shape, imgsz, out, err);
}

ot_status ot_step_create_on(ot_backend *be, const ot_model *m, const ot_prepare_opts *opts, const ot_hyp *hyp, ot_shape in_shape,
                            int imgsz, ot_step **out, ot_error *err) {
    *out = NULL;
    be = be ? be : ot_backend_cpu();
    ot_step *s = calloc(1, sizeof *s);
    if (!s) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    s->in_shape = in_shape;
    ot_status st = ot_prepare_training_graph(m, opts, &s->graph, err);
    if (!st) st = ot_autograd_create_on(be, s->graph, &in_shape, NULL, false, &s->ag, err);
    if (!st && !(s->loss = ot_yolo_loss_create_on(be))) st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
    if (st) { ot_step_destroy(s); return st; }
    ot_yolo_loss_cfg_init(&s->cfg, &s->graph->head, hyp, imgsz);
    *out = s;
    return OT_OK;
}

ot_status ot_step_run(ot_step *s, const float *images, const float *targets, int nt, bool backward, ot_loss_items *items,
                      ot_error *err) {
    ot_plan *p = s->ag->p;
    const ot_graph *g = s->graph;
    OT_TRY(ot_autograd_forward(s->ag, &images, err));
    const float *outs[OT_MAX_HEADS];
    float *douts[OT_MAX_HEADS];
    ot_shape shapes[OT_MAX_HEADS];
    for (int l = 0; l < g->n_outputs; l++) {
        outs[l] = p->data[g->outputs[l]];
        shapes[l] = p->shape[g->outputs[l]];
        douts[l] = backward ? ot_autograd_output_grad(s->ag, l) : NULL;
    }
    OT_TRY(ot_yolo_loss_compute(s->loss, &s->cfg, outs, shapes, targets, nt, backward ? douts : NULL, items, err));
    if (backward) OT_TRY(ot_autograd_backward(s->ag, err));
    return OT_OK;
}
