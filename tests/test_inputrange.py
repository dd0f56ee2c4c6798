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


# --- the input range through the library API, the CLI and bench suites ------------------------

RANGED_STAGES = ("train", "prune", "convert", "attack", "evaluate", "profile")


def test_every_stage_takes_the_input_range_as_a_validated_option():
    from edgeprune import api
    from edgeprune.options import from_args

    for stage in RANGED_STAGES:
        assert "input-range" in api.stage_option_names(stage), stage
    built = [api.TrainOptions("smallcnn", input_range="0,255"), api.PruneOptions("tfmot", input_range="0,255"),
             api.ConvertOptions(target="tflite", input_range="0,255"), api.AttackOptions("pgd", input_range="0,255"),
             api.EvaluateOptions(dataset="digits", input_range="0,255"),
             api.RobustnessOptions(curve=True, input_range="0,255"), api.ProfileOptions(input_range="0,255"),
             api.ImportOptions(input_range="0,255")]
    assert all(options.input_range == "0,255" for options in built)
    for make in (lambda r: api.TrainOptions("smallcnn", input_range=r), lambda r: api.PruneOptions("tfmot", input_range=r),
                 lambda r: api.ConvertOptions(target="tflite", input_range=r),
                 lambda r: api.AttackOptions("pgd", input_range=r),
                 lambda r: api.EvaluateOptions(dataset="digits", input_range=r),
                 lambda r: api.RobustnessOptions(curve=True, input_range=r),
                 lambda r: api.ProfileOptions(input_range=r), lambda r: api.ImportOptions(input_range=r)):
        with pytest.raises(EdgepruneError, match=r"--input-range must be one of 0,1, 0,255, -1,1, got '0,2'"):
            make("0,2")
    assert from_args(api.AttackOptions, {"input-range": "-1,1"}, attack="pgd").input_range == "-1,1"


def test_a_bench_suite_passes_the_input_range_to_every_stage(tmp_path):
    from edgeprune.bench.suite import parse_suite

    ranged = {"input-range": "0,255"}
    suite = parse_suite({
        "suite": "ranged",
        "datasets": [{"spec": "digits"}],
        "models": [{"arch": "smallcnn", "train": {"epochs": 1, **ranged}}],
        "pruning": [{"method": "tfmot", "sparsity": 0.5, "args": ranged}],
        "conversions": [{"format": "tflite", "args": ranged}],
        "attacks": [{"attack": "fgsm", "args": ranged}],
        "robustness": [{"attack": "fmn", "args": ranged}],
        "evaluate": {"args": ranged},
        "profile": {"args": ranged},
    }, tmp_path / "ranged.yaml")
    assert suite.pruning[0].args["input-range"] == "0,255"
    assert suite.evaluate.args["input-range"] == "0,255" and suite.profile.args["input-range"] == "0,255"


def test_api_evaluate_and_profile_feed_and_record_the_declared_range(pixel_model):
    from edgeprune import api

    path, model = pixel_model
    result = api.evaluate([path], api.EvaluateOptions(dataset="digits", limit=100, input_range="0,255"),
                          progress=False)
    recorded = result.record["models"][0]["input_range"]
    assert recorded["label"] == "0,255" and recorded["source"] == "declared"
    unit = api.evaluate([path], api.EvaluateOptions(dataset="digits", limit=100, input_range="0,1"), progress=False)
    assert result.rows()[0].accuracy > 0.8 > unit.rows()[0].accuracy + 0.3  # fed what it takes, or not
    speed = api.profile([path], api.ProfileOptions(batch=(4,), runs=1, min_time_s=0.0, warmup=0, warmup_time_s=0.0,
                                                   isolation="none", input_range="-1,1"), progress=False)
    assert speed.record["settings"]["input_range"] == "-1,1"
    assert {cell["input_range"] for cell in speed.record["results"]} == {"-1,1"}


def test_api_train_records_the_range_that_later_stages_pick_up(tmp_path):
    from edgeprune import api
    from edgeprune.modelio import read_metadata
    from edgeprune.runtime import load

    out = tmp_path / "pixels.h5"
    result = api.train(api.TrainOptions("smallcnn", epochs=1, dataset="digits", limit_train=200, limit_test=100,
                                        milestones=(), input_range="0,255"), out, progress=False)
    assert result.record["input_range"]["label"] == "0,255"
    assert read_metadata(out)["input_range"]["high"] == 255.0
    assert load(out).info["input_range"]["source"] == "recorded"


@pytest.mark.parametrize("declared", ["0,255", "-1,1"])
def test_training_feeds_the_range_it_evaluates_in(declared, digits):
    """The training pipeline feeds a model declared to take 0..255 (or -1..1) the same range that
    evaluation and attacks feed it; it fed [0, 1] before, and the model then saw one range in
    training and another everywhere else."""
    from edgeprune.train import dataset_train_pipeline

    ranged = dataset_for_model(digits, parse_input_range(declared))
    images, _ = next(iter(dataset_train_pipeline(ranged, batch_size=512, augment="none", seed=0)))
    x_eval, _ = ranged.split("train")
    assert float(tf.reduce_min(images)) == pytest.approx(float(x_eval.min()), abs=1e-5)
    assert float(tf.reduce_max(images)) == pytest.approx(float(x_eval[:512].max()), abs=1e-5)
