#!/usr/bin/python3
"""End-to-end training benchmark: `onnx-train train` against Ultralytics YOLOv5 v7.0
train.py (the `yolov5` pip package 7.0.13, torch 1.13) on coco128, same settings, same
machine, one after the other, in one run.

    /usr/bin/python3 tools/bench/train_coco128.py [--cli build/onnx-train] \
        [--coco128 ../shared/data/coco128] [--model yolov5n] [--epochs 30] [--img 320] \
        [--batch-size 16] [--workers 2] [--threads 2] [--json OUT.json] [--only ours|ultralytics]

Both sides train from scratch (yolov5n.yaml architecture, hyp.scratch-low, SGD, seed 0,
AutoAnchor, EMA, validation of the EMA every epoch, no plots) with OMP_NUM_THREADS=2 (and
torch.set_num_threads(2) on the Ultralytics side), train = val = the 128 coco128 images.

Data: the shared coco128 folder is never written.  A temporary tree holds symlinks to the
images and copies of the labels (Ultralytics writes labels/train2017.cache next to them),
plus one dataset YAML (80 names from names.txt) that both sides use.

Timing (all wall clock, time.time() in this process unless said otherwise):
  * epoch boundaries: a thread here polls each side's results.csv every 0.1 s and stamps
    each new row.  Both trainers append the row right after the epoch's validation and
    before its checkpoint save, so row k-1 -> row k is one full epoch (checkpoint save of
    k-1, training of k, validation of k).  Epoch 0 is counted from the start of its
    training loop (Ultralytics: an on_train_epoch_start callback; ours: the arrival of its
    flushed 100% progress line minus the training time that line reports).
  * training phase of an epoch (for images/s): Ultralytics: on_train_epoch_start ->
    on_train_epoch_end callbacks (stamped in the child process); ours: its own 100%
    progress line (`[mm:ss<..., X s/it]`, i.e. nb * s/it, measured in-process from the
    first batch request to the last optimiser step).  images/s = images * epochs / sum.
  * total: the whole process, start to exit (set-up, AutoAnchor, every epoch, the final
    validation of the best weights, the ONNX export on our side).
  * the reported ratio is Ultralytics / ours of the median epoch time (and of the total).
Final metrics: the last results.csv row (metrics/mAP_0.5, metrics/mAP_0.5:0.95), plus the
"all" line of the final validation of the best weights, as each side prints it.

Offline workarounds for the pip package (no network here), all in the Ultralytics child
process (this file run with --_ultralytics-child), none changes training:
  * `ultralytics.utils.checks.check_requirements` (imported by yolov5/utils/general.py,
    package not installed): a no-op shim, as in tools/ref/bench_ultralytics_loader.py;
  * `yolov5.utils.roboflow` imports the absent `roboflow` package: a stub module;
  * train() calls attempt_download_from_hub('') and, to validate best.pt at the end,
    attempt_load -> attempt_download -> attempt_download_from_hub(best.pt); it imports the
    absent huggingface_hub: replaced (in yolov5.train, .utils.downloads, .models.common)
    by a function returning None (no hub weights, local files only);
  * check_dataset() calls check_font('Arial.ttf'), which downloads the font when it is not
    in the config dir: YOLOV5_CONFIG_DIR points at a temporary folder where Arial.ttf and
    Arial.Unicode.ttf are symlinks to /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf;
  * wandb / comet / clearml / neptune / tensorboard are not installed; their env switches
    are set off anyway (WANDB_MODE=disabled, ...).

Not a test: the figures go to docs/PERF.md.  See docs/bench_train_coco128.md.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
OFFLINE_ENV = {
    "WANDB_MODE": "disabled", "WANDB_DISABLED": "true", "COMET_MODE": "disabled", "CLEARML_OFFLINE_MODE": "1",
    "NEPTUNE_MODE": "offline", "HF_HUB_OFFLINE": "1", "YOLOv5_AUTOINSTALL": "false", "PYTHONUNBUFFERED": "1",
}


# ---------------------------------------------------------------------------------------------
# Ultralytics child process
# ---------------------------------------------------------------------------------------------

def ultralytics_child(cfg_path):
    with open(cfg_path) as f:
        cfg = json.load(f)
    threads = cfg["threads"]
    # no-op / stub modules for packages that yolov5 7.0.13 imports but that are absent here
    for name in ("ultralytics", "ultralytics.utils", "ultralytics.utils.checks"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["ultralytics.utils.checks"].check_requirements = lambda *a, **k: None
    rf = types.ModuleType("yolov5.utils.roboflow")

    class RoboflowConnector:  # only used for roboflow.com data URLs and --roboflow_upload
        @staticmethod
        def download_dataset(*a, **k):
            raise RuntimeError("roboflow is not available offline")

        @staticmethod
        def upload_model(*a, **k):
            raise RuntimeError("roboflow is not available offline")

    rf.RoboflowConnector = RoboflowConnector
    sys.modules["yolov5.utils.roboflow"] = rf

    import torch
    sys.argv = [sys.argv[0]]  # train.parse_opt(True) reads sys.argv
    import yolov5
    import yolov5.train as ytrain
    from yolov5.utils.callbacks import Callbacks
    import yolov5.models.common as ycommon
    import yolov5.utils.downloads as ydownloads
    for m in (ytrain, ycommon, ydownloads):  # needs huggingface_hub (absent): no hub weights, local files only
        m.attempt_download_from_hub = lambda *a, **k: None
    torch.set_num_threads(threads)  # yolov5.utils.general sets OMP_NUM_THREADS=cpu_count-1 at import

    ev = open(cfg["events"], "a", buffering=1)
    n_start = [0]

    def log(kind, **kw):
        ev.write(json.dumps(dict(ev=kind, t=time.time(), **kw)) + "\n")

    def on_train_start():
        log("train_start", torch_threads=torch.get_num_threads())

    def on_train_epoch_start():
        log("train_epoch_start", epoch=n_start[0])
        n_start[0] += 1

    def on_train_epoch_end(epoch):
        log("train_epoch_end", epoch=epoch)

    def on_fit_epoch_end(vals, epoch, best_fitness, fi):
        log("fit_epoch_end", epoch=epoch)

    def on_train_end(*a):
        log("train_end")

    cb = Callbacks()
    cb.register_action("on_train_start", callback=on_train_start)
    cb.register_action("on_train_epoch_start", callback=on_train_epoch_start)
    cb.register_action("on_train_epoch_end", callback=on_train_epoch_end)
    cb.register_action("on_fit_epoch_end", callback=on_fit_epoch_end)
    cb.register_action("on_train_end", callback=on_train_end)

    pkg = os.path.dirname(yolov5.__file__)
    opt = ytrain.parse_opt(True)
    settings = dict(weights="", cfg=os.path.join(pkg, "models", cfg["model"] + ".yaml"), data=cfg["data"],
                    hyp=os.path.join(pkg, "data", "hyps", "hyp.scratch-low.yaml"), epochs=cfg["epochs"],
                    batch_size=cfg["batch_size"], imgsz=cfg["img"], device="cpu", workers=cfg["workers"],
                    project=cfg["project"], name=cfg["name"], exist_ok=True, noplots=True, seed=0)
    for k, v in settings.items():
        setattr(opt, k, v)
    print("ultralytics opt: " + json.dumps({k: str(v) for k, v in settings.items()}), flush=True)
    ytrain.main(opt, callbacks=cb)
    ev.close()


# ---------------------------------------------------------------------------------------------
# Parent: data, running the sides, parsing
# ---------------------------------------------------------------------------------------------

def make_data(coco128, tmp):
    d = os.path.join(tmp, "coco128")
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(d, sub, "train2017"))
    src_i = os.path.join(coco128, "images", "train2017")
    src_l = os.path.join(coco128, "labels", "train2017")
    n = 0
    for f in sorted(os.listdir(src_i)):
        os.symlink(os.path.join(src_i, f), os.path.join(d, "images", "train2017", f))
        n += 1
    for f in sorted(os.listdir(src_l)):
        if f.endswith(".txt"):
            shutil.copyfile(os.path.join(src_l, f), os.path.join(d, "labels", "train2017", f))
    with open(os.path.join(coco128, "names.txt")) as f:
        names = [s.strip() for s in f if s.strip()]
    yml = os.path.join(tmp, "coco128.yaml")
    with open(yml, "w") as f:
        f.write(f"path: {d}\ntrain: images/train2017\nval: images/train2017\nnc: {len(names)}\n")
        f.write("names: " + json.dumps(names) + "\n")  # JSON lists are YAML flow sequences
    return yml, n, len(names)


class CsvWatch(threading.Thread):
    """Stamps each new results.csv data row as it appears (polls every `dt` s)."""

    def __init__(self, path, dt=0.1):
        super().__init__(daemon=True)
        self.path, self.dt, self.times, self.stop = path, dt, [], threading.Event()

    def rows(self):
        try:
            with open(self.path) as f:
                return max(0, sum(1 for line in f if line.strip()) - 1)
        except OSError:
            return 0

    def run(self):
        while True:
            n = self.rows()
            now = time.time()
            while len(self.times) < n:
                self.times.append(now)
            if self.stop.is_set():
                return
            self.stop.wait(self.dt)


def run_side(tag, cmd, env, csv_path, log_path, echo):
    watch = CsvWatch(csv_path)
    lines = []
    la0 = os.getloadavg()
    t0 = time.time()
    watch.start()
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                             errors="replace")
        for line in p.stdout:  # text mode: '\r' (tqdm) ends a line too
            t = time.time()
            line = line.rstrip("\n")
            lines.append((t, line))
            log.write(f"{t - t0:9.3f} {line}\n")
            if echo and line.strip():
                print(f"[{tag} {t - t0:7.1f}s] {line}", file=sys.stderr, flush=True)
        _, status, ru = os.wait4(p.pid, 0)  # rusage of this child and its reaped children (loader workers)
        p.returncode = rc = os.waitstatus_to_exitcode(status)
    t1 = time.time()
    watch.stop.set()
    watch.join()
    if rc != 0:
        tail = "\n".join(l for _, l in lines[-30:])
        raise SystemExit(f"{tag} failed (exit {rc}); command:\n  {' '.join(cmd)}\nlast output:\n{tail}\nlog: {log_path}")
    return dict(t0=t0, t1=t1, lines=lines, rows=watch.times, cpu_s=ru.ru_utime + ru.ru_stime,
                max_rss_mib=ru.ru_maxrss / 1024,
                loadavg=[round(x, 2) for x in la0 + os.getloadavg()])


def read_csv(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    head = [h.strip() for h in rows[0]]
    return [dict(zip(head, (float(x) for x in r))) for r in rows[1:] if r]


ALL_RE = re.compile(r"^\s*all\s+(\d+)\s+(\d+)\s+([\d.eE+-]+)\s+([\d.eE+-]+)\s+([\d.eE+-]+)\s+([\d.eE+-]+)\s*$")
PROG_RE = re.compile(r"^\s*(\d+)/(\d+)\s+\S+\s+.*?(\d+)%\s+(\d+)/(\d+)\s+\[([\d:]+)<[\d:]+,\s*([\d.]+)(it/s|s/it)\]")


def final_val(lines):
    """The 'all' line of the validation of the best weights after training."""
    seen = False
    res = None
    for _, l in lines:
        if "Validating " in l:
            seen, res = True, None
        elif seen:
            m = ALL_RE.match(l)
            if m and res is None:
                res = dict(images=int(m[1]), instances=int(m[2]), P=float(m[3]), R=float(m[4]), mAP50=float(m[5]),
                           mAP50_95=float(m[6]))
    return res


def summarize(name, run, csv_path, epoch_starts, train_s, n_images, cmd):
    rows = read_csv(csv_path)
    n = len(rows)
    rt = [t - run["t0"] for t in run["rows"][:n]]
    if len(rt) < n:
        raise SystemExit(f"{name}: {n} rows in {csv_path} but only {len(rt)} seen appearing")
    start0 = epoch_starts[0] - run["t0"]
    epoch_s = [rt[0] - start0] + [rt[k] - rt[k - 1] for k in range(1, n)]
    last = rows[-1]
    tr = train_s[:n]
    out = {
        "command": cmd,
        "epochs": n,
        "total_s": round(run["t1"] - run["t0"], 2),
        "setup_s": round(start0, 2),  # process start -> first training batch loop
        "epochs_s": round(rt[-1] - start0, 2),  # first epoch start -> last results.csv row
        "after_s": round(run["t1"] - run["t0"] - rt[-1], 2),  # last row -> exit (final val, export)
        "epoch_s": [round(x, 2) for x in epoch_s],
        "median_epoch_s": round(statistics.median(epoch_s), 2),
        "median_epoch_s_from_1": round(statistics.median(epoch_s[1:]), 2) if n > 1 else None,
        "train_s": [round(x, 2) for x in tr],
        "median_train_s": round(statistics.median(tr), 2) if tr else None,
        "train_images_per_s": round(n_images * len(tr) / sum(tr), 2) if tr else None,
        "final": {"mAP50": last.get("metrics/mAP_0.5"), "mAP50_95": last.get("metrics/mAP_0.5:0.95"),
                  "P": last.get("metrics/precision"), "R": last.get("metrics/recall"),
                  "train_loss": [last.get("train/box_loss"), last.get("train/obj_loss"), last.get("train/cls_loss")]},
        "best_val": final_val(run["lines"]),
        # CPU time of the process and its (waited-for) children, e.g. data-loader workers: with other work on
        # the machine, cpu_s / total_s drops below what the side would get alone
        "cpu_s": round(run["cpu_s"], 1),
        "cpu_per_wall": round(run["cpu_s"] / (run["t1"] - run["t0"]), 2),
        "max_rss_mib": round(run["max_rss_mib"]),  # largest single process (the trainer or one of its workers)
        "loadavg_start_end": run["loadavg"],  # 1, 5, 15 min at start, then at end
    }
    return out


def run_ours(a, yml, tmp, n_images, echo):
    project = os.path.join(tmp, "runs")
    cmd = [a.cli, "train", "--model", a.model, "--data", yml, "--img", str(a.img), "--epochs", str(a.epochs),
           "--batch-size", str(a.batch_size), "--workers", str(a.workers), "--project", project, "--name", "ours",
           "--exist-ok", "--noplots"]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    csv_path = os.path.join(project, "ours", "results.csv")
    r = run_side("ours", cmd, env, csv_path, os.path.join(tmp, "ours.log"), echo)
    # the flushed 100% progress line of each epoch: arrival time and in-process training time
    ends, train_s = {}, {}
    for t, l in r["lines"]:
        m = PROG_RE.match(l)
        if m and m[4] == m[5]:
            ep, nb, rate = int(m[1]), int(m[5]), float(m[7])
            s = nb / rate if m[8] == "it/s" else nb * rate
            ends[ep], train_s[ep] = t, s
    eps = sorted(train_s)
    if not eps:
        raise SystemExit(f"ours: no 100% progress line found (see {os.path.join(tmp, 'ours.log')})")
    starts = [ends[eps[0]] - train_s[eps[0]]]
    out = summarize("ours", r, csv_path, starts, [train_s[e] for e in eps], n_images, " ".join(cmd))
    out["env"] = {"OMP_NUM_THREADS": str(a.threads)}
    return out


def run_ultralytics(a, yml, tmp, n_images, echo):
    project = os.path.join(tmp, "runs")
    cfgdir = os.path.join(tmp, "ultralytics_config")
    os.makedirs(cfgdir, exist_ok=True)
    for f in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not os.path.exists(os.path.join(cfgdir, f)):
            os.symlink(FONT, os.path.join(cfgdir, f))
    events = os.path.join(tmp, "ultralytics_events.jsonl")
    cfg = dict(model=a.model, data=yml, img=a.img, epochs=a.epochs, batch_size=a.batch_size, workers=a.workers,
               project=project, name="ultralytics", threads=a.threads, events=events)
    cfg_path = os.path.join(tmp, "ultralytics_cfg.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    cmd = [sys.executable, os.path.abspath(__file__), "--_ultralytics-child", cfg_path]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), YOLOV5_CONFIG_DIR=cfgdir, **OFFLINE_ENV)
    csv_path = os.path.join(project, "ultralytics", "results.csv")
    r = run_side("ultralytics", cmd, env, csv_path, os.path.join(tmp, "ultralytics.log"), echo)
    with open(events) as f:
        evs = [json.loads(l) for l in f if l.strip()]
    st = {e["epoch"]: e["t"] for e in evs if e["ev"] == "train_epoch_start"}
    en = {e["epoch"]: e["t"] for e in evs if e["ev"] == "train_epoch_end"}
    eps = sorted(set(st) & set(en))
    threads = [e.get("torch_threads") for e in evs if e["ev"] == "train_start"]
    out = summarize("ultralytics", r, csv_path, [st[eps[0]]], [en[e] - st[e] for e in eps], n_images,
                    " ".join(cmd) + "   # yolov5.train.main(opt) with opt: " + json.dumps(
                        {k: v for k, v in cfg.items() if k not in ("events", "threads")} |
                        {"weights": "", "cfg": a.model + ".yaml", "hyp": "hyp.scratch-low.yaml", "device": "cpu",
                         "noplots": True, "seed": 0}))
    out["env"] = {"OMP_NUM_THREADS": str(a.threads), "torch.set_num_threads": a.threads,
                  "torch_threads_at_train_start": threads[0] if threads else None}
    return out


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for l in f:
                if l.startswith("model name"):
                    model = l.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "mem_gib": mem,
            "platform": platform.platform()}


def versions(cli):
    v = {"python": platform.python_version()}
    try:
        v["onnx_train"] = subprocess.run([cli, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        v["onnx_train"] = None
    try:
        r = subprocess.run([sys.executable, "-c", "import torch, numpy, cv2; "
                            "import importlib.metadata as m; print(torch.__version__, numpy.__version__, "
                            "cv2.__version__, m.version('yolov5'))"], capture_output=True, text=True)
        t, n, c, y = r.stdout.split()
        v.update(torch=t, numpy=n, opencv=c, yolov5_pip=y)
    except (OSError, ValueError):
        pass
    return v


def fmt(x, f="%.1f"):
    return "-" if x is None else f % x


def table(res):
    hdr = ("| side | epochs | total s | median s/epoch (train+val) | median train s/epoch | train images/s | "
           "final mAP50 | final mAP50-95 | best.pt val mAP50 / mAP50-95 | CPU s / wall s |")
    out = [hdr, "|" + "---|" * 10]
    for name, r in res.items():
        bv = r.get("best_val")
        out.append(f"| {name} | {r['epochs']} | {fmt(r['total_s'])} | {fmt(r['median_epoch_s'], '%.2f')} | "
                   f"{fmt(r['median_train_s'], '%.2f')} | {fmt(r['train_images_per_s'], '%.2f')} | "
                   f"{fmt(r['final']['mAP50'], '%.4f')} | {fmt(r['final']['mAP50_95'], '%.4f')} | "
                   + (f"{bv['mAP50']:.3f} / {bv['mAP50_95']:.3f}" if bv else "-") + f" | {r['cpu_per_wall']:.2f} |")
    return "\n".join(out)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--_ultralytics-child":
        return ultralytics_child(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "onnx-train"))
    ap.add_argument("--coco128", default=os.path.join(ROOT, "..", "shared", "data", "coco128"))
    ap.add_argument("--model", default="yolov5n", choices=["yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS / torch.set_num_threads (2)")
    ap.add_argument("--json", help="write everything to this JSON file")
    ap.add_argument("--only", choices=["ours", "ultralytics"])
    ap.add_argument("--order", choices=["ours-first", "ultralytics-first"], default="ours-first")
    ap.add_argument("--keep", help="copy the temporary folder (runs, logs) here at the end")
    ap.add_argument("-q", "--quiet", action="store_true", help="do not echo the trainers' output to stderr")
    a = ap.parse_args()
    a.cli = os.path.abspath(a.cli)
    a.coco128 = os.path.abspath(a.coco128)
    if not os.access(a.cli, os.X_OK) and a.only != "ultralytics":
        raise SystemExit(f"no CLI at {a.cli} (--cli)")

    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load0 = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="bench_train_coco128_")
    try:
        yml, n_images, nc = make_data(a.coco128, tmp)
        sides = ["ours", "ultralytics"] if a.order == "ours-first" else ["ultralytics", "ours"]
        if a.only:
            sides = [a.only]
        res = {}
        for s in sides:
            print(f"== {s}: {a.model}, {a.epochs} epochs, img {a.img}, batch {a.batch_size}, workers {a.workers}, "
                  f"{a.threads} threads", file=sys.stderr, flush=True)
            fn = run_ours if s == "ours" else run_ultralytics
            res[s] = fn(a, yml, tmp, n_images, not a.quiet)
            print(f"== {s}: {res[s]['total_s']:.1f} s total, epochs {res[s]['epoch_s']}", file=sys.stderr, flush=True)
        ratio = None
        if "ours" in res and "ultralytics" in res:
            u, o = res["ultralytics"], res["ours"]
            ratio = {"median_epoch": round(u["median_epoch_s"] / o["median_epoch_s"], 3),
                     "total": round(u["total_s"] / o["total_s"], 3),
                     "train_images_per_s": round(o["train_images_per_s"] / u["train_images_per_s"], 3)}
        out = {
            "benchmark": "coco128 training, onnx-train vs Ultralytics YOLOv5 v7.0 train.py (CPU)",
            "date": date, "machine": machine(), "loadavg_start": [round(x, 2) for x in load0],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()], "versions": versions(a.cli),
            "settings": {"model": a.model, "epochs": a.epochs, "img": a.img, "batch_size": a.batch_size,
                         "workers": a.workers, "threads": a.threads, "images": n_images, "nc": nc,
                         "hyp": "hyp.scratch-low", "seed": 0, "order": sides, "coco128": a.coco128},
            "results": res,
            "ratio_ultralytics_over_ours": ratio,
            "command": " ".join([sys.executable] + sys.argv),
        }
        print(table(res))
        if ratio:
            print(f"\nUltralytics / ours: median epoch time {ratio['median_epoch']:.2f}x, total time "
                  f"{ratio['total']:.2f}x; training images/s ours / Ultralytics {ratio['train_images_per_s']:.2f}x")
        m = out["machine"]
        print(f"({m['cpu']}, {m['cores']} cores, load average at start {load0[0]:.2f}, {date})")
        busy = [f"{k} {v['cpu_per_wall']:.2f}" for k, v in res.items()]
        if load0[0] > 0.5:
            print(f"warning: load average {load0[0]:.2f} at start (CPU s / wall s: {', '.join(busy)}): other work was "
                  "running on this machine, the times are not clean", file=sys.stderr)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=1)
                f.write("\n")
        if a.keep:
            shutil.copytree(tmp, a.keep, symlinks=True, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
