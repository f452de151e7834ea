#!/usr/bin/env bash
# Installs the Debian packages onnx-train needs to build and test, when missing.
# Used by `make demo` and `make test` (and so by CI). Idempotent; prints nothing
# when everything is already there.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  check                                   # unit tests
  libprotobuf-c-dev protobuf-c-compiler   # ONNX (de)serialisation
  libonnx-dev                             # onnx.proto, compiled at build time
  libjansson-dev                          # JSON output (info --json, ...)
  libdnnl-dev                             # oneDNN GEMM behind im2col (chosen by measurement, docs/PERF.md)
  libgomp1                                # OpenMP runtime (gcc)
  libyaml-dev                             # dataset and hyp YAML
  libturbojpeg0-dev libjpeg62-turbo-dev   # JPEG decode (DCT scaling, cropped decode) and write
  libpng-dev                              # PNG decode
  libfreetype-dev libfontconfig-dev fonts-dejavu-core  # class names drawn by `data show`
  libcairo2-dev                           # plots: results.png, PR/F1 curves, confusion matrix
  libopenmpi-dev openmpi-bin              # data-parallel CPU ranks under mpirun
  xz-utils                                # compressed test fixtures
)
# Extra tooling for `make fuzz` only.
if [ "${1:-}" = "--fuzz" ]; then pkgs+=(clang libclang-rt-14-dev libomp-14-dev); fi

missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in *"ok installed"*) ;; *) missing+=("$p") ;; esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
