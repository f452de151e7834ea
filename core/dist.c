/* dist.c: MPI ranks (core/dist.h). */
#include "dist.h"
#include "backend.h"
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_rank = 0, g_world = 1, g_inited = 0, g_local_rank = 0, g_local_world = 1;

#ifdef ONNXT_HAVE_MPI
#include <mpi.h>

bool ot_dist_available(void) { return true; }

bool ot_dist_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

ot_status ot_dist_init(int *argc, char ***argv, ot_error *err) {
    if (g_inited || !ot_dist_launched()) return OT_OK;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return ot_fail(err, OT_ERR_INTERNAL, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    /* the ranks that share this machine's memory: whatever the launcher, its local rank numbers them */
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &g_local_rank);
        MPI_Comm_size(node, &g_local_world);
        MPI_Comm_free(&node);
    }
    g_inited = 1;
    return OT_OK;
}

/* ---- train --device 0,1: one rank per device, started here under mpirun ----
 * mpirun rather than MPI_Comm_spawn from a singleton: every collective here,
 * NCCL's id broadcast and the executor's all-reduce run on MPI_COMM_WORLD,
 * which mpirun's ranks share as they would under a user's mpirun; and mpirun
 * stops every rank as soon as one dies and exits non-zero, which a spawned
 * group does not do for its parent. */

/* path/rel when it is an executable file. */
static bool exe_at(char *out, size_t n, const char *dir, const char *rel) {
    snprintf(out, n, "%s/%s", dir, rel);
    return access(out, X_OK) == 0;
}

/* The MPI library this process runs on, from /proc/self/maps: its directory in dir[n]. */
static bool mpi_lib_dir(char *dir, size_t n) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return false;
    char line[4608];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char *p = strchr(line, '/');
        if (!p || !strstr(p, "/libmpi.so")) continue;
        p[strcspn(p, "\n")] = 0;
        char real[4096];
        if (!realpath(p, real)) continue;
        char *slash = strrchr(real, '/');
        *slash = 0;
        snprintf(dir, n, "%s", real);
        found = true;
    }
    fclose(f);
    return found;
}

/* OpenMPI's mpirun: next to the MPI library this binary runs on (PREFIX/lib -> PREFIX/bin; Debian's
 * /usr/lib/<arch> -> /usr/bin), else the first on PATH. */
static bool find_mpirun(char *out, size_t n) {
    char dir[4096];
    if (mpi_lib_dir(dir, sizeof dir) && (exe_at(out, n, dir, "../bin/mpirun") || exe_at(out, n, dir, "../../bin/mpirun"))) return true;
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t len = strcspn(path, ":");
        if (len > 0 && len < sizeof dir) {
            memcpy(dir, path, len);
            dir[len] = 0;
            if (exe_at(out, n, dir, "mpirun")) return true;
        }
        path += len + (path[len] == ':');
    }
    return false;
}

ot_status ot_dist_launch_local(int n, int argc, char **argv, ot_error *err) {
    char self[4096], mpirun[4200], np[16];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) return ot_fail(err, OT_ERR_IO, "one process per device: cannot find this program (/proc/self/exe: %s)", strerror(errno));
    self[k] = 0;
    if (!find_mpirun(mpirun, sizeof mpirun))
        return ot_fail(err, OT_ERR_UNSUPPORTED,
                       "one process per device is started with OpenMPI's mpirun, and there is none next to the MPI library or on PATH "
                       "(install openmpi-bin)");
    snprintf(np, sizeof np, "%d", n);
    char **av = calloc((size_t)argc + 16, sizeof *av);
    if (!av) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    int a = 0;
    av[a++] = mpirun;
#if defined(OMPI_MAJOR_VERSION) && OMPI_MAJOR_VERSION < 5
    av[a++] = "--mca"; /* ranks on this machine only: no ssh, no resource manager's allocation */
    av[a++] = "plm";
    av[a++] = "isolated";
#endif
    av[a++] = "-np";
    av[a++] = np;
    av[a++] = "--oversubscribe"; /* a process per device, whatever the core count OpenMPI sees */
    av[a++] = "--bind-to";       /* each rank's loader and host threads use any core */
    av[a++] = "none";
    if (geteuid() == 0) av[a++] = "--allow-run-as-root";
    av[a++] = self;
    for (int i = 0; i < argc; i++) av[a++] = argv[i];
    av[a] = NULL;
    fflush(stdout);
    fflush(stderr);
    execv(mpirun, av);
    ot_status st = ot_fail(err, OT_ERR_IO, "cannot run %s: %s", mpirun, strerror(errno));
    free(av);
    return st;
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
bool ot_dist_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK"); }
ot_status ot_dist_launch_local(int n, int argc, char **argv, ot_error *err) {
    (void)n; (void)argc; (void)argv;
    return ot_fail(err, OT_ERR_UNSUPPORTED, "one process per device needs MPI, and this build has none (install libopenmpi-dev and rebuild)");
}
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
int ot_dist_local_rank(void) { return g_local_rank; }
int ot_dist_local_world(void) { return g_local_world; }

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
