/* session.c: the public ot_session API over a plan (core/plan.h). */
#include "../plan.h"
#include <string.h>

struct ot_session {
    ot_plan *plan;
    void **out;            /* host copies of the outputs (the plan's memory is the backend's) */
};

ot_status ot_session_create(const ot_model *m, const ot_shape *shapes, ot_session **out, ot_error *err) {
    *out = NULL;
    ot_session *s = calloc(1, sizeof *s);
    if (!s) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    ot_status st = ot_plan_create(m, shapes, &s->plan, err);
    if (!st && !(s->out = calloc((size_t)(m->n_outputs ? m->n_outputs : 1), sizeof *s->out))) st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
    for (int k = 0; !st && k < m->n_outputs; k++) {
        int v = m->outputs[k];
        size_t b = (size_t)ot_numel(&s->plan->shape[v]) * ot_dtype_size(s->plan->dtype[v]);
        if (!(s->out[k] = malloc(b ? b : 1))) st = ot_fail(err, OT_ERR_NOMEM, "out of memory for output '%s'", m->values[v].name);
    }
    if (st) { ot_session_destroy(s); return st; }
    *out = s;
    return OT_OK;
}

void ot_session_destroy(ot_session *s) {
    if (!s) return;
    if (s->out && s->plan) for (int k = 0; k < s->plan->g->n_outputs; k++) free(s->out[k]);
    ot_plan_destroy(s->plan);
    free(s->out);
    free(s);
}

ot_status ot_session_run(ot_session *s, const ot_tensor *inputs, ot_tensor *outputs, ot_error *err) {
    ot_plan *p = s->plan;
    const ot_graph *g = p->g;
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        if (inputs[i].dtype != OT_F32 || !ot_shape_eq(&inputs[i].shape, &p->shape[v])) {
            char want[160], got[160];
            return ot_fail(err, OT_ERR_SHAPE, "%s: input '%s' expects float32 %s, got %s %s", g->path, g->values[v].name,
                           ot_shape_str(&p->shape[v], want, sizeof want), ot_dtype_name(inputs[i].dtype),
                           ot_shape_str(&inputs[i].shape, got, sizeof got));
        }
    }
    for (int i = 0; i < g->n_inputs; i++) ot_plan_set_input(p, i, inputs[i].data);
    OT_TRY(ot_plan_run(p, NULL, err));
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->outputs[k];
        outputs[k].dtype = p->dtype[v];
        outputs[k].shape = p->shape[v];
        ot_plan_download(p, v, s->out[k]);
        outputs[k].data = s->out[k];
    }
    return OT_OK;
}
