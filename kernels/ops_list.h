/* ops_list.h: the op_def rows defined by the kernel files, for kernels/optable.c.
 * Each row lives next to its kernels; this header only declares them. */
#ifndef OT_OPS_LIST_H
#define OT_OPS_LIST_H

#include "ops.h"

/* elementwise.c */
extern const ot_op_def ot_op_sigmoid;
extern const ot_op_def ot_op_add;
extern const ot_op_def ot_op_sub;
extern const ot_op_def ot_op_mul;
extern const ot_op_def ot_op_div;
extern const ot_op_def ot_op_pow;
/* concat.c */
extern const ot_op_def ot_op_concat;
/* pool.c */
extern const ot_op_def ot_op_maxpool;
/* resize.c */
extern const ot_op_def ot_op_resize;
extern const ot_op_def ot_op_upsample;
/* shape_ops.c */
extern const ot_op_def ot_op_reshape;
extern const ot_op_def ot_op_flatten;
extern const ot_op_def ot_op_identity;
extern const ot_op_def ot_op_squeeze;
extern const ot_op_def ot_op_unsqueeze;
extern const ot_op_def ot_op_transpose;
extern const ot_op_def ot_op_split;
extern const ot_op_def ot_op_slice;
/* fold_ops.c */
extern const ot_op_def ot_op_constant;
extern const ot_op_def ot_op_shape;
extern const ot_op_def ot_op_gather;
extern const ot_op_def ot_op_cast;
extern const ot_op_def ot_op_constantofshape;

#endif
