#!/usr/bin/env bash
# What each teacher is worth (MODEL_CARD.md, "What each teacher is worth"): stage 1 of the
# default recipe (6500 steps at 192x192 from ImageNet, QAT 500, int8 export) trained four
# ways, then one compare run against MediaPipe selfie:
#   both  - MediaPipe labels the main-subject sets, RVM the every-person ones (coco_person,
#           the scene photos, the street clip); the unlabelled sets join (v4's stage 1)
#   mp    - MediaPipe labels every set
#   rvm   - RVM labels every set (RVM 512 on coco_person and davis16_person, RVM 256 elsewhere)
#   none  - no teacher: the five labelled sets' own masks, no unlabelled data (the default
#           recipe's stage 1)
# Run it after recipes/default_model.sh with the same WORK_DIR (it reuses that run's built
# sets and its stage 1 as "none").
# Usage: recipes/teacher_ablation.sh [SHARED_DATA_DIR] [WORK_DIR]
# About 3 h 30 min here on an idle 2-core machine (three trainings of ~50 min each one after
# another, labels ~40 min, four QAT runs ~6 min each, compare ~8 min).
# Every step resumes or is skipped when its output exists: rerun the same command after a stop.
set -euo pipefail
SHARED=$(cd "${1:-../shared/data}" && pwd)
WORK=${2:-runs/default_model}
CONFIG=mobile_seg/configs/person_192.json   # stage 1's schedule, data weights of 12 sets
MP=$SHARED/models/selfie_segmentation.tflite
# every-person teachers (RVM: see MODEL_CARD.md on its licence; set RVM=/RVM512= to replace it)
RVM=${RVM:-$SHARED/models/rvm_teacher_256x256.tflite}
RVM512=${RVM512:-$SHARED/models/rvm_teacher_512x512.tflite}
L=$WORK/labels B=$WORK/built_soft V=$WORK/built A=$WORK/ablation
IMAGENET=$SHARED/weights/mobilenet_v2_1.0_224_imagenet.npz
[ -f "$WORK/train/checkpoints/checkpoint" ] || {
  echo "teacher_ablation: run recipes/default_model.sh with WORK_DIR $WORK first (its stage 1 is 'none')" >&2
  exit 2; }
mkdir -p "$A" "$L" "$B"
start=$(date +%s)

# 1. Teacher labels. MediaPipe selfie (it marks the main subject) and RVM (it marks every
#    person; 512 on coco_person and davis16_person, 256 elsewhere) on every set; the scene
#    photos bounded by their VOC person boxes; the clips every 8th (ASL) or 6th (street) frame.
for d in portraits fashion_person selfies davis16_person selfies_unlabeled coco_person; do
  mobile-seg label "$MP" "$SHARED/$d" --out "$L/${d}_mp" --flip --quiet
done
for d in portraits fashion_person selfies selfies_unlabeled; do
  mobile-seg label "$RVM" "$SHARED/$d" --out "$L/${d}_rvm256" --flip --quiet
done
for d in coco_person davis16_person; do
  mobile-seg label "$RVM512" "$SHARED/$d" --out "$L/${d}_rvm" --flip --threads 2 --quiet
done
mobile-seg label "$MP" "$SHARED/scenes_unlabeled" --out "$L/scenes_mp" \
  --boxes "$SHARED/scenes_unlabeled/boxes.json" --quiet
mobile-seg label "$RVM" "$SHARED/scenes_unlabeled" --out "$L/scenes_rvm256" \
  --boxes "$SHARED/scenes_unlabeled/boxes.json" --threads 2 --quiet
for v in asl_again asl_book asl_sister asl_walk; do
  mobile-seg label "$MP" "$SHARED/videos/$v.mkv" --out "$L/video_${v}_mp" --flip --every 8 --quiet
  mobile-seg label "$RVM" "$SHARED/videos/$v.mkv" --out "$L/video_${v}_rvm256" --every 8 --flip --quiet
done
STREET=$SHARED/videos/one-by-one-person-detection.mp4
mobile-seg label "$MP" "$STREET" --out "$L/video_street_mp" --every 6 --quiet
mobile-seg label "$RVM" "$STREET" --out "$L/video_street_rvm256" --every 6 --threads 2 --quiet
for d in "$L"/*; do
  d=$(basename "$d"); flags=(); [[ "$d" = selfies_mp || "$d" = selfies_rvm256 ]] && flags=(--binary)
  [ -f "$B/$d/descriptor.json" ] || mobile-seg data build "$L/$d" --out "$B/$d" "${flags[@]}"   # selfies: 0/255
done

# 2. The data of each run, in $CONFIG's data_weights order (portraits, fashion, selfies,
#    davis16, coco, selfies_unlabeled, scenes, four ASL clips, street clip).
data() { for d in "$@"; do printf -- '--data\n%s\n' "$B/$d"; done; }
mapfile -t MP_DATA < <(data portraits_mp fashion_person_mp selfies_mp davis16_person_mp coco_person_mp \
  selfies_unlabeled_mp scenes_mp video_asl_again_mp video_asl_book_mp video_asl_sister_mp video_asl_walk_mp \
  video_street_mp)
mapfile -t RVM_DATA < <(data portraits_rvm256 fashion_person_rvm256 selfies_rvm256 davis16_person_rvm \
  coco_person_rvm selfies_unlabeled_rvm256 scenes_rvm256 video_asl_again_rvm256 video_asl_book_rvm256 \
  video_asl_sister_rvm256 video_asl_walk_rvm256 video_street_rvm256)
mapfile -t BOTH_DATA < <(data portraits_mp fashion_person_mp selfies_mp davis16_person_mp coco_person_rvm \
  selfies_unlabeled_mp scenes_rvm256 video_asl_again_mp video_asl_book_mp video_asl_sister_mp \
  video_asl_walk_mp video_street_rvm256)

NONE_DATA=(--data "$V/portraits" --data "$V/fashion_person" --data "$V/selfies" --data "$V/davis16_person"
           --data "$V/coco_person")   # the default recipe's five sets and weights

# 3. Train (stage 1's budget), QAT and export each; "none" is the default recipe's stage 1.
run() {  # name, train dir, data args...
  local name=$1 train=$2; shift 2
  [ "$name" = none ] || mobile-seg train --config "$CONFIG" "$@" --init-weights "$IMAGENET" --out "$train"
  mobile-seg qat --run "$train" "$@" --steps 500 --out "$A/$name/qat"
  [ -f "$A/$name/export/qat-int8.tflite" ] || mobile-seg export --qat "$A/$name/qat" --variant qat-int8 \
    --output logits --out "$A/$name/export" --no-report
}
run both "$A/both/train" "${BOTH_DATA[@]}"
run mp "$A/mp/train" "${MP_DATA[@]}"
run rvm "$A/rvm/train" "${RVM_DATA[@]}"
run none "$WORK/train" "${NONE_DATA[@]}"

# 4. One compare run: MediaPipe first, then both / mp / rvm / none.
mobile-seg compare "$MP" "$A/both/export/qat-int8.tflite" "$A/mp/export/qat-int8.tflite" \
  "$A/rvm/export/qat-int8.tflite" "$A/none/export/qat-int8.tflite" \
  --data "$V/portraits" --data "$V/coco_person" --data "$V/fashion_person" --data "$V/selfies" \
  --video "$V/davis16_person" --video "$V/davis_parkour:all" --runs 200 \
  --csv "$A/compare.csv" --quiet --json | tee "$A/compare.txt"
echo "ablation wall time (this call): $(( $(date +%s) - start )) s" | tee -a "$A/wall_time.txt"
