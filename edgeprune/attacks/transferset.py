"""Transfer sets: adversarial images crafted on a source model, saved with their provenance.

`NAME.npz` holds `x_adv` (float32, NHWC, [0, 1]), `y` (int64 true labels), `index` (int64,
each image's index in the dataset split), per-image `norm_linf` / `norm_l2` of x_adv - x, the
source model's predictions `source_clean_pred` / `source_pred` and, for universal attacks,
`perturbation`; no object arrays. `NAME.json` ("edgeprune.transferset/1") records the attack and every parameter, the
dataset and split with fingerprints, the source model's sha256, and what was measured on the
source model. An interrupted run leaves `NAME.partial.npz`, which the same command resumes.
"""

from __future__ import annotations

import os
import platform
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.attacks.runner import AttackConfig, run_attack
from edgeprune.errors import EdgepruneError
from edgeprune.integrity import verify_sha256
from edgeprune.io import atomic_path, read_json, sha256_file, versions, write_json
from edgeprune.validate import check_perturbation, check_transfer_arrays

SCHEMA = "edgeprune.transferset/1"
ARRAYS = ("x_adv", "y", "index")


def set_paths(output: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(NAME.npz, NAME.json, NAME.partial.npz) for `-o sets/NAME` (a .npz/.json suffix is dropped)."""
    stem = Path(output)
    if stem.suffix in (".npz", ".json"):
        stem = stem.with_suffix("")
    return (stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json"),
            stem.with_name(stem.name + ".partial.npz"))


@dataclass(frozen=True)
class TransferSet:
    """A loaded, checked transfer set."""

    path: Path
    x_adv: np.ndarray
    y: np.ndarray
    index: np.ndarray
    record: dict

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".npz")

    @property
    def attack(self) -> str:
        return str(self.record["attack"]["name"])


def craft_transfer_set(model_path: str | os.PathLike, dataset_spec: str, config: AttackConfig, output: str | os.PathLike,
                       *, split: str = "test", limit: int | None = None, progress: bool = False,
                       allow_unsafe: bool = False, input_range: str | None = None,
                       folder: Any = None) -> dict[str, Any]:
    """Attack `split` of the dataset on the model at `model_path`; write NAME.npz + NAME.json.

    Images and eps stay in [0, 1] units; a model taking another `input_range` (declared, else
    recorded, else detected) is attacked through a Rescaling in front of it.
    """
    from edgeprune.data import load_dataset, subset
    from edgeprune.inputrange import announce, resolve_input_range, with_input_range
    from edgeprune.modelio import load_keras_model, read_metadata

    model_path = Path(model_path)
    npz_path, json_path, partial_path = set_paths(output)
    model = load_keras_model(model_path, allow_unsafe=allow_unsafe)
    metadata = read_metadata(model_path)
    full = load_dataset(dataset_spec, folder=folder, seed=getattr(folder, "seed", 0),
                        input_shape=model.input_shape[1:], class_names=metadata.get("class_names"))
    if len(full.labels(split)) == 0:
        full.split(split)  # the dataset's one-line error for an empty split
    check_model_fits(model_path, metadata, list(model.input_shape[1:]), int(model.output_shape[-1]),
                     full, split)
    limits = {"limit_test": limit} if split == "test" else {"limit_train": limit}
    # The stratified --limit selection comes from the labels alone: a folder decodes only these images.
    data = subset(full, **limits, seed=0) if limit is not None else full
    x, y = data.split(split)
    index = data.indices(split)
    resolved = resolve_input_range(input_range, metadata=metadata, model=model)
    announce(resolved)
    model = with_input_range(model, resolved.input_range)
    started = time.perf_counter()
    result = run_attack(model, x, y, config, progress=progress, partial_path=partial_path)
    arrays = {"x_adv": result.x_adv, "y": result.y, "index": index.astype(np.int64),
              "norm_linf": result.norms_linf.astype(np.float32), "norm_l2": result.norms_l2.astype(np.float32),
              "source_pred": result.adv_pred, "source_clean_pred": result.clean_pred}
    if result.perturbation is not None:
        arrays["perturbation"] = result.perturbation
    summary = result.summary()
    record = {
        "schema": SCHEMA,
        "attack": {"name": config.attack, "norm": config.norm, "eps": config.eps, "seed": int(config.seed),
                   "params": dict(config.params), "kind": config.spec.kind, "backend": config.spec.backend,
                   "batch_size": config.batch_size, "targeted": False, "labels": "true"},
        "dataset": {"spec": dataset_spec, "name": full.name, "split": split,
                    "fingerprint": full.fingerprint(split), "subset_fingerprint": data.fingerprint(split),
                    "limit": limit, "limit_seed": 0, "images": int(len(y)), **full.record()},
        "input_shape": list(x.shape[1:]),
        "num_classes": int(full.num_classes),
        "input_range": {**resolved.record(), "images": "0,1"},  # x_adv in [0, 1]; the model took this range
        "source_model": {"path": model_path.name, "sha256": sha256_file(model_path),
                         "arch": metadata.get("arch"), "pruning": metadata.get("pruning")},
        "source_metrics": {k: summary[k] for k in ("clean_accuracy", "adversarial_accuracy", "success_rate")},
        "perturbation": {"linf": summary["perturbation_linf"], "l2": summary["perturbation_l2"],
                         "perturbed_images": summary["perturbed_images"],
                         "universal": None if result.perturbation is None else {
                             "linf": float(np.abs(result.perturbation).max()),
                             "l2": float(np.sqrt(np.sum(np.square(result.perturbation, dtype=np.float64))))}},
        "softmax_stripped": result.softmax_stripped,
        "resumed_images": result.resumed_images,
        "seconds": round(time.perf_counter() - started, 3),
        "images_per_second": summary["images_per_second"],
        "files": {"npz": npz_path.name},
        "host": {"machine": platform.machine(), "processor": platform.processor() or None},
        "versions": versions(),
    }
    with atomic_path(npz_path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    record["files"]["npz_sha256"] = sha256_file(npz_path)
    write_json(json_path, record)
    partial_path.unlink(missing_ok=True)
    return record


def check_model_fits(model_path: Path, metadata: dict, input_shape: list[int], num_classes: int, dataset,
                     split: str) -> None:
    """Refuse a dataset whose images or classes do not fit the model (one line)."""
    from edgeprune.vocab import check_fit

    check_fit(dataset, input_shape=input_shape, num_classes=num_classes, model=model_path.name,
              trained_on=metadata.get("dataset"))


def load_transfer_set(path: str | os.PathLike) -> TransferSet:
    """Read NAME.npz (or NAME / NAME.json) and its record, checking both; one-line errors."""
    npz_path, json_path, _ = set_paths(path)
    if not npz_path.exists():
        raise EdgepruneError(f"{npz_path}: no such transfer set")
    record = read_json(json_path)
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise EdgepruneError(f"{json_path}: not a transfer-set record (schema {SCHEMA} expected)")
    verify_sha256(npz_path, (record.get("files") or {}).get("npz_sha256"), recorded_in=json_path)
    try:
        with np.load(npz_path, allow_pickle=False) as saved:
            missing = [k for k in ARRAYS if k not in saved.files]
            if missing:
                raise EdgepruneError(f"{npz_path}: missing arrays {', '.join(missing)}")
            x_adv, y, index = (saved[k] for k in ARRAYS)
    except EdgepruneError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise EdgepruneError(f"{npz_path}: not a readable transfer set ({str(exc)[:120]})") from None
    if x_adv.dtype != np.float32 or x_adv.ndim != 4 or len(x_adv) != len(y) or len(y) != len(index):
        raise EdgepruneError(f"{npz_path}: expected float32 NHWC x_adv with matching y and index, got "
                             f"{x_adv.dtype} {x_adv.shape}, y {y.shape}, index {index.shape}")
    if list(x_adv.shape[1:]) != list(record.get("input_shape", [])):
        raise EdgepruneError(f"{npz_path}: images {x_adv.shape[1:]} disagree with its record "
                             f"{record.get('input_shape')}")
    if not (np.issubdtype(y.dtype, np.integer) and np.issubdtype(index.dtype, np.integer)):
        raise EdgepruneError(f"{npz_path}: y and index must be integers, got {y.dtype} and {index.dtype}")
    check_transfer_arrays(str(npz_path), x_adv, y, index, record)
    return TransferSet(path=npz_path, x_adv=x_adv, y=y.astype(np.int64), index=index.astype(np.int64),
                       record=record)


def check_set_against_dataset(transfer: TransferSet, dataset) -> None:
    """With the set's dataset at hand: indices within its split, and the images within the
    recorded eps of the clean images they came from (one-line refusals)."""
    split = transfer.record["dataset"]["split"]
    x_clean, _ = dataset.split(split, dtype="uint8")
    if x_clean.shape[1:] != transfer.x_adv.shape[1:]:
        return  # images of another shape: the model/dataset fit checks name that
    if transfer.index.max() >= len(x_clean):
        raise EdgepruneError(f"{transfer.path}: image index {int(transfer.index.max())} is out of range for the "
                             f"{len(x_clean)}-image {split} split of {dataset.name!r}")
    check_perturbation(str(transfer.path), transfer.x_adv, x_clean[transfer.index] / np.float32(255.0),
                       transfer.record)
