"""`mobile-seg compare`: several .tflite models on several splits through one eval path,
one table — is a fine-tune better than the baseline, and by how much.

For every split, each image is decoded once and every model predicts its person mask
(`evaluate.predict_mask`: stretch to the input, probabilities resized back, argmax) at
the image's own resolution. Per model and split:

- dataset-level person IoU (pixel counts summed over the split), precision, recall;
- mean of per-image person IoU over the images whose ground truth has a person (the same
  images for every model, so means and paired differences agree); images without a
  person are scored apart: the share of them where the model marks any person pixel
  ("false alarms on empty images");
- the paired per-image IoU difference against the FIRST model, with a bootstrap 95 %
  confidence interval (images resampled with replacement, fixed seed);
- on frame-ordered splits (`--video`), flicker: the mean fraction of pixels whose label
  changes between consecutive frames of one sequence (ids `<sequence>_<frame>`), and
  the ground truth's own flicker for reference;
- by the person's share of the frame (truth person pixels / scored pixels: small < 5 %,
  medium 5–20 %, large ≥ 20 %), the mean per-image IoU and paired difference of each
  group: where a model wins and loses (a small person and a close-up fail differently);

and one interleaved `bench` run (`mobile_seg.bench.harness`) gives each model's latency
and its ratio to the first model's.
"""
from __future__ import annotations

import csv
import functools
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobile_seg.errors import ConfigError, DatasetError
from mobile_seg.io_utils import atomic_path

BOOTSTRAP_SAMPLES = 2000
PERSON = 1
# person share of the frame: (group, label, low, high)
SIZE_GROUPS = (("small", "< 5 %", 0.0, 0.05), ("medium", "5–20 %", 0.05, 0.20), ("large", "≥ 20 %", 0.20, 1.01))


@dataclass(frozen=True)
class SplitSpec:
    """A built dataset's split; `video` marks it frame-ordered (flicker is measured)."""

    data: Path
    split: str = "val"
    video: bool = False

    @functools.cached_property
    def name(self) -> str:
        """'<dataset name>/<split>' (the descriptor is read once, not per use)."""
        return f"{_dataset_name(self.data)}/{self.split}"


def parse_split(spec: str, video: bool = False) -> SplitSpec:
    """'DIR' or 'DIR:SPLIT' (default split val)."""
    path, _, split = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    return SplitSpec(Path(path or spec), split or "val", video)


def _dataset_name(data: Path) -> str:
    from mobile_seg.data.pipeline import read_descriptor
    try:
        return str(read_descriptor(data).get("name") or data.name)
    except DatasetError:
        return data.name


