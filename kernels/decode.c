/* decode.c: the CPU implementation of the Detect decode (kernels/decode.h). */
#include "decode.h"
#include "device_kernels.h"

static void cpu_decode(ot_backend *be, const float *const *maps, const ot_decode_args *a, float *pred) {
    const int n = a->n, na = a->na, no = a->no;
    int64_t base = 0;
    for (int l = 0; l < a->nl; l++) {
        const int64_t ny = a->ny[l], nx = a->nx[l], hw = ny * nx;
        const float *m = maps[l];
        const float stride = a->stride[l];
#pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < n; b++)
            for (int an = 0; an < na; an++) {
                const float aw = a->anchors[l][an][0], ah = a->anchors[l][an][1];
                const float *src = m + ((int64_t)b * na * no + (int64_t)an * no) * hw;
                float *dst = pred + ((int64_t)b * a->total + base + (int64_t)an * hw) * no;
                for (int64_t y = 0; y < ny; y++)
                    for (int64_t x = 0; x < nx; x++) {
                        int64_t cell = y * nx + x;
                        ot_decode_cell(dst + cell * no, src + cell, hw, no, x, y, stride, aw, ah);
                    }
            }
        base += (int64_t)na * hw;
    }
}

static const ot_decode_kernels cpu_kernels = {.decode = cpu_decode};

const ot_decode_kernels *ot_decode_kernels_for(ot_device_kind k) {
    if (k == OT_DEV_CPU || k == OT_DEV_CPU_GUARD) return &cpu_kernels;
    const ot_device_kernels *t = ot_device_kernels_get(k); /* a registered device (kernels/device_kernels.h) */
    return t ? t->decode : NULL;
}
