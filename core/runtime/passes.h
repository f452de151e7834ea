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

/* Half-precision activations under --amp (core/config.h amp, half_act): in a
 * training plan on the CUDA device, a value is stored as float16 (amp fp16)
 * or bfloat16 (amp bf16), two bytes in the arena, when its producer can write
 * half (an unbiased Conv: cuDNN; a fused SiLU, a Concat, a nearest Resize /
 * Upsample: rounding as they store) and every reader takes it without a
 * change in any result: Conv steps (as x: the AMP convolution rounds its
 * input to that precision anyway; cuDNN reads it directly), Concat and
 * Resize / Upsample steps whose own output is half (they copy), and, for a
 * convolution's output (already rounded by the convolution), training
 * BatchNormalization steps (batchnorm.cu's xt). Decided readers first (the
 * nodes backwards). Gradients stay float. So the step's bits do not change;
 * memory and traffic do. ONNXT_HALF_ACTIVATIONS=0 keeps every activation
 * float. */
ot_status ot_pass_half_act(ot_plan *p, ot_error *err);

#endif
