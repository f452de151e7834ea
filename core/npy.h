/* npy.h: NumPy .npy files (format 1.0/2.0), little-endian float32/int64. */
#ifndef OT_NPY_H
#define OT_NPY_H

#include "tensor.h"

/* Reads a C-order .npy of '<f4' ('<f8' and '<i8' are converted to float32).
 * data is malloc'ed. */
ot_status ot_npy_read(const char *path, ot_tensor *out, ot_error *err);
/* Writes atomically (temporary file, then rename). */
ot_status ot_npy_write(const char *path, const ot_tensor *t, ot_error *err);

#endif
