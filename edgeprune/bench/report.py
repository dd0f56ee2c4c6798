"""The grid's report: report.md (the papers' tables), CSV and JSON, and PNG plots.

Everything is read back from the cells' own reports in the cache, so the report of a
resumed run is the report of a clean run: only measured timings (latency, wall time) differ.
Deterministic figures (sizes, sparsity, accuracies) go to `models.csv` / `accuracy.csv`;
measured ones to `latency.csv`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from edgeprune.bench.cache import Cache
from edgeprune.bench.grid import Grid
from edgeprune.io import atomic_write_text, write_json
from edgeprune.results import (ConvertResult, EvaluateResult, ModelFacts, ProfileResult, PruneResult, Result,
                               RobustnessResult, TrainResult, TransferSetResult)
from edgeprune.stats import pm, separable
from edgeprune.tables import csv_table, markdown_table

R = TypeVar("R", bound=Result)

SCHEMA = "edgeprune.bench/1"
MODEL_COLUMNS = ("id", "dataset", "model", "arch", "prune", "method", "scope", "criterion", "level",
                 "runtime", "format", "precision", "file_bytes", "gzip_bytes", "params",
                 "params_nonzero", "sparsity", "macs", "clean_accuracy", "agreement")
ACCURACY_COLUMNS = ("id", "dataset", "model", "prune", "level", "runtime", "set", "attack", "surrogate",
                    "accuracy", "samples")
ROBUST_COLUMNS = ("id", "dataset", "model", "prune", "level", "runtime", "robustness", "attack", "eps",
                  "clean_accuracy", "robust_accuracy", "samples", "median_norm")
LATENCY_COLUMNS = ("id", "dataset", "model", "prune", "level", "runtime", "batch", "threads",
                   "latency_ms_mean", "latency_ms_std", "latency_ms_p50", "latency_ms_p90",
                   "throughput_ips", "runs_at")
TAXONOMY_COLUMNS = ("method", "pipeline", "iteration", "structure", "scope", "criterion", "pretraining",
                    "fine_tuning")


# --- reading cells back --------------------------------------------------------------------

def _stage_result(outcome: Any, cache: Cache, result_type: type[R]) -> R | None:
    """The stage's report (named in the manifest), read back as its declared result type."""
    if outcome is None or outcome.manifest is None:
        return None
    primary = outcome.manifest.get("primary") or ""
    name = outcome.manifest.get("report") or (primary if primary.endswith(".json") else None)
    if not name:
        return None
    path = cache.path(outcome.manifest["key"]) / name
    return result_type.load(path) if path.exists() else None


def _label_fields(labels: dict) -> dict:
    return {k: labels.get(k, "") for k in ("dataset", "model", "arch", "prune", "method", "scope",
                                           "criterion", "level", "runtime", "format", "precision")}


def evaluate_rows(result: EvaluateResult | None) -> list[dict]:
    """(set, accuracy, samples) rows of an evaluation of one model; a set is `clean` or, here,
    ATTACK@SURROGATE."""
    return [asdict(row) for row in (result.rows() if result is not None else [])]


def robustness_fields(result: RobustnessResult | TransferSetResult | None, args: dict) -> dict:
    """clean / robust accuracy, eps, images, median norm and curve of a robustness cell: AutoAttack,
    FMN curves (at the suite's `eps` when given) or an attack set crafted on the model."""
    if isinstance(result, RobustnessResult):
        summary = result.summary(args.get("eps"))
        fields = {"eps": summary.eps, "clean_accuracy": summary.clean_accuracy,
                  "robust_accuracy": summary.robust_accuracy, "samples": summary.samples}
        if result.kind == "autoattack":
            return {**fields, "stages": dict(summary.stages or {})}
        return {**fields, "median_norm": summary.median_norm,
                "curve": dict(summary.curve) if summary.curve else None}
    if result is None:
        return {"eps": None, "clean_accuracy": None, "robust_accuracy": None, "samples": None}
    return {"eps": result.eps, "clean_accuracy": result.clean_accuracy,
            "robust_accuracy": result.adversarial_accuracy, "samples": result.images}


