#include "compat.h"
/* elementwise.cu: Sigmoid, the fused SiLU (Mul(x, Sigmoid(x))) and the
 * broadcasting Add / Mul of kernels/elementwise.c, forward and backward.
 *
 * Exactness: the sigmoid is elementwise.c's sigmoid1 (the Cephes expf reduction
 * and polynomial, branch-free selects on bit patterns), every float operation
 * written with an explicitly rounded intrinsic so nvcc cannot contract a
 * multiply and an add into an FMA (ISO C11 on the CPU does not contract
 * either). SiLU forward/backward, Sigmoid backward and Add/Mul are the CPU's
 * operations in the CPU's order, so every result is the CPU's bits.
 *
 * Broadcasting: ot_cuda_bcast_plan builds elementwise.c's merged plan (operands
 * aligned to the output rank, size-1 output dims dropped, adjacent dims merged
 * while both operands stay contiguous). The backward of an operand mirrors
 * bin_grad's summation exactly: an operand that runs along the innermost merged
 * dim sums, per element, the contributions over the reduced outer dims in
 * order in double; one that is broadcast along it sums, per element, whole runs
 * in double, in P = (kept >= 64 ? 1 : min(reduced, 64)) fixed chunks whose
 * partials are added in chunk order (one block per element, the partials in
 * shared memory). So no float atomics, the same bits on every run, and the
 * CPU's bits. accumulate = 0 writes the gradient as 0.0f + value (the bits the
 * CPU gets adding to a zeroed buffer, -0 included); 1 adds to it.
 *
 * Same-shape (and contiguous) work moves float4s when every pointer is 16-byte
 * aligned, with a scalar tail; otherwise the scalar path of the same kernel. */
#include "cuda_kernels.h"

#include <string.h>

#define EW_BLOCK 256


OT_DEVFN uint32_t bsel(uint32_t m, uint32_t a, uint32_t b) { return (a & m) | (b & ~m); } /* m ? a : b */

/* elementwise.c sigmoid1, operation for operation. */
OT_DEVFN float ew_sigmoid(float v) {
    uint32_t u = __float_as_uint(v), abits = u & 0x7fffffffu;
    uint32_t tiny = 0u - (uint32_t)(abits > 0x42ae0000u);
    uint32_t neg = 0u - (u >> 31), nan = 0u - (uint32_t)(abits > 0x7f800000u);
    float z = __uint_as_float(bsel(tiny, 0xc2ae0000u, abits | 0x80000000u));
    float n = __fsub_rn(__fadd_rn(__fmul_rn(z, 1.44269504088896341f), 12582912.0f), 12582912.0f);
    float r = __fsub_rn(z, __fmul_rn(n, 0.693359375f));
    r = __fadd_rn(r, __fmul_rn(n, 2.12194440e-4f));
    float p = 1.9875691500e-4f;
    p = __fadd_rn(__fmul_rn(p, r), 1.3981999507e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 8.3334519073e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 4.1665795894e-2f);
    p = __fadd_rn(__fmul_rn(p, r), 1.6666665459e-1f);
    p = __fadd_rn(__fmul_rn(p, r), 5.0000001201e-1f);
    p = __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn(p, r), r), r), 1.0f);
    float e = __uint_as_float(bsel(tiny, 0u, __float_as_uint(__fmul_rn(p, __uint_as_float((uint32_t)((int32_t)n + 127) << 23)))));
    float q = __fdiv_rn(__uint_as_float(bsel(neg, __float_as_uint(e), 0x3f800000u)), __fadd_rn(1.0f, e));
    return __uint_as_float(bsel(nan, u, __float_as_uint(q)));
}

/* ---- unary kernels: sigmoid / silu forward and backward, and the same-shape
 * Add (dx = dy) / Mul (dx = dy * other) backward ---- */
enum { U_SIG = 0, U_SILU = 1, U_SIG_BWD = 2, U_SILU_BWD = 3, U_ADD_BWD = 4, U_MUL_BWD = 5 };

/* One element. Forward: o = f(p). Sigmoid bwd: p = dy, q = y. SiLU bwd: p = dy,
 * q = x. Add bwd: p = dy. Mul bwd: p = dy, q = the other operand. */
