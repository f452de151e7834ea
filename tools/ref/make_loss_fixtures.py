#!/usr/bin/python3
"""Make tests/fixtures/loss/: Ultralytics YOLOv5 v7.0 ComputeLoss references
(loss components and every parameter gradient) for one training-mode forward
and backward of yolov5s on a batch of 2 at 320x320.

Per case (listed in tests/fixtures/loss/cases.txt):
    <case>.targets.txt   the boxes (committed by hand; one a line,
                         `image_index class cx cy w h`, normalised, # comments)
    <case>.hyp.yaml      only for cases with a non-default hyp (written here)
    <case>.json          the reference (schema in tools/ref/README.md)

What runs (exactly train.py's set-up, CPU, float32, no AMP):
    model  = torch_model_from_onnx.load_model(../shared/models/<model>)
             (a folded export gets BN inserted: gamma 1, beta = conv bias,
              mean 0, var 0.999, eps 1e-3, momentum 0.03)
    hyp    = hyp.scratch-low.yaml (or <case>.hyp.yaml), then as train.py:
             box *= 3/nl; cls *= nc/80 * 3/nl; obj *= (img/640)**2 * 3/nl
             (nl 3, nc 80, img 320 -> box 0.05, cls 0.5, obj 0.25)
    model.nc, model.hyp, model.gr = 80, hyp, 1.0
    imgs   = pattern(2*3*320*320, seed).reshape(2, 3, 320, 320)
    model.train(); preds = model(imgs)
    loss, items = ComputeLoss(model)(preds, targets); loss.backward()

Note: train.py overwrites hyp['label_smoothing'] with its --label-smoothing
option (default 0.0), so a label_smoothing key in a hyp YAML is ignored by
upstream train.py; here the hyp file's value is used (as if
--label-smoothing had been given the same value).

Usage:  /usr/bin/python3 tools/ref/make_loss_fixtures.py [--shared DIR] [--only CASE ...]
"""

import argparse
import os
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_SHARED, FIXTURES, pattern, pattern_input  # noqa: E402
import torch_model_from_onnx as tmo  # noqa: E402

OUT = os.path.join(FIXTURES, "loss")
IMG = 320
BATCH = 2
THREADS = 2
DOT_SEED = 7

# name, model file, input seed, samples per gradient tensor, hyp overrides (None: scratch-low)
CASES = [
    ("mixed", "yolov5s-bn.onnx", 11, 64, None),
    ("empty", "yolov5s-bn.onnx", 12, 16, None),
    ("borders", "yolov5s-bn.onnx", 13, 16, None),
    ("tiny", "yolov5s-bn.onnx", 14, 16, None),
    ("large", "yolov5s-bn.onnx", 15, 16, None),
    ("overlap", "yolov5s-bn.onnx", 17, 16, None),
    ("single", "yolov5s-bn.onnx", 18, 16, None),
    ("hyp", "yolov5s-bn.onnx", 16, 16,
     {"fl_gamma": 1.5, "label_smoothing": 0.1, "cls_pw": 1.2, "obj_pw": 0.8, "anchor_t": 3.0}),
    ("folded_mixed", "yolov5s-320.onnx", 19, 64, None),
]

LOSS_HYP_KEYS = ["box", "cls", "obj", "cls_pw", "obj_pw", "anchor_t", "fl_gamma", "label_smoothing"]


# ---------------------------------------------------------------- JSON output
def f32(x):
    """Shortest decimal that round-trips the float32 value (parse with strtof)."""
    v = np.float32(x)
    if not np.isfinite(v):
        raise SystemExit("non-finite value")
    s = str(v)
    return s


def f64(x):
    x = float(x)
    if not np.isfinite(x):
        raise SystemExit("non-finite value")
    return repr(x)


