"""The first paper (Vora et al. 2023) beside vora2023-cpu, and what a weak base does to its reading.

Reads the CSVs `edgeprune bench` wrote for vora2023-cpu (models.csv, accuracy.csv, latency.csv)
and writes, in the paper's table layouts, with a 95% Wilson interval on every accuracy:

- clean accuracy of each base and its pruned versions (the paper's clean-accuracy table),
- adversarial accuracy of each base's own transfer sets on its pruned versions, per attack and
  level (its adversarial-accuracy tables), with the change against the base marked where the
  intervals cannot separate it from noise,
- size and OpenVINO latency per level (its deployment table),
- the same changes on the weak bases of an earlier run (`--weak`, e.g. the 2026-11-21 run from
  git), so that what pruning does can be told from what a base that barely learned does.

    python benchmarks/vora2023_reading.py --report benchmarks/results/vora2023-cpu \\
        --weak-ref 5198154 --out benchmarks/results/vora2023-cpu/reading

The paper's own figures are the ones the project's DESIGN.md and issue 17 quote (headline
ranges); its per-cell tables were not available here and are not invented.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeprune.stats import half_width, pct_pm, separable  # noqa: E402
from edgeprune.tables import markdown_table  # noqa: E402

# What the paper reports (CIFAR-10, full-size models trained to 78-83%), as quoted by the
# project's DESIGN.md and issue 17; ranges, not per-cell values.
PAPER = {
    "base_clean": "78-83%",
    "adversarial_change": "within about ±1-3 points of the base (every attack, 10-50%)",
    "size_50": "about 66% smaller",
    "latency_50": "8-10% lower (filters masked, not removed)",
}
ATTACK_ORDER = ("fgsm", "bim", "pgd", "apgd", "cw", "deepfool", "uap")
MINIMAL = ("cw", "deepfool")  # minimal-perturbation attacks: each image just across the base's boundary


def read_csvs(folder: Path | None, ref: str | None) -> dict[str, list[dict]]:
    """models / accuracy / latency rows of a bench report folder, or of that folder at git `ref`."""
    out = {}
    for name in ("models", "accuracy", "latency"):
        if ref:
            rel = f"benchmarks/results/vora2023-cpu/{name}.csv"
            text = subprocess.run(["git", "show", f"{ref}:{rel}"], check=True, capture_output=True, text=True).stdout
        else:
            text = (folder / f"{name}.csv").read_text()
        out[name] = list(csv.DictReader(io.StringIO(text)))
    return out


def clean_table(data: dict) -> dict:
    """{arch: {"base": (acc, n), level: [(criterion, acc, n), ...]}} of Keras models."""
    clean: dict = defaultdict(lambda: defaultdict(list))
    n_test = {r["model"]: int(r["samples"]) for r in data["accuracy"]
              if r["set"] == "clean" and r["prune"] == "base" and r["runtime"] == "keras"}
    for r in data["models"]:
        if r["runtime"] != "keras" or r["clean_accuracy"] in ("", None):
            continue
        n = n_test.get(r["model"], 0)
        if r["prune"] == "base":
            clean[r["model"]]["base"] = (float(r["clean_accuracy"]), n)
        else:
            clean[r["model"]][float(r["level"])].append((r["criterion"], float(r["clean_accuracy"]), n))
    return clean


def self_transfer(data: dict) -> dict:
    """{(arch, attack): {"base": (acc, n), level: [(criterion, acc, n)]}}: sets crafted on the
    base, fed to that base's pruned versions (Keras)."""
    table: dict = defaultdict(lambda: defaultdict(list))
    for r in data["accuracy"]:
        if r["runtime"] != "keras" or r["set"] == "clean" or r["surrogate"] != r["model"]:
            continue
        key = (r["model"], r["attack"])
        acc, n = float(r["accuracy"]), int(r["samples"])
        if r["prune"] == "base":
            table[key]["base"] = (acc, n)
        else:
            table[key][float(r["level"])].append((r["prune"].replace("nncf-", ""), acc, n))
    return table


def _delta(acc: float, n: int, base: tuple[float, int]) -> str:
    """Change in points; `~` marks one the two 95% intervals cannot separate."""
    d = 100 * (acc - base[0])
    return f"{d:+.1f}" + ("" if separable(acc, n, base[0], base[1]) else "~")


