/* test_cuda_device.c (label cuda): the CUDA backend finds the GPU. Skips with
 * a message on machines without one, as CI has none. */
#include "core/device.h"
#include "testutil.h"
#include <stdio.h>

int main(void) {
    char why[256] = "";
    int n = ot_cuda_device_count(why, sizeof why);
    if (n <= 0) {
        printf("SKIP: %s\n", why);
        return OT_SKIP;
    }
    printf("%d CUDA device(s)\n", n);
    bool pinned = false;
    void *p = ot_host_alloc(1 << 20, &pinned);
    if (!p || !pinned) { printf("FAIL: batch memory is not page-locked with a GPU present\n"); return 1; }
    ot_host_free(p, pinned);
    return 0;
}
