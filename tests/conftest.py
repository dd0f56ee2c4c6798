"""Shared fixtures: real data and tiny models trained once per test session.

Real images only: the embedded `digits` set always, and the shared CIFAR-10 sample
(`../shared/data/cifar10_sample.npz` beside the checkout, or $EDGEPRUNE_CIFAR_SAMPLE) when
present; tests that need it skip with the reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = Path(__file__).resolve().parents[1]
CIFAR_SAMPLE = Path(os.environ.get("EDGEPRUNE_CIFAR_SAMPLE",
                                   REPO.parent / "shared" / "data" / "cifar10_sample.npz"))


@pytest.fixture(scope="session")
def cifar_sample_path() -> Path:
    if not CIFAR_SAMPLE.exists():
        pytest.skip(f"shared CIFAR-10 sample not found at {CIFAR_SAMPLE}")
    return CIFAR_SAMPLE


@pytest.fixture(scope="session")
def digits():
    from edgeprune.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def cifar_small(cifar_sample_path):
    """2,000 train / 400 test real CIFAR-10 images (class-stratified)."""
    from edgeprune.data import load_dataset

    return load_dataset(f"npz:{cifar_sample_path}", limit_train=2000, limit_test=400)


def _train_and_save(arch: str, dataset, path: Path, *, epochs: int, width: float = 1.0,
                    seed: int = 0):
    from edgeprune.modelio import save_keras_model
    from edgeprune.train import TrainConfig, train_model

    config = TrainConfig(arch=arch, epochs=epochs, width=width, seed=seed, milestones=())
    model, result = train_model(config, dataset, progress=False)
    metadata = {k: result[k] for k in ("arch", "dataset", "dataset_fingerprint", "num_classes",
                                        "class_names", "input_shape")}
    save_keras_model(model, path, metadata=metadata)
    return model, result


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory, digits):
    """(path, keras model, train result) of smallcnn trained 8 epochs on digits (~95% test)."""
    path = tmp_path_factory.mktemp("models") / "digits_smallcnn.h5"
    model, result = _train_and_save("smallcnn", digits, path, epochs=8)
    return path, model, result


@pytest.fixture(scope="session")
def cifar_model(tmp_path_factory, cifar_small):
    """(path, keras model, train result) of resnet8 (width 0.5) trained 4 epochs on the sample."""
    path = tmp_path_factory.mktemp("models") / "cifar_resnet8.h5"
    model, result = _train_and_save("resnet8", cifar_small, path, epochs=4, width=0.5)
    return path, model, result


@pytest.fixture(scope="session")
def digits_converted(tmp_path_factory, digits_model, digits):
    """convert(target, precision) -> (model path, convert report) of `digits_model`, each
    conversion made once per session (verified on 300 test images; int8 calibrated on 200)."""
    from edgeprune.convert import ConvertConfig, convert_model

    folder = tmp_path_factory.mktemp("converted")
    made: dict[tuple[str, str], tuple[Path, dict]] = {}

    def convert(target: str, precision: str) -> tuple[Path, dict]:
        if (target, precision) not in made:
            suffix = ".tflite" if target == "tflite" else ".xml"
            output = folder / f"digits_{precision}{suffix}"
            config = ConvertConfig(target, precision, calibration=200)
            report = convert_model(digits_model[0], output, config,
                                   dataset=digits, progress=False)
            made[target, precision] = output, report
        return made[target, precision]

    return convert


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def run_cli():
    """run_cli(*args) -> click's Result of `edgeprune ARGS` (arguments str()-ed; pass
    catch_exceptions=False to see a traceback instead of a result)."""
    from click.testing import CliRunner

    from edgeprune.cli import cli

    def run(*args, catch_exceptions: bool = True):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=catch_exceptions)

    return run


@pytest.fixture(scope="session")
def digits_test_subset(digits):
    """digits_test_subset(n, seed) -> (x, y): a class-stratified subset of the digits test split."""
    from edgeprune.data import stratified_indices

    def subset(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        x, y = digits.split("test")
        keep = stratified_indices(y, n, seed=seed)
        return x[keep], y[keep]

    return subset


@pytest.fixture(scope="session")
def digits_logits_fn(digits_model):
    """The logits function of `digits_model` as the attacks call it."""
    from edgeprune.attacks.runner import logits_function

    return logits_function(digits_model[1])[0]
