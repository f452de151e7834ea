#include "compat.h"
/* amp.cu: mixed precision (train --amp, docs/CUDA.md "Mixed precision"):
 * conversions between float and the two half types, the rounding of float
 * values to them (the precision of a half tensor, kept in float), and
 * torch.cuda.amp.GradScaler's device work: the loss gradient scaled, the
 * gradients unscaled with the non-finite check, the scale updated. Every kernel
 * is element-wise or a single thread, so results are exact: the executor's
 * __half / __nv_bfloat16 (compat.h) round as CUDA's, and the scaler's
 * arithmetic is kernels/slab.c's CPU oracle operation for operation. */
#include "cuda_kernels.h"

#define AMP_BLOCK 256

static unsigned amp_grid(int64_t n) {
    int64_t b = (n + AMP_BLOCK - 1) / AMP_BLOCK;
    return (unsigned)(b < 65536 ? b : 65536);
}

#define GRID_STRIDE(i, n)                                                                                  \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__global__ void amp_to_f16_k(__half *y, const float *x, int64_t n) { GRID_STRIDE(i, n) y[i] = __float2half_rn(x[i]); }
__global__ void amp_from_f16_k(float *y, const __half *x, int64_t n) { GRID_STRIDE(i, n) y[i] = __half2float(x[i]); }
__global__ void amp_to_bf16_k(__nv_bfloat16 *y, const float *x, int64_t n) { GRID_STRIDE(i, n) y[i] = __float2bfloat16_rn(x[i]); }
__global__ void amp_from_bf16_k(float *y, const __nv_bfloat16 *x, int64_t n) { GRID_STRIDE(i, n) y[i] = __bfloat162float(x[i]); }
__global__ void amp_round_k(float *y, const float *x, int64_t n, int bf16) {
    if (bf16) GRID_STRIDE(i, n) y[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
    else GRID_STRIDE(i, n) y[i] = __half2float(__float2half_rn(x[i]));
}

/* g = saved + round(g): a half-precision gradient contribution added to the FP32 accumulator. */
__global__ void amp_round_add_k(float *g, const float *saved, int64_t n, int bf16) {
    if (bf16) GRID_STRIDE(i, n) g[i] = __fadd_rn(saved[i], __bfloat162float(__float2bfloat16_rn(g[i])));
    else GRID_STRIDE(i, n) g[i] = __fadd_rn(saved[i], __half2float(__float2half_rn(g[i])));
}

/* y = (acc ? y + h : h) for half values h, then (rnd) rounded to half precision: a half convolution's gradient
 * joining an FP32 one (conv_gpu.c under --amp). */
template <typename H, float (*TOF)(H)>
OT_DEVFN void amp_acc(float *y, const H *h, int64_t n, int bf16, int acc, int rnd) {
    GRID_STRIDE(i, n) {
        float v = TOF(h[i]);
        if (acc) v = __fadd_rn(y[i], v);
        if (rnd) v = bf16 ? __bfloat162float(__float2bfloat16_rn(v)) : __half2float(__float2half_rn(v));
        y[i] = v;
    }
}
OT_DEVFN float amp_h2f(__half h) { return __half2float(h); }
OT_DEVFN float amp_b2f(__nv_bfloat16 h) { return __bfloat162float(h); }
__global__ void amp_acc_f16_k(float *y, const __half *h, int64_t n, int acc, int rnd) { amp_acc<__half, amp_h2f>(y, h, n, 0, acc, rnd); }
__global__ void amp_acc_bf16_k(float *y, const __nv_bfloat16 *h, int64_t n, int acc, int rnd) {
    amp_acc<__nv_bfloat16, amp_b2f>(y, h, n, 1, acc, rnd);
}

OT_DEVFN __half amp_f2h(float x) { return __float2half_rn(x); }
OT_DEVFN __nv_bfloat16 amp_f2b(float x) { return __float2bfloat16_rn(x); }

/* x rounded in place to the half type's precision and its half copy h, in one pass (round_half and a conversion
 * fused: a half convolution's input under --amp). */
template <typename H, H (*TOH)(float), float (*TOF)(H)>
OT_DEVFN void amp_split(float *x, H *h, int64_t n) {
    GRID_STRIDE(i, n) {
        const H v = TOH(x[i]);
        h[i] = v;
        x[i] = TOF(v);
    }
}
__global__ void amp_split_f16_k(float *x, __half *h, int64_t n) { amp_split<__half, amp_f2h, amp_h2f>(x, h, n); }
__global__ void amp_split_bf16_k(float *x, __nv_bfloat16 *h, int64_t n) { amp_split<__nv_bfloat16, amp_f2b, amp_b2f>(x, h, n); }

/* v + b as autocast adds a half bias to a half convolution's output: the bias rounded to the half type, the sum
 * in float, rounded again. */
template <typename H, H (*TOH)(float), float (*TOF)(H)>
OT_DEVFN float amp_bias1(float v, float b) { return TOF(TOH(__fadd_rn(v, TOF(TOH(b))))); }

/* y = float(h), or with a bias amp_bias1(float(h), b[(i / hw) % m]), in one pass (a conversion and the bias add
 * fused: a half convolution's output under --amp). */
template <typename H, H (*TOH)(float), float (*TOF)(H)>
OT_DEVFN void amp_out(float *y, const H *h, const float *b, int64_t n, int64_t hw, int64_t m) {
    GRID_STRIDE(i, n) {
        float v = TOF(h[i]);
        if (b) v = amp_bias1<H, TOH, TOF>(v, b[(i / hw) % m]);
        y[i] = v;
    }
}
/* y = amp_bias1(y, b[(i / hw) % m]) for y already of half precision (conv_emu.c's biased output). */
__global__ void amp_bias_f16_k(float *y, const float *b, int64_t n, int64_t hw, int64_t m) {
    GRID_STRIDE(i, n) y[i] = amp_bias1<__half, amp_f2h, amp_h2f>(y[i], b[(i / hw) % m]);
}
__global__ void amp_bias_bf16_k(float *y, const float *b, int64_t n, int64_t hw, int64_t m) {
    GRID_STRIDE(i, n) y[i] = amp_bias1<__nv_bfloat16, amp_f2b, amp_b2f>(y[i], b[(i / hw) % m]);
}
__global__ void amp_out_f16_k(float *y, const __half *h, const float *b, int64_t n, int64_t hw, int64_t m) {
    amp_out<__half, amp_f2h, amp_h2f>(y, h, b, n, hw, m);
}
__global__ void amp_out_bf16_k(float *y, const __nv_bfloat16 *h, const float *b, int64_t n, int64_t hw, int64_t m) {
    amp_out<__nv_bfloat16, amp_f2b, amp_b2f>(y, h, b, n, hw, m);
}

/* x *= scale (the loss gradient's seed, GradScaler.scale(loss)). */
__global__ void amp_scale_k(float *x, int64_t n, const ot_amp_state *st) {
    const float s = st->scale;
    GRID_STRIDE(i, n) x[i] = __fmul_rn(x[i], s);
}

/* _amp_foreach_non_finite_check_and_unscale_: a non-finite gradient (before the
 * multiply) sets found_inf (every writer writes 1.0f); g *= inv_scale, the
 * reciprocal taken in double and rounded to float (GradScaler.unscale_), the
 * multiply skipped where inv_scale is 1. */
__global__ void amp_unscale_k(float *g, int64_t n, ot_amp_state *st) {
    const float inv = (float)(1.0 / (double)st->scale);
    GRID_STRIDE(i, n) {
        const float v = g[i];
        if (!isfinite(v)) st->found_inf = 1.0f;
        g[i] = inv == 1.0f ? v : __fmul_rn(v, inv);
    }
}

/* _amp_update_scale_, one thread; found_inf moves to skipped and is cleared for the next step. */
__global__ void amp_update_k(ot_amp_state *st, float growth, float backoff, int interval) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    if (st->found_inf != 0.0f) {
        st->scale = __fmul_rn(st->scale, backoff);
        st->tracker = 0;
    } else {
        const int ok = st->tracker + 1;
        if (ok == interval) {
            const float s = __fmul_rn(st->scale, growth);
            if (isfinite(s)) st->scale = s;
            st->tracker = 0;
        } else
            st->tracker = ok;
    }
    st->skipped = st->found_inf;
    st->found_inf = 0.0f;
}

