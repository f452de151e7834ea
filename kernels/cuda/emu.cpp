/* emu.cpp: the CPU executor behind compat.h's OT_CUDA_EMU build (docs/CUDA.md).
 *
 * A launch runs the whole grid before it returns, inside
 * ot_be_enter/ot_be_leave of the cpu-guard backend (so kernels may touch guard
 * memory and host code may not). Blocks are spread over OpenMP threads; each
 * OS thread runs one block at a time, so `static thread_local` storage (what
 * __shared__ expands to) is that block's shared memory. The threads of a block
 * are fibers on one OS thread, run round-robin by a small scheduler:
 * a fiber runs until it finishes or waits at a barrier (__syncthreads, or the
 * warp barrier inside every warp intrinsic). When every live fiber waits, the
 * scheduler first releases each warp whose participating lanes (the union of
 * the waiters' masks, less exited lanes) all wait at a warp barrier; when no
 * warp can go on it releases the block barrier if every live fiber waits there
 * (exited threads count as arrived, as on Volta and later). Anything else is a
 * deadlock in the kernel (a __syncthreads under divergent control flow, a
 * shuffle whose mask names a lane that never comes): the executor says so
 * (kernel, launch site, block, waiting threads) and aborts.
 *
 * Fibers are made once per OS thread and reused for every block: a fiber runs
 * its thread's body, marks itself done and switches back to the scheduler,
 * which resumes it for the next block. On x86-64 the switch is a few
 * instructions of our own (ot_emu_switch below: callee-saved registers, MXCSR
 * and the x87 control word, then the stack pointer), because ucontext's
 * swapcontext makes a system call (the signal mask) on every switch, which cost
 * more than the kernels themselves. Elsewhere ucontext does the switching. */
#include "compat.h"

extern "C" {
#include "core/backend.h"
}

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#define OT_EMU_FAST_SWITCH 1
/* Saves the callee-saved registers, MXCSR and the x87 control word on the
 * current stack, stores the stack pointer in *save, loads load and restores
 * the same from there (System V x86-64; a fresh fiber's stack is laid out by
 * fiber_init to "return" into fiber_entry). */
extern "C" void ot_emu_switch(void **save, void *load);
__asm__(".text\n"
        ".globl ot_emu_switch\n"
        ".type ot_emu_switch, @function\n"
        "ot_emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size ot_emu_switch, .-ot_emu_switch\n"
        ".section .note.GNU-stack,\"\",@progbits\n"
        ".text\n");
#endif

thread_local dim3 ot_emu_thread_idx, ot_emu_block_idx, ot_emu_block_dim, ot_emu_grid_dim;

