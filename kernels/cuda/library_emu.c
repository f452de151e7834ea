/* library_emu.c: onnxtrain_cudaemu's side of kernels/cuda/cuda_tables.h: the
 * CUDA device on the CPU executor (kernels/cuda/emu.cpp). */
#include "cuda_tables.h"

const char ot_cuda_library_name[] = "CUDA on the CPU executor";
const bool ot_cuda_library_real = false;
ot_backend *ot_cuda_library_open(int ordinal, char *why, size_t n) { return ot_backend_cuda_emu(ordinal, why, n); }
