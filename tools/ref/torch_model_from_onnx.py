#!/usr/bin/python3
"""Rebuild the Ultralytics YOLOv5 v7.0 PyTorch model from one of our ONNX
exports, so the real Ultralytics training code (ComputeLoss, smart_optimizer,
ModelEMA, train.py's loop) can run on exactly the weights the C toolkit
imports.  A shared helper of make_loss_fixtures.py and
make_train_steps_fixtures.py (Python only makes fixtures; nothing at run time).

    model, info = load_model("../shared/models/yolov5s-bn.onnx")

builds `Model(<yolov5 package>/models/yolov5s.yaml, nc=80)` and loads the ONNX
weights:

* BN export (the graph has BatchNormalization, e.g. yolov5s-bn.onnx): the
  initializer names equal the state_dict keys (model.0.conv.weight,
  model.0.bn.weight/bias/running_mean/running_var, ..., model.24.m.0.weight);
  every key and shape is checked, and every BN node must have epsilon 1e-3 and
  ONNX momentum 0.97 (= 1 - torch momentum 0.03).

* Folded export (no BatchNormalization: yolov5s.onnx, yolov5s-320.onnx,
  yolov5s-train.onnx): the Conv nodes in graph order are matched to the
  model's nn.Conv2d modules in *forward execution order* (recorded with hooks;
  this is the order torch.onnx traced them in).  Note that module
  registration order is NOT graph order: a C3 registers cv1, cv2, cv3, m but
  runs cv1, m..., cv2, cv3, and cv1/cv2 have the same shape, so a
  shape check alone would not catch the swap.  Shapes, strides, pads, groups
  and dilations are checked, and so is the weight's initializer name when it
  is the module's state_dict name (true for all three shared exports).
  Conv biases may come through Identity nodes (followed to the initializer).
  Each backbone/neck Conv gets conv.weight = folded weight and an inserted BN
  "that changes nothing in eval mode":
      gamma = 1, beta = the folded conv bias (the conv itself has no bias),
      running_mean = 0, running_var = 0.999 (= 1 - eps), eps = 1e-3,
      torch momentum = 0.03.
  (float32: 0.999f + 0.001f rounds to exactly 1.0f, so eval-mode BN is the
  identity plus beta, bit for bit.)  The three Detect convs (model.24.m.*)
  take weight and bias directly.

Anchors: the ONNX metadata "anchors" (pixels, yolov5s-bn.onnx) when present,
else the yolov5s.yaml defaults; when the graph carries the Detect decode, the
anchor_grid Constant nodes are read and must agree.  model.model[-1].anchors
holds them in grid units (pixels / stride), as Ultralytics keeps them.

Run as a script it rebuilds every shared model and prints the max error of the
rebuilt model against ORT (ORT_DISABLE_ALL) on the pattern input:
  yolov5s.onnx, yolov5s-320.onnx: eval mode, decoded output0;
  yolov5s-train.onnx: eval mode, the three raw maps;
  yolov5s-bn.onnx: train mode (batch statistics; ORT's 5-output BN), raw maps.

    /usr/bin/python3 tools/ref/torch_model_from_onnx.py [--shared DIR] [--models a.onnx ...]
"""

import argparse
import contextlib
import io
import json
import logging
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep tools/ref/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_SHARED, pattern_input, run_ort  # noqa: E402

BN_EPS = 1e-3
BN_MOMENTUM = 0.03  # torch convention (ONNX momentum attribute 0.97)
INSERTED_RUNNING_VAR = 0.999  # 1 - eps: eval-mode output unchanged
NC = 80
HEAD_PREFIX = "model.24.m."

_YOLOV5 = None


def import_yolov5():
    """The `yolov5` pip package with the two offline shims of
    make_yolov5n_fixture.py (check_requirements shim, attempt_download identity),
    its LOGGER silenced.  Returns the package module."""
    global _YOLOV5
    if _YOLOV5 is None:
        from make_yolov5n_fixture import import_yolov5 as _imp

        yolov5, _ = _imp()
        from yolov5.utils.general import LOGGER

        LOGGER.setLevel(logging.ERROR)
        _YOLOV5 = yolov5
    return _YOLOV5


def yolov5_file(*parts):
    return os.path.join(os.path.dirname(import_yolov5().__file__), *parts)


def onnx_tensors(graph):
    """name -> float32/int64 numpy for initializers, Constant outputs, and
    Identity outputs of those (followed through chains)."""
    from onnx import numpy_helper

    vals = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    vals[n.output[0]] = numpy_helper.to_array(a.t)
    changed = True
    while changed:
        changed = False
        for n in graph.node:
            if n.op_type == "Identity" and n.input[0] in vals and n.output[0] not in vals:
                vals[n.output[0]] = vals[n.input[0]]
                changed = True
    return vals


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def build_empty_model(nc=NC):
    """Model('yolov5s.yaml', nc) from the yolov5 package (weights to be
    overwritten).  Its BN layers have eps 1e-3, momentum 0.03 (initialize_weights)."""
    import torch

    import_yolov5()
    from yolov5.models.yolo import Model

    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        model = Model(yolov5_file("models", "yolov5s.yaml"), nc=nc)
    return model


