"""Install a model's figures from one `mobile-seg compare --json` run: models.json and the
file's own metadata.

Usage: python recipes/write_manifest.py COMPARE_OUTPUT NAME FILE MODEL BASELINE "DESCRIPTION" [KEY=VALUE ...]
COMPARE_OUTPUT holds `compare --json` output (its last line is the JSON); MODEL and BASELINE
are the names compare gave the two models; FILE is the installed file in
mobile_seg/assets/models, whose metadata gets the per-split metrics.
"""
import json
import sys
from pathlib import Path

from converters.metadata import restamp
from mobile_seg.io_utils import write_json_atomic
from mobile_seg.shipped import MANIFEST_NAME, MODELS_DIR, manifest_entry, read_manifest


def main(argv):
    compare_out, name, file, model, baseline, description, *pairs = argv
    compare = json.loads(Path(compare_out).read_text().strip().splitlines()[-1])
    extra = dict(p.split("=", 1) for p in pairs)
    entry = manifest_entry(name, file, description, compare, model, baseline, **extra)
    metrics = {split: {"person_iou": iou, "mean_image_iou": entry["mean_image_iou"].get(split)}
               for split, iou in entry["person_iou"].items()}
    restamp(MODELS_DIR / file, metrics={k: {m: v for m, v in d.items() if v is not None}
                                        for k, d in metrics.items()})
    entries = [e for e in read_manifest() if e.get("name") != name] + [entry]
    write_json_atomic(MODELS_DIR / MANIFEST_NAME, {"models": entries})
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
