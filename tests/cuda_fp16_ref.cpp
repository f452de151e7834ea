// cuda_fp16_ref.cpp: NVIDIA's own host implementations of the half conversions
// (cuda_fp16.h, cuda_bf16.h from the CUDA toolkit, compiled by the host C++
// compiler), the reference for tests/test_cudaemu_half.c (OT_FP16_REF). Built
// only where the toolkit's headers are found (tests/CMakeLists.txt).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

extern "C" uint16_t ot_ref_f2h(float f) {
    __half h = __float2half_rn(f);
    uint16_t b;
    memcpy(&b, &h, 2);
    return b;
}
extern "C" float ot_ref_h2f(uint16_t b) {
    __half_raw r;
    r.x = b;
    return __half2float(__half(r));
}
extern "C" uint16_t ot_ref_f2bf(float f) {
    __nv_bfloat16 h = __float2bfloat16_rn(f);
    uint16_t b;
    memcpy(&b, &h, 2);
    return b;
}
extern "C" float ot_ref_bf2f(uint16_t b) {
    __nv_bfloat16_raw r;
    r.x = b;
    return __bfloat162float(__nv_bfloat16(r));
}
