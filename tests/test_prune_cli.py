"""`edgeprune prune` as a user runs it: outputs, report, info, and every bad-input path."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_tfmot_global_fine_tune_writes_model_report_and_info_shows_sparsity(tmp_path, digits_model, run_cli):
    from edgeprune.modelio import load_keras_model, read_metadata

    base_path, _, trained = digits_model
    output = tmp_path / "pruned.h5"
    result = run_cli("prune", base_path, "--method", "tfmot", "--sparsity", "0.7", "--scope", "global",
                     "--schedule", "constant", "--epochs", "1", "--batch-size", "64", "--limit-train", "512",
                     "-d", "digits", "-o", output, "--quiet")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and str(output) in result.stdout
    report = json.loads(output.with_suffix(".json").read_text())
    assert list(report)[0] == "schema" and report["schema"] == "edgeprune.prune/1"
    assert report["method"] == "tfmot" and report["target"]["scope"] == "global"
    assert abs(report["reached"]["prunable_sparsity"] - 0.7) <= 0.01
    # Figures are measured on the saved file, layer by layer.
    saved = load_keras_model(output)
    by_name = {layer.name: layer for layer in saved.layers}
    for row in report["layers"]:
        kernel = by_name[row["layer"]].get_weights()[0]
        assert row["zeros"] == int((kernel == 0).sum()) and row["weights"] == kernel.size
        assert abs(row["sparsity"] - row["target_sparsity"]) <= 0.01
        assert row["filters_kept"] == row["filters"]  # unstructured: no filter dies here
    assert len({row["sparsity"] for row in report["layers"]}) > 1  # one threshold, uneven layers
    assert report["before"]["test_accuracy"] == pytest.approx(trained["test_accuracy"])
    assert report["after"]["test_accuracy"] >= report["before"]["test_accuracy"] - 0.1
    assert report["before"]["params"] == report["after"]["params"] == trained["params"]
    assert report["after"]["gzip_bytes"] < report["before"]["gzip_bytes"]
    schedule = report["method_info"]["schedule"]
    assert schedule["kind"] == "constant" and schedule["end_step"] <= schedule["total_steps"] == 8
    assert report["seed"] == 0 and report["seconds"] > 0 and report["versions"]["tensorflow-model-optimization"]
    assert output.with_suffix(".csv").read_text().startswith("layer,kind,weights_before,weights,zeros,sparsity")
    assert "| block3_conv |" in output.with_suffix(".md").read_text()
    meta = read_metadata(output)
    assert meta["dataset"] == "digits" and meta["arch"] == "smallcnn"
    assert meta["pruning"]["method"] == "tfmot" and meta["pruning"]["reached_sparsity"] == report["after"]["sparsity"]

    info = run_cli("info", output, "--json")
    assert info.exit_code == 0, info.output
    record = json.loads(info.output)
    assert record["sparsity"] == pytest.approx(report["after"]["sparsity"])
    table = run_cli("info", output)
    assert f"{report['after']['sparsity']:.2%}" in table.output


def test_tfmot_two_four_one_shot(tmp_path, digits_model, run_cli):
    base_path, _, _ = digits_model
    output = tmp_path / "nm.h5"
    result = run_cli("prune", base_path, "-m", "tfmot", "--pattern", "2:4", "--epochs", "0", "-o", output, "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["target"]["pattern"] == "2:4" and report["target"]["sparsity"] == 0.5
    assert set(report["method_info"]["pattern_violations"].values()) == {0}
    rows = {row["layer"]: row for row in report["layers"]}
    assert rows["block1_conv"]["sparsity"] == 0.0  # one input channel: skipped, and said so
    assert report["method_info"]["skipped_layers"][0]["layer"] == "block1_conv"
    assert all(rows[name]["sparsity"] == 0.5 for name in ("block2_conv", "block3_conv", "logits"))


def _tiny_narrow_model(path):
    """Conv sees 1 input channel, Dense sees 3: nothing holds a group of 4."""
    import tensorflow as tf

    from edgeprune.modelio import save_keras_model

    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(3, 3, padding="same")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    save_keras_model(tf.keras.Model(inputs, tf.keras.layers.Dense(10)(x), name="narrow"), path)
    return path


BAD_INPUTS = [
    (["-m", "tfmot", "--sparsity", "1.5"], "sparsity must be in (0, 1), got 1.5"),
    (["-m", "tfmot", "--sparsity", "0"], "sparsity must be in (0, 1), got 0.0"),
    (["-m", "tfmot", "--pattern", "4:2"], "0 < N < M"),
    (["-m", "tfmot", "--pattern", "2:4", "--sparsity", "0.5"], "not both"),
    (["-m", "tfmot", "--pattern", "2:4", "--scope", "lamp"], "does not combine"),
    (["-m", "tfmot", "--criterion", "l1"], "--criterion apply to --method nncf-filter"),
    (["-m", "nncf-filter", "--sparsity", "0.5"], "--sparsity apply to --method tfmot"),
    (["-m", "nncf-filter", "--target", "1.2"], "--target must be in (0, 1), got 1.2"),
    (["-m", "nncf-filter", "--target", "0.3", "--flops-target", "0.3"], "not both"),
    (["-m", "nncf-filter", "--flops-target", "0"], "--flops-target must be in (0, 1)"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_values_one_line_exit_2_no_output(tmp_path, digits_model, args, message, run_cli):
    base_path, _, _ = digits_model
    result = run_cli("prune", base_path, *args, "-o", tmp_path / "out.h5")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_pattern_without_eligible_layers_and_missing_model(tmp_path, run_cli):
    narrow = _tiny_narrow_model(tmp_path / "narrow.h5")
    result = run_cli("prune", narrow, "-m", "tfmot", "--pattern", "2:4", "-o", tmp_path / "out.h5")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: model 'narrow' has no layer eligible for 2:4 (needs Conv2D/Dense with at least 4 input channels)"]
    result = run_cli("prune", tmp_path / "absent.h5", "-m", "tfmot", "-o", tmp_path / "out.h5")
    assert result.exit_code == 2 and "no such model file" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["narrow.h5"]


def test_refuses_to_overwrite_and_to_prune_onto_its_input(tmp_path, digits_model, run_cli):
    base_path, _, _ = digits_model
    output = tmp_path / "pruned.h5"
    output.write_bytes(b"keep me")
    result = run_cli("prune", base_path, "-m", "tfmot", "-o", output)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert output.read_bytes() == b"keep me"
    result = run_cli("prune", base_path, "-m", "tfmot", "-o", base_path, "--force")
    assert result.exit_code == 2 and "overwrite the input" in result.stderr


def test_interrupted_prune_leaves_nothing(tmp_path, digits_model, monkeypatch, run_cli):
    import edgeprune.prune.report

    def interrupted(report):
        raise KeyboardInterrupt

    # Ctrl-C after the model is saved, while the report is written: the model goes too.
    monkeypatch.setattr(edgeprune.prune.report, "markdown", interrupted)
    base_path, _, _ = digits_model
    result = run_cli("prune", base_path, "-m", "tfmot", "--epochs", "0", "-o", tmp_path / "p.h5", "-q")
    assert result.exit_code != 0
    assert list(tmp_path.iterdir()) == []


def test_help_lists_both_methods_and_report(run_cli):
    result = run_cli("prune", "--help")
    assert result.exit_code == 0
    for text in ("tfmot", "nncf-filter", "--scope", "lamp", "--pattern", "--shrink", "edgeprune.prune/1"):
        assert text in result.output


def test_nncf_filter_shrinks_and_keeps_the_masked_model_beside(tmp_path, digits_model, digits, run_cli):
    from edgeprune.modelio import load_keras_model, read_metadata
    from edgeprune.runtime import KerasPredictor

    base_path, _, trained = digits_model
    output = tmp_path / "filters.h5"
    result = run_cli("prune", base_path, "-m", "nncf-filter", "--criterion", "l1", "--target", "0.5",
                     "--epochs", "1", "--limit-train", "256", "-o", output, "-q")
    assert result.exit_code == 0, result.output
    masked_path = tmp_path / "filters.masked.h5"
    assert masked_path.exists() and "filters removed" in result.stdout
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["method"] == "nncf-filter" and report["target"]["criterion"] == "l1"
    assert report["output"]["masked_path"] == str(masked_path)
    masked, shrunk = load_keras_model(masked_path), load_keras_model(output)
    # Filters really gone: fewer params and MACs than the base, zero filters only in the masked file.
    assert report["after"]["params"] == shrunk.count_params() < 0.7 * trained["params"]
    assert report["reached"]["macs_ratio"] < 0.7 and report["reached"]["filters_removed_fraction"] > 0.3
    assert report["models"]["masked"]["filters_zero"] > 0 and masked.count_params() == trained["params"]
    x, _ = digits.split("test")
    diff = np.abs(KerasPredictor(masked).predict(x) - KerasPredictor(shrunk).predict(x)).max()
    assert diff < 1e-4 and report["method_info"]["shrink"]["max_abs_logit_diff_vs_masked"] < 1e-4
    assert read_metadata(masked_path)["pruning"]["shrunk"] is False
    assert read_metadata(output)["pruning"]["criterion"] == "l1"
    rows = {row["layer"]: row for row in report["layers"]}
    assert rows["block3_conv"]["filters_kept"] < rows["block3_conv"]["filters"] == 64
