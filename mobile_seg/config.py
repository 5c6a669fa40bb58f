"""Model and training configuration: frozen dataclasses, the single source of truth.

A `ModelConfig` fully describes a network: `build_model(config)` rebuilds it, and a
`config.json` written by `ModelConfig.save` sits beside every checkpoint and export.
`TrainConfig` holds the optimisation settings of one run (`train_config.json`),
`QATConfig` those of quantization-aware fine-tuning (`qat.json`), `ExportConfig` those of
a conversion (`export.json`). Every field carries its command-line flag (`option`): the
CLI generates its options from them. All validate themselves on construction and raise
`ConfigError` with one line.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from mobile_seg.errors import ConfigError
from mobile_seg.spec import MEAN, OUTPUT_KINDS, STD

BACKBONES = ("mobilenetv2", "xception65")
MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0)
OUTPUT_STRIDES = (8, 16, 32)
STRATEGIES = ("default", "mirrored", "multiworker")
OPTIMIZERS = ("sgd", "adam")
BASE_RESIZE = ("stretch", "none")
MODEL_CONFIG_FORMAT = "mobile-seg-model/1"


def option(default, help: str, *, metavar: str | None = None, choices: tuple | None = None,
           kind: str | None = None, show_default: bool = True, compare: bool = True):
    """A config field that carries its command-line flag: help text, metavar, choices and a
    `kind` for values click cannot parse alone (size, rates, floats, rgb, names, path,
    int-or-none). `mobile_seg.cli_config` turns the fields into options."""
    meta = {"help": help, "metavar": metavar, "choices": choices, "kind": kind, "show_default": show_default}
    return dataclasses.field(default=default, compare=compare, metadata=meta)


def default_atrous_rates(output_stride: int) -> tuple[int, ...]:
    """DeepLab's ASPP rates: (6, 12, 18) at output stride 16, doubled at 8, halved at 32."""
    return {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}[output_stride]


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be one integer or (height, width), got {value!r}") from None
    return (h, w)


def _triple(value, name: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    vals = tuple(float(v) for v in value)
    if len(vals) != 3:
        raise ConfigError(f"{name} needs 3 values (R, G, B), got {value!r}")
    return vals


class JsonConfig:
    """`save(path)` (atomic) and `load(path)` for a config dataclass with to_dict/from_dict."""

    def save(self, path: str | os.PathLike) -> None:
        from mobile_seg.io_utils import write_json_atomic
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike):
        return cls.from_dict(_read_json(path))


# ModelConfig fields that change no weight's shape or meaning (see ModelConfig.weight_diff)
WEIGHT_FREE_FIELDS = ("input_size", "output_stride", "bn_momentum")


