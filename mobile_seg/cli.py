"""The `mobile-seg` command line: a thin click layer over library functions.

Each command parses flags, calls one library function, prints its result. Library
imports happen inside the commands so that `--help` stays fast (TensorFlow takes
seconds to import). Errors are mapped once, by the group (`MobileSegGroup`): a
MobileSegError becomes its one `error:` line and its exit code. The options of `train`,
`qat`, `export` and `model summary` are generated from the config dataclasses
(`mobile_seg.cli_config`).
"""
from __future__ import annotations

import json
import sys

import click

from mobile_seg import __version__
from mobile_seg.cli_config import config_options, config_overrides
from mobile_seg.config import ExportConfig, ModelConfig, QATConfig, TrainConfig
from mobile_seg.errors import MobileSegError, user_error_line


class MobileSegGroup(click.Group):
    """The one place where user errors become a line on stderr and an exit code: a
    MobileSegError its `prefix + message` and `exit_code`; an OSError naming a file (a
    file we could not read or write: permissions, disk full) `error: FILE: why`, exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (MobileSegError, OSError) as e:
            report = user_error_line(e)
            if report is None:
                raise
            click.echo(report[0], err=True)
            sys.exit(report[1])


def echo_json(obj) -> None:
    """Print one JSON object on a single line (the `--json` contract: last line of output)."""
    click.echo(json.dumps(obj, separators=(",", ":"), default=str))


def finish_training(result, what: str, out_dir, as_json: bool) -> None:
    """Print a train/QAT result line (+ JSON); exit 128+signal when a signal stopped it."""
    click.echo(f"{'stopped' if result.interrupted else 'done'}: {what} {result.step}/{result.steps}, "
               f"loss {result.loss:.4f}, running mIoU {result.running_miou:.3f}, "
               f"{result.images_per_sec:.1f} img/s, {result.wall_s:.0f} s -> {out_dir}")
    if as_json:
        echo_json(result.to_dict())
    if result.interrupted:
        import signal
        sys.exit(128 + int(getattr(signal, result.interrupted)))


@click.group(cls=MobileSegGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mobile-seg")
@click.option("--verbose", is_flag=True, envvar="MOBILE_SEG_VERBOSE",
              help="Also show TensorFlow's and LiteRT's own start-up log lines (hidden by default).")
def main(verbose: bool) -> None:
    """mobile-seg: person segmentation from data to phone."""
    if not verbose:
        from mobile_seg.native_logs import filter_native_logs
        filter_native_logs()


@main.group()
def data() -> None:
    """Check a segmentation dataset and build it into TFRecords."""


def _dataset_options(fn):
    """DATASET and the flags `data check` and `data build` share (same meaning in both)."""
    options = [
        click.argument("dataset", required=False),
        click.option("--images", metavar="DIR", help="Images folder; pairs matched by file stem with --masks."),
        click.option("--masks", metavar="DIR", help="Masks folder (class-index PNGs)."),
        click.option("--num-classes", type=int, default=None,
                     help="Class count (default: the class names', 2 with --binary, the colour map's, "
                          "else 1 + the largest label in the masks)."),
        click.option("--class-names", metavar="NAME0,NAME1,...",
                     help="Class names in index order (default: DATASET/labels.txt or labelmap.txt, "
                          "else background, class_1, ...)."),
        click.option("--ignore-label", type=int, default=255, show_default=True),
        click.option("--colour-map", metavar="voc|FILE.json",
                     help="Convert RGB colour masks to class indices (VOC palette or index→[r,g,b] JSON)."),
        click.option("--binary", is_flag=True, help="Masks are 0/255: read 255 as class 1 (person)."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@data.command("check")
@_dataset_options
def data_check(dataset, images, masks, num_classes, class_names, ignore_label, colour_map, binary, as_json):
    """Check DATASET: split counts, image sizes, class pixels, problems.

    DATASET is a PASCAL VOC 2012 folder (JPEGImages/, SegmentationClass/,
    ImageSets/Segmentation/<split>.txt); or give --images DIR --masks DIR.

    Exit code 0 when clean, 1 when the dataset has problems, 2 for a usage error.
    """
    from mobile_seg.data.check import check_dataset, format_report

    report = check_dataset(dataset, images=images, masks=masks, num_classes=num_classes,
                           class_names=class_names, ignore_label=ignore_label, colour_map=colour_map,
                           binary=binary)
    click.echo(format_report(report))
    if as_json:
        echo_json(report.to_dict())
    sys.exit(0 if report.ok else 1)


@data.command("build")
@_dataset_options
@click.option("--out", required=True, metavar="DIR", help="Output folder (replaced atomically).")
@click.option("--skip-bad", is_flag=True, help="Leave out the pairs `data check` rejects (listed).")
@click.option("--shards", default="auto", show_default=True, help="Shards per split: N or auto.")
def data_build(dataset, images, masks, num_classes, class_names, ignore_label, colour_map, binary,
               as_json, out, skip_bad, shards):
    """Build DATASET into TFRecords per split + descriptor.json in DIR.

    Refuses (exit 2) when `data check` finds problems, unless --skip-bad. Ctrl-C or
    SIGTERM stops it with nothing written (exit 130/143); a rerun cleans up after a kill.
    """
    from dataclasses import asdict

    from mobile_seg.data.check import format_classes, format_problems
    from mobile_seg.data.tfrecords import build_dataset
    from mobile_seg.signals import stop_on_signals

    with stop_on_signals(f"build stopped; nothing was written to {out}; rerun the same command"):
        result = build_dataset(dataset, out, images=images, masks=masks, num_classes=num_classes,
                               class_names=class_names, ignore_label=ignore_label,
                               colour_map=colour_map, binary=binary, skip_bad=skip_bad, shards=shards)
    if result.skipped:
        click.echo(f"skipped {len(result.report.bad_ids)} bad pair(s); problems:")
        click.echo(format_problems(result.skipped))
    click.echo(f"  classes    {format_classes(result.report)}")
    for split, info in result.descriptor["splits"].items():
        click.echo(f"  {split:<10} {info['num_examples']:>6} examples  {len(info['shards'])} shard(s)")
    click.echo(f"built {result.descriptor['name']} → {result.out} in {result.seconds:.1f} s")
    if as_json:
        echo_json({"out": str(result.out), "seconds": round(result.seconds, 2),
                   "descriptor": result.descriptor, "skipped": [asdict(p) for p in result.skipped]})

@main.command("label")
@click.argument("teacher", type=click.Path())
@click.argument("source", type=click.Path())
@click.option("--out", required=True, type=click.Path(), metavar="DIR",
              help="VOC-layout output folder for `data build`; rerun to resume.")
@click.option("--flip", is_flag=True, help="Average the teacher over the image and its mirror image.")
@click.option("--hard/--no-hard", default=True, show_default=True,
              help="Write the teacher's hard masks for images without a mask of their own.")
@click.option("--band", type=float, default=0.2, show_default=True,
              help="Ignore band of those hard masks: pixels with |p - 0.5| < band/2 become 255.")
@click.option("--boxes", type=click.Path(), default=None, metavar="JSON",
              help='Person boxes {"id": [[x0,y0,x1,y1], ...]}: labels are 0 outside them.')
@click.option("--box-margin", type=float, default=0.1, show_default=True,
              help="Grow each box by this fraction of its size on every side.")
@click.option("--every", type=int, default=5, show_default=True, help="Video: label every N-th frame.")
@click.option("--max-side", type=int, default=640, show_default=True,
              help="Video: downscale frames to this longer side.")
@click.option("--threads", type=int, default=None, help="Teacher interpreter threads.")
@click.option("--val-fraction", type=float, default=0.0, show_default=True,
              help="Source without splits: hold out this share as `val` (images by a hash of "
                   "the id, a video's last frames).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def label_cmd(teacher, source, out, flip, hard, band, boxes, box_margin, every, max_side, threads,
              val_fraction, quiet, as_json):
    """Soft person labels from a TEACHER .tflite for SOURCE (VOC folder, image folder or video).

    Writes OUT/SegmentationSoft/<id>.png (person probability x 255) beside the images, the
    source's masks (or the teacher's hard masks) and split files; `mobile-seg data build OUT`
    stores the soft labels and `train` learns from them.
    """
    from mobile_seg.label import LabelConfig, label
    config = LabelConfig(flip=flip, hard=hard, band=band, boxes=boxes, box_margin=box_margin,
                         every=every, max_side=max_side, threads=threads)
    result = label(teacher, source, out, config, val_fraction=val_fraction, progress=not quiet)
    split_counts = ", ".join(f"{k} {v}" for k, v in result.summary["splits"].items())
    click.echo(f"labelled {result.labelled} image(s), {result.skipped} already done, "
               f"{result.total} in all ({split_counts}) -> {result.out} in {result.seconds:.1f} s")
    if as_json:
        echo_json(result.to_dict())


@main.group()
def model() -> None:
    """Inspect DeepLabV3(+) model variants."""


@model.command("summary")
@config_options(ModelConfig, rename={"input_size": "--input-size"}, skip=("class_names",))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def model_summary(as_json, **flags):
    """Print parameters, multiply-adds at the input size, and the output stride reached.

    The published MobileNetV2 DeepLabV3 (2.11 M params, 2.75 B MAdds) is:
    --alpha 1.0 --output-stride 16 --atrous-rates none --decoder-output-stride none
    --num-classes 21 --input-size 513
    """
    from mobile_seg.config import apply_overrides
    from mobile_seg.model.summary import summarize_config
    overrides = config_overrides(ModelConfig, flags)
    config = ModelConfig.from_dict(apply_overrides(ModelConfig().to_dict(), overrides))
    summary = summarize_config(config)
    click.echo(summary.format())
    if as_json:
        echo_json(summary.to_dict())


@main.command("train")
@click.option("--data", multiple=True, required=True, type=click.Path(),
              help="Built dataset (mobile-seg data build --out); repeat to mix several. The first one's "
                   "class count and names are the model's unless a flag or --config sets them.")
@click.option("--out", "run_dir", required=True, type=click.Path(),
              help="Run directory: checkpoints, config.json, TensorBoard logs. Rerun to resume.")
@click.option("--config", "config_file", type=click.Path(), default=None,
              help='JSON file {"model": {...}, "train": {...}}; flags override it.')
@config_options(ModelConfig, TrainConfig, rename={"input_size": "--crop-size"})
@click.option("--startup-timeout", type=click.FloatRange(min=0), default=300, show_default=True,
              metavar="SECONDS", help="multiworker: give up (exit 2) when a TF_CONFIG worker has "
                                      "not started by then.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def train_cmd(data, run_dir, config_file, startup_timeout, quiet, as_json, **flags):
    """Train DeepLabV3(+) on a built dataset; rerunning the command resumes.

    Settings come from, lowest first: defaults, the dataset (classes), the run's saved
    configs (resuming), --config FILE, flags. Ctrl-C or SIGTERM saves a checkpoint and
    exits (code 130/143); run it again to go on. Under --strategy multiworker a signal to
    any worker stops all of them after the same step, saved. Another process training
    into the same --out is refused (exit 2). A diverged run (NaN loss) exits 3.
    """
    from mobile_seg.training import train
    from mobile_seg.training.resolve import resolve_configs
    model_over = config_overrides(ModelConfig, flags)
    train_over = config_overrides(TrainConfig, flags)
    model_config, train_config = resolve_configs(run_dir, config_file, model_over, train_over, data=list(data))
    click.echo(f"model: {model_config.describe()} ({', '.join(model_config.labels)})")
    result = train(list(data), run_dir, model_config, train_config, progress=not quiet,
                   startup_timeout=startup_timeout)
    finish_training(result, "step", run_dir, as_json)


@main.command("eval")
@click.option("--data", required=True, type=click.Path(), help="Built dataset (mobile-seg data build --out).")
@click.option("--split", default="val", show_default=True, help="Split to evaluate.")
@click.option("--run", "run_dir", type=click.Path(), default=None, help="Training run (newest checkpoint).")
@click.option("--tflite", type=click.Path(), default=None, help="A .tflite model instead of a run.")
@click.option("--resize", type=click.Choice(["stretch", "letterbox", "crop", "pad"]), default="stretch", show_default=True,
              help="How images reach the model input: stretch, or keep aspect and pad.")
@click.option("--limit", type=int, default=None, help="Only the first N examples.")
@click.option("--threads", type=int, default=None, help="TFLite interpreter threads.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def eval_cmd(data, split, run_dir, tflite, resize, limit, threads, quiet, as_json):
    """mIoU, per-class IoU, pixel accuracy and confusion matrix at original resolution.

    One pass over the split, then it exits (it never waits for new checkpoints).
    """
    from mobile_seg.evaluate import evaluate
    result = evaluate(data, split, run=run_dir, tflite=tflite, resize=resize, progress=not quiet,
                      limit=limit, num_threads=threads)
    click.echo(result.format())
    if as_json:
        echo_json(result.to_dict())


@main.command("compare")
@click.argument("models", nargs=-1, required=True)
@click.option("--data", "data", multiple=True, metavar="BUILT[:SPLIT]",
              help="Built dataset and split (default val); repeat for several.")
@click.option("--video", "video", multiple=True, metavar="BUILT[:SPLIT]",
              help="A frame-ordered split (ids <sequence>_<frame>): also scored for flicker.")
@click.option("--resize", type=click.Choice(["stretch", "letterbox", "crop", "pad"]), default="stretch", show_default=True,
              help="How images reach the model input.")
@click.option("--threads", type=int, default=1, show_default=True, help="Interpreter threads (eval and bench).")
@click.option("--runs", type=int, default=100, show_default=True, help="Timed bench rounds.")
@click.option("--no-bench", is_flag=True, help="Skip the latency run.")
@click.option("--limit", type=int, default=None, help="Only the first N images of each split.")
@click.option("--csv", "csv_path", type=click.Path(), default=None, help="Per-image rows to this CSV file.")
@click.option("--by-size", is_flag=True,
              help="Also a table per split by the person's share of the frame (< 5 %, 5-20 %, >= 20 %).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def compare_cmd(models, data, video, resize, threads, runs, no_bench, limit, csv_path, by_size, quiet,
                as_json):
    """Every MODEL (.tflite file or shipped model name; the first is the reference) on every split.

    One table per split: dataset-level and mean per-image person IoU, the paired per-image
    difference to the first model with a bootstrap 95 % CI, precision, recall, flicker on
    --video splits; then latency from one interleaved bench run. --by-size splits the mean
    per-image IoU by how much of the frame the person fills.
    """
    from mobile_seg.compare import compare, parse_split, write_csv
    splits = [parse_split(d) for d in data] + [parse_split(v, video=True) for v in video]
    result = compare(list(models), splits, resize=resize, threads=threads, runs=runs,
                     bench=not no_bench, limit=limit, progress=not quiet)
    click.echo(result.format(by_size=by_size))
    if csv_path:
        write_csv(result, csv_path)
        click.echo(f"per-image rows: {csv_path}")
    if as_json:
        echo_json(result.to_dict())


@main.command("vis")
@click.option("--run", "run_dir", type=click.Path(), default=None, help="Training run (newest checkpoint).")
@click.option("--tflite", type=click.Path(), default=None, help="A .tflite model instead of a run.")
@click.option("--images", required=True, type=click.Path(), help="Folder of images.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Output folder.")
@click.option("--masks", type=click.Path(), default=None,
              help="Folder of ground-truth <id>.png masks (adds a third panel).")
@click.option("--resize", type=click.Choice(["stretch", "letterbox", "crop", "pad"]), default="stretch", show_default=True)
@click.option("--limit", type=int, default=None, help="Only the first N images.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def vis_cmd(run_dir, tflite, images, out_dir, masks, resize, limit, quiet, as_json):
    """Write palette PNG masks, overlays and image | prediction | truth side-by-sides."""
    from mobile_seg.vis import visualize
    result = visualize(images, out_dir, run=run_dir, tflite=tflite, masks_dir=masks, resize=resize,
                       limit=limit, progress=not quiet)
    click.echo(f"wrote {len(result.files)} files for {result.images} images "
               f"({result.with_truth} with ground truth) to {out_dir}")
    click.echo(f"colours: {result.format_legend()}")
    if as_json:
        echo_json(result.to_dict())


@main.command("qat")
@click.option("--run", "run_dir", required=True, type=click.Path(), help="Trained float run (newest checkpoint).")
@click.option("--data", required=True, multiple=True, type=click.Path(),
              help="Built dataset (its train split fine-tunes); repeat as in `train`, whose "
                   "--data-weights and --distill-weight the QAT run keeps.")
@click.option("--out", "qat_dir", required=True, type=click.Path(),
              help="QAT directory: checkpoints (weights) + config.json + qat.json. Rerun to resume.")
@config_options(QATConfig)
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def qat_cmd(run_dir, data, qat_dir, quiet, as_json, **flags):
    """Quantization-aware fine-tuning of a trained run (8-bit, tfmot); rerunning resumes.

    Same loop, input pipeline, losses (weight decay included), checkpoints and SIGTERM
    handling as `train`. Export the result with `mobile-seg export --qat QAT_DIR
    --variant qat-int8`.
    """
    from mobile_seg.config import apply_overrides
    from mobile_seg.qat import qat
    config = QATConfig(**apply_overrides(QATConfig().to_dict(), config_overrides(QATConfig, flags)))
    result = qat(run_dir, list(data), qat_dir, config, progress=not quiet)
    finish_training(result, "QAT step", qat_dir, as_json)


@main.command("export")
@click.option("--run", "run_dir", type=click.Path(), default=None, help="Trained float run (fp32/fp16/dynamic/int8).")
@click.option("--qat", "qat_dir", type=click.Path(), default=None,
              help="`mobile-seg qat` output (qat-int8); its source run serves the float variants.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Directory for the .tflite files.")
@click.option("--data", type=click.Path(), default=None,
              help="Built dataset: train split calibrates int8; with it the val split report is made.")
@config_options(ExportConfig)
@click.option("--no-report", is_flag=True, help="Only convert, even when --data is given.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the report (or export summary) as the last line.")
def export_cmd(run_dir, qat_dir, out_dir, data, no_report, quiet, as_json, **flags):
    """Convert a run to self-describing .tflite files (fixed batch 1) and report what each costs.

    Every file embeds labels, input size and normalisation, output kind and model config;
    OUT/export.json records the ExportConfig and the sources. With --data: mIoU / person
    IoU on the val split, drop vs Keras, max |Δ| vs Keras, op census and single-thread
    latency, saved as OUT/report.json and OUT/report.md. Until all of that is written OUT
    holds an INCOMPLETE file (a stopped or failed export leaves it); another export into
    OUT meanwhile is refused.
    """
    import io
    from converters.export import export, export_session
    from mobile_seg.config import apply_overrides
    config = ExportConfig(**apply_overrides(ExportConfig().to_dict(), config_overrides(ExportConfig, flags)))
    stream = io.StringIO() if quiet else None
    with export_session(out_dir):
        result = export(run_dir, qat=qat_dir, out_dir=out_dir, data=data, settings=config, stream=stream)
        click.echo(result.format())
        if data is None or no_report:
            if as_json:
                echo_json(result.to_dict())
            return
        from converters.report import format_markdown, report_export, write_report
        report = report_export(result, data, split=config.split, latency_runs=config.latency_runs,
                               progress=not quiet)
        json_path, md_path = write_report(report, out_dir)
    click.echo(format_markdown(report))
    click.echo(f"report: {md_path}, {json_path}")
    if as_json:
        echo_json(report)


# === bench (issue: bench) ===

@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--threads", default="1", show_default=True, help="Thread counts, comma-separated (e.g. 1,2).")
@click.option("--runs", default=100, show_default=True, type=click.IntRange(min=1), help="Timed rounds.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0), help="Untimed rounds first.")
@click.option("--xnnpack/--no-xnnpack", default=True, show_default=True, help="XNNPACK delegate (CPU).")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="Measure peak RSS per model (a fresh process each; host only).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--json", "as_json", is_flag=True, help="Also print the result as one JSON line, last.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the table rows as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Latency vs accuracy (from model metadata) or latency bars, e.g. bench.png; with "
                   "--duration, latency over time.")
@click.option("--metric", default=None, help="Accuracy for --plot as DATASET/SPLIT:NAME (default: person_iou).")
@click.option("--adb", "use_adb", is_flag=True, help="Run on an Android device with benchmark_model.")
@click.option("--serial", default=None, help="adb device serial (when several are attached).")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False),
              help="TFLite benchmark_model built for the phone (you download it; we never do).")
@click.option("--use-gpu", is_flag=True, help="With --adb: GPU delegate.")
@click.option("--use-nnapi", is_flag=True, help="With --adb: NNAPI delegate.")
@click.option("--op-profile", is_flag=True, help="Per-op time of each model, side by side (+ --profile-csv).")
@click.option("--profile-csv", type=click.Path(dir_okay=False), help="With --op-profile: every op as CSV.")
@click.option("--duration", type=float, default=None,
              help="Host: sustained run of this many seconds instead of --runs; drift first vs last tenth "
                   "(--plot draws latency over time).")
@click.option("--parity-data", type=click.Path(), default=None,
              help="Host: dataset folder (VOC or images) for delegate parity: XNNPACK vs reference kernels, "
                   "fp16 vs fp32.")
@click.option("--parity-images", default=20, show_default=True, type=click.IntRange(min=1),
              help="Images used by --parity-data.")
@click.option("--cores", default=None, help="Pin to these cores, e.g. 4-7 (host: sched_setaffinity; "
                                            "--adb: taskset).")
def bench(models, threads, runs, warmup, xnnpack, memory, seed, as_json, csv_path, plot_path, metric,
          use_adb, serial, benchmark_binary, use_gpu, use_nnapi, op_profile, profile_csv, duration,
          parity_data, parity_images, cores):
    """Latency, size, op census and memory of .tflite MODELS; the first is the reference.

    On this machine models run interleaved round by round, so machine noise hits them
    alike. With --adb they run on a phone through TFLite's benchmark_model.
    """
    from mobile_seg.bench.device import parse_cores
    from mobile_seg.bench.results import format_table, write_csv
    from mobile_seg.bench.sustained import check_duration
    from mobile_seg.errors import ConfigError

    say = lambda msg: click.echo(msg, err=True)  # noqa: E731
    if use_gpu and use_nnapi:
        raise ConfigError("--use-gpu and --use-nnapi exclude each other")
    pinned = parse_cores(cores)
    check_duration(duration)
    if profile_csv and not op_profile:
        raise ConfigError("--profile-csv: only with --op-profile")
    if use_adb and (duration or parity_data):
        raise ConfigError(f"{'--duration' if duration else '--parity-data'}: host only (not with --adb)")
    if parity_data:
        from mobile_seg.bench.parity import parity_images as _check_parity
        _check_parity(parity_data, parity_images)
    from mobile_seg.io_utils import check_output_path
    for path in (csv_path, plot_path, profile_csv):  # before any timing: a bad path must not cost a whole bench
        if path:
            check_output_path(path, "file")
    if metric:  # before any timing: a bad --metric must not cost a whole bench
        from mobile_seg.bench.plot import check_metric
        check_metric(metric, models, plot_path)
    if use_adb:
        from mobile_seg.bench.adb import run_adb_bench
        accel = "gpu" if use_gpu else "nnapi" if use_nnapi else "cpu"
        result = run_adb_bench(models, benchmark_binary, serial=serial, threads=threads, runs=runs,
                               warmup=warmup, accelerator=accel, xnnpack=xnnpack, progress=say,
                               op_profile=op_profile, cores=pinned)
    else:
        stray = [f for f, v in (("--serial", serial), ("--benchmark-binary", benchmark_binary),
                                ("--use-gpu", use_gpu), ("--use-nnapi", use_nnapi)) if v]
        if stray:
            raise ConfigError(f"{', '.join(stray)}: only with --adb")
        from mobile_seg.bench.harness import run_bench
        result = run_bench(models, threads=threads, runs=runs, warmup=warmup, xnnpack=xnnpack,
                           memory=memory, seed=seed, progress=say, duration=duration, cores=pinned)
        if op_profile:
            from mobile_seg.bench.profile import profile_host
            result.profiles = [profile_host(mr.info.path, mr.info.name, threads=result.threads[0],
                                            xnnpack=xnnpack, runs=min(runs, 50), seed=seed,
                                            whole_ms=mr.measurements[0].latency.median_ms, progress=say,
                                            whole_min_ms=mr.measurements[0].latency.min_ms)
                               for mr in result.models]
    parity_rows = None
    if parity_data:
        from mobile_seg.bench.parity import run_parity
        parity_rows, parity_files = run_parity([mr.info.path for mr in result.models],
                                               [mr.info.name for mr in result.models], parity_data,
                                               limit=parity_images, threads=result.threads[0], progress=say)
    click.echo(format_table(result))
    out = result.to_dict()
    if result.profiles:
        from mobile_seg.bench.profile import format_profiles
        click.echo("\n" + format_profiles(result.profiles))
        out["op_profile"] = [p.to_dict() for p in result.profiles]
    if parity_rows is not None:
        from mobile_seg.bench.parity import format_parity
        click.echo("\n" + format_parity(parity_rows))
        out["parity"] = {"data": parity_data, "images": parity_files, "rows": [r.to_dict() for r in parity_rows]}
    if result.series:
        out["series"] = {k: {"t_s": list(t), "ms": list(v)} for k, (t, v) in result.series.items()}
    if csv_path:
        write_csv(result, csv_path)
        say(f"bench: wrote {csv_path}")
    if profile_csv:
        from mobile_seg.bench.profile import write_profile_csv
        write_profile_csv(result.profiles, profile_csv)
        say(f"bench: wrote {profile_csv}")
    if plot_path and result.series:
        from mobile_seg.bench.sustained import plot_sustained
        dev = result.environment.get("device") or {}
        title = (f"sustained {duration:g} s run, interleaved, on {dev.get('soc') or 'this machine'}")
        out["plot"] = {"path": plot_path, **plot_sustained(result.series, plot_path, title)}
        say(f"bench: wrote {plot_path} ({out['plot']['kind']})")
    elif plot_path:
        from mobile_seg.bench.plot import plot_bench
        out["plot"] = {"path": plot_path, **plot_bench(result, plot_path, metric=metric)}
        say(f"bench: wrote {plot_path} ({out['plot']['kind']})")
    if as_json:
        echo_json(out)


# === model file metadata (issue 14) ===

@main.group("metadata")
def metadata_group():
    """Read or rewrite what a .tflite file says about itself (standard TFLite metadata + ours)."""


@metadata_group.command("show")
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def metadata_show(model, as_json):
    """What MODEL means: input, output, labels, metrics, and its standard metadata."""
    from mobile_seg.model_metadata import describe
    info = describe(model)
    click.echo(info.pop("text"))
    if as_json:
        echo_json(info)


@metadata_group.command("stamp")
@click.argument("model", type=click.Path())
@click.option("--metrics", "metrics_json", default=None, metavar="JSON|FILE",
              help='Figures to record, {"<dataset>/<split>": {"person_iou": 0.87, ...}} (merged).')
@click.option("--name", default=None, help="Model name to record.")
@click.option("--license", "license_", default=None, help="Licence text to record.")
@click.option("--json", "as_json", is_flag=True, help="Print the new record as one JSON line, last.")
def metadata_stamp(model, metrics_json, name, license_, as_json):
    """Rewrite MODEL's metadata in place (atomically): standard TFLite metadata, labels.txt
    and our record, with --metrics merged in. Shipped models get their figures this way."""
    from converters.metadata import load_metrics_arg, restamp
    updates = {k: v for k, v in (("name", name), ("license", license_)) if v is not None}
    record = restamp(model, metrics=load_metrics_arg(metrics_json), **updates)
    click.echo(f"stamped {model}: {len(record.get('metrics') or {})} metrics split(s)")
    if as_json:
        echo_json(record)


# === shipped models ===

@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def models_cmd(as_json):
    """List the models shipped in the package with their measured figures.

    Mean per-image person IoU per val split is next to the model's baseline (in brackets:
    MediaPipe selfie, or its landscape model for `landscape`) from one `mobile-seg compare`
    run; latency is that run's single-thread median. `demo` uses the model named "default"
    (and "landscape" for frames 3:2 or wider).
    """
    from mobile_seg.shipped import format_models, shipped_models
    models = shipped_models()
    click.echo(format_models(models))
    if as_json:
        echo_json({"models": [m.to_dict() for m in models]})


# === demo (issue: demo) ===

@main.command("demo")
@click.option("--camera", type=int, default=None, help="Camera index (e.g. 0).")
@click.option("--video", type=click.Path(dir_okay=False), default=None, help="Video file to process.")
@click.option("--image", type=click.Path(dir_okay=False), default=None, help="Still image to process.")
@click.option("--model", type=click.Path(), default=None,
              help="Segmentation .tflite, or the name of a shipped model (`mobile-seg models`; "
                   "default: the shipped \"landscape\" model for frames 3:2 or wider, else \"default\").")
@click.option("--effect", type=click.Choice(["blur", "bokeh", "replace", "colour", "mask"]),
              default="blur", show_default=True, help="Background effect.")
@click.option("--background", type=click.Path(dir_okay=False), multiple=True,
              help="Replacement background for --effect replace: an image or a video (looped). "
                   "Repeat it to offer several on the --serve page (the first is used).")
@click.option("--blur-strength", type=float, default=15.0, show_default=True,
              help="Blur sigma in frame pixels (bokeh: disc radius 1.5x this).")
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="Person probability cut: centre of the alpha ramp and of --subject's components.")
@click.option("--subject", type=click.Choice(["all", "largest", "center"]), default="all", show_default=True,
              help="Keep every person sharp, the largest one, or the one nearest the centre.")
@click.option("--min-area", type=float, default=0.0, show_default=True,
              help="Drop people (mask components) smaller than this fraction of the frame.")
@click.option("--smoothing", type=float, default=0.6, show_default=True,
              help="Temporal smoothing in [0, 1); 0 = off.")
@click.option("--motion", type=float, default=0.5, show_default=True,
              help="Motion-adaptive smoothing: mask disagreement at which the new mask is taken "
                   "whole, in (0, 1]; 0 = off.")
@click.option("--delay", type=int, default=0, show_default=True,
              help="Show each frame N frames late, with the newest mask, so a trailing mask lines up.")
@click.option("--refine", type=click.Choice(["guided", "none"]), default="guided", show_default=True,
              help="Edge refinement with the frame as guide.")
@click.option("--every", type=int, default=1, show_default=True,
              help="Run the model on every Nth frame, reuse the mask in between.")
@click.option("--reuse", type=click.Choice(["hold", "shift"]), default="hold", show_default=True,
              help="How frames between model runs reuse the mask (with --every > 1).")
@click.option("--resize", type=click.Choice(["stretch", "letterbox", "crop"]), default=None,
              help="How frames fit the model input (default: the model's metadata, else stretch).")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write the result: .mp4/.avi for camera/video, .png/.jpg for an image "
                   "(or for the last frame of a video).")
@click.option("--side-by-side", is_flag=True, help="Show/write the input and the result next to each other.")
@click.option("--window/--no-window", default=None,
              help="Show a window (default: yes, unless the result goes to an image --output, "
                   "--serve or --virtual-camera).")
@click.option("--serve", metavar="[HOST:]PORT", default=None,
              help="Serve the result as MJPEG with a control page (localhost unless HOST is given).")
@click.option("--virtual-camera", metavar="[DEVICE]", is_flag=False, flag_value="",  # no default: optional value
              help="Send the result to a virtual webcam (pyvirtualcam; Linux: v4l2loopback device, "
                   "default the first free one).")
@click.option("--mirror", is_flag=True, help="Mirror the virtual camera's picture left-right.")
@click.option("--max-frames", type=int, default=None, help="Stop after this many frames.")
@click.option("--stats", "show_stats", is_flag=True, help="Print per-stage ms/frame and end-to-end FPS.")
@click.option("--threads", type=int, default=None, help="Model interpreter threads (default: runtime's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line (last line).")
def demo_command(camera, video, image, model, effect, background, blur_strength, threshold, subject,
                 min_area, smoothing, motion, delay, refine, every, reuse, resize, output, side_by_side,
                 window, serve, virtual_camera, mirror, max_frames, show_stats, threads, as_json):
    """Blur (or replace) the background behind the person, live or on a file; to a window,
    a file, a virtual camera or a browser.

    Window keys: e effect, s smoothing, r refinement, m mask view, l light wrap,
    o overlay, q/Esc quit.
    """
    from demo.app import DemoOptions, format_result, run_demo
    from demo.pipeline import Settings
    from mobile_seg.errors import DeviceError

    settings = Settings(effect=effect, strength=blur_strength, threshold=threshold, subject=subject,
                        min_area=min_area, smoothing=smoothing, motion=motion, delay=delay, refine=refine,
                        every=every, reuse=reuse, resize=resize)
    options = DemoOptions(camera=camera, video=video, image=image, model=model, output=output,
                          background=list(background), window=window, max_frames=max_frames,
                          threads=threads, side_by_side=side_by_side, serve=serve,
                          virtual_camera=virtual_camera, mirror=mirror, settings=settings)
    result = run_demo(options, log=lambda line: click.echo(line))
    if not as_json:
        for line in format_result(result):
            click.echo(line)
    if show_stats and not as_json:
        from demo.stats import format_summary
        click.echo(format_summary(result.stats))
    if as_json:
        echo_json(result.to_dict())
    if result.lost:
        where = f"; output finalised: {result.output}" if result.output else ""
        raise DeviceError(f"{result.end_reason}{where}")


if __name__ == "__main__":
    main()
