"""Hostile but realistic inputs and faults, one table row each (issue 14).

Every row runs one `edgeprune` command in a fresh copy of a small workspace (a trained digits
model, a transfer set, an OpenVINO pair, a TFLite file, two profiles, a dataset file) after
damaging or arranging something, and checks: the exit status, a one-line message that names
the problem, and that no file of the workspace changed (sha256 of every file before and
after; no stray temp file left). Rows whose documented behaviour is to recover (a stale temp
file removed, a corrupt resume file discarded, a damaged bench cell redone) say so.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeprune.io import sha256_file

SET = "sets/fgsm"
EVAL_SET = ("evaluate", "base.h5", "--sets", f"{SET}.npz", "-q")
TRAIN_NPZ = ("train", "smallcnn", "-d", "npz:data.npz", "--epochs", "1", "-o", "out.h5", "-q")


# --- the workspace, made once ------------------------------------------------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory, digits_model, digits_converted, digits, run_cli) -> Path:
    """base.h5 (+ base.json), sets/fgsm.{npz,json}, ir.xml/.bin/.xml.json, m.tflite, two
    profiles and data.npz (a valid dataset file, 100 train images per class)."""
    root = tmp_path_factory.mktemp("pristine")
    shutil.copy(digits_model[0], root / "base.h5")
    (root / "base.json").write_text(json.dumps({"schema": "edgeprune.train/1", "arch": "smallcnn"}))
    result = run_cli("attack", root / "base.h5", "-a", "fgsm", "--eps", "0.1", "-d", "digits", "--limit", 30,
                     "-o", root / SET, "-q")
    assert result.exit_code == 0, result.output
    xml, _ = digits_converted("openvino", "fp32")
    for suffix in (".xml", ".bin"):
        shutil.copy(xml.with_suffix(suffix), root / f"ir{suffix}")
    report = json.loads(Path(f"{xml}.json").read_text())
    (root / "ir.xml.json").write_text(json.dumps({**report, "output": str(root / "ir.xml")}))
    tflite, _ = digits_converted("tflite", "fp32")
    shutil.copy(tflite, root / "m.tflite")
    result = run_cli("profile", root / "m.tflite", "--batch", "1", "--runs", "2", "--min-time", "0", "--warmup", "0",
                     "--warmup-time", "0", "--isolation", "none", "-o", root / "prof" / "base.json", "-q")
    assert result.exit_code == 0, result.output
    (root / "prof" / "base.csv").unlink()
    (root / "prof" / "base.md").unlink()
    shutil.copy(root / "prof" / "base.json", root / "prof" / "cand.json")
    x, y = digits.x_train, digits.y_train
    keep = np.concatenate([np.flatnonzero(y == c)[:100] for c in range(10)])
    np.savez(root / "data.npz", x_train=x[keep], y_train=y[keep], x_test=digits.x_test[:200],
             y_test=digits.y_test[:200])
    return root


# --- damage helpers -----------------------------------------------------------------------------

def edit_npz(path: Path, **changes) -> None:
    with np.load(path, allow_pickle=False) as saved:
        arrays = {k: saved[k] for k in saved.files}
    for key, change in changes.items():
        if change is None:
            del arrays[key]
        else:
            arrays[key] = change(arrays[key]) if callable(change) else change
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def rehash(root: Path) -> None:
    """Record the edited set's new sha256, so the checks behind the hash are what refuses it."""
    digest = sha256_file(root / f"{SET}.npz")
    edit_json(root / f"{SET}.json", lambda r: r["files"].__setitem__("npz_sha256", digest))


def set_arrays(root: Path, **changes) -> None:
    edit_npz(root / f"{SET}.npz", **changes)
    rehash(root)


def set_record(**changes) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        def change(record: dict) -> None:
            for dotted, value in changes.items():
                *parents, last = dotted.split(".")
                target = record
                for name in parents:
                    target = target[name]
                target[last] = value
        edit_json(root / f"{SET}.json", change)
    return apply


def data_arrays(**changes) -> Callable[[Path], None]:
    return lambda root: edit_npz(root / "data.npz", **changes)


