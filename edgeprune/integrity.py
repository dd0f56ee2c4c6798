"""Content hashes checked on read, and outputs that may never land on a command's inputs.

Writers record each artifact's sha256 (a transfer set's `npz_sha256`, an OpenVINO report's
`bin_sha256`, a bench cell's per-output `sha256`); readers call `verify_sha256` before they
trust the bytes. `check_not_input` is what `io.check_output` asks before any command writes:
an output equal to an input, or to a file that belongs to one (its JSON sidecar, an .xml's
.bin, a transfer set's .npz/.json), is refused even with --force.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from edgeprune.errors import EdgepruneError
from edgeprune.io import sha256_file

def verify_sha256(path: str | os.PathLike, expected: str | None, *, recorded_in: str | os.PathLike) -> str:
    """The file's sha256; refuse when `expected` (from `recorded_in`) is given and differs."""
    actual = sha256_file(path)
    if expected is not None and actual != expected:
        raise EdgepruneError(f"{path}: content does not match the sha256 recorded in {recorded_in} "
                             f"({actual[:12]} != {str(expected)[:12]}); the file was changed or replaced")
    return actual


def companions(path: str | os.PathLike) -> set[Path]:
    """`path` and the files read with it, resolved: its sidecars (model.h5 -> model.json,
    m.tflite -> m.tflite.json), an .xml's .bin, a transfer set's .npz/.json/.partial.npz
    (named by either file or by the stem `sets/pgd`)."""
    path = Path(path)
    found = {path, path.with_suffix(".json"), path.with_name(path.name + ".json")}
    if path.suffix == ".xml":
        found.add(path.with_suffix(".bin"))
    if path.suffix in (".npz", ".json", ""):
        stem = path.with_suffix("") if path.suffix else path
        found |= {stem.with_name(stem.name + s) for s in (".npz", ".json", ".partial.npz")}
    return {_resolved(p) for p in found}


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse (even with --force) an output that is an input or one of its companion files."""
    target = _resolved(Path(output))
    for source in inputs:
        if target in companions(source):
            kind = "" if target == _resolved(Path(source)) else " (a file that belongs to it)"
            raise EdgepruneError(f"{output} is an input of this command ({source}){kind}; writing it would "
                                 "overwrite the input: write the output elsewhere (--force does not apply)")


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def verify_openvino_pair(xml: str | os.PathLike) -> None:
    """Refuse an IR whose .xml or .bin differs from what its conversion report recorded
    (`m.xml.json`: `output_sha256`, `output_bin_sha256`); an IR without a report is not checked."""
    from edgeprune.io import read_json

    xml = Path(xml)
    report_path = xml.with_name(xml.name + ".json")
    if not report_path.is_file():
        return
    report = read_json(report_path)
    if not isinstance(report, dict) or Path(str(report.get("output", ""))).name != xml.name:
        return  # another tool's JSON, or a report of another file: nothing recorded for this IR
    verify_sha256(xml, report.get("output_sha256"), recorded_in=report_path)
    expected_bin = report.get("output_bin_sha256")
    if expected_bin is not None and sha256_file(xml.with_suffix(".bin")) != expected_bin:
        raise EdgepruneError(f"{xml.with_suffix('.bin')}: weights do not belong to {xml.name} (sha256 differs "
                             f"from the one recorded in {report_path.name}); a .bin from another model?")


def dataset_files(spec: str | None) -> list[str]:
    """The file or folder a dataset spec reads (npz:PATH, dir:PATH, svhn:PATH, folder:PATH), if any."""
    if not spec:
        return []
    kind, _, arg = spec.partition(":")
    return [arg] if arg and kind not in ("digits", "cifar10", "cifar100") else []


def check_outputs(outputs: Iterable[str | os.PathLike], *, force: bool,
                  inputs: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """`io.check_output` for every file a command will write (a report's .json/.csv/.md/.png)."""
    from edgeprune.io import check_output

    sources = list(inputs)
    return [check_output(path, force=force, inputs=sources) for path in outputs]


def check_report_outputs(stem: str | os.PathLike, suffixes: Iterable[str], *, force: bool,
                         inputs: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Check the files a report stem will produce (`-o report` -> report.json, report.csv, ...)."""
    stem = Path(stem)
    suffixes = tuple(suffixes)
    if stem.suffix in suffixes:
        stem = stem.with_suffix("")
    return check_outputs([stem.with_name(stem.name + s) for s in suffixes], force=force, inputs=inputs)


# Leading bytes of the formats a user may hand to the wrong command (offset, magic, name).
MAGIC = ((0, b"\x89HDF\r\n\x1a\n", "HDF5"), (4, b"TFL3", "TFLite"), (0, b"PK\x03\x04", "zip (.keras or .npz)"),
         (0, b"<?xml", "XML (OpenVINO IR?)"), (0, b"\x93NUMPY", "NumPy .npy"), (0, b"{", "JSON"))


def sniff(path: str | os.PathLike) -> str | None:
    """What a file is by its first bytes (HDF5, TFLite, zip, XML, ...), or None when unknown."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    for offset, magic, name in MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None
