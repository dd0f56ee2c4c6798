"""Keras 3 files (made by the real Keras 3.15 / TF 2.21, tests/fixtures/keras3/make_fixtures.py)
load into Keras 2.15 with Keras 3's logits, safely; `edgeprune import`; input ranges."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.cli import cli
from edgeprune.errors import EdgepruneError
from edgeprune.modelio import is_keras3_file, load_keras_model, read_metadata

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "keras3"
MODELS = ("sequential", "residual", "separable", "mobilenetv3small", "nested")


def reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as saved:
        return saved["x"], saved["logits"]


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("name", MODELS)
def test_keras3_file_gives_keras3_logits(name, suffix):
    path = FIXTURES / f"{name}{suffix}"
    assert is_keras3_file(path)
    model = load_keras_model(path)
    x, logits = reference(name)
    np.testing.assert_allclose(model(x, training=False).numpy(), logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_lambda_in_keras3_file_is_refused_in_one_line(suffix):
    path = FIXTURES / f"lambda{suffix}"
    with pytest.raises(EdgepruneError, match="Lambda layer.*double.*--allow-unsafe"):
        load_keras_model(path)
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "Lambda" in result.output and "__keras_tensor__" not in result.output


def test_lambda_in_keras3_file_loads_with_allow_unsafe():
    model = load_keras_model(FIXTURES / "lambda.keras", allow_unsafe=True)
    x, logits = reference("lambda")
    np.testing.assert_allclose(model(x, training=False).numpy(), logits, atol=1e-4, rtol=0)


def _rewrite_archive(source: Path, target: Path, edit) -> Path:
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for item in archive.namelist():
            data = archive.read(item)
            if item == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            out.writestr(item, data)
    return target


def test_custom_class_in_keras3_archive_is_refused(tmp_path):
    def make_custom(config):
        layer = config["config"]["layers"][2]
        layer.update(module="my_package.layers", class_name="FancyConv", registered_name="my_package>FancyConv")

    path = _rewrite_archive(FIXTURES / "residual.keras", tmp_path / "custom.keras", make_custom)
    with pytest.raises(EdgepruneError, match="custom classes my_package>FancyConv"):
        load_keras_model(path)
    with pytest.raises(EdgepruneError, match="custom classes"):
        load_keras_model(path, allow_unsafe=True)  # no code to run: the class is not in the file


def test_unknown_keras3_operation_is_refused_naming_it(tmp_path):
    def make_unknown(config):
        op = next(layer for layer in config["config"]["layers"] if layer["module"] == "keras.src.ops.numpy")
        op.update(class_name="Arctan2", registered_name="Arctan2")

    path = _rewrite_archive(FIXTURES / "mobilenetv3small.keras", tmp_path / "op.keras", make_unknown)
    with pytest.raises(EdgepruneError, match="operation Arctan2 .* no built-in Keras 2"):
        load_keras_model(path)


def test_corrupt_archive_is_one_line(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip")
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 2 and "not a Keras .keras archive" in result.output


def test_import_writes_a_keras2_h5_that_reloads_with_its_record(tmp_path):
    out = tmp_path / "residual.h5"
    result = CliRunner().invoke(cli, ["import", str(FIXTURES / "residual.keras"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "assuming input range 0,255" in result.output  # detected from Rescaling(1/255), said aloud
    assert not is_keras3_file(out)  # a plain Keras 2 file now
    x, logits = reference("residual")
    np.testing.assert_allclose(load_keras_model(out)(x, training=False).numpy(), logits, atol=1e-4, rtol=0)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["source_format"] == "keras3-archive" and sidecar["keras_version"].startswith("3.")
    assert sidecar["input_range"]["label"] == "0,255" and sidecar["input_range"]["source"] == "detected"
    assert any("batch_shape" in line for line in sidecar["translated"])
    assert read_metadata(out)["input_range"]["high"] == 255.0
    again = CliRunner().invoke(cli, ["import", str(FIXTURES / "residual.keras"), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output


def test_runtime_picks_up_the_recorded_range_and_feeds_unit_images(tmp_path):
    from edgeprune.keras3 import import_model
    from edgeprune.runtime import load

    out = tmp_path / "mnv3.h5"
    import_model(FIXTURES / "mobilenetv3small.h5", out)
    predictor = load(out)
    assert predictor.info["input_range"]["source"] == "recorded"
    x, logits = reference("mobilenetv3small")  # x in 0..255, as Keras 3 was fed
    np.testing.assert_allclose(predictor.predict(x / 255.0), logits, atol=1e-3, rtol=0)


@pytest.mark.parametrize("target", ["tflite", "openvino"])
def test_convert_of_keras3_file_agrees_with_keras3(tmp_path, target):
    from edgeprune.convert import ConvertConfig, convert_model
    from edgeprune.runtime import load

    output = tmp_path / ("m.tflite" if target == "tflite" else "m.xml")
    convert_model(FIXTURES / "separable.keras", output, ConvertConfig(target=target, verify=0), progress=False)
    x, logits = reference("separable")
    np.testing.assert_allclose(load(output).predict(x), logits, atol=1e-4, rtol=0)


def test_keras_applications_mobilenetv3_loads_and_says_it_takes_pixels(tmp_path):
    """TF 2.15's own keras.applications MobileNetV3Small (TFOpLambda nodes, built-in 0..255
    preprocessing) round-trips through edgeprune's safe loader, and its range is detected."""
    import tensorflow as tf

    from edgeprune.inputrange import PIXELS, detect_input_range
    from edgeprune.modelio import save_keras_model

    model = tf.keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=10,
                                                   classifier_activation=None)
    path = save_keras_model(model, tmp_path / "mnv3.h5")
    loaded = load_keras_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5)
    found = detect_input_range(loaded)
    assert found is not None and found[0] == PIXELS


