/* gemm.h: the one GEMM every CPU kernel calls (row-major, C = alpha*op(A)*op(B) + beta*C).
 * Backed by oneDNN's dnnl_sgemm, chosen over OpenBLAS's cblas_sgemm by
 * measurement (docs/PERF.md, tools/bench/cpu_forward.py); -DONNXT_GEMM=openblas
 * builds the other for re-measuring. */
#ifndef OT_GEMM_H
#define OT_GEMM_H

#include <stdbool.h>
#include <stdint.h>

void ot_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

#endif
