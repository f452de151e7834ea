#include "compat.h"
/* transpose.cu: Transpose of kernels/shape_ops.c on the GPU, forward and
 * backward, for float tensors of rank <= 8 (YOLOv5's Detect head permutes
 * (bs, na, no, ny, nx) -> (bs, na, ny, nx, no), and back in training).
 *
 * The shape is taken as shape_ops.c's tr_params hold it (din: input dims,
 * perm: output axis i = input axis perm[i], size-1 dims dropped and runs of
 * input axes that stay adjacent merged), but any dims/perm are accepted: the
 * launch functions drop size-1 dims and merge runs again (a no-op on a merged
 * shape). Rank 0 (every dim 1 merged away) is one element.
 *
 * The backward is the forward of the inverse permutation (dx in the input
 * layout gathers dy), with the gradient mode: written as 0.0f + v (the bits
 * of the CPU's add into its zeroed gradient: -0 becomes +0) or added (dx +=
 * v). Pure copies and single adds, one per element: bit for bit with the CPU.
 *
 * Kernels (after merging, rank m):
 *   m <= 1 or the identity    tr_flat: a grid-stride copy / add.
 *   the innermost input axis  tr_tiled: 32x32 tiles through shared memory
 *   moves (perm[m-1] != m-1)  spanning the input's innermost axis A (read
 *   and both it and the       along A, coalesced) and the output's innermost
 *   output's innermost axis   axis Q (written along Q, coalesced); every other
 *   have >= 8 elements        axis is a batch index decoded once per tile.
 *                             Detect: (6, 85, 400) -> (6, 400, 85) and back.
 *   otherwise                 tr_generic: one thread per output element
 *                             (grid-stride), the input offset by index
 *                             decomposition; writes coalesced, and reads too
 *                             when the output's innermost axis is the input's. */
#include "cuda_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TR_MAXR 8
#define TR_TILE 32
#define TR_ROWS 8        /* tr_tiled blocks are TR_TILE x TR_ROWS threads */
#define TR_BLOCK 256
#define TR_MAX_BLOCKS 65536
#define TR_TILE_MIN 8    /* tiles only when both tiled axes have at least this many elements */

/* Modes: copy (forward), gradient written as 0.0f + v, gradient added. */
#define TR_COPY 0
#define TR_SET 1
#define TR_ADD 2

OT_DEVFN void tr_put(float *d, float v, int mode) {
    if (mode == TR_COPY) *d = v;
    else if (mode == TR_SET) *d = __fadd_rn(0.0f, v);
    else *d = __fadd_rn(*d, v);
}

/* dst[i] (mode) src[i], i < n. */
__global__ void tr_flat(float *__restrict__ dst, const float *__restrict__ src, int64_t n, int mode) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        tr_put(dst + i, src[i], mode);
}

/* Output dims od (row-major, innermost last) and, per output axis, the input
 * element stride. */
struct tr_gen {
    int m;
    int64_t od[TR_MAXR], is[TR_MAXR];
};

__global__ void tr_generic(float *__restrict__ dst, const float *__restrict__ src, tr_gen g, int64_t n, int mode) {
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < n; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t q = o, off = 0;
        for (int i = g.m - 1; i >= 0; i--) {
            int64_t d = g.od[i], r = q / d;
            off += (q - r * d) * g.is[i];
            q = r;
        }
        tr_put(dst + o, src[off], mode);
    }
}

/* A: the input's innermost axis (input stride 1, output stride osa), Q: the
 * output's innermost axis (output stride 1, input stride isq); nb batch axes
 * bd[] (row-major, the output's order) with their input / output strides. */
struct tr_tile {
    int nb;
    int64_t bd[TR_MAXR], bis[TR_MAXR], bos[TR_MAXR];
    int64_t da, dq, isq, osa;
    int64_t ta, tq, tiles;   /* tiles along A, along Q, in all (batch * ta * tq) */
};

__global__ void tr_tiled(float *__restrict__ dst, const float *__restrict__ src, tr_tile t, int mode) {
    __shared__ float tile[TR_TILE][TR_TILE + 1];   /* [q][a]; +1: no bank conflicts on the transposed read */
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    /* The tile index depends on the block only: every thread runs the same
     * iterations, so the barriers are uniform. */
    for (int64_t k = blockIdx.x; k < t.tiles; k += gridDim.x) {
        int64_t ka = k % t.ta, r = k / t.ta, kq = r % t.tq, b = r / t.tq;
        int64_t ib = 0, ob = 0;
        for (int i = t.nb - 1; i >= 0; i--) {
            int64_t d = t.bd[i], s = b / d, c = b - s * d;
            ib += c * t.bis[i];
            ob += c * t.bos[i];
            b = s;
        }
        int64_t a0 = ka * TR_TILE, q0 = kq * TR_TILE;
        int64_t a = a0 + tx;
        if (a < t.da)
            for (int j = ty; j < TR_TILE; j += TR_ROWS) {
                int64_t q = q0 + j;
                if (q < t.dq) tile[j][tx] = src[ib + q * t.isq + a];
            }
        __syncthreads();
        int64_t q = q0 + tx;
        if (q < t.dq)
            for (int j = ty; j < TR_TILE; j += TR_ROWS) {
                int64_t aa = a0 + j;
                if (aa < t.da) tr_put(dst + ob + aa * t.osa + q, tile[tx][j], mode);
            }
        __syncthreads();   /* before the next tile overwrites the shared tile */
    }
}