@pytest.mark.slow
def test_keras_applications_matrix_has_no_failed_cell(tmp_path):
    """The benchmark's matrix on MobileNetV2 and the Keras 3 file: every cell ok or refused in one line."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "keras_applications.py"
    spec = importlib.util.spec_from_file_location("keras_applications", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.SAMPLE.exists():
        pytest.skip(f"CIFAR-10 sample not found at {module.SAMPLE}")
    code = module.main(["--work", str(tmp_path / "work"), "--arch", "MobileNetV2", "--arch", "keras3",
                        "--train-images", "200", "--output", str(tmp_path / "matrix.md")])
    table = (tmp_path / "matrix.md").read_text()
    assert code == 0, table
    assert "FAILED" not in table.split("## Refusals")[0]


def test_import_is_a_library_call_exported_from_the_package(tmp_path):
    import edgeprune

    out = tmp_path / "separable.h5"
    result = edgeprune.import_model(FIXTURES / "separable.keras", out, edgeprune.ImportOptions(input_range="-1,1"))
    assert isinstance(result, edgeprune.ImportResult) and result.paths == (out, out.with_suffix(".json"))
    assert result.source_format == "keras3-archive"
    assert result.input_range["label"] == "-1,1" and result.input_range["source"] == "declared"
    assert edgeprune.ImportResult.load(out.with_suffix(".json")).record["output_sha256"] == result.record["output_sha256"]
    with pytest.raises(EdgepruneError, match="exists; pass --force"):
        edgeprune.import_model(FIXTURES / "separable.keras", out)
    edgeprune.import_model(FIXTURES / "separable.keras", out, force=True)


def test_keras3_file_goes_through_nncf_filter_pruning():
    """Keras 3 writes `mask=None` into BatchNormalization nodes; NNCF's layer wrappers then
    failed to rebuild the model ("unexpected keyword argument 'mask'")."""
    from nncf import NNCFConfig
    from nncf.tensorflow import create_compressed_model

    model = load_keras_model(FIXTURES / "mobilenetv3small.keras")
    nodes = [node for layer in model.get_config()["layers"] for node in layer["inbound_nodes"]]
    assert not any("mask" in json.dumps(node) for node in nodes)
    shape = [1, *model.input_shape[1:]]
    config = NNCFConfig.from_dict({"input_info": {"sample_size": shape},
                                   "compression": {"algorithm": "filter_pruning", "pruning_init": 0.5}})
    _, compressed = create_compressed_model(model, config)
    x, logits = reference("mobilenetv3small")
    assert compressed(x, training=False).shape == logits.shape
