#!/usr/bin/env bash
# gpu_check.sh: the one prepared script a lent GPU machine runs (one call, at
# most 8 minutes), from the repository root. docs/CUDA.md, docs/PERF.md "GPU
# kernels (issue 14)".
#
#   tools/gpu_check.sh              run every step; results under $OUT (or ./gpu_check_out)
#   tools/gpu_check.sh --pack-libs  (here, before lending) copy the shared
#                                   libraries build/onnx-train needs, less the C
#                                   runtime, into build/gpu-libs, so a carried
#                                   build/ runs on the device image, which has
#                                   no Debian packages of ours
#
# Build: a carried build/ (configured with CUDA here: cmake -S . -B build
# -DCMAKE_CUDA_ARCHITECTURES=90, then --target onnx-train test_cuda_device
# test_cuda_conv test_nccl, and --pack-libs) is used when its onnx-train
# starts. The whole build/ with gpu-libs exceeds the 64 MiB carry; carry these
# six paths (about 57 MiB): build/onnx-train build/tests/test_cuda_device
# build/tests/test_cuda_conv build/tests/test_nccl build/CMakeCache.txt
# build/gpu-libs. build/onnx-train-cudaemu is NOT needed (the executor runs in
# CI, not here). Otherwise it configures and builds build-gpu there, and when
# the libraries the build needs are missing it says which, and skips what
# needs the binary.
#
# Time: one device call of at most 8 minutes. Every step's timeout is cut to
# what is left of GPU_CHECK_BUDGET seconds (default 450, counted from the
# start) less the time kept for the steps after it; a step with no time left
# is skipped, saying so. The summary is always written.
#
# Steps (4c: CUDA graphs against plain launches, and --amp fp16 / bf16 training), each logged to $OUT/<step>.log, with a status: pass, fail or skip
# (with the reason). Exit 0 when no step failed: every step that could run
# here passed. Skipped is not failed: no GPU (every GPU step), PyTorch or its
# yolov5 package absent, no CUDA build possible, a test binary not carried,
# no time left. $OUT/steps.tsv lists every step; $OUT/summary.txt the tables:
# the kernels against PyTorch's and the goals, and the training step
# (`bench train --device 0` against tools/bench/torch_train_step.py --device
# cuda, yolov5s at 640: batch 16 and 64 in FP32, batch 64 with AMP, both
# sides, and ours with AMP on channels-last copies).
set -u
ROOT=$(pwd)
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STEPS=$OUT/steps.tsv
: > "$STEPS"
T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-450}
PY=${PYTHON:-python3}

log() { printf '[%4ds] %s\n' $(( $(date +%s) - T0 )) "$*"; }
# record NAME STATUS REASON
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$STEPS"; log "$1: $2${3:+ ($3)}"; }
# budget T KEEP: the timeout for a step that wants T seconds, keeping KEEP
# seconds of the budget (KEEP is for the default 450 s, scaled to another
# GPU_CHECK_BUDGET) for the steps after it; 0 when fewer than 10 are left.
budget() {
    local left=$(( BUDGET - ($(date +%s) - T0) - $2 * BUDGET / 450 ))
    if [ $left -lt 10 ]; then echo 0; elif [ $left -lt $1 ]; then echo $left; else echo $1; fi
}
# run NAME TIMEOUT_S KEEP_S CMD...: pass on exit 0, fail otherwise (output in
# $OUT/NAME.log); skip when the budget has no time left for it.
run() {
    local name=$1 t; t=$(budget "$2" "$3"); shift 3
    if [ "$t" = 0 ]; then record "$name" skip "no time left in the ${BUDGET} s budget"; return 124; fi
    log "$name (timeout ${t} s): $*"
    timeout "$t" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    if [ $rc -eq 0 ]; then record "$name" pass "";
    elif [ $rc -eq 124 ]; then record "$name" fail "timed out after ${t} s, see $name.log: $(tail -n 1 "$OUT/$name.log" | cut -c1-160)";
    else record "$name" fail "exit $rc, see $name.log: $(tail -n 1 "$OUT/$name.log" | cut -c1-160)"; fi
    return $rc
}