namespace {

enum fstate { F_READY, F_RUNNING, F_WAIT_BLOCK, F_WAIT_WARP, F_DONE };

const size_t STACK_BYTES = 256 * 1024;   /* per fiber; mapped lazily, so untouched pages cost nothing */
const int MAX_THREADS = 1024;
const size_t MAX_DYNAMIC_SHARED = 48 * 1024;   /* CUDA's default limit without opt-in */

struct fiber {
#ifdef OT_EMU_FAST_SWITCH
    void *sp;               /* saved stack pointer while switched out */
    bool started;
#else
    ucontext_t ctx;
#endif
    unsigned char *stack;   /* STACK_BYTES plus a guard page below */
    int state;
    unsigned mask;          /* F_WAIT_WARP: the lanes this waiter syncs with */
    dim3 tid;
};

/* One per OS thread that runs blocks. */
struct runner {
#ifdef OT_EMU_FAST_SWITCH
    void *sched_sp;
#else
    ucontext_t sched;
#endif
    fiber *f = nullptr;
    int cap = 0;            /* fibers with stacks */
    int n = 0;              /* threads of the current block */
    int cur = -1;           /* the running fiber */
    uint64_t xchg[MAX_THREADS];   /* warp exchange slots, one per thread */
    unsigned char *dyn = nullptr;
    size_t dyn_cap = 0, dyn_used = 0;
    ucontext_t base;        /* getcontext once; each fiber starts from a copy */
    bool have_base = false;
    ot_emu_body body = nullptr;
    void *ctx = nullptr;
    const char *kernel = "", *file = "";
    int line = 0;
};

thread_local runner *RT;

[[noreturn]] void die(const char *what) {
    runner *r = RT;
    if (r && r->kernel)
        fprintf(stderr, "onnx-train: cuda-emu: %s:%d: kernel %s, block (%u,%u,%u): %s\n", r->file, r->line, r->kernel,
                ot_emu_block_idx.x, ot_emu_block_idx.y, ot_emu_block_idx.z, what);
    else
        fprintf(stderr, "onnx-train: cuda-emu: %s\n", what);
    fflush(stderr);
    abort();
}

runner *get_runner() {
    if (!RT) {
        RT = new runner();
    }
    return RT;
}

void ensure_fibers(runner *r, int n) {
    if (n <= r->cap) return;
    fiber *nf = static_cast<fiber *>(realloc(static_cast<void *>(r->f), sizeof(fiber) * (size_t)n));
    if (!nf) die("out of memory for fibers");
    r->f = nf;
    size_t page = 4096;
    for (int i = r->cap; i < n; i++) {
        void *m = mmap(nullptr, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (m == MAP_FAILED) die("mmap of a fiber stack failed");
        mprotect(m, page, PROT_NONE);   /* a stack overflow faults instead of corrupting the next stack */
        r->f[i].stack = static_cast<unsigned char *>(m);
#ifdef OT_EMU_FAST_SWITCH
        r->f[i].started = false;
#endif
    }
    r->cap = n;
}

#ifdef OT_EMU_FAST_SWITCH
/* A fiber's life: run the body of its thread in the current block, mark itself
 * done, give the OS thread back to the scheduler; resumed for the next block. */
[[noreturn]] void fiber_entry() {
    for (;;) {
        runner *r = RT;
        r->body(r->ctx);
        fiber *f = &r->f[r->cur];
        f->state = F_DONE;
        ot_emu_switch(&f->sp, r->sched_sp);
    }
}

/* A fresh stack that ot_emu_switch "returns" into fiber_entry from. */
void fiber_init(fiber *f) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(f->stack) + 4096 + STACK_BYTES) & ~(uintptr_t)15;
    uint64_t *sp = reinterpret_cast<uint64_t *>(top);
    *--sp = 0;                                               /* fiber_entry's (absent) return address: rsp = 8 mod 16 */
    *--sp = reinterpret_cast<uint64_t>(&fiber_entry);       /* what ot_emu_switch's ret jumps to */
    for (int k = 0; k < 6; k++) *--sp = 0;                   /* rbp rbx r12 r13 r14 r15 */
    --sp;
    uint32_t csr[2] = {_mm_getcsr(), 0x037f};                /* MXCSR, then the x87 control word (its default) */
    memcpy(sp, csr, sizeof csr);
    f->sp = sp;
    f->started = true;
}

void switch_to_fiber(runner *r, fiber *f) {
    if (!f->started) fiber_init(f);
    ot_emu_switch(&r->sched_sp, f->sp);
}
void switch_to_sched(runner *r, fiber *f) { ot_emu_switch(&f->sp, r->sched_sp); }
#else
void fiber_main() {
    runner *r = RT;
    r->body(r->ctx);
    r->f[r->cur].state = F_DONE;
    /* returning resumes uc_link: the scheduler */
}
void switch_to_fiber(runner *r, fiber *f) { swapcontext(&r->sched, &f->ctx); }
void switch_to_sched(runner *r, fiber *f) { swapcontext(&f->ctx, &r->sched); }
#endif

/* Switch from the running fiber back to the scheduler, waiting in state st. */
void yield_as(int st, unsigned mask) {
    runner *r = RT;
    if (!r || r->cur < 0) die("__syncthreads or a warp intrinsic called outside a kernel");
    fiber *f = &r->f[r->cur];
    f->state = st;
    f->mask = mask;
    switch_to_sched(r, f);
}

