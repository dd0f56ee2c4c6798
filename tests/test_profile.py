"""`edgeprune profile`: sizes that tell the truth, latency statistics, pinning, no TensorFlow on device.

Timing assertions here are about the protocol (minimum runs and time met, affinity read
back), never about how fast this shared machine is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.cli import cli
from edgeprune.errors import EdgepruneError
from edgeprune.profile import (SCHEMA, ProfileConfig, markdown_report, model_size, parse_int_list,
                               profile_models, summarize_latency, time_calls)
from edgeprune.results import ProfileResult

QUICK = dict(runs=5, min_time_s=0.05, warmup=1, warmup_time_s=0.0)


def ov_convnet(path: Path, *, channels: int = 16, depth: int = 2, size: int = 16, classes: int = 10,
               seed: int = 0, sparsity: float = 0.0) -> Path:
    """An OpenVINO IR conv net built with the opset API (no TensorFlow, milliseconds).

    NHWC float input like every edgeprune model; `sparsity` zeroes that fraction of each
    conv kernel's smallest weights.
    """
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(seed)
    x = ops.parameter([-1, size, size, 3], np.float32, name="input")
    h = ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], np.int64)))
    cin = 3
    for _ in range(depth):
        w = rng.normal(0, 0.1, (channels, cin, 3, 3)).astype(np.float32)
        if sparsity:
            w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0.0
        h = ops.relu(ops.convolution(h, ops.constant(w), [1, 1], [1, 1], [1, 1], [1, 1]))
        cin = channels
    h = ops.reduce_mean(h, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    h = ops.matmul(h, ops.constant(rng.normal(0, 0.1, (channels, classes)).astype(np.float32)), False, False)
    ov.save_model(ov.Model([ops.result(h)], [x], "convnet"), str(path), compress_to_fp16=False)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One small Keras model as .h5, .tflite and .xml (converted, so counts can be compared)."""
    import openvino as ov
    import tensorflow as tf

    from edgeprune.modelio import save_keras_model
    from edgeprune.models import build_model

    folder = tmp_path_factory.mktemp("profile")
    model = build_model("smallcnn", input_shape=(16, 16, 3), width=0.5)
    save_keras_model(model, folder / "tiny.h5", metadata={"arch": "smallcnn"})
    (folder / "tiny.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    # OpenVINO reads the .tflite directly: much faster than tracing the Keras model again.
    ov.save_model(ov.convert_model(str(folder / "tiny.tflite")), str(folder / "tiny.xml"), compress_to_fp16=False)
    return folder


# ------------------------------------------------------------------ statistics and protocol

def test_summary_statistics_of_known_samples():
    summary = summarize_latency([1.0, 2.0, 3.0, 4.0, 10.0], batch=8)
    lat = summary["latency_ms"]
    assert (lat["min"], lat["p50"], lat["max"], lat["mean"]) == (1.0, 3.0, 10.0, 4.0)
    assert lat["p25"] == 2.0 and lat["p75"] == 4.0
    assert lat["std"] == pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1), abs=1e-4)
    assert summary["cv"] == pytest.approx(lat["std"] / 4.0, abs=1e-4)
    assert summary["throughput_ips"] == pytest.approx(8 * 1000 / 4.0)


def test_timing_meets_both_minimums():
    calls = []
    wall, cpu, warmups = time_calls(lambda: calls.append(1), warmup=4, warmup_time_s=0.02, runs=7,
                                    min_time_s=0.05)
    assert warmups >= 4 and len(wall) >= 7 and len(cpu) == len(wall)
    assert len(calls) == warmups + len(wall)
    # Runs go on until min time is reached even though 7 runs were done in microseconds.
    assert len(wall) > 7
    slow = time_calls(lambda: __import__("time").sleep(0.01), warmup=0, warmup_time_s=0.0, runs=3,
                      min_time_s=0.0)[0]
    assert len(slow) == 3 and min(slow) >= 9.0


def test_config_and_list_validation():
    assert parse_int_list("1,32, 64", "--batch") == (1, 32, 64)
    assert parse_int_list("0-2,5", "--cpus") == (0, 1, 2, 5)
    with pytest.raises(EdgepruneError, match="--batch"):
        parse_int_list("1,x", "--batch")
    with pytest.raises(EdgepruneError, match="batch sizes must be >= 1"):
        ProfileConfig(batches=(0,))
    with pytest.raises(EdgepruneError, match="thread counts"):
        ProfileConfig(threads=(0,))
    with pytest.raises(EdgepruneError, match="isolation"):
        ProfileConfig(isolation="thread")


# ---------------------------------------------------------------------------------- sizes

