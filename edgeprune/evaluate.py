"""Accuracy of any mix of models (.h5 / .tflite / .xml) on the clean split and on transfer sets.

Models run only through `edgeprune.runtime.load`, so evaluation of `.tflite` / `.xml` needs no
TensorFlow. Before anything runs, every (set, model) pair is checked to fit: input shape,
number of classes and dataset (name, and the set's split fingerprint against --dataset). The
report has the two views of the first paper: (a) per base model, its derived versions (pruned,
converted) as columns and attacks as rows with the largest change vs the base; (b) per attack,
transferability surrogate (the set's source model) x victim.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.attacks.transferset import TransferSet, check_set_against_dataset, load_transfer_set
from edgeprune.errors import EdgepruneError
from edgeprune.io import atomic_path, atomic_write_text, sha256_file, versions, write_json
from edgeprune.runtime import inference_label
from edgeprune.stats import wilson
from edgeprune.tables import csv_table, markdown_table
from edgeprune.vocab import KERAS_SUFFIXES, check_fit

SCHEMA = "edgeprune.evaluate/1"
CLEAN = "clean"


@dataclass
class ModelEntry:
    """One model to evaluate and what is known of where it came from."""

    path: Path
    label: str
    sha256: str
    parent_sha256: str | None
    dataset: str | None
    info: dict
    predictor: Any = field(repr=False, default=None)

    @property
    def describe(self) -> str:
        """'openvino/fp32 @bf16': the file's format and precision, and the precision it ran at."""
        ran = inference_label(self.info)
        return f"{self.info.get('format')}/{self.info.get('precision')}" + (f" @{ran}" if ran else "")


def model_lineage(path: Path) -> tuple[str | None, str | None, str | None]:
    """(parent sha256, dataset name, sparsity label) from a model's metadata or conversion record."""
    from edgeprune.runtime import _conversion_record

    if path.suffix.lower() in KERAS_SUFFIXES:
        from edgeprune.modelio import read_metadata

        meta = read_metadata(path)
        pruning = meta.get("pruning") or {}
        sparsity = pruning.get("reached_sparsity")
        return (pruning.get("source_sha256"), meta.get("dataset"),
                None if sparsity is None else f"{float(sparsity):.0%}")
    record = _conversion_record(path)
    dataset = (record.get("dataset") or {}).get("name")
    return record.get("source_sha256"), dataset, None


def load_models(paths: list[str | os.PathLike], *, allow_unsafe: bool = False,
                threads: int | None = None, inference_precision: str | None = None,
                input_range: str | None = None) -> list[ModelEntry]:
    from edgeprune.runtime import load

    entries: list[ModelEntry] = []
    labels: set[str] = set()
    for raw in paths:
        path = Path(raw)
        predictor = load(path, allow_unsafe=allow_unsafe, threads=threads,
                         inference_precision=inference_precision, input_range=input_range)
        parent, dataset, _ = model_lineage(path)
        label = path.name
        while label in labels:
            label = f"{path.parent.name}/{label}"
        labels.add(label)
        entries.append(ModelEntry(path=path, label=label, sha256=sha256_file(path), parent_sha256=parent,
                                  dataset=dataset, info=dict(predictor.info), predictor=predictor))
    return entries


def check_set_fits(transfer: TransferSet, model: ModelEntry) -> None:
    """Refuse a set whose images, classes or dataset do not fit the model (one line)."""
    record = transfer.record
    shape = list(model.info.get("input_shape", []))
    if shape != list(record["input_shape"]):
        raise EdgepruneError(f"set {transfer.name} has images of shape {tuple(record['input_shape'])}, "
                             f"model {model.label} takes {tuple(shape)}")
    if int(model.info.get("num_classes", -1)) != int(record["num_classes"]):
        raise EdgepruneError(f"set {transfer.name} has {record['num_classes']} classes, model {model.label} "
                             f"outputs {model.info.get('num_classes')}")
    set_dataset = record["dataset"]["name"]
    if model.dataset and model.dataset != set_dataset:
        raise EdgepruneError(f"set {transfer.name} comes from dataset {set_dataset!r}, model {model.label} "
                             f"was trained on {model.dataset!r}")