OT_DEVFN float ew_unary1(int op, float p, float q, float old, int acc) {
    switch (op) {
    case U_SIG: return ew_sigmoid(p);
    case U_SILU: return __fmul_rn(p, ew_sigmoid(p));
    case U_ADD_BWD: return __fadd_rn(acc ? old : 0.0f, p);
    case U_MUL_BWD: return __fadd_rn(acc ? old : 0.0f, __fmul_rn(p, q));
    case U_SIG_BWD: /* gx += dy * (1 - y) * y */
        return __fadd_rn(acc ? old : 0.0f, __fmul_rn(__fmul_rn(p, __fsub_rn(1.0f, q)), q));
    default: { /* g = gx + dy * s; gx = g + dy * x * (1 - s) * s */
        float s = ew_sigmoid(q), g = __fadd_rn(acc ? old : 0.0f, __fmul_rn(p, s));
        return __fadd_rn(g, __fmul_rn(__fmul_rn(__fmul_rn(p, q), __fsub_rn(1.0f, s)), s));
    }
    }
}

__global__ void ew_unary(int op, float *__restrict__ o, const float *__restrict__ p, const float *__restrict__ q,
                         int64_t n, int64_t n4, int acc) {
    int64_t items = n4 + (n - 4 * n4);
    for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += (int64_t)gridDim.x * blockDim.x) {
        if (it < n4) {
            float4 vp = reinterpret_cast<const float4 *>(p)[it], vq = vp, vo = vp;
            if (q) vq = reinterpret_cast<const float4 *>(q)[it];
            if (acc) vo = reinterpret_cast<const float4 *>(o)[it];
            float4 r = make_float4(ew_unary1(op, vp.x, vq.x, vo.x, acc), ew_unary1(op, vp.y, vq.y, vo.y, acc),
                                   ew_unary1(op, vp.z, vq.z, vo.z, acc), ew_unary1(op, vp.w, vq.w, vo.w, acc));
            reinterpret_cast<float4 *>(o)[it] = r;
        } else {
            int64_t i = 4 * n4 + (it - n4);
            o[i] = ew_unary1(op, p[i], q ? q[i] : 0.0f, acc ? o[i] : 0.0f, acc);
        }
    }
}

static bool ew_aligned(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static unsigned ew_grid(int64_t items) {
    int64_t b = (items + EW_BLOCK - 1) / EW_BLOCK;
    return (unsigned)(b < 65536 ? b : 65536);
}

static void ew_unary_launch(int op, float *o, const float *p, const float *q, int64_t n, int acc, void *stream) {
    if (n <= 0) return;
    bool al = ew_aligned(o) && ew_aligned(p) && (!q || ew_aligned(q));
    int64_t n4 = al ? n / 4 : 0, items = n4 + (n - 4 * n4);
    OT_LAUNCH(ew_unary, ew_grid(items), EW_BLOCK, 0, stream, op, o, p, q, n, n4, acc ? 1 : 0);
}

extern "C" void ot_cuda_sigmoid_fwd(float *y, const float *x, int64_t n, void *stream) {
    ew_unary_launch(U_SIG, y, x, NULL, n, 0, stream);
}
extern "C" void ot_cuda_sigmoid_bwd(float *dx, const float *dy, const float *y, int64_t n, int accumulate, void *stream) {
    ew_unary_launch(U_SIG_BWD, dx, dy, y, n, accumulate, stream);
}
extern "C" void ot_cuda_silu_fwd(float *y, const float *x, int64_t n, void *stream) {
    ew_unary_launch(U_SILU, y, x, NULL, n, 0, stream);
}
/* y = x * sigmoid(x) rounded to half (bf16 0) or bfloat16 (1) as it is stored: a SiLU output that only
 * convolutions read, under --amp (core/runtime/passes.h ot_pass_half_act). */
__global__ void ew_silu_half(void *__restrict__ y, const float *__restrict__ x, int64_t n, int bf16) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float v = ew_unary1(U_SILU, x[i], 0.0f, 0.0f, 0);
        if (bf16) static_cast<__nv_bfloat16 *>(y)[i] = __float2bfloat16_rn(v);
        else static_cast<__half *>(y)[i] = __float2half_rn(v);
    }
}
extern "C" void ot_cuda_silu_fwd_half(uint16_t *y, const float *x, int64_t n, int bf16, void *stream) {
    if (n > 0) OT_LAUNCH(ew_silu_half, ew_grid(n), EW_BLOCK, 0, stream, static_cast<void *>(y), x, n, bf16);
}
extern "C" void ot_cuda_silu_bwd(float *dx, const float *dy, const float *x, int64_t n, int accumulate, void *stream) {
    ew_unary_launch(U_SILU_BWD, dx, dy, x, n, accumulate, stream);
}

