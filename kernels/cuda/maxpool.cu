#include "compat.h"
/* maxpool.cu: MaxPool 2D of kernels/pool.c on the GPU for unit strides and
 * dilations with symmetric padding (YOLOv5's SPPF: kernel 5, stride 1, pad 2),
 * the geometry pool.c runs separably and whose training forward saves the
 * argmax. Other strides / dilations are refused (the launch returns -1 with a
 * message on stderr); pads must be < the kernel size, as pool.c requires.
 *
 * Forward: one thread per output; the value is the window's maximum over its
 * in-image taps from -FLT_MAX with `v > m ? v : m` (padded positions never
 * win), the CPU's value bits. The argmax (offset in the plane, -1 for a window
 * with no in-image tap) follows pool.c's separable rule exactly: per window row
 * the first maximum from the row's first in-image tap (strict >), then across
 * rows the first row whose maximum is strictly greater (NaN cases included).
 *
 * Backward, a gather: one thread per input element visits the windows that
 * contain it in ascending output order and adds the gradient of each whose
 * argmax it is, which is the order of the CPU's scatter (outputs ascending),
 * so the sums are the CPU's bits; no atomics. */
#include "cuda_kernels.h"

#include <float.h>
#include <stdio.h>

#define MP_BLOCK 256

struct mp_geom {
    int64_t planes, H, W, OH, OW;
    int kh, kw, ph, pw;
};

/* pool.c taps for unit dilation: [*k0, *k1) of a window starting at s. */
static __device__ __forceinline__ void mp_taps(int64_t s, int64_t k, int64_t in, int64_t *k0, int64_t *k1) {
    int64_t a = s < 0 ? -s : 0;
    int64_t b = in - 1 - s < 0 ? 0 : in - s;
    if (b > k) b = k;
    *k0 = a;
    *k1 = b < a ? a : b;
}

__global__ void mp_fwd(float *__restrict__ y, int32_t *__restrict__ arg, const float *__restrict__ x, mp_geom g) {
    int64_t total = g.planes * g.OH * g.OW;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t pl = o / (g.OH * g.OW), q = o - pl * g.OH * g.OW, oh = q / g.OW, ow = q - oh * g.OW;
        const float *xp = x + pl * g.H * g.W;
        int64_t h0 = oh - g.ph, w0 = ow - g.pw, a0, a1, b0, b1;
        mp_taps(h0, g.kh, g.H, &a0, &a1);
        mp_taps(w0, g.kw, g.W, &b0, &b1);
        float m = -FLT_MAX, am = 0.0f;
        int32_t best = -1;
        for (int64_t i = a0; i < a1; i++) {
            const float *r = xp + (h0 + i) * g.W + w0;
            if (b0 >= b1) continue;
            float ram = r[b0];
            int64_t rb = b0;
            for (int64_t j = b0; j < b1; j++) {
                float v = r[j];
                m = v > m ? v : m;
                if (v > ram) { ram = v; rb = j; }
            }
            if (best < 0 || ram > am) { am = ram; best = (int32_t)((h0 + i) * g.W + w0 + rb); }
        }
        y[o] = m;
        if (arg) arg[o] = best;
    }
}

__global__ void mp_bwd(float *__restrict__ dx, const float *__restrict__ dy, const int32_t *__restrict__ arg, mp_geom g,
                       int acc) {
    int64_t total = g.planes * g.H * g.W;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t pl = e / (g.H * g.W), q = e - pl * g.H * g.W, h = q / g.W, w = q - h * g.W;
        int64_t oh0 = h + g.ph - g.kh + 1, oh1 = h + g.ph, ow0 = w + g.pw - g.kw + 1, ow1 = w + g.pw;
        if (oh0 < 0) oh0 = 0;
        if (ow0 < 0) ow0 = 0;
        if (oh1 > g.OH - 1) oh1 = g.OH - 1;
        if (ow1 > g.OW - 1) ow1 = g.OW - 1;
        const float *gp = dy + pl * g.OH * g.OW;
        const int32_t *ap = arg + pl * g.OH * g.OW;
        float s = acc ? dx[e] : 0.0f;
        for (int64_t oh = oh0; oh <= oh1; oh++)
            for (int64_t ow = ow0; ow <= ow1; ow++)
                if (ap[oh * g.OW + ow] == (int32_t)q) s = s + gp[oh * g.OW + ow];
        dx[e] = s;
    }
}

static int mp_geom_of(mp_geom *g, const char *who, int64_t planes, int64_t H, int64_t W, int kh, int kw, int sh, int sw,
                      int ph, int pw) {
    if (sh != 1 || sw != 1 || kh < 1 || kw < 1 || ph < 0 || pw < 0 || ph >= kh || pw >= kw || H * W > INT32_MAX ||
        planes < 0 || H < 0 || W < 0) {
        fprintf(stderr,
                "%s: unsupported MaxPool geometry kernel %dx%d stride %dx%d pad %dx%d on %lldx%lld: only stride 1 with "
                "symmetric pads 0 <= pad < kernel (YOLOv5's SPPF) and planes of at most 2^31-1 elements\n",
                who, kh, kw, sh, sw, ph, pw, (long long)H, (long long)W);
        return -1;
    }
    g->planes = planes; g->H = H; g->W = W; g->kh = kh; g->kw = kw; g->ph = ph; g->pw = pw;
    g->OH = H + 2 * ph - kh + 1;
    g->OW = W + 2 * pw - kw + 1;
    if (g->OH < 0) g->OH = 0;
    if (g->OW < 0) g->OW = 0;
    return 0;
}

static unsigned mp_grid(int64_t items) {
    int64_t b = (items + MP_BLOCK - 1) / MP_BLOCK;
    return (unsigned)(b < 65536 ? b : 65536);
}

extern "C" int ot_cuda_maxpool_fwd(float *y, int32_t *arg, const float *x, int64_t planes, int64_t h, int64_t w, int kh,
                                   int kw, int sh, int sw, int ph, int pw, void *stream) {
    mp_geom g;
    if (mp_geom_of(&g, "ot_cuda_maxpool_fwd", planes, h, w, kh, kw, sh, sw, ph, pw)) return -1;
    int64_t total = g.planes * g.OH * g.OW;
    if (total <= 0) return 0;
    OT_LAUNCH(mp_fwd, mp_grid(total), MP_BLOCK, 0, stream, y, arg, x, g);
    return 0;
}

extern "C" int ot_cuda_maxpool_bwd(float *dx, const float *dy, const int32_t *arg, int64_t planes, int64_t h, int64_t w,
                                   int kh, int kw, int sh, int sw, int ph, int pw, int accumulate, void *stream) {
    mp_geom g;
    if (mp_geom_of(&g, "ot_cuda_maxpool_bwd", planes, h, w, kh, kw, sh, sw, ph, pw)) return -1;
    int64_t total = g.planes * g.H * g.W;
    if (total <= 0) return 0;
    OT_LAUNCH(mp_bwd, mp_grid(total), MP_BLOCK, 0, stream, dx, dy, arg, g, accumulate ? 1 : 0);
    return 0;
}
