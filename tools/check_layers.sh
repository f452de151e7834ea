#!/usr/bin/env bash
# check_layers.sh: the include edges between onnx-train's layers, and a check that
# they run one way (docs/BACKENDS.md "Layers").
#
# Layers, lowest first (a file belongs to the first prefix that matches):
#   core         core/ (tensor, graph IR, status, backends, layout) and include/
#   kernels      kernels/ (op definitions and per-device implementations)
#   runtime      core/runtime/ (plan, autograd, session, device tables)
#   import       import/ (ONNX in and out: reader, writer, YOLO head)
#   train        train/
#   export       export/ (checkpoint -> deployable ONNX)
#   tools        tools/ (the CLI) and tests/
# A file may include its own layer or lower ones. Prints every edge between two
# layers with its count; exits 1 on an upward edge or a cycle, naming the files.
#
# usage: tools/check_layers.sh [REPO_ROOT]   (default: the folder above this script)
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

layer_of() {
    case "$1" in
        core/runtime/*) echo runtime ;;
        core/*|include/*) echo core ;;
        kernels/*) echo kernels ;;
        import/*) echo import ;;
        train/*) echo train ;;
        export/*) echo export ;;
        tools/*|tests/*) echo tools ;;
        *) echo "" ;;
    esac
}
rank_of() {
    case "$1" in
        core) echo 0 ;; kernels) echo 1 ;; runtime) echo 2 ;; import) echo 3 ;;
        train) echo 4 ;; export) echo 5 ;; tools) echo 6 ;;
    esac
}

# normalise a/b/../c -> a/c
norm() {
    local IFS=/ out=() p
    for p in $1; do
        case "$p" in
            ''|.) ;;
            ..) [ ${#out[@]} -gt 0 ] && unset 'out[${#out[@]}-1]' ;;
            *) out+=("$p") ;;
        esac
    done
    (IFS=/; echo "${out[*]}")
}

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
dirs=$(for d in core include kernels import train export tools tests; do if [ -d "$d" ]; then echo "$d"; fi; done)
files=$(find $dirs -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) 2>/dev/null | sort || true)
[ -n "$files" ] || { echo "check_layers: no sources under $root" >&2; exit 2; }
for f in $files; do
    lf=$(layer_of "$f")
    [ -n "$lf" ] || continue
    dir=$(dirname "$f")
    while IFS= read -r inc; do
        t=$(norm "$dir/$inc")
        [ -f "$t" ] || t=$(norm "$inc")       # include path: the repository root
        [ -f "$t" ] || continue                 # generated (onnx.pb-c.h) or a system header
        lt=$(layer_of "$t")
        [ -n "$lt" ] && [ "$lt" != "$lf" ] && echo "$lf $lt $f $t" >>"$edges"
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done

echo "include edges between layers (from -> to: count):"
awk '{print $1" -> "$2}' "$edges" | sort | uniq -c | awk '{printf "  %-8s -> %-8s %d\n", $2, $4, $1}'

bad=0
while read -r lf lt f t; do
    if [ "$(rank_of "$lf")" -lt "$(rank_of "$lt")" ]; then
        echo "check_layers: upward include: $f ($lf) includes $t ($lt)" >&2
        bad=1
    fi
done <"$edges"
if ! awk '{print $1, $2}' "$edges" | sort -u | tsort >/dev/null 2>&1; then
    echo "check_layers: the layer graph has a cycle:" >&2
    awk '{print $1, $2}' "$edges" | sort -u | tsort 2>&1 >/dev/null | sed 's/^/  /' >&2
    bad=1
fi
[ $bad -eq 0 ] && echo "check_layers: no upward edge, no cycle"
exit $bad
