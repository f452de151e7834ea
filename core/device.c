/* device.c: device discovery for builds without CUDA (core/cuda_device.cu otherwise). */
#include "device.h"
#include <stdio.h>

#ifndef ONNXT_HAVE_CUDA
int ot_cuda_device_count(char *why, size_t n) {
    if (why && n) snprintf(why, n, "this build has no CUDA backend (configure with the CUDA toolkit installed)");
    return 0;
}
#endif
