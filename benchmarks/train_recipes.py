"""Benchmark: the `cpu` training recipe against the paper's `vora2023` step decay, per zoo
architecture of the vora2023-cpu suite, on the 5,085-image CIFAR-10 sample.

Each (architecture, recipe) cell trains one model with `edgeprune.api.train` at the same epoch
budget and width for both recipes, and records clean accuracy on all 817 test images (with a
95% Wilson interval), the training wall time and the load average around it. Cells are
resumable: a cell whose model report exists is read back, not retrained, so the grid can run
in parts (`--cells resnet50:cpu,resnet50:vora2023`). The markdown and JSON are rewritten after
every cell from all finished cells.

    nice -n 10 python benchmarks/train_recipes.py --data ../shared/data/cifar10_sample.npz

`vora2023` gets the suite's milestones scaled to the budget (x0.1 at 5/8 and 7/8 of the
epochs, as vora2023-cpu.yaml's "5,7" of 8); `cpu` ignores milestones (warm-up + cosine).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

RECIPES = ("cpu", "vora2023")
# The vora2023-cpu suite's architectures at its widths and 8-epoch budget (both recipes get the same).
ARCHS = {"mobilenet": (0.5, 8), "vgg19": (0.25, 8), "resnet50": (0.25, 8), "densenet121": (0.25, 8)}
TARGET = 0.55
READING = "## Reading"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/cifar10_sample.npz", help="CIFAR-10 sample .npz")
    parser.add_argument("--cells", default=",".join(f"{a}:{r}" for a in ARCHS for r in RECIPES),
                        help="ARCH:RECIPE cells to run (in this order), comma separated")
    parser.add_argument("--budget", default="", help="ARCH=WIDTHxEPOCHS overrides, e.g. vgg19=0.5x12")
    parser.add_argument("--runs", default="runs/train_recipes", help="where the trained models go")
    parser.add_argument("--out", default="benchmarks/results/train", help="writes OUT.md and OUT.json")
    parser.add_argument("--render", action="store_true", help="only re-render from finished cells")
    return parser.parse_args(argv)


def budgets(spec: str) -> dict[str, tuple[float, int]]:
    table = dict(ARCHS)
    for item in filter(None, (s.strip() for s in spec.split(","))):
        arch, _, value = item.partition("=")
        width, _, epochs = value.partition("x")
        table[arch] = (float(width), int(epochs))
    return table


def wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def milestones(epochs: int) -> tuple[int, ...]:
    return tuple(sorted({max(1, round(epochs * 5 / 8)), max(1, round(epochs * 7 / 8))} - {epochs}))


def model_path(runs: Path, arch: str, width: float, epochs: int, recipe: str) -> Path:
    return runs / f"{arch}-w{width:g}-e{epochs}-{recipe}.h5"


def run_cell(args, arch: str, recipe: str, width: float, epochs: int) -> dict:
    from edgeprune.api import TrainOptions, train
    from edgeprune.io import read_json, sidecar, write_json

    path = model_path(Path(args.runs), arch, width, epochs, recipe)
    cell_file = sidecar(path, ".cell.json")
    if cell_file.exists():
        return read_json(cell_file)
    options = TrainOptions(arch=arch, dataset=f"npz:{args.data}", epochs=epochs, width=width, recipe=recipe,
                           milestones=milestones(epochs))
    load_before = os.getloadavg()
    started = time.perf_counter()
    record = train(options, path, force=True, progress=False).record
    wall = time.perf_counter() - started
    cell = {"arch": arch, "recipe": recipe, "width": width, "epochs": epochs,
            "milestones": list(options.milestones) if recipe == "vora2023" else [],
            "n": record["test_samples"], "correct": round(record["test_accuracy"] * record["test_samples"]),
            "accuracy": record["test_accuracy"], "train_accuracy_last_epoch": record["train_accuracy_last_epoch"],
            "params": record["params"], "train_seconds": record["train_seconds"], "wall_seconds": round(wall, 1),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            "recipe_record": record["recipe"], "model": str(path),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    write_json(cell_file, cell)
    return cell


def finished_cells(args, table: dict[str, tuple[float, int]]) -> list[dict]:
    from edgeprune.io import read_json, sidecar

    cells = []
    for arch, (width, epochs) in table.items():
        for recipe in RECIPES:
            cell_file = sidecar(model_path(Path(args.runs), arch, width, epochs, recipe), ".cell.json")
            if cell_file.exists():
                cells.append(read_json(cell_file))
    return cells


def render(args, cells: list[dict], command: str) -> None:
    from edgeprune.host import host_fingerprint
    from edgeprune.io import atomic_write_text, versions, write_json
    from edgeprune.tables import markdown_table

    for cell in cells:
        cell["wilson95"] = [round(v, 4) for v in wilson(cell["correct"], cell["n"])]
    rows = []
    for cell in cells:
        low, high = cell["wilson95"]
        other = next((c for c in cells if c["arch"] == cell["arch"] and c["recipe"] != cell["recipe"]), None)
        ratio = f"{cell['train_seconds'] / other['train_seconds']:.2f}" if other and cell["recipe"] == "cpu" else ""
        rows.append([cell["arch"], f"{cell['width']:g}", f"{cell['params']:,}", cell["epochs"], cell["recipe"],
                     f"{cell['accuracy']:.3f}", f"{cell['correct']}/{cell['n']}", f"[{low:.3f}, {high:.3f}]",
                     "yes" if cell["accuracy"] >= TARGET else "no", f"{cell['train_accuracy_last_epoch']:.3f}",
                     f"{cell['train_seconds']:.0f}", ratio,
                     " / ".join(f"{a:.1f}" for a in (cell["loadavg_before"][0], cell["loadavg_after"][0]))])
    table = markdown_table(
        ["arch", "width", "params", "epochs", "recipe", "clean acc", "correct/n", "95% Wilson",
         f">= {TARGET}", "train acc (last epoch)", "train s", "cpu/vora s", "load 1-min before / after"],
        rows, align=["l", "r", "r", "r", "l", "r", "r", "l", "l", "r", "r", "r", "r"])
    host = host_fingerprint()
    payload = {"schema": "edgeprune.bench.train_recipes/1", "command": command, "host": host,
               "versions": versions(), "target": TARGET, "cells": cells}
    write_json(f"{args.out}.json", payload)
    header = (f"# Training recipes: cpu vs vora2023 on the CIFAR-10 sample\n\n"
              f"Command (repository root; resumable, so it may run in parts with `--cells`):\n\n"
              f"    nice -n 10 python benchmarks/train_recipes.py --data ../shared/data/cifar10_sample.npz\n\n"
              f"Last invocation: `{command}`.\n\n"
              f"Host: {host.get('cpu_model', host.get('cpu', '?'))}, {os.cpu_count()} logical cores; "
              f"shared with other jobs, 1-minute load average per cell in the table (timings are "
              f"comparable only within a row pair run back to back). Data: 5,085 train / 817 test images; "
              f"accuracy on all 817, 95% Wilson interval.\n\n")
    reading = ""  # a hand-written reading below the table survives re-rendering
    if Path(f"{args.out}.md").exists():
        text = Path(f"{args.out}.md").read_text()
        if READING in text:
            reading = "\n" + READING + text.split(READING, 1)[1].rstrip("\n") + "\n"
    atomic_write_text(f"{args.out}.md", header + table + "\n" + reading)


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    table = budgets(args.budget)
    if not args.render:
        Path(args.runs).mkdir(parents=True, exist_ok=True)
        for item in filter(None, (s.strip() for s in args.cells.split(","))):
            arch, _, recipe = item.partition(":")
            if arch not in table or recipe not in RECIPES:
                raise SystemExit(f"unknown cell {item!r}: ARCH in {', '.join(table)}, RECIPE in {', '.join(RECIPES)}")
            width, epochs = table[arch]
            cell = run_cell(args, arch, recipe, width, epochs)
            print(f"{arch} {recipe} w{width:g} e{epochs}: {cell['accuracy']:.3f} ({cell['correct']}/{cell['n']}) "
                  f"{cell['train_seconds']:.0f} s", flush=True)
            render(args, finished_cells(args, table), command)
    render(args, finished_cells(args, table), command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
