/* test_cudaemu_decode.c (ctest label cudaemu): kernels/cuda/decode.cu on the
 * CPU executor against the CPU Detect decode (kernels/decode.c, through
 * ot_decode_kernels_for(OT_DEV_CPU)), BIT FOR BIT: both run
 * kernels/decode.h's ot_decode_cell on every row (under the executor expf is
 * the host's on both sides; on a GPU CUDA's expf may differ by a few ulps).
 * Random head maps on cpu-guard memory, 1 to 4 layers with odd and 1-sized
 * grids, 1 to 3 anchors, no from 5 (nc 0) to 5 + 80, images 1 to 3; pred
 * starts as NaN bytes so a row the kernel skips fails. */
#include "core/backend.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/decode.h"
#include "testutil.h"
#include <string.h>

static uint64_t rnext(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rfloat(uint64_t *s) { return (float)((double)(rnext(s) >> 11) * 0x1p-53 * 16.0 - 8.0); }

static void check_case(int n, int nl, int na, int no, const int64_t *ny, const int64_t *nx, uint64_t seed) {
    ot_decode_args a;
    memset(&a, 0, sizeof a);
    a.n = n; a.nl = nl; a.na = na; a.no = no;
    float *hmaps[OT_MAX_HEADS] = {0};
    const float *gmaps[OT_MAX_HEADS] = {0};
    ot_backend *G = ot_backend_cpu_guard();
    int64_t msize[OT_MAX_HEADS];
    for (int l = 0; l < nl; l++) {
        a.ny[l] = ny[l];
        a.nx[l] = nx[l];
        a.stride[l] = (float)(8 << l);
        for (int k = 0; k < na; k++) {
            a.anchors[l][k][0] = 4.0f + (float)(rnext(&seed) % 300) * 0.37f;
            a.anchors[l][k][1] = 4.0f + (float)(rnext(&seed) % 300) * 0.41f;
        }
        a.total += (int64_t)na * ny[l] * nx[l];
        msize[l] = (int64_t)n * na * no * ny[l] * nx[l];
        hmaps[l] = malloc(sizeof(float) * (size_t)msize[l]);
        for (int64_t i = 0; i < msize[l]; i++) hmaps[l][i] = rfloat(&seed);
        float *gm = ot_be_alloc(G, sizeof(float) * (size_t)msize[l]);
        ot_be_upload(G, gm, hmaps[l], sizeof(float) * (size_t)msize[l]);
        gmaps[l] = gm;
    }
    const int64_t np = (int64_t)n * a.total * no;
    float *ref = malloc(sizeof(float) * (size_t)np), *got = malloc(sizeof(float) * (size_t)np);
    ot_decode_kernels_for(OT_DEV_CPU)->decode(ot_backend_cpu(), (const float *const *)hmaps, &a, ref);

    float *gp = ot_be_alloc(G, sizeof(float) * (size_t)np);
    ot_be_memset(G, gp, 0xff, sizeof(float) * (size_t)np);
    ot_cuda_decode(gmaps, &a, gp, NULL);
    ot_be_download(G, got, gp, sizeof(float) * (size_t)np);
    for (int64_t i = 0; i < np; i++)
        ck_assert_msg(memcmp(&got[i], &ref[i], sizeof(float)) == 0,
                      "n %d nl %d na %d no %d: pred row %lld col %lld = %.9g, CPU %.9g", n, nl, na, no,
                      (long long)(i / no), (long long)(i % no), (double)got[i], (double)ref[i]);
    ot_be_free(G, gp);
    for (int l = 0; l < nl; l++) {
        ot_be_free(G, (void *)gmaps[l]);
        free(hmaps[l]);
    }
    free(ref);
    free(got);
}

START_TEST(matches_cpu_decode) {
    /* YOLOv5's three heads at a 64x96 input (8x12, 4x6, 2x3) with nc 80 */
    check_case(2, 3, 3, 85, (const int64_t[]){8, 4, 2}, (const int64_t[]){12, 6, 3}, 1);
    /* 1-sized and odd grids, nc 0 and 1, one image, one anchor */
    check_case(1, 1, 1, 5, (const int64_t[]){1}, (const int64_t[]){1}, 2);
    check_case(3, 2, 1, 6, (const int64_t[]){7, 1}, (const int64_t[]){1, 13}, 3);
    check_case(1, 4, 2, 7, (const int64_t[]){5, 3, 2, 1}, (const int64_t[]){9, 5, 3, 1}, 4);
    check_case(3, 3, 3, 8, (const int64_t[]){17, 9, 5}, (const int64_t[]){11, 6, 3}, 5);
    ck_assert_int_eq(ot_guard_live(), 0);
}
END_TEST

START_TEST(random_heads) {
    uint64_t s = 31337;
    for (int k = 0; k < 10; k++) {
        int n = 1 + (int)(rnext(&s) % 3), nl = 1 + (int)(rnext(&s) % 4), na = 1 + (int)(rnext(&s) % 3);
        int no = 5 + (int)(rnext(&s) % 12);
        int64_t ny[OT_MAX_HEADS], nx[OT_MAX_HEADS];
        for (int l = 0; l < nl; l++) {
            ny[l] = 1 + (int64_t)(rnext(&s) % 15);
            nx[l] = 1 + (int64_t)(rnext(&s) % 15);
        }
        check_case(n, nl, na, no, ny, nx, rnext(&s));
    }
}
END_TEST

/* No images or no rows: nothing is launched or touched. */
START_TEST(empty_is_a_no_op) {
    ot_decode_args a;
    memset(&a, 0, sizeof a);
    a.nl = 1; a.na = 3; a.no = 85; a.ny[0] = 4; a.nx[0] = 4; a.total = 48;
    ot_cuda_decode(NULL, &a, NULL, NULL);
    a.n = 2; a.ny[0] = 0; a.total = 0;
    ot_cuda_decode(NULL, &a, NULL, NULL);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("cudaemu_decode");
    TCase *t = tcase_create("decode");
    tcase_add_test(t, matches_cpu_decode);
    tcase_add_test(t, random_heads);
    tcase_add_test(t, empty_is_a_no_op);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_main(suite()); }
