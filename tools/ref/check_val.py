"""Model validation against Ultralytics val.py on a model we trained (issue 5).

Loads an onnx-train checkpoint of a built-in size (its tensor names are
Ultralytics' state_dict names), puts its EMA weights into the Ultralytics
YOLOv5 v7.0 Model of the same size and class count (anchors from the
checkpoint), and runs val.py's run() the way train.py does (rect batches, pad
0.5, conf 0.001, IoU 0.6, batch 32, float32 on the CPU) over the same dataset
split; then `onnx-train val --model CKPT --json` with the same settings.
Prints both P, R, mAP50, mAP50-95 and the differences. Run by hand:

  /usr/bin/python3 tools/ref/check_val.py --cli build/onnx-train \\
      --ckpt build/demo/runs/train/weights/best.ckpt --data build/demo/shapes/data.yaml --img 160
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

from make_yolov5n_fixture import import_yolov5


def load_ckpt(path):
    b = open(path, "rb").read()
    hl = struct.unpack("<Q", b[8:16])[0]
    h = json.loads(b[16:16 + hl])
    ml = struct.unpack("<Q", b[16 + hl:24 + hl])[0]
    off = 24 + hl + ml
    tensors = h["tensors"]
    per = sum(t["numel"] for t in tensors) * 4
    k = h["copies"].index("ema")
    o = off + k * per
    ema = {}
    for t in tensors:
        ema[t["name"]] = np.frombuffer(b[o:o + 4 * t["numel"]], dtype=np.float32).copy()
        o += 4 * t["numel"]
    return h, ema


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default="build/onnx-train")
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()
    h, ema = load_ckpt(a.ckpt)
    size = os.path.basename(h["args"]["model"])
    if size not in ("yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"):
        sys.exit("the checkpoint must come from a built-in size (got %s)" % size)
    head = h["head"]

    import torch
    import yaml
    torch.set_num_threads(2)
    yolov5, Model = import_yolov5()
    import yolov5.val as val
    from yolov5.utils.dataloaders import create_dataloader

    cfg = os.path.join(os.path.dirname(yolov5.__file__), "models", size + ".yaml")
    model = Model(cfg, ch=3, nc=head["nc"]).float().eval()
    sd = model.state_dict()
    n = 0
    for k in sd:
        if k in ema:
            sd[k] = torch.from_numpy(ema[k].reshape(sd[k].shape))
            n += 1
    det = model.model[-1]
    anchors = torch.tensor(head["anchors"], dtype=torch.float32).view(head["nl"], head["na"], 2)
    sd["model.24.anchors"] = anchors / torch.tensor(head["stride"], dtype=torch.float32).view(-1, 1, 1)
    model.load_state_dict(sd)
    print("loaded %d tensors of %d into Ultralytics %s (nc %d)" % (n, len(ema), size, head["nc"]))

    # Ultralytics writes labels/*.cache beside the labels: validate a copy
    work = tempfile.mkdtemp(prefix="ot_check_val_")
    d = yaml.safe_load(open(a.data))
    root = d.get("path") or os.path.dirname(os.path.abspath(a.data))
    if not os.path.isabs(root):
        root = os.path.join(os.path.dirname(os.path.abspath(a.data)), root)
    shutil.copytree(root, os.path.join(work, "data"), symlinks=True)
    d["path"] = os.path.join(work, "data")
    vpath = d["val"] if os.path.isabs(d["val"]) else os.path.join(d["path"], d["val"])
    data_dict = {"val": vpath, "nc": head["nc"]}  # (check_dataset would fetch a font from the network)
    model.names = list(d["names"].values()) if isinstance(d["names"], dict) else list(d["names"])
    loader = create_dataloader(data_dict["val"], a.img, a.batch_size, int(det.stride.max()), False, pad=0.5, rect=True,
                               workers=2, prefix="val: ")[0]
    ret = val.run(data_dict, batch_size=a.batch_size, imgsz=a.img, half=False, model=model,
                                              dataloader=loader, plots=False, conf_thres=0.001, iou_thres=0.6,
                  save_dir=__import__("pathlib").Path(work))
    mp, mr, map50, map_ = [float(v) for v in ret[0][:4]]
    out = subprocess.run([a.cli, "val", "--model", a.ckpt, "--data", a.data, "--img", str(a.img), "--batch-size",
                          str(a.batch_size), "--json"], check=True, capture_output=True, text=True).stdout
    o = json.loads(out)
    print("\n%-12s %10s %10s %10s %10s" % ("", "P", "R", "mAP50", "mAP50-95"))
    print("%-12s %10.6f %10.6f %10.6f %10.6f" % ("Ultralytics", mp, mr, map50, map_))
    print("%-12s %10.6f %10.6f %10.6f %10.6f" % ("onnx-train", o["precision"], o["recall"], o["map50"], o["map50_95"]))
    diff = max(abs(mp - o["precision"]), abs(mr - o["recall"]), abs(map50 - o["map50"]), abs(map_ - o["map50_95"]))
    print("max |difference| %.3g" % diff)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
