#!/usr/bin/python3
"""Benchmark of one full YOLOv5s training step in PyTorch, on the CPU or a
CUDA GPU, with the real Ultralytics v7.0 code (the `yolov5` pip package):
forward in training mode, ComputeLoss, backward, clip_grad_norm_(10) as
train.py does, SGD step (smart_optimizer: Nesterov, three groups), zero_grad
and ModelEMA update.  The PyTorch side of the training benchmarks in
docs/PERF.md (issue 3 on the CPU, issue 14 on a GPU: `onnx-train bench train
--device 0`, tools/gpu_check.sh); not a test.

    /usr/bin/python3 tools/bench/torch_train_step.py [--batch-size 16] [--img 320]
        [--steps 10] [--threads 2] [--model ../shared/models/yolov5s-bn.onnx]
        [--device cpu|cuda|cuda:N] [--tf32] [--amp]

Weights: the ONNX model's (rebuilt by tools/ref/torch_model_from_onnx.py) when
the file exists, else (any other --model, e.g. `yolov5s`) Model('yolov5s.yaml',
nc=80) as initialised by Ultralytics (speed does not depend on the values).
Input: pattern(n, seed 3) of the batch shape; targets: the boxes of
tests/fixtures/train_steps/batch.targets.txt, image k taking those of image
k % 2.

--device cuda: the model, images and targets live on the GPU (moved there once,
before the timed steps, so no step copies a batch in); each timed step starts
and ends with torch.cuda.synchronize(), so its time is the GPU's work and not
only its launches.  TF32 is off by default (cuDNN convolutions and matmuls in
FP32, as onnx-train's default); --tf32 sets torch.backends.cudnn.allow_tf32
and torch.backends.cuda.matmul.allow_tf32 (as `onnx-train --tf32`).  cuDNN runs
with PyTorch's defaults otherwise (benchmark off, non-deterministic algorithms
allowed); the JSON says so.  --amp (GPU): train.py's mixed precision, the
forward and ComputeLoss under torch.cuda.amp.autocast and GradScaler around
the backward, unscale_ before clipping, scaler.step and update (the peer of
`onnx-train bench train --amp fp16`, issue 16).

Prints one JSON line: images/s from the median of --steps timed steps after
--warmup (2) warm-up steps (and from the fastest step: other jobs only ever
slow a step down; the 1-minute load average before and after is printed to
judge that), the process's peak RSS (getrusage ru_maxrss, which includes the
import and model set-up) and, on a GPU, its name and PyTorch's peak allocated
and reserved GPU memory.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
from common import DEFAULT_SHARED, FIXTURES, pattern_input  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=os.path.join(DEFAULT_SHARED, "models", "yolov5s-bn.onnx"),
                    help="an ONNX export (its weights); anything else (e.g. yolov5s): Model('yolov5s.yaml')")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in cuDNN convolutions and matmuls (GPU; default off)")
    ap.add_argument("--amp", action="store_true",
                    help="train.py's mixed precision (GPU): torch.cuda.amp.autocast around forward and loss, GradScaler")
    args = ap.parse_args()
    if args.amp and args.device == "cpu":
        ap.error("--amp needs --device cuda (train.py turns AMP off on the CPU)")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        ap.error("--device must be cpu, cuda or cuda:N (got %r)" % args.device)

    import torch

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    if gpu:
        if not torch.cuda.is_available():
            print("torch_train_step.py: --device %s but torch.cuda.is_available() is False" % args.device, file=sys.stderr)
            return 2
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32

    def sync():
        if gpu:
            torch.cuda.synchronize(dev)

    import torch_model_from_onnx as tmo
    from make_loss_fixtures import read_targets, scale_hyp, load_hyp

    tmo.import_yolov5()
    from yolov5.utils.loss import ComputeLoss
    from yolov5.utils.torch_utils import ModelEMA, smart_optimizer

    if os.path.exists(args.model):
        model, _ = tmo.load_model(args.model, verbose=False)
        src = os.path.basename(args.model)
    else:
        model = tmo.build_empty_model()
        src = "yolov5s.yaml (Ultralytics init)"
    model = model.to(dev)  # before the optimizer, the EMA (a deep copy) and ComputeLoss (it takes the model's device)
    hyp = load_hyp(tmo.yolov5_file("data", "hyps", "hyp.scratch-low.yaml"))
    bs, nbs = args.batch_size, 64
    accumulate = max(round(nbs / bs), 1)
    hyp["weight_decay"] *= bs * accumulate / nbs
    optimizer = smart_optimizer(model, "SGD", hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
    ema = ModelEMA(model)
    model.nc, model.hyp = tmo.NC, scale_hyp(hyp, model.model[-1].nl, tmo.NC, args.img)
    compute_loss = ComputeLoss(model)

    t2 = read_targets(os.path.join(FIXTURES, "train_steps", "batch.targets.txt"))
    rows = []
    for k in range(bs):
        r = t2[t2[:, 0] == (k % 2)].copy()
        r[:, 0] = k
        rows.append(r)
    targets = torch.from_numpy(np.concatenate(rows)).to(dev)
    imgs = torch.from_numpy(pattern_input((bs, 3, args.img, args.img), 3)).to(dev)

    scaler = torch.cuda.amp.GradScaler(enabled=args.amp)  # train.py: init_scale 2**16, growth 2, backoff 0.5, 2000
    model.train()
    load0 = os.getloadavg()[0]
    times = []
    if gpu:
        torch.cuda.reset_peak_memory_stats(dev)
    for s in range(args.warmup + args.steps):
        sync()  # nothing earlier is still running when the clock starts
        t0 = time.perf_counter()
        with torch.cuda.amp.autocast(args.amp):  # train.py's step, in its order
            pred = model(imgs)
            loss, _ = compute_loss(pred, targets)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        ema.update(model)
        sync()  # every kernel of the step has finished
        dt = time.perf_counter() - t0
        if s >= args.warmup:
            times.append(dt)
        print("step %d %.3f s loss %.6g" % (s, dt, loss.item()), file=sys.stderr, flush=True)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    dev_info = {"device": str(dev), "gpu": None, "tf32": False}
    if gpu:
        dev_info = {
            "device": str(dev), "gpu": torch.cuda.get_device_name(dev), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "tf32": args.tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "gpu_peak_allocated_mib": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1),
            "gpu_peak_reserved_mib": round(torch.cuda.max_memory_reserved(dev) / 2**20, 1),
        }
    print(json.dumps({
        "bench": "torch_train_step", "model": src, "torch": torch.__version__, "threads": args.threads, **dev_info,
        "amp": args.amp,
        "batch_size": bs, "img": args.img, "steps": args.steps, "warmup": args.warmup,
        "step_s_median": round(med, 4), "step_s_min": round(min(times), 4),
        "images_per_s": round(bs / med, 3), "images_per_s_best": round(bs / min(times), 3),
        "peak_rss_mib": round(rss / 1024, 1),
        "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],  # before / after: other jobs on the machine slow it
        "step": ("autocast(" if args.amp else "(") + "forward(train) + ComputeLoss) + backward"
                + (" (GradScaler)" if args.amp else "") + " + clip_grad_norm_(10) + SGD(nesterov) step + zero_grad + ModelEMA.update",
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
