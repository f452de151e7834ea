/* test_cuda_device.c (label cuda): the CUDA backend finds the GPU and its
 * memory calls round-trip data. Skips with a message on machines without one,
 * as CI has none. */
#include "core/backend.h"
#include "core/device.h"
#ifdef ONNXT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif
#include <string.h>
#include "testutil.h"
#include <stdio.h>

int main(void) {
    char why[256] = "";
    int n = ot_cuda_device_count(why, sizeof why);
    if (n <= 0) {
        printf("SKIP: %s\n", why);
        return OT_SKIP;
    }
    printf("%d CUDA device(s)\n", n);
    /* the CUDA backend's memory calls: a round trip through both streams' copies and a device memset */
    ot_backend *be;
    ot_error e;
    if (ot_backend_get("0", &be, &e)) { printf("FAIL: %s\n", e.msg); return 1; }
    enum { N = 1 << 20 };
    float *h = ot_be_host_alloc(be, sizeof(float) * N), *back = malloc(sizeof(float) * N);
    float *d = ot_be_alloc(be, sizeof(float) * N), *d2 = ot_be_alloc(be, sizeof(float) * N);
    if (!h || !back || !d || !d2) { printf("FAIL: allocation on %s\n", be->name); return 1; }
#ifdef ONNXT_HAVE_CUDA
    unsigned flags = 0;
    if (cudaHostGetFlags(&flags, h) != cudaSuccess) { printf("FAIL: the loader's staging memory is not page-locked\n"); return 1; }
#endif
    for (int i = 0; i < N; i++) h[i] = (float)i * 0.25f;
    ot_be_upload(be, d, h, sizeof(float) * N);
    ot_be_copy(be, d2, d, sizeof(float) * N);
    ot_be_memset(be, d2, 0, sizeof(float) * 100);
    ot_event ev = {0};
    be->v->record(be, OT_STREAM_COMPUTE, &ev);
    be->v->wait(be, OT_STREAM_COPY, &ev);
    be->v->download(be, OT_STREAM_COPY, back, d2, sizeof(float) * N);
    for (int i = 0; i < N; i++)
        if (back[i] != (i < 100 ? 0.0f : h[i])) { printf("FAIL: element %d came back as %g\n", i, back[i]); return 1; }
    ot_be_free(be, d); ot_be_free(be, d2); ot_be_host_free(be, h); free(back);
    printf("%s: upload, copy, memset, events and download agree\n", be->name);
    return 0;
}
