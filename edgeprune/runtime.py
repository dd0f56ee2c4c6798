"""One predictor interface for every model format: `load(path).predict(x, batch_size)`.

Backends sit in a registry keyed by file suffix, each importing its runtime inside the
loader, so loading a `.tflite` or `.xml` never imports TensorFlow (device-side commands run
with only the `[device]` extra).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeprune.errors import EdgepruneError


class Predictor(Protocol):
    """A loaded model: float32 NHWC images in [0, 1] in, float32 logits out."""

    info: dict

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray: ...


def _batches(x: np.ndarray, batch_size: int):
    if batch_size <= 0:
        raise EdgepruneError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size]


@dataclass
class KerasPredictor:
    model: object
    info: dict = field(default_factory=dict)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        outputs = [np.asarray(self.model(batch, training=False)) for batch in _batches(np.asarray(x, np.float32), batch_size)]
        return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0,), np.float32)


def _load_keras(path: Path, *, allow_unsafe: bool = False, threads: int | None = None) -> Predictor:
    from edgeprune.modelio import load_keras_model

    model = load_keras_model(path, allow_unsafe=allow_unsafe)
    return KerasPredictor(model=model, info={
        "format": "keras", "precision": "fp32", "path": str(path),
        "file_bytes": file_bytes(path), "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
    })


def file_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk; an OpenVINO `.xml` counts together with its `.bin`."""
    path = Path(path)
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        size += path.with_suffix(".bin").stat().st_size
    return size


LOADERS: dict[str, Callable[..., Predictor]] = {
    ".h5": _load_keras,
    ".hdf5": _load_keras,
}


def load(path: str | os.PathLike, *, allow_unsafe: bool = False, threads: int | None = None) -> Predictor:
    """Load any supported model file behind the common `Predictor` interface."""
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"{path}: no such model file")
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise EdgepruneError(
            f"{path}: unsupported model format {path.suffix!r}; expected one of {', '.join(sorted(LOADERS))}"
        )
    return loader(path, allow_unsafe=allow_unsafe, threads=threads)
