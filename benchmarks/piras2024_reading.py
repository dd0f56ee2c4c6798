"""The second paper (Piras et al. 2024) and its anchors beside a piras2024 bench run.

Reads the `robustness.csv` that `edgeprune bench` wrote for benchmarks/piras2024*-cpu.yaml and
writes, with the images behind every accuracy and a 95% Wilson interval:

- AutoAttack robust accuracy at L-inf 8/255 per method and sparsity, ours beside the published
  figures that DESIGN.md quotes (the paper's LAMP vs magnitude at 90%, HYDRA's table, the
  adversarial-pruning leaderboard), marked where ours cannot separate two methods;
- the paper's findings as checks: LAMP vs plain magnitude (local, global), HYDRA vs magnitude at
  high sparsity, and how much PGD-10 overestimates AutoAttack (the paper: 2-6 points).

    python benchmarks/piras2024_reading.py --report benchmarks/results/piras2024-robust-cpu \\
        --out benchmarks/results/piras2024-robust-cpu/reading

Published figures are CIFAR-10, full width, whole test set, adversarially trained for 100+
epochs; ours are what the suite says (its YAML header lists what was scaled down).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeprune.stats import pct_pm, separable  # noqa: E402
from edgeprune.tables import markdown_table  # noqa: E402

# AutoAttack robust accuracy (%) at L-inf 8/255 on CIFAR-10, as DESIGN.md quotes them.
PUBLISHED = {
    ("resnet18", "magnitude", 0.9): (39.7, "Piras et al. 2024: plain magnitude"),
    ("resnet18", "lamp", 0.9): (42.2, "Piras et al. 2024: LAMP"),
    ("vgg16", "magnitude", 0.9): (35.5, "Piras et al. 2024: plain magnitude"),
    ("vgg16", "lamp", 0.9): (40.1, "Piras et al. 2024: LAMP"),
    ("vgg16", "base", 0.0): (51.9, "Sehwag et al. 2020 (HYDRA): dense"),
    ("vgg16", "hydra", 0.9): (49.5, "HYDRA"), ("vgg16", "hydra", 0.95): (48.7, "HYDRA"),
    ("vgg16", "hydra", 0.99): (41.7, "HYDRA"),
    ("vgg16", "magnitude-hydra", 0.9): (48.8, "HYDRA paper: magnitude"),
    ("vgg16", "magnitude-hydra", 0.95): (45.2, "HYDRA paper: magnitude"),
    ("vgg16", "magnitude-hydra", 0.99): (34.3, "HYDRA paper: magnitude"),
    ("resnet18", "leaderboard-unstructured", 0.9): (46.5, "leaderboard: best unstructured"),
    ("resnet18", "leaderboard-unstructured", 0.95): (46.1, "leaderboard: best unstructured"),
    ("resnet18", "leaderboard-unstructured", 0.99): (45.5, "leaderboard: best unstructured"),
    ("resnet18", "leaderboard-structured", 0.5): (45.6, "leaderboard: best structured"),
    ("resnet18", "leaderboard-structured", 0.75): (45.2, "leaderboard: best structured"),
    ("resnet18", "leaderboard-structured", 0.9): (44.3, "leaderboard: best structured"),
}
PGD_OVERESTIMATE = "2-6 points (Piras et al. 2024)"
MAGNITUDE = ("magnitude-local", "magnitude-global")


def read_rows(report: Path) -> dict:
    """{(model, prune, level, robustness): (clean, robust, n)} from robustness.csv."""
    table = {}
    with (report / "robustness.csv").open() as handle:
        for r in csv.DictReader(handle):
            if r["robust_accuracy"] in ("", None):
                continue
            table[(r["model"], r["prune"], float(r["level"]), r["robustness"])] = (
                float(r["clean_accuracy"]), float(r["robust_accuracy"]), int(r["samples"]))
    return table


def _pct(acc: float, n: int) -> str:
    return f"{pct_pm(acc, n)} (n={n})"


def robust_table(rows: dict, model: str) -> str:
    """Method x sparsity, AutoAttack robust accuracy (clean in brackets), published beside."""
    methods = sorted({k[1] for k in rows if k[0] == model and k[1] != "base"})
    body = []
    base = rows.get((model, "base", 0.0, "autoattack"))
    if base:
        published = PUBLISHED.get((model, "base", 0.0))
        body.append(["dense", "-", _pct(base[1], base[2]), f"{100 * base[0]:.1f}",
                     f"{published[0]} ({published[1]})" if published else "-", "-"])
    for method in methods:
        for level in sorted({k[2] for k in rows if k[0] == model and k[1] == method}):
            cell = rows.get((model, method, level, "autoattack"))
            if cell is None:
                continue
            key = "magnitude" if method in MAGNITUDE else method
            same = [PUBLISHED[k] for k in ((model, key, level), (model, f"{key}-hydra", level)) if k in PUBLISHED]
            board = PUBLISHED.get((model, "leaderboard-structured" if method.startswith("filter")
                                   else "leaderboard-unstructured", level))
            body.append([method, f"{level:.0%}", _pct(cell[1], cell[2]), f"{100 * cell[0]:.1f}",
                         "; ".join(f"{v} ({source})" for v, source in same) or "-",
                         f"{board[0]}" if board else "-"])
    return markdown_table(["method", "sparsity", "AutoAttack robust (ours)", "clean %", "published AA %",
                           "leaderboard best AA %"], body)


def comparisons(rows: dict, model: str) -> list[dict]:
    """The paper's findings, per sparsity: LAMP and HYDRA against plain magnitude (local, global)."""
    out = []
    levels = sorted({k[2] for k in rows if k[0] == model and k[1] in MAGNITUDE})
    for level in levels:
        for challenger in ("lamp", "hydra"):
            mine = rows.get((model, challenger, level, "autoattack"))
            if mine is None:
                continue
            for plain in MAGNITUDE:
                other = rows.get((model, plain, level, "autoattack"))
                if other is None:
                    continue
                out.append({"model": model, "level": level, "method": challenger, "against": plain,
                            "difference": mine[1] - other[1], "n": min(mine[2], other[2]),
                            "separable": separable(mine[1], mine[2], other[1], other[2])})
    return out