def test_gzip_shows_what_90_percent_sparsity_saves(tmp_path):
    from edgeprune.modelio import save_keras_model
    from edgeprune.models import build_model

    dense = build_model("smallcnn", input_shape=(16, 16, 3), width=1.0)
    rng = np.random.default_rng(0)
    dense.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in dense.get_weights()])
    save_keras_model(dense, tmp_path / "dense.h5")
    weights = [w.copy() for w in dense.get_weights()]
    for w in weights:
        if w.ndim >= 2:  # conv and dense kernels, by hand: the 90% smallest magnitudes
            w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0.0
    dense.set_weights(weights)
    save_keras_model(dense, tmp_path / "sparse.h5")

    dense_size, sparse_size = model_size(tmp_path / "dense.h5"), model_size(tmp_path / "sparse.h5")
    assert sparse_size["file_bytes"] == pytest.approx(dense_size["file_bytes"], rel=0.02)  # .h5 stores zeros
    assert sparse_size["gzip_bytes"] < 0.4 * sparse_size["file_bytes"]
    assert sparse_size["gzip_bytes"] < 0.5 * dense_size["gzip_bytes"]  # random dense weights barely pack
    kernels = sum(w.size for w in weights if w.ndim >= 2)
    assert sparse_size["params"] - sparse_size["params_nonzero"] == pytest.approx(0.9 * kernels, rel=0.01)

    ov_dense = model_size(ov_convnet(tmp_path / "ovdense.xml", channels=64, depth=3))
    ov_sparse = model_size(ov_convnet(tmp_path / "ovsparse.xml", channels=64, depth=3, sparsity=0.9))
    assert ov_sparse["file_bytes"] == pytest.approx(ov_dense["file_bytes"], rel=1e-3)  # zeros are stored
    assert ov_sparse["gzip_bytes"] < 0.4 * ov_sparse["file_bytes"] < 0.5 * ov_dense["gzip_bytes"]
    assert ov_sparse["params_nonzero"] < 0.2 * ov_sparse["params"]


def test_counts_agree_across_formats(tiny):
    sizes = {fmt: model_size(tiny / f"tiny.{fmt}") for fmt in ("h5", "tflite", "xml")}
    assert sizes["h5"]["macs"] == sizes["tflite"]["macs"] == sizes["xml"]["macs"] > 0
    # Converters fold batch norm into the convs: fewer stored parameters than Keras holds.
    assert sizes["tflite"]["params"] == pytest.approx(sizes["xml"]["params"], rel=0.02)
    assert sizes["xml"]["params"] < sizes["h5"]["params"]
    xml_bytes = (tiny / "tiny.xml").stat().st_size + (tiny / "tiny.bin").stat().st_size
    assert sizes["xml"]["file_bytes"] == xml_bytes


# -------------------------------------------------------------------------------- latency

def test_profile_report_in_process(tiny):
    config = ProfileConfig(batches=(1, 4), threads=(1,), isolation="none", **QUICK)
    report = profile_models([tiny / "tiny.tflite", tiny / "tiny.xml"], config, progress=False)
    assert next(iter(report)) == "schema" and report["schema"] == SCHEMA
    assert {(r["model"], r["format"], r["batch"]) for r in report["results"]} == {
        ("tiny", fmt, b) for fmt in ("tflite", "openvino") for b in (1, 4)}
    for cell in report["results"]:
        lat = cell["latency_ms"]
        assert cell["runs"] >= 5 and cell["warmup_runs"] >= 1
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert cell["throughput_ips"] == pytest.approx(cell["batch"] * 1000 / lat["mean"], rel=1e-3)
        assert cell["peak_rss_bytes"] > 10e6 and len(cell["samples_ms"]) == cell["runs"]
    assert {m["runtime"] for m in report["models"]} == {"ai-edge-litert", "openvino"}
    assert report["host"]["cpu_model"] and report["host"]["physical_cores"]
    table = markdown_report(report)
    assert table.count("| tiny |") == 6 and "p99 ms" in table


def test_keras_in_process_says_when_threads_could_not_be_set(tiny):
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # TensorFlow is initialised: its thread pools are fixed now
    current = tf.config.threading.get_intra_op_parallelism_threads()
    other = 2 if current == 1 else 1
    config = ProfileConfig(batches=(2,), threads=(other,), isolation="none", **QUICK)
    report = profile_models([tiny / "tiny.h5"], config, progress=False)
    cell = report["results"][0]
    assert cell["runtime"] == "tensorflow" and cell["threads_applied"] is False
    assert "(not applied)" in markdown_report(report)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_cpus_0_really_pins_in_a_fresh_process(tiny, tmp_path):
    output = tmp_path / "p.json"
    result = CliRunner().invoke(cli, ["profile", str(tiny / "tiny.tflite"), "--batch", "2,4", "--cpus", "0",
                                      "--runs", "8", "--min-time", "0", "--warmup-time", "0", "--processes", "3",
                                      "-q", "-o", str(output)])
    assert result.exit_code == 0, result.output
    report = json.loads(output.read_text())
    cell = report["results"][0]
    # Three fresh processes per cell, each with its share of --runs (8 / 3 -> 3), pooled; each
    # process's median kept for compare.
    assert [c["batch"] for c in report["results"]] == [2, 4] and report["settings"]["processes"] == 3
    assert cell["processes"] == 3 and len(cell["process_p50_ms"]) == 3 and cell["runs"] == len(cell["samples_ms"]) >= 9
    assert min(cell["process_p50_ms"]) <= cell["latency_ms"]["p50"] <= max(cell["process_p50_ms"])
    assert cell["cpus"] == [0]  # read back inside the worker process that measured
    assert cell["threads"] == 1  # default: one thread per pinned CPU
    assert report["device_like"]["pinned"] and "pinned to CPUs [0]" in report["device_like"]["note"]
    assert "pinned to CPUs [0]" in result.output
    assert output.with_suffix(".csv").read_text().splitlines()[1].startswith("tiny,tflite,ai-edge-litert,2,1,0,")
    assert os.sched_getaffinity(0) != {0} or os.cpu_count() == 1  # this process was not pinned