extern "C" void ot_cuda_f32_to_f16(uint16_t *y, const float *x, int64_t n, void *stream) {
    if (n > 0) OT_LAUNCH(amp_to_f16_k, amp_grid(n), AMP_BLOCK, 0, stream, reinterpret_cast<__half *>(y), x, n);
}
extern "C" void ot_cuda_f16_to_f32(float *y, const uint16_t *x, int64_t n, void *stream) {
    if (n > 0) OT_LAUNCH(amp_from_f16_k, amp_grid(n), AMP_BLOCK, 0, stream, y, reinterpret_cast<const __half *>(x), n);
}
extern "C" void ot_cuda_f32_to_bf16(uint16_t *y, const float *x, int64_t n, void *stream) {
    if (n > 0) OT_LAUNCH(amp_to_bf16_k, amp_grid(n), AMP_BLOCK, 0, stream, reinterpret_cast<__nv_bfloat16 *>(y), x, n);
}
extern "C" void ot_cuda_bf16_to_f32(float *y, const uint16_t *x, int64_t n, void *stream) {
    if (n > 0)
        OT_LAUNCH(amp_from_bf16_k, amp_grid(n), AMP_BLOCK, 0, stream, y, reinterpret_cast<const __nv_bfloat16 *>(x), n);
}
extern "C" void ot_cuda_round_half(float *y, const float *x, int64_t n, int bf16, void *stream) {
    if (n > 0) OT_LAUNCH(amp_round_k, amp_grid(n), AMP_BLOCK, 0, stream, y, x, n, bf16);
}
extern "C" void ot_cuda_round_add(float *g, const float *saved, int64_t n, int bf16, void *stream) {
    if (n > 0) OT_LAUNCH(amp_round_add_k, amp_grid(n), AMP_BLOCK, 0, stream, g, saved, n, bf16);
}
extern "C" void ot_cuda_half_accumulate(float *y, const uint16_t *h, int64_t n, int bf16, int accumulate, int round,
                                        void *stream) {
    if (n <= 0) return;
    if (bf16)
        OT_LAUNCH(amp_acc_bf16_k, amp_grid(n), AMP_BLOCK, 0, stream, y, reinterpret_cast<const __nv_bfloat16 *>(h), n, accumulate,
                  round);
    else OT_LAUNCH(amp_acc_f16_k, amp_grid(n), AMP_BLOCK, 0, stream, y, reinterpret_cast<const __half *>(h), n, accumulate, round);
}
extern "C" void ot_cuda_round_to_half(float *x, uint16_t *h, int64_t n, int bf16, void *stream) {
    if (n <= 0) return;
    if (bf16) OT_LAUNCH(amp_split_bf16_k, amp_grid(n), AMP_BLOCK, 0, stream, x, reinterpret_cast<__nv_bfloat16 *>(h), n);
    else OT_LAUNCH(amp_split_f16_k, amp_grid(n), AMP_BLOCK, 0, stream, x, reinterpret_cast<__half *>(h), n);
}
extern "C" void ot_cuda_half_out(float *y, const uint16_t *h, const float *bias, int64_t n, int64_t hw, int64_t m, int bf16,
                                 void *stream) {
    if (n <= 0) return;
    if (hw < 1) hw = 1;
    if (m < 1) m = 1;
    if (bf16)
        OT_LAUNCH(amp_out_bf16_k, amp_grid(n), AMP_BLOCK, 0, stream, y, reinterpret_cast<const __nv_bfloat16 *>(h), bias, n, hw, m);
    else OT_LAUNCH(amp_out_f16_k, amp_grid(n), AMP_BLOCK, 0, stream, y, reinterpret_cast<const __half *>(h), bias, n, hw, m);
}
extern "C" void ot_cuda_half_bias(float *y, const float *bias, int64_t n, int64_t hw, int64_t m, int bf16, void *stream) {
    if (n <= 0) return;
    if (hw < 1) hw = 1;
    if (m < 1) m = 1;
    if (bf16) OT_LAUNCH(amp_bias_bf16_k, amp_grid(n), AMP_BLOCK, 0, stream, y, bias, n, hw, m);
    else OT_LAUNCH(amp_bias_f16_k, amp_grid(n), AMP_BLOCK, 0, stream, y, bias, n, hw, m);
}
extern "C" void ot_cuda_amp_scale(float *x, int64_t n, const ot_amp_state *st, void *stream) {
    if (n > 0) OT_LAUNCH(amp_scale_k, amp_grid(n), AMP_BLOCK, 0, stream, x, n, st);
}
extern "C" void ot_cuda_amp_unscale(float *g, int64_t n, ot_amp_state *st, void *stream) {
    if (n > 0) OT_LAUNCH(amp_unscale_k, amp_grid(n), AMP_BLOCK, 0, stream, g, n, st);
}
extern "C" void ot_cuda_amp_update(ot_amp_state *st, float growth, float backoff, int interval, void *stream) {
    OT_LAUNCH(amp_update_k, 1, 32, 0, stream, st, growth, backoff, interval);
}
