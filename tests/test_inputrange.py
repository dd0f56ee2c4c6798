"""Input range as part of the model: data and eps stay in [0, 1] units, the model is fed its range."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from edgeprune.cli import cli
from edgeprune.errors import EdgepruneError
from edgeprune.inputrange import (PIXELS, SIGNED, UNIT, dataset_for_model, detect_input_range,
                                  parse_input_range, resolve_input_range, with_input_range)
from edgeprune.modelio import save_keras_model


def test_parse_accepts_the_three_ranges_and_names_them_on_error():
    assert parse_input_range("0,255") == PIXELS and parse_input_range("-1,1") == SIGNED
    assert parse_input_range({"low": 0, "high": 1}) == UNIT
    with pytest.raises(EdgepruneError, match="0,1 | 0,255 | -1,1"):
        parse_input_range("0,2")


def test_detection_reads_a_leading_rescaling_and_is_announced():
    inputs = tf.keras.Input((4, 4, 3))
    model = tf.keras.Model(inputs, tf.keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs))
    found = resolve_input_range(None, metadata={}, model=model)
    assert found.input_range == PIXELS and found.source == "detected"
    assert "assuming input range 0,255" in found.assumption
    plain = tf.keras.Model(inputs, tf.keras.layers.Rescaling(2.0, offset=-1)(inputs))  # the zoo's own
    assert detect_input_range(plain) is None
    assert resolve_input_range("0,1", metadata={"input_range": PIXELS.as_dict()}, model=model).input_range == UNIT
    assert resolve_input_range(None, metadata={"input_range": SIGNED.as_dict()}, model=model).source == "recorded"


def test_wrapper_feeds_the_range_and_passes_gradients():
    inputs = tf.keras.Input((2,))
    raw = tf.keras.Model(inputs, tf.keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)(inputs))
    wrapped = with_input_range(raw, PIXELS)
    x = tf.constant([[0.5, 1.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = wrapped(x)
    assert float(out[0, 0]) == pytest.approx(1.5 * 255)
    np.testing.assert_allclose(tape.gradient(out, x).numpy(), [[255.0, 255.0]])


def test_dataset_for_model_maps_float_splits_only(digits):
    ranged = dataset_for_model(digits, PIXELS)
    x, _ = ranged.split("test")
    np.testing.assert_allclose(x, digits.split("test")[0] * 255, rtol=1e-6)
    assert ranged.fingerprint("test") == digits.fingerprint("test")
    np.testing.assert_array_equal(ranged.split("test", dtype="uint8")[0], digits.split("test", dtype="uint8")[0])


@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory, digits):
    """A digits classifier that takes raw 0..255 pixels (leading Rescaling(1/255)), trained briefly."""
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input(digits.input_shape)
    x = tf.keras.layers.Rescaling(1 / 255)(inputs)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(32, activation="relu")(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(digits.num_classes)(x))
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_train, y_train = dataset_for_model(digits, PIXELS).split("train")
    model.fit(x_train, y_train, epochs=15, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("range") / "pixels.h5"
    save_keras_model(model, path, metadata={"dataset": digits.name})
    return path, model


def test_attack_on_a_0_255_model_keeps_eps_in_image_units(tmp_path, pixel_model, digits):
    path, model = pixel_model
    result = CliRunner().invoke(cli, ["attack", str(path), "-a", "pgd", "--eps", str(8 / 255), "--steps", "10",
                                      "-d", "digits", "--limit", "200", "-o", str(tmp_path / "pgd"), "-q"])
    assert result.exit_code == 0, result.output
    assert "assuming input range 0,255" in result.output  # detected, and said so
    record = json.loads((tmp_path / "pgd.json").read_text())
    assert record["input_range"]["label"] == "0,255"
    with np.load(tmp_path / "pgd.npz") as saved:
        x_adv, y, index = saved["x_adv"], saved["y"], saved["index"]
    x_clean = digits.split("test")[0][index]
    assert float(np.abs(x_adv - x_clean).max()) <= 8 / 255 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    on_pixels = float(np.mean(np.argmax(model.predict(x_adv * 255, verbose=0), axis=1) == y))
    assert record["source_metrics"]["adversarial_accuracy"] == pytest.approx(on_pixels, abs=1e-9)
    clean = float(np.mean(np.argmax(model.predict(x_clean * 255, verbose=0), axis=1) == y))
    assert record["source_metrics"]["clean_accuracy"] == pytest.approx(clean, abs=1e-9)
    assert clean > 0.8 and on_pixels < clean  # 8 pixel levels really moved a model that takes 0..255


def test_evaluate_feeds_the_declared_range(tmp_path, pixel_model, digits):
    from edgeprune.evaluate import load_models

    path, model = pixel_model
    x, _ = digits.split("test")
    entry = load_models([path], input_range="0,255")[0]
    np.testing.assert_allclose(entry.predictor.predict(x[:16]), model.predict(x[:16] * 255, verbose=0), atol=1e-4)
