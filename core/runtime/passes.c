/* passes.c: planner passes (core/runtime/passes.h). */
#include "passes.h"
#include "../../kernels/elementwise.h"
#include "../../kernels/ops.h"
#include "../config.h"
#include <string.h>

static bool is_step(const ot_plan *p, int node) {
    for (int s = 0; s < p->n_steps; s++)
        if (p->steps[s] == node) return true;
    return false;
}

/* Uses of value v as a node input, over the whole graph. */
static int uses_of(const ot_graph *g, int v) {
    int uses = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) uses += g->nodes[i].in[k] == v;
    return uses;
}

ot_status ot_pass_fuse_silu(ot_plan *p, ot_error *err) {
    (void)err;
    if (!ot_config_get()->fuse_silu) return OT_OK;
    const ot_graph *g = p->g;
    const int mul = ot_op_lookup("Mul", ""), sigmoid = ot_op_lookup("Sigmoid", "");
    for (int ni = 0; ni < g->n_nodes; ni++) {
        const ot_node *n = &g->nodes[ni];
        if (n->op != mul || n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0 || n->in[0] == n->in[1] || !is_step(p, ni)) continue;
        if (p->dtype[n->in[0]] != OT_F32 || !ot_shape_eq(&p->shape[n->in[0]], &p->shape[n->in[1]])) continue;
        for (int side = 0; side < 2; side++) { /* side: the input slot of x */
            int x = n->in[side], sv = n->in[1 - side], pn = g->values[sv].producer;
            if (pn < 0 || g->nodes[pn].op != sigmoid || g->nodes[pn].n_in < 1 || g->nodes[pn].in[0] != x) continue;
            if (p->is_const[sv] || (g->values[sv].flags & OT_V_OUTPUT)) continue;
            if (uses_of(g, sv) != 1 || !is_step(p, pn)) continue;
            if (!ot_mul_fuse_silu(p->params[ni], 1 - side)) continue;
            ot_plan_unstep(p, pn);
            break;
        }
    }
    return OT_OK;
}

/* The ops ot_pass_half_act knows. */
typedef struct half_ops { int conv, bn, mul, concat, resize, upsample; } half_ops;

static bool stored_half(const ot_plan *p, int v) { return v >= 0 && (p->dtype[v] == OT_F16 || p->dtype[v] == OT_BF16); }

/* True when every reader of v (at least one) takes it in half precision without a change in any result: a Conv
 * (as x: it rounds its input to half anyway), a Concat or a nearest Resize / Upsample (as x) whose output is
 * already decided half (they copy), and, with bn (v is a convolution's output, which the convolution rounded),
 * a BatchNormalization (as x). Readers are later steps, decided before v when the nodes are walked backwards. */
static bool readers_take_half(const ot_plan *p, const half_ops *o, int v, bool bn) {
    const ot_graph *g = p->g;
    int uses = 0;
    for (int j = 0; j < g->n_nodes; j++) {
        const ot_node *r = &g->nodes[j];
        for (int k = 0; k < r->n_in; k++) {
            if (r->in[k] != v) continue;
            if (!is_step(p, j)) return false;
            const bool copies = r->op == o->concat || (k == 0 && (r->op == o->resize || r->op == o->upsample));
            if (!((k == 0 && r->op == o->conv) || (bn && k == 0 && r->op == o->bn) || (copies && r->n_out > 0 && stored_half(p, r->out[0]))))
                return false;
            uses++;
        }
    }
    return uses > 0;
}

ot_status ot_pass_half_act(ot_plan *p, ot_error *err) {
    (void)err;
    const ot_config *cf = ot_config_get();
    if (!(p->flags & OT_PLAN_TRAIN) || !p->be || p->be->kind != OT_DEV_CUDA || !cf->amp || !cf->half_act) return OT_OK;
    const ot_graph *g = p->g;
    const half_ops o = {ot_op_lookup("Conv", ""), ot_op_lookup("BatchNormalization", ""), ot_op_lookup("Mul", ""),
                        ot_op_lookup("Concat", ""), ot_op_lookup("Resize", ""), ot_op_lookup("Upsample", "")};
    const ot_dtype half = cf->amp == 2 ? OT_BF16 : OT_F16;
    for (int ni = g->n_nodes - 1; ni >= 0; ni--) { /* topological order backwards: readers first */
        const ot_node *n = &g->nodes[ni];
        if (n->n_out < 1 || !is_step(p, ni)) continue;
        const int y = n->out[0];
        if (y < 0 || p->dtype[y] != OT_F32 || p->is_const[y] || (g->values[y].flags & OT_V_OUTPUT)) continue;
        bool writes_half; /* the producers whose kernels can store half */
        if (n->op == o.conv) writes_half = !(n->n_in > 2 && n->in[2] >= 0); /* a bias is added in float (Detect) */
        else if (n->op == o.mul) writes_half = ot_mul_is_silu(p->params[ni]);
        else writes_half = n->op == o.concat || n->op == o.resize || n->op == o.upsample;
        if (writes_half && readers_take_half(p, &o, y, n->op == o.conv)) p->dtype[y] = half;
    }
    return OT_OK;
}

ot_status ot_plan_passes(ot_plan *p, ot_error *err) {
    OT_TRY(ot_pass_fuse_silu(p, err));
    OT_TRY(ot_pass_half_act(p, err));
    return OT_OK;
}
