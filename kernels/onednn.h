/* onednn.h: the process-wide oneDNN CPU engine and stream, created on first
 * use (kernels/onednn.c). Only built against oneDNN (ONNXT_GEMM_ONEDNN). */
#ifndef OT_ONEDNN_H
#define OT_ONEDNN_H

#ifdef ONNXT_GEMM_ONEDNN
#include <oneapi/dnnl/dnnl.h>

/* NULL when oneDNN cannot create a CPU engine (callers fall back). */
dnnl_engine_t ot_dnnl_engine(void);
dnnl_stream_t ot_dnnl_stream(void);
#endif

#endif
