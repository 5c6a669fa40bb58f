"""Write mobile_seg/assets/models/models.json from the recipe's eval and bench JSON files.

Usage: python recipes/write_manifest.py WORK_DIR NAME FILE BASELINE_FILE "DESCRIPTION" [KEY=VALUE ...]
WORK_DIR holds eval_<split>.json / baseline_<split>.json (last line of `eval --json`) and
bench.json (last line of `bench --json`, a run that measured FILE and BASELINE_FILE).
"""
import json
import sys
from pathlib import Path

from mobile_seg.io_utils import write_json_atomic
from mobile_seg.models import MANIFEST_NAME, MODELS_DIR, manifest_entry, read_manifest


def last_json(path: Path) -> dict:
    return json.loads(path.read_text().strip().splitlines()[-1])


def main(argv):
    work, name, file, baseline_file, description, *pairs = argv
    work = Path(work)
    evals = [last_json(p) for p in sorted(work.glob("eval_*.json"))]
    baseline = [last_json(p) for p in sorted(work.glob("baseline_*.json"))]
    extra = dict(p.split("=", 1) for p in pairs)
    entry = manifest_entry(name, file, description, evals, baseline, last_json(work / "bench.json"),
                           baseline_file, **extra)
    entries = [e for e in read_manifest() if e.get("name") != name] + [entry]
    write_json_atomic(MODELS_DIR / MANIFEST_NAME, {"models": entries})
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
