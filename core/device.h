/* device.h: which accelerators this build and machine have. */
#ifndef OT_DEVICE_H
#define OT_DEVICE_H

#include <stddef.h>

/* Number of usable CUDA devices; 0 with the reason in why (a build without
 * CUDA, no driver, "driver version is insufficient" on machines without a GPU). */
int ot_cuda_device_count(char *why, size_t n);

#endif
