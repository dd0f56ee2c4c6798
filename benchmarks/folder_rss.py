"""Benchmark: peak memory (RSS) of `edgeprune evaluate` on a 5,000-image 224x224 `folder:` dataset.

Writes the CIFAR-10 sample's images upscaled to 224x224 as JPEG class folders (one tree: all
of it is the test split), builds a small 224x224 model (.h5) and its .tflite, and runs
`edgeprune evaluate MODEL -d folder:DIR` in a fresh process under `/usr/bin/time -v` (max
resident set size), for the whole folder and for a 500-image `--limit` (the flat part: Python,
TensorFlow, the model). The folder as float32 arrays would take 5,000 x 224 x 224 x 3 x 4 bytes
= 3.0 GB; streamed, evaluate must stay under 1.5 GB.

    python benchmarks/folder_rss.py --data ../shared/data/cifar10_sample.npz \
        --out benchmarks/results/folder_rss
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
LIMIT_GB = 1.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 sample .npz (Keras layout)")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-sizes", default="256", help="evaluate --batch-size values to measure")
    parser.add_argument("--workdir", default=None,
                        help="where the folder and models go, kept for a re-run (default: a temp dir, removed)")
    parser.add_argument("--out", default="benchmarks/results/folder_rss")
    parser.add_argument("--render", action="store_true", help="only re-render OUT/folder_rss.md from its JSON")
    return parser.parse_args(argv)


def write_folder(data: str, root: Path, count: int, size: int) -> float:
    """`count` sample images upscaled to size x size as JPEG (quality 90); returns seconds."""
    from PIL import Image

    started = time.perf_counter()
    with np.load(data) as archive:
        x = np.concatenate([archive["x_train"], archive["x_test"]])[:count]
        y = np.concatenate([archive["y_train"], archive["y_test"]]).reshape(-1)[:count]
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        path = root / CLASSES[int(label)] / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR).save(path, quality=90)
    return time.perf_counter() - started


def make_models(work: Path, size: int) -> list[Path]:
    """smallcnn (width 0.5) for size x size x 3 inputs, untrained (accuracy is not measured here), as
    .h5 and fp32 .tflite."""
    from edgeprune import api
    from edgeprune.models import build_model
    from edgeprune.modelio import save_keras_model

    model = build_model("smallcnn", input_shape=(size, size, 3), num_classes=10, width=0.5)
    h5 = work / "smallcnn224.h5"
    save_keras_model(model, h5, metadata={"arch": "smallcnn", "num_classes": 10, "class_names": list(CLASSES),
                                          "input_shape": [size, size, 3]})
    tflite = work / "smallcnn224.tflite"
    api.convert(h5, api.ConvertOptions(target="tflite", no_verify=True), tflite, progress=False, force=True)
    return [h5, tflite]


def peak_rss(command: list[str]) -> dict:
    """Run `command` under /usr/bin/time -v: its max RSS (MB), wall seconds and exit status."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"failed ({done.returncode}): {shlex.join(command)}\n{done.stderr[-2000:]}")
    return {"command": shlex.join(command), "max_rss_mb": round(int(found.group(1)) / 1024, 1),
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        (out / "folder_rss.md").write_text(render(json.loads((out / "folder_rss.json").read_text())))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        root = work / f"folder{args.size}_{args.images}"
        write_seconds = None if root.is_dir() else write_folder(args.data, root, args.images, args.size)
        folder_bytes = sum(p.stat().st_size for p in root.rglob("*.jpg"))
        models = make_models(work, args.size)
        runs = []
        for model in models:
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                for limit in (None, 500) if model.suffix == ".h5" else (None,):
                    command = [sys.executable, "-m", "edgeprune", "evaluate", str(model), "-d", f"folder:{root}",
                               "--batch-size", str(batch), "-q", "--force", "-o", str(work / "report")]
                    if limit:
                        command += ["--limit", str(limit)]
                    run = peak_rss(command)
                    report = json.loads((work / "report.json").read_text())
                    run.update(model=model.suffix.lstrip("."), batch_size=batch, images=report["images"]["clean"])
                    runs.append(run)
                    print(f"{run['model']:>6} batch {batch:>3} {run['images']:>5} images: "
                          f"{run['max_rss_mb']:7.1f} MB, {run['seconds']:.0f} s", flush=True)
    from edgeprune.io import versions

    full = [r for r in runs if r["images"] == args.images]
    record = {
        "benchmark": "folder_rss",
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["folder_rss.py", *argv]),
        "folder": {"images": args.images, "size": [args.size, args.size], "format": "JPEG q90", "bytes": folder_bytes,
                   "float32_bytes_if_held_whole": args.images * args.size * args.size * 3 * 4,
                   "write_seconds": None if write_seconds is None else round(write_seconds, 1)},
        "limit_gb": LIMIT_GB,
        "passed": all(r["max_rss_mb"] < LIMIT_GB * 1024 for r in full),
        "runs": runs,
        "host": {"machine": platform.machine(), "processor": cpu_model(),
                 "cpus": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
                 "python": platform.python_version()},
        "versions": versions(),
    }
    (out / "folder_rss.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "folder_rss.md").write_text(render(record))
    print(render(record))
    return 0 if record["passed"] else 1


def cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None
    found = re.search(r"model name\s*:\s*(.+)", text)
    return found.group(1).strip() if found else (platform.processor() or None)


def render(record: dict) -> str:
    folder = record["folder"]
    lines = ["# Peak RSS of `edgeprune evaluate` on a folder: dataset", "",
             f"{folder['images']:,} images {folder['size'][0]}x{folder['size'][1]} ({folder['format']}, "
             f"{folder['bytes'] / 2**20:.0f} MB on disk; {folder['float32_bytes_if_held_whole'] / 2**30:.1f} GiB "
             f"as float32 arrays). Max resident set size of the whole `edgeprune evaluate` process "
             f"(/usr/bin/time -v), limit {record['limit_gb']} GB: "
             f"**{'passed' if record['passed'] else 'FAILED'}**.", "",
             "| model | --batch-size | images | max RSS (MB) | seconds |", "|---|---:|---:|---:|---:|"]
    for run in record["runs"]:
        lines.append(f"| {run['model']} | {run['batch_size']} | {run['images']:,} | {run['max_rss_mb']:.0f} | "
                     f"{run['seconds']:.0f} |")
    host = record["host"]
    lines += ["", f"Host: {host['machine']} {host['processor'] or ''}, {host['cpus']} CPUs, load average "
              f"{', '.join(str(v) for v in host['load_average'])} at the end (shared machine: seconds are "
              "not a speed figure). The 500-image rows are the flat part (Python, TensorFlow or LiteRT, the "
              "model, batch buffers); the difference to the full folder is what streaming leaves.", "",
              f"Command: `{record['command']}`", "", "Each run: `" + record["runs"][0]["command"] + "`", ""]
    if record.get("history"):
        lines += ["## Before", "", record["history"], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
