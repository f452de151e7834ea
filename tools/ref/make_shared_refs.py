#!/usr/bin/python3
"""Make subsampled ORT references for the shared YOLOv5s models:
tests/fixtures/shared/<model>.txt and <model>.<k>.npy.

For each of ../shared/models/{yolov5s,yolov5s-320,yolov5s-train,yolov5s-bn}.onnx
(never committed; only these small references are), run ONNX Runtime
(ORT_DISABLE_ALL, see common.py) on the input pattern(numel, seed=1) of the
model's declared input shape.  For each graph output k (graph-output order)
store a deterministic subsample of the flattened output:

    stride = max(1, N // 16384) | 1        (always odd)
    offset = stride // 2
    <model>.<k>.npy = out.ravel()[np.arange(offset, N, stride)]   (float32, 1-d)

<model>.txt has one line per output, fields separated by single spaces:

    output_index output_name N stride offset max_abs

(max_abs = max |x| over the whole output, printed with %.9g).

Usage:  /usr/bin/python3 tools/ref/make_shared_refs.py [--shared ../shared] [--out tests/fixtures/shared]
Skips with a message (exit 0) when the shared folder is missing.
"""

import argparse
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep tools/ref/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_SHARED, FIXTURES, input_shapes, pattern_input, run_ort, save_npy  # noqa: E402

MODELS = ["yolov5s", "yolov5s-320", "yolov5s-train", "yolov5s-bn"]


def subsample_params(n):
    stride = max(1, n // 16384) | 1
    return stride, stride // 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.relpath(DEFAULT_SHARED),
                    help="shared folder (default ../shared relative to the project root)")
    ap.add_argument("--out", default=os.path.join(FIXTURES, "shared"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-optimised", action="store_true",
                    help="also run ORT with ORT_ENABLE_ALL and report how far it is from ORT_DISABLE_ALL")
    args = ap.parse_args()

    mdir = os.path.join(args.shared, "models")
    if not os.path.isdir(mdir):
        print("make_shared_refs: %s not found; skipping (the shared models are not part of the project)" % mdir)
        return 0
    os.makedirs(args.out, exist_ok=True)
    for name in MODELS:
        path = os.path.join(mdir, name + ".onnx")
        if not os.path.exists(path):
            print("make_shared_refs: %s missing; skipping it" % path)
            continue
        (iname, shape), = input_shapes(path)
        assert all(isinstance(d, int) and d > 0 for d in shape), shape
        x = pattern_input(shape, seed=1)
        onames, outs = run_ort(path, {iname: x}, threads=args.threads)
        lines = []
        for k, (oname, y) in enumerate(zip(onames, outs)):
            assert y.dtype == np.float32
            assert np.all(np.isfinite(y)), (name, oname)
            n = y.size
            stride, offset = subsample_params(n)
            sub = y.ravel()[np.arange(offset, n, stride)]
            save_npy(os.path.join(args.out, "%s.%d.npy" % (name, k)), sub)
            max_abs = float(np.abs(y).max())
            lines.append("%d %s %d %d %d %.9g\n" % (k, oname, n, stride, offset, max_abs))
            print("%-14s out %d %-8s %-22s N=%d stride=%d offset=%d samples=%d max_abs=%.6g mean=%.6g std=%.6g" % (
                name, k, oname, list(y.shape), n, stride, offset, sub.size, max_abs, y.mean(), y.std()))
        with open(os.path.join(args.out, name + ".txt"), "w") as f:
            f.writelines(lines)
        if args.check_optimised:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.intra_op_num_threads = args.threads
            so.log_severity_level = 3
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            outs2 = sess.run(onames, {iname: x})
            for k, (a, b) in enumerate(zip(outs, outs2)):
                print("    ORT_ENABLE_ALL vs DISABLE_ALL, output %d: max |diff| / max(1,|ref|) = %.3g" % (
                    k, np.abs(a - b).max() / max(1.0, float(np.abs(a).max()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
