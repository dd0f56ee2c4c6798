"""Size, accuracy and agreement of every format/precision `edgeprune convert` offers.

Converts each MODEL to TFLite fp32/fp16/dynamic/int8 and OpenVINO fp32/fp16/int8 (each
verified at conversion as usual), then evaluates the source and each converted file on the
whole test split through `edgeprune.runtime.load`, and writes RESULTS.md / .json / .csv.

    python benchmarks/convert_table.py --model base.h5 [--model pruned.h5] \
        --dataset npz:cifar10_sample.npz --work WORK \
        --results benchmarks/results/convert
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROWS = [("tflite", p) for p in ("fp32", "fp16", "dynamic", "int8")] + \
       [("openvino", p) for p in ("fp32", "fp16", "int8")]


def shorten(arg: str) -> str:
    """Machine paths out of committed results: an absolute path keeps only its file name."""
    prefix, _, rest = arg.rpartition(":") if ":" in arg and not arg.startswith("/") else ("", "", arg)
    if rest.startswith("/"):
        rest = Path(rest).name
    return f"{prefix}:{rest}" if prefix else rest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="Keras .h5 (repeatable)")
    parser.add_argument("--dataset", required=True, help="dataset spec (npz:PATH, digits, ...)")
    parser.add_argument("--work", required=True, help="folder for the converted models (not committed)")
    parser.add_argument("--results", required=True, help="output stem: writes STEM.md, STEM.json, STEM.csv")
    parser.add_argument("--verify", type=int, default=300)
    parser.add_argument("--calibration", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--about", action="append", default=[],
                        help="a line for the results (e.g. how the models were made); repeatable")
    args = parser.parse_args(argv)

    import numpy as np

    from edgeprune.convert import ConvertConfig, VerificationError, convert_model
    from edgeprune.data import load_dataset
    from edgeprune.host import host_fingerprint
    from edgeprune.info import gzip_bytes
    from edgeprune.io import write_json, atomic_write_text
    from edgeprune.modelstats import model_stats
    from edgeprune.modelio import load_keras_model
    from edgeprune.runtime import file_bytes, load

    dataset = load_dataset(args.dataset)
    x_test, y_test = dataset.split("test")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for model_path in map(Path, args.model):
        keras = load(model_path, threads=args.threads)
        reference = keras.predict(x_test, 128)
        stats = model_stats(load_keras_model(model_path))
        base = {"model": model_path.name, "weight_sparsity": round(stats["sparsity"], 4),
                "zero_filters": sum(layer["filters_zero"] for layer in stats["layers"])}
        rows.append({**base, "format": "keras", "precision": "fp32", "bytes": file_bytes(model_path),
                     "gzip_bytes": gzip_bytes(model_path),
                     "accuracy": float((reference.argmax(1) == y_test).mean()), "agreement": 1.0,
                     "max_abs_logit_diff": 0.0, "convert_seconds": None, "notes": ""})
        for target, precision in ROWS:
            output = work / f"{model_path.stem}_{precision}{'.tflite' if target == 'tflite' else '.xml'}"
            started = time.perf_counter()
            notes = []
            config = ConvertConfig(target, precision, verify=args.verify, calibration=args.calibration)
            try:
                report = convert_model(model_path, output, config, dataset=dataset,
                                       dataset_spec=args.dataset, progress=False)
            except VerificationError as refusal:
                # Shown, not hidden: what `convert` refused, then the same file kept with
                # --no-verify so its size and accuracy are still in the table.
                notes.append("REFUSED by default verification: " + str(refusal).split(";")[0])
                report = convert_model(model_path, output, dataclasses.replace(config, verify=0),
                                       dataset=dataset, dataset_spec=args.dataset, progress=False)
            seconds = time.perf_counter() - started
            logits = load(output, threads=args.threads).predict(x_test, 128)
            encoding = report.get("sparse_encoding") or {}
            if encoding.get("sparse_bytes") is not None:
                notes.append(f"sparse encoding {encoding['sparse_bytes']:,} B "
                             f"({'used' if encoding['used'] else 'runs' if encoding['sparse_runs'] else 'does not run'})")
            pruning = report.get("filter_pruning") or {}
            if pruning.get("applied"):
                notes.append(f"conv channels {pruning['conv_channels_before']} -> {pruning['conv_channels_after']}")
            rows.append({**base, "format": target, "precision": precision, "bytes": report["sizes"]["output_bytes"],
                         "gzip_bytes": report["sizes"]["output_gzip_bytes"],
                         "accuracy": float((logits.argmax(1) == y_test).mean()),
                         "agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
                         "max_abs_logit_diff": float(np.abs(logits - reference).max()),
                         "convert_seconds": round(seconds, 1), "notes": "; ".join(notes)})
            print(f"{model_path.name} {target} {precision}: {rows[-1]['bytes']:,} B, "
                  f"acc {rows[-1]['accuracy']:.4f}, agreement {rows[-1]['agreement']:.4f}", file=sys.stderr)

    tokens, shown = list(argv or sys.argv[1:]), []
    while tokens:  # --about lines are shown as text, not repeated in the command
        token = tokens.pop(0)
        if token == "--about":
            tokens.pop(0)
        elif not token.startswith("--about="):
            shown.append(shlex.quote(shorten(token)))
    command = "python benchmarks/convert_table.py " + " ".join(shown)
    host = host_fingerprint()
    runtime_names = {fmt: load(next(work.glob(f"*{suffix}"))).info["runtime"]
                     for fmt, suffix in (("tflite", ".tflite"), ("openvino", ".xml"))}
    write_json(f"{args.results}.json", {
        "schema": "edgeprune.convert-table/1", "command": command, "about": args.about,
        "dataset": shorten(args.dataset),
        "test_images": int(len(y_test)), "verify": args.verify, "calibration": args.calibration,
        "runtimes": runtime_names, "host": host, "rows": rows})
    fields = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(f"{args.results}.csv", buffer.getvalue())
    lines = [
        "# Conversion: size, accuracy and agreement per format and precision", "",
        *[f"{line}  " for line in args.about], "",
        f"Dataset `{shorten(args.dataset)}` ({len(y_test)} test images, all of them evaluated); int8 calibrated on "
        f"{args.calibration} class-stratified training images; agreement = top-1 agreement with the Keras "
        f"source on those {len(y_test)} images.", "",
        f"Command (paths shortened to file names): `{command}`", "",
        f"Host: {host['cpu_model']}, {host['logical_cores']} logical cores, {host['os']}; "
        + ", ".join(f"{k} {v}" for k, v in host["versions"].items() if k in
                    ("tensorflow-cpu", "openvino", "nncf", "ai-edge-litert")), "",
        "Runtimes: " + ", ".join(f"{fmt} via {r['name']} {r['version']}" for fmt, r in runtime_names.items())
        + " (OpenVINO executes in f32).", "",
        "| model | format | precision | bytes | gzip bytes | x of .h5 | accuracy | agreement | max abs logit diff | notes |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        source_bytes = next(r["bytes"] for r in rows if r["model"] == row["model"] and r["format"] == "keras")
        lines.append(f"| {row['model']} | {row['format']} | {row['precision']} | {row['bytes']:,} | "
                     f"{row['gzip_bytes']:,} | {row['bytes'] / source_bytes:.2f} | {row['accuracy']:.4f} | "
                     f"{row['agreement']:.4f} | {row['max_abs_logit_diff']:.3g} | {row['notes']} |")
    atomic_write_text(f"{args.results}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
