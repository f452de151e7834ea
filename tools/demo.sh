#!/usr/bin/env bash
# `make demo`: the main job of what is built so far (import, forward, one exact
# training step, the data path). Imports a real Ultralytics YOLOv5n export
# (3 classes, 416, from tests/fixtures), describes it, runs the CPU forward pass,
# then one training forward + YOLOv5 loss + backward on a test batch. With
# ../shared present it also checks coco128, draws an augmented training batch
# (mosaic, perspective, HSV) with its boxes, and runs YOLOv5s at 640.
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
echo
echo "== onnx-train loss: one training step (BN re-inserted, batch statistics, YOLOv5 loss, backward) =="
cat > "$OUT/targets.txt" <<'T'
# image class cx cy w h (normalised)
0 0 0.30 0.40 0.20 0.30
0 1 0.70 0.60 0.10 0.15
0 2 0.50 0.50 0.60 0.50
T
"$CLI" loss "$OUT/yolov5n-c3-416.onnx" --input "$OUT/yolov5n/images.npy" --targets "$OUT/targets.txt" --grads "$OUT/grads"
echo "gradients of $(ls "$OUT/grads" | wc -l) trainable tensors in $OUT/grads/"

if [ -f ../shared/models/yolov5s.onnx ]; then
  SHARED=$(cd ../shared && pwd)
  cat > "$OUT/coco128.yaml" <<Y
path: $SHARED/data/coco128
train: images/train2017
val: images/train2017
names:
$(awk '{printf "  %d: %s\n", NR-1, $0}' "$SHARED/data/coco128/names.txt")
Y
  echo
  echo "== onnx-train data check (coco128) =="
  "$CLI" data check --data "$OUT/coco128.yaml" | tail -n 12
  echo
  echo "== onnx-train data show: one augmented training batch =="
  "$CLI" data show --data "$OUT/coco128.yaml" --out "$OUT/train_batch.jpg" --img 640 --batch-size 16 --seed 1
  echo
  echo "== onnx-train info ../shared/models/yolov5s.onnx =="
  "$CLI" info ../shared/models/yolov5s.onnx
  echo
  echo "== onnx-train forward (YOLOv5s, 640) =="
  "$CLI" forward ../shared/models/yolov5s.onnx --random-input 1 --out "$OUT/yolov5s" --repeat 3
else
  echo "(../shared is not present: skipping coco128 and YOLOv5s)"
fi
echo
echo "demo outputs are in $OUT/ (NumPy .npy outputs and gradients; train_batch.jpg: what the model is fed)"
