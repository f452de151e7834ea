#!/usr/bin/python3
"""CPU benchmark of one full YOLOv5s training step in PyTorch with the real
Ultralytics v7.0 code (the `yolov5` pip package): forward in training mode,
ComputeLoss, backward, clip_grad_norm_(10) as train.py does, SGD step
(smart_optimizer: Nesterov, three groups), zero_grad and ModelEMA update.
The PyTorch side of the training benchmark in docs/PERF.md (issue 3); not a
test.

    /usr/bin/python3 tools/bench/torch_train_step.py [--batch-size 16] [--img 320]
        [--steps 10] [--threads 2] [--model ../shared/models/yolov5s-bn.onnx]

Weights: the ONNX model's (rebuilt by tools/ref/torch_model_from_onnx.py) when
the file exists, else Model('yolov5s.yaml', nc=80) as initialised by
Ultralytics (speed does not depend on the values).  Input: pattern(n, seed 3)
of the batch shape; targets: the boxes of
tests/fixtures/train_steps/batch.targets.txt, image k taking those of image
k % 2.  Prints one JSON line: images/s from the median of --steps timed steps
after 2 warm-up steps (and from the fastest step: other jobs only ever slow a
step down; the 1-minute load average before and after is printed to judge
that), and the process's peak RSS (getrusage ru_maxrss, which includes the
import and model set-up).
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
    ap.add_argument("--model", default=os.path.join(DEFAULT_SHARED, "models", "yolov5s-bn.onnx"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
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
    targets = torch.from_numpy(np.concatenate(rows))
    imgs = torch.from_numpy(pattern_input((bs, 3, args.img, args.img), 3))

    model.train()
    load0 = os.getloadavg()[0]
    times = []
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        pred = model(imgs)
        loss, _ = compute_loss(pred, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        optimizer.step()
        optimizer.zero_grad()
        ema.update(model)
        dt = time.perf_counter() - t0
        if s >= args.warmup:
            times.append(dt)
        print("step %d %.3f s loss %.6g" % (s, dt, loss.item()), file=sys.stderr, flush=True)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "bench": "torch_train_step", "model": src, "torch": torch.__version__, "threads": args.threads,
        "batch_size": bs, "img": args.img, "steps": args.steps, "warmup": args.warmup,
        "step_s_median": round(med, 4), "step_s_min": round(min(times), 4),
        "images_per_s": round(bs / med, 3), "images_per_s_best": round(bs / min(times), 3),
        "peak_rss_mib": round(rss / 1024, 1),
        "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],  # before / after: other jobs on the machine slow it
        "step": "forward(train) + ComputeLoss + backward + clip_grad_norm_(10) + SGD(nesterov) step + zero_grad + ModelEMA.update",
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