CLI = "import sys; from edgeprune.cli import main; sys.argv[0] = 'edgeprune'; main()"
BLOCKERS = {"tensorflow": "raise ImportError('blocked by the test: device path must not import TensorFlow')",
            "keras": "raise ImportError('blocked by the test')"}


def test_device_formats_profile_without_tensorflow(tiny, tmp_path):
    for name, body in BLOCKERS.items():
        (tmp_path / "block" / name).mkdir(parents=True)
        (tmp_path / "block" / name / "__init__.py").write_text(body + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "block"), os.environ.get("PYTHONPATH", "")])}
    output = tmp_path / "device.json"
    # The fresh worker processes inherit the blocker through PYTHONPATH.
    done = subprocess.run([sys.executable, "-c", CLI, "profile", str(tiny / "tiny.tflite"),
                           str(tiny / "tiny.xml"), "--batch", "1", "--threads", "1", "--runs", "3",
                           "--min-time", "0", "--processes", "1", "-q", "-o", str(output)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(output.read_text())
    assert {r["format"] for r in report["results"]} == {"tflite", "openvino"}
    assert all(m["params"] for m in report["models"])
    blocked = subprocess.run([sys.executable, "-c", CLI, "profile", str(tiny / "tiny.h5"),
                              "--batch", "1", "--runs", "1", "--min-time", "0", "-q"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert blocked.returncode != 0  # the blocker really blocks: .h5 needs TensorFlow


def test_cli_bad_input_is_one_line(tiny, tmp_path):
    runner = CliRunner()
    cases = [
        (["profile", str(tmp_path / "missing.tflite")], "no such model file"),
        (["profile", str(tiny / "tiny.tflite"), "--cpus", "9999"], "not available"),
        (["profile", str(tiny / "tiny.tflite"), "--batch", "0"], "batch sizes must be >= 1"),
        (["profile", str(tiny / "tiny.tflite"), "--threads", "two"], "--threads"),
    ]
    (tmp_path / "notes.txt").write_text("not a model")
    cases.append((["profile", str(tmp_path / "notes.txt")], "unsupported model format"))
    for args, message in cases:
        result = runner.invoke(cli, args + ["-q"])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    existing = tmp_path / "p.json"
    existing.write_text("{}")
    result = runner.invoke(cli, ["profile", str(tiny / "tiny.tflite"), "-o", str(existing), "-q"])
    assert result.exit_code == 2 and "--force" in result.output and existing.read_text() == "{}"


def test_keras_thread_setting_applies_in_fresh_process(tiny):
    config = ProfileConfig(batches=(4,), threads=(1,), isolation="process", processes=1, **QUICK)
    report = profile_models([tiny / "tiny.h5"], config, progress=False)
    cell = report["results"][0]
    assert cell["threads_applied"] is True and cell["runtime"] == "tensorflow"
    assert report["models"][0]["params"] > 0


def test_cells_say_which_precision_ran_and_tables_show_it(tiny):
    config = ProfileConfig(batches=(2,), threads=(1,), isolation="none", inference_precision="f32", **QUICK)
    report = profile_models([tiny / "tiny.xml", tiny / "tiny.tflite"], config, progress=False)
    by_format = {cell["format"]: cell for cell in report["results"]}
    assert by_format["openvino"]["inference_precision"] == "f32" and by_format["openvino"]["runs_at"] == "f32"
    assert by_format["tflite"]["runs_at"] == "f32 xnnpack"
    assert all(cell["inference_precision_requested"] == "f32" for cell in report["results"])
    assert "| runs at |" in markdown_report(report) and "| f32 xnnpack |" in markdown_report(report)
    assert sorted(cell.runs_at for cell in ProfileResult(record=report).latency()) == ["f32", "f32 xnnpack"]
    with pytest.raises(EdgepruneError, match="inference precision must be one of"):
        ProfileConfig(inference_precision="fp16")
