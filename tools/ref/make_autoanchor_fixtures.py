#!/usr/bin/python3
"""Make tests/fixtures/autoanchor/: references for train/autoanchor.c, computed
with the REAL Ultralytics code (the `yolov5` pip package 7.0.13,
utils/autoanchor.py).

coco128.json (needs ../shared/data/coco128; skipped without it):
    Ultralytics' LoadImagesAndLabels on a temporary tree of symlinks to
    coco128 (Ultralytics writes a labels .cache file next to the labels: never
    into ../shared), then the label sizes exactly as check_anchors computes
    them (np.random.seed(0) for its per-image uniform(0.9, 1.1) scale), and
    check_anchors itself on a stand-in Detect module with the default P5
    anchors: its log line is recorded ("check_anchors_line") and must agree
    with the metric below. A subsample of 300 sizes ("wh", float32) is kept
    with the metric (bpr, aat) of the default P5 anchors and of a second
    anchor set (the P5 anchors x 0.5), as exact counts / n ("bpr", "aat") and
    as torch's float32 means ("bpr_f32", "aat_f32"); "full" has the metric on
    all sizes. "images" lists a few images with their unscaled label sizes
    wh0 = label w, h * (640 * shape / max side) (float64, as kmean_anchors).

tiny.json: a synthetic dataset (one 640x640 image per box) of mostly tiny
    boxes (1.5..4 px) and some larger ones, where the default anchors fit
    badly: the sizes ("wh"), the metric of the default anchors, and Ultralytics'
    kmean_anchors result (np.random.seed(1), random.seed(1), 1000 generations;
    with seed 0 scipy's best k-means restart loses a cluster and Ultralytics
    falls back to random anchors, which evolve to a worse fit than the defaults)
    with its metric ("ultralytics_kmeans").

The metric is check_anchors' metric() closure (the same five torch lines;
a closure cannot be imported).

Usage:  /usr/bin/python3 tools/ref/make_autoanchor_fixtures.py [--out tests/fixtures/autoanchor] [--shared ../shared]
"""

import argparse
import contextlib
import io
import json
import logging
import os
import random
import sys
import tempfile
import types

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_SHARED, FIXTURES  # noqa: E402
from make_yolov5n_fixture import import_yolov5  # noqa: E402  (the offline shims)

import_yolov5()
import torch  # noqa: E402
from yolov5.utils import autoanchor  # noqa: E402
from yolov5.utils.general import LOGGER  # noqa: E402

THR = 4.0
P5 = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]]
STRIDES = [8.0, 16.0, 32.0]


def metric(wh, k, thr=THR):
    """check_anchors' metric(k) (utils/autoanchor.py), plus the exact counts."""
    r = wh[:, None] / k[None]
    x = torch.min(r, 1 / r).min(2)[0]  # ratio metric
    best = x.max(1)[0]  # best_x
    aat = (x > 1 / thr).float().sum(1).mean()  # anchors above threshold
    bpr = (best > 1 / thr).float().mean()  # best possible recall
    n = wh.shape[0]
    return {"bpr": int((best > 1 / thr).sum()) / n, "aat": int((x > 1 / thr).sum()) / n,
            "bpr_f32": float(bpr), "aat_f32": float(aat)}


def f32list(a):
    return [[float(np.float32(v)) for v in row] for row in np.asarray(a, dtype=np.float32)]


def capture_log(fn, *a, **k):
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    LOGGER.addHandler(h)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            out = fn(*a, **k)
    finally:
        LOGGER.removeHandler(h)
    return out, buf.getvalue()


def strip_ansi(s):
    import re
    return re.sub(r"\x1b\[[0-9;]*m", "", s)


