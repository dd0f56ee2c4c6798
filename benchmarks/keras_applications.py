"""keras.applications matrix: real architectures no one here wrote, through every edgeprune command.

For each architecture (fresh weights, trained one short epoch on a few hundred CIFAR-10 sample
images at 32x32) and one Keras 3 fixture, each cell runs one `edgeprune` command in its own
process: info; prune tfmot local and lamp (50%); prune nncf-filter 50% with shrinking; convert
TFLite fp32 / int8 and OpenVINO fp32 (verified); attack pgd; profile base vs shrunk. A cell is
`ok`, `refused` (exit 2 with a one-line message) or `FAILED` (anything else: a traceback, a
crash, a timeout) — the matrix passes when no cell FAILED.

Re-runnable and resumable: each cell writes WORK/ARCH/cells/CELL.json and is skipped when that
file exists (delete it, or pass --fresh, to run it again). The table goes to
benchmarks/results/keras_applications.md and .json.

    python benchmarks/keras_applications.py --work /tmp/kapps            # every architecture
    python benchmarks/keras_applications.py --work /tmp/kapps --arch MobileNetV2 --arch keras3
    python benchmarks/keras_applications.py --work /tmp/kapps --report-only   # table of what ran
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's edgeprune, not another installed one
SAMPLE = Path(os.environ.get("EDGEPRUNE_CIFAR_SAMPLE", REPO.parent / "shared" / "data" / "cifar10_sample.npz"))
RESULTS = REPO / "benchmarks" / "results"
KERAS3_FIXTURE = REPO / "tests" / "fixtures" / "keras3" / "mobilenetv3small.keras"
SIZE = 32
# name -> constructor keyword arguments (tf.keras.applications, TF 2.15); small where a width exists.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "MobileNetV2": {"alpha": 0.35},
    "MobileNetV3Small": {"alpha": 0.75},
    "MobileNetV3Large": {"alpha": 0.75},
    "EfficientNetB0": {},
    "ResNet50V2": {},
    "DenseNet121": {},
    "NASNetMobile": {},
}
# Cheapest first, so a run cut short still covers the most architectures.
ORDER = ("MobileNetV2", "keras3", "MobileNetV3Small", "EfficientNetB0", "MobileNetV3Large", "ResNet50V2",
         "DenseNet121", "NASNetMobile")
KERAS3 = "keras3-MobileNetV3Small"
CELLS = ("info", "prune-tfmot-local", "prune-tfmot-lamp", "prune-nncf-filter", "convert-tflite-fp32",
         "convert-tflite-int8", "convert-openvino-fp32", "attack-pgd", "profile")
TIMEOUT_S = 1800


def dataset_spec() -> str:
    return f"npz:{SAMPLE}"


def build_model(name: str, folder: Path, *, train_images: int, epochs: int) -> Path:
    """base.h5: keras.applications `name` at 32x32, 10 classes, trained briefly (in this process)."""
    import numpy as np
    import tensorflow as tf

    from edgeprune.data import load_dataset
    from edgeprune.inputrange import dataset_for_model, resolve_input_range
    from edgeprune.modelio import save_keras_model

    tf.keras.utils.set_random_seed(0)
    constructor = getattr(tf.keras.applications, name)
    model = constructor(input_shape=(SIZE, SIZE, 3), weights=None, classes=10,
                        classifier_activation=None, **ARCHITECTURES[name])
    resolved = resolve_input_range(None, metadata={}, model=model)
    data = dataset_for_model(load_dataset(dataset_spec(), limit_train=train_images, seed=0), resolved.input_range)
    x, y = data.split("train")
    model.compile(tf.keras.optimizers.Adam(1e-3),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    started = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    meta = {"arch": f"keras.applications.{name}", "input_shape": [SIZE, SIZE, 3], "num_classes": 10,
            "input_range": resolved.input_range.as_dict(),
            "training": {"images": int(len(y)), "epochs": epochs, "seconds": round(time.perf_counter() - started, 1),
                         "train_accuracy": float(np.round(history.history["accuracy"][-1], 4)),
                         "input_range_source": resolved.source, "input_range_reason": resolved.reason}}
    path = folder / "base.h5"
    save_keras_model(model, path, metadata=meta)
    return path


def cell_commands(base: Path, folder: Path, *, limit_train: int, limit_test: int) -> dict[str, list[str]]:
    """The edgeprune command line of every cell (base: the model every cell starts from)."""
    data = ["-d", dataset_spec()]
    prune = [*data, "--limit-train", str(limit_train), "--limit", str(limit_test), "--epochs", "1",
             "--batch-size", "32", "-q", "--force"]
    shrunk = folder / "nncf50.h5"
    profiled = [str(base)] + ([str(shrunk)] if shrunk.exists() else [])
    return {
        "info": ["info", str(base), "--json"],
        "prune-tfmot-local": ["prune", str(base), "-m", "tfmot", "--sparsity", "0.5", "--scope", "local", *prune,
                              "-o", str(folder / "tfmot_local50.h5")],
        "prune-tfmot-lamp": ["prune", str(base), "-m", "tfmot", "--sparsity", "0.5", "--scope", "lamp", *prune,
                             "-o", str(folder / "tfmot_lamp50.h5")],
        "prune-nncf-filter": ["prune", str(base), "-m", "nncf-filter", "--target", "0.5", "--shrink", *prune,
                              "-o", str(shrunk)],
        "convert-tflite-fp32": ["convert", str(base), "--to", "tflite", "-p", "fp32", *data, "--verify", "100",
                                "-o", str(folder / "base_fp32.tflite"), "-q", "--force"],
        "convert-tflite-int8": ["convert", str(base), "--to", "tflite", "-p", "int8", *data, "--verify", "100",
                                "--calibration", "100", "-o", str(folder / "base_int8.tflite"), "-q", "--force"],
        "convert-openvino-fp32": ["convert", str(base), "--to", "openvino", "-p", "fp32", *data, "--verify", "100",
                                  "-o", str(folder / "base_fp32.xml"), "-q", "--force"],
        "attack-pgd": ["attack", str(base), "-a", "pgd", "--eps", str(8 / 255), "--steps", "5", *data,
                       "--limit", "64", "--batch-size", "64", "-o", str(folder / "sets" / "pgd"), "-q", "--force"],
        "profile": ["profile", *profiled, "--batch", "32", "--threads", "2", "--runs", "5", "--min-time", "1",
                    "--isolation", "none", "-o", str(folder / "profile.json"), "-q", "--force"],
    }


def run_cell(name: str, argv: list[str], record_path: Path) -> dict:
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run([sys.executable, "-m", "edgeprune", *argv], capture_output=True, text=True,
                              timeout=TIMEOUT_S, env=env, cwd=REPO)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired:
        code, out, err = None, "", f"timed out after {TIMEOUT_S} s"
    lines = err.splitlines()
    error_lines = [line for line in lines if line.startswith("error: ")]
    # A refusal must be one line; keep what followed it, so a multi-line one shows up as such.
    after_error = lines[lines.index(error_lines[-1]) + 1:][:6] if error_lines else []
    if code == 0:
        status = "ok"
    elif code == 2 and error_lines and "Traceback" not in err:
        status = "refused"
    else:
        status = "FAILED"
    message = error_lines[-1][len("error: "):] if error_lines else (err.strip().splitlines() or [""])[-1]
    record = {"cell": name, "status": status, "exit_code": code, "seconds": round(time.perf_counter() - started, 1),
              "command": "edgeprune " + " ".join(argv), "message": message[:300] if status != "ok" else None,
              "stdout_tail": out.strip().splitlines()[-1][:300] if out.strip() else None,
              "traceback": "Traceback" in err, "lines_after_error": after_error or None,
              "load_average_1m_at_end": round(os.getloadavg()[0], 2)}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def figures(folder: Path) -> dict:
    """params / MACs / latency of base and shrunk (nncf-filter 50%) where those cells ran."""
    out: dict[str, Any] = {}
    report = folder / "nncf50.json"
    if report.exists():
        pruned = json.loads(report.read_text())
        for side in ("before", "after"):
            out[f"params_{side}"] = pruned[side]["params"]
            out[f"macs_{side}"] = pruned[side]["macs"]
        out["accuracy_before"], out["accuracy_after"] = pruned["before"].get("accuracy"), pruned["after"].get("accuracy")
        shrink = (pruned.get("method_info") or {}).get("shrink") or {}
        out["shrunk_vs_masked_max_abs_logit_diff"] = shrink.get("max_abs_logit_diff_vs_masked")
        out["shrunk_vs_masked_max_rel_logit_diff"] = shrink.get("max_rel_logit_diff_vs_masked")
    profile = folder / "profile.json"
    if profile.exists():
        for result in json.loads(profile.read_text()).get("results", []):
            key = "latency_base_ms" if result["model"] == "base" else "latency_shrunk_ms"
            out[key] = result["latency_ms"]["p50"]
    return out


def render(rows: list[dict], meta: dict) -> str:
    lines = ["# keras.applications through edgeprune", "",
             f"Host: {meta['host']}; load average at start {meta['load_start']}, at end {meta['load_end']}.",
             f"Command: `{meta['command']}` (cells: `python benchmarks/keras_applications.py --work WORK` "
             "with the defaults; each cell's own edgeprune command and seconds are in the .json).", "",
             "Each cell is one `edgeprune` command: ok, refused (exit 2, one line: the message is below) "
             "or FAILED (traceback, crash or timeout). Fresh weights, one short epoch on the CIFAR-10 "
             "sample at 32x32, so accuracies are near chance and only the mechanics are measured.", "",
             "| model | " + " | ".join(CELLS) + " |", "|" + "---|" * (len(CELLS) + 1)]
    for row in rows:
        lines.append(f"| {row['model']} | " + " | ".join(row["cells"].get(c, {}).get("status", "not run")
                                                         for c in CELLS) + " |")
    lines += ["", "## Base vs shrunk (NNCF filter pruning, target 50%, shrunk)", "",
              "Latency: Keras, batch 32, 2 threads, p50 of >= 5 runs, on a host shared with other jobs "
              "(see the load average above): at 32x32 these models are dominated by per-layer overhead.", "",
              "| model | params base | params shrunk | MACs base | MACs shrunk | shrunk vs masked max abs logit diff "
              "| relative to max logit | p50 ms base | p50 ms shrunk |", "|---|---|---|---|---|---|---|---|---|"]

    def fmt(value: Any, spec: str = ",") -> str:
        return "-" if value is None else format(value, spec)

    for row in rows:
        f = row["figures"]
        lines.append(f"| {row['model']} | {fmt(f.get('params_before'))} | {fmt(f.get('params_after'))} | "
                     f"{fmt(f.get('macs_before'))} | {fmt(f.get('macs_after'))} | "
                     f"{fmt(f.get('shrunk_vs_masked_max_abs_logit_diff'), '.2g')} | "
                     f"{fmt(f.get('shrunk_vs_masked_max_rel_logit_diff'), '.2g')} | "
                     f"{fmt(f.get('latency_base_ms'), '.2f')} | {fmt(f.get('latency_shrunk_ms'), '.2f')} |")
    lines += ["", "## Refusals and failures", ""]
    for row in rows:
        for cell in CELLS:
            record = row["cells"].get(cell)
            if record and record["status"] != "ok":
                lines.append(f"- {row['model']} / {cell}: **{record['status']}** — {record['message']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgeprune-keras-applications"))
    parser.add_argument("--arch", action="append", default=None,
                        help=f"architectures (repeatable): {', '.join(ARCHITECTURES)}, keras3 (default: all)")
    parser.add_argument("--cell", action="append", default=None, help=f"cells (default: all): {', '.join(CELLS)}")
    parser.add_argument("--train-images", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit-train", type=int, default=300)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--fresh", action="store_true", help="run every selected cell again")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: write the table from the cells already in --work")
    parser.add_argument("--output", type=Path, default=RESULTS / "keras_applications.md")
    args = parser.parse_args(argv)
    if not SAMPLE.exists():
        print(f"CIFAR-10 sample not found at {SAMPLE}", file=sys.stderr)
        return 2
    names = [KERAS3 if a == "keras3" else a for a in (args.arch or ORDER)]
    unknown = [n for n in names if n not in ARCHITECTURES and n != KERAS3]
    if unknown:
        print(f"unknown architecture(s) {unknown}", file=sys.stderr)
        return 2
    from edgeprune.host import host_fingerprint

    host = host_fingerprint()
    meta = {"host": f"{host.get('cpu_model') or platform.machine()}, {os.cpu_count()} CPUs",
            "load_start": os.getloadavg()[0], "command": "python benchmarks/keras_applications.py " + " ".join(
                sys.argv[1:] if argv is None else argv)}
    rows = []
    for name in names:
        folder = args.work / name
        folder.mkdir(parents=True, exist_ok=True)
        base = folder / "base.h5"
        if not base.exists() and not args.report_only:
            if name == KERAS3:
                subprocess.run([sys.executable, "-m", "edgeprune", "import", str(KERAS3_FIXTURE), "-o", str(base)],
                               env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, check=False)
            else:
                print(f"{name}: building and training", flush=True)
                build_model(name, folder, train_images=args.train_images, epochs=args.epochs)
        cells: dict[str, dict] = {}
        for cell in args.cell or CELLS:
            record_path = folder / "cells" / f"{cell}.json"
            if record_path.exists() and not args.fresh:
                cells[cell] = json.loads(record_path.read_text())
                continue
            if args.report_only:
                continue
            if not base.exists():
                cells[cell] = {"cell": cell, "status": "FAILED", "message": "base model could not be made"}
                continue
            argv_cell = cell_commands(base, folder, limit_train=args.limit_train, limit_test=args.limit)[cell]
            cells[cell] = run_cell(cell, argv_cell, record_path)
            print(f"{name} / {cell}: {cells[cell]['status']} ({cells[cell].get('seconds')} s)"
                  + (f" {cells[cell]['message']}" if cells[cell].get("message") else ""), flush=True)
        for cell in CELLS:  # cells run earlier (other --cell selections) count too
            record_path = folder / "cells" / f"{cell}.json"
            if cell not in cells and record_path.exists():
                cells[cell] = json.loads(record_path.read_text())
        rows.append({"model": name, "cells": cells, "figures": figures(folder)})
    meta["load_end"] = os.getloadavg()[0]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(rows, meta))
    args.output.with_suffix(".json").write_text(json.dumps({"schema": "edgeprune.keras_applications/1", **meta,
                                                            "rows": rows}, indent=2) + "\n")
    failed = [(r["model"], c) for r in rows for c, rec in r["cells"].items() if rec["status"] == "FAILED"]
    print(f"-> {args.output}; {len(failed)} failed cell(s)" + (f": {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
