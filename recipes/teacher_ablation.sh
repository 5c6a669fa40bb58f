#!/usr/bin/env bash
# What each teacher is worth (MODEL_CARD.md, "What each teacher is worth"): stage 1 of the
# default recipe (6500 steps at 192x192 from ImageNet, $CONFIG's schedule and data weights,
# QAT 500, int8 export) trained four ways, then one compare run against MediaPipe selfie:
#   both  - the default recipe's stage 1: MediaPipe labels the main-subject sets, RVM the
#           every-person ones (coco_person, the scene photos, the street clip)
#   mp    - MediaPipe labels every set
#   rvm   - RVM labels every set (RVM 512 on coco_person and davis16_person, RVM 256 elsewhere)
#   none  - no teacher: the five labelled sets' own masks, no unlabelled data
# Run it after recipes/default_model.sh with the same WORK_DIR (it reuses that run's
# labels, built sets and stage 1 as "both").
# Usage: recipes/teacher_ablation.sh [SHARED_DATA_DIR] [WORK_DIR]
# About 3 h here on an idle 2-core machine (three trainings of ~40 min each one after
# another, labels ~20 min, four QAT runs ~5 min each, compare ~8 min).
# Every step resumes or is skipped when its output exists: rerun the same command after a stop.
set -euo pipefail
SHARED=$(cd "${1:-../shared/data}" && pwd)
WORK=${2:-runs/default_model}
CONFIG=mobile_seg/configs/person_192.json
MP=$SHARED/models/selfie_segmentation.tflite
RVM=${RVM:-$SHARED/models/rvm_teacher_256x256.tflite}
L=$WORK/labels B=$WORK/built_soft V=$WORK/built_val A=$WORK/ablation
IMAGENET=$SHARED/weights/mobilenet_v2_1.0_224_imagenet.npz
[ -f "$WORK/train/checkpoints/checkpoint" ] || {
  echo "teacher_ablation: run recipes/default_model.sh with WORK_DIR $WORK first (its stage 1 is 'both')" >&2
  exit 2; }
mkdir -p "$A"
start=$(date +%s)

# 1. The labels the default recipe does not make: MediaPipe on the every-person sets, RVM 256
#    on the main-subject sets, the unlabeled selfies and the ASL clips.
mobile-seg label "$MP" "$SHARED/coco_person" --out "$L/coco_person_mp" --flip --quiet
mobile-seg label "$MP" "$SHARED/scenes_unlabeled" --out "$L/scenes_mp" \
  --boxes "$SHARED/scenes_unlabeled/boxes.json" --quiet
mobile-seg label "$MP" "$SHARED/videos/one-by-one-person-detection.mp4" --out "$L/video_street_mp" \
  --every 6 --quiet
for d in portraits fashion_person selfies selfies_unlabeled; do
  mobile-seg label "$RVM" "$SHARED/$d" --out "$L/${d}_rvm256" --flip --quiet
done
for v in asl_again asl_book asl_sister asl_walk; do
  mobile-seg label "$RVM" "$SHARED/videos/$v.mkv" --out "$L/video_${v}_rvm256" --every 8 --flip --quiet
done
for d in coco_person_mp scenes_mp video_street_mp portraits_rvm256 fashion_person_rvm256 selfies_rvm256 \
         selfies_unlabeled_rvm256 video_asl_again_rvm256 video_asl_book_rvm256 video_asl_sister_rvm256 \
         video_asl_walk_rvm256; do
  flags=(); [ "$d" = selfies_rvm256 ] && flags=(--binary)   # selfies masks are 0/255
  [ -f "$B/$d/descriptor.json" ] || mobile-seg data build "$L/$d" --out "$B/$d" "${flags[@]}"
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
           --data "$V/coco_person" --data-weights 0.14,0.08,0.12,0.14,0.08)   # $CONFIG's weights of these five

# 3. Train (stage 1's budget), QAT and export each; "both" is the default recipe's stage 1.
run() {  # name, train dir, data args...
  local name=$1 train=$2; shift 2
  [ "$name" = both ] || mobile-seg train --config "$CONFIG" "$@" --init-weights "$IMAGENET" --out "$train"
  mobile-seg qat --run "$train" "$@" --steps 500 --out "$A/$name/qat"
  [ -f "$A/$name/export/qat-int8.tflite" ] || mobile-seg export --qat "$A/$name/qat" --variant qat-int8 \
    --output logits --out "$A/$name/export" --no-report
}
run both "$WORK/train" "${BOTH_DATA[@]}"
run mp "$A/mp/train" "${MP_DATA[@]}"
run rvm "$A/rvm/train" "${RVM_DATA[@]}"
run none "$A/none/train" "${NONE_DATA[@]}"

# 4. One compare run: MediaPipe first, then both / mp / rvm / none.
mobile-seg compare "$MP" "$A/both/export/qat-int8.tflite" "$A/mp/export/qat-int8.tflite" \
  "$A/rvm/export/qat-int8.tflite" "$A/none/export/qat-int8.tflite" \
  --data "$V/portraits" --data "$V/coco_person" --data "$V/fashion_person" --data "$V/selfies" \
  --video "$V/davis16_person" --video "$V/davis_parkour:all" --runs 200 \
  --csv "$A/compare.csv" --quiet --json | tee "$A/compare.txt"
echo "ablation wall time (this call): $(( $(date +%s) - start )) s" | tee -a "$A/wall_time.txt"