if [ "${1:-}" = "--pack-libs" ]; then
    [ -x build/onnx-train ] || { echo "gpu_check.sh --pack-libs: build/onnx-train is not built" >&2; exit 2; }
    mkdir -p build/gpu-libs
    for bin in build/onnx-train build/tests/test_cuda_device build/tests/test_cuda_conv build/tests/test_nccl; do
        [ -x "$bin" ] || continue
        ldd "$bin" | awk '$3 ~ /^\// {print $3}'
    done | sort -u | while read -r lib; do
        case $(basename "$lib") in
            libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*|libcuda.so*) continue ;;
        esac
        cp -L "$lib" build/gpu-libs/
    done
    echo "build/gpu-libs: $(ls build/gpu-libs | wc -l) libraries, $(du -sh build/gpu-libs | cut -f1) (carry build/ within 64 MiB)"
    exit 0
fi

log "gpu_check.sh in $ROOT, results in $OUT"

# ---- 1. the machine ----
HAVE_GPU=0
if command -v nvidia-smi > /dev/null 2>&1; then
    if run nvidia_smi 60 0 nvidia-smi; then HAVE_GPU=1; fi
    nvidia-smi -L 2>/dev/null | sed 's/^/  /'
else
    record nvidia_smi skip "nvidia-smi not found: no GPU driver on this machine"
fi
GPU_WHY="no GPU on this machine (nvidia-smi missing or failing)"
{
    echo "date: $(date -u +%FT%TZ)"; uname -a
    echo "nvcc: $(command -v nvcc > /dev/null && nvcc --version | tail -n 2 | tr '\n' ' ' || echo absent)"
    echo "cmake: $(cmake --version 2>/dev/null | head -n 1 || echo absent)"
    echo "compute-sanitizer: $(command -v compute-sanitizer || echo absent)"
    echo "python3: $($PY --version 2>&1) at $(command -v $PY)"
    $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -n 1
    echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed files"
} > "$OUT/versions.txt" 2>&1
sed 's/^/  /' "$OUT/versions.txt"

# ---- 2. the python packages' cuDNN / NCCL libraries ----
for pkg in nvidia.cudnn nvidia.nccl; do
    d=$($PY -c "import $pkg, os; print(os.path.join(list($pkg.__path__)[0], 'lib'))" 2>/dev/null)
    if [ -n "$d" ] && [ -d "$d" ]; then
        export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        log "LD_LIBRARY_PATH += $d"
    else
        log "no $pkg python package: its libraries are not added"
    fi
done
[ -d "$ROOT/build/gpu-libs" ] && export LD_LIBRARY_PATH="$ROOT/build/gpu-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# ---- 3. a CUDA build: the carried build/, else build-gpu here ----
B=""
cuda_build() { grep -q '^CMAKE_CUDA_COMPILER:.*nvcc' "$1/CMakeCache.txt" 2>/dev/null; }
starts() { "$1/onnx-train" --help > /dev/null 2>&1; }
if [ -x build/onnx-train ] && cuda_build build && starts build; then
    B=build
    record build pass "carried build/ (CUDA) starts"