/* ---- broadcasting Add / Mul ---- */

extern "C" int ot_cuda_bcast_plan(ot_cuda_bcast *bp, const int64_t *ad, int ar, const int64_t *bd, int br) {
    if (ar < 0 || br < 0 || ar > OT_CUDA_BCAST_RANK || br > OT_CUDA_BCAST_RANK) return 0;
    int r = ar > br ? ar : br;
    int64_t od[OT_CUDA_BCAST_RANK], sa[OT_CUDA_BCAST_RANK], sb[OT_CUDA_BCAST_RANK], ka = 1, kb = 1;
    for (int i = r - 1; i >= 0; i--) {
        int ia = ar - r + i, ib = br - r + i;
        int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
        if (da != db && da != 1 && db != 1) return 0;
        od[i] = da == 1 ? db : da;
        sa[i] = da == 1 ? 0 : ka;
        sb[i] = db == 1 ? 0 : kb;
        ka *= da;
        kb *= db;
    }
    int m = 0;
    int64_t numel = 1;
    for (int i = 0; i < r; i++) {
        numel *= od[i];
        if (od[i] == 1) continue;
        if (m > 0 && bp->sa[m - 1] == sa[i] * od[i] && bp->sb[m - 1] == sb[i] * od[i]) {
            bp->d[m - 1] *= od[i];
            bp->sa[m - 1] = sa[i];
            bp->sb[m - 1] = sb[i];
            continue;
        }
        bp->d[m] = od[i];
        bp->sa[m] = sa[i];
        bp->sb[m] = sb[i];
        m++;
    }
    if (m == 0) { bp->d[0] = 1; bp->sa[0] = 0; bp->sb[0] = 0; m = 1; }
    bp->rank = m;
    bp->numel = numel;
    return 1;
}

OT_DEVFN float ew_bin(int kind, float a, float b) { return kind == OT_CUDA_BIN_MUL ? __fmul_rn(a, b) : __fadd_rn(a, b); }

/* Same shape (a, b, y contiguous, rank 1 strides 1, 1), float4 when aligned. */
__global__ void ew_bin_flat(int kind, float *__restrict__ y, const float *__restrict__ a, const float *__restrict__ b,
                            int64_t n, int64_t n4) {
    int64_t items = n4 + (n - 4 * n4);
    for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += (int64_t)gridDim.x * blockDim.x) {
        if (it < n4) {
            float4 va = reinterpret_cast<const float4 *>(a)[it], vb = reinterpret_cast<const float4 *>(b)[it];
            reinterpret_cast<float4 *>(y)[it] = make_float4(ew_bin(kind, va.x, vb.x), ew_bin(kind, va.y, vb.y),
                                                            ew_bin(kind, va.z, vb.z), ew_bin(kind, va.w, vb.w));
        } else {
            int64_t i = 4 * n4 + (it - n4);
            y[i] = ew_bin(kind, a[i], b[i]);
        }
    }
}

/* Any plan: one thread per output element, the operands' offsets from the merged coordinates. */
__global__ void ew_bin_general(int kind, float *__restrict__ y, const float *__restrict__ a, const float *__restrict__ b,
                               ot_cuda_bcast p) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.numel; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t q = i, oa = 0, ob = 0;
        for (int k = p.rank - 1; k >= 0; k--) {
            int64_t x = q % p.d[k];
            q /= p.d[k];
            oa += x * p.sa[k];
            ob += x * p.sb[k];
        }
        y[i] = ew_bin(kind, a[oa], b[ob]);
    }
}

