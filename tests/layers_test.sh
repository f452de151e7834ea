#!/usr/bin/env bash
# ctest "layers": the repository's include edges run one way (tools/check_layers.sh),
# and the checker itself fails on a planted upward include and on a planted cycle.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/tools/check_layers.sh" "$here" || { echo "FAIL: the repository's layers"; exit 1; }
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
mkdir -p "$t/core" "$t/kernels" "$t/train"
printf '#include "../kernels/k.h"\n' >"$t/core/c.h"          # upward: core -> kernels
printf '#include "../core/c.h"\n' >"$t/kernels/k.h"
if "$here/tools/check_layers.sh" "$t" >"$t/out" 2>&1; then echo "FAIL: a planted upward include passed"; exit 1; fi
grep -q 'upward include: core/c.h' "$t/out" || { echo "FAIL: the upward include was not named"; cat "$t/out"; exit 1; }
grep -q 'cycle' "$t/out" || { echo "FAIL: the planted cycle was not reported"; cat "$t/out"; exit 1; }
echo "1 passed, 0 failed"
