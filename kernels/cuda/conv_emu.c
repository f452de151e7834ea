/* conv_emu.c: Conv on the CUDA device under the CPU executor (onnxtrain_cudaemu):
 * the names conv_gpu.c exports, answered by our CPU convolution (ot_cpu_conv,
 * kernels/conv.c) on the same buffers. docs/CUDA.md, "Convolution (cuDNN)".
 *
 * The executor's device memory is cpu-guard memory, inaccessible to host code
 * outside ot_be_enter(ot_backend_cpu_guard()) ... ot_be_leave, so forward and
 * backward run the CPU row inside that bracket. prepare only builds library
 * state (the CPU row's oneDNN primitives, its workspace need) and touches no
 * tensor memory; release frees what it built. The CPU row honours ot_gin_set and
 * adds dw / db exactly as conv_gpu.c's contract says, so both libraries give
 * the same semantics. */
#include "../conv.h"
#include "cuda_tables.h"

extern const ot_op_impl ot_cpu_conv; /* kernels/conv.c */

/* The executor computes in FP32 (the CPU convolution); TF32 has no meaning here. */
void ot_cuda_conv_set_tf32(int on) { (void)on; }

static ot_status emu_prepare(ot_kctx *c) { return ot_cpu_conv.prepare ? ot_cpu_conv.prepare(c) : OT_OK; }

static ot_status emu_forward(ot_kctx *c) {
    ot_backend *g = ot_backend_cpu_guard();
    ot_be_enter(g);
    ot_status st = ot_cpu_conv.forward(c);
    ot_be_leave(g);
    return st;
}

static ot_status emu_backward(ot_kctx *c) {
    ot_backend *g = ot_backend_cpu_guard();
    ot_be_enter(g);
    ot_status st = ot_cpu_conv.backward(c);
    ot_be_leave(g);
    return st;
}

static void emu_release(void *params) {
    if (ot_cpu_conv.release) ot_cpu_conv.release(params);
}

const ot_op_impl ot_cuda_conv = {
    .prepare = emu_prepare, .forward = emu_forward, .backward = emu_backward, .release = emu_release,
};
