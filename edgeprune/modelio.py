"""The one way edgeprune reads and writes Keras `.h5` models.

A `.h5` from a user is untrusted: a `Lambda` layer stores Python bytecode that Keras runs
while loading, and custom objects need user code. The model config is therefore read with
h5py and checked *before* Keras sees the file; such models are refused unless the user opts
in with `allow_unsafe=True` (`--allow-unsafe`). Files written by Keras 3 (`.keras` archives and
Keras-3 `.h5`) go through `edgeprune.keras3`: read with zipfile/h5py, translated to a Keras 2
config and rebuilt from built-in classes, under the same refusals. Writes are atomic, and carry a small JSON
record (`edgeprune` attribute) of where the model came from (dataset, classes, arch).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeprune.errors import EdgepruneError, one_line
from edgeprune.io import atomic_path
from edgeprune.vocab import KERAS_SUFFIXES

if TYPE_CHECKING:
    import tensorflow as tf

METADATA_ATTR = "edgeprune"
# Keras wrapper/container classes that are safe and not listed among tf.keras.layers.
SAFE_CONTAINERS = {"Functional", "Sequential", "Model", "InputLayer", "TFOpLambda",
                   "SlicingOpLambda"}
CODE_CARRYING = {"Lambda"}


def is_keras_file(path: str | os.PathLike) -> bool:
    """A Keras model file edgeprune loads with TensorFlow (Keras 2 or Keras 3 `.h5`, `.keras`)."""
    return Path(path).suffix.lower() in KERAS_SUFFIXES


def _read_h5_config(path: Path) -> tuple[dict, dict]:
    """(model config, edgeprune metadata) from the file's attributes, without Keras."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
            meta_raw = handle.attrs.get(METADATA_ATTR)
    except OSError as exc:
        from edgeprune.integrity import sniff

        kind = sniff(path)
        if kind not in (None, "HDF5"):
            raise EdgepruneError(f"{path}: is a {kind} file, not a Keras .h5 model; this command takes "
                                 "the Keras model") from None
        reason = str(exc).split(";")[0].split("(")[0].strip() or type(exc).__name__
        raise EdgepruneError(f"{path}: not a readable HDF5 model, truncated or corrupt ({reason})") from None
    if raw is None:
        raise EdgepruneError(f"{path}: holds no model config (weights-only file?); save the whole model")
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        meta = json.loads(meta_raw.decode() if isinstance(meta_raw, bytes) else meta_raw) if meta_raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EdgepruneError(f"{path}: model config is not valid JSON (corrupt file)") from None
    return config, meta


def _serialized_layers(config: Any) -> list[dict]:
    """Every {"class_name": ..., "config": {...}} object in a config, nested models included."""
    found: list[dict] = []
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            found.append(config)
        for value in config.values():
            found.extend(_serialized_layers(value))
    elif isinstance(config, list):
        for item in config:
            found.extend(_serialized_layers(item))
    return found


def _layer_classes(config: Any) -> list[tuple[str, str]]:
    """(class_name, layer name) of every layer, nested models included."""
    return [(entry["class_name"], str(entry["config"].get("name", "?"))) for entry in _serialized_layers(config)]


def _builtin_layer_names() -> set[str]:
    import tensorflow as tf

    names = {name for name in dir(tf.keras.layers) if isinstance(getattr(tf.keras.layers, name), type)}
    # Initializers, regularizers, constraints and dtype policies appear as class_name too.
    for module in (tf.keras.initializers, tf.keras.regularizers, tf.keras.constraints):
        names.update(name for name in dir(module) if isinstance(getattr(module, name), type))
    names.update({"Policy", "DTypePolicy", "VarianceScaling", "HeNormal", "GlorotUniform"})
    return names | SAFE_CONTAINERS