def flip_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def two_input_model(root: Path) -> None:
    import tensorflow as tf

    from edgeprune.modelio import save_keras_model

    a, b = tf.keras.Input((8, 8, 1)), tf.keras.Input((8, 8, 1))
    out = tf.keras.layers.Dense(10)(tf.keras.layers.Flatten()(tf.keras.layers.Add()([a, b])))
    save_keras_model(tf.keras.Model([a, b], out), root / "two.h5", metadata={"dataset": "digits"})


def write(name: str, text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return apply


def suite(**changes) -> Callable[[Path], None]:
    base = {"suite": "hostile", "datasets": [{"spec": "digits", "limit_train": 300, "limit_test": 100}],
            "models": [{"arch": "smallcnn", "train": {"epochs": 1}}]}
    return write("suite.yaml", yaml.safe_dump({**base, **changes}, sort_keys=False))


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + \
    "suite: bomb\ndatasets: *i\nmodels: *i\n"


# --- the table ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    args: tuple
    message: str  # regex the one-line error (or, for exit 0, the output) must match
    arrange: Callable[[Path], None] | None = None
    code: int = 2


CASES = [
    # Transfer sets: content hash, then every array and the record, checked on load.
    Case("set-images-zeroed", EVAL_SET, r"fgsm\.npz: content does not match the sha256 recorded",
         lambda r: edit_npz(r / f"{SET}.npz", x_adv=np.zeros_like)),
    Case("set-npz-byte-flipped", EVAL_SET, r"does not match the sha256", lambda r: flip_byte(r / f"{SET}.npz")),
    Case("set-npz-truncated", EVAL_SET, r"sha256", lambda r: (r / f"{SET}.npz").write_bytes(
        (r / f"{SET}.npz").read_bytes()[:200])),
    Case("set-npz-truncated-rehashed", EVAL_SET, r"not a readable transfer set", lambda r: (
        (r / f"{SET}.npz").write_bytes((r / f"{SET}.npz").read_bytes()[:200]), rehash(r))),
    Case("set-nan-pixels", EVAL_SET, r"NaN or infinite",
         lambda r: set_arrays(r, x_adv=lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x))),
    Case("set-inf-pixels", EVAL_SET, r"NaN or infinite",
         lambda r: set_arrays(r, x_adv=lambda x: np.full_like(x, np.inf))),
    Case("set-pixels-0-255", EVAL_SET, r"pixels lie in \[0, 255\]", lambda r: set_arrays(r, x_adv=lambda x: x * 255)),
    Case("set-negative-pixels", EVAL_SET, r"pixels lie in \[-1", lambda r: set_arrays(r, x_adv=lambda x: x * 2 - 1)),
    Case("set-label-42", EVAL_SET, r"label 42 is outside the set's 10 classes",
         lambda r: set_arrays(r, y=lambda y: np.where(np.arange(len(y)) == 3, 42, y))),
    Case("set-negative-label", EVAL_SET, r"label -1 is outside",
         lambda r: set_arrays(r, y=lambda y: np.where(np.arange(len(y)) == 3, -1, y))),
    Case("set-float-labels", EVAL_SET, r"y and index must be integers",
         lambda r: set_arrays(r, y=lambda y: y.astype(np.float32))),
    Case("set-index-out-of-range", EVAL_SET, r"image index 1000000 is out of range",
         lambda r: set_arrays(r, index=lambda i: np.where(np.arange(len(i)) == 0, 10 ** 6, i))),
    Case("set-negative-index", EVAL_SET, r"negative image index",
         lambda r: set_arrays(r, index=lambda i: np.where(np.arange(len(i)) == 0, -4, i))),
    Case("set-repeated-index", EVAL_SET, r"indices repeat", lambda r: set_arrays(r, index=lambda i: i * 0)),
    Case("set-empty", EVAL_SET, r"empty \(0 images\)", lambda r: set_arrays(
        r, x_adv=lambda x: x[:0], y=lambda y: y[:0], index=lambda i: i[:0], norm_linf=lambda a: a[:0],
        norm_l2=lambda a: a[:0], source_pred=lambda a: a[:0], source_clean_pred=lambda a: a[:0])),
    Case("set-float64-images", EVAL_SET, r"expected float32 NHWC",
         lambda r: set_arrays(r, x_adv=lambda x: x.astype(np.float64))),
    Case("set-missing-x_adv", EVAL_SET, r"missing arrays x_adv", lambda r: set_arrays(r, x_adv=None)),
    Case("set-object-array", EVAL_SET, r"not a readable transfer set",
         lambda r: set_arrays(r, y=lambda y: np.array([{"a": 1}] * len(y), dtype=object))),
    Case("set-shape-vs-record", EVAL_SET, r"disagree with its record", set_record(input_shape=[8, 8, 3])),
    Case("set-eps-edited-down", EVAL_SET, r"recorded eps 0.01 \(linf\) is below the perturbation",
         set_record(**{"attack.eps": 0.01})),
    Case("set-eps-over-1", EVAL_SET, r"L-inf eps 1.5 exceeds 1", set_record(**{"attack.eps": 1.5})),
    Case("set-eps-not-a-number", EVAL_SET, r"recorded eps 'big' is not a positive number",
         set_record(**{"attack.eps": "big"})),
    Case("set-eps-and-measure-edited", EVAL_SET, r"perturbed by up to 0.1.* record says eps 0.02",
         set_record(**{"attack.eps": 0.02, "perturbation.linf": 0.02})),
    Case("set-classes-vs-model", EVAL_SET, r"has 11 classes, model base\.h5 outputs 10", set_record(num_classes=11)),
    Case("set-record-missing", EVAL_SET, r"fgsm\.json: no such file", lambda r: (r / f"{SET}.json").unlink()),
    Case("set-record-not-json", EVAL_SET, r"not valid JSON", write(f"{SET}.json", "{broken")),
    Case("set-record-wrong-schema", EVAL_SET, r"not a transfer-set record", set_record(schema="other/1")),
    Case("set-missing-npz", ("evaluate", "base.h5", "--sets", "sets/none.npz", "-q"), r"no such transfer set"),

    # Outputs: never an input or a file of one (not even with --force); never an existing file without it.
    Case("evaluate-o-onto-set-record", (*EVAL_SET, "-o", SET), r"sets/fgsm\.json is an input of this command"),
    Case("evaluate-o-onto-set-record-force", (*EVAL_SET, "-o", SET, "--force"), r"is an input of this command"),
    Case("evaluate-o-onto-model-sidecar", (*EVAL_SET, "-o", "base"), r"base\.json is an input .*belongs to it"),
    Case("evaluate-o-existing", (*EVAL_SET, "-o", "report"), r"report\.md exists; pass --force",
         write("report.md", "earlier report")),
    Case("compare-o-baseline", ("compare", "prof/base.json", "prof/cand.json", "-o", "prof/base.json"),
         r"prof/base\.json is an input of this command"),
    Case("compare-o-baseline-force", ("compare", "prof/base.json", "prof/cand.json", "-o", "prof/base.json",
                                      "--force"), r"is an input of this command"),
    Case("compare-o-candidate", ("compare", "prof/base.json", "prof/cand.json", "-o", "prof/cand.json"),
         r"prof/cand\.json is an input"),
    Case("compare-o-existing", ("compare", "prof/base.json", "prof/cand.json", "-o", "old.json"),
         r"old\.json exists; pass --force", write("old.json", "{}")),
    Case("train-o-existing-model", (*TRAIN_NPZ[:-3], "-o", "base.h5", "-q"), r"base\.h5 exists; pass --force"),
    Case("train-o-existing-sidecar", TRAIN_NPZ, r"out\.json exists; pass --force", write("out.json", "{}")),
    Case("profile-o-existing-md", ("profile", "m.tflite", "-o", "p.json", "-q"), r"p\.md exists; pass --force",
         write("p.md", "earlier")),
    Case("profile-o-existing-csv", ("profile", "m.tflite", "-o", "p.json", "-q"), r"p\.csv exists",
         write("p.csv", "earlier")),
    Case("profile-o-model-sidecar", ("profile", "base.h5", "-o", "base.json", "--force", "-q"),
         r"base\.json is an input"),
    Case("convert-o-existing-report", ("convert", "base.h5", "--to", "tflite", "-o", "c.tflite", "--no-verify", "-q"),
         r"c\.tflite\.json exists; pass --force", write("c.tflite.json", "{}")),
    Case("attack-o-onto-model-sidecar", ("attack", "base.h5", "-a", "fgsm", "-d", "digits", "-o", "base", "--force",
                                         "-q"), r"base\.json is an input"),
    Case("prune-o-onto-input", ("prune", "base.h5", "--method", "tfmot", "--sparsity", "0.5", "-o", "base.h5",
                                "--force", "-q"), r"base\.h5.*(input|overwrite)"),
    Case("output-is-a-folder", (*EVAL_SET, "-o", "report"), r"report\.json is a folder",
         lambda r: (r / "report.json").mkdir()),
    Case("output-under-a-file", ("compare", "prof/base.json", "prof/cand.json", "-o", "base.h5/out.json"),
         r"cannot write into base\.h5: .*not a folder"),
    Case("output-folder-refuses-files", ("compare", "prof/base.json", "prof/cand.json", "-o",
                                         "/sys/kernel/edgeprune-test/out.json"), r"cannot write into /sys/kernel"),
    Case("debug-keeps-exit-2", ("--debug", "compare", "prof/base.json", "prof/cand.json", "-o", "prof/base.json"),
         r"is an input of this command"),

    # Dataset files: validated before anything converts them.
    Case("data-nan-pixels", TRAIN_NPZ, r"x_train: 1 pixel value\(s\) are NaN",
         data_arrays(x_train=lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x / 255.0))),
    Case("data-inf-pixels", TRAIN_NPZ, r"x_test: .*NaN or infinite",
         data_arrays(x_test=lambda x: np.full(x.shape, np.inf, np.float32))),
    Case("data-minus-1-to-1", TRAIN_NPZ, r"pixels lie in \[-1, 1\]",
         data_arrays(x_train=lambda x: x / 127.5 - 1.0)),
    Case("data-over-255", TRAIN_NPZ, r"pixels lie in \[0, 300\]",
         data_arrays(x_train=lambda x: np.where(np.arange(x.size).reshape(x.shape) == 0, 300, x.astype(np.int32)))),
    Case("data-string-pixels", TRAIN_NPZ, r"pixels must be numbers, got dtype <U",
         data_arrays(x_train=lambda x: x.astype(str))),
    Case("data-bool-pixels", TRAIN_NPZ, r"pixels must be numbers, got dtype bool",
         data_arrays(x_test=lambda x: x > 0)),
    Case("data-flat-images", TRAIN_NPZ, r"must be NHWC", data_arrays(x_train=lambda x: x.reshape(len(x), -1))),
    Case("data-stray-label", TRAIN_NPZ, r"label 10 occurs on 1 training image.*stray label",
         data_arrays(y_train=lambda y: np.where(np.arange(len(y)) == 0, 10, y))),
    Case("data-missing-class", TRAIN_NPZ, r"label\(s\) 3 never occur",
         data_arrays(y_train=lambda y: np.where(y == 3, 4, y))),
    Case("data-fractional-labels", TRAIN_NPZ, r"whole class ids", data_arrays(y_train=lambda y: y + 0.5)),
    Case("data-string-labels", TRAIN_NPZ, r"labels must be integer class ids", data_arrays(y_test=lambda y: y.astype(str))),
    Case("data-one-hot-labels", TRAIN_NPZ, r"one class id per image", data_arrays(y_train=lambda y: np.eye(10)[y])),
    Case("data-negative-label", TRAIN_NPZ, r"negative label -2",
         data_arrays(y_test=lambda y: np.where(np.arange(len(y)) == 0, -2, y))),
    Case("data-length-mismatch", TRAIN_NPZ, r"x_test has 200 images but y_test 150 labels",
         data_arrays(y_test=lambda y: y[:150])),
    Case("data-shape-mismatch", TRAIN_NPZ, r"train images \(8, 8, 1\) and test images \(8, 8, 3\) differ",
         data_arrays(x_test=lambda x: np.repeat(x, 3, axis=-1))),
    Case("data-label-beyond-names", TRAIN_NPZ, r"label 9 but only 5 class names",
         data_arrays(class_names=np.array(["a", "b", "c", "d", "e"]))),

    # OpenVINO pairs: the conversion report's hashes of the .xml and the .bin.
    Case("openvino-foreign-bin", ("evaluate", "ir.xml", "-d", "digits", "--limit", "20", "-q"),
         r"ir\.bin: weights do not belong to ir\.xml", lambda r: flip_byte(r / "ir.bin")),
    Case("openvino-edited-xml", ("evaluate", "ir.xml", "-d", "digits", "--limit", "20", "-q"),
         r"ir\.xml: content does not match the sha256 recorded in .*ir\.xml\.json",
         lambda r: (r / "ir.xml").write_text((r / "ir.xml").read_text().replace("<net ", "<net  ", 1))),
    Case("openvino-missing-bin", ("evaluate", "ir.xml", "-d", "digits", "--limit", "20", "-q"),
         r"weights file ir\.bin is missing", lambda r: (r / "ir.bin").unlink()),

    # Suite files: bounded alias expansion; every parameter checked by its stage at --dry-run.
    Case("suite-alias-bomb", ("bench", "suite.yaml", "--dry-run"), r"aliases expand to over 100,000 nodes",
         write("suite.yaml", ALIAS_BOMB)),
    Case("suite-negative-epochs", ("bench", "suite.yaml", "--dry-run"), r"train:.*epochs must be at least 1, got -5",
         suite(models=[{"arch": "smallcnn", "train": {"epochs": -5}}])),
    Case("suite-param-attack-lacks", ("bench", "suite.yaml", "--dry-run"),
         r"attack fgsm: unknown parameter\(s\) steps", suite(attacks=[{"attack": "fgsm", "args": {"steps": 10}}])),
    Case("suite-bad-param-value", ("bench", "suite.yaml", "--dry-run"), r"attack:.*pgd",
         suite(attacks=[{"attack": "pgd", "args": {"steps": "many"}}])),
    Case("suite-linf-eps-over-1", ("bench", "suite.yaml", "--dry-run"), r"L-inf eps 8 exceeds 1",
         suite(attacks=[{"attack": "pgd", "args": {"eps": 8}}])),
    Case("suite-not-yaml", ("bench", "suite.yaml", "--dry-run"), r"not valid YAML", write("suite.yaml", "a: [b\n")),

    # Smaller: the file named as what it is; two inputs said as such; L-inf eps > 1 refused.
    Case("convert-a-tflite", ("convert", "m.tflite", "--to", "openvino", "-o", "x.xml", "-q"),
         r"m\.tflite: (is a TFLite file|expected a Keras)"),
    Case("tflite-named-h5", ("convert", "fake.h5", "--to", "tflite", "-o", "x.tflite", "--no-verify", "-q"),
         r"fake\.h5: is a TFLite file, not a Keras \.h5 model",
         lambda r: shutil.copy(r / "m.tflite", r / "fake.h5")),
    Case("two-input-model", ("convert", "two.h5", "--to", "tflite", "-o", "x.tflite", "--no-verify", "-q"),
         r"two\.h5: the model has two inputs", two_input_model),
    Case("attack-linf-eps-1.5", ("attack", "base.h5", "-a", "pgd", "--eps", "1.5", "-d", "digits", "-o", "x", "-q"),
         r"L-inf eps 1.5 exceeds 1"),
]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def workspace(pristine, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(pristine, root)
    monkeypatch.chdir(root)
    return root


def error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_in_one_line_and_changes_nothing(case, workspace, run_cli):
    if case.arrange is not None:
        case.arrange(workspace)
    before = snapshot(workspace)
    result = run_cli(*case.args)
    assert result.exit_code == case.code, result.output
    line = error_line(result.output)
    assert re.search(case.message, line), line
    if "--debug" not in case.args:
        assert "Traceback" not in result.output, result.output
    assert snapshot(workspace) == before


def test_case_table_is_large_and_unique():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


# --- OS errors and signals during a save ------------------------------------------------------

COMPARE = ("compare", "prof/base.json", "prof/cand.json", "-o", "out/gate.json")


def _stray(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*") if ".tmp" in p.name]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 128 + signal.SIGINT)],
                         ids=["sigterm", "sigint"])
def test_signal_during_a_save_leaves_nothing_partial(signum, code, workspace, run_cli, monkeypatch):
    real_replace = os.replace

    def killed_while_moving(src, dst):  # the signal lands while the temp file is written
        os.kill(os.getpid(), signum)
        time.sleep(2)
        real_replace(src, dst)

    before = snapshot(workspace)
    # A background job starts with SIGINT ignored; this test wants Ctrl-C's default behaviour.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr(os, "replace", killed_while_moving)
    try:
        result = run_cli(*COMPARE)
    finally:
        monkeypatch.setattr(os, "replace", real_replace)
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == code, result.output
    assert re.search(rf"interrupted by {signal.Signals(signum).name}; partial files were removed",
                     error_line(result.output))
    assert not (workspace / "out" / "gate.json").exists()
    assert _stray(workspace) == []
    assert {k: v for k, v in snapshot(workspace).items()} == before


@pytest.mark.parametrize("number, text", [(errno.ENOSPC, "No space left on device"),
                                          (errno.EROFS, "Read-only file system")], ids=["disk-full", "read-only"])
def test_full_or_read_only_folder_is_one_line_exit_2(number, text, workspace, run_cli, monkeypatch):
    def refuse(src, dst):
        raise OSError(number, text, str(dst))

    before = snapshot(workspace)
    monkeypatch.setattr(os, "replace", refuse)
    result = run_cli(*COMPARE)
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    assert re.search(rf"cannot write out/gate\.json: {text}", error_line(result.output))
    assert _stray(workspace) == [] and snapshot(workspace) == before


def test_stale_temp_files_of_killed_runs_are_removed_and_modes_follow_the_umask(workspace, run_cli):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (workspace / "out").mkdir()
    stale = workspace / "out" / f".gate.json.ep{dead.pid}.abcd1234.tmp.json"
    legacy = workspace / "out" / ".model.h5.k2j4h5g6.tmp.h5"
    live = workspace / "out" / f".other.json.ep{os.getpid()}.zzzz9999.tmp.json"
    for path in (stale, legacy, live):
        path.write_bytes(b"x" * 1000)
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    old_umask = os.umask(0o027)
    try:
        result = run_cli(*COMPARE)
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and not legacy.exists() and live.exists()
    assert (workspace / "out" / "gate.json").stat().st_mode & 0o777 == 0o640


def test_corrupt_attack_resume_file_is_discarded_with_a_warning(workspace, run_cli):
    partial = workspace / "sets" / "again.partial.npz"
    partial.write_bytes((workspace / f"{SET}.npz").read_bytes()[:300])  # truncated mid-write
    with pytest.warns(UserWarning, match=r"unreadable partial file \(truncated or corrupt\); discarded"):
        result = run_cli("attack", "base.h5", "-a", "fgsm", "--eps", "0.1", "-d", "digits", "--limit", 20,
                         "-o", "sets/again", "-q")
    assert result.exit_code == 0, result.output
    assert (workspace / "sets" / "again.npz").exists() and not partial.exists()


# --- the bench cache: a damaged cell is redone, never trusted ---------------------------------

BENCH = {"suite": "cachecheck", "datasets": [{"spec": "digits", "limit_test": 60}],
         "models": [{"name": "base", "path": "base.h5"}],
         "attacks": [{"attack": "fgsm", "limit": 30, "args": {"eps": 0.1}}],
         "evaluate": {"limit": 60}}


def test_damaged_bench_cells_are_redone_with_a_warning(pristine, tmp_path):
    """A cached transfer set with one flipped byte, a cached report replaced by another file of
    the same size: the next run redoes both cells with a warning and reports what a clean run does."""
    from edgeprune.bench.runner import RunOptions, run_suite
    from edgeprune.bench.suite import load_suite

    shutil.copy(pristine / "base.h5", tmp_path / "base.h5")
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(BENCH, sort_keys=False))
    loaded = load_suite(path)
    out = tmp_path / "run"
    first = run_suite(loaded, RunOptions(out=out, workers=1, progress=False))
    assert first.counts == {"ran": 2}, first.counts  # the attack and the evaluation
    tables = {n: (out / "report" / n).read_text() for n in ("models.csv", "accuracy.csv")}
    cells = out / "cache" / "cells"
    transfer = next(cells.glob("*/*/*.npz"))
    report = next(cells.glob("*/*/evaluate.json"))
    flip_byte(transfer)
    size = report.stat().st_size
    report.write_bytes(transfer.read_bytes().ljust(size, b" ")[:size])
    again = run_suite(loaded, RunOptions(out=out, workers=1, progress=False))
    log = (out / "bench.log").read_text()
    assert log.count("does not match its recorded sha256 (changed or corrupt); redoing the cell") == 2
    assert again.counts == {"ran": 2}, again.counts
    assert {n: (out / "report" / n).read_text() for n in tables} == tables
    assert not list((out / "cache" / ".staging").iterdir())
