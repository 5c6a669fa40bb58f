#!/usr/bin/env bash
# The recipe of the shipped default (and landscape) person model, from the shared data:
#   label (teachers) -> data build -> train in three stages (192x192 from ImageNet; 192x192
#   with DAVIS relabelled by RVM 512; 224x224) -> qat -> export (224x224 and 144x256)
#   -> compare against MediaPipe selfie on every val split -> [--install]
# Usage: recipes/default_model.sh [SHARED_DATA_DIR] [WORK_DIR] [--install]
#   --install copies both files into mobile_seg/assets/models, stamps their metrics into
#   the files' metadata and rewrites models.json from the compare run.
# Every step resumes or is skipped when its output exists: rerun the same command after
# a stop (Ctrl-C, SIGTERM, a lost session) and it goes on where it was.
set -euo pipefail
SHARED=$(cd "${1:-../shared/data}" && pwd)
WORK=${2:-runs/default_model}
INSTALL=${3:-}
CONFIG=mobile_seg/configs/person_192.json
QAT_STEPS=${QAT_STEPS:-500}
MP=$SHARED/models/selfie_segmentation.tflite
MP_LANDSCAPE=$SHARED/models/selfie_segmentation_landscape.tflite
# every-person teachers (RVM: see MODEL_CARD.md on its licence; set RVM=/RVM512= to replace it)
RVM=${RVM:-$SHARED/models/rvm_teacher_256x256.tflite}
RVM512=${RVM512:-$SHARED/models/rvm_teacher_512x512.tflite}
L=$WORK/labels B=$WORK/built_soft V=$WORK/built_val
mkdir -p "$L" "$B" "$V"
start=$(date +%s)

# 1. Teacher labels. MediaPipe selfie (it marks the main subject, as these sets' masks do)
#    on the main-subject sets, the unlabeled selfies and the ASL clips; RVM (it marks
#    every person) on coco_person, the scene photos (bounded by their VOC person boxes)
#    and the street clip.
for d in portraits fashion_person selfies davis16_person selfies_unlabeled; do
  mobile-seg label "$MP" "$SHARED/$d" --out "$L/${d}_mp" --flip --quiet
done
for v in asl_again asl_book asl_sister asl_walk; do
  mobile-seg label "$MP" "$SHARED/videos/$v.mkv" --out "$L/video_${v}_mp" --flip --every 8 --quiet
done
mobile-seg label "$RVM512" "$SHARED/coco_person" \
  --out "$L/coco_person_rvm" --flip --quiet
mobile-seg label "$RVM" "$SHARED/scenes_unlabeled" --out "$L/scenes_rvm256" \
  --boxes "$SHARED/scenes_unlabeled/boxes.json" --threads 2 --quiet
mobile-seg label "$RVM" "$SHARED/videos/one-by-one-person-detection.mp4" --out "$L/video_street_rvm256" \
  --every 6 --threads 2 --quiet
# (stage 2 only) DAVIS relabelled by RVM 512: it marks the dancer's limbs that MediaPipe misses
mobile-seg label "$RVM512" "$SHARED/davis16_person" --out "$L/davis16_person_rvm" --flip --threads 2 --quiet

# 2. Built datasets: the labelled folders for training, the plain val splits for compare.
SETS=(portraits_mp fashion_person_mp selfies_mp davis16_person_mp coco_person_rvm selfies_unlabeled_mp
      scenes_rvm256 video_asl_again_mp video_asl_book_mp video_asl_sister_mp video_asl_walk_mp
      video_street_rvm256)   # the order of data_weights in $CONFIG
DATA=() DATA2=()
for d in "${SETS[@]}" davis16_person_rvm; do
  flags=(); [ "$d" = selfies_mp ] && flags=(--binary)   # selfies masks are 0/255
  [ -f "$B/$d/descriptor.json" ] || mobile-seg data build "$L/$d" --out "$B/$d" "${flags[@]}"
done
for d in "${SETS[@]}"; do
  DATA+=(--data "$B/$d")
  DATA2+=(--data "$B/${d/davis16_person_mp/davis16_person_rvm}")   # stage 2: DAVIS by RVM 512
done
for d in portraits coco_person fashion_person selfies davis16_person davis_parkour; do
  flags=(); [ "$d" = selfies ] && flags=(--binary)
  [ -f "$V/$d/descriptor.json" ] || mobile-seg data build "$SHARED/$d" --out "$V/$d" "${flags[@]}"
