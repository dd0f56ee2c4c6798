"""The prune report (`edgeprune.prune/1`): what was asked, what was measured, how long it took.

Every figure is measured on the saved models (weights read back, zeros counted), never copied
from the pruner's own bookkeeping; the pruner's record goes under `method_info` beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeprune.prune.taxonomy import markdown_line
from edgeprune.stats import annotate, n_of, pm
from edgeprune.tables import csv_records, markdown_table

SCHEMA = "edgeprune.prune/1"
LAYER_COLUMNS = ("layer", "kind", "weights_before", "weights", "zeros", "sparsity", "target_sparsity",
                 "filters", "filters_kept", "macs_before", "macs_after")


def layer_rows(base_stats: Mapping[str, Any], pruned_stats: Mapping[str, Any],
               targets: Mapping[str, float] | None = None) -> list[dict]:
    """One row per prunable layer of the base model, joined by name with the pruned model.

    `filters_kept` counts the pruned layer's output filters that are not all zero, so it is
    right for masked and physically shrunk models alike; a layer missing from the pruned
    model (removed by surgery) shows None.
    """
    pruned_by_name = {row["name"]: row for row in pruned_stats["layers"]}
    rows = []
    for base in base_stats["layers"]:
        after = pruned_by_name.get(base["name"])
        rows.append({
            "layer": base["name"],
            "kind": base["kind"],
            "weights_before": base["weights"],
            "weights": after["weights"] if after else None,
            "zeros": after["zeros"] if after else None,
            "sparsity": round(after["sparsity"], 6) if after else None,
            "target_sparsity": round(float(targets[base["name"]]), 6) if targets and base["name"] in targets else None,
            "filters": base["filters"],
            "filters_kept": after["filters"] - after["filters_zero"] if after else None,
            "macs_before": base["macs"],
            "macs_after": after["macs"] if after else None,
        })
    return rows


def model_summary(stats: Mapping[str, Any], *, accuracy: float | None, file_bytes: int | None = None,
                  gzip_bytes: int | None = None) -> dict:
    """Whole-model figures of one model (without the per-layer list)."""
    summary = {key: stats[key] for key in ("params", "params_nonzero", "prunable_weights",
                                           "prunable_zeros", "sparsity", "macs")}
    summary["sparsity"] = round(summary["sparsity"], 6)
    # Output filters (channels) that still carry a weight: falls with filter pruning, masked or shrunk.
    summary["filters_alive"] = int(sum(row["filters"] - row["filters_zero"] for row in stats["layers"]))
    summary["test_accuracy"] = accuracy
    if file_bytes is not None:
        summary["file_bytes"] = file_bytes
    if gzip_bytes is not None:
        summary["gzip_bytes"] = gzip_bytes
    return summary


def pruned_layer_sparsity(rows: list[dict], targets: Mapping[str, float] | None) -> float | None:
    """Zeros over weights of the layers the method pruned (those with a target)."""
    chosen = [row for row in rows if targets and row["layer"] in targets and row["weights"]]
    total = sum(row["weights"] for row in chosen)
    return round(sum(row["zeros"] for row in chosen) / total, 6) if total else None


def filters_removed_fraction(rows: list[dict]) -> float | None:
    """Output filters zeroed or removed, over the base model's filters (layers still present)."""
    present = [row for row in rows if row["filters_kept"] is not None]
    total = sum(row["filters"] for row in present)
    return round(1.0 - sum(row["filters_kept"] for row in present) / total, 6) if total else None


