"""Per-op latency: where a model spends its time, on this machine or on a phone.

Two sources, one result type (`OpProfile`):

- Phone: TFLite `benchmark_model --enable_op_profiling=true` prints an "Operator-wise
  Profiling Info for Regular Benchmark Runs" block: a `Run Order` table (one row per node:
  type, first ms, avg ms, %, cdf %, mem KB, times called, name) and a `Summary by node
  type` table. `parse_op_profile` reads the run-order rows.
- This machine: the ai-edge-litert wheel exposes no per-op profiler to Python (its
  `Interpreter` has none, and `benchmark_litert_model` reports whole-model times only). So
  `profile_host` times every op **in isolation**: each op of the main subgraph is cut out
  into a one-op model (its constant inputs kept, its live inputs made graph inputs with
  the same shapes, dtypes and quantisation), run with the same delegate and thread count
  as the whole model, and timed like the harness times a model (median of `invoke()`).
  Isolated ops miss in-graph effects (cache warmth from the previous op, XNNPACK's
  whole-graph planning), so `sum_ms / whole_ms` is reported beside every profile: near
  1.0 means the per-op times add up to the model.
"""
from __future__ import annotations

import csv
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from mobile_seg.io_utils import atomic_path


@dataclass(frozen=True)
class OpTime:
    """One node: its position in run order, op type, tensor name, average ms per call and
    calls per run (XNNPACK's profile folds identical operators into one row called N times)."""

    index: int
    op: str
    name: str
    avg_ms: float
    first_ms: float | None = None
    calls: int = 1

    @property
    def total_ms(self) -> float:
        return self.avg_ms * self.calls


@dataclass(frozen=True)
class OpProfile:
    """Per-op times of one model; `whole_ms` is the model's own median when measured."""

    model: str
    source: str                 # "isolated ops (ai-edge-litert)" or "benchmark_model op profiling"
    ops: tuple[OpTime, ...]
    whole_ms: float | None = None
    threads: int = 1
    accelerator: str = "cpu"
    whole_min_ms: float | None = None
    skipped: tuple[str, ...] = ()   # ops that could not be run alone (e.g. control flow)

    @property
    def sum_ms(self) -> float:
        return float(sum(o.total_ms for o in self.ops))

    def by_type(self) -> dict[str, dict]:
        """{op type: {"count", "ms", "pct"}} sorted by time, most expensive first."""
        total = self.sum_ms or 1.0
        acc: dict[str, list] = {}
        for o in self.ops:
            c = acc.setdefault(o.op, [0, 0.0])
            c[0] += o.calls
            c[1] += o.total_ms
        return {k: {"count": n, "ms": ms, "pct": 100.0 * ms / total}
                for k, (n, ms) in sorted(acc.items(), key=lambda kv: -kv[1][1])}

    def to_dict(self) -> dict:
        return {"model": self.model, "source": self.source, "threads": self.threads,
                "accelerator": self.accelerator, "whole_ms": self.whole_ms, "whole_min_ms": self.whole_min_ms,
                "sum_ms": self.sum_ms, "skipped": list(self.skipped),
                "by_type": self.by_type(), "ops": [asdict(o) for o in self.ops]}


# --- benchmark_model output --------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_IS_NUM = re.compile(rf"^{_NUM}%?$")
_NODE_NAME = re.compile(r"^\[(.*)\]:\d+$")
_CSV_ROW = re.compile(rf"^(?P<type>.+?), (?P<nums>(?:{_NUM}%?, ){{5,6}}{_NUM}), (?P<name>.*)$")


def _run_order_row(line: str) -> tuple[str, float, float, int, str] | None:
    """(type, first ms, avg ms, times called, name) of one run-order row, or None.

    Three layouts: the default one (each field a tab plus right-aligned padding), the same
    pasted with spaces, and `--profiling_output_csv_file`'s CSV (", "-separated; commas in
    node names were turned into tabs by TFLite). With or without the older `[start]` column.
    """
    body = line.strip(" \r\n")
    m = None if body.startswith("\t") else _CSV_ROW.match(body)
    if m:  # the type may hold ", " itself (XNNPACK's "Convolution (NHWC, QC8) GEMM"): numbers anchor it
        f = [m.group("type").strip()] + m.group("nums").split(", ") + [m.group("name").replace("\t", ",")]
    else:
        f = [x.strip() for x in re.split(r"\t|\s{2,}", body.strip()) if x.strip()]
    pct = next((i for i, x in enumerate(f[:6]) if x.endswith("%")), None)
    if pct not in (3, 4) or len(f) < pct + 5 or not all(_IS_NUM.match(x) for x in f[1:pct + 4]):
        return None
    first, avg, times = float(f[pct - 2]), float(f[pct - 1]), int(float(f[pct + 3]))
    name = ", ".join(f[pct + 4:])
    m = _NODE_NAME.match(name)
    return f[0], first, avg, times, (m.group(1) if m else name)


