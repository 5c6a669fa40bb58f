"""The device record every bench result carries, and what benchmark_model's delegate lines say.

A latency figure means little without the machine it came from: SoC / CPU, OS and runtime
versions, the accelerator that actually ran the graph (not the one asked for), the ops that
fell back to the CPU, and the cores the run was pinned to (`taskset`, as TFLite's
benchmark_model docs recommend on big.LITTLE phones).
"""
from __future__ import annotations

import contextlib
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from typing import Iterator

from mobile_seg.errors import ConfigError

# What `adb shell getprop` is asked for, record field -> properties tried in order.
ANDROID_PROPS = {
    "model": ("ro.product.model",),
    "manufacturer": ("ro.product.manufacturer",),
    "soc": ("ro.soc.model", "ro.board.platform", "ro.hardware"),
    "soc_manufacturer": ("ro.soc.manufacturer",),
    "abi": ("ro.product.cpu.abi",),
    "android": ("ro.build.version.release",),
    "sdk": ("ro.build.version.sdk",),
    "build": ("ro.build.fingerprint",),
}


@dataclass(frozen=True)
class DelegateReport:
    """What the runtime's log says about the delegate it applied.

    `delegated`/`total` nodes and `partitions` come from "Replacing N out of M node(s) with
    delegate (NAME) node, yielding P partitions"; `cpu_ops` are the ops the delegate
    listed as unsupported ("Following operations are not supported by GPU delegate:"),
    `cpu_nodes` the count from "N operations will run on the GPU, and the remaining M
    operations will run on the CPU".
    """

    delegate: str | None = None
    delegated: int | None = None
    total: int | None = None
    partitions: int | None = None
    cpu_nodes: int | None = None
    cpu_ops: tuple[str, ...] = ()
    fully_delegated: bool | None = None
    lines: tuple[str, ...] = ()

    @property
    def fell_back(self) -> bool:
        """Some of the graph ran on the CPU although a delegate was asked for."""
        return bool(self.cpu_ops) or bool(self.cpu_nodes) or self.fully_delegated is False

    def summary(self) -> str:
        if self.delegate is None and not self.lines:
            return "no delegate lines"
        parts = [self.delegate or "delegate"]
        if self.delegated is not None and self.total is not None:
            parts.append(f"{self.delegated}/{self.total} nodes, {self.partitions} partition(s)")
        if self.cpu_nodes:
            parts.append(f"{self.cpu_nodes} node(s) on the CPU")
        if self.cpu_ops:
            parts.append("fell back to the CPU: " + ", ".join(self.cpu_ops))
        elif self.fully_delegated:
            parts.append("whole graph delegated")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cpu_ops"], d["lines"] = list(self.cpu_ops), list(self.lines)
        return d


_PREFIX = re.compile(r"^.*?(?:INFO|WARNING|ERROR|VERBOSE): ")
_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]+)\) node, "
                        r"yielding (\d+) partitions")
_SPLIT = re.compile(r"(?:First )?(\d+) operations will run on the (\w+), and the remaining (\d+)"
                    r"(?: operations will run)? on the CPU")
_UNSUPPORTED_HEAD = re.compile(r"(?:Following|Next) operations are not supported by (\w+) delegate")
_CREATED = re.compile(r"Created TensorFlow Lite (?:(\w+) )?delegate for (\w+)")
_APPLIED = re.compile(r"(?:Explicitly )?[Aa]pplied (\w+) delegate(.*)")
_KERNELS = re.compile(r"partially executed by the delegate w/ (\d+) delegate kernels")
_NOT_APPLIED = re.compile(r"Though (\w+) delegate is explicitly applied, the model graph will not be executed")


def parse_delegate_lines(text: str) -> DelegateReport:
    """Read the delegate story out of benchmark_model / LiteRT log text (any prefix style)."""
    lines = [_PREFIX.sub("", ln).strip() for ln in text.splitlines()]
    delegate = delegated = total = partitions = cpu_nodes = None
    fully = None
    cpu_ops: list[str] = []
    kept: list[str] = []
    in_list = False
    for ln in lines:
        if not ln:
            in_list = False
            continue
        if m := _UNSUPPORTED_HEAD.search(ln):
            delegate = delegate or f"{m.group(1)} delegate"
            in_list = True
            kept.append(ln)
            continue
        if m := _SPLIT.search(ln):
            cpu_nodes = int(m.group(3))
            delegate = delegate or f"{m.group(2)} delegate"
            in_list = False
            kept.append(ln)
            continue
        if in_list:
            if ":" in ln and not ln.startswith(("Created", "Replacing", "Explicitly")):
                op = ln.split(":", 1)[0].strip()
                if op and op not in cpu_ops:
                    cpu_ops.append(op)
                kept.append(ln)
                continue
            in_list = False
        if m := _REPLACING.search(ln):
            delegated, total, partitions = int(m.group(1)), int(m.group(2)), int(m.group(4))
            delegate = m.group(3)
            kept.append(ln)
        elif m := _NOT_APPLIED.search(ln):
            delegate = delegate or f"{m.group(1)} delegate"
            fully, delegated = False, 0
            kept.append(ln)
        elif m := _APPLIED.search(ln):
            delegate = delegate or f"{m.group(1)} delegate"
            rest = m.group(2).lower()
            if "completely executed" in rest:
                fully = True
            elif "partially" in rest or "not completely" in rest:
                fully = False
                if (k := _KERNELS.search(ln)) and partitions is None:
                    partitions = int(k.group(1))
            kept.append(ln)
        elif m := _CREATED.search(ln):
            name = m.group(1) or m.group(2)
            delegate = delegate or f"{name} delegate"
            kept.append(ln)
        elif ("delegate" in ln.lower() and ("fail" in ln.lower() or "fall" in ln.lower())) or \
                "Disallowed CPU fallback" in ln:
            fully = False if "Disallowed CPU fallback" in ln else fully
            kept.append(ln)
    if fully is None and delegated is not None and total is not None:
        fully = delegated == total and partitions == 1
    if cpu_ops or cpu_nodes:
        fully = False
    return DelegateReport(delegate=delegate, delegated=delegated, total=total, partitions=partitions,
                          cpu_nodes=cpu_nodes, cpu_ops=tuple(cpu_ops), fully_delegated=fully,
                          lines=tuple(dict.fromkeys(kept)))


