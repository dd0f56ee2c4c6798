"""`edgeprune train / info / doctor` as a user runs them, and the light [device] start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from edgeprune.cli import cli


def test_train_digits_reports_accuracy_and_sidecar(tmp_path):
    output = tmp_path / "m.h5"
    result = CliRunner().invoke(cli, ["train", "smallcnn", "--dataset", "digits", "--epochs", "5",
                                      "-o", str(output), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["schema"] == "edgeprune.train/1"
    assert report["test_accuracy"] > 0.90
    assert report["config"]["seed"] == 0 and report["versions"]["tensorflow-cpu"] == "2.15.1"
    info = CliRunner().invoke(cli, ["info", str(output), "--json"])
    record = json.loads(info.output)
    assert record["metadata"]["dataset"] == "digits" and record["sparsity"] == 0.0
    assert record["params"] == report["params"]


def test_train_refuses_to_overwrite_and_bad_arch(tmp_path):
    output = tmp_path / "m.h5"
    output.write_bytes(b"keep me")
    result = CliRunner().invoke(cli, ["train", "smallcnn", "-o", str(output)])
    assert result.exit_code == 2 and "--force" in result.output
    assert output.read_bytes() == b"keep me"
    result = CliRunner().invoke(cli, ["train", "alexnet", "-o", str(tmp_path / "x.h5")])
    assert result.exit_code == 2 and "unknown architecture" in result.output


def test_info_shows_measured_sparsity(tmp_path, digits_model):
    from edgeprune.modelio import save_keras_model

    _, model, _ = digits_model
    clone = type(model).from_config(model.get_config())
    weights = [w.copy() for w in model.get_weights()]
    kernel = weights[0]
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.5)] = 0.0
    clone.set_weights(weights)
    save_keras_model(clone, tmp_path / "half.h5")
    record = json.loads(CliRunner().invoke(cli, ["info", str(tmp_path / "half.h5"), "--json"]).output)
    first = record["layers"][0]
    assert abs(first["sparsity"] - 0.5) < 0.02


BLOCK_TENSORFLOW = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):\n"
    "            raise ImportError('blocked: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "from edgeprune.cli import cli\n"
    "sys.argv = ['edgeprune'] + sys.argv[1:]\n"
    "cli()\n"
)


def test_help_runs_without_tensorflow():
    """What `pip install .[device]` gives: no TensorFlow, yet the CLI starts."""
    for args in (["--help"], ["doctor", "--json"]):
        done = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "train" in subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "--help"],
                                     capture_output=True, text=True).stdout
    doctor = json.loads(done.stdout)
    tf_row = next(row for row in doctor["components"] if row["module"] == "tensorflow")
    assert tf_row["version"] is None and "blocked" in tf_row["error"]
