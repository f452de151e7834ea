/* yolo_loss.cu: the device part of the YOLOv5 v7.0 loss on CUDA
 * (kernels/cuda/cuda_kernels.h), the twin of kernels/yolo_loss.c with the
 * per-element math of kernels/yolo_loss_math.h.
 *
 *   targets(A, l)     link: every target pushes itself on its cell's chain
 *                     (an integer exchange on `last`, the previous head into
 *                     link[q]). main: one thread per target walks its chain;
 *                     the chain's largest target owns the cell and runs every
 *                     member in ascending order (CIoU forward and backward,
 *                     class BCE, tobj, the gradient adds), so a cell shared by
 *                     several targets gets the CPU's adds in the CPU's order,
 *                     and no two threads touch one cell. Each block writes its
 *                     (box, class) partial sums; reset puts -1 back in `last`;
 *                     one block sums the partials into sums[0..1].
 *   objectness(A, l)  owner: atomicMax(last[cell], q), the CPU's last writer.
 *                     cells: one thread per cell, BCE with target 0, the matched
 *                     cell's replacement term with tobj[last], the gradient
 *                     (the CPU's two float adds), last reset to -1; per-block
 *                     partials, then one block sums them into sums[2].
 *   items(A)          one thread: the CPU's formula over the sums.
 *
 * The gradients are the CPU's operations in the CPU's order; the sums differ
 * from the CPU's sequential double sums only in the order of the adds. On a
 * GPU, exp/log1p/atan/pow and FMA contraction of the double math add a few
 * ulps; under the CPU executor the per-element values are the CPU's bits. */
#include "compat.h"

extern "C" {
#include "cuda_kernels.h"
}
#include "../yolo_loss_math.h"

#define YL_THREADS 256
#define YL_MAX_BLOCKS (OT_YOLO_LOSS_PARTS / 2) /* two partials per block */

