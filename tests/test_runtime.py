"""`edgeprune.runtime.load`: one predictor for .h5, .tflite and OpenVINO IR."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.runtime import dequantize_output, load, quantize_input


def test_int8_quantisation_rounds_clips_and_inverts():
    x = np.array([0.0, 0.25, 1.0, 2.0, -1.0], np.float32)
    q = quantize_input(x, 1 / 255, -128, np.dtype(np.int8))
    assert q.dtype == np.int8
    assert q.tolist() == [-128, -64, 127, 127, -128]  # 0.25 -> round(63.75) - 128; then clipped
    assert np.allclose(dequantize_output(q[:3], 1 / 255, -128), [0.0, 64 / 255, 1.0])
    assert quantize_input(np.array([1.0], np.float32), 1 / 255, 0, np.dtype(np.uint8)).tolist() == [255]


def test_predictions_match_across_formats(digits_model, digits, digits_converted):
    path, _, _ = digits_model
    x, y = digits.split("test")
    keras = load(path)
    reference = keras.predict(x, 128)
    assert reference.dtype == np.float32 and reference.shape == (len(x), 10)
    for target, suffix in (("tflite", ".tflite"), ("openvino", ".xml")):
        model_path, _ = digits_converted(target, "fp32")
        predictor = load(model_path)
        info = predictor.info
        assert info["format"] == target and info["precision"] == "fp32"
        assert info["input_shape"] == [8, 8, 1] and info["num_classes"] == 10
        assert info["file_bytes"] > 0 and model_path.suffix == suffix
        assert info["runtime"]["name"] in ("ai-edge-litert", "tflite-runtime", "tensorflow", "openvino")
        logits = predictor.predict(x, 128)
        assert logits.dtype == np.float32 and logits.shape == reference.shape
        assert np.abs(logits - reference).max() < 1e-3 * max(1.0, np.abs(reference).max())
        assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.99
    assert keras.info["format"] == "keras"


def test_int8_tflite_quantises_inputs_and_dequantises_outputs(digits_model, digits, digits_converted):
    x, y = digits.split("test")
    keras_accuracy = (load(digits_model[0]).predict(x).argmax(1) == y).mean()
    predictor = load(digits_converted("tflite", "int8")[0])
    info = predictor.info
    assert info["precision"] == "int8" and info["input_dtype"] == "int8"
    assert info["input_quantization"]["scale"] == pytest.approx(1 / 255, rel=1e-3)
    assert info["input_quantization"]["zero_point"] == -128
    logits = predictor.predict(x, 100)
    assert logits.dtype == np.float32
    assert len(np.unique(logits)) > 20  # dequantised floats, not raw int8 codes
    # Fed the raw float images without quantisation, accuracy would collapse; with it, int8
    # stays within 3 points (11 of 364 images) of Keras on this 97%-accurate model.
    assert (logits.argmax(1) == y).mean() >= keras_accuracy - 0.03


@pytest.mark.parametrize("target", ["tflite", "openvino"])
def test_dynamic_batch_pads_and_reuses_the_compiled_shape(digits, digits_converted, target):
    x, _ = digits.split("test")
    predictor = load(digits_converted(target, "fp32")[0], threads=1)
    assert predictor.info["threads"] == 1
    whole = predictor.predict(x, 64)  # 364 = 5 x 64 + a short batch of 44, padded
    assert np.allclose(predictor.predict(x, 7), whole, atol=1e-5)  # 364 = 52 x 7
    assert np.allclose(predictor.predict(x[:50], 7), whole[:50], atol=1e-5)  # last of 1, padded
    assert np.allclose(predictor.predict(x[:3], 1000), whole[:3], atol=1e-5)
    assert predictor.predict(x[:0], 8).shape == (0, 10)
    batch = x[:7]
    predictor.predict(batch, batch_size=7)
    if target == "tflite":
        calls = []
        original = predictor.interpreter.allocate_tensors
        predictor.interpreter.allocate_tensors = lambda: calls.append(1) or original()
        for _ in range(3):
            predictor.predict(batch, batch_size=7)
        assert calls == []  # same batch: no resize, no re-allocation
    else:
        compiled = dict(predictor._compiled)
        for _ in range(3):
            predictor.predict(batch, batch_size=7)
        assert predictor._compiled.keys() == compiled.keys()
        assert all(predictor._compiled[k] is compiled[k] for k in compiled)  # not recompiled


def test_bad_inputs_are_one_line_errors(tmp_path, digits_converted, digits):
    path, _ = digits_converted("tflite", "fp32")
    predictor = load(path)
    with pytest.raises(EdgepruneError, match=r"expected images of shape \(N, 8, 8, 1\)"):
        predictor.predict(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(EdgepruneError, match="batch_size must be positive"):
        predictor.predict(digits.split("test")[0][:2], 0)
    with pytest.raises(EdgepruneError, match="threads must be a positive"):
        load(path, threads=0)
    with pytest.raises(EdgepruneError, match="unsupported model format '.onnx'"):
        (tmp_path / "m.onnx").write_bytes(b"x")
        load(tmp_path / "m.onnx")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(EdgepruneError, match="not a loadable TFLite model"):
        load(tmp_path / "junk.tflite")
    xml, _ = digits_converted("openvino", "fp32")
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(xml.read_bytes())
    with pytest.raises(EdgepruneError, match="lonely.bin is missing"):
        load(lonely)


BLOCKED_TF_PREDICT = """
import json, sys
import numpy as np
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from edgeprune.runtime import load
x = np.load(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    predictor = load(path)
    out[path] = {"logits": predictor.predict(x, 16).tolist(), "runtime": predictor.info["runtime"]}
assert not any(m.split('.')[0] == 'tensorflow' for m in sys.modules), 'tensorflow was imported'
print(json.dumps(out))
"""


def test_tflite_and_openvino_load_without_tensorflow(tmp_path, digits, digits_converted):
    """What a board with only the [device] extra does: TensorFlow cannot be imported."""
    x = digits.split("test")[0][:40]
    np.save(tmp_path / "x.npy", x)
    paths = [str(digits_converted("tflite", "fp32")[0]), str(digits_converted("tflite", "int8")[0]),
             str(digits_converted("openvino", "fp32")[0])]
    done = subprocess.run([sys.executable, "-c", BLOCKED_TF_PREDICT, str(tmp_path / "x.npy"), *paths],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for path in paths:
        expected = load(path).predict(x, 16)
        assert np.allclose(np.asarray(result[path]["logits"]), expected, atol=1e-5)
    assert result[paths[0]]["runtime"]["name"] in ("ai-edge-litert", "tflite-runtime")


# ------------------------------------------------------------ runtime inference precision

def test_openvino_records_the_precision_its_compiled_model_runs_at(tmp_path):
    import openvino as ov
    from test_profile import ov_convnet  # the TensorFlow-free IR builder (tests/ is on sys.path)

    path = ov_convnet(tmp_path / "net.xml")
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    host_default = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")).lower()
    default = load(path)
    assert default.info["inference_precision_requested"] == "default"
    # default sets no hint: whatever the plugin picks on this host, read back (bf16 on AVX512_BF16/AMX)
    assert default.info["inference_precision"] in ("f32", "bf16", "f16")
    assert default.info["inference_precision"][1:] in host_default.replace("float", "").replace("bfloat", "")
    f32 = load(path, inference_precision="f32")
    assert f32.info["inference_precision"] == "f32" and f32.info["inference_precision_requested"] == "f32"
    assert np.allclose(default.predict(x, 2), f32.predict(x, 4), atol=0.05)
    # bf16 where the CPU cannot: OpenVINO runs f32 and the record says so (never the request).
    bf16 = load(path, inference_precision="bf16")
    assert bf16.info["inference_precision"] in ("bf16", "f32")
    with pytest.raises(EdgepruneError, match="OpenVINO cannot run at inference precision 'none'"):
        load(path, inference_precision="none")


def test_tflite_with_and_without_xnnpack_and_refused_precisions(digits_converted, digits):
    from edgeprune.runtime import inference_label

    path, _ = digits_converted("tflite", "fp32")
    x, _ = digits.split("test")
    delegated = load(path)
    plain = load(path, inference_precision="none")
    assert delegated.info["delegate"] == "xnnpack" and plain.info["delegate"] == "none"
    assert delegated.info["inference_precision"] == plain.info["inference_precision"] == "f32"
    assert inference_label(delegated.info) == "f32 xnnpack" and inference_label(plain.info) == "f32 no-xnnpack"
    assert np.abs(delegated.predict(x[:64]) - plain.predict(x[:64])).max() < 1e-4
    for refused in ("bf16", "f16"):
        with pytest.raises(EdgepruneError, match=f"TFLite cannot run at inference precision '{refused}'"):
            load(path, inference_precision=refused)
    with pytest.raises(EdgepruneError, match="inference precision must be one of default, f32, bf16, f16, none"):
        load(path, inference_precision="int8")


def test_cli_choices_are_the_runtime_vocabulary():
    from edgeprune.cli.convert import command as convert_command
    from edgeprune.cli.evaluate import command as evaluate_command
    from edgeprune.cli.profile import command as profile_command
    from edgeprune.runtime import INFERENCE_PRECISIONS

    for command in (profile_command, evaluate_command, convert_command):
        option = next(p for p in command.params if p.name == "inference_precision")
        assert tuple(option.type.choices) == INFERENCE_PRECISIONS and option.default == "default"


def test_convert_verification_and_evaluate_record_what_ran(digits_converted):
    from edgeprune.evaluate import evaluate, to_csv, to_markdown
    from edgeprune.results import ConvertResult

    xml, report = digits_converted("openvino", "fp32")
    check = report["verification"]
    assert check["inference_precision_requested"] == "default"
    assert check["inference_precision"] == load(xml).info["inference_precision"]  # this host's pick
    assert ConvertResult(record=report).verified_at == check["inference_precision"]
    tflite, _ = digits_converted("tflite", "fp32")
    result = evaluate([tflite, xml], [], dataset_spec="digits", limit=50, inference_precision="f32")
    ran = {m["format"]: m for m in result["models"]}
    assert ran["openvino"]["inference_precision"] == "f32" and ran["openvino"]["runs_at"] == "f32"
    assert ran["tflite"]["runs_at"] == "f32 xnnpack"
    assert all(m["inference_precision_requested"] == "f32" for m in result["models"])
    assert "| runs at |" in to_markdown(result) and ",f32 xnnpack," in to_csv(result)
