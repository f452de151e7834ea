/* onnx_write.h: graph IR -> ONNX ModelProto bytes, and atomic file writes.
 *
 * The inverse of import/onnx_import.c: what the importer reads back from the
 * bytes is the same graph (same values, nodes, attributes, initializer data,
 * metadata), so a write/re-load round trip keeps the forward pass identical. */
#ifndef OT_ONNX_WRITE_H
#define OT_ONNX_WRITE_H

#include "../core/graph.h"

typedef struct ot_onnx_write_opts {
    int64_t opset;          /* 0: g->opset, or 12 when that is 0 */
    const char *producer;   /* NULL: "onnx-train" */
} ot_onnx_write_opts;

/* Serialize an IR graph as an ONNX ModelProto (opts may be NULL). Writes the
 * graph inputs (non-initializer, with dtype, shape and dim_param), the outputs
 * (declared dtype/shape when known; else inferred by planning with unknown
 * input dims set to 64 and to 128, dims that differ written as unknown; float32
 * and no shape when that fails), every initializer that some node or output
 * uses (raw_data, little-endian, in the IR's dtype: float16 / int32 file data
 * was widened at import and is written as float32 / int64), the nodes in order
 * with all their attributes, metadata_props (g->meta), opset_import (default
 * domain) and ir_version (g->ir_version, else 7 for opset <= 14, 8 otherwise).
 * *buf is malloc'd; the caller frees it. */
ot_status ot_onnx_serialize(const ot_graph *g, const ot_onnx_write_opts *o, uint8_t **buf, size_t *len, ot_error *err);

/* Write a file atomically: PATH.tmp.<pid>, fwrite, fflush, fsync, rename, fsync
 * of the folder. On any failure the temporary is removed and the error names
 * the path and the errno text. Never leaves a half-written PATH. */
ot_status ot_file_write_atomic(const char *path, const void *buf, size_t len, ot_error *err);

#endif
