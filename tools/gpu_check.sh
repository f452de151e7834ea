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
# test_nccl, and --pack-libs) is used when its onnx-train starts. The whole
# build/ with gpu-libs exceeds the 64 MiB carry; carry these five paths (about
# 54 MiB): build/onnx-train build/tests/test_cuda_device build/tests/test_nccl
# build/CMakeCache.txt build/gpu-libs. Otherwise it
# configures and builds build-gpu there, and when the libraries the build needs
# are missing it says which, and skips what needs the binary.
#
# Steps, each logged to $OUT/<step>.log, with a status: pass, fail or skip
# (with the reason). Exit 0 when no step failed: every step that could run
# here passed. Skipped is not failed: no GPU (every GPU step), PyTorch absent,
# no CUDA build possible, `bench train --device 0` blocked because the CUDA op
# table does not exist yet (the plan names the first op without a kernel; the
# line is reported). $OUT/steps.tsv lists every step; $OUT/summary.txt the table.
set -u
ROOT=$(pwd)
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STEPS=$OUT/steps.tsv
: > "$STEPS"
T0=$(date +%s)
PY=${PYTHON:-python3}

log() { printf '[%4ds] %s\n' $(( $(date +%s) - T0 )) "$*"; }
# record NAME STATUS REASON
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$STEPS"; log "$1: $2${3:+ ($3)}"; }
# run NAME TIMEOUT_S CMD...: pass on exit 0, fail otherwise (output in $OUT/NAME.log)
run() {
    local name=$1 t=$2; shift 2
    log "$name: $*"
    timeout "$t" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    if [ $rc -eq 0 ]; then record "$name" pass ""; else record "$name" fail "exit $rc, see $name.log: $(tail -n 1 "$OUT/$name.log" | cut -c1-160)"; fi
    return $rc
}

if [ "${1:-}" = "--pack-libs" ]; then
    [ -x build/onnx-train ] || { echo "gpu_check.sh --pack-libs: build/onnx-train is not built" >&2; exit 2; }
    mkdir -p build/gpu-libs
    for bin in build/onnx-train build/tests/test_cuda_device build/tests/test_nccl; do
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
    if run nvidia_smi 60 nvidia-smi; then HAVE_GPU=1; fi
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
        elif run build_configure 240 cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 &&
             run build 300 cmake --build build-gpu -j"$(nproc)" --target onnx-train test_cuda_device test_nccl; then
            B=build-gpu
        fi
    fi
fi
CLI=${B:+$ROOT/$B/onnx-train}

# ---- 4. the cuda tests, plain and under compute-sanitizer memcheck ----
CUDA_TESTS=$(sed -n 's/^set_tests_properties(\(.*\) PROPERTIES LABELS cuda)$/\1/p' tests/CMakeLists.txt)
if [ $HAVE_GPU = 0 ]; then
    record ctest_cuda skip "$GPU_WHY"
    record memcheck skip "$GPU_WHY"
elif [ -z "$B" ]; then
    record ctest_cuda skip "no CUDA build"
    record memcheck skip "no CUDA build"
else
    if [ "$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$B/CMakeCache.txt")" = "$ROOT/$B" ]; then
        run ctest_cuda 240 ctest --test-dir "$B" -L cuda --output-on-failure
    else # a build carried from another path: its CTestTestfiles name that path; run the executables
        run ctest_cuda 240 bash -c "for t in $CUDA_TESTS; do echo \"== \$t\"; $B/tests/\$t; rc=\$?; [ \$rc = 0 ] || [ \$rc = 77 ] || exit \$rc; done"
    fi
    if command -v compute-sanitizer > /dev/null 2>&1; then
        run memcheck 240 bash -c "for t in $CUDA_TESTS; do echo \"== \$t\"; compute-sanitizer --tool memcheck --error-exitcode 99 $B/tests/\$t; rc=\$?; [ \$rc = 0 ] || [ \$rc = 77 ] || exit \$rc; done;
            echo '== bench kernels'; compute-sanitizer --tool memcheck --error-exitcode 99 $CLI bench kernels --device 0 --iters 1"
    else
        record memcheck skip "compute-sanitizer not found"
    fi
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
    run bench_kernels 180 bash -c "'$CLI' bench kernels --device 0 --json --iters 100 > '$OUT/bench_kernels.json'"
fi
if [ -n "$B" ]; then
    run shapes_json 60 "$CLI" bench kernels --shapes-json "$OUT/shapes.json"
fi
if [ ! -f "$OUT/shapes.json" ]; then
    record torch_kernels skip "no shapes.json (needs a build of onnx-train)"
elif ! $PY -c 'import torch' > /dev/null 2>&1; then
    record torch_kernels skip "PyTorch is not installed for $PY"
elif [ $HAVE_GPU = 0 ]; then
    run torch_kernels 180 bash -c "$PY tools/bench/torch_kernels.py --shapes '$OUT/shapes.json' --device cpu --iters 2 > '$OUT/torch_kernels.json'"
else
    run torch_kernels 180 bash -c "$PY tools/bench/torch_kernels.py --shapes '$OUT/shapes.json' --device cuda --iters 100 > '$OUT/torch_kernels.json'"
fi

# ---- 6. a full training step on the GPU, if the CUDA op table exists ----
if [ -z "$B" ] || [ $HAVE_GPU = 0 ]; then
    if [ -z "$B" ]; then record bench_train skip "no CUDA build"; else record bench_train skip "$GPU_WHY"; fi
else
    for bs in 16 64; do
        timeout 150 "$CLI" bench train --model yolov5s --device 0 --img 640 --batch-size $bs --steps 5 --json \
            > "$OUT/bench_train_b$bs.json" 2> "$OUT/bench_train_b$bs.log"
        rc=$?
        if [ $rc = 0 ]; then
            record bench_train_b$bs pass ""
        elif grep -qiE 'no (CUDA|kernel|implementation)|without a CUDA|for device cuda' "$OUT/bench_train_b$bs.log"; then
            record bench_train_b$bs skip "blocked, the CUDA op table does not exist yet: $(head -n 1 "$OUT/bench_train_b$bs.log" | cut -c1-200)"
            break
        else
            record bench_train_b$bs fail "exit $rc: $(tail -n 1 "$OUT/bench_train_b$bs.log" | cut -c1-200)"
        fi
    done
    if grep -q "	pass	" <(grep '^bench_train_b' "$STEPS"); then
        # torch_train_step.py times the CPU; its GPU counterpart is for when our GPU step exists
        record torch_train_step skip "tools/bench/torch_train_step.py has no --device cuda yet"
    else
        record torch_train_step skip "nothing of ours to compare with (bench train --device 0 did not run)"
    fi
fi

# ---- 7. the summary table ----
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
EOF
echo
cat "$OUT/summary.txt"
echo
echo "steps ($STEPS):"
awk -F'\t' '{printf "  %-18s %-5s %s\n", $1, $2, $3}' "$STEPS"
FAILED=$(awk -F'\t' '$2 == "fail"' "$STEPS" | wc -l)
log "done: $(awk -F'\t' '$2 == "pass"' "$STEPS" | wc -l) passed, $FAILED failed, $(awk -F'\t' '$2 == "skip"' "$STEPS" | wc -l) skipped"
[ "$FAILED" = 0 ]
