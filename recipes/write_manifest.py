"""Install a model's figures from one `mobile-seg compare --json` run: models.json and the
file's own metadata.

Usage: python recipes/write_manifest.py COMPARE_OUTPUT NAME FILE MODEL BASELINE "DESCRIPTION" [KEY=VALUE ...]
COMPARE_OUTPUT holds `compare --json` output (its last line is the JSON); MODEL and BASELINE
are the names compare gave the two models; FILE is the installed file in
mobile_seg/assets/models, whose metadata gets the per-split metrics. An entry of the same NAME
is replaced where it stands (the first entry is the default the demo picks); a new one is appended.
"""
import json
import sys
from pathlib import Path

from mobile_seg.errors import ConfigError, ModelFileError, run_script

USAGE = ('usage: python recipes/write_manifest.py COMPARE_OUTPUT NAME FILE MODEL BASELINE "DESCRIPTION" '
         '[KEY=VALUE ...]')


def read_compare(path: str, model: str, baseline: str) -> dict:
    """The JSON last line of a `compare --json` output that measured both `model` and `baseline`."""
    text = Path(path).read_text()   # an unreadable file: run_script's one OSError line
    try:
        compare = json.loads(text.strip().splitlines()[-1])
        measured = {m["name"] for m in compare["models"]}
    except (IndexError, ValueError, KeyError, TypeError):
        raise ConfigError("its last line is not the JSON of `mobile-seg compare --json`", path) from None
    for who in (model, baseline):
        if who not in measured:
            raise ConfigError(f"compare did not measure {who!r} (it has {', '.join(sorted(measured))})", path)
    return compare


def main(argv):
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip())
        sys.exit(0)
    if len(argv) < 6 or any("=" not in p for p in argv[6:]):
        raise ConfigError(f"expected 6 arguments and KEY=VALUE pairs; {USAGE}")
    compare_out, name, file, model, baseline, description, *pairs = argv
    compare = read_compare(compare_out, model, baseline)
    from converters.metadata import restamp
    from mobile_seg.io_utils import write_json_atomic
    from mobile_seg.shipped import MANIFEST_NAME, MODELS_DIR, manifest_entry, read_manifest
    if not (MODELS_DIR / file).is_file():
        raise ModelFileError("no such model file (copy the .tflite there first)", MODELS_DIR / file)
    extra = dict(p.split("=", 1) for p in pairs)
    entry = manifest_entry(name, file, description, compare, model, baseline, **extra)
    metrics = {split: {"person_iou": iou, "mean_image_iou": entry["mean_image_iou"].get(split)}
               for split, iou in entry["person_iou"].items()}
    restamp(MODELS_DIR / file, metrics={k: {m: v for m, v in d.items() if v is not None}
                                        for k, d in metrics.items()})
    current = read_manifest()
    entries = [entry if e.get("name") == name else e for e in current]   # keeps its place
    if all(e.get("name") != name for e in current):
        entries.append(entry)
    write_json_atomic(MODELS_DIR / MANIFEST_NAME, {"models": entries})
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    run_script(main, sys.argv[1:])
