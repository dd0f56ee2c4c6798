"""MobileNet v1 (Howard et al. 2017) for small images. The stem conv has stride 1: with the
ImageNet stride-2 stem a 32x32 input ends in a 1x1 map and learns poorly (measured 0.19)."""

from __future__ import annotations

import tensorflow as tf

from edgeprune.models.layers import (BN_EPSILON, BN_MOMENTUM, channels, classifier_head, conv_bn,
                                     layers, model, stem_input)

# (pointwise filters, depthwise stride) for the 13 depthwise-separable blocks.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def mobilenet(*, input_shape, num_classes: int, width: float = 1.0) -> tf.keras.Model:
    inputs, x = stem_input(input_shape)
    x = conv_bn(x, channels(32, width), 3, name="stem")
    for index, (filters, strides) in enumerate(BLOCKS, start=1):
        name = f"block{index}"
        x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                   name=f"{name}_dw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                      name=f"{name}_dw_bn")(x)
        x = layers.ReLU(name=f"{name}_dw_relu")(x)
        x = conv_bn(x, channels(filters, width), 1, name=f"{name}_pw")
    return model(inputs, classifier_head(x, num_classes), "mobilenet")