else
    if [ -x build/onnx-train ]; then
        why=$( (cuda_build build || echo "build/ has no CUDA") ; ldd build/onnx-train 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')
        log "carried build/ unusable: $why"
    fi
    if ! command -v nvcc > /dev/null 2>&1 || ! command -v cmake > /dev/null 2>&1; then
        record build skip "no usable carried build/ and no nvcc/cmake to build one"
    else
        missing=""
        for pc in libprotobuf-c check jansson yaml-0.1 libturbojpeg libjpeg libpng freetype2 fontconfig cairo; do
            pkg-config --exists "$pc" 2>/dev/null || missing="$missing $pc"
        done
        command -v protoc-c > /dev/null 2>&1 || missing="$missing protoc-c"
        [ -f /usr/include/onnx/onnx.proto ] || missing="$missing onnx.proto(libonnx-dev)"
        ls /usr/include/oneapi/dnnl/dnnl.h > /dev/null 2>&1 || missing="$missing oneDNN(libdnnl-dev)"
        if [ -n "$missing" ]; then
            record build skip "cannot build here, missing:$missing (carry a build/ made with CUDA elsewhere, and tools/gpu_check.sh --pack-libs)"
        elif run build_configure 240 380 cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 &&
             run build 300 200 cmake --build build-gpu -j"$(nproc)" --target onnx-train test_cuda_device test_cuda_conv test_nccl; then
            B=build-gpu
        fi
    fi
fi
CLI=${B:+$ROOT/$B/onnx-train}
if [ -n "$B" ]; then # which CUDA, cuDNN and cuBLAS libraries the binary resolves here (cuDNN loads its sub-libraries later)
    ldd "$CLI" 2>/dev/null | grep -E 'cudnn|cudart|cublas|nccl' | sed 's/^[[:space:]]*/  /' | tee "$OUT/cuda_libs.txt"
    "$CLI" info > "$OUT/cli_info.txt" 2>&1 && sed 's/^/  /' "$OUT/cli_info.txt"
fi

# ---- 4. the cuda tests (test_cuda_device, test_cuda_conv, test_nccl); under memcheck in 6b ----
CUDA_TESTS=$(sed -n 's/^set_tests_properties(\(.*\) PROPERTIES LABELS cuda)$/\1/p' tests/CMakeLists.txt)
missing=""
if [ -n "$B" ]; then # run the tests that were built or carried; say which were not
    have=""
    for t in $CUDA_TESTS; do if [ -x "$B/tests/$t" ]; then have="$have $t"; else missing="$missing $t"; fi; done
    [ -n "$missing" ] && record cuda_tests_missing skip "not built or carried:$missing (carry build/tests/<name>)"
    CUDA_TESTS=$have
fi
if [ $HAVE_GPU = 0 ]; then
    record ctest_cuda skip "$GPU_WHY"
elif [ -z "$B" ]; then
    record ctest_cuda skip "no CUDA build"
elif [ -z "$missing" ] && [ "$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$B/CMakeCache.txt")" = "$ROOT/$B" ]; then
    run ctest_cuda 150 300 ctest --test-dir "$B" -L cuda --output-on-failure
else # a build carried from another path (its CTestTestfiles name that path), or some tests absent: run the executables
    run ctest_cuda 150 300 bash -c "for t in $CUDA_TESTS; do echo \"== \$t\"; $B/tests/\$t; rc=\$?; [ \$rc = 0 ] || [ \$rc = 77 ] || exit \$rc; done"
fi

# ---- 4b. training on the GPU, and the NCCL path with a single-rank communicator (issue 15) ----
# A tiny synthetic set; one epoch of yolov5n at 64 px, batch 64 (no accumulation: 2 optimizer steps) plainly, then with the bucketed device all-reduce forced on
# (ONNXT_DEVICE_ALLREDUCE=1: one NCCL rank, 1 MB buckets). A sum over one rank is the identity, so the per-batch
# losses must be the same bits.
if [ -z "$B" ] || [ $HAVE_GPU = 0 ]; then
    if [ -z "$B" ]; then record nccl_train skip "no CUDA build"; else record nccl_train skip "$GPU_WHY"; fi
else
    NT=$OUT/nccl_train
    rm -rf "$NT" && mkdir -p "$NT"
    run nccl_train 90 330 bash -c "'$CLI' data synth --out '$NT/syn' --train 128 --val 8 --img 64 --seed 5 >/dev/null &&
        A='train --model yolov5n --img 64 --epochs 1 --batch-size 64 --workers 2 --noplots --exist-ok --noval --data $NT/syn/data.yaml --project $NT/runs --device 0' &&
        ONNXT_LOSS_LOG='$NT/plain.log' '$CLI' \$A --name plain &&
        ONNXT_DEVICE_ALLREDUCE=1 ONNXT_BUCKET_MB=1 ONNXT_LOSS_LOG='$NT/nccl.log' '$CLI' \$A --name nccl | tee '$NT/nccl.out' &&
        grep -q 'DDP: 1 rank, gradients all-reduced in' '$NT/nccl.out' && cmp '$NT/plain.log' '$NT/nccl.log' && echo 'NCCL single rank: same losses'"
fi

# ---- 4c. CUDA graphs and mixed precision in training (issue 16) ----
# The same tiny set: FP32 with the step's CUDA graphs (the default) against ONNXT_CUDA_GRAPH=0 must give the same
# losses bit for bit (cuDNN's algorithms are deterministic); then --amp fp16 and bf16 (half-precision cuDNN
# convolutions, GradScaler) and fp16 with --channels-last (NHWC half copies) must train: exit 0, finite losses,
# their first and last losses beside FP32's; fp16 with the convolutions' outputs stored in half (the default) must
# give ONNXT_HALF_ACTIVATIONS=0's losses bit for bit (cuDNN's half output is the same either way).
if [ -z "$B" ] || [ $HAVE_GPU = 0 ]; then
    if [ -z "$B" ]; then record graph_amp_train skip "no CUDA build"; else record graph_amp_train skip "$GPU_WHY"; fi
else
    GT=$OUT/graph_amp_train
    rm -rf "$GT" && mkdir -p "$GT"
    run graph_amp_train 90 300 bash -c "'$CLI' data synth --out '$GT/syn' --train 256 --val 8 --img 64 --seed 5 >/dev/null &&
        A='train --model yolov5n --img 64 --epochs 1 --batch-size 32 --workers 2 --noplots --exist-ok --noval --data $GT/syn/data.yaml --project $GT/runs --device 0' &&
        ONNXT_CUDA_GRAPH=0 ONNXT_LOSS_LOG='$GT/plain.log' '$CLI' \$A --amp off --name plain &&
        ONNXT_LOSS_LOG='$GT/graphs.log' '$CLI' \$A --amp off --name graphs | tee '$GT/graphs.out' &&
        grep -q 'CUDA graphs: the whole step' '$GT/graphs.out' && cmp '$GT/plain.log' '$GT/graphs.log' && echo 'CUDA graphs: same losses as plain launches' &&
        ONNXT_LOSS_LOG='$GT/fp16.log' '$CLI' \$A --amp fp16 --name fp16 &&
        ONNXT_HALF_ACTIVATIONS=0 ONNXT_LOSS_LOG='$GT/fp16f.log' '$CLI' \$A --amp fp16 --name fp16f &&
        cmp '$GT/fp16.log' '$GT/fp16f.log' && echo 'AMP: half-precision convolution outputs give the float storage losses' &&
        ONNXT_LOSS_LOG='$GT/bf16.log' '$CLI' \$A --amp bf16 --name bf16 &&
        ONNXT_LOSS_LOG='$GT/fp16cl.log' '$CLI' \$A --amp fp16 --channels-last --name fp16cl | tee '$GT/fp16cl.out' &&
        grep -q 'on channels-last (NHWC) copies' '$GT/fp16cl.out' &&
        for m in plain fp16 bf16 fp16cl; do echo \"\$m: first \$(head -1 $GT/\$m.log) last \$(tail -1 $GT/\$m.log)\"; done &&
        ! grep -qi 'nan\|inf' '$GT/fp16.log' '$GT/bf16.log' '$GT/fp16cl.log'"
fi

# ---- 5. the kernels: ours and PyTorch's ----
if [ -z "$B" ]; then
    record bench_kernels skip "no CUDA build"
elif [ $HAVE_GPU = 0 ]; then
    # the one thing that can run without a GPU: the refusal must be clear and exit 2
    "$CLI" bench kernels --device 0 --json > "$OUT/bench_kernels.json" 2> "$OUT/bench_kernels.log"
    rc=$?
    if [ $rc = 2 ] && [ "$(wc -l < "$OUT/bench_kernels.log")" = 1 ]; then
        record bench_kernels skip "$GPU_WHY; it refused as it should (exit 2): $(cat "$OUT/bench_kernels.log")"
    else
        record bench_kernels fail "without a GPU it should fail with one line and exit 2, got exit $rc"
    fi
else
    run bench_kernels 90 240 bash -c "'$CLI' bench kernels --device 0 --json --iters 100 > '$OUT/bench_kernels.json'"
fi
if [ -n "$B" ]; then
    run shapes_json 60 240 "$CLI" bench kernels --shapes-json "$OUT/shapes.json"
fi
if [ ! -f "$OUT/shapes.json" ]; then
    record torch_kernels skip "no shapes.json (needs a build of onnx-train)"
elif ! $PY -c 'import torch' > /dev/null 2>&1; then
    record torch_kernels skip "PyTorch is not installed for $PY"
elif [ $HAVE_GPU = 0 ]; then
    run torch_kernels 90 200 bash -c "$PY tools/bench/torch_kernels.py --shapes '$OUT/shapes.json' --device cpu --iters 2 > '$OUT/torch_kernels.json'"
else
    run torch_kernels 90 200 bash -c "$PY tools/bench/torch_kernels.py --shapes '$OUT/shapes.json' --device cuda --iters 100 > '$OUT/torch_kernels.json'"
fi

# ---- 6. a full training step on the GPU: ours and PyTorch's, alternating ----
# yolov5s (ours: the built-in size; PyTorch: Model('yolov5s.yaml'), both nc 80,
# fresh weights), 640 px, batch 16 then 64, 5 timed steps after warm-up, FP32
# convolutions on both sides (no --tf32). PyTorch's images and targets are on
# the GPU before its timed steps; ours upload the batch from pinned memory in
# each step (the "upload" phase of bench train's JSON). Ours replays each timed
# step as one CUDA graph, as train does (its JSON's cuda_graph); its phases come
# from plain synchronised steps.
TORCH_WHY=""
if ! $PY -c 'import torch' > /dev/null 2>&1; then TORCH_WHY="PyTorch is not installed for $PY"
elif ! $PY -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("yolov5") is None)' > /dev/null 2>&1; then
    TORCH_WHY="the yolov5 pip package (Ultralytics v7.0) is not installed for $PY"