int linear_tid(const dim3 &t) {
    return (int)(t.x + ot_emu_block_dim.x * (t.y + ot_emu_block_dim.y * t.z));
}

/* Release the warps whose participants all wait at a warp barrier; true when any did. */
bool release_warps(runner *r) {
    bool any = false;
    for (int w0 = 0; w0 < r->n; w0 += 32) {
        int w1 = w0 + 32 < r->n ? w0 + 32 : r->n;
        unsigned want = 0;
        bool waiting = false;
        for (int t = w0; t < w1; t++)
            if (r->f[t].state == F_WAIT_WARP) { want |= r->f[t].mask; waiting = true; }
        if (!waiting) continue;
        bool ok = true;
        for (int t = w0; t < w1 && ok; t++)
            if (((want >> (t - w0)) & 1u) && r->f[t].state != F_DONE && r->f[t].state != F_WAIT_WARP) ok = false;
        if (!ok) continue;
        for (int t = w0; t < w1; t++)
            if (r->f[t].state == F_WAIT_WARP) r->f[t].state = F_READY;
        any = true;
    }
    return any;
}

void run_block(runner *r) {
    const dim3 bd = ot_emu_block_dim;
    int n = r->n;
#ifndef OT_EMU_FAST_SWITCH
    if (!r->have_base) {
        getcontext(&r->base);
        r->have_base = true;
    }
#endif
    for (int t = 0; t < n; t++) {
        fiber *f = &r->f[t];
#ifndef OT_EMU_FAST_SWITCH
        f->ctx = r->base;
        f->ctx.uc_stack.ss_sp = f->stack + 4096;
        f->ctx.uc_stack.ss_size = STACK_BYTES;
        f->ctx.uc_link = &r->sched;
        makecontext(&f->ctx, fiber_main, 0);
#endif
        f->state = F_READY;
        f->mask = 0;
        f->tid = dim3((unsigned)t % bd.x, ((unsigned)t / bd.x) % bd.y, (unsigned)t / (bd.x * bd.y));
    }
    if (r->dyn_used) memset(r->dyn, 0xff, r->dyn_used);   /* uninitialised shared memory reads as NaN */
    int live = n;
    for (;;) {
        for (int t = 0; t < n; t++) {
            fiber *f = &r->f[t];
            if (f->state != F_READY) continue;
            r->cur = t;
            ot_emu_thread_idx = f->tid;
            f->state = F_RUNNING;
            switch_to_fiber(r, f);
            if (f->state == F_DONE) live--;
        }
        r->cur = -1;
        if (live == 0) break;
        if (release_warps(r)) continue;
        bool all_block = true;
        for (int t = 0; t < n; t++)
            if (r->f[t].state != F_DONE && r->f[t].state != F_WAIT_BLOCK) all_block = false;
        if (!all_block) {
            char msg[256];
            int nb = 0, nw = 0;
            for (int t = 0; t < n; t++) {
                nb += r->f[t].state == F_WAIT_BLOCK;
                nw += r->f[t].state == F_WAIT_WARP;
            }
            snprintf(msg, sizeof msg,
                     "deadlock: %d threads wait at __syncthreads and %d at a warp intrinsic whose lanes never all arrive "
                     "(divergent barrier or a wrong mask)", nb, nw);
            die(msg);
        }
        for (int t = 0; t < n; t++)
            if (r->f[t].state == F_WAIT_BLOCK) r->f[t].state = F_READY;
    }
}

}   // namespace

void ot_emu_syncthreads(void) { yield_as(F_WAIT_BLOCK, 0); }

int ot_emu_lane(void) { return linear_tid(ot_emu_thread_idx) % 32; }

static unsigned lane_mask_of(unsigned mask) {
    int me = ot_emu_lane();
    if (!((mask >> me) & 1u)) die("a warp intrinsic's mask does not include the calling lane");
    return mask;
}

void ot_emu_syncwarp(unsigned mask) { yield_as(F_WAIT_WARP, lane_mask_of(mask)); }

