"""`mobile-seg bench` on this machine: statistics, interleaving, table/JSON/CSV, plot, CLI."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

import tiny_tflite
from mobile_seg.bench import results as results_mod
from mobile_seg.bench.harness import interleaved_order, parse_threads, run_bench
from mobile_seg.bench.plot import choose_metric, plot_bench
from mobile_seg.bench.results import (BenchResult, Measurement, ModelInfo, ModelResult, format_table,
                                      write_csv)
from mobile_seg.bench.stats import LatencyStats, latency_stats, pareto_front
from mobile_seg.cli import main
from mobile_seg.errors import ConfigError, ModelFileError


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_tflite.tiny_models(tmp_path_factory.mktemp("tiny_tflite"))


# --- statistics ------------------------------------------------------------------------

def test_latency_stats_known_array():
    s = latency_stats(np.arange(1, 101) / 1000.0)  # 1 … 100 ms, given in seconds
    assert s.runs == 100
    assert s.mean_ms == pytest.approx(50.5)
    assert s.median_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)  # linear interpolation: 1 + 0.90 * 99
    assert s.p99_ms == pytest.approx(99.01)
    assert (s.min_ms, s.max_ms) == (pytest.approx(1.0), pytest.approx(100.0))
    assert s.std_ms == pytest.approx(np.sqrt((100**2 - 1) / 12))  # population std of 1..n


def test_latency_stats_small_and_skewed():
    s = latency_stats([0.002, 0.002, 0.002, 0.010])
    assert s.median_ms == pytest.approx(2.0) and s.mean_ms == pytest.approx(4.0)
    assert s.p90_ms == pytest.approx(7.6) and s.p99_ms == pytest.approx(9.76)
    with pytest.raises(ValueError):
        latency_stats([])


def test_pareto_front():
    pts = [(10.0, 0.90), (5.0, 0.80), (7.0, 0.79), (20.0, 0.95), (10.0, 0.85), (5.0, 0.80)]
    # (7, .79) is beaten by (5, .80); (10, .85) by (10, .90); duplicates both stay
    assert pareto_front(pts) == [1, 5, 0, 3]
    assert pareto_front([]) == []


def test_parse_threads():
    assert parse_threads("1,2") == [1, 2]
    assert parse_threads(" 4 , 1,4") == [4, 1]
    for bad in ("0", "a", "", "1,-2"):
        with pytest.raises(ConfigError, match="--threads"):
            parse_threads(bad)


def test_interleaved_order_rotates_models():
    order = list(interleaved_order(3, [1, 2], 2))
    assert order == [(0, 1, 0), (0, 1, 1), (0, 1, 2), (0, 2, 0), (0, 2, 1), (0, 2, 2),
                     (1, 1, 1), (1, 1, 2), (1, 1, 0), (1, 2, 1), (1, 2, 2), (1, 2, 0)]


# --- table / JSON / CSV on a hand-made result --------------------------------------------

def _result() -> BenchResult:
    def info(name, dtype, size, int8, flt, metrics=None):
        return ModelInfo(path=f"/m/{name}", name=name, input_shape=[1, 256, 256, 3], input_dtype=dtype,
                         input_quantization=None, size_bytes=size,
                         census={"int8": int8, "float": flt, "float_convs": 0 if int8 else 4}, metrics=metrics)

    def meas(t, median, rss):
        lat = LatencyStats(runs=100, mean_ms=median * 1.1, median_ms=median, p90_ms=median * 1.2,
                           p99_ms=median * 1.5, min_ms=median * 0.9, max_ms=median * 2, std_ms=0.1)
        return Measurement(threads=t, latency=lat, init_ms=12.5, first_ms=median * 3, peak_rss_mb=rss)

    a = ModelResult(info("ref.tflite", "float32", 249505, 0, 136), [meas(1, 4.0, 13.0), meas(2, 2.5, 13.2)])
    b = ModelResult(info("ours_int8.tflite", "int8", 2 * 2**20, 80, 2,
                         {"portraits/val": {"person_iou": 0.9, "miou": 0.92}}),
                    [meas(1, 3.0, 7.5), meas(2, 1.0, 7.6)])
    r = BenchResult("host", {"threads": [1, 2], "runs": 100, "warmup": 10}, {"cpu": "test"}, [a, b],
                    notes=["note one"])
    r.assign_ratios()
    return r


def test_ratios_are_per_thread_count():
    r = _result()
    assert [m.ratio for m in r.models[0].measurements] == [1.0, 1.0]
    assert [m.ratio for m in r.models[1].measurements] == [pytest.approx(0.75), pytest.approx(0.4)]
    assert {m.ratio_of for mr in r.models for m in mr.measurements} == {"median"}


def test_table():
    lines = format_table(_result()).splitlines()
    assert lines[0] == ("| model            | input               | size      | ops int8/float | threads | init ms "
                        "| min ms | mean ms | median ms | p90 ms | p99 ms | vs ref | peak RSS MB |")
    assert lines[1].count("|") == 14 and lines[1].endswith(":|")
    assert lines[2] == ("| ref.tflite       | 1x256x256x3 float32 | 243.7 KiB | 0/136          |       1 |   12.50 "
                        "|   3.60 |    4.40 |      4.00 |   4.80 |   6.00 |  1.00x |        13.0 |")
    assert lines[3] == ("| ours_int8.tflite | 1x256x256x3 int8    | 2.00 MiB  | 80/2           |       1 |   12.50 "
                        "|   2.70 |    3.30 |      3.00 |   3.60 |   4.50 |  0.75x |         7.5 |")
    assert lines[5].startswith("| ours_int8.tflite") and "0.40x" in lines[5]  # threads = 2 block
    assert lines[-1] == "note one"


def test_table_shows_missing_figures_as_dashes():
    r = _result()
    m = r.models[1].measurements[0]
    m.latency = LatencyStats(runs=50, mean_ms=3.0)  # e.g. an old benchmark_model: no median
    m.peak_rss_mb = None
    r.assign_ratios()
    row = format_table(r).splitlines()[3]
    assert "0.68x (mean)" in row and row.count(" - ") >= 4 and row.rstrip().endswith("- |")


def test_json_round_trips():
    d = json.loads(json.dumps(_result().to_dict()))
    assert d["format"] == "mobile-seg-bench/1" and d["reference"] == "ref.tflite"
    assert [m["name"] for m in d["models"]] == ["ref.tflite", "ours_int8.tflite"]
    res = d["models"][1]["results"][1]
    assert res["threads"] == 2 and res["latency"]["median_ms"] == 1.0 and res["ratio"] == pytest.approx(0.4)


def test_csv(tmp_path):
    path = tmp_path / "out" / "bench.csv"
    write_csv(_result(), path)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == results_mod.CSV_COLUMNS
    assert [(r["model"], r["threads"]) for r in rows] == [
        ("ref.tflite", "1"), ("ours_int8.tflite", "1"), ("ref.tflite", "2"), ("ours_int8.tflite", "2")]
    assert float(rows[3]["median_ms"]) == 1.0 and float(rows[3]["ratio"]) == pytest.approx(0.4)
    assert rows[1]["ops_int8"] == "80" and rows[0]["input_shape"] == "1x256x256x3"


def test_csv_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "bench.csv"
    path.write_text("old\n")

    def boom(self, row):
        raise OSError("disk full")

    monkeypatch.setattr(csv.DictWriter, "writerow", boom)
    with pytest.raises(OSError):
        write_csv(_result(), path)
    assert path.read_text() == "old\n" and list(tmp_path.iterdir()) == [path]


# --- plot ------------------------------------------------------------------------------

def test_plot_pareto_when_models_carry_accuracy(tmp_path):
    r = _result()
    r.models.append(ModelResult(
        ModelInfo("/m/slow.tflite", "slow.tflite", [1, 256, 256, 3], "float32", None, 10, {"int8": 0, "float": 5},
                  metrics={"portraits/val": {"person_iou": 0.85}}),
        [Measurement(1, LatencyStats(runs=10, mean_ms=9, median_ms=9.0)),
         Measurement(2, LatencyStats(runs=10, mean_ms=5, median_ms=5.0))]))
    assert choose_metric(r) == ("portraits/val", "person_iou")
    out = plot_bench(r, tmp_path / "p.png")
    assert out == {"kind": "pareto", "metric": "portraits/val:person_iou", "threads": 1,
                   "front": ["ours_int8.tflite"]}
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_bench(r, tmp_path / "m.svg", metric="portraits/val:miou")["front"] == ["ours_int8.tflite"]
    with pytest.raises(ConfigError, match="no model carries"):
        plot_bench(r, tmp_path / "x.png", metric="coco/val:miou")


def test_plot_bars_without_accuracy(tmp_path):
    r = _result()
    r.models[1].info.metrics = None
    assert choose_metric(r) is None
    assert plot_bench(r, tmp_path / "b.png")["kind"] == "bars"
    assert (tmp_path / "b.png").stat().st_size > 1000
    with pytest.raises(ConfigError, match="unsupported image format"):
        plot_bench(r, tmp_path / "b.xyz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png"]


# --- the harness on real models ----------------------------------------------------------

def test_run_bench_interleaved(tiny, shared_data):
    selfie = shared_data / "models" / "selfie_segmentation_landscape.tflite"
    r = run_bench([selfie, tiny["int8"], tiny["fp32_meta"]], threads="1,2", runs=7, warmup=2, memory=False)
    assert r.target == "host" and r.threads == [1, 2]
    names = [mr.info.name for mr in r.models]
    assert names == ["selfie_segmentation_landscape.tflite", "tiny_int8.tflite", "tiny_fp32_meta.tflite"]
    selfie_info, int8_info, meta_info = (mr.info for mr in r.models)
    assert selfie_info.input_shape == [1, 144, 256, 3] and selfie_info.input_dtype == "float32"
    assert int8_info.input_dtype == "int8" and int8_info.input_quantization[0] > 0
    assert (int8_info.census["int8"], int8_info.census["float"]) == (5, 0)
    assert (meta_info.census["int8"], meta_info.census["float"]) == (0, 5)
    assert meta_info.metrics == tiny_tflite.TINY_METADATA["metrics"] and meta_info.variant == "fp32"
    for mr in r.models:
        assert [m.threads for m in mr.measurements] == [1, 2]
        for m in mr.measurements:
            assert m.latency.runs == 7 and 0 < m.latency.min_ms <= m.latency.median_ms <= m.latency.max_ms
            assert m.init_ms > 0 and m.first_ms > 0 and m.peak_rss_mb is None
    assert [m.ratio for m in r.models[0].measurements] == [1.0, 1.0]
    assert r.environment["cpu_count"] >= 1 and len(r.environment["load_avg_before"]) == 3
    assert any("interleaved" in n for n in r.notes)


def test_run_bench_peak_rss(tiny):
    r = run_bench([tiny["fp32"]], threads="1", runs=2, warmup=0)
    m = r.models[0].measurements[0]
    assert m.peak_rss_mb is not None and 0 < m.peak_rss_mb < 200
    assert m.extra["memory_method"].startswith("VmHWM")
    assert any(n.startswith("peak RSS:") for n in r.notes)


def test_run_bench_errors_before_timing(tiny, tmp_path):
    not_tflite = tmp_path / "notes.tflite"
    not_tflite.write_text("hello")
    with pytest.raises(ModelFileError, match="not a TFLite model"):
        run_bench([tiny["fp32"], not_tflite], memory=False)
    with pytest.raises(ModelFileError, match="file not found"):
        run_bench([tmp_path / "missing.tflite"], memory=False)
    with pytest.raises(ModelFileError, match="dynamic shape"):
        run_bench([tiny["dynamic"]], memory=False)


# --- CLI ---------------------------------------------------------------------------------

def _invoke(args):
    return CliRunner().invoke(main, ["bench"] + [str(a) for a in args])


def test_cli_table_json_csv_plot(tiny, tmp_path):
    csv_path, png = tmp_path / "b.csv", tmp_path / "b.png"
    res = _invoke([tiny["fp32"], tiny["fp32_meta"], "--runs", 5, "--warmup", 1, "--threads", "1,2",
                   "--no-memory", "--json", "--csv", csv_path, "--plot", png])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("| model") and lines[2].startswith("| tiny_fp32.tflite")
    out = json.loads(lines[-1])
    assert out["reference"] == "tiny_fp32.tflite" and out["settings"]["threads"] == [1, 2]
    assert out["plot"]["kind"] == "pareto" and out["plot"]["front"] == ["tiny_fp32_meta.tflite"]
    assert len(list(csv.DictReader(csv_path.open()))) == 4 and png.exists()


@pytest.mark.parametrize("make, message", [
    (lambda p, t: p / "missing.tflite", "file not found"),
    (lambda p, t: (p / "x.tflite").write_text("not a model") and p / "x.tflite", "not a TFLite model"),
    (lambda p, t: t["dynamic"], "dynamic shape"),
])
def test_cli_clear_errors(tiny, tmp_path, make, message):
    res = _invoke([make(tmp_path, tiny), "--no-memory", "--runs", 1])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_cli_flag_errors(tiny):
    res = _invoke([tiny["fp32"], "--use-gpu"])
    assert res.exit_code == 2 and "error: --use-gpu: only with --adb" in res.stderr
    res = _invoke([tiny["fp32"], "--adb", "--use-gpu", "--use-nnapi"])
    assert res.exit_code == 2 and "exclude each other" in res.stderr
    res = _invoke([tiny["fp32"], "--threads", "two"])
    assert res.exit_code == 2 and "--threads" in res.stderr
