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

/* ---- channels-last (NHWC) half copies (conv_gpu.c under --amp --channels-last) ----
 * Both directions transpose (n, c, hw) <-> (n, hw, c) through 32x32 tiles in shared memory, so reads and
 * writes are coalesced; the conversion and rounding ride on the copy. Per element the arithmetic is
 * amp_split's and amp_out / amp_acc's, so a value's bits do not depend on the layout. */
#define NH_TILE 32
#define NH_ROWS 8 /* blocks are NH_TILE x NH_ROWS threads */

/* Tiles of batch b along c (tc of them) and hw (thw): tile k -> (b, c0, s0). */
struct nh_tiles { int64_t c, hw, tc, thw, tiles; };
/* Tile k's first channel, first spatial element and batch offset (elements). */
OT_DEVFN void nh_tile_at(const nh_tiles &t, int64_t k, int64_t *c0, int64_t *s0, int64_t *base) {
    const int64_t ks = k % t.thw, r = k / t.thw, kc = r % t.tc, b = r / t.tc;
    *c0 = kc * NH_TILE;
    *s0 = ks * NH_TILE;
    *base = b * t.c * t.hw;
}

/* x (n, c, hw) to h (n, hw, c) through the tile: v = get(i) at each element's NCHW index i (reads along hw
 * coalesced; get may write x[i] too), put(o, v) at its NHWC index o (writes along c coalesced). T: the tile's
 * element type. */
template <typename T, typename Get, typename Put>
OT_DEVFN void nh_fwd(nh_tiles t, Get get, Put put) {
    __shared__ T tile[NH_TILE][NH_TILE + 1]; /* [ch][s] */
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    for (int64_t k = blockIdx.x; k < t.tiles; k += gridDim.x) { /* uniform per block: barriers are safe */
        int64_t c0, s0, base;
        nh_tile_at(t, k, &c0, &s0, &base);
        const int64_t s = s0 + tx;
        if (s < t.hw)
            for (int j = ty; j < NH_TILE; j += NH_ROWS) {
                const int64_t ch = c0 + j;
                if (ch >= t.c) break;
                tile[j][tx] = get(base + ch * t.hw + s);
            }
        __syncthreads();
        const int64_t ch = c0 + tx;
        if (ch < t.c)
            for (int j = ty; j < NH_TILE; j += NH_ROWS) {
                const int64_t ss = s0 + j;
                if (ss >= t.hw) break;
                put(base + ss * t.c + ch, tile[tx][j]);
            }
        __syncthreads(); /* before the next tile overwrites this one */
    }
}
/* x[i], and with xr (== x) x rounded in place to H's precision. */
template <typename H, H (*TOH)(float), float (*TOF)(H)>
struct nh_get_float {
    const float *x;
    float *xr;
    __device__ __forceinline__ float operator()(int64_t i) const {
        const float v = x[i];
        if (xr) xr[i] = TOF(TOH(v));
        return v;
    }
};
template <typename H, H (*TOH)(float)>
struct nh_put_half {
    H *h;
    __device__ __forceinline__ void operator()(int64_t o, float v) const { h[o] = TOH(v); }
};
struct nh_get16 {
    const uint16_t *x;
    __device__ __forceinline__ uint16_t operator()(int64_t i) const { return x[i]; }
};
struct nh_put16 {
    uint16_t *h;
    __device__ __forceinline__ void operator()(int64_t o, uint16_t v) const { h[o] = v; }
};

/* h (n, hw, c) back to (n, c, hw) through the tile: put(i, ch, h[b][s][ch]) for the NCHW index i of each element
 * (reads along c and writes along hw coalesced). T: h's element type; Put: what is written at i. */
template <typename T, typename Put>
OT_DEVFN void nh_back(const T *h, nh_tiles t, Put put) {
    __shared__ T tile[NH_TILE][NH_TILE + 1]; /* [s][ch] */
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    for (int64_t k = blockIdx.x; k < t.tiles; k += gridDim.x) {
        int64_t c0, s0, base;
        nh_tile_at(t, k, &c0, &s0, &base);
        const int64_t ch = c0 + tx;
        if (ch < t.c)
            for (int j = ty; j < NH_TILE; j += NH_ROWS) {
                const int64_t s = s0 + j;
                if (s >= t.hw) break;
                tile[j][tx] = h[base + s * t.c + ch];
            }
        __syncthreads();
        const int64_t s = s0 + tx;
        if (s < t.hw)
            for (int j = ty; j < NH_TILE; j += NH_ROWS) {
                const int64_t cc = c0 + j;
                if (cc >= t.c) break;
                put(base + cc * t.hw + s, cc, tile[tx][j]);
            }
        __syncthreads();
    }
}

/* y[i] from v = float(h): with bias amp_bias1(v, bias[ch]); with acc y + v; with rnd rounded (amp_out's and
 * amp_acc's arithmetic). */
template <typename H, H (*TOH)(float), float (*TOF)(H)>
struct nh_put_float {
    float *y;
    const float *bias;
    int bf16, acc, rnd;
    __device__ __forceinline__ void operator()(int64_t i, int64_t ch, H hv) const {
        float v = TOF(hv);
        if (bias) v = amp_bias1<H, TOH, TOF>(v, bias[ch]);
        if (acc) v = __fadd_rn(y[i], v);
        if (rnd) v = bf16 ? __bfloat162float(__float2bfloat16_rn(v)) : __half2float(__float2half_rn(v));
        y[i] = v;
    }
};
/* y[i] = the 16-bit value unchanged. */
struct nh_put_move {
    uint16_t *y;
    __device__ __forceinline__ void operator()(int64_t i, int64_t, uint16_t v) const { y[i] = v; }
};

