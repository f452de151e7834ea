#!/usr/bin/env bash
# `make demo`: the main job, on any machine, with no downloads:
#   1. a synthetic detection dataset (coloured shapes on textured backgrounds),
#   2. a built-in YOLOv5n trained from scratch on the CPU (validated each epoch),
#   3. the exported best.onnx validated again,
#   4. predictions drawn on a few validation images.
# The README states the time and mAP50 it reaches on 2 CPU cores.
# DEMO_EPOCHS (default 55) shortens or lengthens the training.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CLI="$BUILD/onnx-train"
OUT="$BUILD/demo"
EPOCHS=${DEMO_EPOCHS:-55}
rm -rf "$OUT"
mkdir -p "$OUT"
start=$(date +%s)

echo "== 1/4 onnx-train data synth: 400 training + 80 validation images, 3 classes =="
"$CLI" data synth --out "$OUT/shapes" --train 400 --val 80 --img 160 --seed 0
"$CLI" data show --data "$OUT/shapes/data.yaml" --out "$OUT/shapes_batch.jpg" --img 160 --batch-size 16 --seed 1 >/dev/null

echo
echo "== 2/4 onnx-train train: yolov5n from scratch, $EPOCHS epochs at 160 px on the CPU =="
cat > "$OUT/hyp.yaml" <<'H'
# hyp.scratch-low with a higher learning rate, one warmup epoch and a larger
# class-loss gain (train.py scales cls by nc/80: 3 classes learn slowly at 0.5):
# the demo trains from scratch in a few minutes
lr0: 0.02
warmup_epochs: 1.0
cls: 4.0
H
"$CLI" train --model yolov5n --data "$OUT/shapes/data.yaml" --img 160 --epochs "$EPOCHS" --batch-size 16 \
  --workers 2 --hyp "$OUT/hyp.yaml" --project "$OUT/runs" --name train --exist-ok
W="$OUT/runs/train/weights"

echo
echo "== 3/4 onnx-train val: the exported ONNX model =="
"$CLI" val --model "$W/best.onnx" --data "$OUT/shapes/data.yaml" --img 160 --batch-size 32 --workers 2

echo
echo "== 4/4 onnx-train predict: 8 validation images =="
mkdir -p "$OUT/sample"
for f in $(ls "$OUT/shapes/images/val" | head -8); do ln -sf "$(cd "$OUT/shapes/images/val" && pwd)/$f" "$OUT/sample/$f"; done
"$CLI" predict --model "$W/best.onnx" --source "$OUT/sample" --img 160 --out "$OUT/predict"

end=$(date +%s)
echo
echo "demo finished in $((end - start)) s. Where to look:"
echo "  $OUT/runs/train/results.png, PR_curve.png, confusion_matrix.png, val_batch0_pred.jpg   (training)"
echo "  $W/best.onnx   (the trained model, an ONNX inference export like Ultralytics')"
echo "  $OUT/predict/*.jpg   (detections drawn)"