def check_set_dataset(transfer: TransferSet, dataset) -> None:
    record = transfer.record["dataset"]
    if record["name"] != dataset.name or record["fingerprint"] != dataset.fingerprint(record["split"]):
        raise EdgepruneError(f"set {transfer.name} comes from {record['name']!r} {record['split']} "
                             f"(fingerprint {record['fingerprint']}), not from the given dataset "
                             f"{dataset.name!r} (fingerprint {dataset.fingerprint(record['split'])})")
    check_set_against_dataset(transfer, dataset)  # indices in range, perturbation within the recorded eps


def evaluate(model_paths: list[str | os.PathLike], set_paths: list[str | os.PathLike], *,
             dataset_spec: str | None = None, limit: int | None = None, batch_size: int = 256,
             allow_unsafe: bool = False, progress: bool = False,
             inference_precision: str | None = None, input_range: str | None = None, folder: Any = None,
             seed: int = 0) -> dict[str, Any]:
    """The accuracy matrix (clean split + each set) x models, with views (a) and (b).

    `inference_precision` (edgeprune.runtime.INFERENCE_PRECISIONS, None = "default": what each
    runtime picks on this host) is how the runtimes compute; what ran is recorded per model.
    Images stay in [0, 1]; each model is fed its input range (`input_range` for all, else each
    model's recorded or detected one). The clean split is read in batches (a `folder:` dataset,
    with `folder`'s --val-split / --image-size / --strict and `seed`, is never whole in memory).
    """
    from edgeprune.data import load_dataset, subset
    from edgeprune.progress import progress_task

    if not model_paths:
        raise EdgepruneError("no models given")
    started = time.perf_counter()
    sets = [load_transfer_set(p) for p in set_paths]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise EdgepruneError(f"two sets share a name: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    if dataset_spec is None and sets:
        dataset_spec = sets[0].record["dataset"]["spec"]
        recorded = sets[0].record["dataset"].get("folder") or {}
        if recorded.get("val_split") is not None and getattr(folder, "val_split", None) is None:
            from edgeprune.folders import FolderOptions  # the set's own split of a one-tree folder

            folder = FolderOptions(val_split=recorded["val_split"], strict=bool(getattr(folder, "strict", False)))
            seed = int(recorded["split_seed"])
    models = load_models(model_paths, allow_unsafe=allow_unsafe, inference_precision=inference_precision,
                         input_range=input_range)
    dataset = load_dataset(dataset_spec, folder=folder, seed=seed,  # a folder is resized to the first model's input
                           input_shape=models[0].info.get("input_shape")) if dataset_spec else None
    for transfer in sets:
        if dataset is not None:
            check_set_dataset(transfer, dataset)
    for transfer in sets:
        for model in models:
            check_set_fits(transfer, model)
    data = None
    if dataset is not None:
        for model in models:
            check_fit(dataset, input_shape=model.info.get("input_shape", []),
                      num_classes=int(model.info.get("num_classes", dataset.num_classes)),
                      model=f"model {model.label}", trained_on=model.dataset)
        data = subset(dataset, limit_test=limit, seed=0) if limit else dataset

    rows = ([CLEAN] if data is not None else []) + names
    accuracy: dict[str, dict[str, float]] = {row: {} for row in rows}
    images: dict[str, int] = {}
    with progress_task("evaluate", len(rows) * len(models), enabled=progress) as advance:
        if data is not None:
            accuracy[CLEAN], images[CLEAN] = _clean_accuracy(models, data, batch_size)
            advance(len(models), "clean")
        for model in models:
            for transfer in sets:
                accuracy[transfer.name][model.label] = _accuracy(model, transfer.x_adv, transfer.y, batch_size)
                images[transfer.name] = int(len(transfer.y))
                advance(1, f"{model.label} {transfer.name}")

    labels = [m.label for m in models]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "dataset": None if dataset is None else {"spec": dataset_spec, "name": dataset.name,
                                                  "test_fingerprint": dataset.fingerprint("test"), "limit": limit,
                                                  **dataset.record()},
        "models": [{"label": m.label, "path": str(m.path), "sha256": m.sha256, "parent_sha256": m.parent_sha256,
                    "format": m.info.get("format"), "precision": m.info.get("precision"),
                    "inference_precision": m.info.get("inference_precision"),
                    "inference_precision_requested": m.info.get("inference_precision_requested"),
                    "delegate": m.info.get("delegate"), "runs_at": inference_label(m.info),
                    "input_shape": m.info.get("input_shape"), "num_classes": m.info.get("num_classes"),
                    "input_range": m.info.get("input_range"), "sparsity": model_lineage(m.path)[2]} for m in models],
        "sets": [{"name": s.name, "path": str(s.path), "attack": s.attack, "norm": s.record["attack"]["norm"],
                  "eps": s.record["attack"]["eps"], "params": s.record["attack"]["params"],
                  "images": int(len(s.y)), "source_model": s.record["source_model"],
                  "surrogate": _surrogate_label(s, models)} for s in sets],
        "images": images,
        "accuracy": accuracy,
        "accuracy_ci95": {row: {label: [round(v, 6) for v in wilson(value, images[row])]
                                for label, value in by_model.items()} for row, by_model in accuracy.items()},
        "views": {"base_vs_derived": base_views(models, sets, accuracy, rows),
                  "transfer": transfer_view(models, sets, accuracy)},
        "seconds": round(time.perf_counter() - started, 3),
        "versions": versions(),
    }
    report["model_order"] = labels
    return report