uint64_t ot_emu_shfl(unsigned mask, uint64_t v, int src) {
    runner *r = RT;
    if (!r || r->cur < 0) die("a warp intrinsic called outside a kernel");
    mask = lane_mask_of(mask);
    int me = r->cur;
    r->xchg[me] = v;
    yield_as(F_WAIT_WARP, mask);   /* every participant has published */
    uint64_t out = v;
    int st = me - me % 32 + src;   /* the source lane's thread */
    if (src >= 0 && src < 32 && st < r->n && ((mask >> src) & 1u) && r->f[st].state != F_DONE) out = r->xchg[st];
    yield_as(F_WAIT_WARP, mask);   /* every participant has read before anyone publishes again */
    return out;
}

unsigned char *ot_emu_dynamic_shared(void) {
    runner *r = RT;
    return r ? r->dyn : nullptr;
}

void ot_emu_launch(const char *kernel, const char *file, int line, dim3 grid, dim3 block, size_t shmem_bytes,
                   cudaStream_t stream, ot_emu_body body, void *ctx) {
    (void)stream;   /* one in-order queue: the launch completes before it returns */
    uint64_t nthreads = (uint64_t)block.x * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu ||
        nthreads == 0 || nthreads > (uint64_t)MAX_THREADS || block.z > 64 || shmem_bytes > MAX_DYNAMIC_SHARED) {
        fprintf(stderr,
                "onnx-train: cuda-emu: %s:%d: launch of %s failed: invalid configuration (grid %u,%u,%u, block %u,%u,%u, "
                "%zu bytes of dynamic shared memory)\n",
                file, line, kernel, grid.x, grid.y, grid.z, block.x, block.y, block.z, shmem_bytes);
        abort();
    }
    ot_backend *guard = ot_backend_cpu_guard();
    ot_be_enter(guard);
    int64_t nblocks = (int64_t)grid.x * grid.y * grid.z;
#pragma omp parallel if (nblocks > 1)
    {
        runner *r = get_runner();
        ensure_fibers(r, (int)nthreads);
        if (r->dyn_cap < shmem_bytes) {
            free(r->dyn);
            size_t cap = (shmem_bytes + 63) & ~(size_t)63;
            r->dyn = static_cast<unsigned char *>(aligned_alloc(64, cap));
            if (!r->dyn) die("out of memory for dynamic shared memory");
            r->dyn_cap = cap;
        }
        r->dyn_used = shmem_bytes;
        r->n = (int)nthreads;
        r->body = body;
        r->ctx = ctx;
        r->kernel = kernel;
        r->file = file;
        r->line = line;
        ot_emu_grid_dim = grid;
        ot_emu_block_dim = block;
#pragma omp for schedule(dynamic, 4)
        for (int64_t b = 0; b < nblocks; b++) {
            ot_emu_block_idx = dim3((unsigned)(b % grid.x), (unsigned)((b / grid.x) % grid.y),
                                    (unsigned)(b / ((int64_t)grid.x * grid.y)));
            run_block(r);
        }
        r->kernel = nullptr;
    }
    ot_be_leave(guard);
}

/* ---- graphs: a launch recorded while a capture is open (core/backend.c's recorder) ---- */
namespace {
struct rec_launch {
    const char *kernel, *file;
    int line;
    dim3 grid, block;
    size_t shmem;
    ot_emu_body body;
    void *ctx;
    void (*drop)(void *);
};
void rec_launch_run(void *p) {
    rec_launch *r = static_cast<rec_launch *>(p);
    ot_emu_launch(r->kernel, r->file, r->line, r->grid, r->block, r->shmem, nullptr, r->body, r->ctx);
}
void rec_launch_drop(void *p) {
    rec_launch *r = static_cast<rec_launch *>(p);
    r->drop(r->ctx);
    delete r;
}
} // namespace

void ot_emu_record_launch(const char *kernel, const char *file, int line, dim3 grid, dim3 block, size_t shmem_bytes,
                          ot_emu_body body, void *ctx, void (*drop)(void *)) {
    ot_emu_record(rec_launch_run, new rec_launch{kernel, file, line, grid, block, shmem_bytes, body, ctx, drop}, rec_launch_drop);
}
