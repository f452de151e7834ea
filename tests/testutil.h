/* testutil.h: helpers shared by the Check suites. */
#ifndef OT_TESTUTIL_H
#define OT_TESTUTIL_H

#include "core/graph.h"
#include <check.h>
#include <signal.h>
#include <jansson.h>
#include <stdbool.h>

/* Skip code understood by ctest (SKIP_RETURN_CODE 77). */
#define OT_SKIP 77

bool tu_exists(const char *path);
/* max |a - b| / max(1, |b|) over n values */
double tu_scaled_err(const float *a, const float *b, int64_t n);
/* Run a shell command (stdout as the command redirects it); returns its exit
 * status, stderr captured into err (may be NULL). */
int tu_run(const char *cmd, char *err, size_t errlen);
/* Run a formatted shell command and fail the test (with its stderr) unless it exits 0. */
void tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Path of the shared folder, or NULL (with a message on stderr) when absent. */
const char *tu_shared(void);
/* Work folder for this test binary (created). */
const char *tu_work(void);
/* A number from a reference JSON object (fails the test when absent). */
double tu_jnum(json_t *o, const char *k);
/* A reference case tests/fixtures/<dir>/<name>.json made by tools/ref/: the
 * JSON, the ../shared model it names ("model") and its input batch (the test
 * pattern of "input_shape" with "seed"). */
typedef struct tu_refcase { json_t *ref; ot_model *model; ot_shape shape; float *x; } tu_refcase;
void tu_refcase_load(tu_refcase *c, const char *shared, const char *dir, const char *name);
void tu_refcase_free(tu_refcase *c);
/* Add a test that must die of a host access to guarded device memory: by
 * SIGSEGV, or under AddressSanitizer (`make sanitize`), which reports the SEGV
 * with its stack and exits 1, by that exit status. */
#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif
#ifdef TU_ASAN
#define tu_add_fault_test(tc, t) tcase_add_exit_test(tc, t, 1)
#else
#define tu_add_fault_test(tc, t) tcase_add_test_raise_signal(tc, t, SIGSEGV)
#endif
/* ---- Data-parallel runs (test_dist.c, test_cudaemu_dist.c, test_cudaemu_syncbn.c) ----
 * Local ranks only (the isolated launcher needs no ssh), as root in CI, 2 ranks on any core count. */
#define TU_MPIRUN "env OMPI_MCA_plm=isolated OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np 2"
/* MPI in this build and mpirun able to start 2 local processes; false with a SKIP line on stderr. */
bool tu_have_mpi(void);
/* WORK/d: `ntrain` synthetic 64-pixel images that all carry the same label lines (4 val images), and
 * WORK/hyp.yaml with augmentation off, so every image matches the same number of targets per layer and a
 * batch split over ranks gives per-rank loss means that add up to the whole batch's (made once). */
void tu_dp_data(const char *work, int ntrain);
/* The losses ("epoch batch lbox lobj lcls" per line of an ONNXT_LOSS_LOG file) of epoch `epoch` (-1: all). */
int tu_losses(const char *log, int epoch, double *v, int cap);
/* The largest relative difference of two loss logs' epoch-`epoch` losses, each of which must hold `count`. */
double tu_loss_diff(const char *log_a, const char *log_b, int epoch, int count);
/* The weights of a training checkpoint, whose header must say epoch `epoch` and, unless -1, `ema_updates`
 * optimizer steps (one EMA update each). */
ot_graph *tu_ckpt_weights(const char *ckpt, int epoch, int ema_updates);
/* test_dist.c's measure over every float initializer of two graphs: the larger of max |a - b| / max(1, |a|)
 * and the relative L2 difference (printed with `what`). */
double tu_weight_diff(const ot_graph *a, const ot_graph *b, const char *what);
/* tu_weight_diff of two runs' WORK/runs/NAME/weights/last.ckpt, each checked by tu_ckpt_weights. */
double tu_runs_weight_diff(const char *work, const char *one, const char *two, int epoch, int ema_updates);

/* Run a Check suite; returns the process exit code. */
int tu_main(Suite *s);

#endif
