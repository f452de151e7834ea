/* builtin.h: the YOLOv5 v7.0 P5 sizes (yolov5n/s/m/l/x), built natively.
 *
 * Training from scratch needs a model without an export at hand: this builds
 * the one Ultralytics would export for a freshly constructed model, so the
 * rest of onnx-train (import, head discovery, prepare, train, export) treats
 * it like any user export. */
#ifndef OT_BUILTIN_H
#define OT_BUILTIN_H

#include "../core/graph.h"

/* "yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x" (P5 only; depth/width
 * multiples n 0.33/0.25, s 0.33/0.50, m 0.67/0.75, l 1.0/1.0, x 1.33/1.25). */
bool ot_builtin_known(const char *name);

/* An inference-form ONNX model (bytes, malloc'd; the caller frees *buf) of the
 * YOLOv5 v7.0 architecture (models/yolov5*.yaml: Conv 6x6 s2 p2 stem, C3 with
 * shortcut in the backbone and without in the head, SPPF, nearest 2x Resize,
 * Concat, Detect with the default P5 anchors), nc classes, input "images"
 * (1,3,img,img), output "output0" (1,N,nc+5), as Ultralytics' export.py
 * writes a freshly built model (opset 12): BN folded into Conv (a fresh BN is
 * gamma 1, beta 0, mean 0, var 1, eps 1e-3: weight * 1/sqrt(1.001), bias 0),
 * SiLU as Sigmoid + Mul, the Detect decode (import/detect_head.c), node and
 * initializer names as the export's ("/model.2/m/m.0/cv1/conv/Conv",
 * "model.2.m.0.cv1.conv.weight" / ".bias", "model.24.m.0.weight" / ".bias"),
 * metadata "stride" ("32", the max stride, as export.py writes it) and
 * "names" (a Python dict repr "{0: 'person', ...}"; names: nc strings, or NULL
 * for "class0", "class1", ...).
 * Weights follow PyTorch's init for a new Ultralytics model, drawn from
 * onnx-train's own seeded generator (deterministic per seed, one stream per
 * tensor, independent of threads): conv weights U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)) (kaiming_uniform, a = sqrt(5)); Detect conv biases the same,
 * then Detect._initialize_biases: objectness += log(8 / (640 / s)^2), classes
 * += log(0.6 / (nc - 0.99999)). img: a multiple of 32. */
ot_status ot_builtin_onnx(const char *name, int nc, int img, uint64_t seed, const char *const *names, uint8_t **buf,
                          size_t *len, ot_error *err);

#endif
