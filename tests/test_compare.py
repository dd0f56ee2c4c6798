"""`edgeprune compare`: the noise-aware CI gate, on real profiles measured on this shared host."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_profile import ov_convnet  # the TensorFlow-free IR builder (tests/ is on sys.path)

from edgeprune.cli import cli
from edgeprune.compare import (CompareConfig, compare_profiles, latency_verdict, markdown_report,
                               parse_fraction)
from edgeprune.errors import EdgepruneError
from edgeprune.io import write_json
from edgeprune.profile import ProfileConfig, profile_models, summarize_latency

# Sub-millisecond single-image inference on one thread: many runs per cell in a fifth of a second.
GATE = ProfileConfig(batches=(1,), threads=(1,), runs=20, min_time_s=0.2, warmup=3, warmup_time_s=0.05,
                     isolation="none")


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """'net' and a 2x-slower 'net' (four convs instead of two) under the same name."""
    folder = tmp_path_factory.mktemp("compare")
    (folder / "slow").mkdir()
    base = ov_convnet(folder / "net.xml", size=32, channels=24, depth=2)
    slow = ov_convnet(folder / "slow" / "net.xml", size=32, channels=24, depth=4)
    return base, slow


def _cell(samples, **extra) -> dict:
    return {"model": "m", "format": "openvino", "runtime": "openvino", "runtime_version": "1",
            "batch": 1, "threads": 1, "runs": len(samples), **summarize_latency(samples, 1), **extra}


def _profile(cells: list[dict], file_bytes: int = 1000) -> dict:
    return {"schema": "edgeprune.profile/1",
            "host": {"cpu_model": "cpu", "architecture": "x86_64", "logical_cores": 2, "physical_cores": 2,
                     "isa": ["avx2"], "versions": {"python": "3.11", "numpy": "1.26"}},
            "device_like": {"cpu_count": 2},
            "models": [{"model": "m", "format": "openvino", "file_bytes": file_bytes, "gzip_bytes": 900}],
            "results": cells}


# ------------------------------------------------------------------------------ the rule

def test_rule_needs_the_floor_to_move_beyond_its_spread():
    rng = np.random.default_rng(0)
    base = _cell(1.0 + rng.exponential(0.05, 200))
    # A busy host: the same model's median doubles, its fastest runs do not move.
    busy = _cell(np.concatenate([1.0 + rng.exponential(0.05, 60), 2.0 + rng.exponential(1.0, 140)]))
    assert latency_verdict(base, busy, 0.10)["verdict"] == "slower (within noise)"
    # A model that does twice the work: everything moves.
    slower = _cell(2.0 + rng.exponential(0.1, 200))
    row = latency_verdict(base, slower, 0.10)
    assert row["verdict"] == "regression" and row["p50_ratio"] > 1.9 and row["min_ratio"] > 1.9
    # ... even when the baseline's median was inflated by a starved moment.
    starved = _cell(np.concatenate([1.0 + rng.exponential(0.05, 40), 2.5 + rng.exponential(1.0, 160)]))
    assert latency_verdict(starved, slower, 0.10)["verdict"] == "regression"
    # Slower floor, but three noisy runs each: the fastest twentieth is too wide to tell.
    few_base, few_slow = _cell([1.0, 3.0, 5.0]), _cell([1.2, 3.6, 6.0])
    assert latency_verdict(few_base, few_slow, 0.10)["verdict"] == "slower (within noise)"
    assert latency_verdict(slower, base, 0.10)["verdict"] == "faster"
    assert latency_verdict(base, _cell(1.05 + rng.exponential(0.05, 200)), 0.10)["verdict"] == "ok"


def test_a_saturated_host_widens_the_floor_threshold_up_to_60_percent():
    rng = np.random.default_rng(2)
    quiet = _cell(1.0 + rng.exponential(0.05, 200), cpus=[0, 1], other_load_cores=0.1)
    busy_same = _cell(1.35 + rng.exponential(0.05, 200), cpus=[0, 1], other_load_cores=1.8)
    row = latency_verdict(quiet, busy_same, 0.10)
    assert row["busy"] == pytest.approx(0.9) and row["floor_limit"] == pytest.approx(1.6)
    assert row["verdict"] == "slower (host busy)"
    busy_double = _cell(2.0 + rng.exponential(0.1, 200), cpus=[0, 1], other_load_cores=1.9)
    assert latency_verdict(quiet, busy_double, 0.10)["verdict"] == "regression"
    quiet_slower = _cell(1.35 + rng.exponential(0.05, 200), cpus=[0, 1], other_load_cores=0.1)
    assert latency_verdict(quiet, quiet_slower, 0.10)["verdict"] == "regression"


def test_fractions_and_thresholds():
    assert parse_fraction("10%", "--max-slowdown") == pytest.approx(0.10)
    assert parse_fraction("0.25", "--max-slowdown") == 0.25
    for bad in ("ten", "10"):
        with pytest.raises(EdgepruneError, match="--max-slowdown"):
            parse_fraction(bad, "--max-slowdown")
    with pytest.raises(EdgepruneError, match="max_slowdown"):
        CompareConfig(max_slowdown=-0.1)


def test_size_growth_is_exact():
    cells = [_cell([1.0, 1.0, 1.0])]
    grown = compare_profiles(_profile(cells, 1000), _profile(cells, 1001), CompareConfig())
    assert grown["verdict"] == "regression" and grown["size"][0]["verdict"] == "regression"
    allowed = compare_profiles(_profile(cells, 1000), _profile(cells, 1001), CompareConfig(max_size_growth=0.01))
    assert allowed["verdict"] == "pass"


# --------------------------------------------------------------- real profiles, this host

@pytest.mark.slow
def test_same_model_never_regresses_in_10_of_10_repeats(nets, tmp_path):
    """The gate's false-alarm rate on this host: a measurement that depends on what else the
    machine runs, so it is not part of the default suite (`pytest -m slow`)."""
    base, _ = nets
    baseline = profile_models([base], GATE, progress=False)
    verdicts = []
    for _ in range(10):
        candidate = profile_models([base], GATE, progress=False)
        report = compare_profiles(baseline, candidate, CompareConfig(max_slowdown=0.10))
        verdicts.append(report["latency"][0])
    assert all(row["verdict"] in ("ok", "faster") or row["verdict"].startswith("slower") for row in verdicts)
    failed = [{k: row[k] for k in ("p50_ratio", "min_ratio", "floor_gap_ms", "floor_noise_ms", "busy")}
              for row in verdicts if row["verdict"] == "regression"]
    assert not failed, failed


def test_twice_slower_model_is_flagged_and_cli_exits_1(nets, tmp_path):
    base, slow = nets
    # As in CI, baseline and candidate are measured alike, a little longer than the repeats above.
    careful = ProfileConfig(**{**GATE.__dict__, "min_time_s": 1.0})
    write_json(tmp_path / "base.json", profile_models([base], careful, progress=False))
    write_json(tmp_path / "slow.json", profile_models([slow], careful, progress=False))
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "base.json"), str(tmp_path / "slow.json"),
                                      "--max-slowdown", "10%", "-o", str(tmp_path / "cmp.json")])
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert report["schema"] == "edgeprune.compare/1" and report["verdict"] == "regression"
    row = report["latency"][0]
    assert row["verdict"] == "regression" and row["min_ratio"] > 1.5, row
    assert report["size"][0]["verdict"] == "regression"  # four convs also weigh more
    assert result.output.startswith("## edgeprune compare: ❌") and "| net | openvino | 1 | 1 |" in result.output
    # The other way round is an improvement, and the gate passes.
    reverse = CliRunner().invoke(cli, ["compare", str(tmp_path / "slow.json"), str(tmp_path / "base.json"),
                                       "--format", "json"])
    assert reverse.exit_code == 0, reverse.output
    assert json.loads(reverse.output)["latency"][0]["verdict"] == "faster"


# ------------------------------------------------------------------------- unusable input

def test_mismatched_hosts_are_refused_naming_the_fields(tmp_path):
    cells = [_cell([1.0, 1.1, 1.2])]
    baseline, candidate = _profile(cells), _profile(copy.deepcopy(cells))
    candidate["host"]["cpu_model"] = "Cortex-A76"
    candidate["host"]["isa"] = ["asimd", "neon"]
    candidate["results"][0]["runtime_version"] = "2"
    write_json(tmp_path / "a.json", baseline)
    write_json(tmp_path / "b.json", candidate)
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert result.exit_code == 2
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: profiles come from different hosts")
    assert "cpu_model" in line and "isa" in line and "runtime of openvino" in line
    assert "--allow-host-mismatch" in line
    allowed = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                                       "--allow-host-mismatch"])
    assert allowed.exit_code == 0 and "host mismatch allowed" in allowed.output
    # Memory free, OS release and the like are not part of the comparison.
    candidate = _profile(copy.deepcopy(cells))
    candidate["host"].update(memory_bytes=1, os="Linux 9", governor="powersave")
    assert compare_profiles(baseline, candidate, CompareConfig())["host"]["differences"] == []


def test_corrupt_or_foreign_json_exits_2_with_one_line(tmp_path):
    good = tmp_path / "good.json"
    write_json(good, _profile([_cell([1.0, 1.1])]))
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[:120])
    foreign = tmp_path / "foreign.json"
    write_json(foreign, {"schema": "edgeprune.train/1"})
    gutted = tmp_path / "gutted.json"
    profile = _profile([_cell([1.0])])
    del profile["results"][0]["latency_ms"]["p5"]
    write_json(gutted, profile)
    for bad, message in ((truncated, "not valid JSON"), (foreign, "not an edgeprune profile"),
                         (gutted, "results[0]"), (tmp_path / "absent.json", "no such file")):
        for args in ([str(good), str(bad)], [str(bad), str(good)]):
            result = CliRunner().invoke(cli, ["compare", *args])
            assert result.exit_code == 2, result.output
            assert len(result.output.strip().splitlines()) == 1 and message in result.output, result.output
    other = _profile([dict(_cell([1.0]), model="other")])
    write_json(tmp_path / "other.json", other)
    result = CliRunner().invoke(cli, ["compare", str(good), str(tmp_path / "other.json")])
    assert result.exit_code == 2 and "share no" in result.output


def test_markdown_fits_a_job_summary():
    rng = np.random.default_rng(1)
    base = _profile([_cell(1.0 + rng.exponential(0.05, 100))])
    extra = dict(_cell(1.0 + rng.exponential(0.05, 100)), batch=8)
    cand = _profile([_cell(1.0 + rng.exponential(0.05, 100)), extra])
    text = markdown_report(compare_profiles(base, cand, CompareConfig()))
    assert text.startswith("## edgeprune compare: ✅ **No regression**")
    assert "| m | openvino | 1 | 1 |" in text and "only in candidate" in text and "m/openvino/8/1" in text


def test_ci_workflow_uses_real_options():
    import shlex
    from pathlib import Path

    import yaml

    from edgeprune.cli.compare import command as compare_command
    from edgeprune.cli.profile import command as profile_command

    folder = Path(__file__).resolve().parents[1] / "examples" / "ci"
    workflow = yaml.safe_load((folder / "edgeprune-latency-gate.yml").read_text())
    assert {"gate", "update-baseline"} <= set(workflow["jobs"])
    profile_args = shlex.split(workflow["env"]["PROFILE_ARGS"])
    context = profile_command.make_context("profile", ["model.tflite", *profile_args, "-o", "c.json"])
    assert context.params["cpus"] == "0,1" and context.params["runs"] >= 20
    steps = [s.get("run", "") for s in workflow["jobs"]["gate"]["steps"]]
    compare_step = next(s for s in steps if "edgeprune compare" in s).replace("\\\n", " ")
    line = next(x for x in compare_step.splitlines() if "edgeprune compare" in x)
    words = shlex.split(line.split(">")[0].replace('"$BASELINE"', "baseline.json"))
    context = compare_command.make_context("compare", words[2:])
    assert context.params["max_slowdown"] == "10%" and "GITHUB_STEP_SUMMARY" in compare_step
    baseline = folder / "edgeprune-baseline.json"
    from edgeprune.compare import load_profile

    report = load_profile(baseline)  # the example baseline is a real, loadable profile
    assert report["settings"]["cpus"] == [0, 1] and report["results"]
