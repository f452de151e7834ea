/* test_cudaemu_exec.c (ctest label cudaemu): the CPU executor behind
 * kernels/cuda/compat.h, through the small kernels of
 * kernels/cuda/emu_selftest.cu, each compared with plain C on cpu-guard
 * memory: grid-stride loops over odd sizes, 3D grid/block indices, block tree
 * reductions in static and dynamic __shared__ with __syncthreads, atomicAdd /
 * atomicMax from many blocks, warp sums by __shfl_down_sync and
 * __shfl_xor_sync (float, double, int). The reductions replay the kernels'
 * exact orders in C, so every comparison is bit for bit. And the guard: a host
 * read of device memory after a launch is a SIGSEGV; a launch with an invalid
 * configuration aborts naming the kernel. */
#include "core/backend.h"
#include "kernels/cuda/cuda_kernels.h"
#include "cudaemu_graph.h" /* rnext, rsym1/runi, dev_from, host_from */
#include "testutil.h"
#include <signal.h>
#include <string.h>

static ot_backend *G;


static float *rand_floats(int64_t n, uint64_t seed) {
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < n; i++) x[i] = rsym1(&seed);
    return x;
}

static void setup(void) { G = ot_backend_cpu_guard(); }

START_TEST(grid_stride_odd) {
    int64_t sizes[] = {1, 191, 192, 193, 1001};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int64_t n = sizes[k];
        float *x = rand_floats(n, 7 + k);
        float *dx = dev_from(x, sizeof(float) * n), *dy = dev_from(NULL, sizeof(float) * n);
        ot_cuda_selftest_gridstride(dy, dx, n, NULL);
        float *y = host_from(dy, sizeof(float) * n);
        for (int64_t i = 0; i < n; i++) {
            float want = 2.0f * x[i] + (float)i;
            ck_assert_msg(memcmp(&y[i], &want, sizeof want) == 0, "n=%lld: y[%lld] = %.9g, expected %.9g", (long long)n,
                          (long long)i, y[i], want);
        }
        free(x); free(y);
        ot_be_free(G, dx); ot_be_free(G, dy);
    }
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(indices_3d) {
    int nx = 13, ny = 7, nz = 5;
    size_t bytes = sizeof(int) * (size_t)(nx * ny * nz);
    int *d = dev_from(NULL, bytes);
    ot_be_memset(G, d, 0xff, bytes);
    ot_cuda_selftest_index3d(d, nx, ny, nz, NULL);
    int *o = host_from(d, bytes);
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++)
                ck_assert_int_eq(o[(z * ny + y) * nx + x], x + 1000 * y + 1000000 * z);
    free(o);
    ot_be_free(G, d);
}
END_TEST

/* The kernel's tree: s[t] += s[t + half] for half = block/2 .. 1, zeros past n. */
static float tree_ref(const float *x, int64_t n, int64_t start, int block) {
    float s[1024];
    for (int t = 0; t < block; t++) s[t] = start + t < n ? x[start + t] : 0.0f;
    for (int half = block / 2; half > 0; half /= 2)
        for (int t = 0; t < half; t++) s[t] += s[t + half];
    return s[0];
}

static void check_block_sum(int64_t n, int block, int dynamic) {
    float *x = rand_floats(n, (uint64_t)n * 31 + (uint64_t)block);
    int64_t nb = (n + block - 1) / block;
    float *dx = dev_from(x, sizeof(float) * n), *dp = dev_from(NULL, sizeof(float) * nb);
    ot_cuda_selftest_block_sum(dp, dx, n, block, dynamic, NULL);
    float *p = host_from(dp, sizeof(float) * nb);
    for (int64_t b = 0; b < nb; b++) {
        float want = tree_ref(x, n, b * block, block);
        ck_assert_msg(memcmp(&p[b], &want, sizeof want) == 0, "n=%lld block=%d %s: block %lld sum %.9g, expected %.9g",
                      (long long)n, block, dynamic ? "dynamic" : "static", (long long)b, p[b], want);
    }
    free(x); free(p);
    ot_be_free(G, dx); ot_be_free(G, dp);
}

START_TEST(block_reduce_static_shared) {
    check_block_sum(1, 256, 0);
    check_block_sum(255, 256, 0);
    check_block_sum(1000, 256, 0);
    check_block_sum(4099, 256, 0);
}
END_TEST

