"""`folder:PATH` datasets: class folders of real images (the CIFAR-10 sample written as files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgeprune.data import CIFAR10_CLASSES, load_dataset
from edgeprune.errors import EdgepruneError
from edgeprune.folders import FolderOptions
from test_cli_foundation import BLOCK_TENSORFLOW  # the [device] install: TensorFlow not importable


def write_tree(root: Path, x: np.ndarray, y: np.ndarray, *, size: int | None = None, suffix: str = ".png") -> Path:
    """x[i] as root/CLASS/iiiii.SUFFIX (upscaled to size x size when given)."""
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        path = root / CIFAR10_CLASSES[int(label)] / f"{i:05d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        if size is not None:
            picture = picture.resize((size, size), Image.Resampling.BILINEAR)
        picture.save(path)
    return root


def class_order(y: np.ndarray) -> np.ndarray:
    """The order a folder lists images in: by class, then file name (= original index)."""
    return np.argsort(y, kind="stable")


@pytest.fixture(scope="module")
def sample(cifar_sample_path):
    with np.load(cifar_sample_path) as archive:
        return {k: archive[k] for k in archive.files}


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory, sample):
    """300 train / 200 test CIFAR-10 images as PNG in train/ and val/, and the same images as .npz
    (in the folder's order, so index i is the same image in both)."""
    root = tmp_path_factory.mktemp("folders") / "cifar_png"
    parts = {}
    for split, key, count in (("train", "train", 300), ("val", "test", 200)):
        x, y = sample[f"x_{key}"][:count], sample[f"y_{key}"][:count].astype(np.int64)
        write_tree(root / split, x, y)
        order = class_order(y)
        parts[f"x_{key}"], parts[f"y_{key}"] = x[order], y[order]
    npz = root.parent / "same_images.npz"
    np.savez(npz, **parts)
    return root, npz


@pytest.fixture(scope="module")
def npz_model(tmp_path_factory, cifar_model):
    """The session's CIFAR resnet8 (trained on the sample's arrays), saved without its dataset name
    so it may be evaluated on both forms of the same images."""
    from edgeprune.modelio import save_keras_model

    _, model, result = cifar_model
    path = tmp_path_factory.mktemp("models") / "npz_model.h5"
    save_keras_model(model, path, metadata={k: result[k] for k in ("num_classes", "class_names", "input_shape")})
    return path


def test_folder_pixels_and_accuracy_equal_the_npz_form(cifar_folder, npz_model):
    from edgeprune import api

    root, npz = cifar_folder
    folder = load_dataset(f"folder:{root}")
    arrays = load_dataset(f"npz:{npz}")
    assert folder.class_names == CIFAR10_CLASSES and folder.input_shape == (32, 32, 3)
    np.testing.assert_array_equal(folder.split("test", dtype="uint8")[0], arrays.x_test)
    np.testing.assert_array_equal(folder.labels("train"), arrays.y_train)
    by_folder = api.evaluate([npz_model], api.EvaluateOptions(dataset=f"folder:{root}"), progress=False).record
    by_npz = api.evaluate([npz_model], api.EvaluateOptions(dataset=f"npz:{npz}"), progress=False).record
    accuracy = by_folder["accuracy"]["clean"]["npz_model.h5"]
    assert accuracy == by_npz["accuracy"]["clean"]["npz_model.h5"] and accuracy > 0.2  # learnt something
    assert by_folder["images"]["clean"] == 200
    recorded = by_folder["dataset"]
    assert recorded["class_names"] == list(CIFAR10_CLASSES) and recorded["folder"]["layout"] == "train/val"
    assert recorded["folder"]["resize"] == "bilinear"




def test_tflite_evaluates_a_folder_without_tensorflow(cifar_folder, npz_model, tmp_path):
    """The [device] install: Pillow decodes, the .tflite runs, no TensorFlow; same accuracy as Keras."""
    from edgeprune import api

    root, _ = cifar_folder
    tflite = tmp_path / "m.tflite"
    api.convert(npz_model, api.ConvertOptions(target="tflite", dataset=f"folder:{root}", verify=100), tflite,
                progress=False)
    done = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "evaluate", str(tflite), "-d", f"folder:{root}",
                           "-q", "-o", str(tmp_path / "report")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    device = json.loads((tmp_path / "report.json").read_text())["accuracy"]["clean"]["m.tflite"]
    keras = api.evaluate([npz_model], api.EvaluateOptions(dataset=f"folder:{root}"), progress=False).record
    assert abs(device - keras["accuracy"]["clean"]["npz_model.h5"]) <= 0.01


def test_val_split_is_stratified_and_deterministic(tmp_path, sample):
    x, y = sample["x_train"][:200], sample["y_train"][:200]
    root = write_tree(tmp_path / "tree", x, y)
    plain = load_dataset(f"folder:{root}")  # one tree, no --val-split: all of it is the test split
    assert len(plain.labels("test")) == 200 and len(plain.labels("train")) == 0
    with pytest.raises(EdgepruneError, match="train split is empty.*--val-split"):
        plain.split("train")
    split = load_dataset(f"folder:{root}", folder=FolderOptions(val_split=0.25), seed=0)
    again = load_dataset(f"folder:{root}", folder=FolderOptions(val_split=0.25), seed=0)
    other = load_dataset(f"folder:{root}", folder=FolderOptions(val_split=0.25), seed=1)
    assert split.files == again.files and split.files["test"] != other.files["test"]
    assert set(split.files["test"]).isdisjoint(split.files["train"])
    assert len(split.files["test"]) + len(split.files["train"]) == 200
    per_class = np.bincount(y, minlength=10)
    np.testing.assert_array_equal(np.bincount(split.labels("test"), minlength=10), np.round(per_class * 0.25))
    assert split.name == "folder:tree (val-split 0.25, seed 0)" and split.name != other.name
    assert split.fingerprint("test") != other.fingerprint("test")


def test_bad_input_gets_one_line_each(tmp_path, sample, capsys):
    x, y = sample["x_train"][:40], sample["y_train"][:40]
    root = write_tree(tmp_path / "bad", x, y)
    (root / "cat" / "readme.txt").write_text("not an image")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    found = load_dataset(f"folder:{root}")
    assert len(found.labels("test")) == 40
    assert "skipped 2 file(s) that are not images" in capsys.readouterr().err
    with pytest.raises(EdgepruneError, match="2 file\\(s\\) are not images .*--strict"):
        load_dataset(f"folder:{root}", folder=FolderOptions(strict=True))
    (root / "zebra").mkdir()
    (root / "zebra" / "x.txt").write_text("")
    with pytest.raises(EdgepruneError, match="class folder zebra has no images"):
        load_dataset(f"folder:{root}")
    (root / "zebra" / "x.txt").unlink()
    (root / "zebra").rmdir()
    with pytest.raises(EdgepruneError, match="classes differ from the model's"):
        load_dataset(f"folder:{root}", class_names=[*CIFAR10_CLASSES[:9], "lorry"])
    with pytest.raises(EdgepruneError, match="apply to folder:PATH datasets"):
        load_dataset("digits", folder=FolderOptions(val_split=0.2))
    with pytest.raises(EdgepruneError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(EdgepruneError, match="--val-split must be in \\(0, 1\\)"):
        FolderOptions(val_split=1.5)
    both = tmp_path / "both"
    write_tree(both / "train", x[:20], y[:20])
    write_tree(both / "val", x[20:], y[20:])
    with pytest.raises(EdgepruneError, match="has its own train/ and val/ splits"):
        load_dataset(f"folder:{both}", folder=FolderOptions(val_split=0.2))


def test_mixed_sizes_and_modes_are_resized_to_the_model_and_said(tmp_path, sample, capsys):
    root = write_tree(tmp_path / "mixed", sample["x_test"][:30], sample["y_test"][:30])
    first = sorted((root / "cat").iterdir())[0]
    Image.open(first).resize((48, 40)).convert("L").save(first)  # another size, grayscale
    rgba = sorted((root / "ship").iterdir())[0]
    Image.open(rgba).convert("RGBA").save(rgba)
    data = load_dataset(f"folder:{root}", input_shape=(32, 32, 3))
    assert "images come in 2 sizes (most common 32x32); all are resized to 32x32 (bilinear)" in capsys.readouterr().err
    x, _ = data.split("test", dtype="uint8")
    assert x.shape == (30, 32, 32, 3)
    gray = load_dataset(f"folder:{root}", folder=FolderOptions(image_size=(16, 20)), input_shape=(32, 32, 1))
    assert gray.input_shape == (16, 20, 1) and gray.take("test", [0, 1])[0].shape == (2, 16, 20, 1)
    assert gray.record()["folder"]["modes_seen"] == {"RGB": 28, "L": 1, "RGBA": 1}


def test_model_with_other_classes_or_sets_from_another_folder_are_refused(tmp_path, cifar_folder, npz_model):
    from edgeprune import api

    root, _ = cifar_folder
    few = tmp_path / "few"
    for name in CIFAR10_CLASSES[:3]:
        (few / name).mkdir(parents=True)
        for source in sorted((root / "val" / name).iterdir())[:4]:
            (few / name / source.name).write_bytes(source.read_bytes())
    with pytest.raises(EdgepruneError, match="has 10 outputs, dataset 'folder:few' has 3 classes"):
        api.evaluate([npz_model], api.EvaluateOptions(dataset=f"folder:{few}"), progress=False)
    # A set crafted on one folder records its fingerprint; the same names on other files are refused.
    sets = tmp_path / "sets"
    record = api.attack(npz_model, api.AttackOptions("fgsm", dataset=f"folder:{root}", limit=20), sets / "fgsm",
                        progress=False).record
    assert record["dataset"]["images"] == 20 and record["dataset"]["class_names"] == list(CIFAR10_CLASSES)
    copy = tmp_path / "cifar_png"
    for path in sorted(root.rglob("*.png")):
        target = copy / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    api.evaluate([npz_model], api.EvaluateOptions(sets=(str(sets / "fgsm.npz"),), dataset=f"folder:{copy}"),
                 progress=False)  # an identical copy has the same fingerprint
    victim = sorted((copy / "val" / "cat").iterdir())[0]
    Image.open(victim).rotate(90).save(victim, compress_level=0)  # same name, other bytes
    with pytest.raises(EdgepruneError, match="not from the given dataset"):
        api.evaluate([npz_model], api.EvaluateOptions(sets=(str(sets / "fgsm.npz"),), dataset=f"folder:{copy}"),
                     progress=False)


def _pipeline(tmp_path: Path, root: Path, size: int, precision: str) -> dict:
    """train -> prune -> convert -> attack -> evaluate through the CLI on one class tree."""
    from edgeprune.cli import cli

    runner = CliRunner()
    folder = ["-d", f"folder:{root}", "--val-split", "0.25", "--seed", "0"]

    def run(*args: str) -> None:
        done = runner.invoke(cli, list(args), catch_exceptions=False)
        assert done.exit_code == 0, done.output

    run("train", "smallcnn", *folder, "--epochs", "1", "--batch-size", "32", "--width", "0.25", "--milestones", "",
        "-q", "-o", str(tmp_path / "base.h5"))
    run("prune", str(tmp_path / "base.h5"), "-m", "tfmot", "--sparsity", "0.5", "--epochs", "1", "--batch-size", "32",
        *folder, "-q", "-o", str(tmp_path / "p50.h5"))
    run("convert", str(tmp_path / "p50.h5"), "--to", "tflite", "-p", precision, "--calibration", "32", "--verify", "40",
        "--min-agreement", "0.5", *folder, "-q", "-o", str(tmp_path / "p50.tflite"))
    run("attack", str(tmp_path / "base.h5"), "-a", "fgsm", "--limit", "20", *folder, "-q",
        "-o", str(tmp_path / "sets" / "fgsm"))
    run("evaluate", str(tmp_path / "base.h5"), str(tmp_path / "p50.h5"), str(tmp_path / "p50.tflite"),
        "--sets", str(tmp_path / "sets" / "fgsm.npz"), *folder, "-q", "-o", str(tmp_path / "report"))
    report = json.loads((tmp_path / "report.json").read_text())
    # A set alone names its folder, --val-split and seed: the clean row needs no flags.
    run("evaluate", str(tmp_path / "p50.tflite"), "--sets", str(tmp_path / "sets" / "fgsm.npz"), "-q",
        "-o", str(tmp_path / "alone"))
    alone = json.loads((tmp_path / "alone.json").read_text())
    assert alone["dataset"]["test_fingerprint"] == report["dataset"]["test_fingerprint"]
    assert report["models"][0]["input_shape"] == [size, size, 3]
    assert report["images"] == {"clean": len(load_dataset(f"folder:{root}", folder=FolderOptions(val_split=0.25))
                                             .labels("test")), "fgsm": 20}
    for path in ("base.json", "p50.json", "p50.tflite.json", "sets/fgsm.json"):
        text = (tmp_path / path).read_text()
        assert '"class_names"' in text, path
    return report


@pytest.mark.slow
def test_224_folder_runs_train_prune_convert_attack_evaluate(tmp_path, sample):
    """A few hundred 224x224 JPEG/PNG images, upscaled from the CIFAR sample, end to end (~2 min on 2 busy cores)."""
    x, y = sample["x_train"][:240], sample["y_train"][:240]
    root = write_tree(tmp_path / "big", x[:120], y[:120], size=224, suffix=".jpg")
    write_tree(root, x[120:], y[120:], size=224)  # PNGs beside the JPEGs
    report = _pipeline(tmp_path, root, 224, "int8")
    assert set(report["accuracy"]) == {"clean", "fgsm"}


def test_small_folder_runs_train_prune_convert_attack_evaluate(tmp_path, sample):
    """The default suite's version of the above: 80 images upscaled to 48x48, JPEG and PNG, fp32 TFLite."""
    x, y = sample["x_train"][:80], sample["y_train"][:80]
    root = write_tree(tmp_path / "small", x[:40], y[:40], size=48, suffix=".jpg")
    write_tree(root, x[40:], y[40:], size=48)
    report = _pipeline(tmp_path, root, 48, "fp32")
    assert set(report["accuracy"]) == {"clean", "fgsm"}


def test_folder_options_are_stage_options_flags_and_suite_args(tmp_path):
    from edgeprune import api
    from edgeprune.cli import cli
    from edgeprune.options import from_args

    for stage in ("train", "prune", "convert", "attack", "evaluate"):
        assert {"val-split", "image-size", "strict"} <= set(api.stage_option_names(stage)), stage
    options = from_args(api.EvaluateOptions, {"val-split": "0.2", "image-size": "96", "strict": True}, dataset="x")
    assert (options.val_split, options.image_size, options.strict) == (0.2, (96, 96), True)
    assert from_args(api.TrainOptions, {"image-size": "64,48"}, arch="smallcnn").image_size == (64, 48)
    done = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "m.tflite"), "-d", f"folder:{tmp_path}",
                                    "--image-size", "big"])
    assert done.exit_code == 2 and "--image-size must be H,W" in done.output
