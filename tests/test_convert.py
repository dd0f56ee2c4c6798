"""`edgeprune convert`: converted models agree with their Keras source, or nothing is written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeprune.convert import ConvertConfig, convert_model, report_path_for
from edgeprune.errors import EdgepruneError
from edgeprune.runtime import load


def _accuracy(path, x, y) -> float:
    return float((load(path).predict(x, 128).argmax(1) == y).mean())


@pytest.mark.parametrize("target,precision", [("tflite", "fp32"), ("openvino", "fp32"), ("openvino", "fp16")])
def test_float_conversions_agree_with_keras(digits_model, digits, digits_converted, target, precision):
    path, report = digits_converted(target, precision)
    check = report["verification"]
    assert check["samples"] == 300 and check["passed"] and check["min_agreement"] == 0.99
    assert check["agreement"] >= 0.99 and check["max_abs_logit_diff"] < 0.05
    # Independently, on the whole test split (364 images), through the runtime interface.
    x, y = digits.split("test")
    source = load(digits_model[0]).predict(x)
    converted = load(path).predict(x)
    assert (source.argmax(1) == converted.argmax(1)).mean() >= 0.99
    assert report["sizes"]["output_bytes"] == load(path).info["file_bytes"]
    if precision == "fp16":  # weights stored as float16: half the fp32 weights file
        fp32_weights = digits_converted("openvino", "fp32")[0].with_suffix(".bin").stat().st_size
        assert path.with_suffix(".bin").stat().st_size < 0.55 * fp32_weights


@pytest.mark.parametrize("target", ["tflite", "openvino"])
def test_int8_loses_at_most_three_points(digits_model, digits, digits_converted, target):
    """Post-training int8 on a 97%-accurate model: at most 3 points (11 of 364 test images).

    Honest calibration costs ~0-1 point here; a wrong scale, zero point or activation range
    costs tens of points, so 3 points separates the two with margin for calibration noise.
    """
    path, report = digits_converted(target, "int8")
    x, y = digits.split("test")
    assert _accuracy(path, x, y) >= _accuracy(digits_model[0], x, y) - 0.03
    assert report["verification"]["passed"] and report["verification"]["min_agreement"] == 0.95
    assert report["calibration"] == {"images": 200, "split": "train", "seed": 0}
    fp32_bytes = digits_converted(target, "fp32")[1]["sizes"]["output_bytes"]
    assert report["sizes"]["output_bytes"] < 0.6 * fp32_bytes
    if target == "tflite":
        assert report["int8_io"] is True and load(path).info["input_dtype"] == "int8"


def test_report_records_provenance(digits_model, digits_converted):
    path, report = digits_converted("tflite", "fp32")
    on_disk = json.loads(report_path_for(path).read_text())
    assert list(on_disk)[0] == "schema" and on_disk["schema"] == "edgeprune.convert/1"
    assert on_disk["output"] == str(path) and on_disk["precision"] == "fp32"
    assert on_disk["dataset"]["name"] == "digits" and on_disk["dataset"]["matches_model_record"] is True
    assert on_disk["sizes"]["source_bytes"] == digits_model[0].stat().st_size
    assert on_disk["versions"]["openvino"] and on_disk["runtime"]["version"]
    assert on_disk["seconds"]["convert"] > 0


def _zero_filters(model, fraction: float):
    """What a stripped filter pruner leaves: the weakest filters zero in conv kernel, bias and
    the following BatchNorm's gamma/beta (layers named block*_conv / block*_bn)."""
    import tensorflow as tf

    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:
        if isinstance(layer, tf.keras.layers.Conv2D):
            weights = layer.get_weights()
            count = weights[0].shape[-1]
            weakest = np.argsort(np.abs(weights[0]).reshape(-1, count).sum(0))[: int(count * fraction)]
            weights[0][..., weakest] = 0.0
            if len(weights) > 1:
                weights[1][weakest] = 0.0
            layer.set_weights(weights)
            norm = clone.get_layer(layer.name.replace("_conv", "_bn"))
            gamma_beta = norm.get_weights()
            gamma_beta[0][weakest] = gamma_beta[1][weakest] = 0.0
            norm.set_weights(gamma_beta)
    return clone