def jval(v):
    """Minimal JSON for dict/list/str/int/bool/None and pre-formatted numbers
    (class Num)."""
    if isinstance(v, Num):
        return v.s
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        return f64(v)
    if isinstance(v, str):
        import json

        return json.dumps(v)
    if isinstance(v, dict):
        return "{" + ",".join('"%s":%s' % (k, jval(x)) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(jval(x) for x in v) + "]"
    raise TypeError(type(v))


class Num:
    def __init__(self, s):
        self.s = s


def N32(x):
    return Num(f32(x))


def write_json(path, top, multiline=("grads",)):
    """Top-level keys one per line; the entries of the dicts named in
    `multiline` one per line too (diff-friendly)."""
    lines = ["{"]
    items = list(top.items())
    for i, (k, v) in enumerate(items):
        end = "," if i + 1 < len(items) else ""
        if k in multiline and isinstance(v, dict):
            lines.append('"%s":{' % k)
            sub = list(v.items())
            for j, (kk, vv) in enumerate(sub):
                lines.append('  "%s":%s%s' % (kk, jval(vv), "," if j + 1 < len(sub) else ""))
            lines.append("}" + end)
        else:
            lines.append('"%s":%s%s' % (k, jval(v), end))
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def tensor_stats(a, k, dot=True):
    """norm / sum (float64) / dot with pattern(n, 7) - 0.5 / k samples at
    np.linspace(0, n-1, min(n, k)).astype(int) of the flattened tensor."""
    a = np.asarray(a, dtype=np.float32).ravel()
    n = a.size
    a64 = a.astype(np.float64)
    idx = np.linspace(0, n - 1, min(n, k)).astype(int)
    d = {"n": n, "norm": Num(f64(np.sqrt(np.dot(a64, a64)))), "sum": Num(f64(a64.sum()))}
    if dot:
        d["dot"] = Num(f64(np.dot(a64, pattern(n, DOT_SEED).astype(np.float64) - 0.5)))
    d["idx"] = [int(i) for i in idx]
    d["val"] = [N32(a[i]) for i in idx]
    return d


# ---------------------------------------------------------------- set-up
def read_targets(path):
    rows = []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            p = s.split()
            if len(p) != 6:
                raise SystemExit("%s:%d: expected 6 columns" % (path, ln))
            rows.append([float(x) for x in p])
    return np.array(rows, dtype=np.float32).reshape(-1, 6)


def load_hyp(path):
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


def scale_hyp(hyp, nl, nc, imgsz):
    """train.py lines 256-258 (and its label_smoothing default 0.0 when absent)."""
    hyp = dict(hyp)
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (imgsz / 640) ** 2 * 3 / nl
    hyp.setdefault("label_smoothing", 0.0)
    return hyp


def write_hyp_yaml(path, overrides):
    """A complete hyp file: hyp.scratch-low.yaml with `overrides` replaced
    (and label_smoothing added)."""
    src = tmo.yolov5_file("data", "hyps", "hyp.scratch-low.yaml")
    out = ["# hyp.scratch-low.yaml (Ultralytics YOLOv5 v7.0) with: " +
           ", ".join("%s %s" % kv for kv in overrides.items()),
           "# written by tools/ref/make_loss_fixtures.py"]
    seen = set()
    with open(src) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#") or not line.strip():
                continue
            key = line.split(":")[0].strip()
            if key in overrides:
                out.append("%s: %s  # changed" % (key, overrides[key]))
                seen.add(key)
            else:
                out.append(line)
    for k, v in overrides.items():
        if k not in seen:
            out.append("%s: %s  # added (train.py takes it from --label-smoothing)" % (k, v))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def versions():
    import onnx
    import onnxruntime
    import torch

    import_pkg = tmo.import_yolov5()
    v = getattr(import_pkg, "__version__", "?")
    return {"torch": torch.__version__.split("+")[0], "yolov5": v, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def run_case(name, model_file, seed, k, overrides, shared, alt=None):
    """alt None: return {name: gradient array} without writing (the mkldnn-off pass)."""
    import torch

    tmo.import_yolov5()
    from yolov5.utils.loss import ComputeLoss

    onnx_path = os.path.join(shared, "models", model_file)
    model, info = tmo.load_model(onnx_path, verbose=False)
    det = model.model[-1]
    hyp_file = None
    hyp = load_hyp(tmo.yolov5_file("data", "hyps", "hyp.scratch-low.yaml"))
    if overrides:
        hyp_file = name + ".hyp.yaml"
        write_hyp_yaml(os.path.join(OUT, hyp_file), overrides)
        hyp = load_hyp(os.path.join(OUT, hyp_file))
    hyp = scale_hyp(hyp, det.nl, tmo.NC, IMG)
    model.nc, model.hyp, model.gr = tmo.NC, hyp, 1.0
    compute_loss = ComputeLoss(model)

    targets = read_targets(os.path.join(OUT, name + ".targets.txt"))
    imgs = torch.from_numpy(pattern_input((BATCH, 3, IMG, IMG), seed))

    heads = {}
    hooks = [mi.register_forward_hook(lambda mod, i, o, j=j: heads.__setitem__(j, o.detach().clone()))
             for j, mi in enumerate(det.m)]
    model.train()
    model.zero_grad(set_to_none=True)
    preds = model(imgs)
    for h in hooks:
        h.remove()
    tcls, tbox, indices, anch = compute_loss.build_targets(preds, torch.from_numpy(targets))
    matches = [int(ix[0].shape[0]) for ix in indices]
    loss, items = compute_loss(preds, torch.from_numpy(targets))
    loss.backward()

    lbox, lobj, lcls = (float(x) for x in items)
    print("%-13s seed %2d nt %2d matches %-14s lbox %.9g lobj %.9g lcls %.9g loss %.9g"
          % (name, seed, len(targets), matches, lbox, lobj, lcls, float(loss)))

    if alt is None:
        return {pname: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy().copy()
                for pname, p in model.named_parameters()}
    grads = {}
    for pname, p in model.named_parameters():
        g = p.grad
        if g is None:
            g = torch.zeros_like(p)
        st = tensor_stats(g.numpy(), k)
        # the same sampled values from PyTorch's other CPU convolution path (mkldnn off):
        # the reference's own float32 noise, per tensor
        a = np.asarray(alt[pname], dtype=np.float32).ravel()
        st["val_alt"] = [N32(a[i]) for i in st["idx"]]
        st["norm_alt"] = Num(f64(np.sqrt(np.dot(a.astype(np.float64), a.astype(np.float64)))))
        st = {"shape": list(p.shape), **st}
        grads[pname] = st
    bn0 = model.model[0].bn
    top = {
        "case": name,
        "model": model_file,
        "kind": info["kind"],
        "seed": seed,
        "input_shape": [BATCH, 3, IMG, IMG],
        "img": IMG,
        "targets": name + ".targets.txt",
        "nt": int(targets.shape[0]),
        "hyp_file": hyp_file,
        "hyp": {kk: Num(f64(hyp[kk])) for kk in LOSS_HYP_KEYS},
        "lbox": N32(items[0]),
        "lobj": N32(items[1]),
        "lcls": N32(items[2]),
        "loss": N32(loss.item()),
        "matches": matches,
        "anchors_px": info["anchors_px"],
        "strides": info["strides"],
        "head": [{"name": "model.24.m.%d" % j, "shape": list(heads[j].shape),
                  "sum": Num(f64(heads[j].double().sum())), "norm": Num(f64(heads[j].double().norm()))}
                 for j in range(det.nl)],
        "running_mean": {"name": "model.0.bn.running_mean", **tensor_stats(bn0.running_mean.numpy(), 64, dot=False)},
        "running_var": {"name": "model.0.bn.running_var", **tensor_stats(bn0.running_var.numpy(), 64, dot=False)},
        "samples": k,
        "dot_seed": DOT_SEED,
        "torch_threads": THREADS,
        "versions": versions(),
    }
    if info["kind"] == "folded":
        top["bn_inserted"] = info["bn_inserted"]
    top["grads"] = grads
    write_json(os.path.join(OUT, name + ".json"), top, multiline=("grads", "bn_inserted"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=DEFAULT_SHARED)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.shared, "models")):
        print("skip: %s/models not found (the loss fixtures need ../shared)" % args.shared)
        return 0
    import torch

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    for name, mf, seed, k, ov in CASES:
        if args.only and name not in args.only:
            continue
        with torch.backends.mkldnn.flags(enabled=False):
            alt = run_case(name, mf, seed, k, ov, args.shared)
        run_case(name, mf, seed, k, ov, args.shared, alt=alt)
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("".join(c[0] + "\n" for c in CASES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
