/* cuda_tables.h: the CUDA device's kernel tables (kernels/cuda/cuda_tables.c),
 * in whichever CUDA kernel library a binary links: onnxtrain_cuda (the GPU) or
 * onnxtrain_cudaemu (the CPU executor). See docs/CUDA.md. */
#ifndef OT_CUDA_TABLES_H
#define OT_CUDA_TABLES_H

#include "../device_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the CUDA op, slab, loss and decode tables for OT_DEV_CUDA and makes
 * `--device N` (ot_backend_get) open this library's device: the GPU, or the
 * executor's device. Call once at start-up, before any plan. */
void ot_cuda_kernels_install(void);
/* The tables themselves (for tests and `info`). */
const ot_device_kernels *ot_cuda_kernels(void);

/* ---- what differs between the two libraries (kernels/cuda/library_gpu.c, library_emu.c) ---- */
/* "CUDA (sm_86, sm_90)" or "CUDA on the CPU executor". */
extern const char ot_cuda_library_name[];
/* true: a real GPU; false: the executor. */
extern const bool ot_cuda_library_real;
/* Opens device `ordinal` of this library (ot_backend_cuda or ot_backend_cuda_emu). */
ot_backend *ot_cuda_library_open(int ordinal, char *why, size_t n);

/* ---- the library calls (one thin file per library: conv_gpu.c with cuDNN,
 * conv_emu.c with our CPU convolution on the same buffers) ---- */
extern const ot_op_impl ot_cuda_conv;
/* TF32 for the convolutions of plans prepared after the call (--tf32); off by
 * default (FP32). The executor computes in FP32 whatever the setting. */
void ot_cuda_conv_set_tf32(int on);

#ifdef __cplusplus
}
#endif

#endif
