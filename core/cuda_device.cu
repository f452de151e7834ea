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