@dataclass
class ModelSplitScore:
    """One model on one split: pixel counts and per-image IoU."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    ious: list[float] = field(default_factory=list)     # NaN where the truth has no person
    changes: list[float] = field(default_factory=list)  # flicker terms (video splits)
    empty_alarms: list[bool] = field(default_factory=list)  # images without a person: marked one?

    @property
    def iou(self) -> float:
        return _div(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        return _div(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _div(self.tp, self.tp + self.fn)

    @property
    def mean_iou(self) -> float:
        v = np.asarray(self.ious, float)
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    @property
    def empty_false_alarm(self) -> float | None:
        return float(np.mean(self.empty_alarms)) if self.empty_alarms else None

    @property
    def flicker(self) -> float | None:
        return float(np.mean(self.changes)) if self.changes else None


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def person_counts(pred: np.ndarray, truth: np.ndarray, ignore: int = 255) -> tuple[int, int, int]:
    """(true positive, false positive, false negative) person pixels; `ignore` left out."""
    valid = truth != ignore
    p = (pred == PERSON) & valid
    t = (truth == PERSON) & valid
    tp = int(np.count_nonzero(p & t))
    return tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(t)) - tp


def paired_difference(a: list[float], b: list[float], samples: int = BOOTSTRAP_SAMPLES,
                      seed: int = 0) -> tuple[float, float, float, int]:
    """Mean of b − a over images where both are defined, with a bootstrap 95 % CI: (mean,
    low, high, n)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = b[ok] - a[ok]
    if d.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(samples, d.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(low), float(high), int(d.size)


def sequence_of(image_id: str) -> str:
    """'lucia_00012' → 'lucia': frames of one sequence share the part before the number."""
    return re.sub(r"[_-]?\d+$", "", image_id)


@dataclass
class CompareResult:
    models: list[str]
    names: list[str]
    splits: list[SplitSpec]
    scores: dict            # (model index, split name) -> ModelSplitScore
    truth_flicker: dict     # split name -> ground-truth flicker (video splits)
    images: dict            # split name -> number of images
    rows: list              # per-image rows for the CSV
    bench: object | None    # BenchResult or None
    seconds: float

    def person_shares(self, split: str) -> np.ndarray:
        """Each image's truth person pixels / scored pixels, in split order (from the rows)."""
        return np.array([_div(r["truth_pixels"], r["scored_pixels"]) if r["scored_pixels"] else 0.0
                         for r in self.rows if r["split"] == split and r["model"] == self.names[0]])

    def by_size(self, split: str) -> list[dict]:
        """Per SIZE_GROUPS group with at least one image: {group, share, images, models: {name:
        {mean_image_iou, paired_diff: (mean, low, high, n) or None for the first model}}}."""
        share = self.person_shares(split)
        out = []
        for group, label, low, high in SIZE_GROUPS:
            pick = (share > 0) & (share >= low) & (share < high)
            if not pick.any():
                continue
            base = np.asarray(self.scores[0, split].ious, float)[pick]
            models = {}
            for i, name in enumerate(self.names):
                ious = np.asarray(self.scores[i, split].ious, float)[pick]
                models[name] = {"mean_image_iou": float(np.nanmean(ious)),
                                "paired_diff": paired_difference(base, ious) if i else None}
            out.append({"group": group, "share": label,
                        "images": int(pick.sum()), "models": models})
        return out

    def to_dict(self) -> dict:
        out = {"models": [{"name": n, "path": str(p)} for n, p in zip(self.names, self.models)],
               "splits": {}, "seconds": round(self.seconds, 1)}
        for s in self.splits:
            entry = {"images": self.images[s.name], "video": s.video, "models": {}}
            entry["by_person_share"] = [dict(g, models={n: _size_entry(m) for n, m in g["models"].items()})
                                        for g in self.by_size(s.name)]
            if s.video:
                entry["truth_flicker"] = _r(self.truth_flicker.get(s.name))
            base = self.scores[0, s.name]
            for i, name in enumerate(self.names):
                sc = self.scores[i, s.name]
                d = {"person_iou": _r(sc.iou), "mean_image_iou": _r(sc.mean_iou),
                     "precision": _r(sc.precision), "recall": _r(sc.recall), "flicker": _r(sc.flicker, 5),
                     "empty_images": len(sc.empty_alarms), "empty_false_alarm": _r(sc.empty_false_alarm)}
                if i > 0:
                    mean, low, high, n = paired_difference(base.ious, sc.ious)
                    d["paired_diff"] = {"mean": _r(mean), "ci95": [_r(low), _r(high)], "images": n}
                entry["models"][name] = d
            out["splits"][s.name] = entry
        if self.bench is not None:
            out["latency"] = {m.info.name: {"median_ms": _r(m.measurements[0].latency.median_ms, 3),
                                            "ratio": _r(m.measurements[0].ratio, 3)}
                              for m in self.bench.models}
            out["bench_environment"] = {k: self.bench.environment.get(k)
                                        for k in ("load_avg_before", "load_avg_after")}
        return out

    def format(self, by_size: bool = False) -> str:
        """The tables; `by_size` adds one per split by the person's share of the frame."""
        from mobile_seg.bench.results import pipe_table
        lines = []
        for s in self.splits:
            base = self.scores[0, s.name]
            rows = []
            for i, name in enumerate(self.names):
                sc = self.scores[i, s.name]
                if i == 0:
                    diff = "(reference)"
                else:
                    mean, low, high, _ = paired_difference(base.ious, sc.ious)
                    diff = f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"
                row = [name, _f(sc.iou), _f(sc.mean_iou), diff, _f(sc.precision), _f(sc.recall)]
                if base.empty_alarms:
                    row.append(f"{sum(sc.empty_alarms)}/{len(sc.empty_alarms)}")
                if s.video:
                    row.append(_f(sc.flicker, 4))
                rows.append(row)
            head = ["model", "IoU", "mean img IoU", "paired diff [95% CI]", "precision", "recall"]
            if base.empty_alarms:
                head.append("alarms on empty images")
            if s.video:
                head.append(f"flicker (truth {self.truth_flicker.get(s.name, float('nan')):.4f})")
            lines.append(f"{s.name}: {self.images[s.name]} images")
            lines.append(pipe_table(head, rows, set(range(1, len(head)))))
            lines.append("")
            if by_size:
                lines += self._size_table(s.name) + [""]
        if self.bench is not None:
            rows = [[m.info.name, f"{m.measurements[0].latency.median_ms:.2f}",
                     f"{m.measurements[0].ratio:.2f}x"] for m in self.bench.models]
            t = self.bench.threads[0]
            lines.append(f"latency, {t} thread(s), one interleaved run of {self.bench.settings['runs']} rounds:")
            lines.append(pipe_table(["model", "median ms", "vs first"], rows, {1, 2}))
        return "\n".join(lines).rstrip()

    def _size_table(self, split: str) -> list[str]:
        from mobile_seg.bench.results import pipe_table
        groups = self.by_size(split)
        head = ["model"] + [f"{g['group']} {g['share']} ({g['images']})" for g in groups]
        rows = []
        for name in self.names:
            row = [name]
            for g in groups:
                m = g["models"][name]
                d = m["paired_diff"]
                row.append(f"{m['mean_image_iou']:.3f}" + (f" {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" if d else ""))
            rows.append(row)
        return [f"{split} by the person's share of the frame (images): mean img IoU, paired diff",
                pipe_table(head, rows, set(range(1, len(head))))]


def _size_entry(m: dict) -> dict:
    out = {"mean_image_iou": _r(m["mean_image_iou"])}
    if m["paired_diff"]:
        mean, low, high, _ = m["paired_diff"]
        out["paired_diff"] = {"mean": _r(mean), "ci95": [_r(low), _r(high)]}
    return out


def _r(x, nd=4):
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else round(float(x), nd)


def _f(x, nd=3) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def resolve_model(spec: str) -> Path:
    """A .tflite path, or the name of a shipped model (`mobile-seg models`)."""
    path = Path(spec)
    if path.exists() or spec.endswith(".tflite") or os.sep in spec:
        return path
    from mobile_seg.shipped import model_path
    shipped = model_path(spec)
    if shipped is None:
        raise ConfigError(f"{spec}: neither a file nor a shipped model name (see `mobile-seg models`)")
    return shipped


def compare(models: list[str | os.PathLike], splits: list[SplitSpec], *, resize: str = "stretch",
            threads: int = 1, runs: int = 100, bench: bool = True, limit: int | None = None,
            progress: bool = True, stream=None) -> CompareResult:
    """Score every model on every split and bench them together (see the module doc)."""
    from mobile_seg.bench.harness import display_names
    from mobile_seg.data.pipeline import iterate_examples, read_descriptor
    from mobile_seg.evaluate import RESIZE_MODES, load_predictor, predict_mask
    if not models:
        raise ConfigError("compare: give at least one model")
    if not splits:
        raise ConfigError("compare: give at least one --data or --video split")
    if resize not in RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    start = time.perf_counter()
    paths = [resolve_model(str(m)) for m in models]
    predictors = [load_predictor(tflite=p, num_threads=threads) for p in paths]  # bad files fail here
    distinct = list(dict.fromkeys(str(p.resolve()) for p in paths))
    names = [Path(p).name for p in paths]
    if len({Path(p).name for p in distinct}) < len(distinct):  # different files, same name
        names = display_names(paths)
    names = _unique(names)
    descriptors = {}
    for s in splits:  # every split checked before the long part
        desc = descriptors[s] = read_descriptor(s.data)
        if s.split not in desc["splits"]:
            raise DatasetError(f"no split {s.split!r} (have: {', '.join(sorted(desc['splits']))})", s.data)
        if int(desc.get("num_classes", 2)) != 2:
            raise DatasetError(f"compare scores person segmentation: needs 2 classes, has "
                               f"{desc.get('num_classes')}", s.data)

    scores, truth_flicker, images, rows = {}, {}, {}, []
    stream = stream or sys.stderr
    for s in splits:
        ignore = int(descriptors[s].get("ignore_label", 255))
        total = int(descriptors[s]["splits"][s.split]["num_examples"])
        total = min(total, limit) if limit else total
        for i in range(len(paths)):
            scores[i, s.name] = ModelSplitScore()
        prev_pred, prev_truth, prev_seq, truth_changes = [None] * len(paths), None, None, []
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="img", desc=s.name, file=stream, dynamic_ncols=True,
                       mininterval=0.5 if stream.isatty() else 15.0)
        n = 0
        for image_id, image, truth in iterate_examples(s.data, s.split):
            seq = sequence_of(image_id)
            same_seq = s.video and prev_seq == seq and prev_truth is not None \
                and prev_truth.shape == truth.shape
            if same_seq:
                truth_changes.append(float(np.mean((truth == PERSON) != (prev_truth == PERSON))))
            valid = int(np.count_nonzero(truth != ignore))
            for i, predictor in enumerate(predictors):
                pred = predict_mask(predictor, image, resize)
                tp, fp, fn = person_counts(pred, truth, ignore)
                sc = scores[i, s.name]
                sc.tp, sc.fp, sc.fn = sc.tp + tp, sc.fp + fp, sc.fn + fn
                iou = _div(tp, tp + fp + fn) if tp + fn > 0 else float("nan")
                sc.ious.append(iou)
                if tp + fn == 0:
                    sc.empty_alarms.append(fp > 0)
                if same_seq:
                    sc.changes.append(float(np.mean((pred == PERSON) != (prev_pred[i] == PERSON))))
                prev_pred[i] = pred if s.video else None
                rows.append({"split": s.name, "id": image_id, "model": names[i], "iou": _r(iou),
                             "tp": tp, "fp": fp, "fn": fn, "truth_pixels": tp + fn, "scored_pixels": valid})
            prev_truth, prev_seq = truth, seq
            n += 1
            if bar is not None:
                bar.update(1)
            if limit and n >= limit:
                break
        if bar is not None:
            bar.close()
        if n == 0:
            raise DatasetError(f"split {s.split!r} yielded no examples", s.data)
        images[s.name] = n
        if s.video:
            truth_flicker[s.name] = float(np.mean(truth_changes)) if truth_changes else float("nan")

    result_bench = None
    if bench:
        from mobile_seg.bench.harness import run_bench
        del predictors  # free the interpreters before timing
        result_bench = run_bench(paths, threads=[threads], runs=runs, warmup=max(5, runs // 10),
                                 memory=False)
        for m, name in zip(result_bench.models, names):
            m.info.name = name
    return CompareResult([str(p) for p in paths], names, list(splits), scores, truth_flicker, images,
                         rows, result_bench, time.perf_counter() - start)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def write_csv(result: CompareResult, path: str | os.PathLike) -> None:
    """Per-image rows (split, id, model, IoU, tp, fp, fn, truth and scored pixels), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["split", "id", "model", "iou", "tp", "fp", "fn", "truth_pixels",
                                       "scored_pixels"])
        w.writeheader()
        w.writerows(result.rows)
