"""The zoo builds for CIFAR-10 and CIFAR-100 shapes and returns logits of the right shape."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.models import ARCHITECTURES, build_model


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_each_architecture_builds_for_10_and_100_classes(arch):
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    for num_classes in (10, 100):
        model = build_model(arch, input_shape=(32, 32, 3), num_classes=num_classes)
        logits = np.asarray(model(x, training=False))
        assert logits.shape == (2, num_classes)
        # Logits, not probabilities: rows do not sum to one.
        assert not np.allclose(logits.sum(axis=1), 1.0)


def test_width_multiplier_shrinks_models():
    full = build_model("resnet20").count_params()
    quarter = build_model("resnet20", width=0.5).count_params()
    assert quarter < full / 2.5


def test_small_inputs_build():
    model = build_model("vgg16", input_shape=(8, 8, 1), num_classes=10, width=0.25)
    assert model(np.zeros((1, 8, 8, 1), np.float32)).shape == (1, 10)


def test_bn_momentum_suits_short_runs():
    model = build_model("resnet8")
    momenta = {layer.momentum for layer in model.layers if layer.__class__.__name__ == "BatchNormalization"}
    assert momenta == {0.9}


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "alexnet"}, "unknown architecture"),
    ({"arch": "resnet8", "width": 0}, "width"),
    ({"arch": "resnet8", "num_classes": 1}, "num_classes"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(EdgepruneError, match=message):
        build_model(**kwargs)