static unsigned tr_blocks(int64_t work, int64_t per_block) {
    int64_t b = (work + per_block - 1) / per_block;
    return (unsigned)(b < TR_MAX_BLOCKS ? b : TR_MAX_BLOCKS);
}

/* Drop size-1 dims and merge runs of output axes whose input axes are
 * consecutive: *m, d (merged input dims), p (merged perm). */
static void tr_merge(int rank, const int64_t *din, const int *perm, int *m, int64_t *d, int *p) {
    if (rank < 0 || rank > TR_MAXR) {
        fprintf(stderr, "onnx-train: ot_cuda_transpose: rank %d is outside 0..%d\n", rank, TR_MAXR);
        abort();
    }
    unsigned seen = 0;
    for (int i = 0; i < rank; i++) {
        if (perm[i] < 0 || perm[i] >= rank || ((seen >> perm[i]) & 1u)) {
            fprintf(stderr, "onnx-train: ot_cuda_transpose: perm is not a permutation of 0..%d\n", rank - 1);
            abort();
        }
        seen |= 1u << perm[i];
    }
    int gfirst[TR_MAXR], gn = 0, last = -2;
    int64_t gsize[TR_MAXR];
    for (int i = 0; i < rank; i++) {
        int a = perm[i];
        if (din[a] == 1) continue;
        int joins = gn > 0 && a > last;
        for (int k = last + 1; joins && k < a; k++) joins = din[k] == 1;
        if (joins) gsize[gn - 1] *= din[a];
        else { gfirst[gn] = a; gsize[gn] = din[a]; gn++; }
        last = a;
    }
    *m = gn;
    for (int g = 0; g < gn; g++) {   /* the groups' input order is their first input axis' order */
        int rin = 0;
        for (int h = 0; h < gn; h++) rin += gfirst[h] < gfirst[g];
        p[g] = rin;
        d[rin] = gsize[g];
    }
}

/* dst (dims d[p[i]]) (mode) src (dims d) permuted: merged m, d, p. */
static void tr_run(float *dst, const float *src, int m, const int64_t *d, const int *p, int mode, void *stream) {
    int64_t n = 1;
    for (int a = 0; a < m; a++) n *= d[a];
    if (n <= 0) return;
    int ident = 1;
    for (int i = 0; i < m; i++) ident &= p[i] == i;
    if (ident) {
        OT_LAUNCH(tr_flat, tr_blocks(n, TR_BLOCK), TR_BLOCK, 0, stream, dst, src, n, mode);
        return;
    }
    int64_t is[TR_MAXR], os[TR_MAXR], od[TR_MAXR];   /* input strides, output strides, output dims */
    is[m - 1] = 1;
    for (int a = m - 2; a >= 0; a--) is[a] = is[a + 1] * d[a + 1];
    for (int i = 0; i < m; i++) od[i] = d[p[i]];
    os[m - 1] = 1;
    for (int i = m - 2; i >= 0; i--) os[i] = os[i + 1] * od[i + 1];
    int pa = 0;   /* the output axis of the input's innermost axis */
    while (p[pa] != m - 1) pa++;
    int64_t da = d[m - 1], dq = od[m - 1];
    if (pa != m - 1 && da >= TR_TILE_MIN && dq >= TR_TILE_MIN) {
        tr_tile t;
        memset(&t, 0, sizeof t);
        for (int i = 0; i < m - 1; i++)
            if (i != pa) {
                t.bd[t.nb] = od[i];
                t.bis[t.nb] = is[p[i]];
                t.bos[t.nb] = os[i];
                t.nb++;
            }
        t.da = da;
        t.dq = dq;
        t.isq = is[p[m - 1]];
        t.osa = os[pa];
        t.ta = (da + TR_TILE - 1) / TR_TILE;
        t.tq = (dq + TR_TILE - 1) / TR_TILE;
        t.tiles = n / (da * dq) * t.ta * t.tq;
        OT_LAUNCH(tr_tiled, tr_blocks(t.tiles, 1), dim3(TR_TILE, TR_ROWS), 0, stream, dst, src, t, mode);
        return;
    }
    tr_gen g;
    memset(&g, 0, sizeof g);
    g.m = m;
    for (int i = 0; i < m; i++) {
        g.od[i] = od[i];
        g.is[i] = is[p[i]];
    }
    OT_LAUNCH(tr_generic, tr_blocks(n, TR_BLOCK), TR_BLOCK, 0, stream, dst, src, g, n, mode);
}

extern "C" void ot_cuda_transpose_fwd(float *y, const float *x, int rank, const int64_t *din, const int *perm,
                                      void *stream) {
    int m, p[TR_MAXR];
    int64_t d[TR_MAXR];
    tr_merge(rank, din, perm, &m, d, p);
    tr_run(y, x, m, d, p, TR_COPY, stream);
}

extern "C" void ot_cuda_transpose_bwd(float *dx, const float *dy, int rank, const int64_t *din, const int *perm,
                                      int accumulate, void *stream) {
    int m, p[TR_MAXR], ip[TR_MAXR];
    int64_t d[TR_MAXR], od[TR_MAXR];
    tr_merge(rank, din, perm, &m, d, p);
    /* dy has dims d[p[i]]; dx's axis j is dy's axis ip[j] (p[ip[j]] = j). */
    for (int i = 0; i < m; i++) {
        od[i] = d[p[i]];
        ip[p[i]] = i;
    }
    tr_run(dx, dy, m, od, ip, accumulate ? TR_ADD : TR_SET, stream);
}
