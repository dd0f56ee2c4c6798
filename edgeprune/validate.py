"""Validation of arrays read from user files, before anything converts or trusts them.

A dataset file's pixels must be numeric and finite, in [0, 1] (floats) or 0..255, with
matching image shapes and lengths; its labels integer class ids with every class present
(one stray label must not make an extra class). A transfer set's images must be finite
float32 in [0, 1], its labels within its classes, its indices unique and non-negative, and
its recorded eps must bound the perturbation it measured. Every refusal is one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from edgeprune.errors import EdgepruneError

# A class present on fewer images than this share of the median class looks like a stray label.
STRAY_CLASS_SHARE = 0.01
# Slack between a recorded eps and the perturbation measured on the images (float32 rounding).
EPS_SLACK = 1e-4


def check_pixels(x: np.ndarray, what: str) -> None:
    """Numeric, finite pixels in [0, 1] (floats) or 0..255 (integers or floats); NHWC or NHW."""
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) \
            or np.issubdtype(x.dtype, np.bool_):
        raise EdgepruneError(f"{what}: pixels must be numbers, got dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise EdgepruneError(f"{what}: images must be NHWC (or NHW), got shape {x.shape}")
    if x.size == 0:
        return
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x)
        if not finite.all():
            raise EdgepruneError(f"{what}: {int(x.size - finite.sum())} pixel value(s) are NaN or infinite")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        raise EdgepruneError(f"{what}: pixels lie in [{low:g}, {high:g}]; expected [0, 1] floats or 0..255 "
                             "(rescale, e.g. (x + 1) / 2 for [-1, 1] data)")


def check_labels(y: np.ndarray, what: str) -> np.ndarray:
    """Integer-valued class ids (any integer or float dtype holding whole numbers) -> int64 1-D."""
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)) \
            or np.issubdtype(y.dtype, np.bool_):
        raise EdgepruneError(f"{what}: labels must be integer class ids, got dtype {y.dtype}")
    flat = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if flat.ndim != 1:
        raise EdgepruneError(f"{what}: labels must be one class id per image, got shape {y.shape} "
                             "(one-hot labels: take argmax)")
    if np.issubdtype(flat.dtype, np.floating):
        if not np.isfinite(flat).all() or not np.array_equal(flat, np.round(flat)):
            raise EdgepruneError(f"{what}: labels must be whole class ids, found fractional or NaN values")
    if flat.size and flat.min() < 0:
        raise EdgepruneError(f"{what}: negative label {int(flat.min())}")
    return flat.astype(np.int64)


def check_dataset_arrays(name: str, arrays: Mapping[str, np.ndarray],
                         class_names: Sequence[str] | None = None) -> None:
    """Refuse a dataset file whose x_train/y_train/x_test/y_test cannot be trusted (one line)."""
    what = f"dataset {name!r}"
    labels = {}
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        check_pixels(x, f"{what}: x_{split}")
        labels[split] = check_labels(y, f"{what}: y_{split}")
        if len(x) != len(labels[split]):
            raise EdgepruneError(f"{what}: x_{split} has {len(x)} images but y_{split} {len(labels[split])} labels")
    shapes = {split: tuple(np.asarray(arrays[f"x_{split}"]).shape[1:]) for split in ("train", "test")}
    if shapes["train"] != shapes["test"]:
        raise EdgepruneError(f"{what}: train images {shapes['train']} and test images {shapes['test']} differ")
    everything = np.concatenate([labels["train"], labels["test"]])
    if class_names is not None:
        if everything.size and everything.max() >= len(class_names):
            raise EdgepruneError(f"{what}: label {int(everything.max())} but only {len(class_names)} class names")
        return
    if labels["train"].size == 0:
        return
    counts = np.bincount(labels["train"], minlength=int(everything.max()) + 1)
    absent = np.flatnonzero(counts == 0)
    if absent.size:
        raise EdgepruneError(f"{what}: label(s) {', '.join(str(int(c)) for c in absent[:5])} never occur in "
                             f"y_train though labels go up to {int(everything.max())}; fix the labels or "
                             "add class_names")
    typical = float(np.median(counts))
    stray = np.flatnonzero(counts <= max(1.0, STRAY_CLASS_SHARE * typical))
    if typical >= 50 and stray.size:
        c = int(stray[-1])
        raise EdgepruneError(f"{what}: label {c} occurs on {int(counts[c])} training image(s) against ~{typical:.0f} "
                             "for the other classes: a stray label would add a class; fix it or add class_names")


def check_transfer_arrays(path: str, x_adv: np.ndarray, y: np.ndarray, index: np.ndarray, record: dict) -> None:
    """Refuse a transfer set whose arrays disagree with what a set must be or with its record."""
    if len(y) == 0:
        raise EdgepruneError(f"{path}: the transfer set is empty (0 images)")
    finite = np.isfinite(x_adv)
    if not finite.all():
        raise EdgepruneError(f"{path}: {int(x_adv.size - finite.sum())} pixel value(s) are NaN or infinite")
    low, high = float(x_adv.min()), float(x_adv.max())
    if low < 0 or high > 1:
        raise EdgepruneError(f"{path}: pixels lie in [{low:g}, {high:g}]; transfer-set images must be in [0, 1]")
    classes = int(record.get("num_classes", 0))
    if y.min() < 0 or y.max() >= classes:
        bad = int(y.max()) if y.max() >= classes else int(y.min())
        raise EdgepruneError(f"{path}: label {bad} is outside the set's {classes} classes (0..{classes - 1})")
    if index.min() < 0:
        raise EdgepruneError(f"{path}: negative image index {int(index.min())}")
    if len(np.unique(index)) != len(index):
        raise EdgepruneError(f"{path}: image indices repeat; each image of the split may appear once")
    check_recorded_eps(path, record)


def check_recorded_eps(path: str, record: dict) -> None:
    """The record's eps must be a sane bound and must bound the perturbation measured at crafting."""
    attack = record.get("attack", {})
    eps, norm = attack.get("eps"), attack.get("norm")
    if eps is None:
        return
    if not isinstance(eps, (int, float)) or not eps > 0:
        raise EdgepruneError(f"{path}: recorded eps {eps!r} is not a positive number")
    if norm == "linf" and eps > 1:
        raise EdgepruneError(f"{path}: recorded L-inf eps {eps:g} exceeds 1, the whole [0, 1] pixel range")
    measured = (record.get("perturbation") or {}).get(norm)
    if isinstance(measured, dict):  # {"mean", "median", "max"} over the set's images
        measured = measured.get("max")
    if isinstance(measured, (int, float)) and measured > eps * (1 + EPS_SLACK) + EPS_SLACK:
        raise EdgepruneError(f"{path}: recorded eps {eps:g} ({norm}) is below the perturbation the set "
                             f"measured ({measured:g}); the record was edited or belongs to another set")


