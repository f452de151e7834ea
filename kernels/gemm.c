/* gemm.c: ot_sgemm (kernels/gemm.h) over oneDNN's dnnl_sgemm (default) or
 * OpenBLAS's cblas_sgemm (-DONNXT_GEMM=openblas), both row-major. The default
 * is the faster of the two on the YOLOv5s forward pass (docs/PERF.md). */
#include "gemm.h"

#ifdef ONNXT_GEMM_ONEDNN
#include <oneapi/dnnl/dnnl.h>

void ot_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#else
#include <cblas.h>

void ot_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (blasint)m,
                (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}
#endif