def _robustness_result(outcome: Any, cache: Cache) -> RobustnessResult | TransferSetResult | None:
    """AutoAttack / FMN cells write robustness.json; other attacks a transfer set's record."""
    primary = (outcome.manifest or {}).get("primary") or "" if outcome is not None else ""
    if primary == "robustness.json":
        return _stage_result(outcome, cache, RobustnessResult)
    return _stage_result(outcome, cache, TransferSetResult)


def collect(grid: Grid, outcomes: dict, cache: Cache) -> dict:
    """Long-format rows for every table and plot."""
    models, accuracy, robustness, latency = [], [], [], []
    base_stats: dict[str, ModelFacts] = {}  # a prune report's "before" fills the base model's counts
    for node in grid.models.values():
        producer = outcomes.get(node.cell) if node.cell else None
        row = {"id": node.id, **_label_fields(node.labels)}
        stage = producer.cell.stage if producer else "given"
        result = (producer.manifest or {}).get("result", {}) if producer else {}
        row["file_bytes"] = result.get("file_bytes")
        row["gzip_bytes"] = result.get("gzip_bytes")
        if stage == "train":
            trained = _stage_result(producer, cache, TrainResult) or TrainResult(record={})
            row.update(params=trained.params, clean_accuracy=trained.test_accuracy, sparsity=0.0)
        elif stage == "prune":
            pruned = _stage_result(producer, cache, PruneResult) or PruneResult(record={})
            after = pruned.after
            row.update(params=after.params, params_nonzero=after.params_nonzero,
                       sparsity=after.sparsity, macs=after.macs, clean_accuracy=after.test_accuracy)
            base_stats.setdefault(node.labels["dataset"] + "/" + node.labels["model"], pruned.before)
        elif stage == "convert":
            converted = _stage_result(producer, cache, ConvertResult) or ConvertResult(record={})
            row.update(params=converted.params, sparsity=converted.weight_sparsity,
                       clean_accuracy=converted.converted_accuracy, agreement=converted.agreement)
        for key, value in (node.labels.get("taxonomy") or {}).items():
            row[f"taxonomy_{key}"] = value
        if stage == "prune":  # the prune report's record knows the base model's pretraining
            for key, value in (pruned.record.get("taxonomy") or {}).items():
                row.setdefault(f"taxonomy_{key}", value)
                if key == "pretraining":
                    row[f"taxonomy_{key}"] = value
        evaluated = outcomes.get(f"evaluate:{node.id}")
        if evaluated is not None and evaluated.manifest is not None:
            for entry in evaluate_rows(_stage_result(evaluated, cache, EvaluateResult)):
                set_name = entry["set"]
                attack, _, surrogate = set_name.partition("@")
                if set_name == "clean":
                    row["clean_accuracy"] = entry["accuracy"]
                accuracy.append({"id": node.id, **_label_fields(node.labels), "set": set_name,
                                 "attack": "" if set_name == "clean" else attack, "surrogate": surrogate,
                                 "accuracy": entry["accuracy"], "samples": entry["samples"]})
        profiled = outcomes.get(f"profile:{node.id}")
        if profiled is not None and profiled.manifest is not None:
            profile = _stage_result(profiled, cache, ProfileResult) or ProfileResult(record={})
            for cell in profile.latency():
                latency.append({"id": node.id, **_label_fields(node.labels), "batch": cell.batch,
                                "threads": cell.threads, "latency_ms_mean": cell.mean,
                                "latency_ms_std": cell.std, "latency_ms_p50": cell.p50,
                                "latency_ms_p90": cell.p90, "throughput_ips": cell.throughput_ips,
                                "runs_at": cell.runs_at})
            size = asdict(next(iter(profile.sizes()), ModelFacts()))
            for key in ("params", "params_nonzero", "macs", "gzip_bytes", "file_bytes"):
                if row.get(key) is None and size.get(key) is not None:
                    row[key] = size[key]
        models.append(row)
        for robust in grid.suite.robustness:
            outcome = outcomes.get(f"robustness:{node.id}/{robust.name}")
            if outcome is None or outcome.manifest is None:
                continue
            robustness.append({"id": node.id, **_label_fields(node.labels), "robustness": robust.name,
                               "attack": robust.attack,
                               **robustness_fields(_robustness_result(outcome, cache), robust.args)})
    for row in models:
        before = base_stats.get(row["id"]) if row["prune"] == "base" and row["format"] == "keras" else None
        for key in ("params_nonzero", "macs", "sparsity"):
            if before and row.get(key) in (None, 0.0):
                row[key] = getattr(before, key)
    failures = [{"cell": o.cell.id, "status": o.status, "error": o.error}
                for o in outcomes.values() if o.status in ("failed", "blocked")]
    return {"models": models, "accuracy": accuracy, "robustness": robustness, "latency": latency,
            "failures": failures}


