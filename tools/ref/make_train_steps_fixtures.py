#!/usr/bin/python3
"""Make tests/fixtures/train_steps/<case>.json: 20 optimizer steps of
Ultralytics YOLOv5 v7.0 train.py on one fixed batch, on the CPU in float32
(no AMP), starting from the weights of one of our ONNX exports.

The batch: pattern(2*3*128*128, seed 3).reshape(2, 3, 128, 128) with the boxes
of tests/fixtures/train_steps/batch.targets.txt, fed again at every iteration.
The loop below is train.py's, line for line, minus the dataloader, logging,
validation and checkpoints (see the "train.py" comments):

    nbs = 64; accumulate = max(round(nbs / batch_size), 1)          # 32
    hyp['weight_decay'] *= batch_size * accumulate / nbs             # x1.0
    optimizer = smart_optimizer(model, opt, hyp['lr0'], hyp['momentum'], hyp['weight_decay'])
        group 0: every 'bias' (BN beta, Detect conv bias), no decay
        group 1: conv weights, decay;  group 2: BN weights, no decay
    lf = linear (1 - x/epochs)*(1 - lrf) + lrf  or  one_cycle(1, lrf, epochs)
    scheduler = LambdaLR(optimizer, lf); ema = ModelEMA(model)
    hyp box/cls/obj scaled (3/nl, nc/80*3/nl, (img/640)**2*3/nl); label_smoothing 0.0
    nw = max(round(warmup_epochs * nb), 100); last_opt_step = -1
    scheduler.last_epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs):
        model.train(); optimizer.zero_grad()          # <- drops unstepped gradients
        for i in range(nb):
            ni = i + nb * epoch
            if ni <= nw:                              # warmup
                xi = [0, nw]
                accumulate = max(1, np.interp(ni, xi, [1, nbs / batch_size]).round())
                for j, x in enumerate(optimizer.param_groups):
                    x['lr'] = np.interp(ni, xi, [warmup_bias_lr if j == 0 else 0.0, x['initial_lr'] * lf(epoch)])
                    if 'momentum' in x:
                        x['momentum'] = np.interp(ni, xi, [warmup_momentum, momentum])
            loss, items = compute_loss(model(imgs), targets); loss.backward()
            if ni - last_opt_step >= accumulate:
                clip_grad_norm_(model.parameters(), max_norm=10.0)
                optimizer.step(); optimizer.zero_grad(); ema.update(model); last_opt_step = ni
        scheduler.step()

Not replicated on purpose: train.py's `model.half().float()` after AutoAnchor
("pre-reduce anchor precision") rounds every weight and BN buffer of a fresh
(non-resumed) run to float16 precision before training; the fixtures start
from the exact float32 ONNX weights instead (--half-round applies it, for
experiments; the committed fixtures do not use it).

A start epoch > 0 (case bn_cos) is set up as if epochs 0..start_epoch-1 had
run without parameter updates: scheduler.last_epoch = -1 then start_epoch
calls of scheduler.step(), which leaves lr = initial_lr * lf(start_epoch - 1)
(LambdaLR's off-by-one: train.py's epoch e >= 1 trains with lf(e - 1)) and
last_epoch = start_epoch - 1, what train.py sets; fresh optimizer state, fresh
EMA (updates 0), last_opt_step -1, accumulate at its initial value 32.

Usage:  /usr/bin/python3 tools/ref/make_train_steps_fixtures.py [--shared DIR] [--only CASE ...] [--half-round]
"""

import argparse
import math
import os
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_SHARED, FIXTURES, pattern, pattern_input  # noqa: E402
import torch_model_from_onnx as tmo  # noqa: E402
from make_loss_fixtures import N32, Num, f64, jval, load_hyp, read_targets, versions  # noqa: E402

OUT = os.path.join(FIXTURES, "train_steps")
TARGETS = "batch.targets.txt"
IMG = 128  # small images keep the C test (143 iterations a case) fast
BATCH = 2
SEED = 3
NBS = 64
NB = 1000  # batches per epoch (pretend): nw = 3000, so accumulate stays ~1 and 20 steps take ~21 iterations
EPOCHS = 100
NSTEPS = 20
THREADS = 2
DOT_SEED = 7
CLIP = 10.0