def test_zeroed_filters_are_removed_from_the_openvino_ir(tmp_path, digits_model, digits, digits_converted):
    from edgeprune.modelio import read_metadata, save_keras_model

    masked_path = tmp_path / "masked.h5"
    save_keras_model(_zero_filters(digits_model[1], 0.5), masked_path, metadata=read_metadata(digits_model[0]))
    report = convert_model(masked_path, tmp_path / "masked.xml", ConvertConfig("openvino"), dataset=digits,
                           progress=False)
    base_path, base = digits_converted("openvino", "fp32")
    pruning = report["filter_pruning"]
    assert pruning["applied"] and pruning["zero_filters"] == 8 + 16 + 32
    assert pruning["conv_channels_after"] < pruning["conv_channels_before"] == base["filter_pruning"]["conv_channels_after"]
    assert (tmp_path / "masked.bin").stat().st_size < 0.7 * base_path.with_suffix(".bin").stat().st_size
    assert report["verification"]["agreement"] >= 0.99  # removing dead filters changes nothing
    assert report["verification"]["max_abs_logit_diff"] < 1e-3


def test_nncf_filter_pruned_model_converts_smaller(tmp_path, digits_model, digits, digits_converted):
    """The real pipeline: NNCF filter pruning (TF backend, fine-tuned) -> OpenVINO IR."""
    from edgeprune.modelio import read_metadata, save_keras_model
    from edgeprune.prune.nncf_filter import NNCFFilterConfig, nncf_filter_prune

    pruned, _ = nncf_filter_prune(digits_model[1], digits, NNCFFilterConfig(target=0.5, epochs=2), progress=False)
    save_keras_model(pruned, tmp_path / "nncf.h5", metadata=read_metadata(digits_model[0]))
    report = convert_model(tmp_path / "nncf.h5", tmp_path / "nncf.xml", ConvertConfig("openvino"),
                           dataset=digits, progress=False)
    base_path, base = digits_converted("openvino", "fp32")
    assert report["filter_pruning"]["applied"]
    assert report["filter_pruning"]["conv_channels_after"] < base["filter_pruning"]["conv_channels_after"]
    assert (tmp_path / "nncf.bin").stat().st_size < base_path.with_suffix(".bin").stat().st_size
    assert report["verification"]["passed"]


def test_sparse_encoding_is_measured_and_the_smaller_file_kept(tmp_path, digits_model, digits):
    import tensorflow as tf

    from edgeprune.modelio import save_keras_model

    model = tf.keras.models.clone_model(digits_model[1])
    weights = []
    for w in digits_model[1].get_weights():
        w = w.copy()
        if w.ndim >= 2:  # kernels: drop the smaller 70% of each
            w[np.abs(w) < np.quantile(np.abs(w), 0.7)] = 0.0
        weights.append(w)
    model.set_weights(weights)
    save_keras_model(model, tmp_path / "sparse.h5")
    output = tmp_path / "sparse.tflite"
    report = convert_model(tmp_path / "sparse.h5", output, ConvertConfig("tflite", "dynamic", verify=0),
                           progress=False)
    encoding = report["sparse_encoding"]
    assert encoding["weight_sparsity"] == pytest.approx(0.7, abs=0.02)
    assert encoding["dense_bytes"] and encoding["sparse_bytes"]
    # Kept: the smaller of the two among those the runtime can run.
    runnable = [encoding["dense_bytes"]] + ([encoding["sparse_bytes"]] if encoding["sparse_runs"] else [])
    assert output.stat().st_size == min(runnable)
    assert encoding["used"] == (encoding["sparse_runs"] and encoding["sparse_bytes"] < encoding["dense_bytes"])
    assert load(output).predict(digits.split("test")[0][:4]).shape == (4, 10)


