"""The public Python API: what `edgeprune` exports, the option schemas the CLI and the bench
share, typed results, and the README's Python example run as written."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.cli import MODULES
from edgeprune.errors import EdgepruneError

REPO = Path(__file__).resolve().parents[1]
STAGES = ("train", "prune", "convert", "attack", "evaluate", "profile", "import")


def test_package_import_is_light_and_lists_its_exports():
    code = ("import sys, edgeprune as ep\n"
            "for name in ep.__all__: getattr(ep, name)\n"
            "heavy = [m for m in ('tensorflow', 'click', 'keras', 'openvino') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert ep.api.train.__module__ == 'edgeprune.api'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_unknown_export_is_an_attribute_error():
    import edgeprune

    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        edgeprune.nothing_here  # noqa: B018


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_library_module_imports_click_or_the_cli():
    package = REPO / "edgeprune"
    offenders = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).as_posix()
        if relative.startswith("cli/") or relative == "__main__.py":
            continue
        bad = {n for n in _imports(path) if n == "click" or n.startswith("click.") or n.startswith("edgeprune.cli")}
        if bad:
            offenders.append(f"{relative}: {sorted(bad)}")
    assert not offenders


@pytest.mark.parametrize("stage", STAGES)
def test_cli_options_are_the_library_schema(stage):
    """Every long option of `edgeprune STAGE` is a name the library's schema (and so a bench
    suite's `args:`) accepts, and the schema names nothing the command lacks."""
    from edgeprune.api import stage_option_names

    command = importlib.import_module(f"edgeprune.cli.{MODULES.get(stage, stage)}").command
    cli = {opt[2:] for param in command.params for opt in (*param.opts, *param.secondary_opts)
           if opt.startswith("--")}
    arguments = {param.name for param in command.params if not param.opts[0].startswith("-")}
    library = set(stage_option_names(stage))
    assert cli <= library
    assert library - cli <= arguments


def test_click_choices_are_the_vocabulary():
    import click

    import edgeprune.vocab as vocab

    lists = {tuple(v) for v in vars(vocab).values() if isinstance(v, (tuple, dict)) and v}
    for stage in (*STAGES, "compare", "bench"):
        command = importlib.import_module(f"edgeprune.cli.{MODULES.get(stage, stage)}").command
        for param in command.params:
            if isinstance(param.type, click.Choice):
                assert tuple(param.type.choices) in lists, (stage, param.name, param.type.choices)


def test_options_validate_when_built():
    from edgeprune import api

    with pytest.raises(EdgepruneError, match="--criterion apply to --method nncf-filter"):
        api.PruneOptions("tfmot", criterion="l1")
    with pytest.raises(EdgepruneError, match="unknown architecture 'alexnet'"):
        api.TrainOptions("alexnet")
    with pytest.raises(EdgepruneError, match="--eps must be > 0"):
        api.AttackOptions("pgd", eps=0.0)
    with pytest.raises(EdgepruneError, match="nothing to evaluate on"):
        api.EvaluateOptions()
    with pytest.raises(EdgepruneError, match="--curve and --autoattack"):
        api.RobustnessOptions(curve=True, autoattack="fast")
    with pytest.raises(EdgepruneError, match="unknown target format 'onnx'; expected one of tflite, openvino"):
        api.ConvertOptions(target="onnx")


def test_from_args_reads_flag_spelled_values():
    from edgeprune import api
    from edgeprune.options import from_args

    options = from_args(api.TrainOptions, {"batch-size": "64", "lr": 0.05, "milestones": "2,4", "limit": 100},
                        arch="smallcnn")
    assert (options.batch_size, options.learning_rate, options.milestones, options.limit_test) == (64, 0.05, (2, 4), 100)
    robust = from_args(api.RobustnessOptions, {"no-tune": True, "fmn-steps": 20}, curve=True)
    assert robust.tune is False and robust.fmn_steps == 20
    assert from_args(api.ConvertOptions, {"float-io": True}, target="tflite").int8_io is False
    assert from_args(api.PruneOptions, {"no-shrink": True}, method="nncf-filter").shrinking is False
    profile = from_args(api.ProfileOptions, {"min-time": 0.3}, batch=[32], threads=[2])
    assert profile.batch == (32,) and profile.threads == (2,) and profile.min_time_s == 0.3
    with pytest.raises(EdgepruneError, match="unknown option 'epoch'; expected one of"):
        from_args(api.TrainOptions, {"epoch": 3}, arch="smallcnn")
    with pytest.raises(EdgepruneError, match="batch-size: expected int, got 'many'"):
        from_args(api.TrainOptions, {"batch-size": "many"}, arch="smallcnn")