def conv_exec_order(model, hw=64):
    """Names of the model's nn.Conv2d modules in forward execution order."""
    import torch
    import torch.nn as nn

    order, hooks = [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: order.append(name)))
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, hw, hw))
    model.train(was)
    for h in hooks:
        h.remove()
    return order


def anchors_from_decode(graph, vals):
    """Anchors in pixels [nl, na, 2] from the Detect decode's anchor_grid
    Constants ([1,na,ny,nx,2], positive, constant over the grid), in graph
    order; None when the graph has no decode."""
    res = []
    for n in graph.node:
        if n.op_type != "Constant" or not n.name.startswith("/model.24/"):
            continue
        v = vals[n.output[0]]
        if v.ndim == 5 and v.shape[-1] == 2 and v.dtype == np.float32 and np.all(v > 0):
            a = v[0, :, 0, 0, :]
            if np.all(v == a[None, :, None, None, :]):
                res.append(a)
    return np.stack(res) if res else None


def load_model(onnx_path, nc=NC, verbose=True):
    """Rebuild the Ultralytics model from `onnx_path`.  Returns (model, info):
    info = {"kind": "bn" | "folded", "anchors_px": [...], "strides": [...],
            "bn_inserted": {bn module name: {"conv_node", "conv_weight",
                            "beta_from"}} (folded only),
            "onnx_names": {state_dict key: ONNX initializer name} (trainable
                           tensors that exist in the ONNX file)}."""
    import onnx
    import torch
    import torch.nn as nn

    m = onnx.load(onnx_path)
    g = m.graph
    vals = onnx_tensors(g)
    meta = {p.key: p.value for p in m.metadata_props}
    model = build_empty_model(nc)
    det = model.model[-1]
    strides = [float(s) for s in det.stride]
    sd = model.state_dict()
    info = {"kind": None, "strides": strides, "onnx_names": {}, "bn_inserted": {}}
    has_bn = any(n.op_type == "BatchNormalization" for n in g.node)

    # Anchors (pixels)
    anchors_px = np.array(model.yaml["anchors"], dtype=np.float64).reshape(det.nl, det.na, 2)
    src = "yolov5s.yaml"
    if "anchors" in meta:
        anchors_px = np.array(json.loads(meta["anchors"]), dtype=np.float64).reshape(det.nl, det.na, 2)
        src = "metadata"
    dec = anchors_from_decode(g, vals)
    if dec is not None:
        if not np.array_equal(dec.astype(np.float64), anchors_px):
            raise SystemExit("%s: decode anchor_grid %s != %s anchors %s" % (onnx_path, dec.tolist(), src, anchors_px.tolist()))
        src += " (= decode anchor_grid)"
    info["anchors_px"] = anchors_px.tolist()
    info["anchors_source"] = src

    new = {}
    with torch.no_grad():
        if has_bn:
            info["kind"] = "bn"
            for n in g.node:
                if n.op_type == "BatchNormalization":
                    eps, mom = _attr(n, "epsilon", 1e-5), _attr(n, "momentum", 0.9)
                    if abs(eps - BN_EPS) > 1e-9 or abs(mom - (1 - BN_MOMENTUM)) > 1e-6:
                        raise SystemExit("%s: BN %s has epsilon %g momentum %g" % (onnx_path, n.name, eps, mom))
            for k, v in sd.items():
                if k.endswith("num_batches_tracked") or k == "model.24.anchors":
                    continue
                if k not in vals:
                    raise SystemExit("%s: state_dict key %s missing from the initializers" % (onnx_path, k))
                a = vals[k]
                if tuple(a.shape) != tuple(v.shape):
                    raise SystemExit("%s: %s shape %s != %s" % (onnx_path, k, a.shape, tuple(v.shape)))
                new[k] = torch.from_numpy(a.astype(np.float32).copy())
                info["onnx_names"][k] = k
            nconv = sum(1 for n in g.node if n.op_type == "Conv")
            if nconv != sum(1 for mm in model.modules() if isinstance(mm, nn.Conv2d)):
                raise SystemExit("%s: %d Conv nodes" % (onnx_path, nconv))
        else:
            info["kind"] = "folded"
            order = conv_exec_order(model)
            convs = [n for n in g.node if n.op_type == "Conv"]
            if len(convs) != len(order):
                raise SystemExit("%s: %d Conv nodes, model has %d convs" % (onnx_path, len(convs), len(order)))
            mods = dict(model.named_modules())
            for node, name in zip(convs, order):
                cm = mods[name]
                w = vals.get(node.input[1])
                if w is None:
                    raise SystemExit("%s: %s weight is not constant" % (onnx_path, node.name))
                if tuple(w.shape) != tuple(cm.weight.shape):
                    raise SystemExit("%s: %s weight %s != %s %s" % (onnx_path, node.name, w.shape, name, tuple(cm.weight.shape)))
                st = list(_attr(node, "strides", [1, 1]))
                pads = list(_attr(node, "pads", [0, 0, 0, 0]))
                dil = list(_attr(node, "dilations", [1, 1]))
                grp = _attr(node, "group", 1)
                if (st != list(cm.stride) or pads != list(cm.padding) * 2 or dil != list(cm.dilation)
                        or grp != cm.groups):
                    raise SystemExit("%s: %s attributes differ from %s" % (onnx_path, node.name, name))
                if node.input[1] != name + ".weight" and "." in node.input[1]:
                    raise SystemExit("%s: %s weight %s mapped to module %s" % (onnx_path, node.name, node.input[1], name))
                b = vals.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                if b is None:
                    b = np.zeros(w.shape[0], np.float32)
                new[name + ".weight"] = torch.from_numpy(w.astype(np.float32).copy())
                info["onnx_names"][name + ".weight"] = node.input[1]
                if name.startswith(HEAD_PREFIX):
                    new[name + ".bias"] = torch.from_numpy(b.astype(np.float32).copy())
                    info["onnx_names"][name + ".bias"] = node.input[2]
                else:
                    if not name.endswith(".conv"):
                        raise SystemExit("unexpected conv module %s" % name)
                    bn = name[: -len(".conv")] + ".bn"
                    c = w.shape[0]
                    new[bn + ".weight"] = torch.ones(c)
                    new[bn + ".bias"] = torch.from_numpy(b.astype(np.float32).copy())
                    new[bn + ".running_mean"] = torch.zeros(c)
                    new[bn + ".running_var"] = torch.full((c,), INSERTED_RUNNING_VAR)
                    info["bn_inserted"][bn] = {"conv_node": node.name, "conv_weight": node.input[1],
                                               "beta_from": node.input[2] if len(node.input) > 2 else ""}
            missing = [k for k in sd if k not in new and not k.endswith("num_batches_tracked") and k != "model.24.anchors"]
            if missing:
                raise SystemExit("%s: not set: %s" % (onnx_path, missing[:5]))
        for k, v in new.items():
            sd[k].copy_(v)
        for mm in model.modules():
            if isinstance(mm, nn.BatchNorm2d):
                mm.eps, mm.momentum = BN_EPS, BN_MOMENTUM
                mm.num_batches_tracked.zero_()
        det.anchors.copy_(torch.tensor(anchors_px, dtype=torch.float32) / det.stride.view(-1, 1, 1))
        det.grid = [torch.empty(0) for _ in range(det.nl)]
        det.anchor_grid = [torch.empty(0) for _ in range(det.nl)]
    if verbose:
        print("%s: %s export, %d tensors loaded, anchors from %s" % (os.path.basename(onnx_path), info["kind"], len(new), src))
    return model, info


