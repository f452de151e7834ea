#include "compat.h"
/* decode.cu: the YOLOv5 Detect decode (kernels/decode.h) on CUDA: head maps
 * (n, na*no, ny, nx) per layer -> prediction rows pred (n, total, no), rows
 * in the CPU's order (layer, anchor, y, x; torch.cat(z, 1)).
 *
 * One thread per row (image, layer, anchor, cell), a grid-stride loop over
 * n * total rows; each row is kernels/decode.h's ot_decode_cell, the CPU
 * decode's own function (__host__ __device__ under nvcc), so the float
 * operations are the CPU's: bit for bit under the executor. On a GPU the
 * sigmoid's expf is CUDA's (max 2 ulp, not glibc's), so rows may differ from
 * the CPU's by a few ulps; the rest (2r + c, times stride; (2r)^2 * anchor) is
 * exact to the CPU's even if nvcc contracts 2r + c into an FMA, 2r being exact. */
#include "cuda_kernels.h"
#include "../decode.h"

#define DEC_BLOCK 256

/* The maps' device pointers by value (kernel parameters), with the args. */
struct dec_maps {
    const float *m[OT_MAX_HEADS];
};

__global__ void decode_k(dec_maps maps, ot_decode_args a, float *__restrict__ pred) {
    const int64_t rows = (int64_t)a.n * a.total;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = r / a.total;
        int64_t q = r - b * a.total; /* row within the image */
        int l = 0;
        while (l < a.nl - 1 && q >= (int64_t)a.na * a.ny[l] * a.nx[l]) {
            q -= (int64_t)a.na * a.ny[l] * a.nx[l];
            l++;
        }
        const int64_t nx = a.nx[l], hw = a.ny[l] * nx;
        const int an = (int)(q / hw);
        const int64_t cell = q - (int64_t)an * hw, y = cell / nx, x = cell - y * nx;
        const float *src = maps.m[l] + ((int64_t)b * a.na * a.no + (int64_t)an * a.no) * hw + cell;
        ot_decode_cell(pred + r * a.no, src, hw, a.no, x, y, a.stride[l], a.anchors[l][an][0], a.anchors[l][an][1]);
    }
}

extern "C" void ot_cuda_decode(const float *const *maps, const ot_decode_args *a, float *pred, void *stream) {
    const int64_t rows = (int64_t)a->n * a->total;
    if (rows <= 0 || a->no <= 0) return;
    dec_maps m;
    for (int l = 0; l < OT_MAX_HEADS; l++) m.m[l] = l < a->nl ? maps[l] : NULL;
    const int64_t blocks = (rows + DEC_BLOCK - 1) / DEC_BLOCK;
    OT_LAUNCH(decode_k, (unsigned)(blocks < 65536 ? blocks : 65536), DEC_BLOCK, 0, stream, m, *a, pred);
}