def pgd_gaps(rows: dict) -> list[dict]:
    """PGD-10 robust accuracy minus AutoAttack's, per model (the same images)."""
    out = []
    for (model, prune, level, name), (_clean, robust, n) in sorted(rows.items()):
        if name != "pgd10":
            continue
        aa = rows.get((model, prune, level, "autoattack"))
        if aa is not None:
            out.append({"model": model, "prune": prune, "level": level, "pgd10": robust, "autoattack": aa[1],
                        "gap": robust - aa[1], "n": min(n, aa[2])})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, required=True, help="a bench report folder with robustness.csv")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    args = parser.parse_args()
    rows = read_rows(args.report)
    models = sorted({k[0] for k in rows})
    found = [c for model in models for c in comparisons(rows, model)]
    gaps = pgd_gaps(rows)
    sections = [f"# {args.report.name} beside the second paper",
                f"Command: `python benchmarks/piras2024_reading.py --report {args.report} --out {args.out}`",
                "Robust accuracy at L-inf 8/255 (AutoAttack as the suite ran it) ± the half-width of its 95% "
                "Wilson interval, with the images behind it; published figures are CIFAR-10, full width, whole "
                "test set."]
    for model in models:
        sections.append(f"## {model}\n\n" + robust_table(rows, model))
    sections.append("## The paper's findings, checked\n\n" + markdown_table(
        ["model", "sparsity", "method", "against", "Δ robust (points)", "images", "intervals separate?"],
        [[c["model"], f"{c['level']:.0%}", c["method"], c["against"], f"{100 * c['difference']:+.1f}", str(c["n"]),
          "yes" if c["separable"] else "no (within noise)"] for c in found]))
    if gaps:
        values = sorted(100 * g["gap"] for g in gaps)
        sections.append(
            f"## PGD-10 vs AutoAttack\n\nPGD-10 minus AutoAttack robust accuracy over {len(gaps)} models: "
            f"median {values[len(values) // 2]:+.1f}, range {values[0]:+.1f} to {values[-1]:+.1f} points "
            f"(paper: PGD overestimates by {PGD_OVERESTIMATE}).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n\n".join(sections) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"published": {"/".join(map(str, k)): v for k, v in PUBLISHED.items()}, "findings": found, "pgd_gaps": gaps},
        indent=1) + "\n")
    print(args.out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