@dataclass(frozen=True)
class ModelConfig(JsonConfig):
    """Everything needed to build a DeepLabV3(+) network.

    Args:
        backbone: "mobilenetv2" or "xception65".
        alpha: MobileNetV2 width multiplier (0.35, 0.5, 0.75, 1.0); must be 1.0 for Xception.
        output_stride: input size / encoder feature size (8, 16 or 32); the backbone's
            later strides become dilations to reach it.
        atrous_rates: dilation rates of the ASPP separable 3x3 branches. None = DeepLab's
            default for the output stride; () = no atrous branches (1x1 + image pooling only,
            the MobileNetV2 DeepLabV3 of the papers).
        decoder_output_stride: 4 for the DeepLabV3+ decoder, None for plain DeepLabV3.
        decoder_channels: width of the decoder's two 3x3 separable convs (DeepLab: 256). At
            stride 4 they dominate the cost of a small model; 64-128 buys input resolution.
        num_classes: output channels (2 = background, person).
        input_size: (height, width) of the fixed model input.
        bn_momentum, bn_epsilon: BatchNorm settings (0.97 fine-tunes well; Keras' 0.999 does not).
        input_mean, input_std: per-channel RGB normalisation, input = (pixel - mean) / std.
        class_names: one name per class, index order (None = unknown: `default_class_names`).
            Labels only: not compared, so a run keeps its identity when names are added.
    """

    backbone: str = option("mobilenetv2", "Encoder.", metavar="|".join(BACKBONES))
    alpha: float = option(1.0, "MobileNetV2 width multiplier (ImageNet weights exist for 1.0 only).",
                          metavar="0.35|0.5|0.75|1.0")
    output_stride: int = option(16, "Input size / encoder feature size.", metavar="8|16|32")
    atrous_rates: tuple[int, ...] | None = option(
        None, "ASPP atrous rates (default 6,12,18 at OS16, doubled at OS8, halved at OS32); "
              "'none' = 1x1 + image pooling only.", metavar="R1,R2,R3|none", kind="rates")
    decoder_output_stride: int | None = option(4, "4 = DeepLabV3+ decoder, none = plain DeepLabV3.",
                                               metavar="4|none", kind="int-or-none")
    decoder_channels: int = option(256, "Width of the decoder's separable convs.")
    num_classes: int = option(2, "Output classes (default: the dataset's, else 2).", show_default=False)
    input_size: tuple[int, int] = option((256, 256), "Model input size.", metavar="SIZE|HxW", kind="size")
    bn_momentum: float = option(0.97, "BatchNorm momentum.")
    bn_epsilon: float = option(1e-3, "BatchNorm epsilon.")
    input_mean: tuple[float, float, float] = option((MEAN, MEAN, MEAN), "Input normalisation mean, "
                                                    "input = (pixel - mean) / std.", metavar="M|R,G,B",
                                                    kind="rgb")
    input_std: tuple[float, float, float] = option((STD, STD, STD), "Input normalisation std.",
                                                   metavar="S|R,G,B", kind="rgb")
    class_names: tuple[str, ...] | None = option(
        None, "Class names, index order (default: the dataset's).", metavar="NAME,NAME,...",
        kind="names", compare=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        set_("alpha", float(self.alpha))
        if self.backbone == "mobilenetv2" and self.alpha not in MOBILENET_ALPHAS:
            raise ConfigError(f"alpha {self.alpha:g} not supported for mobilenetv2; "
                              f"choose one of {', '.join(f'{a:g}' for a in MOBILENET_ALPHAS)}")
        if self.backbone == "xception65" and self.alpha != 1.0:
            raise ConfigError(f"alpha applies to mobilenetv2 only; xception65 needs alpha 1.0, got {self.alpha:g}")
        if self.output_stride not in OUTPUT_STRIDES:
            raise ConfigError(f"output stride must be one of 8, 16, 32, got {self.output_stride}")
        if self.atrous_rates is not None:
            rates = tuple(int(r) for r in self.atrous_rates)
            if any(r < 1 for r in rates):
                raise ConfigError(f"atrous rates must be positive integers, got {rates}")
            set_("atrous_rates", rates)
        if self.decoder_output_stride not in (None, 4):
            raise ConfigError(f"decoder output stride must be 4 or none, got {self.decoder_output_stride}")
        if int(self.decoder_channels) < 8:
            raise ConfigError(f"decoder channels must be at least 8, got {self.decoder_channels}")
        set_("decoder_channels", int(self.decoder_channels))
        if int(self.num_classes) < 2:
            raise ConfigError(f"num_classes must be at least 2, got {self.num_classes}")
        set_("num_classes", int(self.num_classes))
        size = _pair(self.input_size, "input_size")
        set_("input_size", size)
        set_("input_mean", _triple(self.input_mean, "input_mean"))
        set_("input_std", _triple(self.input_std, "input_std"))
        if self.class_names is not None:
            names = tuple(str(n) for n in self.class_names)
            if len(names) != self.num_classes:
                raise ConfigError(f"{len(names)} class names for {self.num_classes} classes: {', '.join(names)}")
            set_("class_names", names)
        if not 0.0 < self.bn_momentum < 1.0:
            raise ConfigError(f"bn_momentum must be in (0, 1), got {self.bn_momentum}")
        os_ = self.output_stride
        for side, name in zip(size, ("height", "width")):
            if side < 2 * os_:
                raise ConfigError(f"input {name} {side} is too small for output stride {os_}: "
                                  f"need at least {2 * os_} px (a 2x2 feature map)")
            if side % os_ not in (0, 1):
                lo = side - side % os_
                raise ConfigError(f"input {name} {side} does not fit output stride {os_}: use a multiple "
                                  f"of {os_} (e.g. {lo}) or a multiple plus one (e.g. {lo + 1})")

    # --- derived values -------------------------------------------------------------
    @property
    def resolved_atrous_rates(self) -> tuple[int, ...]:
        """The ASPP rates actually used (the default for the output stride when unset)."""
        return default_atrous_rates(self.output_stride) if self.atrous_rates is None else self.atrous_rates

    def feature_size(self, stride: int) -> tuple[int, int]:
        """Spatial size of a feature map at `stride` ('SAME' padding: ceil(size / stride))."""
        return tuple(math.ceil(s / stride) for s in self.input_size)  # type: ignore[return-value]

    @property
    def has_pretrained_weights(self) -> bool:
        """Only MobileNetV2 alpha 1.0 has ImageNet weights (the shared npz)."""
        return self.backbone == "mobilenetv2" and self.alpha == 1.0

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line: e.g. 'mobilenetv2 a1.0 OS16 ASPP(6,12,18) decoder@4 256x256 2 classes'."""
        rates = self.resolved_atrous_rates
        aspp = f"ASPP({','.join(map(str, rates))})" if rates else "ASPP(none)"
        dec = f"decoder@{self.decoder_output_stride}" if self.decoder_output_stride else "no decoder"
        name = f"mobilenetv2 a{self.alpha}" if self.backbone == "mobilenetv2" else self.backbone
        h, w = self.input_size
        return f"{name} OS{self.output_stride} {aspp} {dec} {h}x{w} {self.num_classes} classes"

    # --- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["input_mean"] = list(self.input_mean)
        d["input_std"] = list(self.input_std)
        d["atrous_rates"] = None if self.atrous_rates is None else list(self.atrous_rates)
        d["class_names"] = None if self.class_names is None else list(self.class_names)
        return {"format": MODEL_CONFIG_FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        fmt = d.pop("format", MODEL_CONFIG_FORMAT)
        if fmt != MODEL_CONFIG_FORMAT:
            raise ConfigError(f"unsupported model config format {fmt!r} (expected {MODEL_CONFIG_FORMAT})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model config field(s): {', '.join(unknown)}")
        for name in ("atrous_rates", "class_names"):
            if d.get(name) is not None:
                d[name] = tuple(d[name])
        return cls(**d)

    def diff(self, other: "ModelConfig") -> list[str]:
        """Fields that differ, as 'name: A in the run, B asked' strings (empty when equal)."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {_fmt(a[k])} in the run, {_fmt(b[k])} asked" for k in a
                if a[k] != b[k] and k != "class_names"]

    def weight_diff(self, other: "ModelConfig") -> list[str]:
        """`diff` less the fields that leave every weight's shape and meaning unchanged
        (input size, output stride, BatchNorm momentum): a run's weights start another run
        that differs only in those (e.g. a fine-tune at a higher resolution)."""
        return self.diff(dataclasses.replace(other, **{k: getattr(self, k) for k in WEIGHT_FREE_FIELDS}))

    @property
    def labels(self) -> list[str]:
        """The class names, or the defaults for the class count."""
        from mobile_seg.data.palette import default_class_names
        return list(self.class_names) if self.class_names else default_class_names(self.num_classes)