START_TEST(block_reduce_dynamic_shared) {
    check_block_sum(1, 64, 1);
    check_block_sum(777, 128, 1);
    check_block_sum(3001, 1024, 1);
    check_block_sum(100, 2, 1);
}
END_TEST

START_TEST(atomics_from_many_blocks) {
    int64_t n = 5003;   /* 40 blocks of 128, the last partial */
    float *x = malloc(sizeof(float) * n);
    int *ix = malloc(sizeof(int) * n);
    uint64_t s = 99;
    double want = 0;
    unsigned long long wull = 0;
    int wmax = -1000000;
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)((int)(rnext(&s) % 97) - 48) / 4.0f;   /* quarters: every order sums exactly in double */
        ix[i] = (int)(rnext(&s) % 2000001) - 1000000;
        want += x[i];
        wull += (unsigned long long)(long long)ix[i] + (1ull << 40);
        if (ix[i] > wmax) wmax = ix[i];
    }
    double zero = 0;
    float fzero = 0;
    int c0 = 17, m0 = -2000000;
    unsigned u0 = 4294967000u;   /* wraps, as unsigned arithmetic does */
    unsigned long long ull0 = 5;
    double *dsum = dev_from(&zero, sizeof zero);
    float *dfsum = dev_from(&fzero, sizeof fzero);
    unsigned *ducount = dev_from(&u0, sizeof u0);
    unsigned long long *dull = dev_from(&ull0, sizeof ull0);
    int *dcount = dev_from(&c0, sizeof c0), *dmax = dev_from(&m0, sizeof m0);
    float *dx = dev_from(x, sizeof(float) * n);
    int *dix = dev_from(ix, sizeof(int) * n);
    for (int rep = 0; rep < 2; rep++) ot_cuda_selftest_atomics(dsum, dfsum, dcount, ducount, dull, dmax, dx, dix, n, NULL);
    double sum;
    float fsum;
    unsigned ucount;
    unsigned long long ull;
    int count, mx;
    ot_be_download(G, &sum, dsum, sizeof sum);
    ot_be_download(G, &fsum, dfsum, sizeof fsum);
    ot_be_download(G, &ucount, ducount, sizeof ucount);
    ot_be_download(G, &ull, dull, sizeof ull);
    ot_be_download(G, &count, dcount, sizeof count);
    ot_be_download(G, &mx, dmax, sizeof mx);
    ck_assert_msg(sum == 2 * want, "atomicAdd(double): %.17g, expected %.17g", sum, 2 * want);
    /* quarters below 2^21 in size: every order also sums exactly in float */
    ck_assert_msg(fsum == (float)(2 * want), "atomicAdd(float): %.9g, expected %.9g", fsum, 2 * want);
    ck_assert_int_eq(count, 17 + 2 * (int)n);
    ck_assert_uint_eq(ucount, 4294967000u + 2u * (unsigned)n);
    ck_assert_msg(ull == 5 + 2 * wull, "atomicAdd(unsigned long long): %llu, expected %llu", ull, 5 + 2 * wull);
    ck_assert_int_eq(mx, wmax);
    free(x); free(ix);
    ot_be_free(G, dsum); ot_be_free(G, dfsum); ot_be_free(G, ducount); ot_be_free(G, dull); ot_be_free(G, dcount); ot_be_free(G, dmax); ot_be_free(G, dx); ot_be_free(G, dix);
}
END_TEST

/* The 32 lanes of one warp, replayed: down (lane 0's value) and xor (every lane). */
static void warp_ref(const float *x, int64_t n, int64_t base, float *down, double *down_d, float *xr, int *lanes) {
    float a[32], b[32], na[32], nb[32];
    double d[32], nd[32];
    int c[32], ncnt[32];
    for (int l = 0; l < 32; l++) {
        float v = base + l < n ? x[base + l] : 0.0f;
        a[l] = b[l] = v;
        d[l] = v;
        c[l] = base + l < n;
    }
    for (int off = 16; off > 0; off /= 2) {
        for (int l = 0; l < 32; l++) {
            int src = l + off < 32 ? l + off : l;
            na[l] = a[l] + a[src];
            nd[l] = d[l] + d[src];
            nb[l] = b[l] + b[l ^ off];
            ncnt[l] = c[l] + c[l ^ off];
        }
        memcpy(a, na, sizeof a); memcpy(d, nd, sizeof d); memcpy(b, nb, sizeof b); memcpy(c, ncnt, sizeof c);
    }
    *down = a[0];
    *down_d = d[0];
    *lanes = c[0];
    for (int l = 0; l < 32; l++) xr[l] = b[l];
    for (int l = 1; l < 32; l++) ck_assert_int_eq(c[l], c[0]);
}

