/* prepare.h: the training graph, made from any YOLOv5 export form. */
#ifndef OT_PREPARE_H
#define OT_PREPARE_H

#include "../core/graph.h"

typedef struct ot_prepare_opts {
    bool no_bn;        /* keep a folded graph as it is (no BatchNormalization inserted) */
} ot_prepare_opts;

/* From an imported model with a discovered head: a new graph whose outputs are
 * the detection convolutions' outputs (bs, na*no, ny, nx) in stride order
 * (the Detect reshape/decode is cut), whose input has dynamic batch and size,
 * where every Conv owns its weight and bias initializers (named like the
 * PyTorch state_dict: model.N.conv.weight), and where, unless opts->no_bn or
 * the graph already has BatchNormalization, a BN follows every Conv but the
 * head's: gamma 1, beta = the conv bias (the conv loses it), running mean 0,
 * running var 1 - eps (so eval-mode output is exactly unchanged), eps 1e-3,
 * momentum 0.03 (ONNX attribute 0.97). BN nodes keep only their Y output. */
ot_status ot_prepare_training_graph(const ot_graph *src, const ot_prepare_opts *opts, ot_graph **out, ot_error *err);

#endif