# name, model, optimizer, hyp overrides of hyp.scratch-low.yaml, cos_lr, start_epoch, optimizer steps
# With hyp.scratch-low.yaml's warmup (bias lr 0.1) on one fixed batch the run is
# chaotic: PyTorch with and without mkldnn convolutions drifts apart by 1e-3 in
# loss within ~12 steps. Each case therefore also records the loss sequence of a
# second PyTorch run with mkldnn disabled ("alt_loss"), so a test can tell its
# own error from the reference's float32 noise; the *_gentle cases (10x smaller
# learning rates) stay reproducible at 1e-5 for all 20 steps.
CASES = [
    ("bn_sgd", "yolov5s-bn.onnx", "SGD", {}, False, 0, 20),
    ("folded_sgd", "yolov5s-320.onnx", "SGD", {}, False, 0, 20),
    ("bn_sgd_gentle", "yolov5s-bn.onnx", "SGD", {"lr0": 0.001, "warmup_bias_lr": 0.01}, False, 0, 20),
    ("folded_sgd_gentle", "yolov5s.onnx", "SGD", {"lr0": 0.001, "warmup_bias_lr": 0.01}, False, 0, 20),
    ("bn_adamw", "yolov5s-bn.onnx", "AdamW", {"lr0": 0.001, "warmup_bias_lr": 0.001}, False, 0, 20),  # Adam moves every bias by ~lr whatever its gradient: the default 0.1 makes the run chaotic from step 1
    ("bn_cos", "yolov5s-bn.onnx", "SGD", {"warmup_epochs": 0.0}, True, 1, 2),  # past warmup (nw = 100): 64 iterations
]


def checksums(model):
    """float64 sum / L2 norm of the parameters (named_parameters order; 'param_dot'
    = dot of their concatenation with pattern(N, 7) - 0.5), of all BN
    running_mean and of all BN running_var, and of everything together.
    Excludes model.24.anchors (a constant buffer; ModelEMA still averages it)
    and num_batches_tracked (integer)."""
    sd = model.state_dict()
    params = [k for k, _ in model.named_parameters()]
    groups = {"param": params,
              "mean": [k for k in sd if k.endswith("running_mean")],
              "var": [k for k in sd if k.endswith("running_var")]}
    out = {}
    tot_s, tot_q = 0.0, 0.0
    for g, keys in groups.items():
        v = np.concatenate([sd[k].detach().numpy().astype(np.float64).ravel() for k in keys])
        s, q = float(v.sum()), float(np.dot(v, v))
        out[g + "_sum"], out[g + "_norm"] = Num(f64(s)), Num(f64(math.sqrt(q)))
        if g == "param":
            out["param_dot"] = Num(f64(np.dot(v, pattern(v.size, DOT_SEED).astype(np.float64) - 0.5)))
        tot_s += s
        tot_q += q
    out["all_sum"], out["all_norm"] = Num(f64(tot_s)), Num(f64(math.sqrt(tot_q)))
    return out


def group_momentum(x):
    return x["momentum"] if "momentum" in x else x["betas"][0]