elif [ $HAVE_GPU = 1 ] && ! $PY -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' > /dev/null 2>&1; then
    TORCH_WHY="torch.cuda.is_available() is False"
fi
# Rows: batch 16 and 64 in FP32, then batch 64 with mixed precision on both sides
# (ours: --amp fp16; PyTorch: train.py's autocast + GradScaler, --amp), issue 16; last ours with --amp fp16
# --channels-last (NHWC half copies), against the same PyTorch AMP row (train.py keeps NCHW).
for cfg in 16:fp32 64:fp32 64:amp 64:amp_cl; do
    bs=${cfg%:*}; prec=${cfg#*:}
    sfx=""; oamp=""; tamp=""
    if [ "$prec" = amp ]; then sfx="_amp"; oamp="--amp fp16"; tamp="--amp"; fi
    if [ "$prec" = amp_cl ]; then sfx="_amp_cl"; oamp="--amp fp16 --channels-last"; fi
    name=bench_train_b$bs$sfx; tname=torch_train_b$bs$sfx
    case $cfg in 16:fp32) keep=240 ;; 64:fp32) keep=160 ;; 64:amp) keep=100 ;; *) keep=60 ;; esac # later rows and memcheck (6b) get the rest
    if [ -z "$B" ]; then record $name skip "no CUDA build"
    elif [ $HAVE_GPU = 0 ]; then
        # without a GPU: --device 0 must be refused in one line with exit 2
        "$CLI" bench train --model yolov5s --device 0 --img 640 --batch-size $bs --steps 5 $oamp --json \
            > "$OUT/$name.json" 2> "$OUT/$name.log"
        rc=$?
        if [ $rc = 2 ] && [ "$(wc -l < "$OUT/$name.log")" = 1 ]; then
            record $name skip "$GPU_WHY; it refused as it should (exit 2): $(cat "$OUT/$name.log")"
        else
            record $name fail "without a GPU it should fail with one line and exit 2, got exit $rc"
        fi
        rm -f "$OUT/$name.json"
    else
        run $name 120 $keep bash -c "'$CLI' bench train --model yolov5s --device 0 --img 640 --batch-size $bs --steps 5 $oamp --json > '$OUT/$name.json'"
    fi
    if [ "$prec" = amp_cl ]; then : # compared with torch_train_b64_amp
    elif [ -n "$TORCH_WHY" ]; then record $tname skip "$TORCH_WHY"
    elif [ $HAVE_GPU = 0 ]; then record $tname skip "$GPU_WHY"
    else
        # --model yolov5s is not a file: Model('yolov5s.yaml'), as ours (no onnx package needed)
        run $tname 120 $(( keep - 40 )) bash -c "$PY tools/bench/torch_train_step.py --device cuda --model yolov5s --img 640 --batch-size $bs --steps 5 --warmup 2 $tamp > '$OUT/$tname.json'"
    fi