extern "C" void ot_cuda_binary_fwd(int kind, float *y, const float *a, const float *b, const ot_cuda_bcast *p,
                                   void *stream) {
    if (p->numel <= 0) return;
    if (p->rank == 1 && p->sa[0] == 1 && p->sb[0] == 1) {
        bool al = ew_aligned(y) && ew_aligned(a) && ew_aligned(b);
        int64_t n = p->numel, n4 = al ? n / 4 : 0;
        OT_LAUNCH(ew_bin_flat, ew_grid(n4 + (n - 4 * n4)), EW_BLOCK, 0, stream, kind, y, a, b, n, n4);
        return;
    }
    OT_LAUNCH(ew_bin_general, ew_grid(p->numel), EW_BLOCK, 0, stream, kind, y, a, b, *p);
}

/* The backward's view of the plan for operand `side`: the outer merged dims it
 * keeps (kept) and is broadcast along (red), output strides so. */
struct ew_grad_plan {
    ot_cuda_bcast p;
    int64_t so[OT_CUDA_BCAST_RANK];
    int kept[OT_CUDA_BCAST_RANK], red[OT_CUDA_BCAST_RANK], nk, nr;
    int64_t nko, nro, P;
};

/* bin_offsets: add the offsets of the coordinates idx over dims[0..nd). */
OT_DEVFN void ew_offsets(const ew_grad_plan &g, const int *dims, int nd, int64_t idx, int64_t *oo, int64_t *oa, int64_t *ob) {
    for (int k = nd - 1; k >= 0; k--) {
        int i = dims[k];
        int64_t x = idx % g.p.d[i];
        idx /= g.p.d[i];
        *oo += x * g.so[i];
        *oa += x * g.p.sa[i];
        *ob += x * g.p.sb[i];
    }
}

/* grad_run's contribution of one output: Add dy; Mul side 0 dy * b, side 1 dy * a. */
OT_DEVFN float ew_contrib(int kind, int side, float gv, const float *a, const float *b, int64_t pa, int64_t pb) {
    if (kind != OT_CUDA_BIN_MUL) return gv;
    return side ? __fmul_rn(gv, a[pa]) : __fmul_rn(gv, b[pb]);
}

/* Operand runs along the innermost dim: one thread per element of it. */
__global__ void ew_grad_inner(int kind, int side, float *__restrict__ gx, const float *__restrict__ gy,
                              const float *__restrict__ a, const float *__restrict__ b, ew_grad_plan g, int acc) {
    const int last = g.p.rank - 1;
    const int64_t L = g.p.d[last], ia = g.p.sa[last], ib = g.p.sb[last], items = g.nko * L;
    for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += (int64_t)gridDim.x * blockDim.x) {
        int64_t ko = it / L, j = it - ko * L, oo = 0, oa = 0, ob = 0;
        ew_offsets(g, g.kept, g.nk, ko, &oo, &oa, &ob);
        float *d = gx + (side ? ob : oa) + j;
        float v;
        if (g.nro == 1) {
            v = ew_contrib(kind, side, gy[oo + j], a, b, oa + j * ia, ob + j * ib);
        } else {
            double s = 0;
            for (int64_t ro = 0; ro < g.nro; ro++) {
                int64_t po = oo, pa = oa, pb = ob;
                ew_offsets(g, g.red, g.nr, ro, &po, &pa, &pb);
                s = __dadd_rn(s, (double)ew_contrib(kind, side, gy[po + j], a, b, pa + j * ia, pb + j * ib));
            }
            v = (float)s;
        }
        *d = __fadd_rn(acc ? *d : 0.0f, v);
    }
}

/* The double sum of whole runs over reduced coordinates [r0, r1) for kept element e. */
OT_DEVFN double ew_chunk_sum(int kind, int side, const float *gy, const float *a, const float *b, const ew_grad_plan &g,
                          int64_t e, int64_t r0, int64_t r1, int64_t *xoff) {
    const int last = g.p.rank - 1;
    const int64_t L = g.p.d[last], ia = g.p.sa[last], ib = g.p.sb[last];
    int64_t oo = 0, oa = 0, ob = 0;
    ew_offsets(g, g.kept, g.nk, e, &oo, &oa, &ob);
    *xoff = side ? ob : oa;
    double s = 0;
    for (int64_t ro = r0; ro < r1; ro++) {
        int64_t po = oo, pa = oa, pb = ob;
        ew_offsets(g, g.red, g.nr, ro, &po, &pa, &pb);
        for (int64_t j = 0; j < L; j++)
            s = __dadd_rn(s, (double)ew_contrib(kind, side, gy[po + j], a, b, pa + j * ia, pb + j * ib));
    }
    return s;
}

