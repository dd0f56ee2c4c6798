"""The small fast architecture for tests and demos (seconds per epoch on a laptop CPU)."""

from __future__ import annotations

import tensorflow as tf

from edgeprune.models.layers import channels, classifier_head, conv_bn, model, stem_input


def smallcnn(*, input_shape, num_classes: int, width: float = 1.0) -> tf.keras.Model:
    inputs, x = stem_input(input_shape)
    x = conv_bn(x, channels(16, width), 3, name="block1")
    x = conv_bn(x, channels(32, width), 3, strides=2, name="block2")
    x = conv_bn(x, channels(64, width), 3, strides=2, name="block3")
    return model(inputs, classifier_head(x, num_classes), "smallcnn")
