"""Check a segmentation dataset: every problem a record naming the file, plus summary stats.

Images are fully decoded (PIL `.load()`: a truncated JPEG fails there, as it would in
training); masks are read as `np.array(Image.open(p))`: palette PNG → indices, 'L' →
values, RGB → flagged unless `--colour-map` converts it (RGB with R=G=B is read as grey).
Without --num-classes, the class count comes from the class names, --binary, the colour map
or the masks themselves (see `mobile_seg.data.classes`).
"""
from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from mobile_seg.data import IGNORE_LABEL
from mobile_seg.data.classes import (colour_map_num_classes, infer_num_classes, parse_class_names,
                                     read_names_file)
from mobile_seg.data.palette import default_class_names, load_colour_map
from mobile_seg.data.voc import ALL_SPLIT, Source, discover
from mobile_seg.errors import ConfigError, DatasetError

_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
INFER_MAX_VALUES = 32   # a mask with more distinct labels is not used to infer the class count

ZERO_255_MESSAGE = (
    "mask holds only 0 and 255, and 255 is the ignore label: every person pixel would be "
    "ignored, so training learns nothing and predicts all background. If 255 means person, "
    "use --binary (maps 255 → 1) with `data check` and `data build`")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset. `id` is the pair it spoils (None: the dataset's layout)."""

    file: str
    kind: str
    message: str
    id: str | None = None


@dataclass(frozen=True)
class MaskOptions:
    """How masks are read (ignore label, RGB conversion, 0/255 → 0/1) and what their classes are."""

    num_classes: int | None = 2             # None: inferred from the masks by check_source
    ignore_label: int = IGNORE_LABEL
    colour_map: dict[tuple[int, int, int], int] | None = None
    binary: bool = False
    class_names: tuple[str, ...] | None = None  # None: palette.default_class_names
    classes_from: str = "--num-classes"     # where count and names come from (for the report)

    @property
    def names(self) -> list[str]:
        """The class names (given, else the defaults for the class count)."""
        return list(self.class_names) if self.class_names else default_class_names(self.num_classes)


@dataclass
class CheckReport:
    """What `data check` found: counts, sizes, class pixel counts and problems."""

    name: str
    source: str
    num_classes: int
    ignore_label: int
    class_names: list[str]
    splits: dict[str, int]                 # ids listed per split
    usable: dict[str, int]                 # of those, pairs without problems
    checked: int                           # distinct pairs decoded
    height_range: tuple[int, int] | None
    width_range: tuple[int, int] | None
    class_pixels: dict[int, int]
    problems: list[Problem] = field(default_factory=list)
    soft_labels: int = 0                   # listed ids with a SegmentationSoft/<id>.png
    classes_from: str = "--num-classes"    # where num_classes and class_names come from

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_ids(self) -> set[str]:
        return {p.id for p in self.problems if p.id is not None}

    def to_dict(self) -> dict:
        kinds = collections.Counter(p.kind for p in self.problems)
        return {
            "name": self.name, "source": self.source, "ok": self.ok,
            "num_classes": self.num_classes, "ignore_label": self.ignore_label,
            "class_names": self.class_names, "classes_from": self.classes_from,
            "splits": self.splits, "usable": self.usable,
            "checked": self.checked, "height_range": self.height_range,
            "width_range": self.width_range,
            "class_pixels": {str(k): v for k, v in sorted(self.class_pixels.items())},
            "soft_labels": self.soft_labels,
            "problem_count": len(self.problems), "problem_kinds": dict(kinds),
            "problems": [asdict(p) for p in self.problems],
        }


class BadFile(Exception):
    """What is wrong with one file (raised by the readers below, collected as a Problem)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def mask_options(num_classes: int | None = None, ignore_label: int = IGNORE_LABEL,
                 colour_map: str | os.PathLike | None = None, binary: bool = False,
                 class_names: str | Sequence[str] | None = None,
                 root: str | os.PathLike | None = None) -> MaskOptions:
    """Validate the flags shared by check and build; load the colour map; settle the classes.

    Names: `class_names` (comma-separated), else labels.txt/labelmap.txt in `root`. Count:
    `num_classes` (names must match it), else the names', 2 with `binary`, the colour map's;
    else None: check_source infers it from the masks.
    """
    if num_classes is not None and not 1 <= num_classes <= 255:
        raise ConfigError(f"--num-classes must be 1..255, got {num_classes}")
    if binary and num_classes not in (None, 2):
        raise ConfigError(f"--binary maps 255 → 1 for 2 classes; got --num-classes {num_classes}")
    names, source = None, "--num-classes"
    if class_names is not None:
        names, source = parse_class_names(class_names), "--class-names"
        if num_classes is not None and len(names) != num_classes:
            raise ConfigError(f"--class-names lists {len(names)} names but --num-classes is {num_classes}")
    cmap = None if colour_map is None else load_colour_map(colour_map)
    if names is None and root is not None and Path(root).is_dir():
        found = read_names_file(root)
        if found is not None:
            names, path = found
            source = path.name
            if num_classes is not None and len(names) != num_classes:
                raise DatasetError(f"lists {len(names)} class names but --num-classes is {num_classes}: "
                                   "fix the file, or pass --class-names", path)
    if num_classes is None:
        if names is not None:
            num_classes = len(names)
        elif binary:
            num_classes, source = 2, "--binary"
        elif cmap is not None:
            num_classes = colour_map_num_classes(colour_map, cmap, ignore_label)
            source = f"--colour-map {colour_map}"
        else:
            source = "the masks"
    if binary and num_classes != 2:
        raise ConfigError(f"--binary maps 255 → 1 for 2 classes; got {num_classes} class names from {source}")
    lowest = num_classes or 2
    if not 0 <= ignore_label <= 255 or ignore_label < lowest:
        given = "" if source in ("--num-classes", "the masks") else f" ({num_classes} classes from {source})"
        raise ConfigError(f"--ignore-label must be in {lowest}..255, got {ignore_label}{given}")
    return MaskOptions(num_classes, ignore_label, cmap, binary,
                       None if names is None else tuple(names), source)


def check_dataset(dataset: str | os.PathLike | None = None, *, images=None, masks=None,
                  num_classes: int | None = None, class_names: str | Sequence[str] | None = None,
                  ignore_label: int = IGNORE_LABEL, colour_map: str | os.PathLike | None = None,
                  binary: bool = False, workers: int | None = None) -> CheckReport:
    """Check a VOC folder (or --images/--masks dirs) and report what is wrong with it."""
    options = mask_options(num_classes, ignore_label, colour_map, binary, class_names, root=dataset)
    return check_source(discover(dataset, images, masks), options, workers=workers)


def check_source(source: Source, options: MaskOptions, *, workers: int | None = None) -> CheckReport:
    """Check every listed pair of `source` (decoding images and masks, in threads).

    With `options.num_classes` None, the class count is inferred from the masks that have no
    other problem (`infer_num_classes`; JPEG masks and masks with over INFER_MAX_VALUES
    labels are not used), then every mask's labels are checked against it.
    """
    problems = layout_problems(source)
    missing = {p.id for p in problems if p.kind in ("missing-id", "missing-mask")}
    ids = [i for i in source.listed_ids if i not in missing]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(
            lambda i: check_pair(i, source.images[i], source.masks[i], options, source.soft.get(i)), ids))
    if options.num_classes is None:
        options = _infer_classes(source, options, results)
    heights, widths, pixels = [], [], collections.Counter()
    for id_, size, counts, pair_problems in results:
        if size is not None:
            heights.append(size[0])
            widths.append(size[1])
        pixels.update(counts)
        problems.extend(pair_problems)
    bad = {p.id for p in problems if p.id is not None}
    return CheckReport(
        name=source.name, source=str(source.root or source.images_dir),
        num_classes=options.num_classes, ignore_label=options.ignore_label, class_names=options.names,
        splits={s: len(v) for s, v in source.splits.items()},
        usable={s: len({i for i in v if i not in bad}) for s, v in source.splits.items()},
        checked=len(ids),
        height_range=(min(heights), max(heights)) if heights else None,
        width_range=(min(widths), max(widths)) if widths else None,
        class_pixels=dict(pixels), problems=problems, soft_labels=sum(i in source.soft for i in ids),
        classes_from=options.classes_from)


def _infer_classes(source: Source, options: MaskOptions, results: list) -> MaskOptions:
    """`options` with the class count inferred from the pairs' label counts; adds a bad-label
    problem to each pair whose mask (without another problem) holds a value past that count."""
    mask_files = {id_: str(source.masks[id_]) for id_, *_ in results}
    clean = [(id_, counts, problems) for id_, _, counts, problems in results
             if counts and not any(p.file == mask_files[id_] for p in problems)]
    values = {v for id_, counts, _ in clean
              if source.masks[id_].suffix.lower() not in (".jpg", ".jpeg")
              and len(set(counts) - {options.ignore_label}) <= INFER_MAX_VALUES for v in counts}
    options = replace(options, num_classes=infer_num_classes(values, options.ignore_label))
    for id_, counts, problems in clean:
        try:
            label_range_problem(sorted(counts), source.masks[id_], options)
        except BadFile as e:
            problems.append(Problem(mask_files[id_], e.kind, e.message, id_))
    return options


def layout_problems(source: Source) -> list[Problem]:
    """Problems visible without decoding: split files, absent ids, missing or orphan masks."""
    problems: list[Problem] = []
    if source.split_dir is not None and not source.split_files:
        problems.append(Problem(str(source.split_dir), "missing-splits",
                                "no split files (expected e.g. train.txt and val.txt, one id a line); "
                                f"checking every image as split '{ALL_SPLIT}'"))
    reported: set[str] = set()
    for split, ids in source.splits.items():
        split_file = str(source.split_files.get(split, source.images_dir))
        if not ids:
            problems.append(Problem(split_file, "empty-split", "split file lists no ids"))
        for id_, n in collections.Counter(ids).items():
            if n > 1:
                problems.append(Problem(split_file, "duplicate-id", f"id '{id_}' is listed {n} times"))
        for id_ in dict.fromkeys(ids):
            if id_ in reported:
                continue
            if id_ not in source.images:
                reported.add(id_)
                problems.append(Problem(split_file, "missing-id",
                                        f"id '{id_}' is listed but {source.image_path(id_)} does not exist", id_))
            elif id_ not in source.masks:
                reported.add(id_)
                problems.append(Problem(str(source.mask_path(id_)), "missing-mask",
                                        f"missing mask for image {source.images[id_].name}", id_))
    listed = set(source.listed_ids)
    for id_, mask in source.masks.items():
        if id_ not in source.images and id_ not in listed:
            problems.append(Problem(str(mask), "mask-without-image",
                                    f"mask has no image {id_}.* in {source.images_dir}"))
    return problems


def check_pair(id_: str, image_path: Path, mask_path: Path, options: MaskOptions,
               soft_path: Path | None = None):
    """Decode one pair (and its soft label): (id, (h, w) or None, class pixel counts, problems)."""
    problems: list[Problem] = []
    size = None
    try:
        size = image_size(image_path)
    except BadFile as e:
        problems.append(Problem(str(image_path), e.kind, e.message, id_))
    counts: dict[int, int] = {}
    try:
        mask = read_mask(mask_path, options)
        counts = _value_counts(mask)
        try:
            label_problem(sorted(counts), mask_path, options)
        except BadFile as e:
            # With a soft label beside it, 0/255 is background + ignore (a teacher's hard
            # mask whose uncertain band holds all of its person pixels), not the 0/255 trap.
            if not (e.kind == "zero-255-mask" and soft_path is not None):
                raise
        if size is not None and mask.shape != size:
            raise BadFile("size-mismatch", f"mask is {_hw(mask.shape)} but its image "
                                        f"{image_path.name} is {_hw(size)} (h×w)")
    except BadFile as e:
        problems.append(Problem(str(mask_path), e.kind, e.message, id_))
    if soft_path is not None:
        try:
            check_soft(soft_path, size)
        except BadFile as e:
            problems.append(Problem(str(soft_path), e.kind, e.message, id_))
    return id_, size, counts, problems


def check_soft(path: Path, size: tuple[int, int] | None) -> None:
    """A soft label must be an 8-bit grey PNG of its image's size; raises BadFile if not."""
    try:
        with Image.open(path) as im:
            im.load()
            mode, (w, h) = im.mode, im.size
    except (OSError, ValueError) as e:
        raise BadFile("bad-soft-label", f"soft label does not decode ({e})") from None
    if mode != "L":
        raise BadFile("bad-soft-label", f"soft label is a {mode} image; expected 8-bit grey "
                                        "(person probability x 255)")
    if size is not None and (h, w) != size:
        raise BadFile("size-mismatch", f"soft label is {_hw((h, w))} but its image is {_hw(size)} (h×w)")


def image_size(path: Path) -> tuple[int, int]:
    """(h, w) of an image after a full decode; raises BadFile if it does not decode."""
    try:
        with Image.open(path) as im:
            im.load()  # Image.open only reads the header: a truncated JPEG fails here
            return im.size[1], im.size[0]
    except _PIL_ERRORS as e:
        raise BadFile("undecodable-image", f"image does not decode ({e})") from None


def read_mask(path: Path, options: MaskOptions) -> np.ndarray:
    """HxW class indices of a mask after colour-map and --binary conversion (values unchecked)."""
    try:
        with Image.open(path) as im:
            im.load()
            mode, arr = im.mode, np.array(im)
    except _PIL_ERRORS as e:
        raise BadFile("undecodable-mask", f"mask does not decode ({e})") from None
    if mode in ("RGB", "RGBA"):
        rgb = arr[..., :3]
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            arr = rgb[..., 0]  # grey saved as RGB: no colour to interpret
        elif options.colour_map is None:
            raise BadFile("rgb-mask", "mask is RGB colour, not class indices: convert it with "
                                   "--colour-map voc (VOC palette colours) or --colour-map FILE.json "
                                   "(index → [r,g,b]), or save single-channel PNGs of class indices")
        else:
            arr = apply_colour_map(rgb, options.colour_map)
    elif mode in ("LA", "PA"):
        arr = arr[..., 0]
    elif arr.ndim != 2 or mode in ("F", "CMYK", "YCbCr", "LAB", "HSV"):
        raise BadFile("unsupported-mask", f"mask mode {mode} is not an image of class indices")
    arr = arr.astype(np.uint8) if arr.dtype == bool else arr
    if options.binary:
        arr = np.where(arr == 255, 1, arr).astype(arr.dtype)
    return arr


def apply_colour_map(rgb: np.ndarray, colour_map: dict[tuple[int, int, int], int]) -> np.ndarray:
    """Class indices of an RGB mask; raises BadFile naming colours the map does not know."""
    keys = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    uniq, inverse = np.unique(keys, return_inverse=True)
    lut = np.empty(len(uniq), dtype=np.uint8)
    unknown = []
    for j, k in enumerate(uniq.tolist()):
        colour = (k >> 16, (k >> 8) & 255, k & 255)
        if colour in colour_map:
            lut[j] = colour_map[colour]
        else:
            unknown.append(colour)
    if unknown:
        shown = ", ".join(str(c) for c in unknown[:4]) + (f", … ({len(unknown)} colours)" if len(unknown) > 4 else "")
        raise BadFile("unknown-colour", f"mask colours not in the colour map: {shown}")
    return lut[inverse.reshape(keys.shape)]


def label_problem(values: list[int], mask_path: Path, options: MaskOptions) -> None:
    """Raise BadFile when the mask's values are not classes or the ignore label."""
    if not options.binary and 255 in values and set(values) <= {0, 255}:
        message = ZERO_255_MESSAGE if options.ignore_label == 255 else ZERO_255_MESSAGE.replace(
            "and 255 is the ignore label: every person pixel would be ignored",
            f"and 255 is neither a class nor the ignore label {options.ignore_label}: it would break training")
        raise BadFile("zero-255-mask", message)
    if options.num_classes is not None:  # else inferred later, from all the masks
        label_range_problem(values, mask_path, options)


def label_range_problem(values: list[int], mask_path: Path, options: MaskOptions) -> None:
    """Raise BadFile when a value is neither a class (0..num_classes-1) nor the ignore label."""
    bad = [v for v in values if not (0 <= v < options.num_classes or v == options.ignore_label)]
    if not bad:
        return
    shown = ", ".join(map(str, bad[:8])) + (f", … ({len(bad)} distinct)" if len(bad) > 8 else "")
    message = (f"label values {shown} outside 0..{options.num_classes - 1} "
               f"(and not the ignore label {options.ignore_label})")
    if mask_path.suffix.lower() in (".jpg", ".jpeg"):
        message += "; the mask is a JPEG, whose lossy compression smears labels: save masks as PNG"
    elif len(bad) > 8:
        message += "; looks like a soft (anti-aliased) mask: threshold it to class indices"
    elif options.classes_from == "the masks":
        message += (f"; no mask holds class {options.num_classes}, so {options.num_classes} classes were "
                    "inferred: if these values are classes, give --num-classes, --class-names or a labels.txt")
    raise BadFile("bad-label", message)


def format_report(report: CheckReport, limit: int = 20) -> str:
    """Human-readable summary: counts, sizes, class pixels, problems grouped by kind."""
    lines = [f"dataset:      {report.name} ({report.source})"]
    lines.append("splits:       " + (", ".join(
        f"{s} {n}" + (f" ({report.usable[s]} usable)" if report.usable[s] != n else "")
        for s, n in report.splits.items()) or "none"))
    lines.append(f"pairs:        {report.checked} decoded")
    if report.height_range:
        (h0, h1), (w0, w1) = report.height_range, report.width_range
        lines.append(f"image sizes:  h {h0}–{h1}, w {w0}–{w1}")
    lines.append(f"classes:      {format_classes(report)}")
    total = sum(report.class_pixels.values())
    if total:
        def name(v):
            if v == report.ignore_label:
                return "ignore"
            return report.class_names[v] if 0 <= v < len(report.class_names) else "?"
        lines.append("class pixels: " + ", ".join(
            f"{v} {name(v)} {100 * n / total:.1f}%" for v, n in sorted(report.class_pixels.items())))
        absent = [v for v in range(report.num_classes) if v not in report.class_pixels]
        if absent:
            lines.append("no pixels:    " + ", ".join(f"{v} {name(v)}" for v in absent))
    if report.soft_labels:
        lines.append(f"soft labels:  {report.soft_labels} of {report.checked} (SegmentationSoft/)")
    if report.ok:
        lines.append("problems:     none")
        return "\n".join(lines)
    lines.append(f"problems:     {len(report.problems)}" + (
        f" (grouped by kind, first files shown)" if len(report.problems) > limit else ""))
    lines.extend(_format_problems(report.problems, limit))
    n_255 = sum(p.kind == "zero-255-mask" for p in report.problems)
    if n_255:
        lines.append(f"{n_255} of {report.checked} masks are 0/255 binary masks: if 255 means "
                     "person, check and build with --binary")
    if any(report.usable.values()):
        lines.append(f"{len(report.problems)} problem(s): fix them and check again, or build with "
                     f"--skip-bad to leave the {len(report.bad_ids)} bad pair(s) out")
    else:
        lines.append(f"{len(report.problems)} problem(s), and no pair is usable as it stands")
    return "\n".join(lines)


def format_classes(report: CheckReport) -> str:
    """"3 (from labels.txt): background, cat, dog" (a hint to name classes shown as class_<i>)."""
    text = f"{report.num_classes} (from {report.classes_from}): {', '.join(report.class_names)}"
    if report.num_classes > 2 and report.class_names == default_class_names(report.num_classes) \
            and report.num_classes != 21:
        text += " (name them with --class-names or a labels.txt)"
    return text


def format_problems(problems: list[Problem], limit: int = 20) -> str:
    """Problems grouped by kind, at most `limit` lines of files, with totals."""
    return "\n".join(_format_problems(problems, limit))


def _format_problems(problems: list[Problem], limit: int) -> list[str]:
    groups: dict[str, list[Problem]] = {}
    for p in problems:
        groups.setdefault(p.kind, []).append(p)
    per_kind = max(3, limit // len(groups))
    lines = []
    for kind, group in groups.items():
        same = len({p.message for p in group}) == 1 and len(group) > 1
        shown = min(per_kind, 5) if same else per_kind  # one explanation: a few files suffice
        lines.append(f"  {kind} ({len(group)})" + (f": {group[0].message}" if same else ""))
        for p in group[:shown]:
            lines.append(f"    {p.file}" if same else f"    {p.file}: {p.message}")
        if len(group) > shown:
            lines.append(f"    … and {len(group) - shown} more")
    return lines


def _value_counts(arr: np.ndarray) -> dict[int, int]:
    if arr.dtype == np.uint8:
        n = np.bincount(arr.ravel(), minlength=256)
        return {v: int(n[v]) for v in np.flatnonzero(n).tolist()}
    values, n = np.unique(arr, return_counts=True)
    return dict(zip(values.tolist(), n.tolist()))


def _hw(shape) -> str:
    return f"{shape[0]}×{shape[1]}"