# --- tables ----------------------------------------------------------------------------------

def _fmt(value: Any, kind: str = "") -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if kind == "acc":
        return f"{value:.4f}"
    if kind == "delta":
        return f"{value:+.4f}"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "bytes":
        return f"{value / 1024:,.1f} KiB" if value < 2**20 else f"{value / 2**20:,.2f} MiB"
    if kind == "ms":
        return f"{value:.2f}"
    if kind == "int":
        return f"{round(value):,}"
    if kind == "level":
        return "base" if value == 0 else f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _levels(rows: list[dict]) -> list[float]:
    return sorted({float(r["level"]) for r in rows if float(r["level"]) > 0})


def _families(rows: list[dict]) -> list[str]:
    return sorted({r["prune"] for r in rows if r["prune"] != "base"})


def clean_accuracy_tables(data: dict) -> list[str]:
    """First paper, clean accuracy: per base model, rows = pruning family, columns = levels."""
    out = []
    keras = [m for m in data["models"] if m["format"] == "keras"]
    for (dataset, model), rows in _group(keras, "dataset", "model").items():
        base = next((r for r in rows if r["prune"] == "base"), None)
        levels = _levels(rows)
        if not levels or base is None:
            continue
        header = ["pruning", "base", *[f"{lv:g}" for lv in levels], "max Δ", "min Δ"]
        body = []
        for family in _families(rows):
            by_level = {float(r["level"]): r.get("clean_accuracy") for r in rows if r["prune"] == family}
            deltas = [v - base["clean_accuracy"] for v in by_level.values()
                      if v is not None and base.get("clean_accuracy") is not None]
            body.append([family, _fmt(base.get("clean_accuracy"), "acc"),
                         *[_fmt(by_level.get(lv), "acc") for lv in levels],
                         _fmt(max(deltas), "delta") if deltas else "-", _fmt(min(deltas), "delta") if deltas else "-"])
        out.append(f"#### Clean accuracy — {model} on {dataset}\n\n" + markdown_table(header, body))
    return out


def adversarial_tables(data: dict) -> list[str]:
    """First paper, transfer attacks: sets crafted on the base model, fed to its pruned versions."""
    out = []
    rows = [r for r in data["accuracy"] if r["set"] != "clean" and r["runtime"] == "keras"
            and r["surrogate"] == r["model"]]
    for (dataset, model, family), group in _group(
            [r for r in rows if r["prune"] != "base"], "dataset", "model", "prune").items():
        base_rows = {r["attack"]: r["accuracy"] for r in rows
                     if r["dataset"] == dataset and r["model"] == model and r["prune"] == "base"}
        levels = _levels(group)
        header = ["attack", "base", *[f"{lv:g}" for lv in levels], "max \\|Δ\\|"]
        body = []
        for attack in sorted({r["attack"] for r in group}):
            by_level = {float(r["level"]): r["accuracy"] for r in group if r["attack"] == attack}
            base = base_rows.get(attack)
            deltas = [abs(v - base) for v in by_level.values() if v is not None and base is not None]
            body.append([attack, _fmt(base, "acc"), *[_fmt(by_level.get(lv), "acc") for lv in levels],
                         _fmt(max(deltas), "acc") if deltas else "-"])
        out.append(f"#### Adversarial accuracy — sets crafted on {model}, victims {model} pruned by "
                   f"{family} ({dataset})\n\n" + markdown_table(header, body))
    return out


