"""A dataset's classes: their names (flag or names file) and their count (names, map or masks).

Where `data check` / `data build` take them from, first that applies:

- count: `--num-classes`; the number of class names; 2 with `--binary`; the colour map's
  classes (`--colour-map voc`: the 21 VOC classes); else the masks (`infer_num_classes`).
- names: `--class-names A,B,...`; a names file in the DATASET folder (`labels.txt`: one
  name a line; `labelmap.txt`: CVAT/Datumaro VOC lines `name:r,g,b::`); else
  `palette.default_class_names`. Names must agree with `--num-classes` when both are given.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from mobile_seg.data.palette import VOC_CLASSES
from mobile_seg.errors import ConfigError, DatasetError

NAMES_FILES = ("labels.txt", "labelmap.txt")   # looked for in the DATASET folder
MAX_CLASSES = 255                              # class indices are uint8 below the ignore label
LABELME_IGNORE = "__ignore__"                  # labelme's labels.txt: its first line is the ignore label
_LABELMAP_LINE = re.compile(r"^[^:]*:\s*(\d+\s*,\s*\d+\s*,\s*\d+)?\s*(:|$)")


def parse_class_names(value: str | Sequence[str]) -> list[str]:
    """Names of `--class-names` (comma-separated, index 0 first); raises ConfigError."""
    names = value.split(",") if isinstance(value, str) else list(value)
    return _validated([n.strip() for n in names], "class name", None)


def read_labels_txt(path: str | os.PathLike) -> list[str]:
    """Names of a labels.txt: one a line, blank lines ignored (labelme's leading
    `__ignore__` line, the ignore label, is skipped); raises DatasetError."""
    lines = [(i, line.strip()) for i, line in enumerate(_read_text(path).splitlines(), 1)]
    lines = [(i, name) for i, name in lines if name]
    if lines and lines[0][1] == LABELME_IGNORE:
        lines = lines[1:]
    for i, name in lines:
        if _LABELMAP_LINE.match(name):
            raise DatasetError(f"line {i} {name!r} is a labelmap line (name:r,g,b::), not a name: "
                               "name the file labelmap.txt", path)
    return _validated([name for _, name in lines], "class name", path, [i for i, _ in lines])


def read_labelmap(path: str | os.PathLike) -> list[str]:
    """Names of a CVAT/Datumaro VOC labelmap.txt, in file order: lines `name:r,g,b:parts:actions`
    (colour, parts and actions may be empty), `#` comments; raises DatasetError."""
    names, numbers = [], []
    for i, raw in enumerate(_read_text(path).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if not 2 <= len(fields) <= 4:
            raise DatasetError(f"line {i} {line!r} is not name:r,g,b::", path)
        colour = fields[1].strip()
        if colour and not _is_rgb(colour):
            raise DatasetError(f"line {i}: colour {colour!r} of {fields[0].strip()!r} is not r,g,b "
                               "(three numbers 0..255)", path)
        names.append(fields[0].strip())
        numbers.append(i)
    return _validated(names, "class name", path, numbers)


def read_names_file(root: str | os.PathLike) -> tuple[list[str], Path] | None:
    """(names, file) from labels.txt or labelmap.txt in `root`, or None when it has neither.

    Both present must list the same names (DatasetError otherwise).
    """
    found = [(p, (read_labelmap if p.name == "labelmap.txt" else read_labels_txt)(p))
             for p in (Path(root) / n for n in NAMES_FILES) if p.is_file()]
    if len(found) == 2 and found[0][1] != found[1][1]:
        raise DatasetError(f"{found[0][0].name} and {found[1][0].name} list different class names; "
                           "keep one (or pass --class-names)", root)
    return (found[0][1], found[0][0]) if found else None


def colour_map_num_classes(spec: str | os.PathLike, mapping: dict[tuple[int, int, int], int],
                           ignore_label: int) -> int:
    """Classes of a colour map: 21 for `voc`, else its largest index (not the ignore label) + 1, at least 2."""
    if str(spec).lower() == "voc":
        return len(VOC_CLASSES)
    return max(max((i for i in mapping.values() if i != ignore_label), default=1) + 1, 2)


def infer_num_classes(values: Iterable[int], ignore_label: int) -> int:
    """Class count from the label values seen in the masks: 1 + the largest of an unbroken
    run 0, 1, 2, ... (the ignore label excluded), at least 2.

    A value past a gap (0, 1 and 7, but no 2) is taken as a stray label, not as class 7:
    the check then flags the masks holding it.
    """
    seen = set(values) - {ignore_label}
    n = 0
    while n in seen and n < min(ignore_label, MAX_CLASSES):
        n += 1
    return max(n, 2)


def _validated(names: list[str], what: str, path: str | os.PathLike | None,
               lines: list[int] | None = None) -> list[str]:
    """`names` unless one is empty, one is repeated, or there are none or too many."""
    error = ConfigError if path is None else DatasetError
    flag = "--class-names: " if path is None else ""
    where = (lambda k: f"line {lines[k]}") if lines else (lambda k: f"name {k + 1}")
    if not names or names == [""]:
        raise error(f"{flag}lists no class names", path)
    if len(names) > MAX_CLASSES:
        raise error(f"{flag}{len(names)} class names; at most {MAX_CLASSES}", path)
    first: dict[str, int] = {}
    for k, name in enumerate(names):
        if not name:
            raise error(f"{flag}{where(k)} is empty" + (" (two commas in a row?)" if path is None else ""), path)
        if name in first:
            raise error(f"{flag}{what} {name!r} is listed twice ({where(first[name])} and {where(k)})", path)
        first[name] = k
    return names


def _read_text(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError("not a UTF-8 text file of class names", path) from None


def _is_rgb(text: str) -> bool:
    parts = text.split(",")
    return len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts)
