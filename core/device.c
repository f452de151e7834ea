/* device.c: device discovery for builds without CUDA (core/cuda_device.cu otherwise). */
#include "device.h"
#include <stdio.h>
#include <stdlib.h>

static void *aligned_host(size_t bytes) {
    size_t n = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, n ? n : 64);
}

#ifndef ONNXT_HAVE_CUDA
int ot_cuda_device_count(char *why, size_t n) {
    if (why && n) snprintf(why, n, "this build has no CUDA backend (configure with the CUDA toolkit installed)");
    return 0;
}

void *ot_host_alloc(size_t bytes, bool *pinned) {
    *pinned = false;
    return aligned_host(bytes);
}

void ot_host_free(void *p, bool pinned) {
    (void)pinned;
    free(p);
}
#else
void *ot_cuda_host_alloc(size_t bytes); /* core/cuda_device.cu: NULL when no device or no memory */
void ot_cuda_host_free(void *p);

void *ot_host_alloc(size_t bytes, bool *pinned) {
    static int devices = -1;
    if (devices < 0) devices = ot_cuda_device_count(NULL, 0);
    void *p = devices > 0 ? ot_cuda_host_alloc(bytes) : NULL;
    *pinned = p != NULL;
    return p ? p : aligned_host(bytes);
}

void ot_host_free(void *p, bool pinned) {
    if (pinned) ot_cuda_host_free(p);
    else free(p);
}
#endif