done

# ---- 6c. two GPUs: images/s of train --device 0 against --device 0,1 (issue 15), alternating ----
# One epoch of yolov5s at 640, total batch 32, on 256 synthetic images (validation off), twice each way; the
# images/s come from the wall time of the epoch's batches as the trainer's own timer reports them ("it/s" is not
# printed in --quiet, so the whole command's time is used, start-up included: a lower bound for both).
NGPU=0
[ $HAVE_GPU = 1 ] && NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ $HAVE_GPU = 0 ]; then record two_gpus skip "$GPU_WHY"
elif [ "$NGPU" -lt 2 ]; then record two_gpus skip "this machine has $NGPU GPU (two are needed)"
elif [ -z "$B" ]; then record two_gpus skip "no CUDA build"
else
    TG=$OUT/two_gpus
    rm -rf "$TG" && mkdir -p "$TG"
    run two_gpus 150 60 bash -c "'$CLI' data synth --out '$TG/syn' --train 256 --val 8 --img 640 --seed 5 >/dev/null &&
        for k in 1 2 3 4; do d=0; [ \$((k % 2)) = 0 ] && d=0,1;
          s=\$(date +%s.%N); '$CLI' train --model yolov5s --img 640 --epochs 1 --batch-size 32 --workers 4 --noval --noplots --quiet \
            --exist-ok --data '$TG/syn/data.yaml' --project '$TG/runs' --name r\$k --device \$d || exit 1;
          e=\$(date +%s.%N); awk -v d=\$d -v s=\$s -v e=\$e 'BEGIN { printf \"%s %.2f\\n\", d, 256 / (e - s) }'; done | tee '$TG/images_per_s.txt'"
