#!/usr/bin/python3
"""Make tests/fixtures/confusion/: references for train/plots.c, computed with
the REAL Ultralytics code (the `yolov5` pip package 7.0.13, utils/metrics.py).

matrix_*.json: random images, each with labels (cls x1 y1 x2 y2, pixels) and
    detections (x1 y1 x2 y2 conf cls; coordinates on a 1/4 px grid, confidences
    on a 1/1024 grid: exact in float32): jittered copies of labels (several per
    label, sometimes with another class), random false positives, confidences
    on both sides of 0.25 (and exactly 0.25), images without detections or
    without labels. Every image goes through one ConfusionMatrix(nc) as val.py
    feeds it (process_batch(None, labels[:, 0]) for an image without
    detections); "matrix" is the final (nc + 1)^2 count matrix, "tp" and "fp"
    its tp_fp(). IoUs within 1e-4 of 0.45, and equal IoUs of one label or of
    one detection, are redrawn: np.argsort is not stable beyond 16 matches.

pr_curves.json: random val statistics (tp (n, 10), conf, pred_cls,
    target_cls, with a class that has labels but no detections) through
    ap_per_class(plot=True) with its plot functions replaced to capture what
    they get: py (PR, classes with detections), ap, and the p, r, f1 curves
    (classes with labels), at the points "idx" of px = linspace(0, 1, 1000).

Usage:  /usr/bin/python3 tools/ref/make_confusion_fixtures.py [--out tests/fixtures/confusion]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES  # noqa: E402
from make_yolov5n_fixture import import_yolov5  # noqa: E402  (the offline shims)

import_yolov5()
import torch  # noqa: E402
import yolov5.utils.metrics as M  # noqa: E402


def f32(v):
    return float(np.float32(v))


def q(v):
    """a pixel coordinate on a 1/4 px grid (exact in float32, short in JSON)"""
    return float(np.round(v * 4) / 4)


def qc(v):
    """a confidence on a 1/1024 grid"""
    return float(np.round(v * 1024) / 1024)


def iou_np(l, d):
    """float32 box_iou of one label box and one detection box, as torch."""
    l, d = np.asarray(l, np.float32), np.asarray(d, np.float32)
    wx = max(np.float32(0), min(l[2], d[2]) - max(l[0], d[0]))
    wy = max(np.float32(0), min(l[3], d[3]) - max(l[1], d[1]))
    inter = np.float32(wx * wy)
    a1 = np.float32((l[2] - l[0]) * (l[3] - l[1]))
    a2 = np.float32((d[2] - d[0]) * (d[3] - d[1]))
    return float(np.float32(inter / np.float32(np.float32(a1 + a2 - inter) + np.float32(1e-7))))


def make_image(rng, nc, W, H):
    nl = int(rng.choice([0, 1, 2, 3, 5, 8], p=[0.1, 0.2, 0.2, 0.2, 0.2, 0.1]))
    labels = []
    for _ in range(nl):
        w, h = rng.uniform(10, W / 3), rng.uniform(10, H / 3)
        x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
        labels.append([int(rng.integers(nc)), q(x), q(y), q(x + w), q(y + h)])
    dets = []
    if rng.random() > 0.15:
        for lab in labels:
            for _ in range(int(rng.integers(0, 4))):
                w, h = lab[3] - lab[1], lab[4] - lab[2]
                j = rng.uniform(-0.35, 0.35, 4) * np.array([w, h, w, h])
                box = [q(lab[1] + j[0]), q(lab[2] + j[1]), q(lab[3] + j[2]), q(lab[4] + j[3])]
                if box[2] <= box[0] + 1 or box[3] <= box[1] + 1:
                    continue
                cls = lab[0] if rng.random() < 0.75 else int(rng.integers(nc))
                dets.append(box + [qc(rng.choice([rng.uniform(0.05, 1.0), 0.25], p=[0.95, 0.05])), cls])
        for _ in range(int(rng.integers(0, 4))):  # false positives
            w, h = rng.uniform(10, W / 3), rng.uniform(10, H / 3)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            dets.append([q(x), q(y), q(x + w), q(y + h), qc(rng.uniform(0.05, 1.0)), int(rng.integers(nc))])
    return labels, dets


def ambiguous(labels, dets):
    ious = [[iou_np(l[1:], d[:4]) for d in dets if d[4] > 0.25] for l in labels]
    for row in ious:
        vals = [v for v in row if v > 0.45]
        if any(abs(v - 0.45) < 1e-4 for v in row) or len(set(vals)) != len(vals):
            return True
    for col in zip(*ious) if ious and ious[0] else []:
        vals = [v for v in col if v > 0.45]
        if len(set(vals)) != len(vals):
            return True
    return False


def matrix_case(name, nc, n_img, seed, out):
    rng = np.random.default_rng(seed)
    cm = M.ConfusionMatrix(nc=nc)
    images = []
    while len(images) < n_img:
        labels, dets = make_image(rng, nc, 640, 480)
        if ambiguous(labels, dets):
            continue
        lt = torch.tensor(labels, dtype=torch.float32).reshape(-1, 5)
        dt = torch.tensor(dets, dtype=torch.float32).reshape(-1, 6)
        if len(dets) == 0:
            if len(labels):
                cm.process_batch(None, lt[:, 0])  # val.py: no predictions
        else:
            cm.process_batch(dt, lt)
        images.append({"labels": labels, "dets": dets})
    tp, fp = cm.tp_fp()
    doc = {"nc": nc, "seed": seed, "images": images, "matrix": cm.matrix.tolist(), "tp": tp.tolist(), "fp": fp.tolist()}
    write(out, name, doc)
    print("  %d images, %d labels, %d detections, matrix total %d" % (
        n_img, sum(len(i["labels"]) for i in images), sum(len(i["dets"]) for i in images), int(cm.matrix.sum())))


def pr_case(out):
    rng = np.random.default_rng(11)
    nc, n = 4, 400
    target_cls = rng.integers(0, nc, 300).astype(float)
    target_cls[target_cls == 3] = 2  # class 3: no labels
    target_cls = np.concatenate([target_cls, [5.0] * 7])  # class 5: labels, no detections
    pred_cls = rng.integers(0, nc, n).astype(float)
    conf = rng.permutation(np.linspace(0.001, 0.999, n)).astype(np.float32)  # distinct
    base = rng.random(n) < 0.55
    tp = np.zeros((n, 10), bool)
    for j in range(10):  # a true positive at IoU t is one at every lower threshold
        tp[:, j] = base & (rng.random(n) < 1.0 - 0.07 * j) if j == 0 else tp[:, j - 1] & (rng.random(n) < 0.9)
    got = {}

    def cap_pr(px, py, ap, save_dir=None, names=()):
        got["px"], got["py"], got["ap"] = px, np.stack(py, axis=1), ap

    def cap_mc(px, py, save_dir=None, names=(), xlabel="Confidence", ylabel="Metric"):
        got[ylabel] = py

    M.plot_pr_curve, M.plot_mc_curve = cap_pr, cap_mc
    res = M.ap_per_class(tp, conf, pred_cls, target_cls, plot=True, save_dir="/nonexistent", names={i: str(i) for i in range(6)})
    idx = list(range(0, 1000, 13)) + [999]  # a subset of the 1000 points keeps the file small
    doc = {
        "idx": idx,
        "tp": tp.astype(int).tolist(), "conf": [float(c) for c in conf], "pred_cls": pred_cls.astype(int).tolist(),
        "target_cls": target_cls.astype(int).tolist(),
        "classes": res[6].tolist(), "ap50": got["ap"][:, 0].tolist(),
        "py": got["py"].T[:, idx].tolist(),  # (classes with detections, idx)
        "p": got["Precision"][:, idx].tolist(), "r": got["Recall"][:, idx].tolist(), "f1": got["F1"][:, idx].tolist(),
        "p_at_max_f1": res[2].tolist(), "r_at_max_f1": res[3].tolist(),
    }
    write(out, "pr_curves.json", doc)


def write(out, name, doc):
    os.makedirs(out, exist_ok=True)
    p = os.path.join(out, name)
    with open(p, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print("wrote %s (%d bytes)" % (p, os.path.getsize(p)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(FIXTURES, "confusion"))
    a = ap.parse_args()
    matrix_case("matrix_nc3.json", 3, 40, 1, a.out)
    matrix_case("matrix_nc12.json", 12, 60, 2, a.out)
    pr_case(a.out)


if __name__ == "__main__":
    main()
