"""DenseNet-121 (Huang et al. 2017) for small images: BN-ReLU-conv bottleneck layers,
growth rate 32 x width, compression 0.5, 3x3 stride-1 stem."""

from __future__ import annotations

import tensorflow as tf

from edgeprune.models.layers import BN_EPSILON, BN_MOMENTUM, channels, layers, model, stem_input


def _bn_relu_conv(x: tf.Tensor, filters: int, kernel: int, name: str) -> tf.Tensor:
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.Conv2D(filters, kernel, padding="same", use_bias=False,
                         kernel_initializer="he_normal", name=f"{name}_conv")(x)


def densenet121(*, input_shape, num_classes: int, width: float = 1.0,
                blocks=(6, 12, 24, 16)) -> tf.keras.Model:
    growth = channels(32, width)
    inputs, x = stem_input(input_shape)
    x = layers.Conv2D(2 * growth, 3, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name="stem_conv")(x)
    for block_index, layer_count in enumerate(blocks, start=1):
        for layer_index in range(1, layer_count + 1):
            name = f"dense{block_index}_layer{layer_index}"
            y = _bn_relu_conv(x, 4 * growth, 1, f"{name}_1")
            y = _bn_relu_conv(y, growth, 3, f"{name}_2")
            x = layers.Concatenate(name=f"{name}_concat")([x, y])
        if block_index < len(blocks):
            name = f"transition{block_index}"
            x = _bn_relu_conv(x, int(x.shape[-1]) // 2, 1, name)
            x = layers.AveragePooling2D(2, padding="same", name=f"{name}_pool")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return model(inputs, layers.Dense(num_classes, name="logits")(x), "densenet121")
