#!/usr/bin/python3
"""Compare onnx-train's forward pass with ONNX Runtime on the pattern input.

    /usr/bin/python3 tools/ref/compare_forward.py --model M.onnx [--cli build/onnx-train] [--seed 1]

Runs
  * ORT (ORT_DISABLE_ALL, see common.py) on pattern(numel, seed) reshaped to
    the model's declared input shape (the same numbers as the C function
    ot_fill_pattern), and
  * `<cli> forward M --random-input SEED --out DIR`, which writes
    DIR/<output name>.npy for every graph output,
then prints, per graph output, max |ours - ref| / max(1, max |ref|) and exits
1 when any output is above the tolerance (default 1e-4), missing, or shaped
differently; 2 when the CLI cannot be run.

Symbolic input dims are taken as 1.  Models with several graph inputs: input k
gets seed + k (an assumption about the CLI; single-input models are the
intended use).
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.dont_write_bytecode = True  # keep tools/ref/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, input_shapes, pattern_input, run_ort  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--cli", default=os.path.join(os.path.relpath(ROOT), "build", "onnx-train"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    ap.add_argument("--keep", help="keep the CLI's output folder here instead of a temporary one")
    args = ap.parse_args()

    feeds = {}
    for k, (name, shape) in enumerate(input_shapes(args.model)):
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
        feeds[name] = pattern_input(shape, seed=args.seed + k)
    if len(feeds) > 1:
        print("note: %d graph inputs; input k uses seed %d + k" % (len(feeds), args.seed))
    onames, refs = run_ort(args.model, feeds, threads=args.threads)

    if not (os.path.isfile(args.cli) and os.access(args.cli, os.X_OK)):
        print("compare_forward: CLI %s not found or not executable" % args.cli)
        return 2
    tmp = None
    if args.keep:
        outdir = args.keep
        os.makedirs(outdir, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="compare_forward_")
        outdir = tmp.name
    cmd = [args.cli, "forward", args.model, "--random-input", str(args.seed), "--out", outdir]
    print("$ " + " ".join(cmd))
    r = subprocess.run(cmd)
    if r.returncode != 0:
        print("compare_forward: CLI exited with status %d" % r.returncode)
        return 2

    worst = 0.0
    failed = False
    for name, ref in zip(onames, refs):
        path = os.path.join(outdir, name + ".npy")
        if not os.path.exists(path):
            print("%-24s MISSING (%s)" % (name, path))
            failed = True
            continue
        ours = np.load(path, allow_pickle=False)
        if tuple(ours.shape) != tuple(ref.shape):
            print("%-24s SHAPE ours %s ref %s" % (name, list(ours.shape), list(ref.shape)))
            failed = True
            continue
        ours = ours.astype(np.float64)
        refd = ref.astype(np.float64)
        if not np.all(np.isfinite(ours)):
            print("%-24s NON-FINITE values in ours (%d)" % (name, int((~np.isfinite(ours)).sum())))
            failed = True
            continue
        scale = max(1.0, float(np.abs(refd).max()))
        diff = np.abs(ours - refd)
        err = float(diff.max()) / scale
        worst = max(worst, err)
        at = np.unravel_index(int(diff.argmax()), diff.shape)
        status = "ok" if err <= args.tol else "FAIL"
        print("%-24s %-18s max|d|/max(1,|ref|) = %.3e  (max|d| %.3e at %s, max|ref| %.6g)  %s" % (
            name, list(ref.shape), err, float(diff.max()), list(map(int, at)), float(np.abs(refd).max()), status))
        failed |= err > args.tol
    print("worst %.3e, tolerance %.1e: %s" % (worst, args.tol, "FAIL" if failed else "PASS"))
    if tmp is not None:
        tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
