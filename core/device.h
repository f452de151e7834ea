/* device.h: which accelerators this build and machine have. */
#ifndef OT_DEVICE_H
#define OT_DEVICE_H

#include <stddef.h>

/* Number of usable CUDA devices; 0 with the reason in why (a build without
 * CUDA, no driver, "driver version is insufficient" on machines without a GPU). */
int ot_cuda_device_count(char *why, size_t n);

/* Host memory for buffers that are copied to a GPU: page-locked (cudaHostAlloc)
 * when this build has CUDA and a device is present, else 64-byte aligned
 * ordinary memory. *pinned says which; pass it back to ot_host_free. */
#include <stdbool.h>
void *ot_host_alloc(size_t bytes, bool *pinned);
void ot_host_free(void *p, bool pinned);

#endif
