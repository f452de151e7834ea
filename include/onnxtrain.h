/* onnxtrain.h: the small public API of libonnxtrain.
 *
 * Opaque handles, status codes and plain structs. Every function that can fail
 * returns an ot_status and fills an ot_error whose message names the file, node
 * and op involved. Nothing here exposes protobuf or CUDA types.
 *
 *   ot_model *m; ot_error e;
 *   if (ot_model_load("yolov5s.onnx", &m, &e)) { fprintf(stderr, "%s\n", e.msg); ... }
 *   ot_session *s; ot_session_create(m, NULL, &s, &e);   // plans memory per input shape
 *   ot_session_run(s, inputs, outputs, &e);
 */
#ifndef ONNXTRAIN_H
#define ONNXTRAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OT_VERSION "0.1.0"

typedef enum ot_status {
    OT_OK = 0,
    OT_ERR_IO,          /* file missing, unreadable, short */
    OT_ERR_PARSE,       /* not a valid ONNX/protobuf/npy file */
    OT_ERR_UNSUPPORTED, /* valid ONNX we do not handle (op, dtype, attribute value) */
    OT_ERR_INVALID,     /* structurally wrong model or argument (cycle, dangling name, ...) */
    OT_ERR_SHAPE,       /* shapes that do not fit */
    OT_ERR_NOMEM,       /* allocation failed or would exceed limits */
    OT_ERR_INTERNAL     /* a bug in onnx-train */
} ot_status;

typedef struct ot_error {
    ot_status code;
    char msg[1024];
} ot_error;

const char *ot_status_name(ot_status s);

/* Element types use the ONNX TensorProto.DataType numbers. */
typedef enum ot_dtype {
    OT_UNDEF = 0, OT_F32 = 1, OT_U8 = 2, OT_I8 = 3, OT_I32 = 6, OT_I64 = 7,
    OT_BOOL = 9, OT_F16 = 10, OT_F64 = 11, OT_BF16 = 16
} ot_dtype;

#define OT_MAX_RANK 8
typedef struct ot_shape {
    int rank;                 /* -1: unknown */
    int64_t d[OT_MAX_RANK];   /* -1: unknown dimension */
} ot_shape;

/* A host tensor view: the caller owns data. */
typedef struct ot_tensor {
    ot_dtype dtype;
    ot_shape shape;
    void *data;
} ot_tensor;

/* ---- model: an imported ONNX graph ---- */
typedef struct ot_model ot_model;

ot_status ot_model_load(const char *path, ot_model **out, ot_error *err);
ot_status ot_model_load_buffer(const void *buf, size_t len, const char *dir,
                               const char *display_name, ot_model **out, ot_error *err);
void ot_model_destroy(ot_model *m);

int ot_model_num_inputs(const ot_model *m);
int ot_model_num_outputs(const ot_model *m);
const char *ot_model_input_name(const ot_model *m, int i);
const char *ot_model_output_name(const ot_model *m, int i);
ot_shape ot_model_input_shape(const ot_model *m, int i);

/* ---- YOLO head, discovered at import ---- */
typedef enum ot_form { OT_FORM_UNKNOWN = 0, OT_FORM_INFERENCE, OT_FORM_RAW, OT_FORM_RAW_BN } ot_form;
#define OT_MAX_HEADS 8
typedef struct ot_yolo_head {
    int found;                 /* 0 when the graph is not a YOLO detector */
    int nl, na, nc;
    int64_t stride[OT_MAX_HEADS];
    float anchors[OT_MAX_HEADS][16][2]; /* pixels, [layer][anchor][w,h] */
    const char *anchor_source;           /* "decode", "metadata", "default" */
    ot_form form;
    const char *conv_node[OT_MAX_HEADS]; /* names of the detection convolutions */
} ot_yolo_head;

const ot_yolo_head *ot_model_head(const ot_model *m);
const char *ot_form_name(ot_form f);

/* ---- session: a model planned for fixed input shapes ---- */
typedef struct ot_session ot_session;

/* shapes: one per model input, NULL to use the declared shapes. */
ot_status ot_session_create(const ot_model *m, const ot_shape *shapes,
                            ot_session **out, ot_error *err);
void ot_session_destroy(ot_session *s);
/* inputs: float32 host tensors in model input order. Output tensors point into
 * session memory, valid until the next run or destroy. */
ot_status ot_session_run(ot_session *s, const ot_tensor *inputs, ot_tensor *outputs,
                         ot_error *err);

#ifdef __cplusplus
}
#endif
#endif
