/* checkpoint.h: training checkpoints (weights/last.ckpt, best.ckpt).
 *
 * One file holds everything a run needs to continue exactly or to be exported:
 *   "OTCKPT01" | u64 header length | header JSON | u64 model length | model |
 *   tensors | u64 FNV-1a 64 of all preceding bytes | "OTCKEND\n"
 * model: the training graph as ONNX (train/prepare.h: BN form, raw head maps,
 * current weights as initializers); header: epoch, best fitness, optimizer
 * state, EMA update count, head (strides, anchors, nc), the source model's form
 * and names (for export), the run's arguments, and the list of tensors (name,
 * element count, which copies follow: EMA, optimizer buffers, pending
 * accumulated gradients) in file order. Written atomically (temporary file,
 * fsync, rename): a kill during a write leaves the previous checkpoint whole;
 * a damaged file fails its checksum with a clear error. */
#ifndef OT_CHECKPOINT_H
#define OT_CHECKPOINT_H

#include "optim.h"
#include <jansson.h>

typedef struct ot_ckpt {
    char *path;
    json_t *header;           /* owned */
    uint8_t *model;           /* ONNX bytes of the training graph */
    size_t model_len;
    const uint8_t *tensors;   /* points into the file buffer */
    size_t tensors_len;
    uint8_t *file;            /* the whole file */
} ot_ckpt;

/* Header: the caller's object (epoch, args, source, ... any keys) is stored as
 * given, with "format", "head" and "tensors" added. g: the training graph; its
 * initializers are overwritten with the model's current variables. ema and o
 * may be NULL; grads: also store the accumulated gradients (an optimizer step
 * is pending). */
ot_status ot_ckpt_save(const char *path, json_t *header, ot_graph *g, const ot_yolo_head *head, const ot_autograd *ag,
                       const ot_ema *ema, const ot_optimizer *o, bool grads, ot_error *err);
ot_status ot_ckpt_load(const char *path, ot_ckpt **out, ot_error *err);
void ot_ckpt_free(ot_ckpt *c);
/* The training graph (a model with its head set from the header). */
ot_status ot_ckpt_graph(const ot_ckpt *c, ot_graph **g, ot_error *err);
/* Copy the stored copies into a freshly made autograd (matched by tensor
 * name): model variables into ag (always), EMA (when ema), optimizer buffers
 * and state (when o), pending gradients (when present). */
ot_status ot_ckpt_restore(const ot_ckpt *c, ot_autograd *ag, ot_ema *ema, ot_optimizer *o, ot_error *err);
/* Overwrite g's variable initializers with the EMA copy stored in c (for
 * validation, prediction and export of a checkpoint). */
ot_status ot_ckpt_apply_ema(const ot_ckpt *c, ot_graph *g, ot_error *err);

/* Head <-> JSON (strides, anchors in pixels, nc, na, nl). */
json_t *ot_head_to_json(const ot_yolo_head *h);
ot_status ot_head_from_json(const json_t *j, ot_yolo_head *h, ot_error *err);

/* The "source" header object the trainer stores: form, input and output
 * names, fixed batch and size, opset and metadata of the model trained from. */
json_t *ot_source_json(const ot_graph *src, int train_img);

#endif
