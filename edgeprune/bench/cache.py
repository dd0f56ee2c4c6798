"""Content-addressed cell store and the grid state file.

A cell's outputs live under `cells/KK/KEY/`, where KEY hashes the stage, its parameters,
the sha256 of every input file and the versions of edgeprune and the stack. A cell is built
in a private staging folder, its `manifest.json` is written *last*, and only then is the
folder renamed into place (`os.replace`, atomic on one filesystem): a SIGKILL at any moment
leaves either a finished cell or a staging folder that the next run deletes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeprune.bench.suite import Suite, canonical_hash
from edgeprune.errors import EdgepruneError
from edgeprune.io import follow_umask, read_json, sha256_file, versions, write_json

CELL_SCHEMA = "edgeprune.bench.cell/1"
STATE_SCHEMA = "edgeprune.bench.state/1"
STATE_FILE = "bench-state.json"
# Bump when the way cells run changes their outputs, so old cells are not reused.
CELL_FORMAT = 1


def cell_key(stage: str, params: dict, input_hashes: dict[str, str], stack: dict[str, str] | None = None) -> str:
    """Hash of everything a cell's outputs depend on."""
    return canonical_hash({
        "format": CELL_FORMAT, "stage": stage, "params": params,
        "inputs": dict(sorted(input_hashes.items())), "versions": stack if stack is not None else versions(),
    })


def file_hash(path: str | os.PathLike) -> str:
    """sha256 of a file; a folder (a `dir:` dataset) hashes its files' names and hashes."""
    path = Path(path)
    if path.is_dir():
        parts = {str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()}
        return canonical_hash(parts)
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        return canonical_hash([sha256_file(path), sha256_file(path.with_suffix(".bin"))])
    return sha256_file(path)


class Cache:
    """The cell store under `root`; hold `lock()` while writing to it."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.cells = self.root / "cells"
        self.staging_root = self.root / ".staging"
        self._hashes: dict[tuple[str, int, int], str] = {}

    def path(self, key: str) -> Path:
        return self.cells / key[:2] / key

    def manifest(self, key: str) -> dict | None:
        """The finished cell's manifest, or None when it is absent, incomplete or damaged."""
        return self.check(key)[0]

    def check(self, key: str) -> tuple[dict | None, str | None]:
        """(manifest, None) for a finished cell whose every output still has the sha256 its
        manifest recorded; (None, None) when there is no cell; (None, why) when the cell is
        damaged (a file missing, truncated, replaced or corrupted): the caller redoes it."""
        manifest_path = self.path(key) / "manifest.json"
        if not manifest_path.exists():
            return None, None
        try:
            manifest = read_json(manifest_path)
            outputs = manifest["outputs"]
            for role, output in outputs.items():
                file = self.path(key) / output["file"]
                if not file.is_file():
                    return None, f"cached output {role} is missing"
                if file.stat().st_size != output["bytes"] or self._sha256(file) != output["sha256"]:
                    return None, f"cached output {role} does not match its recorded sha256 (changed or corrupt)"
        except EdgepruneError:
            return None, "its manifest is not valid JSON"
        except (KeyError, TypeError, AttributeError):
            return None, "its manifest lacks the outputs' sizes and hashes"
        return manifest, None

    def _sha256(self, file: Path) -> str:
        """sha256 of a cached file, remembered for this process while its size and mtime hold."""
        stat = file.stat()
        token = (str(file), stat.st_size, stat.st_mtime_ns)
        if token not in self._hashes:
            self._hashes[token] = sha256_file(file)
        return self._hashes[token]

    def output(self, key: str, role: str) -> Path:
        manifest = self.manifest(key)
        if manifest is None or role not in manifest["outputs"]:
            raise EdgepruneError(f"cache: cell {key[:12]} has no output {role!r}")
        return self.path(key) / manifest["outputs"][role]["file"]

    def new_staging(self, key: str) -> Path:
        self.staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{key[:16]}.", dir=self.staging_root))
        follow_umask(staging, directory=True)  # mkdtemp makes 0700; cells follow the umask
        return staging

    def commit(self, staging: Path, key: str, manifest: dict) -> None:
        """Write the manifest last, then move the whole cell into place."""
        write_json(staging / "manifest.json", manifest)
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # A broken earlier copy (files missing): replace it; a good one: keep it.
            if self.manifest(key) is not None:
                shutil.rmtree(staging, ignore_errors=True)
                return
            shutil.rmtree(final)
        os.replace(staging, final)

    def clean_staging(self) -> int:
        """Delete what interrupted runs left behind; call with the lock held."""
        if not self.staging_root.exists():
            return 0
        leftovers = list(self.staging_root.iterdir())
        for item in leftovers:
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
        return len(leftovers)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One bench run writes to a cache at a time (flock; released when the process dies)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / ".lock", "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EdgepruneError(f"{self.root} is in use by another `edgeprune bench` run") from None
            yield
        finally:
            handle.close()


def check_state(out: Path, suite: Suite, *, force_mix: bool) -> dict:
    """Load or create the grid state file; refuse a different suite unless `force_mix`."""
    state_path = out / STATE_FILE
    record = {"name": suite.name, "digest": suite.digest, "path": str(suite.path)}
    if state_path.exists():
        state = read_json(state_path)
        if not isinstance(state, dict) or state.get("schema") != STATE_SCHEMA:
            raise EdgepruneError(f"{state_path}: not an edgeprune bench state file")
        known = state.get("suites", [])
        # An edited suite (same name) may reuse its folder: unchanged cells are reused by key.
        # Another suite may not, unless asked: its report would mix with this one's files.
        if not any(s.get("name") == suite.name for s in known) and not force_mix:
            previous = known[-1] if known else {"name": "?", "digest": "?"}
            raise EdgepruneError(
                f"{out} holds results of suite {previous['name']!r} ({previous['digest'][:12]}), "
                f"not of suite {suite.name!r} ({suite.digest[:12]}); use another --out or pass "
                "--force-mix")
        if not any(s.get("digest") == suite.digest for s in known):
            known.append(record)
        state["suites"] = known
    else:
        state = {"schema": STATE_SCHEMA, "suites": [record], "runs": []}
    return state


def save_state(out: Path, state: dict) -> None:
    write_json(out / STATE_FILE, state)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def manifest_record(*, key: str, cell_id: str, stage: str, params: dict, inputs: dict[str, Any],
                    outputs: dict[str, dict], result: dict, seconds: float, stack: dict) -> dict:
    return {"schema": CELL_SCHEMA, "key": key, "cell": cell_id, "stage": stage, "params": params,
            "inputs": inputs, "outputs": outputs, "result": result, "seconds": round(seconds, 3),
            "versions": stack, "finished_at": now()}
