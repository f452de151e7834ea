#!/usr/bin/python3
"""PyTorch's side of `onnx-train bench kernels` (issue 14, docs/PERF.md "GPU
kernels"): the operations our hand-written CUDA kernels replace, timed on the
same card, at the same shapes. Not a test.

    onnx-train bench kernels --shapes-json shapes.json
    python3 tools/bench/torch_kernels.py --shapes shapes.json [--device cuda] [--iters 50]

The shapes (parameters with their optimizer groups, BN buffers, upsample
inputs, head outputs, matched targets a head) are read from the JSON that
`onnx-train bench kernels --shapes-json` writes, so nothing here hard-codes
the model. Timed, each as the median of --iters after warm-ups
(torch.cuda.Event pairs around each call on a GPU, perf_counter on the CPU):

  upsample2x_fwd / _bwd   F.interpolate(scale_factor=2, mode='nearest') and
                          its backward (aten.upsample_nearest2d_backward)
  clip_grad_norm          torch.nn.utils.clip_grad_norm_(params, 10)
  sgd foreach=False/True  torch.optim.SGD(nesterov=True, momentum 0.937) with
                          Ultralytics' three groups (decay on weights only)
  adam foreach=True       torch.optim.Adam, same groups
  ema                     Ultralytics ModelEMA.update: for every float entry of
                          the state dict v *= d; v += (1 - d) * model_v
  ultralytics step        clip_grad_norm_ + SGD step (foreach=True) + ModelEMA
                          update: what our one fused launch (+ clip norm) does
  bbox_iou CIoU           Ultralytics' bbox_iou(CIoU=True) on the matched rows,
                          forward and backward of (1 - iou).mean()
  loss (ComputeLoss-like) for every head: gather the matched rows, CIoU, class
                          BCE, objectness BCE over the whole map with tobj
                          scattered in, then backward (build_targets excluded,
                          as our kernels get its tables from the host)

The yolov5 package is not needed (the loss parts are written here from
ComputeLoss's formulas). Prints one JSON object: {"device", "torch", "gpu",
"iters", "kernels": [{"kernel", "shape", "us"}]}; kernel names and shape
strings match `bench kernels --json`'s where they time the same work. Exit 3
when PyTorch is not installed for this python, 2 on bad arguments.
"""

