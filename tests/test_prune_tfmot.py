"""TF-MOT pruning as users rely on it: targets reached per layer, globally, and block by block."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.prune.lamp import lamp_scores, layer_sparsities, magnitude_mask
from edgeprune.prune.tfmot import TfmotConfig, derive_schedule, parse_pattern, tfmot_prune


@pytest.fixture(scope="module")
def digits_fast():
    """Digits with a smaller training split: fine-tunes of a few steps for the tests."""
    from edgeprune.data import load_dataset

    return load_dataset("digits", limit_train=512)


def kernel_sparsity(model) -> dict[str, float]:
    return {layer.name: float(np.mean(layer.get_weights()[0] == 0)) for layer in model.layers
            if layer.__class__.__name__ in ("Conv2D", "Dense")}


def test_lamp_scores_follow_the_definition(rng):
    kernel = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    scores = lamp_scores(kernel)
    squared = np.sort(np.square(kernel.astype(np.float64)).ravel())
    brute = {float(squared[u]): squared[u] / squared[u:].sum() for u in range(squared.size)}
    for weight, score in zip(kernel.ravel(), scores.ravel(), strict=True):
        assert score == pytest.approx(brute[float(np.float64(weight) ** 2)])
    assert scores.max() == pytest.approx(1.0)  # the largest weight of a layer always survives
    order = np.argsort(np.abs(kernel).ravel())
    assert np.all(np.diff(scores.ravel()[order]) >= 0)  # monotone in magnitude inside a layer


def test_layer_sparsities_local_global_lamp(rng):
    # Layers on very different scales: global magnitude empties the small one, LAMP does not.
    kernels = {"small": rng.normal(scale=0.01, size=(3, 3, 8, 8)), "big": rng.normal(size=(64, 10)),
               "mid": rng.normal(scale=0.1, size=(3, 3, 8, 16))}
    sizes = {name: k.size for name, k in kernels.items()}
    total = sum(sizes.values())
    assert set(layer_sparsities(kernels, 0.6, "local").values()) == {0.6}
    for scope in ("global", "lamp"):
        per_layer = layer_sparsities(kernels, 0.6, scope)
        zeros = sum(per_layer[name] * sizes[name] for name in kernels)
        assert zeros / total == pytest.approx(0.6, abs=0.01)
    glob = layer_sparsities(kernels, 0.6, "global")
    assert glob["small"] == pytest.approx((sizes["small"] - 1) / sizes["small"])  # keeps one weight
    # LAMP is invariant to a layer's scale: rescaling one layer changes nothing.
    lamp = layer_sparsities(kernels, 0.6, "lamp")
    assert lamp["small"] < 0.9
    assert layer_sparsities({**kernels, "small": kernels["small"] * 1e3}, 0.6, "lamp") == lamp
    with pytest.raises(EdgepruneError, match="sparsity must be in"):
        layer_sparsities(kernels, 1.0, "lamp")


def test_magnitude_mask_keeps_the_largest():
    kernel = np.array([[0.1, -5.0], [0.3, -0.2]], np.float32)
    assert magnitude_mask(kernel, 0.5).tolist() == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("kind", ["constant", "polynomial"])
def test_derived_schedule_reaches_target_within_the_fine_tune(kind):
    for total in range(2, 200, 7):
        steps = derive_schedule(kind, total, steps_per_epoch=max(1, total // 3))
        assert 1 <= steps.begin_step <= steps.end_step <= total
        # TF-MOT updates masks at begin + k * frequency <= end: the last update is end itself.
        assert (steps.end_step - steps.begin_step) % steps.frequency == 0
        if kind == "polynomial":
            assert steps.end_step > steps.begin_step and steps.updates >= 2
    with pytest.raises(EdgepruneError, match="at least 2 fine-tuning steps"):
        derive_schedule("polynomial", 1, 1)


@pytest.mark.parametrize("bad", [
    dict(sparsity=0.0), dict(sparsity=1.0), dict(sparsity=-0.2), dict(sparsity=1.5),
    dict(sparsity=None), dict(sparsity=0.5, pattern=(2, 4)), dict(sparsity=None, pattern=(4, 4)),
    dict(sparsity=None, pattern=(2, 4), scope="lamp"), dict(schedule="cubic"), dict(scope="layer"),
    dict(epochs=-1), dict(learning_rate=0.0), dict(frequency=0),
], ids=repr)
def test_config_refuses_bad_values(bad):
    with pytest.raises(EdgepruneError):
        TfmotConfig(**bad)


def test_parse_pattern():
    assert parse_pattern("2:4") == (2, 4)
    assert parse_pattern(None) is None
    for text in ("4:2", "2-4", "0:4", "a:b"):
        with pytest.raises(EdgepruneError, match="pattern"):
            parse_pattern(text)


def test_local_polynomial_reaches_target_every_layer_and_keeps_accuracy(digits_model, digits_fast):
    from edgeprune.train import accuracy

    _, model, result = digits_model
    base_weights = [w.copy() for w in model.get_weights()]
    config = TfmotConfig(sparsity=0.6, schedule="polynomial", scope="local", epochs=2, batch_size=64)
    pruned, info = tfmot_prune(model, digits_fast, config, progress=False)
    measured = kernel_sparsity(pruned)
    assert set(measured) == set(info["layer_targets"]) == {"block1_conv", "block2_conv", "block3_conv", "logits"}
    for name, sparsity in measured.items():
        assert abs(sparsity - 0.6) <= 0.01, (name, sparsity)
    schedule = info["schedule"]
    assert schedule["kind"] == "polynomial" and schedule["end_step"] <= schedule["total_steps"] == 16
    x, y = digits_fast.split("test")
    assert accuracy(pruned, x, y) >= result["test_accuracy"] - 0.08
    assert "PruneLowMagnitude" not in {layer.__class__.__name__ for layer in pruned.layers}
    # The base model is untouched (fine-tuning works on a copy).
    assert all(np.array_equal(a, b) for a, b in zip(base_weights, model.get_weights(), strict=True))


# One-shot here to keep the suite fast: per-layer targets realised by fine-tuning TF-MOT
# wrappers are exercised by test_prune_cli (global, constant schedule, one epoch).
@pytest.mark.parametrize("scope,schedule,epochs", [("global", "constant", 0), ("lamp", "polynomial", 0)])
def test_global_and_lamp_reach_the_global_count(digits_model, digits_fast, scope, schedule, epochs):
    _, model, _ = digits_model
    config = TfmotConfig(sparsity=0.75, scope=scope, schedule=schedule, epochs=epochs, batch_size=64)
    pruned, info = tfmot_prune(model, digits_fast, config, progress=False)
    kernels = {layer.name: layer.get_weights()[0] for layer in pruned.layers
               if layer.__class__.__name__ in ("Conv2D", "Dense")}
    zeros = sum(int((k == 0).sum()) for k in kernels.values())
    total = sum(k.size for k in kernels.values())
    assert abs(zeros / total - 0.75) <= 0.01
    per_layer = kernel_sparsity(pruned)
    for name, target in info["layer_targets"].items():
        assert abs(per_layer[name] - target) <= 0.01  # each layer realised at its own target
    if scope == "lamp":  # LAMP: non-uniform layer-wise sparsity
        assert max(per_layer.values()) - min(per_layer.values()) > 0.3


def test_two_four_pattern_block_by_block(digits_model, digits_fast):
    _, model, _ = digits_model
    config = TfmotConfig(sparsity=None, pattern=(2, 4), epochs=1, batch_size=64)
    pruned, info = tfmot_prune(model, digits_fast, config, progress=False)
    # block1_conv sees 1 input channel: no group of 4, left dense and reported.
    assert [s["layer"] for s in info["skipped_layers"]] == ["block1_conv"]
    checked = 0
    for layer in pruned.layers:
        if layer.name not in info["layer_targets"]:
            continue
        kernel = layer.get_weights()[0]
        in_channels = kernel.shape[-2]
        assert in_channels % 4 == 0
        # TF-MOT groups 4 consecutive input channels at each (output, row, column) position.
        rows = np.transpose(kernel, (3, 0, 1, 2)).reshape(-1, in_channels) if kernel.ndim == 4 else kernel.T
        groups = rows.reshape(-1, 4)
        assert np.all((groups == 0).sum(axis=1) >= 2), layer.name
        checked += len(groups)
    assert checked > 1000 and set(info["pattern_violations"].values()) == {0}
    assert kernel_sparsity(pruned)["block1_conv"] == 0.0


def test_one_shot_prunes_without_training(digits_model, digits_fast):
    _, model, _ = digits_model
    pruned, info = tfmot_prune(model, digits_fast, TfmotConfig(sparsity=0.9, epochs=0), progress=False)
    assert info["schedule"]["kind"] == "one-shot"
    for name, sparsity in kernel_sparsity(pruned).items():
        assert abs(sparsity - 0.9) <= 0.01, name
    # Surviving weights are the base model's largest, unchanged.
    base = model.get_layer("block3_conv").get_weights()[0]
    kept = pruned.get_layer("block3_conv").get_weights()[0]
    assert np.array_equal(kept[kept != 0], base[kept != 0])
    assert np.abs(base[kept == 0]).max() <= np.abs(base[kept != 0]).min()


def _tiny_model(*, with_op: bool, filters: int = 8):
    import tensorflow as tf

    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(filters, 3, padding="same", name="conv")(inputs)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = tf.reduce_mean(x, axis=[1, 2]) if with_op else tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(10, name="logits")(x))


def test_model_with_tf_op_lambda_prunes(digits_fast):
    model = _tiny_model(with_op=True)
    assert "TFOpLambda" in {layer.__class__.__name__ for layer in model.layers}
    config = TfmotConfig(sparsity=0.5, schedule="constant", epochs=1, batch_size=128)
    pruned, info = tfmot_prune(model, digits_fast, config, progress=False)
    measured = kernel_sparsity(pruned)
    assert set(measured) == {"conv", "logits"} and all(abs(s - 0.5) <= 0.01 for s in measured.values())
    assert float(np.mean(pruned.get_layer("depthwise").get_weights()[0] == 0)) == 0.0
    assert {s["layer"] for s in info["skipped_layers"]} == {"depthwise"}


def test_refuses_pattern_without_eligible_layers_and_subclassed_models(digits_fast):
    import tensorflow as tf

    narrow = _tiny_model(with_op=False, filters=3)  # conv sees 1 channel, Dense sees 3
    with pytest.raises(EdgepruneError, match="no layer eligible for 2:4"):
        tfmot_prune(narrow, digits_fast, TfmotConfig(sparsity=None, pattern=(2, 4), epochs=0), progress=False)

    class Subclassed(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(10)

        def call(self, x):
            return self.dense(tf.reshape(x, (-1, 64)))

    with pytest.raises(EdgepruneError, match="subclassed"):
        tfmot_prune(Subclassed(), digits_fast, TfmotConfig(sparsity=0.5, epochs=0), progress=False)
