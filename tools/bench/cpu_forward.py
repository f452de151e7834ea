#!/usr/bin/python3
"""CPU forward benchmark: onnx-train against ONNX Runtime, in one run.

Runs each model with the same input (the shared test pattern, seed 1) in
ONNX Runtime (graph optimisations on: its best) and in one or more onnx-train
builds (`onnx-train forward --repeat N`), alternating so machine noise hits
both, and prints a Markdown table with the fastest and median milliseconds and
the ratio ORT / onnx-train (above 1: onnx-train is faster).

    /usr/bin/python3 tools/bench/cpu_forward.py \
        --model ../shared/models/yolov5s.onnx --threads 2 --repeat 10 \
        --cli build/onnx-train [--cli build-onednn/onnx-train]

Needs: numpy, onnxruntime (pip). Not a test: numbers go to docs/PERF.md.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
from common import pattern  # noqa: E402


def run_ort(model, threads, repeat):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    x = pattern(int(np.prod(inp.shape)), 1).reshape(inp.shape)
    s.run(None, {inp.name: x})  # warm-up
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        s.run(None, {inp.name: x})
        t.append((time.perf_counter() - t0) * 1e3)
    return min(t), statistics.median(t)


def run_cli(cli, model, threads, repeat):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([cli, "forward", model, "--random-input", "1", "--out", d, "--repeat", str(repeat + 1)],
                             env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"forward ([\d.]+) ms fastest, ([\d.]+) ms median", out)
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--cli", action="append", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best round counts")
    a = ap.parse_args()
    import onnxruntime
    print(f"date {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores visible, threads {a.threads}, "
          f"onnxruntime {onnxruntime.__version__}, repeat {a.repeat} x {a.rounds} rounds")
    print("| model | runner | fastest ms | median ms | ORT / this (median) |")
    print("|---|---|---|---|---|")
    for model in a.model:
        res = {}
        for _ in range(a.rounds):
            for name, fn in [("onnxruntime", lambda: run_ort(model, a.threads, a.repeat))] + \
                    [(c, (lambda c=c: run_cli(c, model, a.threads, a.repeat))) for c in a.cli]:
                r = fn()
                if name not in res or r[1] < res[name][1]:
                    res[name] = r
        ort_med = res["onnxruntime"][1]
        for name, (best, med) in res.items():
            print(f"| {os.path.basename(model)} | {name} | {best:.1f} | {med:.1f} | {ort_med / med:.2f} |")


if __name__ == "__main__":
    main()