def parse_op_profile(text: str, model: str = "", threads: int = 1, accelerator: str = "cpu",
                     whole_ms: float | None = None) -> OpProfile | None:
    """The regular-run `Run Order` table of benchmark_model's op profiling, or None when the
    output has none. Rows of the warm-up ("Init" / "Warmup") blocks are skipped."""
    lines = [re.sub(r"^.*?(INFO|WARNING|ERROR): ", "", ln) for ln in text.splitlines()]
    start = next((i for i, ln in enumerate(lines) if "Profiling Info for Regular Benchmark Runs" in ln), None)
    if start is None:
        return None
    ops: list[OpTime] = []
    in_run_order = False
    for ln in lines[start + 1:]:
        if "Run Order" in ln:
            in_run_order = True
            continue
        if in_run_order and ("Top by" in ln or "Summary by node type" in ln or "Profiling Info for" in ln):
            break
        if not in_run_order:
            continue
        row = _run_order_row(ln)
        if row:
            op, first, avg, times, name = row
            ops.append(OpTime(index=len(ops), op=op, name=name, avg_ms=avg, first_ms=first, calls=times))
    if not ops:
        return None
    return OpProfile(model=model, source="benchmark_model op profiling", ops=tuple(ops), whole_ms=whole_ms,
                     threads=threads, accelerator=accelerator)


# --- this machine: every op in isolation -------------------------------------------------

def _op_name(model, op) -> str:
    from ai_edge_litert import schema_py_generated as schema
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(builtin, str(builtin))


def single_op_models(content: bytes) -> list[tuple[int, str, str, bytes]]:
    """(op index, op type, output tensor name, one-op .tflite bytes) for every op of subgraph 0
    that reads a live tensor.

    Ops whose inputs are all constants (fp16 weights' DEQUANTIZE) are folded by the runtime
    at init and cost nothing per run: they get no row, but each is copied in front of the op
    that reads its output, so the delegate sees the same static-weight pattern as in the graph.
    """
    import copy

    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.convert_bytearray_to_object(bytearray(content))
    graph = model.subgraphs[0]

    def is_const(t):
        b = model.buffers[graph.tensors[t].buffer]
        return b.data is not None and len(b.data) > 0

    producer = {int(t): op for op in graph.operators for t in op.outputs}
    weight_ops = {id(op) for op in graph.operators if all(is_const(t) for t in op.inputs if t >= 0)}
    out = []
    for k, op in enumerate(graph.operators):
        if id(op) in weight_ops:
            continue
        ins = [t for t in op.inputs if t >= 0]
        prelude = [producer[t] for t in ins if t in producer and id(producer[t]) in weight_ops]
        ops = prelude + [op]
        used = sorted({t for o in ops for t in o.inputs if t >= 0} | {int(t) for o in ops for t in o.outputs})
        remap = {t: i for i, t in enumerate(used)}
        tensors, buffers = [], [type(model.buffers[0])()]
        for t in used:
            tensor = copy.copy(graph.tensors[t])
            buffers.append(model.buffers[tensor.buffer] if is_const(t) else type(model.buffers[0])())
            tensor.buffer = len(buffers) - 1
            tensors.append(tensor)
        new_ops = []
        for o in ops:
            n = copy.copy(o)
            n.inputs = [remap[t] if t >= 0 else -1 for t in o.inputs]
            n.outputs = [remap[int(t)] for t in o.outputs]
            n.intermediates = None
            new_ops.append(n)
        made = {int(t) for o in prelude for t in o.outputs}
        sub = type(graph)()
        sub.tensors = tensors
        sub.operators = new_ops
        sub.inputs = [remap[t] for t in dict.fromkeys(ins) if not is_const(t) and t not in made]
        sub.outputs = [remap[int(t)] for t in op.outputs]
        sub.name = graph.name
        single = type(model)()
        single.version = model.version
        single.operatorCodes = model.operatorCodes
        single.subgraphs = [sub]
        single.buffers = buffers
        single.description = b"mobile-seg single-op profile"
        name = graph.tensors[int(op.outputs[0])].name
        name = name.decode() if isinstance(name, bytes) else str(name)
        out.append((k, _op_name(model, op), name, bytes(fbu.convert_object_to_bytearray(single))))
    return out


