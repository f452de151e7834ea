#!/usr/bin/python3
"""Make tests/fixtures/yolov5n-c3-416.tar.xz: a real Ultralytics YOLOv5n export
(3 classes, 416x416, opset 12) with small, compressible weights, plus the ORT
reference output for the standard pattern input.

The tarball holds
    yolov5n-c3-416.onnx   exported by the `yolov5` pip package's own export code
                          (yolov5.export.run with include=onnx, imgsz=416,
                          opset=12, everything else at export.py's defaults:
                          BN fused into Conv, Detect decode inside the graph,
                          output0 [1,10647,8]);
    ref_output0.npy       ORT (ORT_DISABLE_ALL) output0 for the input
                          pattern(1*3*416*416, seed=1) reshaped to [1,3,416,416].

Weights: the model is built as Model('yolov5n.yaml', nc=3) from the package's
models/ folder with torch.manual_seed(0); then every conv weight is replaced by
a quantised random init: per layer U(-b, b) with b = 1/sqrt(fan_in), rounded to
multiples of b/8 (17 distinct values per layer); BatchNorm gamma 1, running
mean 0, running var 1, beta a random multiple of 0.05 in [-0.2, 0.2].  The
Detect convs keep the Ultralytics bias init (_initialize_biases).  After
fusing, each layer's weights take 17 values and xz compresses them well.

Usage:  /usr/bin/python3 tools/ref/make_yolov5n_fixture.py [--out tests/fixtures]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import types

import numpy as np

sys.dont_write_bytecode = True  # keep tools/ref/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES, pattern_input, run_ort, save_npy  # noqa: E402

NAME = "yolov5n-c3-416"
IMGSZ = 416
SEED = 0


def import_yolov5():
    """Import the `yolov5` pip package.  Its utils/general.py imports
    ultralytics.utils.checks.check_requirements (an optional pip-installer
    helper); when the `ultralytics` package is absent, shim that one function
    with a no-op so nothing gets installed."""
    try:
        import ultralytics.utils.checks  # noqa: F401
    except ImportError:
        m = types.ModuleType("ultralytics")
        u = types.ModuleType("ultralytics.utils")
        c = types.ModuleType("ultralytics.utils.checks")
        c.check_requirements = lambda *a, **k: True
        m.utils, u.checks = u, c
        sys.modules.update({"ultralytics": m, "ultralytics.utils": u, "ultralytics.utils.checks": c})
    import yolov5  # noqa: F401
    import yolov5.export
    import yolov5.models.experimental
    from yolov5.models.yolo import Model

    # The pip package's attempt_download() first asks the Hugging Face hub
    # about every weights path (upstream YOLOv5 v7.0 only downloads missing
    # files).  Our checkpoint is a local file: keep everything offline.
    yolov5.models.experimental.attempt_download = lambda f, *a, **k: str(f)

    return yolov5, Model


def quantise_weights(model, seed=SEED):
    import torch
    import torch.nn as nn

    rng = np.random.default_rng(seed)
    nconv = 0
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                w = m.weight
                fan_in = w.shape[1] * w.shape[2] * w.shape[3]
                b = 1.0 / np.sqrt(fan_in)
                q = np.round(rng.uniform(-b, b, tuple(w.shape)) / (b / 8)).astype(np.int64)  # -8..8
                w.copy_(torch.from_numpy((q * (b / 8)).astype(np.float32)))
                nconv += 1
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.bias.copy_(torch.from_numpy((rng.integers(-4, 5, m.bias.shape) * 0.05).astype(np.float32)))
    return nconv


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=FIXTURES)
    ap.add_argument("--keep", help="also copy the .onnx and .npy to this folder")
    args = ap.parse_args()

    import onnx
    import onnx.numpy_helper
    import torch

    yolov5, Model = import_yolov5()
    cfg = os.path.join(os.path.dirname(yolov5.__file__), "models", "yolov5n.yaml")
    torch.manual_seed(SEED)
    model = Model(cfg, nc=3)
    nconv = quantise_weights(model)
    model.eval()
    print("built %s nc=3, quantised %d convs, %d params" % (cfg, nconv, sum(p.numel() for p in model.parameters())))

    with tempfile.TemporaryDirectory() as tmp:
        pt = os.path.join(tmp, NAME + ".pt")
        # A checkpoint the way Ultralytics stores one (ckpt['model'] is the
        # nn.Module; attempt_load() reads it, .float(), .fuse(), .eval()).
        torch.save({"model": model, "epoch": -1}, pt)
        # Same as: python export.py --weights W.pt --include onnx --imgsz 416 --opset 12
        yolov5.export.run(weights=pt, imgsz=[IMGSZ], include=("onnx",), opset=12, device="cpu",
                          batch_size=1, half=False, inplace=False, dynamic=False, simplify=False)
        onnx_path = os.path.join(tmp, NAME + ".onnx")
        if not os.path.exists(onnx_path):
            sys.exit("export failed: %s not written" % onnx_path)

        m = onnx.load(onnx_path)
        onnx.checker.check_model(m)
        outs = [(o.name, [d.dim_value for d in o.type.tensor_type.shape.dim]) for o in m.graph.output]
        print("opset", m.opset_import[0].version, "inputs", [i.name for i in m.graph.input], "outputs", outs)
        assert outs == [("output0", [1, 10647, 8])], outs
        distinct = [len(np.unique(onnx.numpy_helper.to_array(t))) for t in m.graph.initializer
                    if len(t.dims) == 4]
        print("conv weight initializers: %d, distinct values per layer: max %d" % (len(distinct), max(distinct)))

        x = pattern_input((1, 3, IMGSZ, IMGSZ), seed=1)
        _, (y,) = run_ort(onnx_path, {"images": x}, threads=2)
        assert y.shape == (1, 10647, 8) and y.dtype == np.float32
        assert np.all(np.isfinite(y)), "NaN/inf in ORT output"
        print("ORT output0 %s: min %.6g max %.6g mean %.6g std %.6g" % (y.shape, y.min(), y.max(), y.mean(), y.std()))
        for k, label in enumerate(["x", "y", "w", "h", "obj", "cls0", "cls1", "cls2"]):
            col = y[0, :, k]
            print("  col %d %-4s min %.6g max %.6g std %.6g distinct %d" % (
                k, label, col.min(), col.max(), col.std(), len(np.unique(col))))
            assert col.std() > 0, "column %d is constant" % k
        # torch (fused, same as exported) vs ORT
        fused = yolov5.models.experimental.attempt_load(pt, device="cpu", inplace=True, fuse=True)
        for mod in fused.modules():
            if type(mod).__name__ == "Detect":
                mod.export = True
        with torch.no_grad():
            yt = fused(torch.from_numpy(x))[0].numpy()
        print("max |torch - ORT| / max(1,|ORT|): %.3g" % (np.abs(yt - y).max() / max(1.0, np.abs(y).max())))

        save_npy(os.path.join(tmp, "ref_output0.npy"), y)
        tar = os.path.join(args.out, NAME + ".tar.xz")
        os.makedirs(args.out, exist_ok=True)
        env = dict(os.environ, XZ_OPT="-9e")
        subprocess.check_call(["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
                               "--mtime=@0", "-cJf", os.path.abspath(tar), NAME + ".onnx", "ref_output0.npy"],
                              cwd=tmp, env=env)
        if args.keep:
            import shutil

            os.makedirs(args.keep, exist_ok=True)
            shutil.copy(onnx_path, args.keep)
            shutil.copy(os.path.join(tmp, "ref_output0.npy"), args.keep)
        print("%s: onnx %d bytes, ref %d bytes -> tar.xz %d bytes" % (
            tar, os.path.getsize(onnx_path), os.path.getsize(os.path.join(tmp, "ref_output0.npy")),
            os.path.getsize(tar)))
        if os.path.getsize(tar) > 1_500_000:
            print("WARNING: tarball over 1.5 MB")


if __name__ == "__main__":
    main()
