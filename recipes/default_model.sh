#!/usr/bin/env bash
# The recipe of the shipped default model, from the shared data to models.json:
#   data build (4 labelled folders) -> train -> qat -> export qat-int8 -> eval vs MediaPipe -> bench.
# Usage: recipes/default_model.sh [SHARED_DATA_DIR] [WORK_DIR] [--install]
#   --install copies the exported model into mobile_seg/assets/models and updates models.json.
# Every step resumes or is skipped when its output exists, so rerunning after a stop goes on.
set -euo pipefail
SHARED=${1:-../shared/data}
WORK=${2:-runs/default_model}
INSTALL=${3:-}
CONFIG=mobile_seg/configs/portrait_224.json
QAT_STEPS=${QAT_STEPS:-500}
TEACHER=${TEACHER-$SHARED/models/selfie_segmentation.tflite}   # TEACHER= (empty) trains without distillation
BASELINE=$SHARED/models/selfie_segmentation.tflite
mkdir -p "$WORK/built"
start=$(date +%s)

for d in portraits coco_person fashion_person selfies; do
  [ -f "$WORK/built/$d/descriptor.json" ] && continue
  flags=(); [ "$d" = selfies ] && flags=(--binary)   # selfies masks are 0/255
  mobile-seg data build "$SHARED/$d" --out "$WORK/built/$d" "${flags[@]}"
done
DATA=(--data "$WORK/built/portraits" --data "$WORK/built/coco_person"
      --data "$WORK/built/fashion_person" --data "$WORK/built/selfies")

kd=()
[ -n "$TEACHER" ] && kd=(--teacher "$TEACHER" --unlabeled "$SHARED/selfies_unlabeled")
# all four labelled sets (+ unlabeled selfies through the teacher), from ImageNet
mobile-seg train --config "$CONFIG" "${DATA[@]}" "${kd[@]}" \
  --init-weights "$SHARED/weights/mobilenet_v2_1.0_224_imagenet.npz" --out "$WORK/train"
mobile-seg qat --run "$WORK/train" "${DATA[@]}" --steps "$QAT_STEPS" --out "$WORK/qat"
mobile-seg export --qat "$WORK/qat" --variant qat-int8 --output logits \
  --data "$WORK/built/portraits" --out "$WORK/export"
MODEL=$WORK/export/qat-int8.tflite
# the same weights at 176x288 for landscape (16:9) frames
mobile-seg export --qat "$WORK/qat" --variant qat-int8 --output logits --input-size 176x288 \
  --out "$WORK/export_landscape" --no-report

LANDSCAPE=$WORK/export_landscape/qat-int8.tflite
BASELINE_LANDSCAPE=$SHARED/models/selfie_segmentation_landscape.tflite
mkdir -p "$WORK/default" "$WORK/landscape"
for d in portraits coco_person fashion_person selfies; do
  mobile-seg eval --tflite "$MODEL" --data "$WORK/built/$d" --quiet --json > "$WORK/default/eval_$d.json"
  mobile-seg eval --tflite "$BASELINE" --data "$WORK/built/$d" --quiet --json > "$WORK/default/baseline_$d.json"
done
# landscape frames: the DAVIS parkour sequence (360x640) for both landscape models
[ -f "$WORK/built/davis_parkour/descriptor.json" ] || \
  mobile-seg data build "$SHARED/davis_parkour" --out "$WORK/built/davis_parkour"
for m in "$MODEL:default/eval_square" "$LANDSCAPE:landscape/eval" "$BASELINE_LANDSCAPE:landscape/baseline"; do
  mobile-seg eval --tflite "${m%%:*}" --data "$WORK/built/davis_parkour" --split all --quiet --json \
    > "$WORK/${m##*:}_davis_parkour.json"
done
mv "$WORK/default/eval_square_davis_parkour.json" "$WORK/landscape/square_davis_parkour.json"
echo "recipe wall time: $(( $(date +%s) - start )) s" | tee "$WORK/wall_time.txt"

if [ "$INSTALL" = "--install" ]; then
  A=mobile_seg/assets/models
  mkdir -p "$A"
  cp "$MODEL" "$A/default.tflite.tmp" && mv "$A/default.tflite.tmp" "$A/default.tflite"
  cp "$LANDSCAPE" "$A/landscape.tflite.tmp" && mv "$A/landscape.tflite.tmp" "$A/landscape.tflite"
  # one bench run of all four: each model's ratio is to its MediaPipe counterpart
  mobile-seg bench "$BASELINE" "$A/default.tflite" "$A/landscape.tflite" "$BASELINE_LANDSCAPE" \
    --threads 1 --runs 200 --json > "$WORK/bench.txt"
  for k in default landscape; do tail -n 1 "$WORK/bench.txt" > "$WORK/$k/bench.json"; done
  python recipes/write_manifest.py "$WORK/default" default default.tflite selfie_segmentation.tflite \
    "MobileNetV2 1.0 DeepLabV3+ (ASPP 1x1 + image pooling, 64-channel decoder at 1/4), 224x224, QAT int8, 2-class logits" \
    recipe=recipes/default_model.sh config=$CONFIG
  python recipes/write_manifest.py "$WORK/landscape" landscape landscape.tflite \
    selfie_segmentation_landscape.tflite "The default model's weights at 176x288 for 16:9 frames" \
    recipe=recipes/default_model.sh config=$CONFIG
else
  mobile-seg bench "$BASELINE" "$MODEL" --threads 1 --runs 200 --json > "$WORK/bench.txt"
fi
