/* dist.c: MPI ranks (core/dist.h). */
#include "dist.h"
#include "backend.h"
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int g_rank = 0, g_world = 1, g_inited = 0;

#ifdef ONNXT_HAVE_MPI
#include <mpi.h>

bool ot_dist_available(void) { return true; }

static bool launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

ot_status ot_dist_init(int *argc, char ***argv, ot_error *err) {
    if (g_inited || !launched()) return OT_OK;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return ot_fail(err, OT_ERR_INTERNAL, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    g_inited = 1;
    return OT_OK;
}

void ot_dist_finalize(void) {
    if (g_inited) MPI_Finalize();
    g_inited = 0;
}

/* Every collective is non-blocking and waited for with a deadline: a rank
 * that hangs (or never arrives) makes the others stop with a message instead
 * of waiting forever. ONNXT_DIST_TIMEOUT: seconds (default 7200; validation
 * and checkpoints on rank 0 happen between collectives, so keep it generous). */
static double timeout_s(void) { return ot_config_get()->dist_timeout_s; } /* ONNXT_DIST_TIMEOUT */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void wait_or_abort(MPI_Request *rq, const char *what) {
    double t0 = now_s(), lim = timeout_s();
    long spins = 0;
    for (;;) {
        int done = 0;
        MPI_Test(rq, &done, MPI_STATUS_IGNORE);
        if (done) return;
        if (now_s() - t0 > lim) {
            fprintf(stderr, "onnx-train: rank %d: no answer from the other ranks in %s for %.0f s (ONNXT_DIST_TIMEOUT); "
                            "a rank hung or died: stopping every rank\n", g_rank, what, lim);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        if (++spins > 1000) { /* after ~1000 polls, stop burning the core the other work needs */
            struct timespec d = {0, 200000};
            nanosleep(&d, NULL);
        }
    }
}

/* MPI counts are int: large buffers go in chunks. */
#define CHUNK ((int64_t)1 << 30)
static void sum(void *x, int64_t n, MPI_Datatype t, size_t esz) {
    for (int64_t o = 0; o < n; o += CHUNK) {
        MPI_Request rq;
        MPI_Iallreduce(MPI_IN_PLACE, (char *)x + (size_t)o * esz, (int)(n - o < CHUNK ? n - o : CHUNK), t, MPI_SUM,
                       MPI_COMM_WORLD, &rq);
        wait_or_abort(&rq, "a gradient/statistics sum");
    }
}
void ot_dist_sum_f32(float *x, int64_t n) {
    if (g_world > 1) sum(x, n, MPI_FLOAT, sizeof(float));
}
void ot_dist_sum_f64(double *x, int64_t n) {
    if (g_world > 1) sum(x, n, MPI_DOUBLE, sizeof(double));
}
void ot_dist_bcast_i32(int32_t *x, int n, int root) {
    if (g_world <= 1) return;
    MPI_Request rq;
    MPI_Ibcast(x, n, MPI_INT32_T, root, MPI_COMM_WORLD, &rq);
    wait_or_abort(&rq, "the end-of-epoch broadcast");
}
void ot_dist_bcast_bytes(void *x, int n, int root) {
    if (g_world <= 1) return;
    MPI_Request rq;
    MPI_Ibcast(x, n, MPI_BYTE, root, MPI_COMM_WORLD, &rq);
    wait_or_abort(&rq, "a broadcast");
}
void ot_dist_barrier(void) {
    if (g_world <= 1) return;
    MPI_Request rq;
    MPI_Ibarrier(MPI_COMM_WORLD, &rq);
    wait_or_abort(&rq, "a barrier");
}
void ot_dist_abort(int code) {
    if (g_world > 1) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}
#else
bool ot_dist_available(void) { return false; }
ot_status ot_dist_init(int *argc, char ***argv, ot_error *err) {
    (void)argc; (void)argv;
    if (getenv("OMPI_COMM_WORLD_SIZE") && atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1)
        return ot_fail(err, OT_ERR_UNSUPPORTED, "started by mpirun, but this build has no MPI (install libopenmpi-dev and rebuild)");
    return OT_OK;
}
void ot_dist_finalize(void) {}
void ot_dist_sum_f32(float *x, int64_t n) { (void)x; (void)n; }
void ot_dist_sum_f64(double *x, int64_t n) { (void)x; (void)n; }
void ot_dist_bcast_i32(int32_t *x, int n, int root) { (void)x; (void)n; (void)root; }
void ot_dist_bcast_bytes(void *x, int n, int root) { (void)x; (void)n; (void)root; }
void ot_dist_barrier(void) {}
void ot_dist_abort(int code) { exit(code); }
#endif

int ot_dist_rank(void) { return g_rank; }
int ot_dist_world(void) { return g_world; }

void ot_dist_sum_f32_on(ot_backend *be, float *x, int64_t n) {
    if (ot_dist_world() <= 1) return;
    if (be->kind == OT_DEV_CPU) { ot_dist_sum_f32(x, n); return; } /* the CPU backend's memory is the host's */
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!h) { fprintf(stderr, "onnx-train: out of memory staging %lld gradients for the all-reduce\n", (long long)n); ot_dist_abort(2); return; }
    ot_be_download(be, h, x, sizeof(float) * (size_t)n);
    ot_dist_sum_f32(h, n);
    ot_be_upload(be, x, h, sizeof(float) * (size_t)n);
    free(h);
}
