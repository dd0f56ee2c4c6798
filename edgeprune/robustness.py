"""Robustness beyond one eps: minimum-norm curves (FMN) and AutoAttack reports per model.

A bounded attack at eps = 8/255 says nothing about 4/255 or 12/255; the second paper's
figure 3 plots accuracy against eps for several models from ONE minimum-norm run each:
accuracy(eps) = share of test points whose minimal adversarial norm exceeds eps (clean
errors have norm 0, points FMN could not flip norm inf). The curve is monotone
non-increasing by construction, and its median norm is one number per model.

FMN's curve is an upper bound on robust accuracy like any attack's; where a bounded attack
at a given eps finds more, the bounded figure is the better estimate (measured on the
digits smallcnn: FMN matches APGD at eps whose robust accuracy is above ~50% and trails
it in the tail — see tests/test_fmn.py).

Outputs: JSON (schema `edgeprune.robustness/1`), CSV (model, norm, eps, accuracy), markdown
and one PNG with all models' curves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.vocab import KERAS_SUFFIXES
from edgeprune.io import atomic_path, atomic_write_text, sha256_file, versions, write_json
from edgeprune.tables import csv_table, markdown_table

SCHEMA = "edgeprune.robustness/1"
AUTOATTACK_SCHEMA = "edgeprune.autoattack-report/1"


def parse_eps(text: str | float) -> float:
    """'8/255', '0.03' or a number -> float >= 0 (one-line error otherwise)."""
    try:
        value = float(Fraction(str(text).strip())) if not isinstance(text, (int, float)) else float(text)
    except (ValueError, ZeroDivisionError):
        raise EdgepruneError(f"eps must be a number or a fraction like 8/255, got {text!r}") from None
    if not np.isfinite(value) or value < 0:
        raise EdgepruneError(f"eps must be a finite number >= 0, got {text!r}")
    return value


def robust_accuracy_at(norms: np.ndarray, eps: float) -> float:
    """Share of points whose minimal adversarial norm is larger than eps."""
    norms = np.asarray(norms, np.float64)
    return float(np.mean(norms > eps)) if len(norms) else float("nan")


def accuracy_curve(norms: np.ndarray, eps_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Robust accuracy at each eps (monotone non-increasing in eps)."""
    norms = np.sort(np.asarray(norms, np.float64))
    eps_array = np.asarray(eps_values, np.float64)
    if not len(norms):
        return np.full(len(eps_array), np.nan)
    # Count of norms <= eps, by binary search: exact and monotone.
    return 1.0 - np.searchsorted(norms, eps_array, side="right") / len(norms)


def median_norm(norms: np.ndarray) -> float:
    from edgeprune.attacks.fmn import median_norm as _median

    return _median(norms)


def eps_grid(curves: Sequence[RobustnessCurve], points: int = 101) -> np.ndarray:
    """A common eps axis for several curves: 0 .. 1.05 x the largest finite norm."""
    finite = [float(c.norms[np.isfinite(c.norms)].max()) for c in curves if np.isfinite(c.norms).any()]
    top = max(finite) * 1.05 if finite and max(finite) > 0 else 1.0
    return np.linspace(0.0, top, points)


@dataclass(frozen=True)
class RobustnessCurve:
    """Per-point minimal norms of one model, and what produced them."""

    label: str
    norm: str
    norms: np.ndarray
    clean_accuracy: float
    fmn: dict = field(default_factory=dict)
    seconds: float = 0.0
    source: dict = field(default_factory=dict)

    def accuracy(self, eps: float) -> float:
        return robust_accuracy_at(self.norms, eps)

    @property
    def median_norm(self) -> float:
        return median_norm(self.norms)

    def summary(self, eps_report: Sequence[float] = ()) -> dict[str, Any]:
        finite = np.isfinite(self.norms)
        return {"label": self.label, **self.source, "norm": self.norm, "images": int(len(self.norms)),
                "clean_accuracy": self.clean_accuracy, "median_norm": _json_float(self.median_norm),
                "failures": int((~finite).sum()),
                "robust_accuracy_at": {f"{e:.6g}": self.accuracy(e) for e in eps_report},
                "fmn": self.fmn, "seconds": round(self.seconds, 3),
                "norms": [_json_float(v) for v in self.norms]}


