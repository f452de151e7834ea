/* elementwise.h: what planner passes may ask of the elementwise kernels
 * (kernels/elementwise.c). The passes decide (core/runtime/passes.c); the
 * kernels only read the parameters set here. */
#ifndef OT_ELEMENTWISE_H
#define OT_ELEMENTWISE_H

#include <stdbool.h>

/* Makes a Mul node compute Mul(x, Sigmoid(x)) itself (SiLU), given its params
 * (after infer) and the input slot (0 or 1) fed by Sigmoid(x); the other slot is
 * x. False, and nothing changed, when the Mul cannot (not float32, broadcasting
 * operands). The caller then takes the Sigmoid node off the plan's steps. */
bool ot_mul_fuse_silu(void *mul_params, int sigmoid_slot);
/* True when a Mul node computes the fused SiLU (after ot_mul_fuse_silu). */
bool ot_mul_is_silu(const void *mul_params);

#endif