/* Operand broadcast along the innermost dim, P == 1: one thread per element. */
__global__ void ew_grad_outer1(int kind, int side, float *__restrict__ gx, const float *__restrict__ gy,
                               const float *__restrict__ a, const float *__restrict__ b, ew_grad_plan g, int acc) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < g.nko; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t xo;
        double s = ew_chunk_sum(kind, side, gy, a, b, g, e, 0, g.nro, &xo);
        gx[xo] = __fadd_rn(acc ? gx[xo] : 0.0f, (float)s);
    }
}

/* P > 1 (fewer than 64 elements): one block of 64 threads per element, thread
 * ch < P sums chunk ch, thread 0 adds the partials in chunk order. */
__global__ void ew_grad_outerP(int kind, int side, float *__restrict__ gx, const float *__restrict__ gy,
                               const float *__restrict__ a, const float *__restrict__ b, ew_grad_plan g, int acc) {
    __shared__ double part[64];
    __shared__ int64_t xoff;
    int64_t e = blockIdx.x, ch = threadIdx.x;
    if (ch < g.P) {
        int64_t r0 = g.nro * ch / g.P, r1 = g.nro * (ch + 1) / g.P, xo;
        part[ch] = ew_chunk_sum(kind, side, gy, a, b, g, e, r0, r1, &xo);
        if (ch == 0) xoff = xo;
    }
    __syncthreads();
    if (ch == 0) {
        double s = 0;
        for (int64_t k = 0; k < g.P; k++) s = __dadd_rn(s, part[k]);
        gx[xoff] = __fadd_rn(acc ? gx[xoff] : 0.0f, (float)s);
    }
}

extern "C" void ot_cuda_binary_bwd(int kind, int side, float *dx, const float *dy, const float *a, const float *b,
                                   const ot_cuda_bcast *p, int accumulate, void *stream) {
    if (p->numel <= 0) return;
    int acc = accumulate ? 1 : 0;
    if (p->rank == 1 && p->sa[0] == 1 && p->sb[0] == 1) { /* same shape: the vectorised unary kernel */
        if (kind == OT_CUDA_BIN_MUL) ew_unary_launch(U_MUL_BWD, dx, dy, side ? a : b, p->numel, acc, stream);
        else ew_unary_launch(U_ADD_BWD, dx, dy, NULL, p->numel, acc, stream);
        return;
    }
    ew_grad_plan g;
    memset(&g, 0, sizeof g);
    g.p = *p;
    const int last = p->rank - 1;
    const int64_t *sx = side ? p->sb : p->sa;
    g.so[last] = 1;
    for (int i = last - 1; i >= 0; i--) g.so[i] = g.so[i + 1] * p->d[i + 1];
    g.nko = g.nro = 1;
    for (int i = 0; i < last; i++) {
        if (sx[i]) { g.kept[g.nk++] = i; g.nko *= p->d[i]; }
        else { g.red[g.nr++] = i; g.nro *= p->d[i]; }
    }
    if (sx[last]) {
        int64_t items = g.nko * p->d[last];
        OT_LAUNCH(ew_grad_inner, ew_grid(items), EW_BLOCK, 0, stream, kind, side, dx, dy, a, b, g, acc);
        return;
    }
    g.P = g.nko >= 64 ? 1 : (g.nro < 64 ? g.nro : 64);
    if (g.P == 1) {
        OT_LAUNCH(ew_grad_outer1, ew_grid(g.nko), EW_BLOCK, 0, stream, kind, side, dx, dy, a, b, g, acc);
        return;
    }
    OT_LAUNCH(ew_grad_outerP, (unsigned)g.nko, 64, 0, stream, kind, side, dx, dy, a, b, g, acc);
}
