"""Atomic file output, hashing and provenance shared by every stage.

Every artifact is written to a temporary file beside its destination and moved into place
with `os.replace`, so an interrupted run never leaves a half-written model or report.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeprune import __version__
from edgeprune.errors import EdgepruneError

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


# Temp files are named `.NAME.ep<pid>.<random>.tmp<suffix>` beside their destination; one whose
# process is gone is a leftover of a killed run, removed by the next write into that folder.
TEMP_NAME = re.compile(r"^\..+\.ep(\d+)\.[^.]+\.tmp")
# Legacy temp names (no pid) older than this are leftovers too.
LEGACY_TEMP_AGE_S = 600.0
# OS errors that mean "cannot write there": one line and exit 2, not a traceback.
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                          errno.EISDIR, errno.EFBIG, errno.ENAMETOOLONG})


def umask() -> int:
    """The process umask (read without changing it for longer than two calls)."""
    with _UMASK_LOCK:
        current = os.umask(0o022)
        os.umask(current)
    return current


_UMASK_LOCK = threading.Lock()


def follow_umask(path: str | os.PathLike, *, directory: bool = False) -> None:
    """mkstemp/mkdtemp create 0600/0700; give the file the mode an open() would (0666 & ~umask)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def write_error(path: str | os.PathLike, exc: OSError) -> EdgepruneError:
    """A one-line error for an OS refusal to write `path` (read-only, full, not a folder...)."""
    return EdgepruneError(f"cannot write {path}: {exc.strerror or exc} "
                          f"({errno.errorcode.get(exc.errno or 0, 'OS error')}); nothing was written there")


def remove_stale_temps(folder: str | os.PathLike[str]) -> int:
    """Delete temp files of earlier, dead runs in `folder` (live writers' files are kept)."""
    removed = 0
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(".") or ".tmp" not in entry.name or not entry.is_file(follow_symlinks=False):
            continue
        match = TEMP_NAME.match(entry.name)
        if match is not None:
            stale = not _alive(int(match.group(1)))
        else:  # an older edgeprune's `.NAME.<random>.tmp<suffix>`
            stale = re.match(r"^\..+\.[A-Za-z0-9_]{8}\.tmp", entry.name) is not None and \
                now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_TEMP_AGE_S
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `destination`; move it into place only on success.

    An exception (or SIGTERM/SIGINT turned into one by the CLI) removes the temp file; temp
    files of killed runs are removed by the next write into the folder. The file gets the
    mode the umask gives. A folder that refuses the write raises a one-line EdgepruneError.
    """
    destination = Path(destination)
    suffix = destination.suffix if suffix is None else suffix
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(destination.parent)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{destination.name}.ep{os.getpid()}.", suffix=f".tmp{suffix}", dir=destination.parent
        )
        os.close(fd)
        follow_umask(tmp_name)
    except OSError as exc:
        raise write_error(destination, exc) from None
    tmp_path = Path(tmp_name)
    try:
        try:
            yield tmp_path
            os.replace(tmp_path, destination)
        except OSError as exc:
            if exc.errno in WRITE_ERRNOS:
                raise write_error(destination, exc) from None
            raise
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


def check_output(path: str | os.PathLike, *, force: bool, suffixes: tuple[str, ...] | None = None,
                 inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """The one gate before a command writes `path`: never an input or a file of one (not even
    with `force`), never an existing file without `force`, the right suffix, a folder that
    takes files (checked now, not after the work)."""
    from edgeprune.integrity import check_not_input

    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise EdgepruneError(f"{path}: output must end in {' or '.join(suffixes)}")
    check_not_input(path, inputs)
    if path.is_dir():
        raise EdgepruneError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise EdgepruneError(f"{path} exists; pass --force to overwrite")
    check_writable(path.parent)
    return path


def check_writable(folder: str | os.PathLike) -> None:
    """Refuse a folder (or its nearest existing parent) that will not take a new file."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise EdgepruneError(f"cannot write into {folder}: {existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".probe.ep{os.getpid()}.", suffix=".tmp", dir=existing)
    except OSError as exc:
        raise EdgepruneError(f"cannot write into {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def sidecar(path: str | os.PathLike, suffix: str = ".json") -> Path:
    """The report written beside an artifact: model.h5 -> model.json."""
    return Path(path).with_suffix(suffix)