def coco128(shared, out):
    src = os.path.join(shared, "data", "coco128")
    if not os.path.isdir(os.path.join(src, "images", "train2017")):
        print("skip coco128.json: %s not found" % src)
        return
    from yolov5.utils.dataloaders import LoadImagesAndLabels
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("images", "labels"):
            d = os.path.join(tmp, sub, "train2017")
            os.makedirs(d)
            sd = os.path.join(src, sub, "train2017")
            for f in sorted(os.listdir(sd)):
                if f.endswith(".cache"):
                    continue
                os.symlink(os.path.join(sd, f), os.path.join(d, f))
        with contextlib.redirect_stderr(io.StringIO()):
            ds = LoadImagesAndLabels(os.path.join(tmp, "images", "train2017"), img_size=640, augment=True)
        files = [os.path.basename(f) for f in ds.im_files]

    # the sizes check_anchors computes
    np.random.seed(0)
    shapes = 640 * ds.shapes / ds.shapes.max(1, keepdims=True)
    scale = np.random.uniform(0.9, 1.1, size=(shapes.shape[0], 1))
    wh = torch.tensor(np.concatenate([l[:, 3:5] * s for s, l in zip(shapes * scale, ds.labels)])).float()

    # check_anchors itself on a stand-in Detect module (anchors in grid units)
    m = types.SimpleNamespace(anchors=torch.tensor(P5, dtype=torch.float32).view(3, 3, 2) /
                              torch.tensor(STRIDES).view(-1, 1, 1), stride=torch.tensor(STRIDES))
    model = types.SimpleNamespace(model=[m])
    np.random.seed(0)
    _, log = capture_log(autoanchor.check_anchors, ds, model, thr=THR, imgsz=640)
    line = strip_ansi(log).strip()
    full = metric(wh, torch.tensor(P5, dtype=torch.float32))
    expect = "AutoAnchor: %.2f anchors/target, %.3f Best Possible Recall (BPR). " % (full["aat_f32"], full["bpr_f32"])
    assert line.startswith(expect), (line, expect)

    rng = np.random.RandomState(1)
    sel = np.sort(rng.choice(wh.shape[0], 300, replace=False))
    whs = wh[sel]
    cases = []
    for name, k in (("yolov5 P5 default", P5), ("P5 x 0.5", (np.array(P5) * 0.5).tolist())):
        kt = torch.tensor(k, dtype=torch.float32)
        cases.append(dict(name=name, anchors=f32list(kt.numpy()), **metric(whs, kt)))

    # unscaled sizes of a few images (kmean_anchors' wh0)
    images = []
    s0 = 640 * ds.shapes / ds.shapes.max(1, keepdims=True)
    for i in (0, 1, 5, 17, 64, 127):
        if i < len(files) and len(ds.labels[i]):
            images.append({"file": files[i], "wh0": (ds.labels[i][:, 3:5] * s0[i]).tolist()})

    doc = {
        "source": "coco128 train2017 via yolov5 7.0.13 LoadImagesAndLabels; check_anchors sizes with np.random.seed(0)",
        "thr": THR, "img": 640, "n_images": len(files), "n_boxes": int(wh.shape[0]),
        "check_anchors_line": line, "full": full,
        "wh": f32list(whs.numpy()), "cases": cases, "images": images,
    }
    write(out, "coco128.json", doc)


def tiny(out):
    rng = np.random.RandomState(7)
    n_tiny, n_big = 260, 40
    w = np.concatenate([rng.uniform(1.5, 4.0, n_tiny), rng.uniform(20, 200, n_big)])
    h = np.concatenate([rng.uniform(1.5, 4.0, n_tiny), rng.uniform(20, 200, n_big)])
    wh = np.stack([w, h], 1).astype(np.float32)
    # a dataset object as kmean_anchors reads it: shapes (w, h) and labels (cls, x, y, w, h) normalised
    labels = [np.array([[0, 0.5, 0.5, a / 640.0, b / 640.0]], dtype=np.float32) for a, b in wh]
    ds = types.SimpleNamespace(shapes=np.full((len(labels), 2), 640.0), labels=labels)
    wh64 = np.concatenate([l[:, 3:5] * 640.0 for l in labels])
    wht = torch.tensor(wh64).float()
    np.random.seed(1)  # with seed 0 scipy's best restart drops a cluster and kmean_anchors falls back to random init
    random.seed(1)
    k, log = capture_log(autoanchor.kmean_anchors, ds, n=9, img_size=640, thr=THR, gen=1000, verbose=False)
    kt = torch.tensor(k, dtype=torch.float32)
    doc = {
        "source": "synthetic: %d boxes 1.5..4 px and %d boxes 20..200 px, one 640x640 image each" % (n_tiny, n_big),
        "thr": THR, "img": 640,
        "wh": f32list(wht.numpy()),
        "cases": [dict(name="yolov5 P5 default", anchors=f32list(P5), **metric(wht, torch.tensor(P5, dtype=torch.float32))),
                  dict(name="ultralytics kmean_anchors", anchors=f32list(k), **metric(wht, kt))],
        "ultralytics_kmeans": {"anchors": f32list(k), "log": strip_ansi(log).strip().splitlines()},
    }
    write(out, "tiny.json", doc)


def write(out, name, doc):
    os.makedirs(out, exist_ok=True)
    p = os.path.join(out, name)
    with open(p, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote %s (%d sizes)" % (p, len(doc["wh"])))
    for c in doc["cases"]:
        print("  %-28s bpr %.6f aat %.6f" % (c["name"], c["bpr"], c["aat"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(FIXTURES, "autoanchor"))
    ap.add_argument("--shared", default=DEFAULT_SHARED)
    a = ap.parse_args()
    tiny(a.out)
    coco128(a.shared, a.out)


if __name__ == "__main__":
    main()