def transfer_matrix(data: dict) -> dict[tuple, dict]:
    """{(dataset, attack, surrogate, victim model, level): mean victim accuracy} over the pruning
    families at each level (Keras victims): the first paper's surrogate × victim × sparsity."""
    sums: dict[tuple, list[float]] = defaultdict(list)
    for r in data["accuracy"]:
        if r["set"] != "clean" and r["runtime"] == "keras" and r["accuracy"] is not None:
            sums[(r["dataset"], r["attack"], r["surrogate"], r["model"], float(r["level"]))].append(r["accuracy"])
    return {k: {"accuracy": sum(v) / len(v), "models": len(v)} for k, v in sums.items()}


def transfer_tables(data: dict) -> list[str]:
    """Per attack: rows surrogate, columns victim × sparsity (mean over pruning families)."""
    matrix = transfer_matrix(data)
    out = []
    for dataset, attack in sorted({k[:2] for k in matrix}):
        keys = [k for k in matrix if k[:2] == (dataset, attack)]
        surrogates = sorted({k[2] for k in keys})
        victims = sorted({(k[3], k[4]) for k in keys})
        if len(surrogates) < 2 and len({v[0] for v in victims}) < 2:
            continue
        header = ["surrogate \\ victim", *[f"{m} {_fmt(lv, 'level')}" for m, lv in victims]]
        body = [[s, *[_fmt(matrix.get((dataset, attack, s, m, lv), {}).get("accuracy"), "acc")
                      for m, lv in victims]] for s in surrogates]
        out.append(f"#### Transfer — {attack} on {dataset} (victim accuracy; pruned columns: mean over "
                   "pruning families at that level)\n\n" + markdown_table(header, body))
    return out


def runtime_tables(data: dict) -> list[str]:
    """The same model through every runtime: clean accuracy and size."""
    rows = data["models"]
    runtimes = sorted({r["runtime"] for r in rows}, key=lambda r: (r != "keras", r))
    if len(runtimes) < 2:
        return []
    out = []
    for dataset, group in _group(rows, "dataset").items():
        keras_rows = [r for r in group if r["runtime"] == "keras"]
        header = ["model", "pruning", "level", *[f"{rt} acc" for rt in runtimes],
                  *[f"{rt} size" for rt in runtimes], *[f"{rt} gzip" for rt in runtimes]]
        body = []
        for base in sorted(keras_rows, key=lambda r: (r["model"], r["prune"] != "base", r["prune"], float(r["level"]))):
            same = {r["runtime"]: r for r in group if r["id"] == base["id"] or r["id"].startswith(base["id"] + "/")
                    and r["id"].count("/") == base["id"].count("/") + 1}
            body.append([base["model"], base["prune"], _fmt(float(base["level"]), "level"),
                         *[_fmt(same.get(rt, {}).get("clean_accuracy"), "acc") for rt in runtimes],
                         *[_fmt(same.get(rt, {}).get("file_bytes"), "bytes") for rt in runtimes],
                         *[_fmt(same.get(rt, {}).get("gzip_bytes"), "bytes") for rt in runtimes]])
        out.append(f"#### Runtimes — clean accuracy and size ({dataset})\n\n" + markdown_table(header, body))
    return out


def model_table(data: dict) -> str:
    header = ["model", "pruning", "level", "runtime", "params", "non-zero", "sparsity", "MACs",
              "file", "gzip", "clean acc"]
    body = [[r["model"], r["prune"], _fmt(float(r["level"]), "level"), r["runtime"], _fmt(r.get("params")),
             _fmt(r.get("params_nonzero")), _fmt(r.get("sparsity"), "pct"), _fmt(r.get("macs")),
             _fmt(r.get("file_bytes"), "bytes"), _fmt(r.get("gzip_bytes"), "bytes"),
             _fmt(r.get("clean_accuracy"), "acc")]
            for r in data["models"]]
    return markdown_table(header, body)