fi

# ---- 6b. the cuda tests and bench kernels under compute-sanitizer memcheck, in the time left ----
if [ $HAVE_GPU = 0 ]; then
    record memcheck skip "$GPU_WHY"
elif [ -z "$B" ]; then
    record memcheck skip "no CUDA build"
elif ! command -v compute-sanitizer > /dev/null 2>&1; then
    record memcheck skip "compute-sanitizer not found"
else
    run memcheck 240 0 bash -c "for t in $CUDA_TESTS; do echo \"== \$t\"; compute-sanitizer --tool memcheck --error-exitcode 99 $B/tests/\$t; rc=\$?; [ \$rc = 0 ] || [ \$rc = 77 ] || exit \$rc; done;
        echo '== bench kernels'; compute-sanitizer --tool memcheck --error-exitcode 99 $CLI bench kernels --device 0 --iters 1"
fi

# ---- 7. the summary tables ----
$PY - "$OUT" > "$OUT/summary.txt" 2>&1 <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
ours, torch = load("bench_kernels.json"), load("torch_kernels.json")
T = {(r["kernel"], r["shape"]): r for r in (torch or {}).get("kernels", [])}
Tn = {r["kernel"]: r for r in (torch or {}).get("kernels", [])}
print(f"GPU kernels: ours {'on ' + ours['gpu'] if ours else 'not measured'}; PyTorch {'on ' + str(torch.get('gpu') or torch.get('device')) if torch else 'not measured'}")
fmt = "{:<26} {:<24} {:>9} {:>11} {:>8} {:>8}  {:<20} {}"
print(fmt.format("kernel", "shape", "ours us", "PyTorch us", "GB/s", "% copy", "goal", "verdict"))
def f(x, spec):
    return "-" if x is None else format(x, spec)