done

# 3. Float training in three stages (each resumes; a finished one is skipped), then
#    quantization-aware fine-tuning on stage 3's mix.
#    Stage 1: 6500 steps at 192x192 from ImageNet ($CONFIG).
mobile-seg train --config "$CONFIG" "${DATA[@]}" \
  --init-weights "$SHARED/weights/mobilenet_v2_1.0_224_imagenet.npz" --out "$WORK/train"
#    Stage 2: 10000 steps at 192x192 from stage 1, DAVIS relabelled by RVM 512 and weighted up.
WEIGHTS=0.14,0.08,0.10,0.20,0.10,0.08,0.22,0.01,0.01,0.01,0.01,0.04
mobile-seg train --config "$CONFIG" "${DATA2[@]}" --data-weights "$WEIGHTS" --init-run "$WORK/train" \
  --steps 10000 --learning-rate 0.01 --warmup-steps 100 --out "$WORK/train2"
#    Stage 3: 6000 steps at 224x224 from stage 2, DAVIS back on MediaPipe's labels.
mobile-seg train --config "$CONFIG" "${DATA[@]}" --data-weights "$WEIGHTS" --init-run "$WORK/train2" \
  --crop-size 224 --steps 6000 --learning-rate 0.005 --warmup-steps 100 --out "$WORK/train3"
mobile-seg qat --run "$WORK/train3" "${DATA[@]}" --steps "$QAT_STEPS" --out "$WORK/qat"

# 4. Export: full int8, logits, square 224x224 and landscape 144x256 (16:9, 0.73x the pixels).
[ -f "$WORK/export/qat-int8.tflite" ] || mobile-seg export --qat "$WORK/qat" --variant qat-int8 \
  --output logits --data "$V/portraits" --out "$WORK/export"
[ -f "$WORK/export_landscape/qat-int8.tflite" ] || mobile-seg export --qat "$WORK/qat" \
  --variant qat-int8 --output logits --input-size 144x256 --out "$WORK/export_landscape" --no-report
MODEL=$WORK/export/qat-int8.tflite
LANDSCAPE=$WORK/export_landscape/qat-int8.tflite

# 5. One compare run per shape: every val split, DAVIS as video (flicker), one bench run.
mobile-seg compare "$MP" "$MODEL" --data "$V/portraits" --data "$V/coco_person" \
  --data "$V/fashion_person" --data "$V/selfies" --video "$V/davis16_person" \
  --video "$V/davis_parkour:all" --runs 300 --csv "$WORK/compare_default.csv" --quiet --json \
  | tee "$WORK/compare_default.txt"
mobile-seg compare "$MP_LANDSCAPE" "$LANDSCAPE" "$MP" --video "$V/davis16_person" \
  --video "$V/davis_parkour:all" --runs 300 --csv "$WORK/compare_landscape.csv" --quiet --json \
  | tee "$WORK/compare_landscape.txt"
echo "recipe wall time (this call): $(( $(date +%s) - start )) s" | tee -a "$WORK/wall_time.txt"

if [ "$INSTALL" = "--install" ]; then
  A=mobile_seg/assets/models
  cp "$MODEL" "$A/default.tflite.tmp" && mv "$A/default.tflite.tmp" "$A/default.tflite"
  cp "$LANDSCAPE" "$A/landscape.tflite.tmp" && mv "$A/landscape.tflite.tmp" "$A/landscape.tflite"
  python recipes/write_manifest.py "$WORK/compare_default.txt" default default.tflite \
    qat-int8.tflite selfie_segmentation.tflite \
    "MobileNetV2 1.0 DeepLabV3+ (ASPP 1x1 + image pooling, 64-channel decoder at 1/4), 224x224, QAT int8, 2-class logits; distilled from MediaPipe selfie and RVM labels" \
    recipe=recipes/default_model.sh config=$CONFIG
  python recipes/write_manifest.py "$WORK/compare_landscape.txt" landscape landscape.tflite \
    qat-int8.tflite selfie_segmentation_landscape.tflite \
    "The default model's weights at 144x256 for 16:9 frames (the demo's choice for frames 3:2 or wider)" \
    recipe=recipes/default_model.sh config=$CONFIG
fi
