/* test_nccl.c (label cuda): the NCCL path of data-parallel training on a GPU.
 * A communicator over the ranks (one without mpirun) on device 0, then the
 * in-place sum of a buffer the size of YOLOv5s's gradients (7.2M floats):
 * each element must come back as (ranks) times its value, exactly (small
 * integers). Without a GPU (CI), or without CUDA in the build, it says so and
 * skips. */
#include "core/device.h"
#include "core/dist.h"
#include "core/nccl.h"
#include "testutil.h"
#include <string.h>
#ifdef ONNXT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

START_TEST(nccl_sum_over_ranks) {
#ifdef ONNXT_HAVE_CUDA
    ot_error e;
    ot_nccl *c;
    ck_assert_msg(ot_nccl_create(0, &c, &e) == OT_OK, "%s", e.msg);
    const int64_t n = 7235389;
    float *h = malloc(sizeof(float) * (size_t)n), *d = NULL;
    for (int64_t i = 0; i < n; i++) h[i] = (float)(i % 97);
    ck_assert_int_eq(cudaMalloc((void **)&d, sizeof(float) * (size_t)n), cudaSuccess);
    ck_assert_int_eq(cudaMemcpy(d, h, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice), cudaSuccess);
    ck_assert_msg(ot_nccl_sum_f32(c, d, n, NULL, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(cudaMemcpy(h, d, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost), cudaSuccess);
    int bad = 0, r = ot_nccl_ranks(c);
    for (int64_t i = 0; i < n; i++) bad += h[i] != (float)(r * (i % 97));
    ck_assert_msg(bad == 0, "%d wrong sums over %d ranks", bad, r);
    cudaFree(d);
    free(h);
    ot_nccl_destroy(c);
#endif
}
END_TEST

int main(void) {
    char why[256];
    if (ot_cuda_device_count(why, sizeof why) == 0) {
        fprintf(stderr, "SKIP: no CUDA device (%s); the NCCL test needs a GPU\n", why);
        return OT_SKIP;
    }
    ot_error e;
    if (ot_dist_init(NULL, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    Suite *s = suite_create("nccl");
    TCase *t = tcase_create("nccl");
    tcase_add_test(t, nccl_sum_over_ranks);
    suite_add_tcase(s, t);
    int rc = tu_main(s);
    ot_dist_finalize();
    return rc;
}
