/* dist.h: data-parallel ranks through MPI (OpenMPI from Debian).
 *
 * `mpirun -np N onnx-train train ...` starts N processes; ot_dist_init sees the
 * launcher's environment (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK) and joins
 * MPI_COMM_WORLD. Without a launcher, or in a build without MPI, there is one
 * rank and every call here is a no-op. MPI's default error handler aborts the
 * whole job when a call fails, and mpirun stops every rank when one dies, so no
 * rank waits forever for a dead peer. */
#ifndef OT_DIST_H
#define OT_DIST_H

#include "status.h"
#include <stdint.h>

/* Joins the launcher's world when there is one (call once, early). */
ot_status ot_dist_init(int *argc, char ***argv, ot_error *err);
void ot_dist_finalize(void);
int ot_dist_rank(void);
int ot_dist_world(void);
bool ot_dist_available(void);          /* built with MPI */
/* Started by an MPI launcher (mpirun, or a rank of `train --device 0,1`). */
bool ot_dist_launched(void);
/* This rank among the ranks on its machine (MPI_COMM_TYPE_SHARED): 0..local
 * world - 1; 0 and 1 for one rank. `train --device 0,1` runs on entry
 * ot_dist_local_rank() of the list. */
int ot_dist_local_rank(void);
int ot_dist_local_world(void);
/* `train --device 0,1` without a launcher: re-executes this program (with the
 * same arguments argv[0..argc-1], argv[0] being the command) under OpenMPI's
 * mpirun (next to the MPI library, else on PATH) as n ranks on this machine,
 * each of which finds its device by its local rank. Returns only when mpirun
 * cannot be found or started (the error in err); mpirun's exit status is the
 * job's: non-zero when any rank fails. Without MPI: an error. */
ot_status ot_dist_launch_local(int n, int argc, char **argv, ot_error *err);
/* In place over all ranks: element-wise sums. */
void ot_dist_sum_f32(float *x, int64_t n);
void ot_dist_sum_f64(double *x, int64_t n);
/* The same over backend memory (gradient slabs): in place on the CPU backend,
 * through a host copy on others (a device all-reduce takes its place with NCCL). */
struct ot_backend;
void ot_dist_sum_f32_on(struct ot_backend *be, float *x, int64_t n);
/* root's values to every rank. */
void ot_dist_bcast_i32(int32_t *x, int n, int root);
void ot_dist_bcast_bytes(void *x, int n, int root);
void ot_dist_barrier(void);
/* Stop every rank (a fatal error on one of them). */
void ot_dist_abort(int code);

#endif