def test_failed_verification_exits_2_with_figures_and_writes_nothing(tmp_path, digits_model, monkeypatch, run_cli):
    import edgeprune.convert as convert

    # A source whose logits disagree on most images stands in for a broken conversion.
    monkeypatch.setattr(convert, "_keras_logits", lambda model, x, batch: np.roll(np.eye(10, dtype=np.float32)[
        np.arange(len(x)) % 10], 3, axis=1))
    result = run_cli("convert", "--quiet", str(digits_model[0]), "--to", "tflite", "-o", str(tmp_path / "m.tflite"))
    _one_line_error(result, "agrees with digits_smallcnn.h5 on", "of 300 test images (< 99%)",
                    "max |logit diff|", "accuracy", "nothing written")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no model, no report, no temp folder


def test_config_validation_names_valid_choices():
    with pytest.raises(EdgepruneError, match="expected one of fp32, fp16, int8"):
        ConvertConfig("openvino", "dynamic")
    with pytest.raises(EdgepruneError, match="unknown target format 'onnx'"):
        ConvertConfig("onnx")
    with pytest.raises(EdgepruneError, match="calibration must be at least 1"):
        ConvertConfig("tflite", "int8", calibration=0)
    with pytest.raises(EdgepruneError, match=r"min agreement must be in \[0, 1\], got 1.5"):
        ConvertConfig("tflite", min_agreement=1.5)


def test_int8_without_data_is_refused(tmp_path, digits_model):
    with pytest.raises(EdgepruneError, match="int8 calibration needs data"):
        convert_model(digits_model[0], tmp_path / "m.tflite", ConvertConfig("tflite", "int8"), progress=False)


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_happy_path_and_refusals(tmp_path, digits_model, run_cli):
    source = str(digits_model[0])
    output = tmp_path / "m.tflite"
    result = run_cli("convert", "--quiet", source, "--to", "tflite", "-o", str(output), "--verify", "100")
    assert result.exit_code == 0, result.output
    assert "agreement" in result.output and str(output) in result.output
    report = json.loads((tmp_path / "m.tflite.json").read_text())
    assert report["schema"] == "edgeprune.convert/1" and report["verification"]["samples"] == 100
    assert load(output).info["precision"] == "fp32"
    before = output.read_bytes()
    _one_line_error(run_cli("convert", "--quiet", source, "--to", "tflite", "-o", str(output)), "exists", "--force")
    assert output.read_bytes() == before
    _one_line_error(run_cli("convert", "--quiet", source, "--to", "tflite", "-p", "int4", "-o", str(tmp_path / "x.tflite")),
                    "unknown precision 'int4' for tflite", "fp32, fp16, dynamic, int8")
    _one_line_error(run_cli("convert", "--quiet", source, "--to", "openvino", "-o", str(tmp_path / "x.tflite")), "must end in .xml")
    assert not (tmp_path / "x.tflite").exists()


def test_cli_int8_without_data_and_unconvertible_model(tmp_path, digits_model, run_cli):
    import tensorflow as tf

    from edgeprune.modelio import save_keras_model

    anonymous = tmp_path / "anonymous.h5"
    save_keras_model(digits_model[1], anonymous)  # no edgeprune record: dataset unknown
    _one_line_error(run_cli("convert", "--quiet", str(anonymous), "--to", "tflite", "-p", "int8", "-o", str(tmp_path / "a.tflite")),
                    "records no dataset", "--dataset")
    inputs = tf.keras.Input((8, 8, 1))
    features = tf.keras.layers.Flatten()(tf.math.digamma(inputs))  # no TFLite builtin for Digamma
    save_keras_model(tf.keras.Model(inputs, tf.keras.layers.Dense(10)(features)), tmp_path / "odd.h5")
    result = run_cli("convert", "--quiet", str(tmp_path / "odd.h5"), "--to", "tflite", "--no-verify", "-o", str(tmp_path / "odd.tflite"))
    _one_line_error(result, "TFLite converter failed", "Digamma")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anonymous.h5", "odd.h5"]
