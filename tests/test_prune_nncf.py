"""NNCF filter pruning: the target level is reached with really-zero filters, and the
shrunk model predicts what the masked model predicts."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.prune.nncf_filter import NNCFFilterConfig, nncf_config_dict


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"target": 1.0}, "target must be in \\(0, 1\\), got 1.0"),
    ({"target": 0.0}, "target must be in \\(0, 1\\), got 0.0"),
    ({"target": None, "flops_target": 1.5}, "flops target must be in \\(0, 1\\), got 1.5"),
    ({"target": 0.5, "flops_target": 0.5}, "exactly one"),
    ({"criterion": "l3"}, "unknown filter criterion 'l3'"),
    ({"init": 0.6, "target": 0.5}, "init must not exceed"),
    ({"epochs": 0}, "epochs must be at least 1, got 0"),
    ({"epochs": 3, "steps": 4}, "pruning steps must be in \\[1, epochs=3\\]"),
    ({"learning_rate": 0.0}, "learning rate must be > 0"),
], ids=repr)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(EdgepruneError, match=match):
        NNCFFilterConfig(**kwargs)


def test_schedule_reaches_the_target_within_the_fine_tuning():
    config = NNCFFilterConfig(target=0.5, init=0.1, epochs=5)
    levels = [config.level_at_epoch(epoch) for epoch in range(config.epochs)]
    assert levels[0] == pytest.approx(0.1)
    assert levels == sorted(levels)
    assert levels[-2:] == [0.5, 0.5]  # the last epoch fine-tunes at the target
    nncf = nncf_config_dict(config, (8, 8, 1))["compression"]
    assert nncf["pruning_init"] == 0.1 and "pruning_init" not in nncf["params"]
    assert nncf["params"]["pruning_steps"] == 4 < 100
    assert nncf["params"]["filter_importance"] == "L2"
    assert nncf["params"]["prune_first_conv"] and nncf["params"]["prune_downsample_convs"]
    flops = nncf_config_dict(NNCFFilterConfig(target=None, flops_target=0.3, criterion="gm"), (8, 8, 1))
    assert flops["compression"]["params"]["pruning_flops_target"] == 0.3
    assert "pruning_target" not in flops["compression"]["params"]
    assert flops["compression"]["params"]["filter_importance"] == "geometric_median"


@pytest.fixture(scope="module")
def nncf_pruned():
    """resnet8 (16/32/64 filters) pruned to 0.5 with NNCF on 128 digits, 2 epochs."""
    from edgeprune.data import load_dataset
    from edgeprune.models import build_model
    from edgeprune.prune.nncf_filter import nncf_filter_prune

    data = load_dataset("digits", limit_train=128, limit_test=64)
    base = build_model("resnet8", input_shape=data.input_shape, num_classes=data.num_classes, width=1.0)
    config = NNCFFilterConfig(criterion="l2", target=0.5, epochs=2, batch_size=64, learning_rate=0.01)
    masked, info = nncf_filter_prune(base, data, config, progress=False)
    return data, base, masked, info


def test_nncf_zeroes_filters_at_the_target_level(nncf_pruned):
    _, base, masked, info = nncf_pruned
    assert info["level_requested"] == 0.5
    assert info["level_reached"] == pytest.approx(0.5)
    assert info["zero_filter_fraction"] == pytest.approx(0.5, abs=0.05)
    # First conv and stride-2 convs are pruned too, so FLOPs fall well beyond the 40% that
    # NNCF's defaults give.
    assert info["flops_pruning_level"] > 0.6
    assert {layer["name"] for layer in info["prunable_layers"]} >= {"stem_conv", "stage2_block1_1_conv",
                                                                     "stage2_block1_short_conv"}
    assert not info["left_alone"]
    for layer in info["prunable_layers"]:
        conv = masked.get_layer(layer["name"])
        kernel = conv.get_weights()[0]
        zero = np.abs(kernel.reshape(-1, kernel.shape[-1])).max(axis=0) == 0
        assert zero.sum() == layer["filters_zero"]
        assert zero.mean() == pytest.approx(0.5, abs=0.05), layer["name"]
        gamma, beta = masked.get_layer(layer["name"].replace("_conv", "_bn")).get_weights()[:2]
        assert not gamma[zero].any() and not beta[zero].any()
    assert type(masked).__name__ == "Functional"
    assert not any("nncf" in type(layer).__module__.lower() for layer in masked.layers)


def test_nncf_pruned_model_shrinks_to_the_same_predictions(nncf_pruned):
    from edgeprune.modelstats import model_stats
    from edgeprune.prune.shrink import shrink_model

    data, base, masked, info = nncf_pruned
    shrunk, shrink_info = shrink_model(masked)
    x_test, _ = data.split("test")
    masked_logits = masked.predict(x_test, batch_size=128, verbose=0)
    shrunk_logits = shrunk.predict(x_test, batch_size=128, verbose=0)
    assert np.abs(masked_logits - shrunk_logits).max() < 1e-4
    assert not shrink_info["skipped"]
    assert shrink_info["params_after"] < 0.35 * shrink_info["params_before"]
    macs_base, macs_shrunk = model_stats(base)["macs"], model_stats(shrunk)["macs"]
    assert macs_shrunk / macs_base == pytest.approx(1 - info["flops_pruning_level"], abs=0.02)


def test_subclassed_model_is_refused(digits):
    import tensorflow as tf

    from edgeprune.prune.nncf_filter import nncf_filter_prune

    class Subclassed(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = tf.keras.layers.Conv2D(8, 3)
            self.pool = tf.keras.layers.GlobalAveragePooling2D()
            self.head = tf.keras.layers.Dense(10)

        def call(self, x):
            return self.head(self.pool(self.conv(x)))

    model = Subclassed()
    model(np.zeros((1, *digits.input_shape), "float32"))
    with pytest.raises(EdgepruneError, match="subclassed"):
        nncf_filter_prune(model, digits, NNCFFilterConfig(epochs=1), progress=False)


# architecture -> (constructor arguments, pixel scale it expects: 255 with built-in preprocessing)
APPLICATIONS = {
    "MobileNetV2": ({"alpha": 0.35}, 1.0),
    "MobileNetV3Small": ({"alpha": 0.75, "include_preprocessing": True}, 255.0),
    "MobileNetV3Large": ({"alpha": 0.75, "include_preprocessing": True}, 255.0),
    "EfficientNetB0": ({}, 255.0),
    "ResNet50V2": ({}, 1.0),
    "DenseNet121": ({}, 1.0),
    "NASNetMobile": ({}, 1.0),
}

# NNCF (2.19, TensorFlow backend) refuses every node group of NASNetMobile's cells.
REFUSED = {"NASNetMobile": "NNCF pruned no filters: it left all .* conv layers alone \\(first: "}


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(APPLICATIONS))
def test_keras_applications_prune_and_shrink_to_the_same_logits(arch, cifar_sample_path):
    """NNCF filter pruning then shrinking on keras.applications (fresh weights, 32x32, one
    short fine-tuning epoch): the shrunk model gives the masked model's logits, or a stage
    refuses in one line naming what blocks it."""
    import tensorflow as tf

    from edgeprune.data import load_dataset
    from edgeprune.prune.nncf_filter import nncf_filter_prune
    from edgeprune.prune.shrink import shrink_model

    kwargs, scale = APPLICATIONS[arch]
    data = load_dataset(f"npz:{cifar_sample_path}", limit_train=64, limit_test=32)
    base = getattr(tf.keras.applications, arch)(input_shape=(32, 32, 3), weights=None, classes=10,
                                                classifier_activation=None, **kwargs)
    config = NNCFFilterConfig(target=0.5, epochs=1, batch_size=32)
    if arch in REFUSED:
        with pytest.raises(EdgepruneError, match=REFUSED[arch]) as refusal:
            nncf_filter_prune(base, data, config, progress=False)
        assert "\n" not in str(refusal.value)
        return
    masked, info = nncf_filter_prune(base, data, config, progress=False)
    shrunk, shrink_info = shrink_model(masked)
    assert info["zero_filter_fraction"] == pytest.approx(0.5, abs=0.1)
    x_test, _ = data.split("test")
    x = (x_test * scale).astype("float32")
    masked_logits = masked(x, training=False).numpy()
    assert np.abs(masked_logits - shrunk(x, training=False).numpy()).max() < 1e-4
    assert shrink_info["params_after"] < 0.75 * shrink_info["params_before"]


def test_nncf_names_map_to_layers_whose_names_hold_slashes():
    """MobileNetV3's layers are named `expanded_conv/depthwise`: NNCF's node and weight names
    map back to the longest layer name, not to the text before the first slash."""
    from edgeprune.prune.nncf_filter import _group_refusals, _layer_of

    layers = ["Conv", "Conv/BatchNorm", "expanded_conv/depthwise", "expanded_conv/project", "stem_conv"]
    assert _layer_of("expanded_conv/depthwise", layers) == "expanded_conv/depthwise"
    assert _layer_of("expanded_conv/project/kernel", layers) == "expanded_conv/project"
    assert _layer_of("model/Conv/BatchNorm/FusedBatchNormV3", layers) == "Conv/BatchNorm"
    assert _layer_of("model/stem_conv/Conv2D", layers) == "stem_conv"
    message = ("Could not prune node group [model/stem_conv/Conv2D, model/expanded_conv/project/Conv2D], "
               "reason: output of a concat.")
    assert _group_refusals([message], layers) == [{"layers": ["expanded_conv/project", "stem_conv"],
                                                   "reason": "output of a concat"}]
