"""VGG-16/19 with BatchNorm for small images; 'M' is a 2x2 max-pool (same padding, so inputs
smaller than 32x32 still build)."""

from __future__ import annotations

import tensorflow as tf

from edgeprune.models.layers import channels, classifier_head, conv_bn, layers, model, stem_input

CONFIGS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def _vgg(name: str, *, input_shape, num_classes: int, width: float) -> tf.keras.Model:
    inputs, x = stem_input(input_shape)
    block, conv = 1, 1
    for item in CONFIGS[name]:
        if item == "M":
            x = layers.MaxPooling2D(2, padding="same", name=f"block{block}_pool")(x)
            block, conv = block + 1, 1
        else:
            x = conv_bn(x, channels(int(item), width), 3, name=f"block{block}_{conv}")
            conv += 1
    return model(inputs, classifier_head(x, num_classes), name)


def vgg16(**kwargs) -> tf.keras.Model:
    return _vgg("vgg16", **kwargs)


def vgg19(**kwargs) -> tf.keras.Model:
    return _vgg("vgg19", **kwargs)