def run_case(name, model_file, opt_name, overrides, cos_lr, start_epoch, nsteps_target, shared, half_round, alt_loss=None):
    """Runs the case; with alt_loss None returns the per-iteration losses without writing."""
    import torch
    from torch.optim import lr_scheduler

    tmo.import_yolov5()
    from yolov5.utils.general import one_cycle
    from yolov5.utils.loss import ComputeLoss
    from yolov5.utils.torch_utils import ModelEMA, smart_optimizer

    model, info = tmo.load_model(os.path.join(shared, "models", model_file), verbose=False)
    if half_round:
        model.half().float()
    det = model.model[-1]
    nl, nc = det.nl, tmo.NC

    hyp_src = load_hyp(tmo.yolov5_file("data", "hyps", "hyp.scratch-low.yaml"))
    hyp = dict(hyp_src)
    hyp.update(overrides)
    hyp_given = dict(hyp)
    batch_size, nbs, epochs, nb = BATCH, NBS, EPOCHS, NB

    # train.py: Optimizer
    accumulate = max(round(nbs / batch_size), 1)
    accumulate0 = accumulate
    hyp["weight_decay"] *= batch_size * accumulate / nbs
    optimizer = smart_optimizer(model, opt_name, hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
    # train.py: Scheduler
    if cos_lr:
        lf = one_cycle(1, hyp["lrf"], epochs)
        lf_text = "one_cycle(1, lrf, epochs): ((1 - cos(x*pi/epochs)) / 2) * (lrf - 1) + 1"
    else:
        lf = lambda x: (1 - x / epochs) * (1.0 - hyp["lrf"]) + hyp["lrf"]  # noqa: E731
        lf_text = "linear: (1 - x/epochs) * (1 - lrf) + lrf"
    scheduler = lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
    ema = ModelEMA(model)
    if start_epoch > 0:  # as if epochs 0..start_epoch-1 ran (no parameter updates)
        scheduler.last_epoch = -1
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(start_epoch):
                scheduler.step()
    # train.py: Model attributes
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (IMG / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = 0.0  # opt.label_smoothing default
    model.nc, model.hyp = nc, hyp
    nw = max(round(hyp["warmup_epochs"] * nb), 100)
    last_opt_step = -1
    scheduler.last_epoch = start_epoch - 1
    compute_loss = ComputeLoss(model)

    imgs = torch.from_numpy(pattern_input((BATCH, 3, IMG, IMG), SEED))
    targets = torch.from_numpy(read_targets(os.path.join(OUT, TARGETS)))

    groups = [len(x["params"]) for x in optimizer.param_groups]
    iters, steps = [], []
    nsteps = 0
    start_ni = nb * start_epoch
    for epoch in range(start_epoch, epochs):
        model.train()
        optimizer.zero_grad()
        for i in range(nb):
            ni = i + nb * epoch
            if ni <= nw:
                xi = [0, nw]
                accumulate = max(1, np.interp(ni, xi, [1, nbs / batch_size]).round())
                for j, x in enumerate(optimizer.param_groups):
                    x["lr"] = np.interp(ni, xi, [hyp["warmup_bias_lr"] if j == 0 else 0.0, x["initial_lr"] * lf(epoch)])
                    if "momentum" in x:
                        x["momentum"] = np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]])
            pred = model(imgs)
            loss, items = compute_loss(pred, targets)
            loss.backward()
            rec = {"ni": ni, "epoch": epoch, "accumulate": int(accumulate),
                   "loss": N32(loss.item()), "lbox": N32(items[0]), "lobj": N32(items[1]), "lcls": N32(items[2]),
                   "step": False}
            lrs = [Num(f64(x["lr"])) for x in optimizer.param_groups]
            moms = [Num(f64(group_momentum(x))) for x in optimizer.param_groups]
            if ni - last_opt_step >= accumulate:
                gn = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=CLIP)
                optimizer.step()
                optimizer.zero_grad()
                ema.update(model)
                last_opt_step = ni
                nsteps += 1
                rec["step"] = True
                steps.append({"step": nsteps, "ni": ni, "epoch": epoch, "iters_accumulated": None,
                              "lr": lrs, "momentum": moms,
                              "grad_norm": N32(gn.item()),
                              "clip_coef": N32(min(1.0, float(np.float32(CLIP) / (np.float32(gn.item()) + np.float32(1e-6))))),
                              "ema_updates": ema.updates, "ema_decay": Num(f64(ema.decay(ema.updates))),
                              "model": checksums(model), "ema": checksums(ema.ema)})
            iters.append(rec)
            print("%-10s ni %4d acc %2d loss %.7g (%.6g %.6g %.6g)%s" % (
                name, ni, accumulate, loss.item(), items[0], items[1], items[2],
                "  step %d |g| %s" % (nsteps, steps[-1]["grad_norm"].s) if rec["step"] else ""),
                flush=True)
            if nsteps == nsteps_target:
                break
        if nsteps == nsteps_target:
            break
        scheduler.step()
    if alt_loss is None:
        return [r["loss"] for r in iters]
    # how many backward passes each step's gradient summed (zero_grad at epoch start drops the rest)
    prev = None
    for s in steps:
        lo = max(prev + 1 if prev is not None else start_ni, (s["ni"] // nb) * nb)
        s["iters_accumulated"] = s["ni"] - lo + 1
        prev = s["ni"]

    hyp_out = {k: Num(f64(v)) if isinstance(v, float) else v for k, v in hyp.items()}
    top = {
        "case": name,
        "model": model_file,
        "kind": info["kind"],
        "optimizer": opt_name,
        "seed": SEED,
        "input_shape": [BATCH, 3, IMG, IMG],
        "img": IMG,
        "targets": TARGETS,
        "hyp_source": "hyp.scratch-low.yaml" + (" with " + ", ".join("%s %s" % kv for kv in overrides.items()) if overrides else ""),
        "hyp_given": {k: Num(f64(v)) if isinstance(v, float) else v for k, v in hyp_given.items()},
        "hyp": hyp_out,
        "hyp_note": "hyp = hyp_given after train.py: weight_decay *= batch_size*accumulate/nbs (accumulate = initial 32); "
                    "box *= 3/nl; cls *= nc/80*3/nl; obj *= (img/640)**2*3/nl; label_smoothing = 0.0 (--label-smoothing default)",
        "nc": nc,
        "batch_size": batch_size,
        "nbs": nbs,
        "nb": nb,
        "epochs": epochs,
        "start_epoch": start_epoch,
        "start_ni": start_ni,
        "nw": nw,
        "accumulate_initial": accumulate0,
        "accumulate_rule": "initial max(round(nbs/batch_size), 1); while ni <= nw: max(1, round(interp(ni, [0, nw], [1, nbs/batch_size]))) "
                           "(numpy round: half to even); after warmup it keeps its last value; step when ni - last_opt_step >= accumulate, last_opt_step starts at -1",
        "warmup_rule": "while ni <= nw: group j lr = interp(ni, [0, nw], [warmup_bias_lr if j == 0 else 0, initial_lr * lf(epoch)]); "
                       "momentum (SGD groups only; Adam/AdamW betas untouched) = interp(ni, [0, nw], [warmup_momentum, momentum])",
        "lf": lf_text,
        "cos_lr": cos_lr,
        "scheduler_rule": "LambdaLR: lr = initial_lr * lf(last_epoch); constructed (last_epoch 0), then last_epoch = start_epoch - 1; "
                          "scheduler.step() after each epoch of nb iterations, so epoch e >= 1 trains with lf(e - 1)"
                          + ("; start_epoch > 0: scheduler.last_epoch = -1 then start_epoch scheduler.step() calls before training" if start_epoch else ""),
        "epoch_start_zero_grad": True,
        "param_groups": ["0: biases (BN beta, Detect conv bias), weight_decay 0 (%d tensors)" % groups[0],
                         "1: conv weights, weight_decay hyp['weight_decay'] (%d tensors)" % groups[1],
                         "2: BN weights, weight_decay 0 (%d tensors)" % groups[2]],
        "optimizer_settings": ("SGD(lr, momentum, nesterov=True, dampening 0)" if opt_name == "SGD"
                               else "AdamW(lr, betas=(momentum, 0.999), eps 1e-8, weight_decay per group, amsgrad False)"),
        "clip_grad_norm": CLIP,
        "clip_rule": "torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0) before every optimizer step: total = L2 norm of the per-tensor L2 norms (float32); "
                     "grads *= min(1, 10 / (total + 1e-6)); grad_norm below is the total before clipping",
        "ema": {"decay": 0.9999, "tau": 2000, "rule": "ModelEMA(model) before the loop (deepcopy, eval); after each step updates += 1, "
                "d = 0.9999*(1 - exp(-updates/2000)), every float state_dict entry v = d*v + (1-d)*model_v (weights and BN buffers)"},
        "bn": {"eps": tmo.BN_EPS, "momentum": tmo.BN_MOMENTUM, "rule": "training mode: normalise with batch mean and biased variance; "
               "running_mean = (1-m)*running_mean + m*mean, running_var = (1-m)*running_var + m*unbiased variance, at every forward"},
        "half_round": bool(half_round),
        "half_round_note": "train.py calls model.half().float() before training (float16 rounding of all weights); not applied here",
        "checksum_note": "float64 over float32 tensors: param_* over named_parameters (param_dot = dot with pattern(N, 7) - 0.5 of their "
                         "concatenation in named_parameters order), mean_*/var_* over all BN running_mean/running_var, all_* over the three; "
                         "model.24.anchors and num_batches_tracked excluded",
        "iters_note": "one entry per forward/backward (ni = i + nb*epoch): loss = the total ComputeLoss returns ((lbox+lobj+lcls)*bs), "
                      "lbox/lobj/lcls its loss_items; step = an optimizer step followed at this iteration",
        "steps_note": "one entry per optimizer step: lr/momentum = the param-group values used (groups 0, 1, 2; for AdamW momentum = betas[0]); "
                      "iters_accumulated = backward passes summed into its gradient; model/ema = checksums after the step and the EMA update",
        "steps_target": nsteps_target,
        "alt_note": "alt_loss: the same run's per-iteration loss with torch.backends.mkldnn disabled (PyTorch's other CPU convolution path): the float32 noise floor of the reference",
        "torch_threads": THREADS,
        "versions": versions(),
    }
    if info["kind"] == "folded":
        top["bn_inserted"] = info["bn_inserted"]
    top["alt_loss"] = alt_loss
    top["iters"] = iters
    top["steps"] = steps
    write_json(os.path.join(OUT, name + ".json"), top)


def write_json(path, top):
    lines = ["{"]
    items = list(top.items())
    for i, (k, v) in enumerate(items):
        end = "," if i + 1 < len(items) else ""
        if isinstance(v, list) and k in ("iters", "steps", "alt_loss"):
            lines.append('"%s":[' % k)
            for j, x in enumerate(v):
                lines.append("  " + jval(x) + ("," if j + 1 < len(v) else ""))
            lines.append("]" + end)
        elif isinstance(v, dict) and k == "bn_inserted":
            lines.append('"%s":{' % k)
            sub = list(v.items())
            for j, (kk, vv) in enumerate(sub):
                lines.append('  "%s":%s%s' % (kk, jval(vv), "," if j + 1 < len(sub) else ""))
            lines.append("}" + end)
        else:
            lines.append('"%s":%s%s' % (k, jval(v), end))
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    global OUT, THREADS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=DEFAULT_SHARED)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--half-round", action="store_true", help="apply train.py's model.half().float() (not for the committed fixtures)")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--threads", type=int, default=THREADS, help="torch threads (the fixtures use %d)" % THREADS)
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.shared, "models")):
        print("skip: %s/models not found (the train_steps fixtures need ../shared)" % args.shared)
        return 0
    import torch

    OUT, THREADS = args.out, args.threads
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)  # train.py: init_seeds(deterministic=True)
    os.makedirs(OUT, exist_ok=True)
    if os.path.abspath(OUT) != os.path.abspath(os.path.join(FIXTURES, "train_steps")):
        import shutil

        shutil.copy(os.path.join(FIXTURES, "train_steps", TARGETS), os.path.join(OUT, TARGETS))
    for name, mf, opt, ov, cos, se, ns in CASES:
        if args.only and name not in args.only:
            continue
        with torch.backends.mkldnn.flags(enabled=False):
            alt = run_case(name, mf, opt, ov, cos, se, ns, args.shared, args.half_round)
        run_case(name, mf, opt, ov, cos, se, ns, args.shared, args.half_round, alt_loss=alt)
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("".join(c[0] + "\n" for c in CASES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
