"""ResNets for small images: CIFAR ResNet-8/20 (He et al. 2016, sec. 4.2) and ResNet-18/50
with a 3x3 stride-1 stem and no max-pool, the usual 32x32 adaptation."""

from __future__ import annotations

import tensorflow as tf

from edgeprune.models.layers import channels, classifier_head, conv_bn, layers, model, stem_input


def _basic_block(x: tf.Tensor, filters: int, strides: int, name: str) -> tf.Tensor:
    shortcut = x
    y = conv_bn(x, filters, 3, strides=strides, name=f"{name}_1")
    y = conv_bn(y, filters, 3, name=f"{name}_2", relu=False)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, strides=strides, name=f"{name}_short", relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def _bottleneck_block(x: tf.Tensor, filters: int, strides: int, name: str) -> tf.Tensor:
    expanded = filters * 4
    shortcut = x
    y = conv_bn(x, filters, 1, name=f"{name}_1")
    y = conv_bn(y, filters, 3, strides=strides, name=f"{name}_2")
    y = conv_bn(y, expanded, 1, name=f"{name}_3", relu=False)
    if strides != 1 or shortcut.shape[-1] != expanded:
        shortcut = conv_bn(x, expanded, 1, strides=strides, name=f"{name}_short", relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def _resnet(name: str, block, stage_filters, stage_blocks, stem_filters: int, *, input_shape,
            num_classes: int, width: float) -> tf.keras.Model:
    inputs, x = stem_input(input_shape)
    x = conv_bn(x, channels(stem_filters, width), 3, name="stem")
    for stage, (filters, blocks) in enumerate(zip(stage_filters, stage_blocks, strict=True), start=1):
        for index in range(blocks):
            strides = 2 if stage > 1 and index == 0 else 1
            x = block(x, channels(filters, width), strides, f"stage{stage}_block{index + 1}")
    return model(inputs, classifier_head(x, num_classes), name)


def resnet8(**kwargs) -> tf.keras.Model:
    return _resnet("resnet8", _basic_block, (16, 32, 64), (1, 1, 1), 16, **kwargs)


def resnet20(**kwargs) -> tf.keras.Model:
    return _resnet("resnet20", _basic_block, (16, 32, 64), (3, 3, 3), 16, **kwargs)


def resnet18(**kwargs) -> tf.keras.Model:
    return _resnet("resnet18", _basic_block, (64, 128, 256, 512), (2, 2, 2, 2), 64, **kwargs)


def resnet50(**kwargs) -> tf.keras.Model:
    return _resnet("resnet50", _bottleneck_block, (64, 128, 256, 512), (3, 4, 6, 3), 64, **kwargs)
