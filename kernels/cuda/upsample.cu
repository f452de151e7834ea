#include "compat.h"
/* upsample.cu: nearest 2x upsampling, forward and backward, for every Resize /
 * Upsample whose H and W factors are exactly 2 (kernels/resize.c's
 * integer-factor path; N and C factor 1, folded into nc).
 *
 * Work item: one pair of input columns (2p, 2p+1) of one input row r (the
 * flattened (nc, h) index); the last pair of an odd row has one column. Its
 * outputs are columns 4p..4p+3 of output rows 2r and 2r+1, at float offsets
 * o = 4rw + 4p and o + 2w. o is always a multiple of 4, so with a 16-byte
 * aligned y / dy the top row moves as one float4; the bottom row is a float4
 * when w is even and two float2 (8-byte aligned) when w is odd; the one-column
 * tail moves float2s. Pointers that are not so aligned (views into a larger
 * buffer) take the scalar path of the same kernel.
 *
 * Backward: each work item gathers the 2x2 gradients of its input elements and
 * writes dx, so no atomics and no memset; the sum is (top pair) + (bottom pair),
 * the order of the CPU backward (rows added one after the other, each row's two
 * columns first), so the results match it bit for bit. dx moves as a float2
 * when w is even and dx is 8-byte aligned. */
#include "cuda_kernels.h"

#define UP_BLOCK 256

static bool up_aligned(const void *p, unsigned bytes) { return ((uintptr_t)p & (bytes - 1)) == 0; }

__global__ void upsample2x_fwd(float *__restrict__ y, const float *__restrict__ x, int64_t rows, int64_t w, int vec) {
    int64_t pairs = (w + 1) / 2, items = rows * pairs;
    for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = it / pairs, p = it - r * pairs, j = 2 * p;
        const float *xs = x + r * w + j;
        float *top = y + 4 * r * w + 2 * j, *bot = top + 2 * w;
        float a = xs[0];
        if (j + 1 < w) {
            float b = xs[1];
            if (vec) {
                *reinterpret_cast<float4 *>(top) = make_float4(a, a, b, b);
                if ((w & 1) == 0) {
                    *reinterpret_cast<float4 *>(bot) = make_float4(a, a, b, b);
                } else {
                    reinterpret_cast<float2 *>(bot)[0] = make_float2(a, a);
                    reinterpret_cast<float2 *>(bot)[1] = make_float2(b, b);
                }
            } else {
                top[0] = a; top[1] = a; top[2] = b; top[3] = b;
                bot[0] = a; bot[1] = a; bot[2] = b; bot[3] = b;
            }
        } else if (vec) {   /* the last column of an odd row */
            *reinterpret_cast<float2 *>(top) = make_float2(a, a);
            *reinterpret_cast<float2 *>(bot) = make_float2(a, a);
        } else {
            top[0] = a; top[1] = a;
            bot[0] = a; bot[1] = a;
        }
    }
}

__global__ void upsample2x_bwd(float *__restrict__ dx, const float *__restrict__ dy, int64_t rows, int64_t w, int vec,
                               int vec_out, int accumulate) {
    int64_t pairs = (w + 1) / 2, items = rows * pairs;
    for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = it / pairs, p = it - r * pairs, j = 2 * p;
        const float *top = dy + 4 * r * w + 2 * j, *bot = top + 2 * w;
        float *d = dx + r * w + j;
        if (j + 1 < w) {
            float t0, t1, t2, t3, b0, b1, b2, b3;
            if (vec) {
                float4 t = *reinterpret_cast<const float4 *>(top);
                t0 = t.x; t1 = t.y; t2 = t.z; t3 = t.w;
                if ((w & 1) == 0) {
                    float4 b = *reinterpret_cast<const float4 *>(bot);
                    b0 = b.x; b1 = b.y; b2 = b.z; b3 = b.w;
                } else {
                    float2 u = reinterpret_cast<const float2 *>(bot)[0], v = reinterpret_cast<const float2 *>(bot)[1];
                    b0 = u.x; b1 = u.y; b2 = v.x; b3 = v.y;
                }
            } else {
                t0 = top[0]; t1 = top[1]; t2 = top[2]; t3 = top[3];
                b0 = bot[0]; b1 = bot[1]; b2 = bot[2]; b3 = bot[3];
            }
            float g0, g1;
            if (accumulate) { /* the CPU's order: the top pair onto dx, then the bottom pair */
                g0 = (d[0] + (t0 + t1)) + (b0 + b1);
                g1 = (d[1] + (t2 + t3)) + (b2 + b3);
            } else {
                g0 = (t0 + t1) + (b0 + b1);
                g1 = (t2 + t3) + (b2 + b3);
            }
            if (vec_out) *reinterpret_cast<float2 *>(d) = make_float2(g0, g1);
            else { d[0] = g0; d[1] = g1; }
        } else {
            float t0, t1, b0, b1;
            if (vec) {
                float2 t = *reinterpret_cast<const float2 *>(top), b = *reinterpret_cast<const float2 *>(bot);
                t0 = t.x; t1 = t.y; b0 = b.x; b1 = b.y;
            } else {
                t0 = top[0]; t1 = top[1]; b0 = bot[0]; b1 = bot[1];
            }
            d[0] = accumulate ? (d[0] + (t0 + t1)) + (b0 + b1) : (t0 + t1) + (b0 + b1);
        }
    }
}

