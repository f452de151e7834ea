"""Export check against ONNX Runtime (issue 5 acceptance, docs/TRAINING.md).

One epoch of `onnx-train train` on a small subset of ../shared/data/coco128,
starting from each Ultralytics export given (default: yolov5s.onnx, the
inference form, and yolov5s-bn.onnx, BatchNormalization kept), then
`onnx-train export --form inference`; the exported file must pass
onnx.checker (full check) and, run in ONNX Runtime (ORT_DISABLE_ALL), equal
`onnx-train forward CKPT` (the checkpoint's EMA weights, eval mode, decode)
on the same input within 1e-4 scaled error (max |a - b| / max(1, |b|)).
The C suite tests/test_train_run.c checks the same against our own forward;
this script is the independent reference and is run by hand:

  /usr/bin/python3 tools/ref/check_export.py --cli build/onnx-train [--img 320] [--images 16]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx

from common import DEFAULT_SHARED, pattern_input, ort_session


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default="build/onnx-train")
    ap.add_argument("--shared", default=DEFAULT_SHARED)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--models", nargs="*", default=["yolov5s.onnx", "yolov5s-bn.onnx"])
    a = ap.parse_args()
    coco = os.path.join(a.shared, "data", "coco128")
    if not os.path.isdir(coco):
        sys.exit("no %s" % coco)
    work = tempfile.mkdtemp(prefix="ot_export_check_")
    d = os.path.join(work, "coco_subset")
    os.makedirs(os.path.join(d, "images"))
    os.makedirs(os.path.join(d, "labels"))
    imgs = sorted(os.listdir(os.path.join(coco, "images", "train2017")))[: a.images]
    for f in imgs:
        os.symlink(os.path.join(coco, "images", "train2017", f), os.path.join(d, "images", f))
        lb = os.path.join(coco, "labels", "train2017", f.rsplit(".", 1)[0] + ".txt")
        if os.path.exists(lb):
            with open(lb) as s, open(os.path.join(d, "labels", os.path.basename(lb)), "w") as t:
                t.write(s.read())
    names = [n.strip() for n in open(os.path.join(coco, "names.txt")) if n.strip()]
    with open(os.path.join(d, "data.yaml"), "w") as f:
        f.write("path: %s\ntrain: images\nval: images\nnames: [%s]\n" % (d, ", ".join("'%s'" % n for n in names)))
    rows = []
    for m in a.models:
        name = m.replace(".onnx", "").replace("-", "_")
        run([a.cli, "train", "--model", os.path.join(a.shared, "models", m), "--data", os.path.join(d, "data.yaml"),
             "--img", str(a.img), "--epochs", "1", "--batch-size", "8", "--workers", "2", "--noplots",
             "--project", os.path.join(work, "runs"), "--name", name, "--exist-ok"])
        ck = os.path.join(work, "runs", name, "weights", "last.ckpt")
        out = os.path.join(work, name + "_inference.onnx")
        run([a.cli, "export", "--weights", ck, "--out", out, "--form", "inference", "--img", str(a.img)])
        model = onnx.load(out)
        onnx.checker.check_model(model, full_check=True)
        sess = ort_session(out)
        x = pattern_input(sess.get_inputs()[0].shape, seed=7)  # the export keeps the source's batch
        np.save(os.path.join(work, "x.npy"), x)
        run([a.cli, "forward", ck, "--input", os.path.join(work, "x.npy"), "--out", os.path.join(work, "fo_" + name)])
        ours = np.load(os.path.join(work, "fo_" + name, "output0.npy"))
        ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        err = float(np.max(np.abs(ours - ref) / np.maximum(1.0, np.abs(ref))))
        rows.append((m, ref.shape, err))
    print("\n%-18s %-18s %s" % ("trained from", "export output", "max scaled error vs ORT"))
    ok = True
    for m, s, e in rows:
        print("%-18s %-18s %.3g %s" % (m, "x".join(map(str, s)), e, "ok" if e <= 1e-4 else "FAIL"))
        ok &= e <= 1e-4
    print("work folder:", work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