static void check_warp(int64_t n, int block) {
    float *x = rand_floats(n, (uint64_t)n + 5);
    int64_t nthreads = (n + block - 1) / block * block, nw = nthreads / 32;
    float *dx = dev_from(x, sizeof(float) * n), *ddown = dev_from(NULL, sizeof(float) * nw),
          *dxr = dev_from(NULL, sizeof(float) * n);
    double *ddd = dev_from(NULL, sizeof(double) * nw);
    int *dl = dev_from(NULL, sizeof(int) * nw);
    ot_cuda_selftest_warp_sum(ddown, ddd, dxr, dl, dx, n, block, NULL);
    float *down = host_from(ddown, sizeof(float) * nw), *xr = host_from(dxr, sizeof(float) * n);
    double *dd = host_from(ddd, sizeof(double) * nw);
    int *lanes = host_from(dl, sizeof(int) * nw);
    for (int64_t k = 0; k < nw; k++) {
        float wd, wxr[32];
        double wdd;
        int wl;
        warp_ref(x, n, k * 32, &wd, &wdd, wxr, &wl);
        ck_assert_msg(memcmp(&down[k], &wd, sizeof wd) == 0, "n=%lld block=%d warp %lld: shfl_down %.9g, expected %.9g",
                      (long long)n, block, (long long)k, down[k], wd);
        ck_assert_msg(dd[k] == wdd, "warp %lld: shfl_down(double) %.17g, expected %.17g", (long long)k, dd[k], wdd);
        ck_assert_int_eq(lanes[k], wl);
        for (int l = 0; l < 32 && k * 32 + l < n; l++)
            ck_assert_msg(memcmp(&xr[k * 32 + l], &wxr[l], sizeof(float)) == 0, "warp %lld lane %d: shfl_xor %.9g, expected %.9g",
                          (long long)k, l, xr[k * 32 + l], wxr[l]);
    }
    free(x); free(down); free(xr); free(dd); free(lanes);
    ot_be_free(G, dx); ot_be_free(G, ddown); ot_be_free(G, dxr); ot_be_free(G, ddd); ot_be_free(G, dl);
}

START_TEST(warp_shuffles) {
    check_warp(1, 32);
    check_warp(1000, 96);
    check_warp(4097, 256);
    check_warp(33, 1024);
}
END_TEST

/* A host read of device memory after a launch: the guard is closed again. */
START_TEST(host_read_of_device_memory_faults) {
    float x[5] = {1, 2, 3, 4, 5};
    float *dx = dev_from(x, sizeof x), *dy = dev_from(NULL, sizeof x);
    ot_cuda_selftest_gridstride(dy, dx, 5, NULL);
    volatile float v = dy[2];   /* SIGSEGV here */
    (void)v;
    ck_abort_msg("a host read of guard memory after a launch did not fault");
}
END_TEST

/* 2048 threads per block: CUDA's launch fails; the executor aborts naming the kernel. */
START_TEST(invalid_launch_aborts) {
    float x[4] = {0};
    float *dx = dev_from(x, sizeof x), *dp = dev_from(NULL, sizeof x);
    ot_cuda_selftest_block_sum(dp, dx, 4, 2048, 1, NULL);
    ck_abort_msg("an invalid launch configuration was accepted");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cudaemu_exec");
    TCase *t = tcase_create("executor");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, grid_stride_odd);
    tcase_add_test(t, indices_3d);
    tcase_add_test(t, block_reduce_static_shared);
    tcase_add_test(t, block_reduce_dynamic_shared);
    tcase_add_test(t, atomics_from_many_blocks);
    tcase_add_test(t, warp_shuffles);
    tu_add_fault_test(t, host_read_of_device_memory_faults);
    tcase_add_test_raise_signal(t, invalid_launch_aborts, SIGABRT);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_main(suite()); }