def _weights(values, what: str) -> tuple[float, ...]:
    """Sampling or loss weights as floats; ConfigError unless all >= 0 and one > 0."""
    w = tuple(float(x) for x in values)
    if any(x < 0 for x in w) or not any(x > 0 for x in w):
        raise ConfigError(f"{what} must be >= 0 and not all zero, got {w}")
    return w


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Optimisation settings of one training run.

    Args:
        batch_size: global batch (split across replicas by tf.distribute).
        steps: total optimizer steps (the poly schedule reaches `end_learning_rate` here).
        learning_rate: peak LR, reached after `warmup_steps` of linear warm-up, then
            poly decay with power `lr_power`.
        weight_decay: L2 coefficient on conv kernels (not BN, biases or depthwise kernels).
        class_weights: per-class loss weights (None = all 1).
        init_weights: ImageNet backbone npz (MobileNetV2 alpha 1.0 only) or None (scratch).
        checkpoint_every: steps between checkpoints (also on SIGTERM/Ctrl-C and at the end).
        base_resize: how an image is brought to the model's view before random scaling:
            "stretch" = the whole image stretched to the crop size, exactly what eval and
            the TFLite runtime feed, so scale 1.0 is the deployment scale; "none" = the
            original resolution (DeepLab's VOC recipe, right when eval runs at full size).
        min_scale, max_scale, flip: random scale range and horizontal flips.
        jitter: random brightness, contrast and saturation (the input pipeline's jitter).
        data_weights: with several datasets, the probability of drawing each one's examples
            (normalised; None = in proportion to their sizes, i.e. one concatenated set).
        distill_weight: weight of the soft-label loss: on examples whose built dataset holds
            a teacher's soft person label (`mobile-seg label`, then `data build`), the binary
            cross-entropy between the model's and the teacher's person probability minus the
            teacher's entropy (0 at a perfect match), mean over pixels; cross-entropy on the
            hard labels is added wherever they exist.
        lovasz_weight: weight of the Lovász-softmax loss on the hard labels, a per-image
            surrogate of 1 − IoU (`mobile_seg.losses.lovasz_softmax`), added to the
            cross-entropy; 0 = cross-entropy alone.
        paste_prob: the probability that a training crop gets a person pasted onto it
            (copy-paste augmentation): the person pixels (class 1) of a crop drawn from the
            `paste_weights` sets, scaled by `paste_min_scale`–`paste_max_scale` of the crop
            and placed at random, overwrite the crop's image and label (soft target 1);
            people in front of other scenes, with exact masks. 2-class models only.
        paste_weights: with `paste_prob` > 0, the probability of drawing the pasted person
            from each --data set (normalised; 0 = never), in --data order.
        init_run: start from the newest checkpoint of another run of the same model (a
            second training stage, e.g. a fine-tune with another data mix or at another
            input size or output stride), or None.
    """

    split: str = option("train", "Split to train on.")
    batch_size: int = option(8, "Global batch size (split across replicas).")
    steps: int = option(2000, "Total training steps (the poly schedule ends here).")
    learning_rate: float = option(0.02, "Peak learning rate after warm-up, then poly decay.")
    end_learning_rate: float = option(0.0, "Learning rate the poly decay ends at.")
    lr_power: float = option(0.9, "Power of the poly decay.")
    warmup_steps: int = option(100, "Linear warm-up steps.")
    optimizer: str = option("sgd", "Optimizer (sgd uses --momentum).", choices=OPTIMIZERS)
    momentum: float = option(0.9, "SGD momentum.")
    weight_decay: float = option(4e-5, "L2 on conv kernels (also inside QAT wrappers).")
    class_weights: tuple[float, ...] | None = option(None, "Per-class loss weights.", metavar="W0,W1,...",
                                                     kind="floats")
    init_weights: str | None = option(
        None, "ImageNet backbone weights: the TF-slim MobileNetV2 1.0 npz "
              "(mobilenet_v2_1.0_224_imagenet.npz, in the shared data bundle); MobileNetV2 1.0 only. "
              "Default: from scratch.", metavar="NPZ", kind="path")
    checkpoint_every: int = option(200, "Steps between checkpoints.")
    keep_checkpoints: int = option(3, "Checkpoints kept (the newest).")
    log_every: int = option(20, "Steps between log lines/TensorBoard points.")
    strategy: str = option("default", "tf.distribute: one device, all local devices, or the TF_CONFIG "
                                      "cluster.", choices=STRATEGIES)
    seed: int = option(0, "Random seed.")
    base_resize: str = option("stretch", "Before random scaling, stretch each image to the crop size (what "
                                         "eval and the runtime feed) or keep its resolution (none).",
                              choices=BASE_RESIZE)
    min_scale: float = option(0.5, "Random scale lower bound.")
    max_scale: float = option(1.25, "Random scale upper bound.")
    flip: bool = option(True, "Random horizontal flips.")
    jitter: bool = option(True, "Random brightness/contrast/saturation.")
    shuffle_buffer: int = option(256, "Examples in each dataset's shuffle buffer (1 = no shuffling).")
    data_weights: tuple[float, ...] | None = option(
        None, "Sampling weight of each --data (default: by size, like one concatenated set).",
        metavar="W1,W2,...", kind="floats")
    distill_weight: float = option(1.0, "Weight of the soft-label loss on examples with a teacher's soft "
                                        "label (`mobile-seg label`, then `data build`).")
    lovasz_weight: float = option(0.0, "Weight of the Lovász-softmax loss (a per-image IoU surrogate) added "
                                       "to the cross-entropy on hard labels; 0 = cross-entropy alone.")
    paste_prob: float = option(0.0, "Probability that a crop gets a person from a --paste-weights set "
                                    "pasted onto it (copy-paste augmentation); 0 = off.")
    paste_weights: tuple[float, ...] | None = option(
        None, "Weight of each --data as a source of pasted people (0 = never), in --data order.",
        metavar="W1,W2,...", kind="floats")
    paste_min_scale: float = option(0.3, "Smallest size of a pasted crop, as a fraction of the crop.")
    paste_max_scale: float = option(1.0, "Largest size of a pasted crop, as a fraction of the crop.")
    init_run: str | None = option(None, "Start from another run's newest checkpoint (same model; the "
                                        "input size and output stride may differ): a second stage.",
                                  metavar="RUN_DIR", kind="path")

    def __post_init__(self):
        for name in ("batch_size", "steps", "checkpoint_every", "keep_checkpoints", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning-rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight-decay must be >= 0, got {self.weight_decay}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.base_resize not in BASE_RESIZE:
            raise ConfigError(f"unknown base resize {self.base_resize!r}; choose one of {', '.join(BASE_RESIZE)}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ConfigError(f"need 0 < min-scale <= max-scale, got {self.min_scale}, {self.max_scale}")
        if self.class_weights is not None:
            object.__setattr__(self, "class_weights", _weights(self.class_weights, "class weights"))
        if self.init_weights is not None:
            object.__setattr__(self, "init_weights", str(self.init_weights))
        if self.data_weights is not None:
            object.__setattr__(self, "data_weights", _weights(self.data_weights, "data weights"))
        if self.distill_weight < 0:
            raise ConfigError(f"distill-weight must be >= 0, got {self.distill_weight}")
        if self.lovasz_weight < 0:
            raise ConfigError(f"lovasz-weight must be >= 0, got {self.lovasz_weight}")
        if not 0 <= self.paste_prob <= 1:
            raise ConfigError(f"paste-prob must be in [0, 1], got {self.paste_prob}")
        if not 0 < self.paste_min_scale <= self.paste_max_scale:
            raise ConfigError(f"need 0 < paste-min-scale <= paste-max-scale, got "
                              f"{self.paste_min_scale}, {self.paste_max_scale}")
        if self.paste_weights is not None:
            object.__setattr__(self, "paste_weights", _weights(self.paste_weights, "paste weights"))
        if self.paste_prob > 0 and self.paste_weights is None:
            raise ConfigError("--paste-prob needs --paste-weights: which --data sets the pasted people come from")
        if self.init_run is not None and self.init_weights is not None:
            raise ConfigError("give --init-weights or --init-run, not both")
        for name in ("init_run",):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in ("class_weights", "data_weights"):
            if getattr(self, name) is not None:
                d[name] = list(getattr(self, name))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = _drop_retired(d)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown train config field(s): {', '.join(unknown)}")
        d = dict(d)
        for name in ("class_weights", "data_weights"):
            if d.get(name) is not None:
                d[name] = tuple(d[name])
        return cls(**d)


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware fine-tuning of a trained run (`mobile-seg qat`); saved as qat.json.

    Everything else (split, augmentation, data weights, distillation, optimizer) is the
    float run's TrainConfig: QAT continues that run on the deployed graph.
    """

    steps: int = option(1000, "QAT fine-tuning steps.")
    learning_rate: float = option(3e-5, "Peak learning rate, poly decay, no warm-up (DeepLab's QAT recipe).")
    batch_size: int | None = option(None, "Global batch size (default: the run's).")
    weight_decay: float | None = option(None, "L2 on the conv kernels inside the QAT wrappers "
                                              "(default: the run's).")
    calib_images: int = option(64, "Training images that set the activation ranges before fine-tuning "
                                   "(0: tfmot's [-6, 6]).")
    checkpoint_every: int | None = option(None, "Steps between checkpoints (default: the run's, at most "
                                                "--steps).")

    def __post_init__(self):
        if int(self.steps) < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning-rate must be positive, got {self.learning_rate}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ConfigError(f"batch-size must be at least 1, got {self.batch_size}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(f"weight-decay must be >= 0, got {self.weight_decay}")
        if self.calib_images < 0:
            raise ConfigError(f"calib-images must be >= 0, got {self.calib_images}")
        if self.checkpoint_every is not None and int(self.checkpoint_every) < 1:
            raise ConfigError(f"checkpoint-every must be at least 1, got {self.checkpoint_every}")

    def replace(self, **changes) -> "QATConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "QATConfig":
        """From a qat.json (other keys there, e.g. the source run, are not settings)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


EXPORT_VARIANTS = ("fp32", "fp16", "dynamic", "int8", "qat-int8")
IO_TYPES = ("float", "int8", "uint8")


@dataclass(frozen=True)
class ExportConfig:
    """How `mobile-seg export` converts and reports; saved as OUT/export.json."""

    variant: str = option("all", "Variants to convert, comma-separated, or all (" + ", ".join(EXPORT_VARIANTS)
                          + "; qat-int8 needs --qat).", metavar="VARIANT[,VARIANT]|all")
    input_size: tuple[int, int] | None = option(None, "Export at another fixed input size (default: the "
                                                      "trained size).", metavar="HxW", kind="size")
    calib_images: int = option(100, "Training images for int8 calibration.")
    io_type: str = option("float", "Input/output tensor type of int8 and qat-int8 files.", choices=IO_TYPES)
    output: str = option("logits", "What the model returns: category = uint8 argmax mask, "
                                   "person-probability = one channel.", choices=OUTPUT_KINDS)
    split: str = option("val", "Split the report scores.")
    latency_runs: int = option(30, "Invokes per file for the report's latency.")

    def __post_init__(self):
        unknown = [v for v in self.variants if v not in EXPORT_VARIANTS]
        if self.variant != "all" and (unknown or not self.variants):
            raise ConfigError(f"unknown variant {(unknown or [self.variant])[0]!r}; choose from "
                              f"{', '.join(EXPORT_VARIANTS)} or all")
        if self.io_type not in IO_TYPES:
            raise ConfigError(f"unknown --io-type {self.io_type!r}; choose one of {', '.join(IO_TYPES)}")
        if self.output not in OUTPUT_KINDS:
            raise ConfigError(f"unknown --output {self.output!r}; choose one of {', '.join(OUTPUT_KINDS)}")
        if self.input_size is not None:
            object.__setattr__(self, "input_size", _pair(self.input_size, "input_size"))
        if self.calib_images < 1:
            raise ConfigError(f"calib-images must be at least 1, got {self.calib_images}")
        if self.latency_runs < 1:
            raise ConfigError(f"latency-runs must be at least 1, got {self.latency_runs}")

    @property
    def variants(self) -> tuple[str, ...]:
        """The variants asked for ("all" = every one)."""
        if self.variant == "all":
            return EXPORT_VARIANTS
        return tuple(v.strip() for v in self.variant.split(",") if v.strip())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = None if self.input_size is None else list(self.input_size)
        return d


# The in-loop teacher (a .tflite run on every crop) gave way to labels precomputed by
# `mobile-seg label`: one mechanism. Configs of older runs still load when they did not use it.
RETIRED_TRAIN_FIELDS = ("teacher", "unlabeled", "unlabeled_weight")


def _drop_retired(d: dict) -> dict:
    used = [k for k in ("teacher", "unlabeled") if d.get(k) is not None]
    if used:
        raise ConfigError(f"train config uses --{used[0]}, which is gone: label the data with "
                          f"`mobile-seg label TEACHER SOURCE --out DIR`, build it, and train on it")
    return {k: v for k, v in d.items() if k not in RETIRED_TRAIN_FIELDS}


NONE = "none"   # an explicit "no value" among overrides (e.g. --decoder-output-stride none)


def apply_overrides(base: dict, overrides: dict) -> dict:
    """`base` updated with the overrides that were given: None = not given, "none" = None."""
    out = dict(base)
    out.update({k: (None if v == NONE else v) for k, v in overrides.items() if v is not None})
    return out


def _fmt(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v) or "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return obj


def load_config_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a `--config FILE`: {"model": {...}, "train": {...}} or a flat ModelConfig dict.

    Returns (model_fields, train_fields), each a dict of overrides (unknown keys rejected later).
    """
    obj = _read_json(path)
    if "model" in obj or "train" in obj:
        extra = sorted(set(obj) - {"model", "train"})
        if extra:
            raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(extra)} (expected model, train)")
        return dict(obj.get("model") or {}), dict(obj.get("train") or {})
    return obj, {}


__all__ = ["ModelConfig", "TrainConfig", "QATConfig", "ExportConfig", "default_atrous_rates", "load_config_file",
           "BACKBONES", "MOBILENET_ALPHAS", "OUTPUT_STRIDES", "STRATEGIES"]