__global__ void amp_nhwc_in_f16_k(const float *x, float *xr, __half *h, nh_tiles t) {
    nh_fwd<float>(t, nh_get_float<__half, amp_f2h, amp_h2f>{x, xr}, nh_put_half<__half, amp_f2h>{h});
}
__global__ void amp_nhwc_in_bf16_k(const float *x, float *xr, __nv_bfloat16 *h, nh_tiles t) {
    nh_fwd<float>(t, nh_get_float<__nv_bfloat16, amp_f2b, amp_b2f>{x, xr}, nh_put_half<__nv_bfloat16, amp_f2b>{h});
}
/* h (n, hw, c) = x (n, c, hw), 16-bit values moved (a half-precision activation into a convolution's NHWC copy). */
__global__ void amp_nhwc_move_in_k(uint16_t *h, const uint16_t *x, nh_tiles t) { nh_fwd<uint16_t>(t, nh_get16{x}, nh_put16{h}); }
__global__ void amp_nhwc_out_f16_k(float *y, const __half *h, const float *bias, nh_tiles t, int acc, int rnd) {
    nh_back(h, t, nh_put_float<__half, amp_f2h, amp_h2f>{y, bias, 0, acc, rnd});
}
__global__ void amp_nhwc_out_bf16_k(float *y, const __nv_bfloat16 *h, const float *bias, nh_tiles t, int acc, int rnd) {
    nh_back(h, t, nh_put_float<__nv_bfloat16, amp_f2b, amp_b2f>{y, bias, 1, acc, rnd});
}

/* y[b][ch][s] = h[b][s][ch]: 16-bit values moved, not converted (a half convolution's NHWC output into a
 * half-precision NCHW activation, conv_gpu.c). */
__global__ void amp_nhwc_move_k(uint16_t *y, const uint16_t *h, nh_tiles t) { nh_back(h, t, nh_put_move{y}); }

static nh_tiles nh_make(int64_t n, int64_t c, int64_t hw) {
    nh_tiles t;
    t.c = c;
    t.hw = hw;
    t.tc = (c + NH_TILE - 1) / NH_TILE;
    t.thw = (hw + NH_TILE - 1) / NH_TILE;
    t.tiles = n * t.tc * t.thw;
    return t;
}
static unsigned nh_grid(int64_t tiles) { return (unsigned)(tiles < 65536 ? tiles : 65536); }

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
extern "C" void ot_cuda_half_nhwc(const float *x, float *xr, uint16_t *h, int64_t n, int64_t c, int64_t hw, int bf16,
                                  void *stream) {
    if (n <= 0 || c <= 0 || hw <= 0) return;
    const nh_tiles t = nh_make(n, c, hw);
    if (bf16)
        OT_LAUNCH(amp_nhwc_in_bf16_k, nh_grid(t.tiles), dim3(NH_TILE, NH_ROWS), 0, stream, x, xr,
                  reinterpret_cast<__nv_bfloat16 *>(h), t);
    else OT_LAUNCH(amp_nhwc_in_f16_k, nh_grid(t.tiles), dim3(NH_TILE, NH_ROWS), 0, stream, x, xr, reinterpret_cast<__half *>(h), t);
}
extern "C" void ot_cuda_half_from_nhwc(float *y, const uint16_t *h, const float *bias, int64_t n, int64_t c, int64_t hw,
                                       int bf16, int accumulate, int round, void *stream) {
    if (n <= 0 || c <= 0 || hw <= 0) return;
    const nh_tiles t = nh_make(n, c, hw);
    if (bf16)
        OT_LAUNCH(amp_nhwc_out_bf16_k, nh_grid(t.tiles), dim3(NH_TILE, NH_ROWS), 0, stream, y,
                  reinterpret_cast<const __nv_bfloat16 *>(h), bias, t, accumulate, round);
    else
        OT_LAUNCH(amp_nhwc_out_f16_k, nh_grid(t.tiles), dim3(NH_TILE, NH_ROWS), 0, stream, y, reinterpret_cast<const __half *>(h),
                  bias, t, accumulate, round);
}
extern "C" void ot_cuda_half_move_from_nhwc(uint16_t *y, const uint16_t *h, int64_t n, int64_t c, int64_t hw, void *stream) {
    if (n <= 0 || c <= 0 || hw <= 0) return;
    const nh_tiles t = nh_make(n, c, hw);
    OT_LAUNCH(amp_nhwc_move_k, nh_grid(t.tiles), dim3(NH_TILE, NH_ROWS), 0, stream, y, h, t);
}
extern "C" void ot_cuda_half_move_to_nhwc(uint16_t *h, const uint16_t *x, int64_t n, int64_t c, int64_t hw, void *stream) {
    if (n <= 0 || c <= 0 || hw <= 0) return;
    const nh_tiles t = nh_make(n, c, hw);
    OT_LAUNCH(amp_nhwc_move_in_k, nh_grid(t.tiles), dim3(NH_TILE, NH_ROWS), 0, stream, h, x, t);
}