rows = (ours or {}).get("kernels", [])
clip = next((r["us"] for r in rows if r["kernel"] == "clip_norm"), None)
for r in rows:
    k, goal, verdict, tus = r["kernel"], r["goal"], "", None
    if k.startswith("upsample"):
        tus = (T.get((k, r["shape"])) or {}).get("us")
        verdict = "met" if r["pct_of_copy"] >= 85 else "NOT met"
    elif k.startswith("sgd"):
        tus = (Tn.get("ultralytics clip+sgd+ema") or {}).get("us")
        verdict = "met" if r["ratio_to_copy"] <= 1.3 else "NOT met"
        if tus and clip:
            x = tus / (r["us"] + clip)
            verdict += f"; {x:.2f}x Ultralytics (clip+step+ema, goal >= 1.3x: {'met' if x >= 1.3 else 'NOT met'})"
    elif k.startswith("adam"):
        tus = (Tn.get("adam step foreach=True") or {}).get("us")
        verdict = "met" if r["ratio_to_copy"] <= 1.3 else "NOT met"
    elif k == "clip_norm":
        tus = (Tn.get("clip_norm") or {}).get("us")
    elif k.startswith("yolo_loss"):
        tus = (Tn.get("loss (ComputeLoss-like) fwd+bwd") or {}).get("us")
        verdict = "met" if r["us"] < 300 else "NOT met"
    print(fmt.format(k, r["shape"], f(r["us"], ".1f"), f(tus, ".1f"), f(r["gbps"], ".0f"), f(r["pct_of_copy"], ".0f"), goal, verdict))
if not rows:
    print("(no kernel measured: see steps below)")
for r in (torch or {}).get("kernels", []):
    if not any(r["kernel"] == x["kernel"] for x in rows):
        print(fmt.format("  torch: " + r["kernel"], r["shape"], "", f(r.get("us"), ".1f"), "", "", "", r.get("skipped", "")))