def _clean_accuracy(models: list[ModelEntry], data: Any, batch_size: int) -> tuple[dict[str, float], int]:
    """Accuracy of every model on the test split, read once in batches (each batch fed to all models)."""
    correct = dict.fromkeys((m.label for m in models), 0)
    total = 0
    for x, y in data.batches("test", batch_size):
        for model in models:
            correct[model.label] += int(np.sum(np.argmax(model.predictor.predict(x, batch_size=batch_size), axis=1) == y))
        total += len(y)
    return {label: count / total for label, count in correct.items()}, total


def _accuracy(model: ModelEntry, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    logits = model.predictor.predict(x, batch_size=batch_size)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _surrogate_label(transfer: TransferSet, models: list[ModelEntry]) -> str:
    sha = transfer.record["source_model"]["sha256"]
    for model in models:
        if model.sha256 == sha:
            return model.label
    return str(transfer.record["source_model"]["path"])


def _root(model: ModelEntry, by_sha: dict[str, ModelEntry]) -> ModelEntry:
    seen = set()
    while model.parent_sha256 in by_sha and model.sha256 not in seen:
        seen.add(model.sha256)
        model = by_sha[model.parent_sha256]
    return model


def base_views(models: list[ModelEntry], sets: list[TransferSet], accuracy: dict, rows: list[str]) -> list[dict]:
    """View (a): per base model, its derived models as columns; rows attacks; max delta vs base.

    A base is a model that derived models point to (pruning / conversion records), or, when
    no model points to another, the first model given.
    """
    by_sha = {m.sha256: m for m in models}
    families: dict[str, list[ModelEntry]] = {}
    for model in models:
        families.setdefault(_root(model, by_sha).label, []).append(model)
    if all(len(f) == 1 for f in families.values()):
        families = {models[0].label: models}
    views = []
    for base_label, members in families.items():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda m: m.label != base_label)  # the base first
        base_rows = [r for r in rows if r == CLEAN or _set_source_is(sets, r, members[0])] or rows
        table = []
        for row in base_rows:
            base_acc = accuracy[row][base_label]
            others = {m.label: accuracy[row][m.label] - base_acc for m in members if m.label != base_label}
            worst = max(others.items(), key=lambda kv: abs(kv[1])) if others else (None, 0.0)
            table.append({"row": row, "accuracy": {m.label: accuracy[row][m.label] for m in members},
                          "max_delta": worst[1], "max_delta_model": worst[0]})
        views.append({"base": base_label, "columns": [m.label for m in members], "rows": table})
    return views


def _set_source_is(sets: list[TransferSet], name: str, base: ModelEntry) -> bool:
    transfer = next(s for s in sets if s.name == name)
    return transfer.record["source_model"]["sha256"] == base.sha256


def transfer_view(models: list[ModelEntry], sets: list[TransferSet], accuracy: dict) -> list[dict]:
    """View (b): per attack, accuracy of each victim (column) on sets crafted on each surrogate (row)."""
    views = []
    for attack in dict.fromkeys(s.attack for s in sets):
        chosen = [s for s in sets if s.attack == attack]
        surrogates = list(dict.fromkeys(_surrogate_label(s, models) for s in chosen))
        matrix = []
        for surrogate in surrogates:
            row_sets = [s for s in chosen if _surrogate_label(s, models) == surrogate]
            # Several sets of one attack on one surrogate (e.g. two eps): the first one given.
            matrix.append({"surrogate": surrogate, "set": row_sets[0].name,
                           "accuracy": {m.label: accuracy[row_sets[0].name][m.label] for m in models}})
        views.append({"attack": attack, "victims": [m.label for m in models], "rows": matrix})
    return views


