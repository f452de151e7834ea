/* library_gpu.c: onnxtrain_cuda's side of kernels/cuda/cuda_tables.h: the GPU. */
#include "cuda_tables.h"

const char ot_cuda_library_name[] = "CUDA (sm_86, sm_90)";
const bool ot_cuda_library_real = true;
ot_backend *ot_cuda_library_open(int ordinal, char *why, size_t n) { return ot_backend_cuda(ordinal, why, n); }
