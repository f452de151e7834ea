/* cli.h: shared helpers of the onnx-train command line (tools/cli/). */
#ifndef OT_CLI_H
#define OT_CLI_H

#include "core/graph.h"
#include <limits.h>
#include <stdbool.h>

/* Exit codes: 0 ok, 2 bad input or usage (the message is on stderr). */
#define CLI_EXIT_BAD 2

typedef int (*cli_cmd_fn)(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_loss(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_coco2yolo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_val(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int bench_train(int argc, char **argv); /* cmd_bench_train.c */
int bench_kernels(int argc, char **argv); /* cmd_bench_kernels.c */
/* Integer option `name VALUE` at argv[*i] in lo..hi: true when argv[*i] is name
 * (then *i moves to the value and *out is the value or LONG_MIN when bad). */
bool cli_int_arg(int argc, char **argv, int *i, const char *name, long lo, long hi, long *out);

/* Print "onnx-train: <msg>" on stderr, return CLI_EXIT_BAD. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_error(const ot_error *e);
bool cli_is_help(const char *a);
/* --device and --tf32 (train, val, predict, loss, forward, bench train): the
 * help paragraph, with this binary's devices (ot_backend_list) and CUDA kernel
 * library; tf32: also --tf32's. */
void cli_device_help(FILE *f, bool tf32);
/* The CUDA kernel library this binary registered (ot_cuda_kernels_install),
 * e.g. "CUDA (sm_86, sm_90)" or "CUDA on the CPU executor"; NULL when none. */
const char *cli_cuda_kernels_name(void);
/* mkdir -p */
int cli_mkdirs(const char *path);
/* Trainable parameter count: float initializers feeding Conv weights/biases and
 * BatchNormalization scale/bias (through Identity). */
int64_t cli_param_count(const ot_graph *g);

#endif