import argparse
import json
import math
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", required=True, help="the JSON of onnx-train bench kernels --shapes-json")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--iters", type=int, default=None, help="timed calls each (default 50 on a GPU, 3 on the CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 5 on a GPU, 1 on the CPU)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (--device cpu)")
    args = ap.parse_args()
    try:
        with open(args.shapes) as f:
            S = json.load(f)
    except (OSError, ValueError) as e:
        print(f"torch_kernels.py: cannot read --shapes {args.shapes}: {e}", file=sys.stderr)
        return 2
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch_kernels.py: PyTorch is not installed for {sys.executable} ({e})", file=sys.stderr)
        return 3

    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    if gpu and not torch.cuda.is_available():
        print("torch_kernels.py: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if not gpu:
        torch.set_num_threads(args.threads)
    iters = args.iters or (50 if gpu else 3)
    warm = args.warmup if args.warmup is not None else (5 if gpu else 1)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape, scale=1.0):
        return ((torch.rand(*shape, generator=gen) * 2 - 1) * scale).to(dev)

    def timed(fn):
        for _ in range(warm):
            fn()
        if gpu:
            torch.cuda.synchronize(dev)
            ts = []
            for _ in range(iters):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b) * 1e3)
            return statistics.median(ts)
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e6)
        return statistics.median(ts)

    rows = []

    def add(kernel, shape, us, **extra):
        r = {"kernel": kernel, "shape": shape, "us": us}
        r.update(extra)
        rows.append(r)

    def sstr(shape):
        return "x".join(str(int(d)) for d in shape)

    # ---- nearest 2x upsample, forward and backward ----
    up_shapes = [[16, 32, 80, 80]] + [list(s) for s in S["upsample"]]
    for shp in up_shapes:
        x = rand(*shp)
        dy = rand(shp[0], shp[1], 2 * shp[2], 2 * shp[3])
        out_size = [2 * shp[2], 2 * shp[3]]
        add("upsample2x_fwd", sstr(shp), timed(lambda: F.interpolate(x, scale_factor=2, mode="nearest")))
        bwd = getattr(torch.ops.aten, "upsample_nearest2d_backward", None)
        if bwd is not None:
            add("upsample2x_bwd", sstr(shp), timed(lambda: bwd(dy, out_size, list(shp), 2.0, 2.0)))
        else:  # through autograd
            xr = x.clone().requires_grad_(True)
            add("upsample2x_bwd", sstr(shp),
                timed(lambda: torch.autograd.grad(F.interpolate(xr, scale_factor=2, mode="nearest"), xr, dy)))
        del x, dy

    # ---- the optimizer step, clip and EMA over a parameter list shaped like the model ----
    groups = {"bias": [], "weight": [], "bn": []}
    params = []
    for p in S["params"]:
        t = rand(*p["shape"], scale=0.1).requires_grad_(True)
        t.grad = rand(*p["shape"], scale=0.01)
        groups[p["group"]].append(t)
        params.append(t)
    buffers = [rand(*b["shape"]).abs_() for b in S["buffers"]]
    model_sd = params + buffers                      # the model's float state dict entries
    ema_sd = [t.detach().clone() for t in model_sd]  # ModelEMA's copy
    nparam = sum(t.numel() for t in params)
    nbuf = sum(t.numel() for t in buffers)
    pshape = f"{len(params)} tensors, {nparam / 1e6:.2f}M"
    sshape = f"{len(params) + len(buffers)} segs, {nparam / 1e6:.2f}M+{nbuf / 1e3:.0f}k"

    def make_opt(kind, **kw):
        g = [{"params": groups["bn"], "weight_decay": 0.0},     # Ultralytics smart_optimizer: g[1] BN weights
             {"params": groups["weight"], "weight_decay": 5e-4},  # g[0] weights with decay
             {"params": groups["bias"], "weight_decay": 0.0}]     # g[2] biases
        if kind == "sgd":
            return torch.optim.SGD(g, lr=0.01, momentum=0.937, nesterov=True, **kw)
        return torch.optim.Adam(g, lr=0.01, betas=(0.937, 0.999), **kw)

    d = 0.9999 * (1 - math.exp(-100 / 2000))

    @torch.no_grad()
    def ema_update():  # ModelEMA.update, utils/torch_utils.py
        for v, mv in zip(ema_sd, model_sd):
            if v.dtype.is_floating_point:
                v *= d
                v += (1 - d) * mv.detach()

    add("clip_norm", pshape, timed(lambda: torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)))
    for fe in (False, True):
        opt = make_opt("sgd", foreach=fe)
        opt.step()  # momentum buffers exist from here on (our timing is of later steps too)
        add(f"sgd step foreach={fe}", pshape, timed(opt.step))
    try:  # the fused implementation, where this PyTorch has it for SGD
        opt = make_opt("sgd", fused=True)
        opt.step()
        add("sgd step fused=True", pshape, timed(opt.step))
    except (RuntimeError, TypeError, ValueError) as e:
        add("sgd step fused=True", pshape, None, skipped=str(e).splitlines()[0])
    opt_a = make_opt("adam", foreach=True)
    opt_a.step()
    add("adam step foreach=True", pshape, timed(opt_a.step))
    add("ema (ModelEMA.update)", sshape, timed(ema_update))
    opt = make_opt("sgd", foreach=True)
    opt.step()

    def ultra_step():
        torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)
        opt.step()
        ema_update()

    add("ultralytics clip+sgd+ema", sshape, timed(ultra_step), compare="sgd+clip+ema (1 launch) + clip_norm")
    del params, buffers, model_sd, ema_sd, groups, opt, opt_a

    # ---- the loss: CIoU on matched rows, class and objectness BCE, backward ----
    na, nc = int(S["na"]), int(S["nc"])
    no = nc + 5
    heads = [list(h) for h in S["heads"]]
    matched = [int(n) for n in S["matched"]]
    nrows = sum(matched)

    def bbox_ciou(box1, box2, eps=1e-7):  # xywh, Ultralytics bbox_iou(xywh=True, CIoU=True)
        (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.chunk(4, -1), box2.chunk(4, -1)
        w1_, h1_, w2_, h2_ = w1 / 2, h1 / 2, w2 / 2, h2 / 2
        b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1_, x1 + w1_, y1 - h1_, y1 + h1_
        b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2_, x2 + w2_, y2 - h2_, y2 + h2_
        inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * \
                (torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)).clamp(0)
        union = w1 * h1 + w2 * h2 - inter + eps
        iou = inter / union
        cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)
        ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
        c2 = cw ** 2 + ch ** 2 + eps
        rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
        v = (4 / math.pi ** 2) * torch.pow(torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps)), 2)
        with torch.no_grad():
            alpha = v / (v - iou + (1 + eps))
        return iou - (rho2 / c2 + v * alpha)

    pb = rand(nrows, 4, scale=2.0).requires_grad_(True)
    tb = rand(nrows, 4, scale=2.0).abs_() + 0.2

    def ciou_fb():
        iou = bbox_ciou(pb, tb).squeeze(-1)
        (1.0 - iou).mean().backward()

    add("bbox_iou CIoU fwd+bwd", f"{nrows} rows", timed(ciou_fb))

    ps = [rand(*h, scale=3.0).requires_grad_(True) for h in heads]
    anchors = rand(len(heads), na, 2).abs_() * 3 + 0.5
    idx = []
    for li, h in enumerate(heads):
        n, (bs, _, ny, nx) = matched[li], h
        b = torch.randint(0, bs, (n,), generator=gen).to(dev)
        a = torch.randint(0, na, (n,), generator=gen).to(dev)
        gj = torch.randint(0, ny, (n,), generator=gen).to(dev)
        gi = torch.randint(0, nx, (n,), generator=gen).to(dev)
        c = torch.randint(0, nc, (n,), generator=gen).to(dev)
        tbox = rand(n, 4).abs_() + 0.1
        idx.append((b, a, gj, gi, c, tbox, anchors[li][a]))
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0], device=dev))
    balance = [4.0, 1.0, 0.4]

    def loss_fb():  # ComputeLoss.__call__ after build_targets
        lbox = torch.zeros(1, device=dev)
        lobj = torch.zeros(1, device=dev)
        lcls = torch.zeros(1, device=dev)
        for li, p in enumerate(ps):
            bs, _, ny, nx = p.shape
            pi = p.view(bs, na, no, ny, nx).permute(0, 1, 3, 4, 2)  # as Detect's view + permute
            b, a, gj, gi, c, tbox, anc = idx[li]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=dev)
            pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, nc), 1)
            pxy = pxy.sigmoid() * 2 - 0.5
            pwh = (pwh.sigmoid() * 2) ** 2 * anc
            iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox).squeeze()
            lbox += (1.0 - iou).mean()
            tobj[b, a, gj, gi] = iou.detach().clamp(0).type(tobj.dtype)
            t = torch.full_like(pcls, 0.0)
            t[range(b.shape[0]), c] = 1.0
            lcls += bce(pcls, t)
            lobj += bce(pi[..., 4], tobj) * balance[li]
        loss = (lbox * 0.05 + lobj * 1.0 + lcls * 0.5) * ps[0].shape[0]
        loss.backward()

    add("loss (ComputeLoss-like) fwd+bwd", f"bs {heads[0][0]}, {len(heads)} heads, {nrows} rows", timed(loss_fb),
        compare="yolo_loss (all kernels)")

    out = {"device": str(dev), "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name(dev) if gpu else None,
           "iters": iters, "warmup": warm, "shapes": args.shapes, "kernels": rows}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
