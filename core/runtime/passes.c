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

/* True when v is read only as input 0 of `op` steps (at least once). */
static bool only_read_as_x_of(const ot_plan *p, int v, int op) {
    const ot_graph *g = p->g;
    int uses = 0;
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < g->nodes[j].n_in; k++) {
            if (g->nodes[j].in[k] != v) continue;
            if (g->nodes[j].op != op || k != 0 || !is_step(p, j)) return false;
            uses++;
        }
    return uses > 0;
}

ot_status ot_pass_half_act(ot_plan *p, ot_error *err) {
    (void)err;
    const ot_config *cf = ot_config_get();
    if (!(p->flags & OT_PLAN_TRAIN) || !p->be || p->be->kind != OT_DEV_CUDA || !cf->amp || !cf->half_act) return OT_OK;
    const ot_graph *g = p->g;
    const int conv = ot_op_lookup("Conv", ""), bn = ot_op_lookup("BatchNormalization", ""), mul = ot_op_lookup("Mul", "");
    const int concat = ot_op_lookup("Concat", "");
    const ot_dtype half = cf->amp == 2 ? OT_BF16 : OT_F16;
    for (int ni = 0; ni < g->n_nodes; ni++) {
        const ot_node *n = &g->nodes[ni];
        if ((n->op != conv && n->op != mul && n->op != concat) || n->n_out < 1 || !is_step(p, ni)) continue;
        const int y = n->out[0];
        if (y < 0 || p->dtype[y] != OT_F32 || p->is_const[y] || (g->values[y].flags & OT_V_OUTPUT)) continue;
        if (n->op == conv) { /* a bias is added to the float output (the Detect head) */
            if (n->n_in > 2 && n->in[2] >= 0) continue;
            if (only_read_as_x_of(p, y, bn)) p->dtype[y] = half;
        } else if ((n->op == concat || ot_mul_is_silu(p->params[ni])) && only_read_as_x_of(p, y, conv))
            p->dtype[y] = half;
    }
    return OT_OK;
}

ot_status ot_plan_passes(ot_plan *p, ot_error *err) {
    OT_TRY(ot_pass_fuse_silu(p, err));
    OT_TRY(ot_pass_half_act(p, err));
    return OT_OK;
}