# --- writers -----------------------------------------------------------------------------------
def write_report(report: dict, output: str | os.PathLike) -> list[Path]:
    """report.json, report.csv, report.md and report.png (transfer heatmap) beside `output`."""
    stem = Path(output)
    if stem.suffix in (".json", ".csv", ".md", ".png"):
        stem = stem.with_suffix("")
    paths = [stem.with_name(stem.name + s) for s in (".json", ".csv", ".md")]
    write_json(paths[0], report)
    atomic_write_text(paths[1], to_csv(report))
    atomic_write_text(paths[2], to_markdown(report))
    if report["views"]["transfer"]:
        png = stem.with_name(stem.name + ".png")
        plot_transfer(report, png)
        paths.append(png)
    return paths


def to_csv(report: dict) -> str:
    sets = {s["name"]: s for s in report["sets"]}
    models = {m["label"]: m for m in report["models"]}
    rows = []
    for row, by_model in report["accuracy"].items():
        for label, value in by_model.items():
            info = sets.get(row, {})
            rows.append([row, info.get("attack", CLEAN), info.get("surrogate", ""), label, models[label]["format"],
                         models[label]["precision"], models[label].get("runs_at") or "", report["images"][row],
                         f"{value:.6f}"])
    return csv_table(["set", "attack", "surrogate", "model", "format", "precision", "runs_at", "images", "accuracy"],
                     rows, line_end="\r\n")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def to_markdown(report: dict) -> str:
    lines = ["# Evaluation", ""]
    if report["dataset"]:
        d = report["dataset"]
        lines.append(f"Dataset {d['name']} (test fingerprint {d['test_fingerprint']}"
                     f"{', limit ' + str(d['limit']) if d['limit'] else ''}). Accuracy in %.")
    lines.append("")
    order = report["model_order"]
    lines += [markdown_table(["model", "format", "precision", "runs at"],
                             ([m["label"], m["format"], m["precision"], m.get("runs_at") or "–"]
                              for m in report["models"])), ""]
    sets = {s["name"]: s for s in report["sets"]}
    lines += ["## Accuracy matrix", "", markdown_table(
        ["set", "attack", *order],
        ([row, sets.get(row, {}).get("attack", CLEAN), *[_pct(by_model[m]) for m in order]]
         for row, by_model in report["accuracy"].items()),
        align=["l", "l", *["r"] * len(order)])]
    for view in report["views"]["base_vs_derived"]:
        cols = view["columns"]
        lines += ["", f"## (a) Base {view['base']} and its derived models", "", markdown_table(
            ["attack", *cols, "max δ vs base"],
            ([row["row"], *[_pct(row["accuracy"][c]) for c in cols], f"{100 * row['max_delta']:+.1f}"]
             for row in view["rows"]),
            align=["l", *["r"] * (len(cols) + 1)])]
    for view in report["views"]["transfer"]:
        victims = view["victims"]
        lines += ["", f"## (b) Transferability: {view['attack']} (rows surrogate, columns victim)", "",
                  markdown_table(["surrogate \\ victim", *victims],
                                 ([row["surrogate"], *[_pct(row["accuracy"][v]) for v in victims]]
                                  for row in view["rows"]),
                                 align=["l", *["r"] * len(victims)])]
    return "\n".join(lines) + "\n"


def plot_transfer(report: dict, destination: Path) -> None:
    """Heatmap per attack of view (b): victim accuracy on sets crafted on each surrogate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = report["views"]["transfer"]
    fig, axes = plt.subplots(1, len(views), figsize=(max(4.0, 1.2 * len(views[0]["victims"]) + 2) * len(views), 3.6),
                             squeeze=False)
    for ax, view in zip(axes[0], views, strict=True):
        victims, rows = view["victims"], view["rows"]
        grid = np.array([[r["accuracy"][v] for v in victims] for r in rows]) * 100
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(victims)), victims, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), [r["surrogate"] for r in rows], fontsize=7)
        ax.set_title(f"{view['attack']}: accuracy %", fontsize=9)
        ax.set_xlabel("victim", fontsize=8)
        ax.set_ylabel("surrogate", fontsize=8)
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < 50 else "black")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    with atomic_path(destination, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
