"""What is inside a model file: size, parameters, measured sparsity, input and classes."""

from __future__ import annotations

import gzip
from pathlib import Path

from edgeprune.runtime import file_bytes
from edgeprune.vocab import KERAS_SUFFIXES


def gzip_bytes(path: str | Path) -> int:
    """Compressed size: what unstructured sparsity really saves on disk or over the air."""
    path = Path(path)
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" and path.with_suffix(".bin").exists() else [])
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=6)) for f in files)


def keras_model_info(path: str | Path, *, allow_unsafe: bool = False) -> dict:
    from edgeprune.modelio import load_keras_model, read_metadata
    from edgeprune.modelstats import model_stats

    model = load_keras_model(path, allow_unsafe=allow_unsafe)
    stats = model_stats(model)
    return {
        "schema": "edgeprune.info/1",
        "path": str(path),
        "format": "keras",
        "name": model.name,
        "file_bytes": file_bytes(path),
        "gzip_bytes": gzip_bytes(path),
        "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "layer_count": len(model.layers),
        "metadata": read_metadata(path),
        **stats,
    }


def model_info(path: str | Path, *, allow_unsafe: bool = False) -> dict:
    path = Path(path)
    if path.suffix.lower() in KERAS_SUFFIXES:
        return keras_model_info(path, allow_unsafe=allow_unsafe)
    from edgeprune.runtime import load

    predictor = load(path)
    return {"schema": "edgeprune.info/1", "path": str(path), **predictor.info,
            "gzip_bytes": gzip_bytes(path)}
