#!/usr/bin/python3
"""Make tests/fixtures/metrics/: references for train/metrics.c and
`onnx-train val --predictions`, computed with the REAL Ultralytics code (the
`yolov5` pip package 7.0.13) and pycocotools.

Synthetic datasets (case_*.json): images with sizes, YOLO label file texts and
YOLO prediction file texts (`class cx cy w h conf`, normalised; null = no
file): predictions are labels with jitter, false positives, missed objects,
several classes, one class with predictions but no labels, empty images.
For each case, as val.py does for one image at a time:
    labels and predictions to pixels (xywhn2xyxy, float32), predictions in
    decreasing confidence, yolov5.val.process_batch -> correct (N, 10),
    yolov5.utils.metrics.ap_per_class -> per-class P, R, AP50, AP50-95 and
    val.py's means mp, mr, map50, map;
    yolov5.val.save_one_json -> the COCO detections (coco80_to_coco91_class
    when the case says coco91), a ground-truth instances json from the labels,
    and pycocotools COCOeval (bbox) -> stats[0] (mAP50-95) and stats[1].
Predictions whose IoU with a same-class label lies within 1e-4 of one of the
ten thresholds are redrawn (float32 vs double IoU), and confidences are unique
(np.argsort(-conf) is not stable).

NMS (nms.json): raw candidate arrays (n, 5 + nc) and settings in,
yolov5.utils.general.non_max_suppression's kept boxes out (xyxy, conf, cls)
plus the candidate row each came from (found by exact box and confidence:
the extra mask column nm=1 gets multiplied by obj along with the class scores).

Usage:  /usr/bin/python3 tools/ref/make_metrics_fixtures.py [--out tests/fixtures/metrics]
"""

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_yolov5n_fixture import import_yolov5  # noqa: E402  (the offline shims)

import_yolov5()
import torch  # noqa: E402
from yolov5.utils.general import coco80_to_coco91_class, non_max_suppression, xywh2xyxy, xywhn2xyxy  # noqa: E402
from yolov5.utils.metrics import ap_per_class  # noqa: E402
from yolov5.val import process_batch, save_one_json  # noqa: E402

IOUV = torch.linspace(0.5, 0.95, 10)


def iou1(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def xyxy(r, w, h):
    c, x, y, bw, bh = r[:5]
    return (w * (x - bw / 2), h * (y - bh / 2), w * (x + bw / 2), h * (y + bh / 2))


def fmt(v):
    return "%.6f" % v


def make_case(seed, n_img, nc, lab_classes, coco91, numeric):
    rng = np.random.default_rng(seed)
    sizes = [(640, 480), (320, 240), (500, 375), (416, 416), (300, 500)]
    used_conf = set()
    images = []
    for k in range(n_img):
        w, h = sizes[k % len(sizes)]
        name = ("%012d.png" % (1000 + 7 * k)) if numeric else ("img_%02d.png" % k)
        kind = k % 7  # 0: empty image with false positives, 1: labels but no prediction file
        labels = []
        if kind != 0:
            for _ in range(int(rng.integers(1, 7))):
                bw, bh = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4)
                cx, cy = rng.uniform(bw / 2, 1 - bw / 2), rng.uniform(bh / 2, 1 - bh / 2)
                labels.append([int(rng.choice(lab_classes)), float(fmt(cx)), float(fmt(cy)), float(fmt(bw)), float(fmt(bh))])
        preds = []

        def uconf(lo, hi):
            while True:
                c = float(fmt(rng.uniform(lo, hi)))
                if c not in used_conf and c > 0:
                    used_conf.add(c)
                    return c

        def ok(p):
            bp = xyxy(p, w, h)
            for lb in labels:
                if lb[0] != p[0]:
                    continue
                v = iou1(xyxy(lb, w, h), bp)
                if any(abs(v - t) < 1e-4 for t in np.linspace(0.5, 0.95, 10)):
                    return False
            return p[3] > 0 and p[4] > 0

        if kind != 1:
            for lb in labels:
                if rng.uniform() < 0.15:
                    continue  # missed object
                for _dup in range(1 if rng.uniform() < 0.8 else 2):  # sometimes a duplicate detection
                    while True:
                        j = rng.normal(0, 0.08, 4)
                        c = lb[0] if rng.uniform() < 0.9 else int(rng.integers(0, nc))
                        p = [c, float(fmt(lb[1] + j[0] * lb[3])), float(fmt(lb[2] + j[1] * lb[4])),
                             float(fmt(lb[3] * np.exp(j[2]))), float(fmt(lb[4] * np.exp(j[3]))), uconf(0.05, 0.99)]
                        if ok(p):
                            break
                    preds.append(p)
            for _ in range(int(rng.integers(0, 4))):  # false positives, any class (also the unlabelled one)
                while True:
                    bw, bh = rng.uniform(0.03, 0.3), rng.uniform(0.03, 0.3)
                    p = [int(rng.integers(0, nc)), float(fmt(rng.uniform(0.1, 0.9))), float(fmt(rng.uniform(0.1, 0.9))),
                         float(fmt(bw)), float(fmt(bh)), uconf(0.001, 0.7)]
                    if ok(p):
                        break
                preds.append(p)
        rng.shuffle(preds)
        lt = "".join("%d %s %s %s %s\n" % (r[0], *[fmt(v) for v in r[1:]]) for r in labels)
        pt = "".join("%d %s %s %s %s %s\n" % (r[0], *[fmt(v) for v in r[1:]]) for r in preds)
        images.append({"name": name, "w": w, "h": h,
                       "labels": None if (kind == 0 and k % 2 == 0) else lt,
                       "preds": None if kind == 1 else pt})
    return images