/* Enough blocks to fill a GPU several times over; the loops stride past it. */
static unsigned up_grid(int64_t items) {
    int64_t b = (items + UP_BLOCK - 1) / UP_BLOCK;
    return (unsigned)(b < 65536 ? b : 65536);
}

extern "C" void ot_cuda_upsample2x_fwd(float *y, const float *x, int64_t nc, int64_t h, int64_t w, void *stream) {
    int64_t rows = nc * h, items = rows * ((w + 1) / 2);
    if (items <= 0) return;
    int vec = up_aligned(y, 16);
    OT_LAUNCH(upsample2x_fwd, up_grid(items), UP_BLOCK, 0, stream, y, x, rows, w, vec);
}

template <typename T>
OT_DEVFN void up_put4(T *y, int64_t o, int64_t w, T v) {
    y[o] = v; y[o + 1] = v; y[o + 2 * w] = v; y[o + 2 * w + 1] = v;
}

/* The forward into a half-precision y (--amp, core/runtime/passes.h ot_pass_half_act): x float (xt 0, each value
 * rounded to half (bf16 0) or bfloat16 (1) as it is stored) or already of that type (xt 1, its 16 bits copied). One
 * thread per input element, its four outputs. */
__global__ void upsample2x_fwd_half(void *__restrict__ y, const void *__restrict__ x, int64_t rows, int64_t w, int xt, int bf16) {
    const int64_t items = rows * w;
    for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = it / w, j = it - r * w, o = 4 * r * w + 2 * j; /* top-left output; the row below at + 2w */
        if (xt) up_put4(static_cast<uint16_t *>(y), o, w, static_cast<const uint16_t *>(x)[it]);
        else if (bf16) up_put4(static_cast<__nv_bfloat16 *>(y), o, w, __float2bfloat16_rn(static_cast<const float *>(x)[it]));
        else up_put4(static_cast<__half *>(y), o, w, __float2half_rn(static_cast<const float *>(x)[it]));
    }
}

extern "C" void ot_cuda_upsample2x_fwd_half(uint16_t *y, const void *x, int xt, int64_t nc, int64_t h, int64_t w, int bf16,
                                            void *stream) {
    const int64_t rows = nc * h, items = rows * w;
    if (items <= 0) return;
    OT_LAUNCH(upsample2x_fwd_half, up_grid(items), UP_BLOCK, 0, stream, static_cast<void *>(y), x, rows, w, xt, bf16);
}

extern "C" void ot_cuda_upsample2x_bwd(float *dx, const float *dy, int64_t nc, int64_t h, int64_t w, int accumulate,
                                       void *stream) {
    int64_t rows = nc * h, items = rows * ((w + 1) / 2);
    if (items <= 0) return;
    int vec = up_aligned(dy, 16), vec_out = (w & 1) == 0 && up_aligned(dx, 8);
    OT_LAUNCH(upsample2x_bwd, up_grid(items), UP_BLOCK, 0, stream, dx, dy, rows, w, vec, vec_out, accumulate);
}
