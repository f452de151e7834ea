/* passes.h: graph rewrites the planner applies to a plan (core/runtime/passes.c).
 * A pass runs after every node's infer and before the memory layout; it may
 * take steps off the plan (ot_plan_unstep) and set kernel parameters through
 * the functions kernels/ export for it. Kernels never rewrite the plan. */
#ifndef OT_PASSES_H
#define OT_PASSES_H

#include "../plan.h"

/* Every pass, in order (ot_plan_create_vars calls this). */
ot_status ot_plan_passes(ot_plan *p, ot_error *err);

/* SiLU fusion: Mul(x, Sigmoid(x)) (either order), where the Sigmoid's output
 * feeds only this Mul and is neither constant nor a graph output, becomes one
 * step (the Mul computes both; the Sigmoid is unstepped). ONNXT_FUSE_SILU=0
 * (core/config.h) keeps the two nodes. Same bits either way. */
ot_status ot_pass_fuse_silu(ot_plan *p, ot_error *err);

#endif
