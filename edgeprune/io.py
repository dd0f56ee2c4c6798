"""Atomic file output, hashing and provenance shared by every stage.

Every artifact is written to a temporary file beside its destination and moved into place
with `os.replace`, so an interrupted run never leaves a half-written model or report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeprune import __version__

# Packages whose versions go into every report (looked up without importing them).
TRACKED_PACKAGES = (
    "numpy",
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-model-optimization",
    "nncf",
    "openvino",
    "ai-edge-litert",
    "tflite-runtime",
    "cleverhans",
)


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `destination`; move it into place only on success."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    suffix = destination.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=f".tmp{suffix}", dir=destination.parent
    )
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.replace(tmp_path, destination)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(destination: str | os.PathLike, data: bytes) -> None:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(destination: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(destination, text.encode("utf-8"))


def write_json(destination: str | os.PathLike, payload: Any) -> None:
    """Write JSON atomically (sorted keys off: reports read top-down as built)."""
    atomic_write_text(destination, json.dumps(payload, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    from edgeprune.errors import EdgepruneError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgepruneError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgepruneError(f"{path}: not valid JSON ({exc})") from None


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays without importing numpy here.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def sha256_file(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """Versions of edgeprune, Python and the installed stack, for provenance in reports."""
    found = {"edgeprune": __version__, "python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        version = package_version(name)
        if version is not None:
            found[name] = version
    return found


def check_output(path: str | os.PathLike, *, force: bool, suffixes: tuple[str, ...] | None = None) -> Path:
    """Refuse to clobber an existing output unless `force`; check its suffix."""
    from edgeprune.errors import EdgepruneError

    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise EdgepruneError(f"{path}: output must end in {' or '.join(suffixes)}")
    if path.exists() and not force:
        raise EdgepruneError(f"{path} exists; pass --force to overwrite")
    return path


def sidecar(path: str | os.PathLike, suffix: str = ".json") -> Path:
    """The report written beside an artifact: model.h5 -> model.json."""
    return Path(path).with_suffix(suffix)
