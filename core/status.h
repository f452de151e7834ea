/* status.h: errors as values (see include/onnxtrain.h) and small helpers
 * for checked arithmetic and allocation. Only the CLI's main() exits. */
#ifndef OT_STATUS_H
#define OT_STATUS_H

#include "onnxtrain.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define OT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define OT_PRINTF(a, b)
#endif

/* Fill err (may be NULL) and return code. */
ot_status ot_fail(ot_error *err, ot_status code, const char *fmt, ...) OT_PRINTF(3, 4);
/* Prepend context ("model.onnx: node 'x' (Conv): ") to an existing message. */
ot_status ot_fail_prefix(ot_error *err, const char *fmt, ...) OT_PRINTF(2, 3);
void ot_error_clear(ot_error *err);

/* Warnings go to stderr unless silenced (tests). */
void ot_warn(const char *fmt, ...) OT_PRINTF(1, 2);
void ot_set_quiet(bool quiet);

#define OT_TRY(expr) do { ot_status s_ = (expr); if (s_ != OT_OK) return s_; } while (0)

/* Programmer bugs only, never bad input. */
#define OT_ASSERT(c) do { if (!(c)) { fprintf(stderr, "onnx-train: internal error %s:%d: %s\n", __FILE__, __LINE__, #c); abort(); } } while (0)

/* Checked multiplication of non-negative int64 values; false on overflow. */
static inline bool ot_mul_ok(int64_t a, int64_t b, int64_t *r) {
    if (a < 0 || b < 0) return false;
    if (a != 0 && b > INT64_MAX / a) return false;
    *r = a * b;
    return true;
}

/* Largest element count of one tensor we accept (2^31: 8 GiB of float32). */
#define OT_MAX_NUMEL ((int64_t)1 << 31)

void *ot_calloc(size_t n, size_t size);            /* NULL on failure or overflow */
char *ot_strdup(const char *s);
char *ot_strndup(const char *s, size_t n);

#endif
