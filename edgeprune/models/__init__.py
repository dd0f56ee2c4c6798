"""Keras model zoo (functional API) for small images, with a width multiplier.

Every model takes float32 NHWC images in [0, 1] (a Rescaling layer inside maps them to
[-1, 1]) and returns logits: no softmax, so attacks get useful gradients. BatchNormalization
uses momentum 0.9: with Keras' default 0.99 a short run on a few thousand images leaves the
moving statistics far behind (measured: ResNet-20 test accuracy 0.30 vs 0.53).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edgeprune.errors import EdgepruneError

if TYPE_CHECKING:
    import tensorflow as tf

# name -> (module, builder function, one-line description)
ARCHITECTURES: dict[str, tuple[str, str, str]] = {
    "smallcnn": ("small", "smallcnn", "3-conv CNN, ~25k params: tests and demos"),
    "resnet8": ("resnet", "resnet8", "CIFAR ResNet-8 (basic blocks, 16/32/64 filters)"),
    "resnet20": ("resnet", "resnet20", "CIFAR ResNet-20 (basic blocks, 16/32/64 filters)"),
    "resnet18": ("resnet", "resnet18", "ResNet-18 for 32x32 (3x3 stem, no max-pool)"),
    "resnet50": ("resnet", "resnet50", "ResNet-50 for 32x32 (bottleneck blocks)"),
    "vgg16": ("vgg", "vgg16", "VGG-16 with BatchNorm, global-average head"),
    "vgg19": ("vgg", "vgg19", "VGG-19 with BatchNorm, global-average head"),
    "densenet121": ("densenet", "densenet121", "DenseNet-121 (growth 32) for 32x32"),
    "mobilenet": ("mobilenet", "mobilenet", "MobileNet v1 for 32x32 (stride-1 stem)"),
}


def build_model(arch: str, *, input_shape: tuple[int, int, int] = (32, 32, 3),
                num_classes: int = 10, width: float = 1.0) -> "tf.keras.Model":
    """Build an untrained zoo model by name."""
    if arch not in ARCHITECTURES:
        raise EdgepruneError(
            f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}"
        )
    if not 0 < width <= 4:
        raise EdgepruneError(f"width multiplier must be in (0, 4], got {width}")
    if num_classes < 2:
        raise EdgepruneError(f"num_classes must be at least 2, got {num_classes}")
    if len(input_shape) != 3:
        raise EdgepruneError(f"input_shape must be (height, width, channels), got {input_shape}")
    import importlib

    module_name, function_name, _ = ARCHITECTURES[arch]
    module = importlib.import_module(f"edgeprune.models.{module_name}")
    builder: Callable[..., tf.keras.Model] = getattr(module, function_name)
    return builder(input_shape=tuple(input_shape), num_classes=num_classes, width=width)