def trainable_names(model):
    return [k for k, p in model.named_parameters() if p.requires_grad]


def verify_against_ort(onnx_path, model, info, seed=1):
    """Max abs error (and max |ref|) of the rebuilt model against ORT on
    pattern input.  BN export: train-mode raw maps (on a copy, so running
    statistics stay untouched); folded: eval-mode outputs."""
    import copy

    import torch
    from common import input_shapes

    (iname, shape), = input_shapes(onnx_path)
    x = pattern_input(shape, seed)
    names, ref = run_ort(onnx_path, {iname: x}, threads=2)
    mm = copy.deepcopy(model)
    with torch.no_grad():
        if info["kind"] == "bn":
            mm.train()
            outs = [o.numpy() for o in mm(torch.from_numpy(x))]
        else:
            mm.eval()
            y, raw = mm(torch.from_numpy(x))
            outs = [y.numpy()] if len(ref) == 1 else [o.numpy() for o in raw]
    res = []
    for n, r, o in zip(names, ref, outs):
        if r.shape != o.shape:
            raise SystemExit("%s: output %s shape %s vs torch %s" % (onnx_path, n, r.shape, o.shape))
        err = float(np.max(np.abs(r.astype(np.float64) - o.astype(np.float64))))
        res.append((n, err, float(np.max(np.abs(r)))))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=DEFAULT_SHARED)
    ap.add_argument("--models", nargs="*", default=["yolov5s-bn.onnx", "yolov5s-320.onnx", "yolov5s.onnx", "yolov5s-train.onnx"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    worst = 0.0
    for f in args.models:
        p = os.path.join(args.shared, "models", f)
        if not os.path.exists(p):
            print("skip %s: not found (needs ../shared)" % p)
            continue
        model, info = load_model(p)
        for n, err, mx in verify_against_ort(p, model, info):
            rel = err / max(1.0, mx)
            worst = max(worst, rel)
            print("  %-8s %-8s max|torch-ORT| = %.3g  (max|ORT| %.4g, rel %.3g)" % (info["kind"], n, err, mx, rel))
    print("worst relative error %.3g" % worst)
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