def levels_of(table: dict) -> list[float]:
    return sorted({lv for rows in table.values() for lv in rows if lv != "base"})


def render_clean(clean: dict) -> str:
    levels = levels_of(clean)
    body = []
    for arch in sorted(clean):
        base = clean[arch].get("base")
        if base is None:
            continue
        cells, deltas = [], []
        for lv in levels:
            rows = clean[arch].get(lv, [])
            if not rows:
                cells.append("-")
                continue
            mean = statistics.fmean(acc for _, acc, _ in rows)
            cells.append(f"{100 * mean:.1f}")
            deltas += [100 * (acc - base[0]) for _, acc, _ in rows]
        body.append([arch, f"{pct_pm(*base)} (n={base[1]})", *cells,
                     f"{max(deltas):+.1f}" if deltas else "-", f"{min(deltas):+.1f}" if deltas else "-"])
    return markdown_table(["model", "base", *[f"{lv:.0%}" for lv in levels], "max Δ", "min Δ"], body)


def render_adversarial(table: dict, arch: str) -> str:
    """One base: attack × level, mean over the criteria at each level, Δ against the base."""
    levels = levels_of({k: v for k, v in table.items() if k[0] == arch})
    body = []
    for attack in ATTACK_ORDER:
        rows = table.get((arch, attack))
        if not rows or "base" not in rows:
            continue
        base = rows["base"]
        cells, worst = [], 0.0
        for lv in levels:
            group = rows.get(lv, [])
            if not group:
                cells.append("-")
                continue
            n = min(n for _, _, n in group)
            mean = statistics.fmean(acc for _, acc, _ in group)
            cells.append(f"{100 * mean:.1f} ({_delta(mean, n, base)})")
            worst = max(worst, max(abs(acc - base[0]) for _, acc, _ in group))
        body.append([attack, pct_pm(*base), *cells, f"{100 * worst:.1f}"])
    return markdown_table(["attack", "base", *[f"{lv:.0%} (Δ)" for lv in levels], "max \\|Δ\\| (any criterion)"], body)


def effect_rows(strong: dict, weak: dict | None, clean_strong: dict, clean_weak: dict | None) -> list[dict]:
    """Per base and attack: base clean accuracy, base adversarial accuracy, and the mean change
    at the lowest and highest level, for the strong and (if given) the weak run."""
    out = []
    for label, table, clean in (("strong", strong, clean_strong), ("weak", weak, clean_weak)):
        if table is None or clean is None:
            continue
        for (arch, attack), rows in sorted(table.items()):
            levels = sorted(lv for lv in rows if lv != "base")
            if "base" not in rows or not levels or "base" not in clean.get(arch, {}):
                continue
            low, high = levels[0], levels[-1]
            base = rows["base"]
            clean_base = clean[arch]["base"]
            clean_high = statistics.fmean(acc for _, acc, _ in clean[arch].get(high, [])) if clean[arch].get(high) else None
            out.append({
                "run": label, "arch": arch, "attack": attack,
                "base_clean": clean_base[0], "base_clean_n": clean_base[1],
                "base_adversarial": base[0], "n": base[1],
                "low_level": low, "change_low": statistics.fmean(a for _, a, _ in rows[low]) - base[0],
                "high_level": high, "change_high": statistics.fmean(a for _, a, _ in rows[high]) - base[0],
                "clean_change_high": None if clean_high is None else clean_high - clean_base[0],
                "noise_half_width": half_width(base[0], base[1]),
            })
    return out


def render_effects(rows: list[dict]) -> str:
    body = []
    for r in sorted(rows, key=lambda r: (r["attack"] not in MINIMAL, r["attack"], r["run"], r["base_clean"])):
        body.append([r["attack"], r["run"], r["arch"], f"{100 * r['base_clean']:.1f}", str(r["n"]),
                     f"{100 * r['base_adversarial']:.1f}",
                     f"{100 * r['change_low']:+.1f} @ {r['low_level']:.0%}",
                     f"{100 * r['change_high']:+.1f} @ {r['high_level']:.0%}",
                     "-" if r["clean_change_high"] is None else f"{100 * r['clean_change_high']:+.1f}",
                     f"±{100 * r['noise_half_width']:.1f}"])
    return markdown_table(["attack", "bases", "model", "base clean %", "images", "base adv %",
                           "Δ adv, lowest level", "Δ adv, highest level", "Δ clean, highest level",
                           "noise (95%, one accuracy)"], body)