def check_perturbation(path: str, x_adv: np.ndarray, x_clean: np.ndarray, record: dict) -> None:
    """With the clean images at hand: the actual perturbation must stay within the recorded eps."""
    attack = record.get("attack", {})
    eps, norm = attack.get("eps"), attack.get("norm")
    if eps is None or norm not in ("linf", "l2"):
        return
    delta = (x_adv.astype(np.float32) - x_clean.astype(np.float32)).reshape(len(x_adv), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.sqrt(np.square(delta, dtype=np.float64).sum(axis=1))
    # The runner clips every image to eps; allow float32 rounding only.
    if size.size and float(size.max()) > eps * (1 + EPS_SLACK) + EPS_SLACK:
        raise EdgepruneError(f"{path}: images are perturbed by up to {float(size.max()):.4g} ({norm}) but the "
                             f"record says eps {eps:g}")


def check_single_io(path: str | os.PathLike[str], inputs: int, outputs: int) -> None:
    """edgeprune's stages take one image batch in and one logits batch out (one line otherwise)."""
    words = {2: "two", 3: "three", 4: "four"}
    if inputs != 1:
        raise EdgepruneError(f"{path}: the model has {words.get(inputs, inputs)} inputs; edgeprune takes "
                             "models with a single image input")
    if outputs != 1:
        raise EdgepruneError(f"{path}: the model has {words.get(outputs, outputs)} outputs; edgeprune takes "
                             "models with a single logits output")