# --- cores -------------------------------------------------------------------------------

def parse_cores(spec: str | None) -> tuple[int, ...]:
    """'4-7' / '0,2' / '0-1,6' -> sorted core indices; None or '' -> ()."""
    if not spec:
        return ()
    cores: set[int] = set()
    try:
        for part in str(spec).split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a:
                    raise ValueError
                cores.update(range(a, b + 1))
            elif part:
                cores.add(int(part))
    except ValueError:
        raise ConfigError(f"--cores: expected core numbers like 4-7 or 0,2, got {spec!r}") from None
    if not cores or min(cores) < 0:
        raise ConfigError(f"--cores: expected core numbers like 4-7 or 0,2, got {spec!r}")
    return tuple(sorted(cores))


def cpu_mask(cores: tuple[int, ...]) -> str:
    """The hex mask `taskset` takes: (4, 5, 6, 7) -> 'f0'."""
    return format(sum(1 << c for c in cores), "x")


@contextlib.contextmanager
def pinned(cores: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Pin this process to `cores` for the block (yield the affinity in force); the previous
    affinity is restored afterwards, also after an error."""
    before = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
    try:
        yield pin_host(cores)
    finally:
        if cores and before:
            os.sched_setaffinity(0, before)


def pin_host(cores: tuple[int, ...]) -> tuple[int, ...]:
    """Pin this process to `cores` (Linux); return the affinity now in force."""
    if not hasattr(os, "sched_setaffinity"):
        if cores:
            raise ConfigError("--cores: this OS cannot pin a process to cores")
        return ()
    if cores:
        have = os.cpu_count() or 1
        bad = [c for c in cores if c >= have]
        if bad:
            raise ConfigError(f"--cores: this machine has cores 0-{have - 1}, not {bad[0]}")
        os.sched_setaffinity(0, cores)
    return tuple(sorted(os.sched_getaffinity(0)))


# --- records ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceRecord:
    """Where a result was measured. Unknown fields are None, never guessed."""

    kind: str                                   # "host" or "android"
    model: str | None
    soc: str | None
    os: str | None
    runtime: str
    accelerator: str                            # what ran the graph, e.g. "cpu (XNNPACK)"
    cores: tuple[int, ...]                      # affinity of the timed process / taskset mask
    pinned: bool                                # True when --cores pinned them
    fallback: dict = field(default_factory=dict)  # model name -> DelegateReport.to_dict()
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cores"] = list(self.cores)
        return d

    def line(self) -> str:
        cores = ",".join(map(str, self.cores)) if self.cores else "?"
        pin = f"pinned to cores {cores}" if self.pinned else f"cores {cores} (not pinned)"
        return (f"device: {self.model or '?'}; SoC/CPU {self.soc or '?'}; {self.os or '?'}; {self.runtime}; "
                f"accelerator {self.accelerator}; {pin}")


def host_environment() -> dict:
    """CPU, core count, load average and library versions: what a latency figure depends on."""
    env = {"platform": platform.platform(), "machine": platform.machine(), "cpu": platform.processor(),
           "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        from importlib.metadata import version
        env["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # noqa: BLE001  (a version string is a nicety)
        pass
    return env


def host_record(xnnpack: bool, cores: tuple[int, ...], pinned: bool) -> DeviceRecord:
    """This machine: CPU model, OS, ai-edge-litert version, the CPU path used."""
    env = host_environment()
    return DeviceRecord(kind="host", model=platform.node() or None, soc=env.get("cpu"),
                        os=f"{platform.system()} {platform.release()}",
                        runtime=f"ai-edge-litert {env.get('ai_edge_litert', '?')}",
                        accelerator="cpu (XNNPACK)" if xnnpack else "cpu (reference kernels)",
                        cores=cores, pinned=pinned, extra={"cpu_count": env.get("cpu_count")})


def android_record(props: dict, runtime: str, accelerator: str, cores: tuple[int, ...],
                   fallback: dict) -> DeviceRecord:
    """A phone, from its getprop answers and benchmark_model's delegate lines."""
    model = " ".join(x for x in (props.get("manufacturer"), props.get("model")) if x) or None
    soc = " ".join(x for x in (props.get("soc_manufacturer"), props.get("soc")) if x) or None
    os_ = f"Android {props['android']} (SDK {props.get('sdk') or '?'})" if props.get("android") else None
    return DeviceRecord(kind="android", model=model, soc=soc, os=os_, runtime=runtime, accelerator=accelerator,
                        cores=cores, pinned=bool(cores), fallback=fallback,
                        extra={k: v for k, v in props.items() if v})
