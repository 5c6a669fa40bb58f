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
mobile-seg train --config "$CONFIG" "${DATA[@]}" "${kd[@]}" \
  --init-weights "$SHARED/weights/mobilenet_v2_1.0_224_imagenet.npz" --out "$WORK/train"
mobile-seg qat --run "$WORK/train" "${DATA[@]}" --steps "$QAT_STEPS" --out "$WORK/qat"
mobile-seg export --qat "$WORK/qat" --variant qat-int8 --output person-probability \
  --data "$WORK/built/portraits" --out "$WORK/export"
MODEL=$WORK/export/qat-int8.tflite

for d in portraits coco_person fashion_person selfies; do
  mobile-seg eval --tflite "$MODEL" --data "$WORK/built/$d" --quiet --json > "$WORK/eval_$d.json"
  mobile-seg eval --tflite "$BASELINE" --data "$WORK/built/$d" --quiet --json > "$WORK/baseline_$d.json"
done
mobile-seg bench "$BASELINE" "$MODEL" --threads 1 --runs 200 --json > "$WORK/bench.json"
echo "recipe wall time: $(( $(date +%s) - start )) s" | tee "$WORK/wall_time.txt"

if [ "$INSTALL" = "--install" ]; then
  mkdir -p mobile_seg/assets/models
  cp "$MODEL" mobile_seg/assets/models/default.tflite.tmp
  mv mobile_seg/assets/models/default.tflite.tmp mobile_seg/assets/models/default.tflite
  python recipes/write_manifest.py "$WORK" default default.tflite \
    "MobileNetV2 1.0 DeepLabV3+ (ASPP 1x1 + image pooling, 64-channel decoder at 1/4), 224x224, QAT int8, person probability" \
    recipe=recipes/default_model.sh config=$CONFIG "recipe_wall_s=$(( $(date +%s) - start ))"
fi
