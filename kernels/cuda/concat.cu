#include "compat.h"
/* concat.cu: Concat of kernels/concat.c on the GPU, forward and backward, for
 * the layout (outer, sum of c[i], inner): YOLOv5's channel Concat is outer = N,
 * c[i] = C_i, inner = H*W, but any axis reduces to it. Any number of inputs
 * (concat.c has no limit): one launch per input, in input order.
 *
 * Forward: input i's rows (outer rows of c[i]*inner floats) are copied into the
 * output at column offset sum(c[<i]) * inner. Backward: each input's gradient
 * is gathered from its slice of the output gradient: written as a copy (the
 * CPU's memcpy when ot_gin_set) or added (gx += slice), per input. An input
 * listed twice gets its slices added one launch after the other, in input
 * order, as the CPU adds them. Pure copies and single adds: bit for bit.
 *
 * A launch moves float4s when the row length, both row strides, the column
 * offset and both pointers allow 16-byte accesses; otherwise scalars. */
#include "cuda_kernels.h"

#define CC_BLOCK 256

/* dst[r * ds + k] (+)= src[r * ss + k], k < len, r < rows; in floats, or in
 * float4s when vec (len, ds, ss then counted in float4s). */
__global__ void cc_rows(float *__restrict__ dst, int64_t ds, const float *__restrict__ src, int64_t ss, int64_t len,
                        int64_t rows, int acc, int vec) {
    int64_t items = rows * len;
    for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = it / len, k = it - r * len;
        if (vec) {
            float4 v = reinterpret_cast<const float4 *>(src)[r * ss + k];
            float4 *d = reinterpret_cast<float4 *>(dst) + r * ds + k;
            if (acc) {
                float4 o = *d;
                v = make_float4(o.x + v.x, o.y + v.y, o.z + v.z, o.w + v.w);
            }
            *d = v;
        } else {
            float v = src[r * ss + k];
            float *d = dst + r * ds + k;
            *d = acc ? *d + v : v;
        }
    }
}

static void cc_launch(float *dst, int64_t ds, const float *src, int64_t ss, int64_t len, int64_t rows, int acc,
                      void *stream) {
    if (len <= 0 || rows <= 0) return;
    int vec = (len % 4) == 0 && (ds % 4) == 0 && (ss % 4) == 0 && ((uintptr_t)dst & 15u) == 0 && ((uintptr_t)src & 15u) == 0;
    if (vec) { len /= 4; ds /= 4; ss /= 4; }
    int64_t b = (rows * len + CC_BLOCK - 1) / CC_BLOCK;
    OT_LAUNCH(cc_rows, (unsigned)(b < 65536 ? b : 65536), CC_BLOCK, 0, stream, dst, ds, src, ss, len, rows, acc, vec);
}

extern "C" void ot_cuda_concat_fwd(float *y, const float *const *x, const int64_t *c, int n, int64_t outer,
                                   int64_t inner, void *stream) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += c[i];
    int64_t orow = total * inner, off = 0;
    for (int i = 0; i < n; i++) {
        int64_t blk = c[i] * inner;
        cc_launch(y + off, orow, x[i], blk, blk, outer, 0, stream);
        off += blk;
    }
}

/* The forward into a half-precision output (--amp: a Concat only convolutions read, core/runtime/passes.h
 * ot_pass_half_act): dst[r * ds + k] = src[r * ss + k], a float rounded to half (bf16 0) or bfloat16 (1) as it is
 * stored (xt 0) or a value of that type copied (xt 1). */
__global__ void cc_rows_half(void *__restrict__ dst, int64_t ds, const void *__restrict__ src, int64_t ss, int64_t len,
                             int64_t rows, int xt, int bf16) {
    int64_t items = rows * len;
    for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = it / len, k = it - r * len;
        if (xt) {
            static_cast<uint16_t *>(dst)[r * ds + k] = static_cast<const uint16_t *>(src)[r * ss + k];
            continue;
        }
        const float v = static_cast<const float *>(src)[r * ss + k];
        if (bf16) static_cast<__nv_bfloat16 *>(dst)[r * ds + k] = __float2bfloat16_rn(v);
        else static_cast<__half *>(dst)[r * ds + k] = __float2half_rn(v);
    }
}

extern "C" void ot_cuda_concat_fwd_half(uint16_t *y, const void *const *x, const int *xt, const int64_t *c, int n, int64_t outer,
                                        int64_t inner, int bf16, void *stream) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += c[i];
    int64_t orow = total * inner, off = 0;
    for (int i = 0; i < n; i++) {
        int64_t blk = c[i] * inner, b = (outer * blk + CC_BLOCK - 1) / CC_BLOCK;
        if (blk > 0 && outer > 0)
            OT_LAUNCH(cc_rows_half, (unsigned)(b < 65536 ? b : 65536), CC_BLOCK, 0, stream, static_cast<void *>(y + off), orow,
                      x[i], blk, blk, outer, xt ? xt[i] : 0, bf16);
        off += blk;
    }
}

extern "C" void ot_cuda_concat_bwd(float *const *dx, const float *dy, const int64_t *c, int n, int64_t outer,
                                   int64_t inner, const int *accumulate, void *stream) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += c[i];
    int64_t orow = total * inner, off = 0;
    for (int i = 0; i < n; i++) {
        int64_t blk = c[i] * inner;
        if (dx[i]) cc_launch(dx[i], blk, dy + off, orow, blk, outer, accumulate && accumulate[i] ? 1 : 0, stream);
        off += blk;
    }
}
