/* detect_head.h: the exported tail of YOLOv5's Detect module, as IR nodes.
 *
 * Export writes a trained model back in the form the user gave; an inference
 * export needs the decode Ultralytics puts after the detection convolutions,
 * a --train export only the view + permute. Both are emitted with the ops and
 * the node naming of Ultralytics' own export (opset 12), so import/yolo_head.c
 * finds the head again (Convs reshaped to (bs, na, no, ny, nx); anchors from
 * the Mul by the (1, na, ny, nx, 2) anchor grid). */
#ifndef OT_DETECT_HEAD_H
#define OT_DETECT_HEAD_H

#include "../core/graph.h"

/* Append YOLOv5 v7.0 Detect's exported tail to g.
 * maps[l]: value ids of the head convolution outputs (batch, na*no, ny, nx),
 * stride order. head: nl, na, nc, stride[], anchors (pixels). img_h, img_w:
 * the fixed export size (ny = img_h / stride). batch: the fixed batch
 * (Ultralytics exports batch 1).
 * OT_FORM_INFERENCE: one output named out_names[0], shape (batch, sum na*ny*nx,
 *   no), computed as models/yolo.py Detect.forward with export=True (v7.0):
 *   view(bs,na,no,ny,nx).permute(0,1,3,4,2); sigmoid; split (2, 2, nc+1) on
 *   the last axis; xy = (xy*2 + grid) * stride; wh = (wh*2)**2 * anchor_grid;
 *   cat; view(bs,-1,no); cat over the layers. grid ((x - 0.5, y - 0.5), as
 *   _make_grid) and anchor_grid (pixels) are float32 initializers of shape
 *   (1,na,ny,nx,2) named "<module>.grid.<l>" and "<module>.anchor_grid.<l>";
 *   the scalars and reshape shapes are Constant nodes, as in the export.
 * OT_FORM_RAW: nl outputs out_names[l] of shape (batch, na, ny, nx, no) (view +
 *   permute, the --train export).
 * Nodes are named like Ultralytics' export: "<prefix>/Reshape_1", ... where
 * <prefix> is the head conv's node name up to "/m.<l>/" ("/model.24" for
 * "/model.24/m.0/Conv"), else "/Detect"; <module> is <prefix> without the
 * leading '/' and with '.' for '/'. The new outputs are declared (float32, the
 * shapes above) and marked as graph outputs (OT_V_OUTPUT, g->outputs). Nodes
 * are appended; call ot_graph_finalize afterwards. */
ot_status ot_detect_append(ot_graph *g, const int *maps, const ot_yolo_head *head, ot_form form, int img_h, int img_w,
                           int batch, const char *const *out_names, ot_error *err);

#endif