def robustness_tables(data: dict) -> list[str]:
    """Second paper: methods as taxonomy records, robust accuracy per sparsity."""
    rows = data["robustness"]
    if not rows:
        return []
    taxonomy = {}
    for m in data["models"]:
        if m["prune"] != "base" and m["runtime"] == "keras":
            taxonomy[(m["dataset"], m["model"], m["prune"])] = [m.get(f"taxonomy_{k}", "") for k in TAXONOMY_COLUMNS]
    out = []
    for (dataset, model), group in _group(rows, "dataset", "model").items():
        levels = _levels(group)
        checks = sorted({r["robustness"] for r in group})
        header = ["pruning", *TAXONOMY_COLUMNS]
        for lv in [0.0, *levels]:
            header += [f"{_fmt(lv, 'level')} clean", *[f"{_fmt(lv, 'level')} {c}" for c in checks]]
        body = []
        for family in ["base", *_families(group)]:
            line = [family, *taxonomy.get((dataset, model, family), ["-"] * len(TAXONOMY_COLUMNS))]
            for lv in [0.0, *levels]:
                fam = "base" if lv == 0 else family
                picked = {r["robustness"]: r for r in group if r["prune"] == fam and float(r["level"]) == lv}
                clean_row = next(iter(picked.values()), None)
                base_rows = {r["robustness"]: r for r in group if r["prune"] == "base" and float(r["level"]) == 0}
                clean = pm(clean_row.get("clean_accuracy"), clean_row.get("samples")) if clean_row else "-"
                if clean_row and lv and base_rows and _inseparable(clean_row, next(iter(base_rows.values())),
                                                                    "clean_accuracy"):
                    clean += " ≈"
                line += [clean, *[_robust_cell(picked.get(c), base_rows.get(c)) for c in checks]]
            body.append(line)
        out.append(f"#### Robust accuracy — {model} on {dataset}\n\n" + markdown_table(header, body))
    if out:
        out.append("± is the Wilson 95% interval's half-width on the images attacked; ≈ marks a pruned "
                   "model whose interval overlaps the base model's (these images cannot separate them).")
    return out


def _robust_cell(row: dict | None, base: dict | None = None) -> str:
    """Robust accuracy ± its Wilson 95% half-width; `≈` where the base model's interval overlaps
    (these images cannot separate the two); a minimum-norm attack adds its median norm:
    `0.4400 ± 0.0340 ≈ (‖δ‖ 0.098)`."""
    if not row:
        return "-"
    text = pm(row.get("robust_accuracy"), row.get("samples"))
    if base is not None and base is not row and _inseparable(row, base, "robust_accuracy"):
        text += " ≈"
    return f"{text} (‖δ‖ {row['median_norm']:.3g})" if row.get("median_norm") is not None else text


def _inseparable(row: dict, base: dict, key: str) -> bool:
    """Both accuracies known with their image counts, and their 95% intervals overlap."""
    a, b, n_a, n_b = row.get(key), base.get(key), row.get("samples"), base.get("samples")
    if a is None or b is None or not n_a or not n_b:
        return False
    return not separable(a, n_a, b, n_b)


def latency_tables(data: dict) -> list[str]:
    """Latency (mean ± std ms) and size per runtime and sparsity, at each batch size."""
    out = []
    for (dataset, runtime), group in _group(data["latency"], "dataset", "runtime").items():
        batches = sorted({(r["batch"], r["threads"]) for r in group})
        variants = sorted({(r["model"], r["prune"], float(r["level"]), r["id"]) for r in group},
                          key=lambda v: (v[0], v[1] != "base", v[1], v[2]))
        sizes = {m["id"]: m for m in data["models"]}
        header = ["model", "pruning", "level", "file", "gzip",
                  *[f"b{b} t{t} ms mean ± std" for b, t in batches], *[f"b{b} t{t} ms p50" for b, t in batches],
                  *[f"b{b} t{t} img/s" for b, t in batches]]
        body = []
        for model, family, level, model_id in variants:
            cells = {(r["batch"], r["threads"]): r for r in group if r["id"] == model_id}
            body.append([model, family, _fmt(level, "level"), _fmt(sizes.get(model_id, {}).get("file_bytes"), "bytes"),
                         _fmt(sizes.get(model_id, {}).get("gzip_bytes"), "bytes"),
                         *[_latency(cells.get(bt)) for bt in batches],
                         *[_fmt(cells.get(bt, {}).get("latency_ms_p50"), "ms") for bt in batches],
                         *[_fmt(cells.get(bt, {}).get("throughput_ips"), "int") for bt in batches]])
        ran = sorted({str(r["runs_at"]) for r in group if r.get("runs_at")})
        at = f", runs at {' / '.join(ran)}" if ran else ""
        out.append(f"#### Latency and size — {runtime} ({dataset}{at})\n\n" + markdown_table(header, body))
    return out