def parse(text, ncol):
    if not text:
        return np.zeros((0, ncol), np.float32)
    return np.array([[float(v) for v in ln.split()] for ln in text.strip().split("\n")], np.float32).reshape(-1, ncol)


def evaluate(images, nc, coco91):
    stats, jdict = [], []
    class_map = coco80_to_coco91_class() if coco91 else list(range(1000))
    for im in images:
        w, h = im["w"], im["h"]
        lb = torch.from_numpy(parse(im["labels"], 5))
        pr = parse(im["preds"], 6)
        pr = pr[np.argsort(-pr[:, 5], kind="stable")] if len(pr) else pr
        pr = torch.from_numpy(pr)
        nl, npr = lb.shape[0], pr.shape[0]
        correct = torch.zeros(npr, 10, dtype=torch.bool)
        if npr == 0:
            if nl:
                stats.append((correct, *torch.zeros((2, 0)), lb[:, 0]))
            continue
        predn = torch.cat((xywhn2xyxy(pr[:, 1:5], w, h), pr[:, 5:6], pr[:, 0:1]), 1)
        if nl:
            labelsn = torch.cat((lb[:, 0:1], xywhn2xyxy(lb[:, 1:5], w, h)), 1)
            correct = process_batch(predn, labelsn, IOUV)
        stats.append((correct, predn[:, 4], predn[:, 5], lb[:, 0]))
        save_one_json(predn, jdict, Path(im["name"]), class_map)
    stats = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)]
    exp = {"seen": len(images), "nt_total": int(len(stats[3])), "classes": [], "nt": [], "p": [], "r": [],
           "ap50": [], "ap50_95": [], "mp": 0.0, "mr": 0.0, "map50": 0.0, "map": 0.0}
    if len(stats) and stats[0].any():
        tp, fp, p, r, f1, ap, ap_class = ap_per_class(*stats, names={i: str(i) for i in range(nc)})
        ap50, ap = ap[:, 0], ap.mean(1)
        nt = np.bincount(stats[3].astype(int), minlength=nc)
        exp.update(classes=[int(c) for c in ap_class], nt=[int(nt[c]) for c in ap_class], p=p.tolist(), r=r.tolist(),
                   ap50=ap50.tolist(), ap50_95=ap.tolist(), mp=float(p.mean()), mr=float(r.mean()),
                   map50=float(ap50.mean()), map=float(ap.mean()))
    return exp, jdict


