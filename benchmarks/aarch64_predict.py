"""Predictions of .tflite models on both sides of the aarch64 check, and the x86-vs-aarch64 table.

    python benchmarks/aarch64_predict.py --data D.npz --limit N [--sets S.npz] -o P.npz M1.tflite ...
    python benchmarks/aarch64_predict.py --table WORK --out benchmarks/results/aarch64 --command "..."

The first form runs on either machine with only the `[device]` extra (numpy + LiteRT): the
class-stratified --limit test images of D.npz (as `edgeprune evaluate --limit` picks them) and
each transfer set, top-1 prediction of each model, the labels, and what ran (runtime, version,
inference precision, delegate). The second joins WORK/x86/predictions.npz and
WORK/aarch64/predictions.npz into the table (benchmarks/aarch64_check.sh runs both).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np


def predict(args: argparse.Namespace) -> None:
    from edgeprune.data import load_dataset
    from edgeprune.runtime import inference_label, load

    x, y = load_dataset(f"npz:{args.data}", limit_test=args.limit, seed=0).split("test")
    inputs = {"clean": (x, y)}
    for path in args.sets or []:
        with np.load(path, allow_pickle=False) as data:
            inputs[Path(path).stem] = (data["x_adv"].astype(np.float32), data["y"])
    arrays, meta = {}, {"machine": platform.machine(), "python": platform.python_version(), "models": {}}
    for name, (_, labels) in inputs.items():
        arrays[f"{name}/y"] = labels
    for model in args.models:
        predictor = load(model)
        label = Path(model).stem
        meta["models"][label] = {k: predictor.info.get(k) for k in ("precision", "runtime", "inference_precision",
                                                                     "delegate")}
        meta["models"][label]["runs_at"] = inference_label(predictor.info)
        for name, (images, _) in inputs.items():
            arrays[f"{name}/{label}"] = predictor.predict(images, 64).argmax(1).astype(np.int16)
    np.savez(args.output, meta=np.array(json.dumps(meta)), **arrays)


def table(args: argparse.Namespace) -> None:
    work = Path(args.table)
    sides = {}
    for side in ("x86", "aarch64"):
        with np.load(work / side / "predictions.npz", allow_pickle=False) as data:
            sides[side] = {k: data[k] for k in data.files}
    meta = {side: json.loads(str(sides[side].pop("meta"))) for side in sides}
    seconds = json.loads((work / "aarch64" / "seconds.json").read_text()) if (work / "aarch64" / "seconds.json").exists() else {}
    versions = (work / "aarch64_versions.txt").read_text().splitlines() if (work / "aarch64_versions.txt").exists() else []
    info = (work / "aarch64" / "info.txt").read_text() if (work / "aarch64" / "info.txt").exists() else ""
    sets = sorted({k.split("/")[0] for k in sides["x86"]}, key=lambda s: (s != "clean", s))
    models = list(meta["x86"]["models"])
    lines = ["# edgeprune on aarch64 (emulated): x86 vs aarch64, same .tflite files", "",
             f"Command: `{args.command}` (x86 host: {platform.processor() or platform.machine()}; aarch64: Debian "
             f"bookworm arm64 root under qemu-user-static, `pip install .[device]`: {', '.join(versions)}).  ",
             "Models: a ResNet-8 trained by `edgeprune train resnet8` (3 epochs) on the CIFAR-10 sample, "
             "converted on x86 by `edgeprune convert` (fp32, fp16, dynamic, int8); the transfer set is FGSM (8/255) "
             "crafted on the Keras model on x86.  ",
             "Runs at (x86 / aarch64): " + "; ".join(
                 f"{m} {meta['x86']['models'][m]['runs_at']} / {meta['aarch64']['models'][m]['runs_at']}" for m in models),
             "", "| set | images | model | accuracy x86 | accuracy aarch64 | top-1 agreement x86 vs aarch64 | differing |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for name in sets:
        y = sides["x86"][f"{name}/y"]
        assert np.array_equal(y, sides["aarch64"][f"{name}/y"]), "different images on the two sides"
        for model in models:
            a, b = sides["x86"][f"{name}/{model}"], sides["aarch64"][f"{name}/{model}"]
            lines.append(f"| {name} | {len(y)} | {model} | {np.mean(a == y):.1%} | {np.mean(b == y):.1%} | "
                         f"{np.mean(a == b):.1%} | {int(np.sum(a != b))} |")
    evaluated = {}
    for side in ("x86", "aarch64"):
        path = work / side / "evaluate.json"
        if path.exists():
            report = json.loads(path.read_text())
            evaluated[side] = {Path(m["path"]).stem: report["accuracy"]["clean"][m["label"]] for m in report["models"]}
    if len(evaluated) == 2:
        count = seconds.get("evaluate_images", "?")
        lines += ["", f"`edgeprune evaluate` of the four files on {count} class-stratified clean test images, each side:", "",
                  "| model | x86 | aarch64 |", "|---|---:|---:|"]
        lines += [f"| {m} | {evaluated['x86'][m]:.1%} | {evaluated['aarch64'].get(m, float('nan')):.1%} |"
                  for m in evaluated["x86"]]
    lines += ["", f"Emulated wall time on aarch64: predictions {seconds.get('predict_s', '?')} s; `edgeprune evaluate` "
                  f"{seconds.get('evaluate_s', '?')} s (4 models, {seconds.get('evaluate_images', '?')} clean images); "
                  "the host was shared with other jobs (load 10-20 on 2 cores).", "",
              "LiteRT's cpuinfo cannot read the CPU lists in the root (no /proc or /sys: bound from the x86 host "
              "they made XNNPACK segfault under qemu), so LiteRT ran its builtin kernels there, not XNNPACK: "
              "the 'runs at' line above says so.", "",
              "`edgeprune info` and `import openvino` on aarch64 (excerpt):", "", "```"]
    kept = [line for line in info.splitlines() if line.strip() and "cpuinfo" not in line]
    lines += kept[:14] + [line for line in kept[14:] if "openvino" in line]
    lines += ["```", ""]
    profile = work / "aarch64" / "profile.md"
    if profile.exists():
        lines += ["`edgeprune profile` on aarch64 (emulated: latencies are qemu's, not a board's):", "",
                  profile.read_text().strip(), ""]
    out = Path(args.out)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--data")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--sets", action="append")
    parser.add_argument("-o", "--output")
    parser.add_argument("--table")
    parser.add_argument("--out", default="benchmarks/results/aarch64")
    parser.add_argument("--command", default="benchmarks/aarch64_check.sh")
    args = parser.parse_args()
    table(args) if args.table else predict(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