#if defined(__CUDACC__)
static __device__ __forceinline__ int yl_exch(int *p, int v) { return atomicExch(p, v); }
#else
static inline int yl_exch(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
#endif

/* the kernels' view of one head: host-computed constants with the CPU's expressions (those of the target
 * count are computed by the kernels: yl_n, yl_gains) */
typedef struct yl_k {
    ot_yolo_loss_layer_args L;
    int bs, na, nc;
    float box, cls;
    double cp, cn, gobj, cls_pw, obj_pw, fl_gamma;
    double *part;
} yl_k;

/* the head's target count: from device memory when given (graph replays), else the argument */
static __device__ __forceinline__ int yl_n(const ot_yolo_loss_layer_args &L) { return L.count ? *L.count : L.n; }

/* kernels/yolo_loss.c's gradient gains of the box and class terms for n targets */
static __device__ void yl_gains(const yl_k &k, int n, double *gsc, double *gcls) {
    *gsc = k.L.dp && n ? -(double)k.box * k.bs / (double)n : 0;
    *gcls = k.L.dp && n ? (double)k.cls * k.bs / ((double)n * k.nc) : 0;
}

static yl_k yl_make(const ot_yolo_loss_args *A, int l) {
    yl_k k;
    const ot_yolo_loss_layer_args *L = &A->layer[l];
    const int bs = A->bs, nc = A->nc;
    const int64_t nobj = (int64_t)bs * A->na * L->ny * L->nx;
    k.L = *L;
    if (k.L.cap < k.L.n || !k.L.count) k.L.cap = k.L.n;
    k.bs = bs;
    k.na = A->na;
    k.nc = nc;
    k.box = A->box;
    k.cls = A->cls;
    /* kernels/yolo_loss.c's expressions, evaluated the same way */
    k.cp = 1.0 - 0.5 * A->label_smoothing;
    k.cn = 0.5 * A->label_smoothing;
    k.gobj = (double)A->obj * L->balance * bs / (double)nobj;
    k.cls_pw = A->cls_pw;
    k.obj_pw = A->obj_pw;
    k.fl_gamma = A->fl_gamma;
    k.part = A->part;
    return k;
}

static unsigned yl_blocks(int64_t n) {
    int64_t b = (n + YL_THREADS - 1) / YL_THREADS;
    return (unsigned)(b < 1 ? 1 : b > YL_MAX_BLOCKS ? YL_MAX_BLOCKS : b);
}

/* the objectness cell of target q: ((b * na + a) * ny + gj) * nx + gi */
static __device__ __forceinline__ int64_t yl_cell(const yl_k &k, int q) {
    return (((int64_t)k.L.b[q] * k.na + k.L.a[q]) * k.L.ny + k.L.gj[q]) * k.L.nx + k.L.gi[q];
}

/* Block tree sums of two doubles per thread (blockDim.x == YL_THREADS); thread 0 writes them to out[0..1]. */
static __device__ void yl_block_sum2(double x0, double x1, double *out) {
    __shared__ double sh[2][YL_THREADS];
    sh[0][threadIdx.x] = x0;
    sh[1][threadIdx.x] = x1;
    __syncthreads();
    for (unsigned w = YL_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) {
            sh[0][threadIdx.x] += sh[0][threadIdx.x + w];
            sh[1][threadIdx.x] += sh[1][threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        out[0] = sh[0][0];
        out[1] = sh[1][0];
    }
}

/* ---- targets ---- */

__global__ void yl_link_kernel(yl_k k) {
    const int n = yl_n(k.L);
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n; q += gridDim.x * blockDim.x)
        k.L.link[q] = yl_exch(k.L.last + yl_cell(k, q), q);
}

/* one target: kernels/yolo_loss.c cpu_targets' loop body */
static __device__ void yl_target(const yl_k &k, int q, double gsc, double gcls, double *lb, double *lc) {
    const ot_yolo_loss_layer_args &L = k.L;
    const int na = k.na, no = k.nc + 5, nc = k.nc;
    const int64_t hw = (int64_t)L.ny * L.nx;
    const int64_t at = (((int64_t)L.b[q] * na + L.a[q]) * no) * hw + (int64_t)L.gj[q] * L.nx + L.gi[q];
    const float *pc = L.p + at;
    float *dl = L.dp;
    double aw = L.anc[2 * q], ah = L.anc[2 * q + 1], s[4], pb[4];
    ot_yl_pbox(pc[0], pc[hw], pc[2 * hw], pc[3 * hw], aw, ah, s, pb);
    double tb[4] = {L.tbox[4 * q], L.tbox[4 * q + 1], L.tbox[4 * q + 2], L.tbox[4 * q + 3]}, d[4] = {0, 0, 0, 0};
    double ci = ot_yl_ciou(pb, tb, gsc, dl ? d : NULL);
    *lb += 1.0 - ci;
    L.tobj[q] = (float)fmax(ci, 0.0);
    if (dl) {
        float g[4];
        ot_yl_box_grad(d, s, aw, ah, g);
        for (int j = 0; j < 4; j++) dl[at + j * hw] += g[j];
    }
    if (nc > 1) {
        int c = L.c[q];
        for (int j = 0; j < nc; j++) {
            double dx, x = pc[(5 + j) * hw];
            *lc += ot_yl_bce(x, j == c ? k.cp : k.cn, k.cls_pw, k.fl_gamma, &dx);
            if (dl) dl[at + (5 + j) * hw] += (float)(gcls * dx);
        }
    }
}

__global__ void yl_targets_kernel(yl_k k) {
    const int32_t *link = k.L.link;
    const int n = yl_n(k.L);
    double lb = 0, lc = 0, gsc, gcls;
    yl_gains(k, n, &gsc, &gcls);
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n; q += gridDim.x * blockDim.x) {
        const int head = k.L.last[yl_cell(k, q)];
        int own = -1;
        for (int h = head; h >= 0; h = link[h]) own = h > own ? h : own;
        if (own != q) continue; /* the cell's largest target runs the cell */
        /* the members in ascending order: each step the smallest member above the previous one */
        for (int prev = -1; prev < q;) {
            int next = q;
            for (int h = head; h >= 0; h = link[h])
                if (h > prev && h < next) next = h;
            yl_target(k, next, gsc, gcls, &lb, &lc);
            prev = next;
        }
    }
    yl_block_sum2(lb, lc, k.part + 2 * blockIdx.x);
}

__global__ void yl_reset_kernel(yl_k k) {
    const int n = yl_n(k.L);
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n; q += gridDim.x * blockDim.x) k.L.last[yl_cell(k, q)] = -1;
}

/* one block: out[j] = sum over blocks of part[2 * block + j] for j < m, in a fixed tree */
__global__ void yl_reduce_kernel(const double *part, int blocks, int m, double *out) {
    double x0 = 0, x1 = 0;
    for (int i = threadIdx.x; i < blocks; i += blockDim.x) {
        x0 += part[2 * i];
        x1 += part[2 * i + 1];
    }
    __shared__ double r[2];
    yl_block_sum2(x0, x1, r);
    __syncthreads();
    if (threadIdx.x == 0) {
        out[0] = r[0];
        if (m > 1) out[1] = r[1];
    }
}

extern "C" void ot_cuda_yolo_loss_targets(const ot_yolo_loss_args *A, int l, void *stream) {
    yl_k k = yl_make(A, l);
    const int n = k.L.cap; /* every target q runs in block q / YL_THREADS whatever the grid beyond them */
    unsigned blocks = yl_blocks(n);
    if (n > 0) {
        OT_LAUNCH(yl_link_kernel, dim3(blocks), dim3(YL_THREADS), 0, stream, k);
        OT_LAUNCH(yl_targets_kernel, dim3(blocks), dim3(YL_THREADS), 0, stream, k);
        OT_LAUNCH(yl_reset_kernel, dim3(blocks), dim3(YL_THREADS), 0, stream, k);
    }
    OT_LAUNCH(yl_reduce_kernel, dim3(1), dim3(YL_THREADS), 0, stream, (const double *)k.part, n > 0 ? (int)blocks : 0, 2, k.L.sums);
}