# the training step: bench train --device 0 against torch_train_step.py --device cuda
def last_json(name):  # torch_train_step.py prints its JSON as the last line
    try:
        with open(os.path.join(out, name)) as fh:
            lines = [x for x in fh.read().splitlines() if x.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None
steps = {}
try:
    with open(os.path.join(out, "steps.tsv")) as fh:
        for line in fh:
            p = line.rstrip("\n").split("\t")
            if len(p) >= 2:
                steps[p[0]] = (p[1], p[2] if len(p) > 2 else "")
except OSError:
    pass
def why(step):  # short: the whole reason is in the steps list below
    st = steps.get(step)
    return "not run" if not st else st[0] + (" (" + st[1][:60] + ("..." if len(st[1]) > 60 else "") + ")" if st[1] else "")
tr = [(bs, sfx, load("bench_train_b%d%s.json" % (bs, sfx)), last_json("torch_train_b%d%s.json" % (bs, tsfx)))
      for bs, sfx, tsfx in ((16, "", ""), (64, "", ""), (64, "_amp", "_amp"), (64, "_amp_cl", "_amp"))]
gpus = {j.get("gpu") for _, _, o, t in tr for j in (o, t) if j and j.get("gpu")}
print()
print("Training step, yolov5s at 640 (forward, loss, backward, clip, SGD, EMA), FP32 and AMP (goals: AMP >= 2.0x, FP32 >= 1.5x): "
      + ("on " + ", ".join(sorted(gpus)) if gpus else "not measured"))
tf = "{:<6} {:<6} {:>12} {:>12} {:>14} {:>9} {:>11} {:>11}  {}"
print(tf.format("batch", "prec", "ours img/s", "PyTorch img/s", "ours/PyTorch", "ours ms", "PyTorch ms", "ours GPU MiB", "notes"))
for bs, sfx, o, t in tr:
    oi = o.get("images_per_s") if o else None
    ti = t.get("images_per_s") if t else None
    om = (o.get("ms") or {}).get("step") if o else None
    tm = t["step_s_median"] * 1e3 if t and t.get("step_s_median") is not None else None
    notes = []
    if not o:
        notes.append("ours: " + why("bench_train_b%d%s" % (bs, sfx)))
    elif o.get("ms"):
        notes.append(("ours: one CUDA graph a step; " if o.get("cuda_graph") else "ours: plain launches; ")
                     + "ms: " + ", ".join("%s %.1f" % (k, v) for k, v in o["ms"].items() if k != "step"))
    if not t:
        notes.append("PyTorch: " + why("torch_train_b%d%s" % (bs, sfx.replace("_cl", ""))))
    elif t.get("gpu_peak_reserved_mib") is not None:
        notes.append("PyTorch peak reserved %.0f MiB" % t["gpu_peak_reserved_mib"])
    # the share of the card's peak: the convolutions' FLOPs of the step (ours counts them; the same model and
    # batch on both sides) over each side's median step, against bench train's peak for the row's precision
    if o and o.get("conv_gflop_step"):
        pk = o.get("peak_tflops")
        for side, ms_ in (("ours", om), ("PyTorch", tm)):
            if ms_:
                tfl = o["conv_gflop_step"] / ms_  # GFLOP per ms = TFLOP/s
                notes.append("%s %.1f TFLOP/s%s" % (side, tfl, " = %.1f%% of the %.0f TFLOP/s peak" % (100 * tfl / pk, pk) if pk else ""))
    print(tf.format(bs, "AMP-CL" if sfx.endswith("_cl") else "AMP" if sfx else "FP32", f(oi, ".1f"), f(ti, ".1f"), f(oi / ti if oi and ti else None, ".2f"), f(om, ".1f"), f(tm, ".1f"),
                    f(o.get("gpu_used_mb") if o else None, ".0f"), "; ".join(notes)))
print()
ips = {}
try:
    with open(os.path.join(out, "two_gpus", "images_per_s.txt")) as fh:
        for line in fh:
            d, v = line.split()
            ips.setdefault(d, []).append(float(v))
except (OSError, ValueError):
    pass
if "0" in ips and "0,1" in ips:
    one, two = max(ips["0"]), max(ips["0,1"])
    print("Two GPUs (train, yolov5s 640, total batch 32, whole-command images/s, best of 2 alternating): "
          "1 GPU %.1f, 2 GPUs %.1f, scaling %.2fx (goal >= 1.9x)" % (one, two, two / one))
else:
    print("Two GPUs: " + why("two_gpus"))
EOF
echo
cat "$OUT/summary.txt"
echo
echo "steps ($STEPS):"
awk -F'\t' '{printf "  %-18s %-5s %s\n", $1, $2, $3}' "$STEPS"
FAILED=$(awk -F'\t' '$2 == "fail"' "$STEPS" | wc -l)
log "done: $(awk -F'\t' '$2 == "pass"' "$STEPS" | wc -l) passed, $FAILED failed, $(awk -F'\t' '$2 == "skip"' "$STEPS" | wc -l) skipped"
[ "$FAILED" = 0 ]
