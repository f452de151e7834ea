"""Data-loader speed: the real Ultralytics YOLOv5 LoadImagesAndLabels (the
`yolov5` pip package 7.0.13) against `onnx-train bench data`, same hyp
(hyp.scratch-low), same images (coco128), same image size, both on ONE core
(this process and the CLI pinned to CPU 0 with sched_setaffinity/taskset), in
one run.  Prints one JSON object with both figures and their ratio.

    /usr/bin/python3 tools/ref/bench_ultralytics_loader.py [--cli build/onnx-train]
        [--coco128 ../shared/data/coco128] [--img 640] [--samples 256] [--cache | --no-cache]

Samples per second are training samples (mosaic + random_perspective + HSV +
flips, what __getitem__ returns) collated into batches of 16.  With --cache both
sides keep decoded images in RAM (Ultralytics cache_images='ram', filled before
timing; ours --cache ram with an untimed warm-up epoch).  Without either flag
Ultralytics decodes every image every time (its default) and ours uses its
default bounded cache (on by default, filled while timing); with --no-cache
ours decodes every image every time too (--cache none).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types

from common import DEFAULT_SHARED, ROOT


def import_ultralytics():
    # yolov5 7.0.13's utils/general.py imports ultralytics.utils.checks.check_requirements,
    # a package that is not installed here and is not used by the data loader: a no-op shim.
    for name in ("ultralytics", "ultralytics.utils", "ultralytics.utils.checks"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["ultralytics.utils.checks"].check_requirements = lambda *a, **k: None
    import yolov5.utils.dataloaders as dl
    return dl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "onnx-train"))
    ap.add_argument("--coco128", default=os.path.join(DEFAULT_SHARED, "data", "coco128"))
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--cache", action="store_true")
    ap.add_argument("--no-cache", action="store_true", help="ours without its default bounded cache")
    a = ap.parse_args()

    os.sched_setaffinity(0, {0})
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2
    import torch
    import yaml
    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    dl = import_ultralytics()
    hyp_path = os.path.join(os.path.dirname(dl.__file__), "..", "data", "hyps", "hyp.scratch-low.yaml")
    with open(hyp_path) as f:
        hyp = yaml.safe_load(f)

    # Ultralytics writes a labels cache next to the label folder: give it a scratch
    # tree of links so that nothing is written into the shared dataset.
    scratch = tempfile.TemporaryDirectory()
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(scratch.name, sub))
        os.symlink(os.path.abspath(os.path.join(a.coco128, sub, "train2017")), os.path.join(scratch.name, sub, "train2017"))
    images = os.path.join(scratch.name, "images", "train2017")
    ds = dl.LoadImagesAndLabels(images, img_size=a.img, batch_size=a.batch_size, augment=True, hyp=hyp,
                                rect=False, cache_images="ram" if a.cache else False, stride=32, workers=0)
    n = len(ds)
    ds[0]  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    done = 0
    while done < a.samples:
        batch = [ds[(done + k) % n] for k in range(a.batch_size)]
        dl.LoadImagesAndLabels.collate_fn(batch)
        done += a.batch_size
    ul_wall, ul_cpu = time.perf_counter() - t0, time.process_time() - c0
    ul = done / ul_wall

    with tempfile.TemporaryDirectory() as tmp:
        yml = os.path.join(tmp, "coco128.yaml")
        names = [f"class{i}" for i in range(80)]
        with open(yml, "w") as f:
            f.write(f"path: {os.path.abspath(a.coco128)}\ntrain: images/train2017\nval: images/train2017\n")
            f.write("names: [" + ", ".join(names) + "]\n")
        cmd = ["taskset", "-c", "0", a.cli, "bench", "data", "--data", yml, "--img", str(a.img), "--workers", "1",
               "--batch-size", str(a.batch_size), "--batches", str(max(1, a.samples // a.batch_size)), "--json"]
        if a.cache:
            cmd += ["--cache", "ram"]
        elif a.no_cache:
            cmd += ["--cache", "none"]
        ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    out = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()} {os.cpu_count()} cpus, pinned to cpu 0",
        "img": a.img, "batch_size": a.batch_size, "cache_ram": a.cache,
        "ultralytics_cache": "ram" if a.cache else "none", "onnx_train_cache": ours.get("cache", "ram" if a.cache else "?"),
        "ultralytics_samples_per_s": round(ul, 1), "ultralytics_cpu_s_per_sample": round(ul_cpu / done, 5),
        "onnx_train_samples_per_s": round(ours["samples_per_s"], 1),
        "onnx_train_cpu_s_per_sample": round(ours.get("cpu_s", 0) / max(1, ours["samples"]), 5),
        "ratio": round(ours["samples_per_s"] / ul, 2),
        "command": " ".join(cmd),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