def test_inference_precision_is_an_option_of_profile_evaluate_and_convert():
    """One vocabulary (vocab.INFERENCE_PRECISIONS) for the CLI, the options and a suite's args."""
    from edgeprune import api
    from edgeprune.options import from_args
    from edgeprune.vocab import INFERENCE_PRECISIONS

    for stage in ("profile", "evaluate", "convert"):
        assert "inference-precision" in api.stage_option_names(stage)
    profile = from_args(api.ProfileOptions, {"inference-precision": "f32"})
    assert profile.config().inference_precision == "f32"
    assert from_args(api.EvaluateOptions, {"inference-precision": "bf16"}, dataset="digits").inference_precision == "bf16"
    convert = from_args(api.ConvertOptions, {"inference-precision": "none"}, target="tflite")
    assert convert.config().inference_precision == "none"
    assert api.ProfileOptions().inference_precision == api.EvaluateOptions(dataset="digits").inference_precision \
        == api.ConvertOptions(target="tflite").inference_precision == "default" == INFERENCE_PRECISIONS[0]
    with pytest.raises(EdgepruneError, match="--inference-precision must be one of default, f32, bf16, f16, none"):
        from_args(api.ProfileOptions, {"inference-precision": "fp16"})
    with pytest.raises(EdgepruneError, match="--inference-precision must be one of"):
        api.EvaluateOptions(dataset="digits", inference_precision="int8")
    with pytest.raises(EdgepruneError, match="inference precision must be one of"):
        api.ConvertOptions(target="openvino", inference_precision="fp32")


def test_evaluate_refuses_an_inference_precision_it_would_not_apply(tmp_path):
    from click.testing import CliRunner

    from edgeprune.cli import cli

    model = tmp_path / "m.h5"
    model.write_bytes(b"")
    result = CliRunner().invoke(cli, ["evaluate", str(model), "--curve", "-d", "digits",
                                       "--inference-precision", "f32"])
    assert result.exit_code == 2
    assert "--inference-precision does not combine with --curve/--autoattack" in result.output


def test_results_write_and_read_back(tmp_path, digits_model):
    from edgeprune import api
    from edgeprune.results import EvaluateResult

    result = api.evaluate([digits_model[0]], api.EvaluateOptions(dataset="digits", limit=60), tmp_path / "ev",
                          progress=False)
    assert [p.name for p in result.paths][:3] == ["ev.json", "ev.csv", "ev.md"]
    again = EvaluateResult.load(tmp_path / "ev.json")
    assert again.record == json.loads(result.to_json())
    (row,) = again.rows()
    assert row.set == "clean" and row.samples == 60 and 0.8 < row.accuracy <= 1.0
    assert result.to_csv() == (tmp_path / "ev.csv").read_bytes().decode()
    assert "## Accuracy matrix" in result.to_markdown()
    assert list(again.runs_at().values()) == ["f32"]  # Keras computes in f32, read back into the record
    with pytest.raises(EdgepruneError, match="is not a edgeprune.train/1 report"):
        api.TrainResult.load(tmp_path / "ev.json")


def _readme_python_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no python code block"
    return match.group(1)


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_python_block(), "README.md#python-api", "exec"), namespace)  # noqa: S102
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert {"base.h5", "base.json", "p80.h5", "p80.json", "p80.tflite", "fgsm.npz", "report.md"} <= written
    assert namespace["pruned"].after.sparsity > 0.5
