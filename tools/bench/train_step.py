#!/usr/bin/python3
"""CPU training-step benchmark: onnx-train against PyTorch + Ultralytics, in one run.

Alternates `onnx-train bench train --json` and tools/bench/torch_train_step.py
(the real Ultralytics model, ComputeLoss, clip_grad_norm, smart_optimizer SGD,
ModelEMA) on the same model, batch, image size and thread count, and prints a
Markdown table with images/s, peak memory and the ratio ours / PyTorch.

    /usr/bin/python3 tools/bench/train_step.py --model ../shared/models/yolov5s-bn.onnx \
        --cli build/onnx-train --batch-size 16 --img 320 --threads 2 --steps 5 --rounds 2

Not a test: the figures go to docs/PERF.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def ours(a):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    out = subprocess.run([a.cli, "bench", "train", "--model", a.model, "--batch-size", str(a.batch_size), "--img",
                          str(a.img), "--steps", str(a.steps), "--device", "cpu", "--json"], env=env, capture_output=True, text=True,
                         check=True).stdout
    j = json.loads(out)
    return j["images_per_s"], j["peak_rss_mb"], j["ms"]


def torch_side(a):
    out = subprocess.run([sys.executable, os.path.join(HERE, "torch_train_step.py"), "--model", a.model, "--batch-size",
                          str(a.batch_size), "--img", str(a.img), "--steps", str(a.steps), "--threads", str(a.threads)],
                         capture_output=True, text=True, check=True).stdout
    j = json.loads(out.strip().splitlines()[-1])
    return j["images_per_s"], j.get("peak_rss_mib", float("nan")), None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--cli", default="build/onnx-train")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    best = {}
    for _ in range(a.rounds):
        for name, fn in (("onnx-train", ours), ("PyTorch+Ultralytics", torch_side)):
            r = fn(a)
            if name not in best or r[0] > best[name][0]:
                best[name] = r
    print("date %s, %d cores visible, threads %d, batch %d, %d px, %d steps x %d rounds (best round)"
          % (time.strftime("%Y-%m-%d"), os.cpu_count(), a.threads, a.batch_size, a.img, a.steps, a.rounds))
    print("| runner | images/s | peak RSS MiB | ours / PyTorch |")
    print("|---|---|---|---|")
    t = best["PyTorch+Ultralytics"][0]
    for name, (ips, rss, ms) in best.items():
        print("| %s | %.2f | %.0f | %.2f |" % (name, ips, rss, ips / t))
    ms = best["onnx-train"][2]
    print("onnx-train ms per phase: " + ", ".join("%s %.0f" % kv for kv in ms.items()))


if __name__ == "__main__":
    main()
