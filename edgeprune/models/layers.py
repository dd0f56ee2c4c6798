"""Building blocks shared by the zoo: named conv-BN-ReLU units and the input/head pieces."""

from __future__ import annotations

import tensorflow as tf

layers = tf.keras.layers
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3


def channels(base: int, width: float, *, divisor: int = 8, minimum: int = 8) -> int:
    """Scale a channel count by `width`, rounded to a multiple of `divisor` (hardware friendly)."""
    scaled = max(minimum, int(base * width + divisor / 2) // divisor * divisor)
    if scaled < 0.9 * base * width:  # never round down by more than 10%
        scaled += divisor
    return scaled


def stem_input(input_shape: tuple[int, int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Model input in [0, 1] and its [-1, 1] rescaled tensor."""
    inputs = layers.Input(shape=input_shape, name="input")
    return inputs, layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)


def conv_bn(x: tf.Tensor, filters: int, kernel: int, *, strides: int = 1, name: str,
            relu: bool = True) -> tf.Tensor:
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def classifier_head(x: tf.Tensor, num_classes: int) -> tf.Tensor:
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(num_classes, name="logits")(x)


def model(inputs: tf.Tensor, outputs: tf.Tensor, name: str) -> tf.keras.Model:
    return tf.keras.Model(inputs, outputs, name=name)
