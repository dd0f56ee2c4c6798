"""`edgeprune attack` transfer sets and `edgeprune evaluate`: CLI paths, fit checks, runtimes, views."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.io import sha256_file

LIMIT = 48


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def base(digits_model):
    return digits_model[0]


@pytest.fixture(scope="module")
def pgd_set(base, workdir, run_cli) -> Path:
    result = run_cli("attack", base, "-a", "pgd", "--eps", "0.2", "--steps", "5", "-d", "digits", "--limit", LIMIT,
                     "-o", workdir / "sets" / "pgd", "-q")
    assert result.exit_code == 0, result.output
    return workdir / "sets" / "pgd.npz"


@pytest.fixture(scope="module")
def pruned(digits_model, workdir) -> Path:
    """The base with the 30% lowest-L2 filters of every conv zeroed, recorded as derived from it."""
    import tensorflow as tf

    from edgeprune.io import sha256_file
    from edgeprune.modelio import read_metadata, save_keras_model

    path, model, _ = digits_model
    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:
        if isinstance(layer, tf.keras.layers.Conv2D):
            kernel, *rest = layer.get_weights()
            norms = np.sqrt((kernel ** 2).reshape(-1, kernel.shape[-1]).sum(axis=0))
            cut = np.argsort(norms)[: int(0.3 * len(norms))]
            kernel[..., cut] = 0
            layer.set_weights([kernel, *rest])
    meta = {**read_metadata(path), "pruning": {"method": "test-filter", "reached_sparsity": 0.3,
                                               "source_sha256": sha256_file(path)}}
    out = workdir / "pruned30.h5"
    save_keras_model(clone, out, metadata=meta)
    return out


def test_attack_cli_writes_a_transfer_set(pgd_set, base, digits_model):
    from edgeprune.io import sha256_file

    with np.load(pgd_set, allow_pickle=False) as saved:  # no object arrays
        x_adv, y, index = saved["x_adv"], saved["y"], saved["index"]
    assert x_adv.dtype == np.float32 and x_adv.shape == (LIMIT, 8, 8, 1)
    assert y.dtype == np.int64 and index.dtype == np.int64 and len(set(index.tolist())) == LIMIT
    record = json.loads(pgd_set.with_suffix(".json").read_text())
    assert next(iter(record)) == "schema" and record["schema"] == "edgeprune.transferset/1"
    assert record["attack"] == {**record["attack"], "name": "pgd", "norm": "linf", "eps": 0.2, "seed": 0}
    assert record["attack"]["params"] == {"steps": 5, "step_size": 0.0, "random_start": True}
    assert record["source_model"]["sha256"] == sha256_file(base)
    assert record["dataset"]["name"] == "digits" and record["dataset"]["split"] == "test"
    assert record["input_shape"] == [8, 8, 1] and record["num_classes"] == 10
    assert record["perturbation"]["linf"]["max"] <= 0.2 + 1e-6
    assert set(record["versions"]) >= {"edgeprune", "tensorflow-cpu", "numpy", "cleverhans"}
    # The recorded figures are the model's: recompute adversarial accuracy and the labels.
    from edgeprune.data import load_dataset

    x_test, y_test = load_dataset("digits").split("test")
    np.testing.assert_array_equal(y_test[index], y)
    model = digits_model[1]
    accuracy = float(np.mean(np.argmax(model(x_adv, training=False), axis=1) == y))
    assert accuracy == pytest.approx(record["source_metrics"]["adversarial_accuracy"])
    assert accuracy < record["source_metrics"]["clean_accuracy"] - 0.5
    assert not pgd_set.with_name("pgd.partial.npz").exists()


def test_attack_cli_bad_inputs(base, workdir, pgd_set, run_cli):
    out = workdir / "sets" / "bad"
    cases = [
        (["-a", "nope"], "unknown attack 'nope'; expected one of apgd"),
        (["-a", "pgd", "--eps", "0"], "--eps must be > 0, got 0.0"),
        (["-a", "pgd", "--eps", "-0.1"], "--eps must be > 0"),
        (["-a", "pgd", "-p", "iters=3"], "unknown parameter(s) iters; valid: steps"),
        (["-a", "pgd", "-p", "steps"], "--param expects KEY=VALUE"),
        (["-a", "cw", "--norm", "linf"], "supports norm l2"),
        (["-a", "fgsm", "--preset", "vora2023", "--limit", "0"], "0 is not in the range"),
    ]
    for args, message in cases:
        result = run_cli("attack", base, *args, "-o", out, "-q")
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    result = run_cli("attack", base, "-a", "pgd", "--limit", LIMIT, "-o", workdir / "sets" / "pgd", "-q")
    assert result.exit_code == 2 and "exists; pass --force" in result.output
    assert not any(p.name.startswith("bad") for p in (workdir / "sets").iterdir())


def test_attack_cli_refuses_other_image_shape_and_empty_split(base, tmp_path, run_cli):
    rng = np.random.default_rng(0)
    other = tmp_path / "other.npz"
    np.savez(other, x_train=rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8), y_train=np.arange(20) % 10,
             x_test=rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8), y_test=np.arange(10))
    result = run_cli("attack", base, "-a", "fgsm", "-d", f"npz:{other}", "-o", tmp_path / "s", "-q")
    assert result.exit_code == 2 and "takes images of shape (8, 8, 1)" in result.output
    empty = tmp_path / "empty.npz"
    np.savez(empty, x_train=rng.integers(0, 255, (20, 8, 8, 1), dtype=np.uint8), y_train=np.arange(20) % 10,
             x_test=np.zeros((0, 8, 8, 1), np.uint8), y_test=np.zeros(0, np.int64))
    result = run_cli("attack", base, "-a", "fgsm", "-d", f"npz:{empty}", "-o", tmp_path / "s", "-q")
    assert result.exit_code == 2 and "split is empty" in result.output
    assert not list(tmp_path.glob("s*"))


def test_same_set_through_keras_tflite_and_openvino(digits_model, pgd_set, workdir):
    """One transfer set, three runtimes of the same fp32 model: accuracies within 0.5 points."""
    import openvino as ov
    import tensorflow as tf

    from edgeprune.evaluate import evaluate

    path, model, _ = digits_model
    tflite = workdir / "base.tflite"
    tflite.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    xml = workdir / "base.xml"
    ov.save_model(ov.convert_model(model), str(xml), compress_to_fp16=False)
    report = evaluate([path, tflite, xml], [pgd_set], dataset_spec="digits")
    for row in ("clean", "pgd"):
        values = list(report["accuracy"][row].values())
        assert max(values) - min(values) <= 0.005, (row, report["accuracy"][row])
    assert [m["format"] for m in report["models"]] == ["keras", "tflite", "openvino"]


def test_evaluate_views_and_outputs(base, pruned, pgd_set, workdir, run_cli):
    """Base + pruned: view (a) with max delta; sets crafted on both: a 2x2 transfer matrix + PNG."""
    result = run_cli("attack", pruned, "-a", "pgd", "--eps", "0.2", "--steps", "5", "--limit", LIMIT,
                     "-o", workdir / "sets" / "pgd_on_pruned", "-q")
    assert result.exit_code == 0, result.output
    result = run_cli("evaluate", base, pruned, "--sets", f"{pgd_set},{workdir / 'sets' / 'pgd_on_pruned.npz'}",
                     "-o", workdir / "report" / "r", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "report" / "r.json").read_text())
    assert report["schema"] == "edgeprune.evaluate/1"
    base_label, pruned_label = base.name, pruned.name
    acc = report["accuracy"]
    assert set(acc) == {"clean", "pgd", "pgd_on_pruned"}
    assert acc["clean"][base_label] > 0.9 and acc["pgd"][base_label] < 0.3
    (view_a,) = report["views"]["base_vs_derived"]
    assert view_a["base"] == base_label and view_a["columns"] == [base_label, pruned_label]
    rows = {r["row"]: r for r in view_a["rows"]}
    assert set(rows) == {"clean", "pgd"}  # sets crafted on the base only
    assert rows["pgd"]["max_delta"] == pytest.approx(acc["pgd"][pruned_label] - acc["pgd"][base_label])
    (view_b,) = report["views"]["transfer"]
    assert [r["surrogate"] for r in view_b["rows"]] == [base_label, pruned_label]
    assert view_b["victims"] == [base_label, pruned_label]
    # White-box cells (surrogate == victim) are the strongest in their column.
    grid = {(r["surrogate"], v): r["accuracy"][v] for r in view_b["rows"] for v in view_b["victims"]}
    assert grid[(base_label, base_label)] <= grid[(pruned_label, base_label)]
    csv_lines = (workdir / "report" / "r.csv").read_text().strip().splitlines()
    assert csv_lines[0].startswith("set,attack,surrogate,model") and len(csv_lines) == 1 + 3 * 2
    markdown = (workdir / "report" / "r.md").read_text()
    assert "max δ vs base" in markdown and "(b) Transferability: pgd" in markdown
    assert (workdir / "report" / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_refuses_sets_that_do_not_fit(base, pgd_set, tmp_path, run_cli):
    from edgeprune.evaluate import evaluate

    # A set recorded as drawn from another dataset.
    foreign = tmp_path / "foreign.npz"
    shutil.copy(pgd_set, foreign)
    record = json.loads(pgd_set.with_suffix(".json").read_text())
    record["dataset"] = {**record["dataset"], "name": "cifar10", "spec": "cifar10"}
    foreign.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(EdgepruneError, match="set foreign comes from 'cifar10'.*not from the given dataset 'digits'"):
        evaluate([base], [foreign], dataset_spec="digits")
    # A set of 32x32x3 images.
    wide = tmp_path / "wide.npz"
    np.savez(wide, x_adv=np.zeros((4, 32, 32, 3), np.float32), y=np.zeros(4, np.int64), index=np.arange(4))
    record = {**json.loads(pgd_set.with_suffix(".json").read_text()), "input_shape": [32, 32, 3]}
    record["files"]["npz_sha256"] = sha256_file(wide)  # a consistent pair: the checks behind the hash refuse it
    wide.with_suffix(".json").write_text(json.dumps(record))
    result = run_cli("evaluate", base, "--sets", wide, "-q")
    assert result.exit_code == 2 and "has images of shape (32, 32, 3), model" in result.output
    assert len(result.output.strip().splitlines()) == 1
    # A set whose fingerprint is not the given dataset's split.
    with pytest.raises(EdgepruneError, match="fingerprint"):
        shifted = tmp_path / "shifted.npz"
        shutil.copy(pgd_set, shifted)
        record = json.loads(pgd_set.with_suffix(".json").read_text())
        record["dataset"]["fingerprint"] = "0" * 16
        shifted.with_suffix(".json").write_text(json.dumps(record))
        evaluate([base], [shifted], dataset_spec="digits")
    # Not a transfer set at all.
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    record["files"]["npz_sha256"] = sha256_file(junk)
    junk.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(EdgepruneError, match="not a readable transfer set"):
        evaluate([base], [junk])
    assert run_cli("evaluate", base, "-q").exit_code == 2