def _latency(row: dict | None) -> str:
    if not row or row.get("latency_ms_mean") is None:
        return "-"
    return f"{row['latency_ms_mean']:.2f} ± {row['latency_ms_std'] or 0:.2f}"


def _group(rows: list[dict], *keys: str) -> dict[Any, list[dict]]:
    groups: dict[Any, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k) for k in keys) if len(keys) > 1 else row.get(keys[0])].append(row)
    return dict(sorted(groups.items(), key=lambda kv: str(kv[0])))


# --- plots -----------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_clean_vs_sparsity(data: dict, path: Path) -> Path | None:
    rows = [m for m in data["models"] if m["format"] == "keras" and m.get("clean_accuracy") is not None]
    if not _levels(rows):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (dataset, model), group in _group(rows, "dataset", "model").items():
        base = next((r for r in group if r["prune"] == "base"), None)
        for family in _families(group):
            points = sorted((float(r["level"]), r["clean_accuracy"]) for r in group if r["prune"] == family)
            if base is not None:
                points = [(0.0, base["clean_accuracy"]), *points]
            ax.plot(*zip(*points, strict=True), marker="o", label=f"{model} {family} ({dataset})")
    ax.set(xlabel="sparsity / filter-pruning target", ylabel="clean accuracy",
           title="Clean accuracy vs sparsity, per criterion")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, plt, path)


def plot_adversarial_vs_sparsity(data: dict, path: Path) -> Path | None:
    rows = [r for r in data["accuracy"] if r["set"] != "clean" and r["runtime"] == "keras"
            and r["surrogate"] == r["model"]]
    attacks = sorted({r["attack"] for r in rows})
    if not attacks or not _levels(rows):
        return None
    plt = _pyplot()
    cols = min(3, len(attacks))
    nrows = math.ceil(len(attacks) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, attack in zip(axes.flat, attacks, strict=False):
        group = [r for r in rows if r["attack"] == attack]
        for (_dataset, model), sub in _group(group, "dataset", "model").items():
            base = next((r["accuracy"] for r in sub if r["prune"] == "base"), None)
            for family in _families(sub):
                points = sorted((float(r["level"]), r["accuracy"]) for r in sub if r["prune"] == family)
                if base is not None:
                    points = [(0.0, base), *points]
                ax.plot(*zip(*points, strict=True), marker="o", label=f"{model} {family}")
        ax.set(title=attack, xlabel="sparsity / target", ylabel="adversarial accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(attacks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Adversarial accuracy vs sparsity (sets crafted on the base model)")
    return _save(fig, plt, path)


def plot_transfer_heatmap(data: dict, path: Path) -> Path | None:
    matrix_rows = transfer_matrix(data)
    if not matrix_rows:
        return None
    import numpy as np

    sets = sorted({(k[0], k[1], k[2]) for k in matrix_rows})
    victims = sorted({(k[3], k[4]) for k in matrix_rows})
    matrix = np.array([[matrix_rows.get((*s, *v), {}).get("accuracy", np.nan) for v in victims] for s in sets],
                      dtype=float)
    multi = len({s[0] for s in sets}) > 1
    set_labels = [f"{a}@{sur}" + (f" ({d})" if multi else "") for d, a, sur in sets]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * len(victims) + 2.5), max(3.0, 0.4 * len(sets) + 1.8)))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(victims)), [f"{m} {_fmt(lv, 'level')}" for m, lv in victims], rotation=60,
                  ha="right", fontsize=7)
    ax.set_yticks(range(len(sets)), set_labels, fontsize=7)
    if matrix.size <= 400:
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                if not np.isnan(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if matrix[i, j] < 0.5 else "black")
    fig.colorbar(image, ax=ax, label="victim accuracy")
    ax.set(xlabel="victim and sparsity (mean over pruning families)", ylabel="attack @ surrogate",
           title="Transfer accuracy")
    return _save(fig, plt, path)


