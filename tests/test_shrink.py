"""Physical shrinking: the shrunk model predicts what the masked model predicts, and is smaller.

Filters are zeroed by hand the way NNCF's strip leaves them (conv kernel slice and the
following BatchNorm's gamma/beta), on models with randomised BatchNorm statistics so a
wrongly cut or wrongly folded channel shows in the logits.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError

TOLERANCE = 1e-4


def _randomise_batchnorm(model, rng) -> None:
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.3, beta.shape).astype("float32"),
                               rng.normal(0, 0.3, mean.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, variance.shape).astype("float32")])


def _zero_filters(model, layer_name: str, channels, *, batchnorm: bool = True) -> None:
    """Zero output filters of a conv (and its BN's gamma/beta, as NNCF's strip does)."""
    layer = model.get_layer(layer_name)
    weights = layer.get_weights()
    weights[0][..., list(channels)] = 0
    layer.set_weights(weights)
    bn_name = layer_name.replace("_conv", "_bn")
    if batchnorm and bn_name != layer_name and bn_name in [lay.name for lay in model.layers]:
        bn = model.get_layer(bn_name)
        bn_weights = bn.get_weights()
        bn_weights[0][list(channels)] = 0
        bn_weights[1][list(channels)] = 0
        bn.set_weights(bn_weights)


def _max_logit_diff(masked, shrunk, rng, shape) -> float:
    x = rng.uniform(0, 1, (16, *shape)).astype("float32")
    return float(np.abs(masked(x, training=False).numpy() - shrunk(x, training=False).numpy()).max())


def _filters(info: dict) -> dict[str, tuple[int, int]]:
    return {item["name"]: (item["filters"], item["filters_kept"]) for item in info["layers"]}


def test_residual_model_cuts_coupled_channels_in_every_branch(rng):
    from edgeprune.models import build_model
    from edgeprune.modelstats import model_stats
    from edgeprune.prune.shrink import shrink_model

    model = build_model("resnet8", input_shape=(8, 8, 3), num_classes=10, width=1.0)
    _randomise_batchnorm(model, rng)
    # Residual stage 1 (stem -> block1 add): channel c is dead only if dead in both branches.
    for name in ("stem_conv", "stage1_block1_2_conv"):
        _zero_filters(model, name, range(0, 8))
    _zero_filters(model, "stage1_block1_2_conv", [8, 9])  # dead in one branch only: must stay
    for name in ("stage2_block1_short_conv", "stage2_block1_2_conv"):
        _zero_filters(model, name, range(0, 16))
    _zero_filters(model, "stage1_block1_1_conv", range(4, 12))  # inner convs: free to cut
    _zero_filters(model, "stage3_block1_1_conv", range(0, 32))
    shrunk, info = shrink_model(model)

    assert _max_logit_diff(model, shrunk, rng, (8, 8, 3)) < TOLERANCE
    filters = _filters(info)
    assert filters["stem_conv"] == (16, 8)
    assert filters["stage1_block1_2_conv"] == (16, 8)
    assert filters["stage1_block1_1_conv"] == (16, 8)
    assert filters["stage2_block1_short_conv"] == (32, 16)
    assert filters["stage3_block1_1_conv"] == (64, 32)
    kept = {item["layer"]: item for item in info["skipped"]}
    assert kept["stage1_block1_2_conv"]["zero_filters_kept"] == 2
    assert "live" in kept["stage1_block1_2_conv"]["reason"]
    assert model_stats(shrunk)["macs"] < 0.6 * model_stats(model)["macs"]
    assert info["params_after"] < info["params_before"]


def test_densenet_concat_cuts_at_channel_offsets(rng):
    from edgeprune.models.densenet import densenet121
    from edgeprune.modelstats import model_stats
    from edgeprune.prune.shrink import shrink_model

    model = densenet121(input_shape=(8, 8, 3), num_classes=10, width=0.25, blocks=(2, 2))
    _randomise_batchnorm(model, rng)
    # DenseNet is BN-ReLU-conv: a dead filter meets the *consumers'* BNs, whose nonzero beta
    # turns it into a constant that the 1x1 bottleneck/transition convs and the head absorb
    # as bias. Before a 3x3 conv the BN must be zeroed too (as NNCF does for its groups).
    for layer in model.layers:
        if layer.__class__.__name__ == "Conv2D":
            filters = layer.get_weights()[0].shape[-1]
            _zero_filters(model, layer.name, range(1, filters, 2), batchnorm=False)
            if layer.name.endswith("_1_conv"):
                bn = model.get_layer(layer.name.replace("_1_conv", "_2_bn"))
                gamma, beta, mean, variance = bn.get_weights()
                gamma[1::2], beta[1::2] = 0, 0
                bn.set_weights([gamma, beta, mean, variance])
    shrunk, info = shrink_model(model)

    assert _max_logit_diff(model, shrunk, rng, (8, 8, 3)) < TOLERANCE
    assert model_stats(shrunk)["macs"] < 0.45 * model_stats(model)["macs"]
    assert info["params_after"] < 0.5 * info["params_before"]
    before = model.get_layer("dense1_layer2_concat").output_shape[-1]
    assert shrunk.get_layer("dense1_layer2_concat").output_shape[-1] == before // 2
    assert not info["skipped"]


def test_depthwise_channels_follow_the_pointwise_filters(rng):
    from edgeprune.models import build_model
    from edgeprune.modelstats import model_stats
    from edgeprune.prune.shrink import shrink_model

    model = build_model("mobilenet", input_shape=(8, 8, 3), num_classes=10, width=0.25)
    _randomise_batchnorm(model, rng)
    for layer in model.layers:
        if layer.name.endswith("_pw_conv") or layer.name == "stem_conv":
            filters = layer.get_weights()[0].shape[-1]
            _zero_filters(model, layer.name, range(0, filters, 2))
    shrunk, info = shrink_model(model)

    assert _max_logit_diff(model, shrunk, rng, (8, 8, 3)) < TOLERANCE
    filters = _filters(info)
    assert filters["block5_dw"] == (64, 32)  # follows block4_pw_conv's kept filters
    assert shrunk.get_layer("block5_dw").get_weights()[0].shape[2] == 32
    # The depthwise BN of a dead channel has nonzero beta: its constant is folded into the
    # 1x1 pointwise conv, which gains a bias.
    assert shrunk.get_layer("block5_pw_conv").use_bias
    assert model_stats(shrunk)["macs"] < 0.4 * model_stats(model)["macs"]


def test_nonzero_constant_into_3x3_conv_is_kept_with_reason(rng):
    """A zeroed kernel whose BN beta stays nonzero makes a constant channel; ReLU maps negative
    constants to 0 (removable) and keeps positive ones, which a zero-padded 3x3 conv cannot
    absorb exactly: those filters stay and the report says why."""
    from edgeprune.models import build_model
    from edgeprune.prune.shrink import shrink_model

    model = build_model("smallcnn", input_shape=(8, 8, 1), num_classes=10, width=1.0)
    bn = model.get_layer("block1_bn")
    gamma, beta, mean, variance = bn.get_weights()
    mean[:], variance[:] = 0.0, 1.0
    beta[:4], beta[4:8] = 0.7, -0.7  # filters 0-3 -> relu(0.7) > 0, filters 4-7 -> 0
    bn.set_weights([gamma, beta, mean, variance])
    _zero_filters(model, "block1_conv", range(8), batchnorm=False)
    shrunk, info = shrink_model(model)

    assert _max_logit_diff(model, shrunk, rng, (8, 8, 1)) < TOLERANCE
    assert _filters(info)["block1_conv"] == (16, 12)
    (kept,) = [item for item in info["skipped"] if item["layer"] == "block1_conv"]
    assert kept["zero_filters_kept"] == 4
    assert "cannot be folded" in kept["reason"]


def test_constant_folds_through_flatten_into_dense(rng):
    import tensorflow as tf

    from edgeprune.prune.shrink import shrink_model

    inputs = tf.keras.Input((6, 6, 2))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    x = tf.keras.layers.ReLU()(x)
    x = tf.keras.layers.MaxPooling2D(2)(x)
    x = tf.keras.layers.Flatten()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="head")(x))
    _randomise_batchnorm(model, rng)
    bn = model.get_layer("bn")
    weights = bn.get_weights()
    weights[1][:] = 1.0  # dead filters turn into a positive constant after BN + ReLU
    bn.set_weights(weights)
    _zero_filters(model, "conv", [1, 4, 6], batchnorm=False)
    shrunk, info = shrink_model(model)

    assert _max_logit_diff(model, shrunk, rng, (6, 6, 2)) < TOLERANCE
    assert _filters(info)["conv"] == (8, 5)
    assert shrunk.get_layer("head").get_weights()[0].shape == (3 * 3 * 5, 3)


def test_sequential_model_is_shrunk(rng):
    import tensorflow as tf

    from edgeprune.prune.shrink import shrink_model

    model = tf.keras.Sequential([
        tf.keras.Input((6, 6, 1)),
        tf.keras.layers.Conv2D(8, 3, padding="same", name="c1_conv"),
        tf.keras.layers.ReLU(),
        tf.keras.layers.Conv2D(8, 3, padding="same", name="c2_conv"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(2),
    ])
    weights = model.get_layer("c1_conv").get_weights()
    weights[0][..., :3] = 0
    weights[1][:3] = 0
    model.get_layer("c1_conv").set_weights(weights)
    shrunk, info = shrink_model(model)
    assert _max_logit_diff(model, shrunk, rng, (6, 6, 1)) < TOLERANCE
    assert _filters(info)["c1_conv"] == (8, 5)


def test_subclassed_model_is_refused():
    import tensorflow as tf

    from edgeprune.prune.shrink import shrink_model

    class Tiny(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Tiny()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(EdgepruneError, match="subclassed"):
        shrink_model(model)


def test_separable_and_valid_convs_absorb_nonzero_constants(rng):
    import tensorflow as tf

    from edgeprune.prune.shrink import shrink_model

    inputs = tf.keras.Input((9, 9, 3))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    x = tf.keras.layers.LeakyReLU(0.2)(x)
    x = tf.keras.layers.SpatialDropout2D(0.1)(x)
    x = tf.keras.layers.SeparableConv2D(8, 3, padding="valid", depth_multiplier=2, name="sep")(x)
    x = tf.keras.layers.ReLU()(x)
    x = tf.keras.layers.Conv2D(4, 3, padding="valid", use_bias=False, name="valid")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="head")(x))
    _randomise_batchnorm(model, rng)
    _zero_filters(model, "conv", [0, 2, 5], batchnorm=False)  # BN beta -> nonzero constants
    depthwise, pointwise, bias = model.get_layer("sep").get_weights()
    pointwise[..., [1, 3]] = 0
    model.get_layer("sep").set_weights([depthwise, pointwise, rng.uniform(0.2, 1, 8).astype("float32")])
    shrunk, info = shrink_model(model)

    assert _max_logit_diff(model, shrunk, rng, (9, 9, 3)) < TOLERANCE
    assert _filters(info)["conv"] == (8, 5)
    assert _filters(info)["sep"] == (8, 6)
    assert shrunk.get_layer("sep").get_weights()[0].shape == (3, 3, 5, 2)
    assert shrunk.get_layer("valid").use_bias  # gained a bias for the folded constants
    assert not info["skipped"]


def _zero_like_nncf(model, rng) -> None:
    """Zero the even output filters of every conv (pointwise kernel of a separable one) but the last, the way NNCF's strip leaves a
    pruned group: kernel and the following BatchNorm's gamma; beta too on every other such
    layer (the rest turn into nonzero constants); a conv without BatchNorm (squeeze-excite)
    loses its kernel slice and bias."""
    convs = [layer for layer in model.layers if layer.__class__.__name__ in ("Conv2D", "SeparableConv2D")]
    for index, conv in enumerate(convs[:-1]):
        weights = conv.get_weights()
        weights[1 if conv.__class__.__name__ == "SeparableConv2D" else 0][..., ::2] = 0
        consumer = conv.outbound_nodes[0].layer
        if consumer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, variance = consumer.get_weights()
            gamma[::2] = 0
            if index % 2 == 0:
                beta[::2] = 0
            consumer.set_weights([gamma, beta, mean, variance])
        elif conv.use_bias:
            weights[1][::2] = 0
        conv.set_weights(weights)


@pytest.mark.parametrize(("arch", "kwargs", "low", "macs_ratio"), [
    pytest.param("MobileNetV3Small", {"alpha": 0.75, "include_preprocessing": True}, 0.0, 0.75, id="MobileNetV3Small"),
    pytest.param("MobileNetV2", {"alpha": 0.35}, -1.0, 0.75, id="MobileNetV2"),
    *(pytest.param(arch, kwargs, low, 0.75, id=arch, marks=pytest.mark.slow) for arch, kwargs, low in (
        ("MobileNetV3Large", {"alpha": 0.75, "include_preprocessing": True}, 0.0),
        ("EfficientNetB0", {}, 0.0),
        ("ResNet50V2", {}, -1.0),
        ("DenseNet121", {}, -1.0),
        ("NASNetMobile", {}, -1.0),
    )),
])
def test_keras_applications_shrink_to_the_same_logits(arch, kwargs, low, macs_ratio, rng, tmp_path):
    """Real architectures nobody here wrote: hard-swish and its TFOpLambda ops, squeeze-excite
    Multiply, built-in Rescaling, ReLU6, ZeroPadding, inverted residuals."""
    import tensorflow as tf

    from edgeprune.modelstats import model_stats
    from edgeprune.prune.shrink import shrink_model

    model = getattr(tf.keras.applications, arch)(input_shape=(32, 32, 3), weights=None, classes=10,
                                                 classifier_activation=None, **kwargs)
    _randomise_batchnorm(model, rng)
    _zero_like_nncf(model, rng)
    shrunk, info = shrink_model(model)

    x = rng.uniform(low, 1.0 if low < 0 else 255.0, (8, 32, 32, 3)).astype("float32")
    masked_logits = model(x, training=False).numpy()
    assert np.abs(masked_logits).max() > 1e-2  # the comparison below means something
    assert np.abs(masked_logits - shrunk(x, training=False).numpy()).max() < TOLERANCE
    assert model_stats(shrunk)["macs"] < macs_ratio * model_stats(model)["macs"]
    assert all("\n" not in item["reason"] for item in info["skipped"])
    assert {item["kind"] for item in info["skipped"] if item["zero_filters_kept"] is None} <= {"Flatten"}
    if arch != "MobileNetV3Small":
        return
    assert {layer.__class__.__name__ for layer in shrunk.layers} >= {"TFOpLambda", "Multiply", "Rescaling"}
    path = tmp_path / "shrunk.h5"  # TFOpLambda layers save and reload
    shrunk.save(path)
    reloaded = tf.keras.models.load_model(path, compile=False)
    assert np.abs(reloaded(x, training=False).numpy() - masked_logits).max() < TOLERANCE


def test_layer_without_a_rule_is_a_barrier_with_its_reason(rng):
    """LayerNormalization mixes channels and a reduction over the channel axis does too: the
    channels around them stay, the report names them, and the logits do not change."""
    import tensorflow as tf

    from edgeprune.prune.shrink import shrink_model

    inputs = tf.keras.Input((6, 6, 2))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", name="a_conv")(inputs)
    x = tf.keras.layers.LayerNormalization(name="norm")(x)
    x = tf.keras.layers.Conv2D(8, 1, name="b_conv")(x)
    x = x * 2.0 + 1.0  # elementwise TFOpLambda: followed
    y = tf.keras.layers.Conv2D(8, 1, name="c_conv")(x)
    x = tf.keras.layers.Concatenate()([y, tf.reduce_mean(x, axis=-1, keepdims=True)])
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="head")(x))
    for name in ("a_conv", "b_conv", "c_conv"):
        weights = model.get_layer(name).get_weights()
        weights[0][..., :3], weights[1][:3] = 0, 0
        model.get_layer(name).set_weights(weights)
    shrunk, info = shrink_model(model)

    assert _max_logit_diff(model, shrunk, rng, (6, 6, 2)) < TOLERANCE
    filters = _filters(info)
    assert filters["a_conv"] == (8, 8) and filters["b_conv"] == (8, 8)
    assert filters["c_conv"] == (8, 5)
    barriers = {item["layer"]: item["reason"] for item in info["skipped"] if item["zero_filters_kept"] is None}
    assert "layer type not supported" in barriers["norm"]
    assert any("reduce_mean over the channel axis" in reason for reason in barriers.values())
    kept = {item["layer"]: item["reason"] for item in info["skipped"] if item["zero_filters_kept"]}
    assert "norm (LayerNormalization)" in kept["a_conv"]


def test_squeeze_excite_gate_channels_go_with_their_zero_features(rng):
    """A feature channel that is zero makes its squeeze-excite gate channel (live, from a conv
    NNCF did not prune) unused: both go, and the excite conv loses those filters."""
    import tensorflow as tf

    from edgeprune.prune.shrink import shrink_model

    inputs = tf.keras.Input((6, 6, 3))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="a_conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="a_bn")(x)
    x = tf.keras.layers.Activation("swish")(x)
    gate = tf.keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = tf.keras.layers.Conv2D(4, 1, activation="relu", name="squeeze")(gate)
    gate = tf.keras.layers.Conv2D(8, 1, name="excite")(gate)
    gate = tf.keras.activations.hard_sigmoid(gate)  # TFOpLambda ops on the gate
    x = tf.keras.layers.Multiply()([x, gate])
    x = tf.keras.layers.Conv2D(5, 3, padding="same", name="b_conv")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="head")(x))
    _randomise_batchnorm(model, rng)
    _zero_filters(model, "a_conv", [1, 2, 6], batchnorm=False)
    bn = model.get_layer("a_bn")
    gamma, beta, mean, variance = bn.get_weights()
    gamma[[1, 2, 6]], beta[[1, 2, 6]] = 0, 0
    bn.set_weights([gamma, beta, mean, variance])
    shrunk, info = shrink_model(model)

    assert _max_logit_diff(model, shrunk, rng, (6, 6, 3)) < TOLERANCE
    assert _filters(info)["a_conv"] == (8, 5)
    assert _filters(info)["excite"] == (8, 5)
    assert shrunk.get_layer("b_conv").get_weights()[0].shape == (3, 3, 5, 5)
    assert not info["skipped"]


def test_zero_filter_mask_is_one_definition_for_every_prunable_kind():
    from edgeprune.modelstats import zero_filter_mask

    depthwise = np.ones((3, 3, 2, 2), "float32")  # channel c, multiplier j -> output c*2 + j
    depthwise[..., 1, 0] = 0
    assert zero_filter_mask("DepthwiseConv2D", [depthwise]).tolist() == [False, False, True, False]
    pointwise = np.ones((1, 1, 4, 3), "float32")
    pointwise[..., 2] = 0
    separable = [np.zeros((3, 3, 2, 2), "float32"), pointwise, np.ones(3, "float32")]
    assert zero_filter_mask("SeparableConv2D", separable).tolist() == [False, False, True]
    dense = np.ones((5, 2), "float32")
    dense[:, 0] = 0
    dense[0, 0] = -1e-30  # tiny but not zero: the filter is alive
    assert zero_filter_mask("Dense", [dense, np.zeros(2)]).tolist() == [False, False]
    with pytest.raises(EdgepruneError, match="not BatchNormalization"):
        zero_filter_mask("BatchNormalization", [np.ones(2)])
