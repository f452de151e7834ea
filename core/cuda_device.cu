/* cuda_device.cu: CUDA device discovery. Without a GPU the runtime reports an
 * error (often "CUDA driver version is insufficient"): that means "no GPU". */
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int ot_cuda_device_count(char *why, size_t n) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        if (why && n) snprintf(why, n, "no usable CUDA device: %s", cudaGetErrorString(e));
        cudaGetLastError(); /* clear the sticky error */
        return 0;
    }
    if (count == 0 && why && n) snprintf(why, n, "no CUDA device found");
    return count;
}

extern "C" void *ot_cuda_host_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes ? bytes : 64, cudaHostAllocPortable) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

extern "C" void ot_cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
}