def _curve_points(row: dict) -> tuple[list, list]:
    curve = row["curve"]
    eps = curve.get("eps") if isinstance(curve, dict) else [p[0] for p in curve]
    acc = curve.get("accuracy") if isinstance(curve, dict) else [p[1] for p in curve]
    return list(eps or []), list(acc or [])


def _floor_eps(eps: list, acc: list) -> float | None:
    """The smallest eps by which a curve has made 95% of its drop (a few images with large
    minimal norms would otherwise set the x range)."""
    floor = acc[-1]
    near_floor = floor + 0.05 * (acc[0] - floor)
    return next((e for e, a in zip(eps, acc, strict=True) if a <= near_floor), None)


def plot_robustness_curves(data: dict, path: Path) -> Path | None:
    """One panel per base architecture; the x range ends where the curves have made their drop
    (a constant classifier's flat line would otherwise stretch it to eps = 1)."""
    rows = [r for r in data["robustness"] if r.get("curve") and _curve_points(r)[0]]
    if not rows:
        return None
    panels = _group(rows, "dataset", "model")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    for ax, ((dataset, model), group) in zip(axes.flat, panels.items(), strict=True):
        floors = []
        for row in group:
            eps, acc = _curve_points(row)
            label = "base" if row["prune"] == "base" else f"{row['prune']} {float(row['level']):g}"
            if row["runtime"] != "keras":
                label += f" ({row['runtime']})"
            ax.step(eps, acc, where="post", label=label)
            floor = _floor_eps(eps, acc)
            if floor is not None and floor < eps[-1]:
                floors.append(floor)
        if floors:
            floors.sort()  # the 80th percentile: one or two stragglers do not set the range
            ax.set_xlim(0, 1.3 * floors[min(len(floors) - 1, int(0.8 * len(floors)))])
        ax.set(xlabel="eps", ylabel="robust accuracy", title=f"{model} ({dataset})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Robustness curves (minimum-norm attack)")
    return _save(fig, plt, path)


def plot_latency_size(data: dict, path: Path) -> Path | None:
    rows = data["latency"]
    if not rows:
        return None
    plt = _pyplot()
    fig, (ax_lat, ax_size) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (dataset, model, runtime, family, batch), group in _group(
            rows, "dataset", "model", "runtime", "prune", "batch").items():
        if family == "base":
            continue
        base = [r for r in rows if (r["dataset"], r["model"], r["runtime"], r["batch"], r["prune"]) ==
                (dataset, model, runtime, batch, "base")]
        points = sorted((float(r["level"]), r["latency_ms_p50"]) for r in base + group
                        if r["latency_ms_p50"] is not None)
        if points:
            ax_lat.plot(*zip(*points, strict=True), marker="o", label=f"{model} {family} {runtime} b{batch}")
    sizes = [m for m in data["models"] if m.get("file_bytes")]
    for (dataset, model, runtime, family), group in _group(sizes, "dataset", "model", "runtime", "prune").items():
        if family == "base":
            continue
        base = [m for m in sizes if (m["dataset"], m["model"], m["runtime"], m["prune"]) ==
                (dataset, model, runtime, "base")]
        points = sorted((float(m["level"]), (m.get("gzip_bytes") or m["file_bytes"]) / 1024) for m in base + group)
        ax_size.plot(*zip(*points, strict=True), marker="o", label=f"{model} {family} {runtime}")
    ax_lat.set(xlabel="sparsity / target", ylabel="latency (ms, median)", title="Latency vs sparsity per runtime")
    ax_size.set(xlabel="sparsity / target", ylabel="gzip size (KiB)", title="Size vs sparsity per runtime")
    for ax in (ax_lat, ax_size):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    from edgeprune.io import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


# --- writing ---------------------------------------------------------------------------------

def _csv(rows: list[dict], columns: tuple[str, ...], extra_prefix: str | None = None) -> str:
    extra = sorted({k for r in rows for k in r if extra_prefix and k.startswith(extra_prefix)})
    header = [*columns, *extra]
    return csv_table(header, (["" if row.get(k) is None else _csv_value(row.get(k)) for k in header]
                              for row in rows))


