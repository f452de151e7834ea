#!/usr/bin/env bash
# `make demo`: the main job of what is built so far. Imports a real Ultralytics
# YOLOv5n export (3 classes, 416, from tests/fixtures), describes it, runs the
# CPU forward pass on a test image pattern and, when ../shared is present, does
# the same for YOLOv5s at 640.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CLI="$BUILD/onnx-train"
OUT="$BUILD/demo"
mkdir -p "$OUT"
tar -xJf tests/fixtures/yolov5n-c3-416.tar.xz -C "$OUT"

echo "== onnx-train info (YOLOv5n, 3 classes, 416) =="
"$CLI" info "$OUT/yolov5n-c3-416.onnx"
echo
echo "== onnx-train forward =="
"$CLI" forward "$OUT/yolov5n-c3-416.onnx" --random-input 1 --out "$OUT/yolov5n" --repeat 3

if [ -f ../shared/models/yolov5s.onnx ]; then
  echo
  echo "== onnx-train info ../shared/models/yolov5s.onnx =="
  "$CLI" info ../shared/models/yolov5s.onnx
  echo
  echo "== onnx-train forward (YOLOv5s, 640) =="
  "$CLI" forward ../shared/models/yolov5s.onnx --random-input 1 --out "$OUT/yolov5s" --repeat 3
else
  echo "(../shared is not present: skipping the YOLOv5s part)"
fi
echo
echo "demo outputs (NumPy .npy) are in $OUT/"
