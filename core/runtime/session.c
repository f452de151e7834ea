/* session.c: the public ot_session API over a plan (core/plan.h). */
#include "../plan.h"
#include <string.h>

struct ot_session {
    ot_plan *plan;
    const float **in;
};

ot_status ot_session_create(const ot_model *m, const ot_shape *shapes, ot_session **out, ot_error *err) {
    *out = NULL;
    ot_session *s = calloc(1, sizeof *s);
    if (!s) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    s->in = calloc((size_t)m->n_inputs, sizeof *s->in);
    ot_status st = s->in ? ot_plan_create(m, shapes, &s->plan, err) : ot_fail(err, OT_ERR_NOMEM, "out of memory");
    if (st) { ot_session_destroy(s); return st; }
    *out = s;
    return OT_OK;
}

void ot_session_destroy(ot_session *s) {
    if (!s) return;
    ot_plan_destroy(s->plan);
    free(s->in);
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
        s->in[i] = inputs[i].data;
    }
    OT_TRY(ot_plan_run(p, s->in, err));
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->outputs[k];
        outputs[k].dtype = p->dtype[v];
        outputs[k].shape = p->shape[v];
        outputs[k].data = p->data[v];
    }
    return OT_OK;
}
