"""Safe .h5 loading: Lambda layers and custom classes refused, corrupt files one line."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from edgeprune.cli import cli
from edgeprune.errors import EdgepruneError
from edgeprune.modelio import load_keras_model, read_metadata, save_keras_model


def _lambda_model():
    inputs = tf.keras.Input((4,))
    outputs = tf.keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(2)(outputs))


def test_lambda_model_is_refused_without_opt_in(tmp_path):
    path = tmp_path / "lambda.h5"
    _lambda_model().save(path, save_format="h5")
    with pytest.raises(EdgepruneError, match="Lambda layer.*doubler.*--allow-unsafe"):
        load_keras_model(path)
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "Lambda" in result.output


def test_lambda_model_loads_with_allow_unsafe(tmp_path):
    path = tmp_path / "lambda.h5"
    model = _lambda_model()
    model.save(path, save_format="h5")
    loaded = load_keras_model(path, allow_unsafe=True)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


def test_custom_class_is_refused(tmp_path):
    @tf.keras.utils.register_keras_serializable(package="evil")
    class Custom(tf.keras.layers.Layer):
        def call(self, inputs):
            return inputs

    inputs = tf.keras.Input((3,))
    path = tmp_path / "custom.h5"
    tf.keras.Model(inputs, Custom()(inputs)).save(path, save_format="h5")
    with pytest.raises(EdgepruneError, match="custom classes"):
        load_keras_model(path)


def test_truncated_h5_gives_one_line_error_and_exit_2(tmp_path, digits_model):
    path, _, _ = digits_model
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    result = CliRunner().invoke(cli, ["info", str(truncated)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "truncated or corrupt" in result.output


def test_weights_only_file_is_explained(tmp_path, digits_model):
    _, model, _ = digits_model
    path = tmp_path / "weights.h5"
    model.save_weights(path)
    with pytest.raises(EdgepruneError, match="no model config"):
        load_keras_model(path)


def test_save_is_atomic_and_keeps_metadata(tmp_path, digits_model):
    _, model, _ = digits_model
    path = tmp_path / "copy.h5"
    save_keras_model(model, path, metadata={"dataset": "digits", "arch": "smallcnn"})
    assert read_metadata(path) == {"dataset": "digits", "arch": "smallcnn"}
    assert [p.name for p in tmp_path.iterdir()] == ["copy.h5"]
    x = np.zeros((2, 8, 8, 1), np.float32)
    np.testing.assert_allclose(load_keras_model(path)(x), model(x), atol=1e-6)
