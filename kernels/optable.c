/* optable.c: the op table. Each row is defined next to its kernels
 * (kernels/<family>.c); this is the only list of ops. */
#include "ops.h"
#include <string.h>

extern const ot_op_def ot_op_conv, ot_op_batchnormalization;
extern const ot_op_def ot_op_sigmoid, ot_op_add, ot_op_sub, ot_op_mul, ot_op_div, ot_op_pow;
extern const ot_op_def ot_op_concat, ot_op_maxpool, ot_op_resize, ot_op_upsample;
extern const ot_op_def ot_op_reshape, ot_op_flatten, ot_op_identity, ot_op_squeeze, ot_op_unsqueeze;
extern const ot_op_def ot_op_transpose, ot_op_split, ot_op_slice;
extern const ot_op_def ot_op_constant, ot_op_shape, ot_op_gather, ot_op_cast, ot_op_constantofshape;

static const ot_op_def *const table[] = {
    &ot_op_conv, &ot_op_batchnormalization,
    &ot_op_sigmoid, &ot_op_add, &ot_op_sub, &ot_op_mul, &ot_op_div, &ot_op_pow,
    &ot_op_concat, &ot_op_maxpool, &ot_op_resize, &ot_op_upsample,
    &ot_op_reshape, &ot_op_flatten, &ot_op_identity, &ot_op_squeeze, &ot_op_unsqueeze,
    &ot_op_transpose, &ot_op_split, &ot_op_slice,
    &ot_op_constant, &ot_op_shape, &ot_op_gather, &ot_op_cast, &ot_op_constantofshape,
};

int ot_op_count(void) { return (int)(sizeof table / sizeof table[0]); }

const ot_op_def *ot_op_get(int index) { return index >= 0 && index < ot_op_count() ? table[index] : NULL; }

int ot_op_lookup(const char *op_type, const char *domain) {
    if (domain && domain[0] && strcmp(domain, "ai.onnx") != 0) return -1;
    for (int i = 0; i < ot_op_count(); i++)
        if (strcmp(table[i]->name, op_type) == 0) return i;
    return -1;
}