def pycoco(images, jdict, nc, coco91):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    class_map = coco80_to_coco91_class() if coco91 else list(range(1000))
    gt = {"images": [], "annotations": [], "categories": [{"id": class_map[c], "name": str(c)} for c in range(nc)]}
    for im in images:
        stem = Path(im["name"]).stem
        iid = int(stem) if stem.isnumeric() else stem
        gt["images"].append({"id": iid, "width": im["w"], "height": im["h"], "file_name": im["name"]})
        for r in parse(im["labels"], 5).astype(np.float64):
            x1, y1, x2, y2 = xyxy(r, im["w"], im["h"])
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": iid, "category_id": class_map[int(r[0])],
                                      "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    with tempfile.TemporaryDirectory() as td:
        gf, pf = os.path.join(td, "gt.json"), os.path.join(td, "pred.json")
        json.dump(gt, open(gf, "w"))
        json.dump(jdict, open(pf, "w"))
        with contextlib.redirect_stdout(io.StringIO()):
            anno = COCO(gf)
            pred = anno.loadRes(pf)
            ev = COCOeval(anno, pred, "bbox")
            ev.params.imgIds = [g["id"] for g in gt["images"]]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def nms_cases(seed):
    rng = np.random.default_rng(seed)
    out = []
    settings = [dict(conf_thres=0.25, iou_thres=0.45, multi_label=False, agnostic=False, max_det=300),
                dict(conf_thres=0.001, iou_thres=0.6, multi_label=True, agnostic=False, max_det=300),
                dict(conf_thres=0.1, iou_thres=0.5, multi_label=False, agnostic=True, max_det=300),
                dict(conf_thres=0.01, iou_thres=0.45, multi_label=True, agnostic=False, max_det=7)]
    for s in settings:
        nc, n = 3, 120
        centres = rng.uniform(60, 580, (8, 2))
        x = np.zeros((n, 5 + nc), np.float32)
        k = rng.integers(0, 8, n)
        x[:, 0:2] = centres[k] + rng.normal(0, 12, (n, 2))
        x[:, 2:4] = rng.uniform(30, 120, (n, 2))
        x[:, 4] = rng.uniform(0, 1, n)
        x[:, 5:] = rng.uniform(0, 1, (n, nc)) ** 2
        x = x.astype(np.float32)
        pred = torch.from_numpy(np.concatenate((x, np.arange(n, dtype=np.float32)[:, None]), 1))[None]
        y = non_max_suppression(pred, s["conf_thres"], s["iou_thres"], agnostic=s["agnostic"],
                                multi_label=s["multi_label"], max_det=s["max_det"], nm=1)[0].numpy()
        # the mask column is multiplied by obj with the class scores (x[:, 5:] *= x[:, 4:5]): find each
        # kept box's candidate row by its box and confidence instead (exact float32 equality)
        xyxy_all = xywh2xyxy(torch.from_numpy(x[:, :4])).numpy()
        rows = []
        for r in y:
            hit = [i for i in range(n) if (xyxy_all[i] == r[:4]).all() and np.float32(x[i, 5 + int(r[5])] * x[i, 4]) == r[4]]
            assert len(hit) == 1, hit
            rows.append(hit[0])
        f32 = lambda v: float(repr(np.float32(v)))  # shortest float32 text: parses back to the same float32
        out.append({"settings": s, "nc": nc, "pred": [[f32(v) for v in r] for r in x],
                    "kept": [[f32(v) for v in r[:6]] + [i] for r, i in zip(y, rows)]})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/metrics")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    cases = [("case_small", 1, 14, 4, [0, 1, 2], False, False),      # class 3: predictions, no labels
             ("case_coco", 2, 40, 80, [0, 2, 15, 56, 79], True, True),  # numeric stems, coco91 ids
             ("case_many", 3, 60, 6, [0, 1, 2, 3, 4], False, True)]     # class 5: no labels
    for name, seed, n_img, nc, lab_classes, coco91, numeric in cases:
        images = make_case(seed, n_img, nc, lab_classes, coco91, numeric)
        exp, jdict = evaluate(images, nc, coco91)
        m, m50 = pycoco(images, jdict, nc, coco91)
        doc = {"nc": nc, "coco91": coco91, "images": images, "expected": exp,
               "pycocotools": {"map50_95": m, "map50": m50}, "coco_json": jdict}
        with open(os.path.join(a.out, name + ".json"), "w") as f:
            json.dump(doc, f, separators=(",", ":"))
        print("%s: %d images, %d labels, %d detections; ap_per_class mAP50 %.5f mAP50-95 %.5f; pycocotools %.5f %.5f"
              % (name, n_img, exp["nt_total"], len(jdict), exp["map50"], exp["map"], m50, m))
    with open(os.path.join(a.out, "nms.json"), "w") as f:
        json.dump(nms_cases(4), f, separators=(",", ":"))
    print("nms.json written")


if __name__ == "__main__":
    main()
