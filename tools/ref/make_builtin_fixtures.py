#!/usr/bin/python3
"""Make tests/fixtures/builtin/<name>_nc<k>.json: the PyTorch state_dict layout
of freshly built Ultralytics YOLOv5 v7.0 models, for tests/test_builtin.c.

onnx-train builds the five P5 sizes natively (train/builtin.c).  This pins
down what it must produce: for yolov5n/s/m/l/x with 80 classes and yolov5n
with 3 classes, the model is built by the `yolov5` pip package itself
(Model('models/yolov5X.yaml', nc=k), the package's own yaml files) and each
JSON lists, in state_dict order, every parameter and BatchNorm buffer

    {"name": "model.0.conv.weight", "shape": [16, 3, 6, 6]}

(running_mean / running_var included; num_batches_tracked and Detect's
`anchors` buffer left out: the first is a counter, the second lives in the
decode), plus "parameters" = sum of numel over model.parameters() (what
Ultralytics' model summary prints) and "buffers" = the BN buffer count.
Only names and shapes are recorded (the weights are random), so the files
stay small and reruns are byte-identical.

Usage:  /usr/bin/python3 tools/ref/make_builtin_fixtures.py [--out tests/fixtures/builtin]
"""

import argparse
import json
import os
import sys

sys.dont_write_bytecode = True  # keep tools/ref/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES  # noqa: E402
from make_yolov5n_fixture import import_yolov5  # noqa: E402  (the offline shims)

CASES = [("yolov5n", 80), ("yolov5s", 80), ("yolov5m", 80), ("yolov5l", 80), ("yolov5x", 80), ("yolov5n", 3)]


def describe(Model, cfg, name, nc):
    import torch

    torch.manual_seed(0)
    model = Model(cfg, nc=nc).eval()
    tensors = []
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") or k.endswith(".anchors"):
            continue
        tensors.append({"name": k, "shape": [int(d) for d in v.shape]})
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(1 for k in tensors if k["name"].endswith(("running_mean", "running_var")))
    return {
        "model": name,
        "nc": nc,
        "yaml": "models/%s.yaml" % name,
        "parameters": int(params),
        "buffers": buffers,
        "n_tensors": len(tensors),
        "strides": [int(s) for s in model.stride.tolist()],
        "tensors": tensors,
    }


def write_json(path, d):
    # top-level keys one a line, one tensor a line: small and diff-friendly
    lines = ["{"]
    keys = [k for k in d if k != "tensors"]
    for k in keys:
        lines.append("  %s: %s," % (json.dumps(k), json.dumps(d[k])))
    lines.append('  "tensors": [')
    for i, t in enumerate(d["tensors"]):
        lines.append("    %s%s" % (json.dumps(t, separators=(", ", ": ")), "," if i + 1 < len(d["tensors"]) else ""))
    lines.append("  ]")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(FIXTURES, "builtin"))
    args = ap.parse_args()
    yolov5, Model = import_yolov5()
    import logging

    logging.getLogger("yolov5").setLevel(logging.ERROR)  # the model summaries
    pkg = os.path.dirname(os.path.abspath(yolov5.__file__))
    os.makedirs(args.out, exist_ok=True)
    for name, nc in CASES:
        cfg = os.path.join(pkg, "models", "%s.yaml" % name)
        d = describe(Model, cfg, name, nc)
        path = os.path.join(args.out, "%s_nc%d.json" % (name, nc))
        write_json(path, d)
        print("%s: %d tensors, %d parameters" % (path, d["n_tensors"], d["parameters"]))


if __name__ == "__main__":
    main()