def profile_host(path: str | os.PathLike, name: str, threads: int = 1, xnnpack: bool = True,
                 runs: int = 30, warmup: int = 3, whole_ms: float | None = None, seed: int = 0,
                 progress: Callable[[str], None] | None = None, whole_min_ms: float | None = None) -> OpProfile:
    """Time every op of `path` in isolation (see the module doc); avg_ms is each op's median.

    Like the harness, the ops are interleaved: every one-op interpreter is built first, then
    each round runs every op, the first op rotating from round to round, so a burst of load
    from another job lands on all ops alike instead of on whichever op was being timed. In a
    round each op runs twice in a row and the second run is timed: in the graph an op reads
    the tensor the previous op has just written, so a cold-cache run (after 100+ other
    one-op interpreters) would overstate it.
    """
    from mobile_seg.tflite_model import _interpreter_class, random_tensor, read_model_bytes

    Interpreter, OpResolverType = _interpreter_class()
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    rng = np.random.default_rng(seed)
    singles = single_op_models(read_model_bytes(path))
    if progress:
        progress(f"bench: op profile of {name}: {len(singles)} ops x {runs} interleaved rounds")
    interpreters, first, kept, skipped = [], [], [], []
    for single in singles:
        k, op, tensor_name, content = single
        try:
            it = Interpreter(model_content=content, num_threads=threads, experimental_op_resolver_type=resolver)
            it.allocate_tensors()
            for d in it.get_input_details():
                scale, zero = d["quantization"]
                it.set_tensor(d["index"], random_tensor(tuple(int(s) for s in d["shape"]), d["dtype"],
                                                        (scale, zero), rng))
            start = time.perf_counter_ns()
            it.invoke()
        except (ValueError, RuntimeError):
            skipped.append(f"{op} {tensor_name}")
            continue
        first.append((time.perf_counter_ns() - start) / 1e6)
        interpreters.append(it)
        kept.append(single)
    n = len(interpreters)
    samples: list[list[int]] = [[] for _ in range(n)]
    for r in range(warmup + runs):
        for j in range(n):
            k = (j + r) % n
            invoke = interpreters[k].invoke
            invoke()  # untimed: brings this op's weights and input into cache, as in the graph
            start = time.perf_counter_ns()
            invoke()
            if r >= warmup:
                samples[k].append(time.perf_counter_ns() - start)
    ops = [OpTime(index=k, op=op, name=tensor_name, avg_ms=float(np.median(samples[j])) / 1e6, first_ms=first[j])
           for j, (k, op, tensor_name, _) in enumerate(kept)]
    return OpProfile(model=name, source="isolated ops (ai-edge-litert)", ops=tuple(ops), whole_ms=whole_ms,
                     threads=threads, accelerator="cpu (XNNPACK)" if xnnpack else "cpu (reference kernels)",
                     whole_min_ms=whole_min_ms, skipped=tuple(skipped))


# --- side by side ------------------------------------------------------------------------

def side_by_side(profiles: Sequence[OpProfile], top: int | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-op-type table: one (count, ms, %) column group per model,
    op types ordered by their largest share in any model; a total row last."""
    types: dict[str, float] = {}
    tables = [p.by_type() for p in profiles]
    for t in tables:
        for op, v in t.items():
            types[op] = max(types.get(op, 0.0), v["pct"])
    order = sorted(types, key=lambda k: -types[k])
    if top is not None and len(order) > top:
        order = order[:top]
    header = ["op type"]
    for p in profiles:
        short = p.model[:-len(".tflite")] if p.model.endswith(".tflite") else p.model
        header += [f"{short} n", f"{short} ms", f"{short} %"]
    rows = []
    for op in order:
        row = [op]
        for t in tables:
            v = t.get(op)
            row += ["-", "-", "-"] if v is None else [str(v["count"]), f"{v['ms']:.3f}", f"{v['pct']:.1f}"]
        rows.append(row)
    total = ["sum of ops"]
    for p in profiles:
        total += [str(len(p.ops)), f"{p.sum_ms:.3f}", "100.0"]
    rows.append(total)
    for label, attr in (("whole model, median", "whole_ms"), ("whole model, min", "whole_min_ms")):
        if any(getattr(p, attr) for p in profiles):
            whole = [label]
            for p in profiles:
                v = getattr(p, attr)
                whole += ["", "-" if v is None else f"{v:.3f}", "-" if not v else f"sum/this {p.sum_ms / v:.2f}"]
            rows.append(whole)
    return header, rows


def format_profiles(profiles: Sequence[OpProfile], top: int | None = 12) -> str:
    from mobile_seg.bench.results import pipe_table
    header, rows = side_by_side(profiles, top=top)
    numeric = set(range(1, len(header)))
    lines = [pipe_table(header, rows, numeric), ""]
    for p in profiles:
        lines.append(f"op profile of {p.model}: {p.source}, {p.threads} thread(s), {p.accelerator}, "
                     f"{len(p.ops)} ops" + (f"; {len(p.skipped)} could not run alone and are not counted: "
                                            + ", ".join(p.skipped) if p.skipped else ""))
    return "\n".join(lines)


PROFILE_CSV_COLUMNS = ["model", "source", "threads", "accelerator", "index", "op", "name", "avg_ms", "calls",
                       "first_ms", "pct"]


def write_profile_csv(profiles: Sequence[OpProfile], path: str | os.PathLike) -> None:
    """Every op of every profile, unrounded, one row each; written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=PROFILE_CSV_COLUMNS)
            w.writeheader()
            for p in profiles:
                total = p.sum_ms or 1.0
                for o in p.ops:
                    w.writerow({"model": p.model, "source": p.source, "threads": p.threads,
                                "accelerator": p.accelerator, "index": o.index, "op": o.op, "name": o.name,
                                "avg_ms": o.avg_ms, "calls": o.calls,
                                "first_ms": "" if o.first_ms is None else o.first_ms,
                                "pct": 100.0 * o.total_ms / total})
