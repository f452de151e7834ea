#!/usr/bin/env bash
# Fuzz the ONNX loader with libFuzzer under AddressSanitizer and
# UndefinedBehaviorSanitizer (docs/FUZZING.md).
#   FUZZ_SECONDS=600 tools/fuzz/run.sh
# Seeds: every small ONNX file in tests/fixtures. Findings land in
# build-fuzz/findings/; turn each into a regression file under tests/fixtures/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${FUZZ_SECONDS:-600}
B=build-fuzz
CC=clang cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DONNXT_FUZZ=ON -DONNXT_CUDA=OFF >/dev/null
cmake --build $B -j"$(nproc)" --target fuzz_load
mkdir -p $B/corpus $B/findings
find tests/fixtures -name '*.onnx' -size -64k -exec cp {} $B/corpus/ \; 2>/dev/null || true
cp tests/fixtures/fuzz/* $B/corpus/ 2>/dev/null || true
export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1
$B/tools/fuzz/fuzz_load $B/corpus -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
  -artifact_prefix=$B/findings/ -print_final_stats=1 2>&1 | tee $B/fuzz.log | grep -E "^#[0-9]+.*(pulse|DONE)|ERROR|SUMMARY|stat::" || true
n=$(ls $B/findings | wc -l)
echo "fuzz: $n finding(s) in $B/findings"
[ "$n" -eq 0 ]
