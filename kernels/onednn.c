/* onednn.c: one oneDNN CPU engine and one in-order stream for the process,
 * created lazily and thread-safely; they live until exit. */
#include "onednn.h"

#ifdef ONNXT_GEMM_ONEDNN
#include <pthread.h>

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void create_once(void) {
    if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) { g_engine = NULL; return; }
    if (dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(g_engine);
        g_engine = NULL;
        g_stream = NULL;
    }
}

dnnl_engine_t ot_dnnl_engine(void) { pthread_once(&g_once, create_once); return g_engine; }
dnnl_stream_t ot_dnnl_stream(void) { pthread_once(&g_once, create_once); return g_stream; }
#else
typedef int ot_onednn_unused; /* ISO C forbids an empty translation unit */
#endif