def _csv_value(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def write_report(grid: Grid, outcomes: dict, cache: Cache, folder: Path, *, run: dict) -> Path:
    """Write report.md, report.json, the CSVs and the PNG plots into `folder`."""
    from edgeprune.host import host_fingerprint

    folder.mkdir(parents=True, exist_ok=True)
    data = collect(grid, outcomes, cache)
    suite = grid.suite
    plots = {
        "clean_accuracy_vs_sparsity.png": plot_clean_vs_sparsity,
        "adversarial_accuracy_vs_sparsity.png": plot_adversarial_vs_sparsity,
        "transfer_heatmap.png": plot_transfer_heatmap,
        "robustness_curves.png": plot_robustness_curves,
        "latency_size_vs_sparsity.png": plot_latency_size,
    }
    made = []
    for name, plot in plots.items():
        if plot(data, folder / name) is not None:
            made.append(name)
    atomic_write_text(folder / "models.csv", _csv(data["models"], MODEL_COLUMNS, "taxonomy_"))
    atomic_write_text(folder / "accuracy.csv", _csv(data["accuracy"], ACCURACY_COLUMNS))
    if data["robustness"]:
        atomic_write_text(folder / "robustness.csv", _csv(data["robustness"], ROBUST_COLUMNS))
    if data["latency"]:
        atomic_write_text(folder / "latency.csv", _csv(data["latency"], LATENCY_COLUMNS))
    host = host_fingerprint()
    write_json(folder / "report.json", {
        "schema": SCHEMA, "suite": suite.name, "suite_digest": suite.digest, "run": run, "host": host,
        "cells": {cid: {"stage": o.cell.stage, "status": o.status, "key": o.key, "error": o.error}
                  for cid, o in outcomes.items()},
        **data, "plots": made})
    atomic_write_text(folder / "report.md", render_markdown(suite, data, run, host, made))
    return folder


def render_markdown(suite, data: dict, run: dict, host: dict, plots: list[str]) -> str:
    parts = [f"# Benchmark report — {suite.name}", ""]
    if suite.description:
        parts += [suite.description.strip(), ""]
    parts += [f"- suite: `{suite.path.name}` (digest {suite.digest[:12]})",
              f"- run: executor {run.get('executor')}, {run.get('workers')} worker(s), wall "
              f"{run.get('wall_seconds')} s; cells " + ", ".join(
                  f"{run[k]} {k}" for k in ("ran", "reused", "failed", "blocked") if run.get(k)),
              f"- host: {host.get('cpu_model')} ({host.get('architecture')}, {host.get('logical_cores')} cores, "
              f"{(host.get('memory_bytes') or 0) / 2**30:.0f} GiB), {host.get('os')}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in (host.get("versions") or {}).items()), ""]
    if data["failures"]:
        parts += ["## Cells that did not finish", "",
                  markdown_table(["cell", "status", "reason"],
                                 [[f["cell"], f["status"], (f["error"] or "")[:160]] for f in data["failures"]]), ""]
    sections = [
        ("Models", [model_table(data)]),
        ("Clean accuracy vs pruning (first paper, table layout: criterion × level)", clean_accuracy_tables(data)),
        ("Adversarial accuracy of pruned models (first paper: attack × level, max |Δ| vs base)",
         adversarial_tables(data)),
        ("Transferability (surrogate × victim)", transfer_tables(data)),
        ("Robust accuracy (second paper: methods as taxonomy records × sparsity)", robustness_tables(data)),
        ("Runtimes", runtime_tables(data)),
        ("Latency and size (measured alone, no other cell running)", latency_tables(data)),
    ]
    for title, tables in sections:
        tables = [t for t in tables if t]
        if tables:
            parts += [f"## {title}", "", *[t + "\n" for t in tables]]
    if plots:
        parts += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    parts += ["Data: `models.csv`, `accuracy.csv`" + (", `robustness.csv`" if data["robustness"] else "")
              + (", `latency.csv`" if data["latency"] else "") + ", `report.json`.", ""]
    return "\n".join(parts)