def _json_float(value: float) -> float | str:
    return float(value) if np.isfinite(value) else "inf"


def minimal_norms(model_fn: Callable, x: np.ndarray, y: np.ndarray, *, norm: str = "linf",
                  config=None, batch_size: int = 128, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """FMN over a whole split in batches: (x_adv, per-point minimal norms)."""
    from edgeprune.attacks.fmn import fmn_norms
    from edgeprune.progress import progress_task

    x_adv = np.empty_like(x)
    norms = np.empty(len(x), np.float32)
    with progress_task(f"fmn ({norm})", len(x), enabled=progress) as advance:
        for start in range(0, len(x), batch_size):
            stop = min(start + batch_size, len(x))
            x_adv[start:stop], norms[start:stop] = fmn_norms(model_fn, x[start:stop], y[start:stop],
                                                             norm=norm, config=config)
            advance(stop - start)
    return x_adv, norms


def fmn_curve(model, x: np.ndarray, y: np.ndarray, *, label: str, norm: str = "linf", steps: int = 100,
              tune: bool = True, calibration: int = 32, batch_size: int = 128,
              progress: bool = False) -> tuple[RobustnessCurve, np.ndarray]:
    """Minimal norms of `model` (Keras or logits callable) on (x, y): (curve, FMN x_adv).

    With `tune`, FMN's alpha_init and schedule are chosen on the first `calibration` points
    (smallest median norm, `edgeprune.attacks.fmn.tune_fmn`), then the whole set is run.
    """
    from edgeprune.attacks.fmn import FMNConfig, tune_fmn
    from edgeprune.attacks.runner import check_images, logits_function

    x, y = check_images(x, y)
    if steps < 1:
        raise EdgepruneError(f"FMN steps must be >= 1, got {steps}")
    model_fn, _ = logits_function(model, probe=x)
    started = time.perf_counter()
    record: dict[str, Any] = {"steps": steps, "tuned": bool(tune)}
    config = FMNConfig(steps=steps)
    if tune:
        subset = slice(0, min(max(calibration, 1), len(x)))
        tuning = tune_fmn(model_fn, x[subset], y[subset], norm=norm, steps=steps)
        config = tuning.config
        record["calibration_images"] = int(min(calibration, len(x)))
        record["tuning"] = [{k: _json_float(v) if isinstance(v, float) else v for k, v in row.items()}
                            for row in tuning.table]
    record.update({"alpha_init": config.alpha_init, "schedule": config.schedule,
                   "gamma_init": config.gamma_init, "gamma_final": config.gamma_final})
    x_adv, norms = minimal_norms(model_fn, x, y, norm=norm, config=config, batch_size=batch_size,
                                 progress=progress)
    clean = float(np.mean(norms > 0))
    curve = RobustnessCurve(label=label, norm=norm, norms=norms, clean_accuracy=clean, fmn=record,
                            seconds=time.perf_counter() - started)
    return curve, x_adv


def plot_curves(curves: Sequence[RobustnessCurve], destination: str | os.PathLike, *,
                grid: np.ndarray | None = None, eps_marks: Sequence[float] = (), title: str = "") -> Path:
    """All models' accuracy-vs-eps curves on one PNG (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = eps_grid(curves) if grid is None else np.asarray(grid)
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=110)
    for curve in curves:
        ax.step(grid, 100 * accuracy_curve(curve.norms, grid), where="post",
                label=f"{curve.label} (median {curve.median_norm:.4g})")
    for eps in eps_marks:
        ax.axvline(eps, color="grey", linestyle=":", linewidth=1)
    norm = curves[0].norm if curves else "linf"
    ax.set_xlabel(f"eps ({'L-inf' if norm == 'linf' else 'L2'}); pixels in [0, 1]")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(grid[0], grid[-1])
    ax.grid(alpha=0.3)
    ax.set_title(title or "Robustness curves (FMN minimal norms)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    destination = Path(destination)
    with atomic_path(destination, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return destination


def curves_report(curves: Sequence[RobustnessCurve], *, dataset: dict, eps_report: Sequence[float] = (),
                  points: int = 101, grid: Sequence[float] | None = None) -> dict[str, Any]:
    """JSON-ready curves on `grid` (default: 0 .. 1.05 x the largest finite norm, `points` values)."""
    from edgeprune.stats import annotate, wilson

    grid_values = eps_grid(curves, points) if grid is None else np.asarray(grid, np.float64)
    curve_values = {c.label: [float(a) for a in accuracy_curve(c.norms, grid_values)] for c in curves}
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "norm": curves[0].norm if curves else None,
        "dataset": dataset,
        "eps_report": list(eps_report),
        "grid": [float(e) for e in grid_values],
        "models": [c.summary(eps_report) for c in curves],
        "curves": curve_values,
        "versions": versions(),
    }
    annotate({"models": report["models"]})
    report["curves_ci95"] = {c.label: [[round(v, 6) for v in wilson(float(a), len(c.norms))]
                                       for a in curve_values[c.label]] for c in curves}
    return report


def curves_csv(report: dict) -> str:
    return csv_table(["model", "norm", "eps", "robust_accuracy"],
                     ([label, report["norm"], f"{eps:.6g}", f"{acc:.6f}"]
                      for label, accuracies in report["curves"].items()
                      for eps, acc in zip(report["grid"], accuracies, strict=True)), line_end="\r\n")


def curves_markdown(report: dict) -> str:
    from edgeprune.stats import pct_pm

    eps_cols = [f"{float(e):.4g}" for e in report["eps_report"]]
    rows = []
    for m in report["models"]:
        med = m["median_norm"]
        rows.append([m["label"], m["images"], pct_pm(m["clean_accuracy"], m["images"]),
                     med if isinstance(med, str) else f"{med:.4g}",
                     m["failures"], *[pct_pm(v, m["images"]) for v in m["robust_accuracy_at"].values()],
                     f"{m['fmn']['alpha_init']:g} / {m['fmn']['schedule']}"])
    table = markdown_table(["model", "images", "clean", "median norm", "failures", *[f"acc @ {e}" for e in eps_cols],
                            "FMN alpha / schedule"], rows, align=["l", *["r"] * (4 + len(eps_cols)), "l"])
    return f"## Robustness curves ({report['norm']}, FMN minimal norms)\n\n{table}\n"


def write_curves(report: dict, curves: Sequence[RobustnessCurve], stem: str | os.PathLike) -> list[Path]:
    """STEM.json, STEM.csv, STEM.md and STEM.png (all curves on one figure)."""
    stem = Path(stem)
    paths = [stem.with_suffix(".json"), stem.with_suffix(".csv"), stem.with_suffix(".md"),
             stem.with_suffix(".png")]
    write_json(paths[0], report)
    atomic_write_text(paths[1], curves_csv(report))
    atomic_write_text(paths[2], curves_markdown(report))
    plot_curves(curves, paths[3], grid=np.asarray(report["grid"]), eps_marks=report["eps_report"])
    return paths


def _load_split(dataset_spec: str | None, model_paths: Sequence[Path], limit: int | None, folder: Any = None,
                seed: int = 0):
    from edgeprune.data import load_dataset
    from edgeprune.modelio import read_metadata

    keras_paths = [p for p in model_paths if p.suffix.lower() in KERAS_SUFFIXES]
    if dataset_spec is None:
        names = {read_metadata(p).get("dataset") for p in model_paths if p.suffix.lower() in KERAS_SUFFIXES}
        names.discard(None)
        if len(names) != 1:
            raise EdgepruneError("give --dataset: the models' metadata does not name one dataset")
        dataset_spec = str(names.pop())
    shape = read_metadata(keras_paths[0]).get("input_shape") if keras_paths else None  # a folder's resize target
    dataset = load_dataset(dataset_spec, limit_test=limit, folder=folder, seed=seed, input_shape=shape)
    x, y = dataset.split("test")
    if len(x) == 0:
        raise EdgepruneError(f"dataset {dataset_spec}: the test split is empty")
    return dataset, x, y


def _keras_only(path: Path, what: str, allow_unsafe: bool, input_range: str | None = None) -> tuple[Any, dict]:
    """(the Keras model at `path` fed [0, 1] images, the record of its input range)."""
    from edgeprune.modelio import load_keras_model

    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise EdgepruneError(f"{path}: {what} needs gradients, so a Keras .h5 or .keras model; "
                             f"{path.suffix} models run the black-box Square stage (--autoattack)")
    from edgeprune.inputrange import announce, resolve_input_range, with_input_range
    from edgeprune.modelio import read_metadata

    model = load_keras_model(path, allow_unsafe=allow_unsafe)
    resolved = resolve_input_range(input_range, metadata=read_metadata(path), model=model)
    announce(resolved)
    return with_input_range(model, resolved.input_range), resolved.record()  # images and eps stay in [0, 1] units


def evaluate_curves(model_paths: Sequence[str | os.PathLike], *, dataset_spec: str | None = None,
                    limit: int | None = None, norm: str = "linf", steps: int = 100, tune: bool = True,
                    calibration: int = 32, eps_report: Sequence[float] = (), batch_size: int = 128,
                    allow_unsafe: bool = False, progress: bool = False,
                    input_range: str | None = None, folder: Any = None,
                    seed: int = 0) -> tuple[dict, list[RobustnessCurve]]:
    """FMN robustness curves of several Keras models on one dataset's test split; each model
    is fed its input range (`input_range` for all, else its recorded or detected one)."""
    from edgeprune.attacks.registry import normalize_norm

    norm = normalize_norm(norm)
    paths = [Path(p) for p in model_paths]
    for path in paths:
        if not path.exists():
            raise EdgepruneError(f"{path}: no such model file")
    dataset, x, y = _load_split(dataset_spec, paths, limit, folder, seed)
    curves = []
    for path in paths:
        model, range_record = _keras_only(path, "an FMN curve", allow_unsafe, input_range)
        curve, _ = fmn_curve(model, x, y, label=path.name, norm=norm, steps=steps, tune=tune,
                             calibration=calibration, batch_size=batch_size, progress=progress)
        curves.append(replace(curve, source={"path": str(path), "sha256": sha256_file(path),
                                                   "input_range": range_record}))
    report = curves_report(curves, eps_report=eps_report, dataset={
        "name": dataset.name, "split": "test", "images": int(len(x)), "fingerprint": dataset.fingerprint("test"),
        **dataset.record()})
    return report, curves


def evaluate_autoattack(model_paths: Sequence[str | os.PathLike], *, eps: float, dataset_spec: str | None = None,
                        limit: int | None = None, norm: str = "linf", version: str = "standard",
                        seed: int = 0, batch_size: int = 128, allow_unsafe: bool = False,
                        progress: bool = False, input_range: str | None = None, folder: Any = None) -> dict[str, Any]:
    """AutoAttack on each model: Keras models get all stages, .tflite/.xml the black-box Square;
    each is fed its input range (`input_range` for all, else its recorded or detected one)."""
    from edgeprune.attacks.autoattack import AutoAttackConfig, bucketed_predict, numpy_predict, run_autoattack
    from edgeprune.attacks.runner import logits_function
    from edgeprune.runtime import load

    paths = [Path(p) for p in model_paths]
    for path in paths:
        if not path.exists():
            raise EdgepruneError(f"{path}: no such model file")
    try:
        config = AutoAttackConfig(eps=eps, norm=norm, version=version, seed=seed, batch_size=batch_size)
    except ValueError as exc:
        raise EdgepruneError(str(exc)) from None
    dataset, x, y = _load_split(dataset_spec, paths, limit, folder, seed)
    rows = []
    for path in paths:
        started = time.perf_counter()
        if path.suffix.lower() in KERAS_SUFFIXES:
            keras_model, range_record = _keras_only(path, "AutoAttack", allow_unsafe, input_range)
            model_fn, _ = logits_function(keras_model, probe=x)
            predict = numpy_predict(model_fn, batch_size)
        else:
            model_fn = None
            predictor = load(path, allow_unsafe=allow_unsafe, input_range=input_range)
            range_record = predictor.info["input_range"]
            predict = bucketed_predict(predictor.predict, batch_size)
        result = run_autoattack(model_fn, x, y, config, predict=predict, progress=progress)
        rows.append({"label": path.name, "path": str(path), "sha256": sha256_file(path), "input_range": range_record,
                     **{k: v for k, v in result.summary().items() if k not in ("schema", "config")},
                     "seconds": round(time.perf_counter() - started, 3)})
    from edgeprune.stats import annotate

    return {"schema": AUTOATTACK_SCHEMA, "config": config.as_dict(),
            "dataset": {"name": dataset.name, "split": "test", "images": int(len(x)),
                        "fingerprint": dataset.fingerprint("test"), **dataset.record()},
            "models": annotate({"models": rows})["models"], "versions": versions()}


def autoattack_markdown(report: dict) -> str:
    from edgeprune.stats import pct_pm

    cfg = report["config"]
    stages = cfg["stages"]
    rows = [[m["label"], pct_pm(m["clean_accuracy"], m["images"]),
             *[pct_pm(s["robust_accuracy"], m["images"]) + ("" if s["status"] == "ran" else " (skipped)")
               for s in m["stages"]],
             pct_pm(m["robust_accuracy"], m["images"])] for m in report["models"]]
    lines = [f"## AutoAttack ({cfg['version']}, {cfg['norm']}, eps {cfg['eps']:.5g}) on "
             f"{report['dataset']['images']} {report['dataset']['name']} test images", "",
             markdown_table(["model", "clean", *[f"after {s}" for s in stages], "robust (min over all)"], rows,
                            align=["l", *["r"] * (len(stages) + 2)])]
    warned = [(m["label"], w) for m in report["models"] for w in m["warnings"]]
    lines += [""] + [f"- {label}: {w}" for label, w in warned] if warned else []
    return "\n".join(lines) + "\n"


def autoattack_csv(report: dict) -> str:
    rows = []
    for m in report["models"]:
        rows.append([m["label"], "clean", "", m["images"], "", f"{m['clean_accuracy']:.6f}"])
        rows += [[m["label"], s["name"], s["status"], s["attacked"], s["fooled"], f"{s['robust_accuracy']:.6f}"]
                 for s in m["stages"]]
    return csv_table(["model", "stage", "status", "attacked", "fooled", "robust_accuracy"], rows, line_end="\r\n")


def write_autoattack(report: dict, stem: str | os.PathLike) -> list[Path]:
    stem = Path(stem)
    paths = [stem.with_suffix(".json"), stem.with_suffix(".csv"), stem.with_suffix(".md")]
    write_json(paths[0], report)
    atomic_write_text(paths[1], autoattack_csv(report))
    atomic_write_text(paths[2], autoattack_markdown(report))
    return paths


DEFAULT_CURVE_EPS = {"linf": (2 / 255, 4 / 255, 8 / 255), "l2": (0.25, 0.5, 1.0)}
