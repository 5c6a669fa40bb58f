"""Conv + BatchNorm + activation building blocks shared by backbones, ASPP and decoder.

Every layer gets a stable name: `<name>` for the conv, `<name>_BatchNorm` for its BN,
`<name>_relu` for the activation (TF-slim style, so ImageNet weights map by name and
QAT/TFLite op listings read like the papers).
"""
from __future__ import annotations

import math

import tf_keras

from mobile_seg.config import ModelConfig

L = tf_keras.layers
KERNEL_INIT = "he_normal"


def stride_or_dilate(stride: int, current_stride: int, rate: int, output_stride: int) -> tuple[int, int, int, int]:
    """DeepLab's rule: once the output stride is reached, later strides become dilations.

    Returns (layer_stride, layer_rate, new_current_stride, new_rate).
    """
    if current_stride == output_stride:
        return 1, rate, current_stride, rate * stride
    return stride, 1, current_stride * stride, rate


def batch_norm(x, name: str, cfg: ModelConfig):
    return L.BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name=name)(x)


def activation(x, name: str, relu6: bool = False):
    return L.ReLU(max_value=6.0 if relu6 else None, name=name)(x)


def conv_bn(x, filters: int, kernel: int, name: str, cfg: ModelConfig, *, stride: int = 1,
            rate: int = 1, relu: bool = True, relu6: bool = False):
    """Conv2D (no bias) -> BatchNorm -> optional ReLU/ReLU6."""
    x = L.Conv2D(filters, kernel, strides=stride, dilation_rate=rate, padding="same", use_bias=False,
                 kernel_initializer=KERNEL_INIT, name=name)(x)
    x = batch_norm(x, f"{name}_BatchNorm", cfg)
    return activation(x, f"{name}_relu", relu6) if relu else x


def depthwise_bn(x, name: str, cfg: ModelConfig, *, stride: int = 1, rate: int = 1,
                 relu: bool = True, relu6: bool = False):
    """3x3 DepthwiseConv2D (no bias) -> BatchNorm -> optional ReLU/ReLU6."""
    x = L.DepthwiseConv2D(3, strides=stride, dilation_rate=rate, padding="same", use_bias=False,
                          depthwise_initializer=KERNEL_INIT, name=name)(x)
    x = batch_norm(x, f"{name}_BatchNorm", cfg)
    return activation(x, f"{name}_relu", relu6) if relu else x


def separable_conv_bn(x, filters: int, name: str, cfg: ModelConfig, *, stride: int = 1,
                      rate: int = 1, relu_out: bool = True):
    """DeepLab's separable conv: depthwise 3x3 -> BN -> ReLU -> pointwise 1x1 -> BN [-> ReLU].

    Written as two plain layers (not SeparableConv2D) so each gets its own BN, which
    folds cleanly during quantization.
    """
    x = depthwise_bn(x, f"{name}_depthwise", cfg, stride=stride, rate=rate)
    return conv_bn(x, filters, 1, f"{name}_pointwise", cfg, relu=relu_out)


def upsample_to(x, target_hw: tuple[int, int], name: str, interpolation: str = "bilinear"):
    """Upsample by the integer factor that covers `target_hw`, cropping any excess.

    UpSampling2D (not tf.image.resize) keeps the graph quantization-friendly; the crop
    is only needed for sizes that are not multiples of the stride (e.g. 513 = 32*16+1).
    """
    h, w = int(x.shape[1]), int(x.shape[2])
    th, tw = target_hw
    fh, fw = math.ceil(th / h), math.ceil(tw / w)
    if (fh, fw) != (1, 1):
        x = L.UpSampling2D(size=(fh, fw), interpolation=interpolation, name=name)(x)
    dh, dw = h * fh - th, w * fw - tw
    if dh or dw:
        x = L.Cropping2D(((0, dh), (0, dw)), name=f"{name}_crop")(x)
    return x