def build_report(*, method: str, source: Mapping[str, Any], output: Mapping[str, Any],
                 dataset: Mapping[str, Any], base_stats: Mapping[str, Any],
                 pruned_stats: Mapping[str, Any], accuracy_before: float, accuracy_after: float,
                 target: Mapping[str, Any], method_info: Mapping[str, Any], seed: int,
                 seconds: float, versions: Mapping[str, str], targets: Mapping[str, float] | None = None,
                 extra_models: Mapping[str, Any] | None = None, files: Mapping[str, int] | None = None) -> dict:
    """Assemble the JSON record; `schema` comes first."""
    rows = layer_rows(base_stats, pruned_stats, targets)
    before = model_summary(base_stats, accuracy=accuracy_before,
                           file_bytes=(files or {}).get("base_bytes"), gzip_bytes=(files or {}).get("base_gzip_bytes"))
    after = model_summary(pruned_stats, accuracy=accuracy_after,
                          file_bytes=(files or {}).get("pruned_bytes"), gzip_bytes=(files or {}).get("pruned_gzip_bytes"))
    for part in (before, after, *(extra_models or {}).values()):  # Wilson 95% on the test images
        annotate(part, dataset.get("test_samples"))
    reached = {
        "prunable_sparsity": after["sparsity"],
        "pruned_layers_sparsity": pruned_layer_sparsity(rows, targets),
        "params_ratio": round(after["params"] / before["params"], 6) if before["params"] else None,
        "nonzero_params_ratio": round(after["params_nonzero"] / before["params_nonzero"], 6)
        if before["params_nonzero"] else None,
        "macs_ratio": round(after["macs"] / before["macs"], 6) if before["macs"] else None,
        "filters_removed_fraction": filters_removed_fraction(rows),
        "accuracy_delta": round(accuracy_after - accuracy_before, 6),
    }
    return {
        "schema": SCHEMA,
        "method": method,
        "source": dict(source),
        "output": dict(output),
        "dataset": dict(dataset),
        "target": dict(target),
        "reached": reached,
        "before": before,
        "after": after,
        **({"models": dict(extra_models)} if extra_models else {}),
        "layers": rows,
        "method_info": dict(method_info),
        "seed": seed,
        "seconds": round(seconds, 2),
        "versions": dict(versions),
    }


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "acc":
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def summary_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(quantity, before, after) for the whole model."""
    before, after = report["before"], report["after"]
    rows = [
        ("test accuracy (95% CI)", pm(before["test_accuracy"], n_of(before, "test_accuracy")),
         pm(after["test_accuracy"], n_of(after, "test_accuracy"))),
        ("params", _fmt(before["params"]), _fmt(after["params"])),
        ("non-zero params", _fmt(before["params_nonzero"]), _fmt(after["params_nonzero"])),
        ("filters alive", _fmt(before["filters_alive"]), _fmt(after["filters_alive"])),
        ("prunable sparsity", _fmt(before["sparsity"], "pct"), _fmt(after["sparsity"], "pct")),
        ("MACs / image", _fmt(before["macs"]), _fmt(after["macs"])),
    ]
    if "file_bytes" in before and "file_bytes" in after:
        rows.append(("file bytes (gzip)", f"{before['file_bytes']:,} ({before.get('gzip_bytes', 0):,})",
                     f"{after['file_bytes']:,} ({after.get('gzip_bytes', 0):,})"))
    return rows


def markdown(report: Mapping[str, Any]) -> str:
    """Human tables: the whole model before/after, then every prunable layer."""
    target = ", ".join(f"{key} {value}" for key, value in report["target"].items() if value is not None)
    lines = [f"# Prune report: {report['method']}", "",
             f"- source: `{report['source'].get('path')}`",
             f"- output: `{report['output'].get('path')}`",
             f"- dataset: {report['dataset'].get('name')} ({report['dataset'].get('test_samples')} test images)",
             f"- target: {target}",
             f"- reached: prunable sparsity {report['reached']['prunable_sparsity']:.2%}, "
             f"MACs x{report['reached']['macs_ratio']}",
             *([markdown_line(report["taxonomy"])] if report.get("taxonomy") else []),
             f"- seed {report['seed']}, {report['seconds']} s", "",
             markdown_table(["", "before", "after"], summary_rows(report), align=["l", "r", "r"]), "",
             markdown_table(LAYER_COLUMNS,
                            ([_fmt(row[c], "pct" if c in ("sparsity", "target_sparsity") else "") for c in LAYER_COLUMNS]
                             for row in report["layers"]),
                            align=["l" if c in ("layer", "kind") else "r" for c in LAYER_COLUMNS])]
    return "\n".join(lines) + "\n"


def layers_csv(report: Mapping[str, Any]) -> str:
    """Per-layer rows as CSV (one header line, then one line per prunable layer)."""
    return csv_records(report["layers"], LAYER_COLUMNS)