def check_model_config(config: dict, path: Path | str, *, allow_unsafe: bool) -> None:
    """Refuse Lambda layers and custom classes unless the user opted in."""
    classes = _layer_classes(config.get("config", {}))
    code = sorted({name for cls, name in classes if cls in CODE_CARRYING})
    if code and not allow_unsafe:
        raise EdgepruneError(
            f"{path}: refusing to load Lambda layer(s) {', '.join(code[:3])} — they run Python "
            "code stored in the file; pass --allow-unsafe only if you trust its author"
        )
    known = _builtin_layer_names() | CODE_CARRYING
    custom = sorted({cls for cls, _ in classes if cls not in known})
    if custom and not allow_unsafe:
        hint = " (an unstripped pruning wrapper: strip it first)" if "PruneLowMagnitude" in custom else ""
        raise EdgepruneError(
            f"{path}: uses custom classes {', '.join(custom[:3])}{hint}; refusing to load code "
            "from outside Keras (--allow-unsafe to override)"
        )


def read_metadata(path: str | os.PathLike) -> dict:
    """The edgeprune record stored in a `.h5` (empty for models made elsewhere and `.keras`)."""
    if Path(path).suffix.lower() == ".keras":
        return {}
    return _read_h5_config(Path(path))[1]


def load_keras_model(path: str | os.PathLike, *, allow_unsafe: bool = False) -> "tf.keras.Model":
    """Load a `.h5` model after the safety checks; one-line EdgepruneError on any failure."""
    path = Path(path)
    if not path.is_file():
        raise EdgepruneError(f"{path}: no such model file")
    if not is_keras_file(path):
        raise EdgepruneError(f"{path}: expected a Keras .h5 or .keras model")
    if is_keras3_file(path):
        from edgeprune.keras3 import load_keras3_model

        return load_keras3_model(path, allow_unsafe=allow_unsafe)[0]
    config, _ = _read_h5_config(path)
    check_model_config(config, path, allow_unsafe=allow_unsafe)
    import tensorflow as tf

    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as exc:
        first_line = one_line(exc)
        raise EdgepruneError(f"{path}: Keras could not load it ({first_line})") from None
    from edgeprune.validate import check_single_io

    check_single_io(path, len(model.inputs), len(model.outputs))
    return model


def is_keras3_file(path: str | os.PathLike) -> bool:
    """A `.keras` archive, or a `.h5` that Keras 3 wrote (read through `edgeprune.keras3`)."""
    from edgeprune.keras3 import h5_keras_version, is_keras3_config

    path = Path(path)
    if path.suffix.lower() == ".keras":
        return True
    config, _ = _read_h5_config(path)  # also turns unreadable files into one-line errors
    return is_keras3_config(config, h5_keras_version(path))


def save_keras_model(model: "tf.keras.Model", path: str | os.PathLike,
                     metadata: dict | None = None) -> Path:
    """Write `model` to `path` atomically as `.h5`, with `metadata` stored inside."""
    import h5py

    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        raise EdgepruneError(f"{path}: output model must end in .h5")
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # Keras calls .h5 "legacy"; it is the card's format and what edge tools consume.
            warnings.filterwarnings("ignore", message=".*HDF5 file.*", category=UserWarning)
            model.save(tmp, save_format="h5", include_optimizer=False)
        with h5py.File(tmp, "a") as handle:
            if metadata:
                handle.attrs[METADATA_ATTR] = json.dumps(metadata, default=str)
            _keep_keras3_loadable(handle)
    return path


def _keep_keras3_loadable(handle: Any) -> None:
    """Keras 2.15 writes `groups: 1` into DepthwiseConv2D configs, which Keras 3 rejects
    ("Unrecognized keyword arguments ... groups"); 1 is the default either way, so drop it."""
    raw = handle.attrs.get("model_config")
    if raw is None:
        return
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    changed = False
    for entry in _serialized_layers(config):
        inner = entry.get("config", {})
        if entry.get("class_name") == "DepthwiseConv2D" and inner.get("groups") == 1:
            del inner["groups"]
            changed = True
    if changed:
        handle.attrs["model_config"] = json.dumps(config)

