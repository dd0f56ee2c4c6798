"""`edgeprune bench`: suite validation, grid expansion, content-addressed cache, resume, report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgeprune.bench.cache import Cache, cell_key, check_state, save_state
from edgeprune.bench.grid import build_grid
from edgeprune.bench.runner import FAULT_ENV, Keys, RunOptions, run_suite
from edgeprune.bench.suite import load_suite, parse_suite
from edgeprune.errors import EdgepruneError

REPO = Path(__file__).resolve().parents[1]

MICRO = {
    "suite": "micro",
    "datasets": [{"spec": "digits", "limit_train": 600, "limit_test": 200}],
    "models": [{"arch": "smallcnn", "train": {"epochs": 1, "batch_size": 64, "milestones": ""}}],
    "pruning": [{"name": "tfmot", "method": "tfmot", "sparsity": [0.5], "args": {"epochs": 0}}],
    "attacks": [{"attack": "fgsm", "limit": 50, "args": {"eps": 0.1}}],
    "evaluate": {"limit": 100},
}


def write_suite(folder: Path, data: dict, name: str = "suite.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- schema ----------------------------------------------------------------------------------

@pytest.mark.parametrize("patch, message", [
    ({"models": [{"arch": "resnet9"}]}, r"models\[0\]\.arch: unknown value 'resnet9'; allowed: smallcnn,"),
    ({"pruning": [{"method": "magnitude", "sparsity": 0.5}]},
     r"pruning\[0\]\.method: unknown value 'magnitude'; allowed: tfmot, nncf-filter"),
    ({"pruning": [{"method": "tfmot", "sparsity": [0.5, 1.5]}]},
     r"pruning\[0\]\.sparsity\[1\]: expected a number in \(0, 1\), got 1.5"),
    ({"pruning": [{"method": "tfmot", "sparsity": 0.5, "scope": "lamb"}]},
     r"pruning\[0\]\.scope: unknown value 'lamb'; allowed: local, global, lamp"),
    ({"pruning": [{"method": "nncf-filter", "sparsity": 0.5}]}, r"pruning\[0\]: nncf-filter takes `target`"),
    ({"pruning": [{"method": "tfmot", "sparsity": 0.5, "args": {"epoch": 1}}]},
     r"pruning\[0\]\.args\.epoch: not an option of `edgeprune prune`; allowed: .*epochs"),
    ({"conversions": [{"format": "onnx"}]}, r"conversions\[0\]\.format: unknown value 'onnx'; allowed: tflite"),
    ({"conversions": [{"format": "openvino", "precision": "dynamic"}]},
     r"conversions\[0\]\.precision: unknown value 'dynamic'; allowed: fp32, fp16, int8"),
    ({"attacks": [{"attack": "pgd", "surrogates": ["vgg"]}]},
     r"attacks\[0\]\.surrogates\[0\]: unknown value 'vgg'; allowed: smallcnn"),
    ({"profile": {"batch": [0]}}, r"profile\.batch: expected an integer >= 1, got 0"),
    ({"evaluate": {"formats": ["onnx"]}}, r"evaluate\.formats\[0\]: unknown value 'onnx'; allowed: keras, tflite"),
    ({"datasets": [{"spec": "mnist"}]}, r"datasets\[0\]\.spec: unknown dataset 'mnist'; allowed: digits"),
    ({"datasets": [{"spec": "npz:${EDGEPRUNE_NO_SUCH_VAR_X}"}]},
     r"datasets\[0\]\.spec: environment variable EDGEPRUNE_NO_SUCH_VAR_X is not set"),
    ({"pruning": [{"method": "tfmot", "sparsity": 0.5, "taxonomy": {"iteration": "twice"}}]},
     r"pruning\[0\]\.taxonomy\.iteration: unknown value 'twice'; allowed: one-shot, iterative"),
    ({"colour": "red"}, r"suite file: unknown key 'colour'; allowed: schema, suite,"),
], ids=repr)
def test_schema_errors_name_the_key_and_the_allowed_values(tmp_path, patch, message):
    path = write_suite(tmp_path, {**MICRO, **patch})
    with pytest.raises(EdgepruneError, match=message) as info:
        load_suite(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_suite_args_take_the_inference_precision_of_convert_evaluate_and_profile(tmp_path):
    from edgeprune import api
    from edgeprune.options import from_args

    suite = load_suite(write_suite(tmp_path, {
        **MICRO, "conversions": [{"format": "openvino", "args": {"inference-precision": "f32"}}],
        "evaluate": {"limit": 100, "args": {"inference-precision": "f32"}},
        "profile": {"batch": [1], "args": {"inference_precision": "bf16"}}}))
    assert from_args(api.ConvertOptions, suite.conversions[0].args, target="openvino").inference_precision == "f32"
    assert from_args(api.EvaluateOptions, suite.evaluate.args, dataset="digits").inference_precision == "f32"
    assert from_args(api.ProfileOptions, suite.profile.args).config().inference_precision == "bf16"


def test_bad_suite_is_one_line_exit_2_from_the_cli(tmp_path):
    from edgeprune.cli import cli

    path = write_suite(tmp_path, {**MICRO, "models": [{"arch": "resnet9"}]})
    result = CliRunner().invoke(cli, ["bench", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "models[0].arch" in result.output
    assert not (tmp_path / "out").exists()


def test_dataset_paths_resolve_relative_to_the_suite_or_from_the_environment(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "sample.npz").write_bytes(b"x")
    suites = tmp_path / "suites"
    suites.mkdir()
    relative = load_suite(write_suite(suites, {**MICRO, "datasets": [{"spec": "npz:../data/sample.npz"}]}))
    assert relative.datasets[0].spec == f"npz:{data / 'sample.npz'}"
    assert relative.datasets[0].name == "sample"
    monkeypatch.setenv("EP_TEST_SAMPLE", str(data / "sample.npz"))
    from_env = load_suite(write_suite(suites, {**MICRO, "datasets": [
        {"name": "c10", "spec": "npz:${EP_TEST_SAMPLE:-missing.npz}"}]}))
    assert from_env.datasets[0].spec == f"npz:{data / 'sample.npz'}"


def test_shipped_suites_are_valid(monkeypatch, tmp_path):
    sample = tmp_path / "cifar.npz"
    sample.write_bytes(b"x")
    monkeypatch.setenv("EDGEPRUNE_CIFAR_SAMPLE", str(sample))
    names = sorted(p.name for p in (REPO / "benchmarks").glob("*.yaml"))
    assert {"quick.yaml", "vora2023.yaml", "vora2023-cpu.yaml", "piras2024.yaml",
            "piras2024-cpu.yaml"} <= set(names)
    for name in names:
        suite = load_suite(REPO / "benchmarks" / name)
        assert build_grid(suite).cells, name


# --- grid --------------------------------------------------------------------------------------

def test_grid_expands_the_product_and_wires_dependencies(tmp_path):
    suite = parse_suite({
        "suite": "g",
        "datasets": ["digits"],
        "models": [{"arch": "smallcnn"}, {"name": "cnn2", "arch": "smallcnn"}],
        "pruning": [{"name": "tm", "method": "tfmot", "sparsity": [0.5, 0.9], "scope": ["local", "lamp"]},
                    {"name": "nf", "method": "nncf-filter", "target": [0.3], "criterion": ["l1", "gm"],
                     "models": ["cnn2"]}],
        "conversions": [{"format": "tflite"}, {"format": "openvino", "of": "pruned"}],
        "attacks": [{"attack": "fgsm"}, {"attack": "pgd", "surrogates": ["smallcnn"]}],
        "profile": {"batch": [1, 32], "formats": ["tflite", "openvino"]},
    }, tmp_path / "g.yaml")
    grid = build_grid(suite)
    counts = grid.count()
    keras_models = 2 + 2 * 2 * 2 + 2  # bases, tfmot (2 scopes x 2 levels) x 2 models, nncf 2 criteria
    assert counts["train"] == 2 and counts["prune"] == keras_models - 2
    assert counts["convert"] == keras_models + (keras_models - 2)
    assert counts["attack"] == 3  # fgsm on both surrogates, pgd on one
    assert counts["evaluate"] == keras_models + counts["convert"]
    assert counts["profile"] == counts["convert"]
    cell = grid.cells["convert:digits/cnn2/nf-gm/0.3/openvino-fp32"]
    assert cell.deps == {"model": "prune:digits/cnn2/nf-gm/0.3"}
    assert grid.cells["prune:digits/cnn2/nf-gm/0.3"].params["criterion"] == "gm"
    evaluate = grid.cells["evaluate:digits/smallcnn/tm-lamp/0.9/tflite-fp32"]
    assert set(evaluate.deps) == {"model", "set:fgsm@smallcnn", "set:fgsm@cnn2", "set:pgd@smallcnn"}
    assert all(c.exclusive for c in grid.cells.values() if c.stage == "profile")
    order = [c.id for c in grid.order()]
    for cell in grid.cells.values():  # every dependency comes first
        assert all(order.index(dep) < order.index(cell.id) for dep in cell.deps.values())
    taxonomy = grid.cells["prune:digits/smallcnn/tm-lamp/0.5"].labels["taxonomy"]
    assert taxonomy["criterion"] == "lamp" and taxonomy["structure"] == "unstructured"


# --- cache -------------------------------------------------------------------------------------

def test_cache_key_changes_when_any_input_changes(tmp_path):
    stack = {"edgeprune": "0.1.0", "tensorflow": "2.15.1"}
    params = {"method": "tfmot", "sparsity": 0.5}
    key = cell_key("prune", params, {"model": "a" * 64}, stack)
    assert key == cell_key("prune", dict(reversed(params.items())), {"model": "a" * 64}, stack)
    assert key != cell_key("prune", {**params, "sparsity": 0.8}, {"model": "a" * 64}, stack)
    assert key != cell_key("prune", params, {"model": "b" * 64}, stack)
    assert key != cell_key("prune", params, {"model": "a" * 64}, {**stack, "tensorflow": "2.16.0"})
    assert key != cell_key("convert", params, {"model": "a" * 64}, stack)

    # A given model file: its bytes, not its name, decide the key.
    model = tmp_path / "given.h5"
    model.write_bytes(b"weights-1")
    suite = parse_suite({"suite": "k", "datasets": ["digits"], "models": [{"path": str(model)}],
                         "pruning": [{"method": "tfmot", "sparsity": 0.5}]}, tmp_path / "k.yaml")
    cell = build_grid(suite).cells["prune:digits/given/tfmot/0.5"]
    first = Keys(Cache(tmp_path / "c")).key(cell, Keys(Cache(tmp_path / "c")).inputs(cell, {}))
    model.write_bytes(b"weights-2")
    keys = Keys(Cache(tmp_path / "c"))
    assert keys.key(cell, keys.inputs(cell, {})) != first


def test_state_file_refuses_a_different_suite_unless_force_mix(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = parse_suite(MICRO, tmp_path / "a.yaml")
    save_state(out, check_state(out, first, force_mix=False))
    save_state(out, check_state(out, first, force_mix=False))  # same suite: fine
    other = parse_suite({**MICRO, "suite": "other"}, tmp_path / "b.yaml")
    with pytest.raises(EdgepruneError, match="holds results of suite 'micro'.*--force-mix"):
        check_state(out, other, force_mix=False)
    state = check_state(out, other, force_mix=True)
    assert [s["name"] for s in state["suites"]] == ["micro", "other"]
    # The same suite, edited (one more level), keeps its folder and is recorded beside.
    edited = parse_suite({**MICRO, "pruning": [{"method": "tfmot", "sparsity": [0.5, 0.8]}]}, tmp_path / "a.yaml")
    assert edited.digest != first.digest
    assert len(check_state(out, edited, force_mix=False)["suites"]) == 2


def test_a_cache_is_locked_by_one_run(tmp_path):
    cache = Cache(tmp_path / "cache")
    with cache.lock():
        with pytest.raises(EdgepruneError, match="in use by another"):
            with Cache(tmp_path / "cache").lock():
                pass
    with cache.lock():  # released
        pass


def test_incomplete_cells_are_not_reused(tmp_path):
    cache = Cache(tmp_path)
    key = "ab" * 32
    staging = cache.new_staging(key)
    (staging / "model.h5").write_bytes(b"1234")
    cache.commit(staging, key, {"key": key, "outputs": {"model.h5": {
        "file": "model.h5", "bytes": 4, "sha256": "03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4"}}})
    assert cache.manifest(key) is not None
    (cache.path(key) / "model.h5").write_bytes(b"1235")  # same size, other bytes
    assert cache.check(key) == (None, "cached output model.h5 does not match its recorded sha256 (changed or corrupt)")
    (cache.path(key) / "model.h5").write_bytes(b"12")  # truncated output
    assert cache.manifest(key) is None
    (cache.path(key) / "manifest.json").write_text("{not json")
    assert cache.manifest(key) is None


# --- report parsing ------------------------------------------------------------------------------

def test_report_reads_evaluate_and_the_three_robustness_records():
    from edgeprune.bench.report import evaluate_rows, robustness_fields
    from edgeprune.results import EvaluateResult, RobustnessResult, TransferSetResult

    rows = evaluate_rows(EvaluateResult(record={
        "accuracy": {"clean": {"model.h5": 0.97}, "pgd@smallcnn": {"model.h5": 0.41}},
        "images": {"clean": 200, "pgd@smallcnn": 100}}))
    assert rows == [{"set": "clean", "accuracy": 0.97, "samples": 200},
                    {"set": "pgd@smallcnn", "accuracy": 0.41, "samples": 100}]
    autoattack = robustness_fields(RobustnessResult(record={
        "schema": "edgeprune.autoattack/1", "config": {"eps": 0.03},
        "models": [{"clean_accuracy": 0.9, "robust_accuracy": 0.3, "images": 50,
                    "stages": [{"name": "apgd-ce", "robust_accuracy": 0.4},
                               {"name": "apgd-t", "robust_accuracy": 0.3}]}]}), {})
    assert autoattack["robust_accuracy"] == 0.3 and autoattack["stages"] == {"apgd-ce": 0.4, "apgd-t": 0.3}
    fmn = robustness_fields(RobustnessResult(record={
        "grid": [0.0, 0.1], "curves": {"m.h5": [0.9, 0.2]},
        "models": [{"clean_accuracy": 0.9, "median_norm": 0.08, "images": 50,
                    "robust_accuracy_at": {"0.0313725": 0.7, "0.1": 0.2}}]}), {"eps": "8/255"})
    assert fmn["robust_accuracy"] == 0.7 and fmn["curve"] == {"eps": [0.0, 0.1], "accuracy": [0.9, 0.2]}
    crafted = robustness_fields(TransferSetResult(record={
        "attack": {"eps": 0.1}, "dataset": {"images": 50},
        "source_metrics": {"clean_accuracy": 0.9, "adversarial_accuracy": 0.5}}), {})
    assert (crafted["eps"], crafted["robust_accuracy"], crafted["samples"]) == (0.1, 0.5, 50)


def test_transfer_table_is_surrogate_by_victim_by_sparsity():
    from edgeprune.bench.report import transfer_tables

    def row(surrogate, model, prune, level, accuracy):
        return {"dataset": "d", "set": f"pgd@{surrogate}", "attack": "pgd", "surrogate": surrogate,
                "model": model, "prune": prune, "level": level, "runtime": "keras", "accuracy": accuracy}

    data = {"accuracy": [row("a", "a", "base", 0.0, 0.1), row("a", "b", "base", 0.0, 0.6),
                         row("a", "b", "l1", 0.5, 0.5), row("a", "b", "l2", 0.5, 0.7),
                         row("b", "a", "base", 0.0, 0.4), row("b", "b", "base", 0.0, 0.2)]}
    table = transfer_tables(data)[0]
    assert "| surrogate \\ victim | a base | b base | b 0.5 |" in table
    assert "| a | 0.1000 | 0.6000 | 0.6000 |" in table  # 0.5 and 0.7 averaged over families
    assert "| b | 0.4000 | 0.2000 | - |" in table


# --- running -------------------------------------------------------------------------------------

def _log(out: Path) -> str:
    return (out / "bench.log").read_text()


def test_interrupted_run_resumes_reuses_and_reports_like_a_clean_run(tmp_path, monkeypatch):
    suite = load_suite(write_suite(tmp_path, MICRO))
    cells = len(build_grid(suite).cells)
    resumed, clean = tmp_path / "resumed", tmp_path / "clean"

    # 1. The 2nd cell's worker dies (os._exit) after writing its outputs, before its manifest.
    monkeypatch.setenv(FAULT_ENV, "2")
    with pytest.raises(EdgepruneError, match="worker died while running prune:"):
        run_suite(suite, RunOptions(out=resumed, workers=1, progress=False))
    monkeypatch.delenv(FAULT_ENV)
    assert len(list((resumed / "cache" / "cells").glob("*/*/manifest.json"))) == 1
    assert list((resumed / "cache" / ".staging").iterdir())  # the dead cell's half-made folder

    # 2. Resume: the finished cell is reused, the half-made one removed and redone.
    result = run_suite(suite, RunOptions(out=resumed, workers=1, progress=False))
    assert result.counts == {"reused": 1, "ran": cells - 1}
    log = _log(resumed)
    assert "removed 1 unfinished cell folder" in log
    assert "reused train:digits/smallcnn" in log
    assert not list((resumed / "cache" / ".staging").iterdir())

    # 3. A re-run reuses every cell and starts no worker.
    again = run_suite(suite, RunOptions(out=resumed, workers=1, progress=False))
    assert again.counts == {"reused": cells}
    assert _log(resumed).count("reused ") == 1 + cells

    # 4. A clean run elsewhere gives the same report (measured timings aside).
    run_suite(suite, RunOptions(out=clean, workers=1, progress=False))
    for name in ("models.csv", "accuracy.csv"):
        assert (resumed / "report" / name).read_text() == (clean / "report" / name).read_text(), name
    models = (clean / "report" / "models.csv").read_text()
    assert "tfmot" in models and (clean / "report" / "report.md").exists()
    accuracy = (clean / "report" / "accuracy.csv").read_text()
    assert "fgsm@smallcnn" in accuracy and ",clean," in accuracy
    # A cell's log says how far its training got, epoch by epoch (bars are off in cells).
    logs = [p.read_text() for p in (clean / "cache" / "cells").glob("*/*/cell.log")]
    train_log = next(text for text in logs if text.startswith("edgeprune.api.train"))
    assert "train smallcnn: epoch 1/" in train_log and "accuracy" in train_log


def test_quick_suite_end_to_end(tmp_path):
    """The README's main job: benchmarks/quick.yaml, then a re-run that reuses every cell."""
    from edgeprune.cli import cli

    out = tmp_path / "quick"
    runner = CliRunner()
    result = runner.invoke(cli, ["bench", str(REPO / "benchmarks" / "quick.yaml"), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    report = (out / "report" / "report.md").read_text()
    assert "Clean accuracy" in report and "Adversarial accuracy" in report
    assert (out / "report" / "clean_accuracy_vs_sparsity.png").exists()
    again = runner.invoke(cli, ["bench", str(REPO / "benchmarks" / "quick.yaml"), "-o", str(out), "-q"])
    assert again.exit_code == 0
    assert " ran " not in _log(out).split("suite quick:")[-1]


@pytest.mark.slow
def test_ray_executor_gives_the_local_executors_tables(tmp_path):
    pytest.importorskip("ray")
    suite = load_suite(write_suite(tmp_path, MICRO))
    local = run_suite(suite, RunOptions(out=tmp_path / "local", workers=1, progress=False))
    on_ray = run_suite(suite, RunOptions(out=tmp_path / "ray", executor="ray", workers=2, progress=False))
    assert local.counts == on_ray.counts == {"ran": len(build_grid(suite).cells)}
    for name in ("models.csv", "accuracy.csv"):
        assert (tmp_path / "local" / "report" / name).read_text() == (tmp_path / "ray" / "report" / name).read_text()


def test_bench_is_listed_and_help_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from edgeprune.cli import cli; "
            "r = CliRunner().invoke(cli, ['bench', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--executor' in r.output; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "False"