def deployment(data: dict) -> str:
    """Size and OpenVINO latency (batch 64 p50) of each level against its base, mean over criteria."""
    size: dict = defaultdict(lambda: defaultdict(list))
    for r in data["models"]:
        if r["runtime"] == "keras":
            size[r["model"]][float(r["level"]) if r["prune"] != "base" else 0.0].append(float(r["file_bytes"]))
    lat: dict = defaultdict(lambda: defaultdict(list))
    for r in data["latency"]:
        if int(r["batch"]) == 64:
            lat[r["model"]][float(r["level"]) if r["prune"] != "base" else 0.0].append(float(r["latency_ms_p50"]))
    levels = sorted({lv for rows in size.values() for lv in rows if lv > 0})
    body = []
    for arch in sorted(size):
        base_size = statistics.fmean(size[arch][0.0])
        base_lat = statistics.fmean(lat[arch][0.0]) if lat[arch].get(0.0) else None
        cells = []
        for lv in levels:
            s = statistics.fmean(size[arch][lv]) / base_size if size[arch].get(lv) else None
            t = statistics.fmean(lat[arch][lv]) / base_lat if lat[arch].get(lv) and base_lat else None
            cells.append(("-" if s is None else f"{s:.2f}") + " / " + ("-" if t is None else f"{t:.2f}"))
        body.append([arch, f"{base_size / 2**20:.2f} MiB / " + ("-" if base_lat is None else f"{base_lat:.1f} ms"), *cells])
    return markdown_table(["model", "base size / p50 (batch 64)", *[f"{lv:.0%}: size / latency ×" for lv in levels]], body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, default=Path("benchmarks/results/vora2023-cpu"))
    parser.add_argument("--weak", type=Path, default=None, help="report folder of a run on weak bases")
    parser.add_argument("--weak-ref", default=None, help="... or the git commit that holds it")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vora2023-cpu/reading"))
    args = parser.parse_args()

    strong = read_csvs(args.report, None)
    weak = read_csvs(args.weak, args.weak_ref) if (args.weak or args.weak_ref) else None
    clean_s = clean_table(strong)
    adv_s = self_transfer(strong)
    clean_w = clean_table(weak) if weak else None
    adv_w = self_transfer(weak) if weak else None
    effects = effect_rows(adv_s, adv_w, clean_s, clean_w)

    sections = [
        "# vora2023-cpu beside the first paper",
        f"Command: `python benchmarks/vora2023_reading.py --report {args.report}"
        + (f" --weak-ref {args.weak_ref}" if args.weak_ref else f" --weak {args.weak}" if args.weak else "")
        + f" --out {args.out}`",
        "Every accuracy is a percentage of the images given (`n`) ± the half-width of its 95% Wilson "
        "interval; a change marked `~` is one the two intervals cannot separate (a conservative test).",
        "## The paper's headline figures (CIFAR-10, full-size models) beside ours\n\n"
        + markdown_table(["quantity", "paper", "ours"], [
            ["base clean accuracy", PAPER["base_clean"],
             ", ".join(f"{a} {100 * v['base'][0]:.1f}" for a, v in sorted(clean_s.items()) if "base" in v)],
            ["adversarial accuracy after pruning, own sets", PAPER["adversarial_change"], "tables below"],
            ["size at 50% filters", PAPER["size_50"], "deployment table below"],
            ["OpenVINO latency at 50%", PAPER["latency_50"], "deployment table below"],
        ]),
        "## Clean accuracy, base vs pruned (mean over L1 / L2 / GM at each level; Δ over all)\n\n" + render_clean(clean_s),
    ]
    for arch in sorted(clean_s):
        sections.append(f"## Adversarial accuracy of {arch}'s own sets on its pruned versions\n\n"
                        + render_adversarial(adv_s, arch))
    sections.append("## Size and latency against the base (Keras file size; OpenVINO fp32 p50 at batch 64)\n\n"
                    + deployment(strong))
    if weak:
        sections.append("## Pruning's effect on strong vs weak bases\n\n"
                        "`strong`: this run; `weak`: the earlier run on bases trained 8 epochs "
                        "(levels 10/30/50%, one fine-tuning epoch, 100 attacked images).\n\n" + render_effects(effects))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n\n".join(sections) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"paper": PAPER, "effects": effects}, indent=1) + "\n")
    print(args.out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
