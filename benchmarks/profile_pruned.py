"""Benchmark: base vs 10/30/50% NNCF filter-pruned (shrunk) models on Keras, TFLite, OpenVINO.

The paper's latency and size tables, now with percentiles: one zoo architecture is trained
briefly on the CIFAR-10 sample, filter-pruned with NNCF at each level and physically shrunk
(`edgeprune prune -m nncf-filter`), converted to fp32 TFLite and OpenVINO IR
(`edgeprune convert`), and all models are measured by ONE `edgeprune profile` run (a fresh
pinned process per model x batch cell), so ratios to the base come from the same run.

    python benchmarks/profile_pruned.py --data PATH/cifar10_sample.npz

Every step is an `edgeprune` command; they are printed and recorded in the results file.
Accuracy is not the point (one epoch on a thousand images): size and latency are.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
EDGEPRUNE = [sys.executable, "-c", "import sys; from edgeprune.cli import main; sys.argv[0] = 'edgeprune'; main()"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 sample .npz (Keras layout)")
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--levels", default="0.1,0.3,0.5", help="NNCF filter pruning targets")
    parser.add_argument("--limit-train", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1, help="base training epochs")
    parser.add_argument("--prune-epochs", type=int, default=2)
    parser.add_argument("--batch", default="32,64")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--work", default=None, help="folder for the models (default: a temp dir)")
    parser.add_argument("--out", default="benchmarks/results/profile")
    return parser.parse_args(argv)


def run(args: list[str], log: list[str]) -> None:
    shown = "edgeprune " + " ".join(shlex.quote(a) for a in args)
    print(f"$ {shown}", flush=True)
    log.append(shown)
    start = time.time()
    done = subprocess.run(EDGEPRUNE + args, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shown}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print(f"  {time.time() - start:.0f} s", flush=True)


def build_models(args, work: Path, log: list[str]) -> list[Path]:
    data = f"npz:{args.data}"
    base = work / "base.h5"
    if not base.exists():
        run(["train", args.arch, "-d", data, "--limit-train", str(args.limit_train), "--limit", "200",
             "--epochs", str(args.epochs), "--milestones", "", "-o", str(base), "-q"], log)
    keras_models = [base]
    for level in (float(v) for v in args.levels.split(",")):
        pruned = work / f"filter{round(level * 100):02d}.h5"
        if not pruned.exists():
            run(["prune", str(base), "-m", "nncf-filter", "--target", str(level), "-d", data,
                 "--limit-train", str(args.limit_train), "--limit", "200", "--epochs", str(args.prune_epochs),
                 "-o", str(pruned), "-q"], log)
        keras_models.append(pruned)
    converted = []
    quiet = ["-q"] if _has_quiet("convert") else []
    for model in keras_models:
        for fmt, suffix in (("tflite", ".tflite"), ("openvino", ".xml")):
            target = model.with_suffix(suffix)
            if not target.exists():
                run(["convert", str(model), "--to", fmt, "-d", data, "--limit", "200", "-o", str(target), *quiet],
                    log)
            converted.append(target)
    return keras_models + converted


def _has_quiet(command: str) -> bool:
    done = subprocess.run(EDGEPRUNE + [command, "--help"], capture_output=True, text=True)
    return "--quiet" in done.stdout


def results_markdown(report: dict, commands: list[str], args) -> str:
    host = report["host"]
    sizes = {(m["model"], m["format"]): m for m in report["models"]}
    base_p50 = {(r["format"], r["batch"]): r["latency_ms"]["p50"] for r in report["results"] if r["model"] == "base"}
    lines = [
        f"# Profile: base vs NNCF filter-pruned (shrunk) {args.arch} on Keras, TFLite and OpenVINO", "",
        f"Host: {host['cpu_model']} ({host['architecture']}), {host['logical_cores']} logical / "
        f"{host.get('physical_cores')} physical cores, ISA {', '.join(host['isa'])}, "
        f"{host['memory_bytes'] / 2**30:.0f} GiB, {host['os']}; Python {host['versions'].get('python')}, "
        f"tensorflow-cpu {host['versions'].get('tensorflow-cpu')}, openvino {host['versions'].get('openvino')}, "
        f"ai-edge-litert {host['versions'].get('ai-edge-litert')}. {report['device_like']['note']}.",
        f"Measured {report['created_utc']} on a machine SHARED with other jobs: the 'busy' column is the "
        "share of the measured CPUs other processes used during that cell; latencies on a busy host "
        "are inflated and spread out — read ratios within this one run, not absolute figures.", "",
        "Commands (models in a scratch folder, not committed):", "", "```",
        *commands, "```", "",
        "Filter pruning: NNCF `filter_pruning` (L2, exponential schedule from 0.1, first and stride-2 "
        "convs included) then physical shrinking (Keras model surgery) — `edgeprune prune -m nncf-filter`. "
        "TFLite and OpenVINO are fp32 conversions of each Keras model (`edgeprune convert`).", "",
        "## Size", "",
        "| model | format | params | non-zero | MACs/image | file MB | gzip MB | file vs base |",
        "|---|---|---:|---:|---:|---:|---:|---:|"]
    for m in report["models"]:
        base = sizes[("base", m["format"])]
        lines.append(f"| {m['model']} | {m['format']} | {m['params']:,} | {m['params_nonzero']:,} | {m['macs']:,} | "
                     f"{m['file_bytes'] / 1e6:.3f} | {m['gzip_bytes'] / 1e6:.3f} | "
                     f"{m['file_bytes'] / base['file_bytes']:.2f} |")
    lines += ["", "## Latency (ms per batch; threads as listed)", "",
              "| model | runtime | batch | threads | runs | p50 | p90 | p99 | mean ± std | min | CV | img/s | "
              "p50 vs base | busy | peak RSS MB |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(report["results"], key=lambda r: (r["format"], r["batch"], r["threads"], r["model"])):
        lat = r["latency_ms"]
        ratio = lat["p50"] / base_p50[(r["format"], r["batch"])]
        busy = "–" if r.get("other_load_cores") is None else f"{r['other_load_cores'] / len(r['cpus']):.0%}"
        lines.append(f"| {r['model']} | {r['runtime']} {r.get('runtime_version') or ''} | {r['batch']} | "
                     f"{r['threads']} | {r['runs']} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | "
                     f"{lat['mean']:.2f} ± {lat['std']:.2f} | {lat['min']:.2f} | {r['cv']:.0%} | "
                     f"{r['throughput_ips']:,.0f} | {ratio:.2f} | {busy} | {r['peak_rss_bytes'] / 1e6:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="edgeprune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []
    models = build_models(args, work, commands)
    out = Path(args.out)
    profile_json = out.with_suffix(".json")
    run(["profile", *map(str, models), "--batch", args.batch, "--threads", args.threads, "--runs", str(args.runs),
         "--min-time", str(args.min_time), "-o", str(profile_json), "--force", "-q"], commands)
    report = json.loads(profile_json.read_text())
    # Committed figures carry no machine paths and no raw samples (kept small).
    for model in report["models"]:
        model["path"] = Path(model["path"]).name
    for cell in report["results"]:
        cell.pop("samples_ms", None)
    report["command"] = commands[-1].replace(str(work) + "/", "")
    profile_json.write_text(json.dumps(report, indent=2) + "\n")
    shown = [c.replace(str(work) + "/", "").replace(str(args.data), "cifar10_sample.npz")
             .replace(str(profile_json), profile_json.name) for c in commands]
    out.with_suffix(".md").write_text(results_markdown(report, shown, args))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
