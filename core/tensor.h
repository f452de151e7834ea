/* tensor.h: element types and shapes (host side). */
#ifndef OT_TENSOR_H
#define OT_TENSOR_H

#include "status.h"

size_t ot_dtype_size(ot_dtype t);          /* 0 for unsupported types */
const char *ot_dtype_name(ot_dtype t);     /* "float32", ... or "dtype#N" */

/* Element count; -1 when a dim is unknown; false when negative dims or too large. */
bool ot_shape_numel(const ot_shape *s, int64_t *numel);
bool ot_shape_known(const ot_shape *s);
/* Element count of a known, validated shape. */
static inline int64_t ot_numel(const ot_shape *s) { int64_t n = 1; for (int i = 0; i < s->rank; i++) n *= s->d[i]; return n; }
bool ot_shape_eq(const ot_shape *a, const ot_shape *b);
ot_shape ot_shape_make(int rank, const int64_t *d);
/* "[1,3,640,640]" (unknown dims as '?'); returns buf. */
char *ot_shape_str(const ot_shape *s, char *buf, size_t n);
/* Numpy broadcasting of two shapes; false if incompatible. */
bool ot_shape_broadcast(const ot_shape *a, const ot_shape *b, ot_shape *out);

/* IEEE half <-> float. */
float ot_half_to_float(uint16_t h);
uint16_t ot_float_to_half(float f);

/* Deterministic test pattern: x[i] = byte(hash(i, seed)) / 255, the values of a
 * real 8-bit image scaled to [0,1]. tools/ref/common.py computes the same. */
void ot_fill_pattern(float *x, int64_t n, uint32_t seed);

#endif