/* ---- objectness ---- */

__global__ void yl_owner_kernel(yl_k k) {
    const int n = yl_n(k.L);
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n; q += gridDim.x * blockDim.x) atomicMax(k.L.last + yl_cell(k, q), q);
}

__global__ void yl_cells_kernel(yl_k k, int64_t ncell) {
    const ot_yolo_loss_layer_args &L = k.L;
    const int no = k.nc + 5;
    const int64_t hw = (int64_t)L.ny * L.nx;
    double lo = 0;
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < ncell; c += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ba = c / hw, r = c - ba * hw, at = (ba * no + 4) * hw + r;
        double x = L.p[at], d0;
        double l0 = ot_yl_bce(x, 0.0, k.obj_pw, k.fl_gamma, &d0);
        lo += l0;
        const int q = L.last[c];
        float g1 = 0;
        if (q >= 0) {
            double d1, l1 = ot_yl_bce(x, L.tobj[q], k.obj_pw, k.fl_gamma, &d1);
            lo += l1 - l0;
            g1 = (float)(k.gobj * (d1 - d0));
            L.last[c] = -1;
        }
        if (L.dp) {
            float v = L.dp[at] + (float)(k.gobj * d0); /* the CPU: every cell with target 0 ... */
            if (q >= 0) v += g1;                      /* ... then the matched cell's replacement */
            L.dp[at] = v;
        }
    }
    yl_block_sum2(lo, 0.0, k.part + 2 * blockIdx.x);
}

extern "C" void ot_cuda_yolo_loss_objectness(const ot_yolo_loss_args *A, int l, void *stream) {
    yl_k k = yl_make(A, l);
    const int64_t ncell = (int64_t)A->bs * A->na * k.L.ny * k.L.nx;
    if (k.L.cap > 0) OT_LAUNCH(yl_owner_kernel, dim3(yl_blocks(k.L.cap)), dim3(YL_THREADS), 0, stream, k);
    unsigned blocks = yl_blocks(ncell);
    OT_LAUNCH(yl_cells_kernel, dim3(blocks), dim3(YL_THREADS), 0, stream, k, ncell);
    OT_LAUNCH(yl_reduce_kernel, dim3(1), dim3(YL_THREADS), 0, stream, (const double *)k.part, (int)blocks, 1, k.L.sums + 2);
}

/* ---- items ---- */

typedef struct yl_items_k {
    int nl, bs, na, nc;
    float box, obj, cls;
    int n[OT_MAX_HEADS];
    const int32_t *count[OT_MAX_HEADS]; /* non-NULL: n[l] from device memory */
    int64_t nobj[OT_MAX_HEADS];
    float balance[OT_MAX_HEADS];
    const double *sums[OT_MAX_HEADS];
    double *items;
} yl_items_k;

/* kernels/yolo_loss.c cpu_items */
__global__ void yl_items_kernel(yl_items_k k) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double lbox = 0, lobj = 0, lcls = 0;
    for (int l = 0; l < k.nl; l++) {
        const double *s = k.sums[l];
        const int n = k.count[l] ? *k.count[l] : k.n[l];
        if (n) {
            lbox += s[0] / (double)n;
            if (k.nc > 1) lcls += s[1] / ((double)n * k.nc);
        }
        lobj += s[2] / (double)k.nobj[l] * k.balance[l];
    }
    double *it = k.items;
    it[0] = lbox * k.box;
    it[1] = lobj * k.obj;
    it[2] = lcls * k.cls;
    it[3] = (it[0] + it[1] + it[2]) * k.bs;
}

extern "C" void ot_cuda_yolo_loss_items(const ot_yolo_loss_args *A, void *stream) {
    yl_items_k k;
    k.nl = A->nl;
    k.bs = A->bs;
    k.na = A->na;
    k.nc = A->nc;
    k.box = A->box;
    k.obj = A->obj;
    k.cls = A->cls;
    for (int l = 0; l < OT_MAX_HEADS; l++) {
        const ot_yolo_loss_layer_args *L = &A->layer[l];
        k.n[l] = l < A->nl ? L->n : 0;
        k.count[l] = l < A->nl ? L->count : NULL;
        k.nobj[l] = l < A->nl ? (int64_t)A->bs * A->na * L->ny * L->nx : 1;
        k.balance[l] = L->balance;
        k.sums[l] = L->sums;
    }
    k.items = A->items;
    OT_LAUNCH(yl_items_kernel, dim3(1), dim3(1), 0, stream, k);
}
