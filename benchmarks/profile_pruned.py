"""Benchmark: base vs 10/30/50% NNCF filter-pruned (shrunk) models on Keras, TFLite, OpenVINO.

The paper's latency and size tables, now with percentiles: one zoo architecture is trained
briefly on the CIFAR-10 sample, filter-pruned with NNCF at each level and physically shrunk
(`edgeprune prune -m nncf-filter`), converted to fp32 TFLite and OpenVINO IR
(`edgeprune convert`), and all models are measured by `edgeprune profile` in several
interleaved rounds (model order reversed every other round); ratios to the base are taken
within each round and their median is reported, so load drift on a shared machine cancels.

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
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved profile runs")
    parser.add_argument("--isolation", default="none",
                        help="none: one process per round (TF threads set once, before TF starts); process: per cell")
    parser.add_argument("--work", default=None, help="folder for the models (default: a temp dir)")
    parser.add_argument("--out", default="benchmarks/results/profile")
    return parser.parse_args(argv)


def run(args: list[str], log: list[str], *, output: Path | None = None) -> None:
    """Run one edgeprune command (recorded); skip it when its output exists from an earlier run."""
    shown = "edgeprune " + " ".join(shlex.quote(a) for a in args)
    log.append(shown)
    if output is not None and output.exists():
        print(f"(kept) {shown}", flush=True)
        return
    print(f"$ {shown}", flush=True)
    start = time.time()
    done = subprocess.run(EDGEPRUNE + args, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shown}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print(f"  {time.time() - start:.0f} s", flush=True)


def build_models(args, work: Path, log: list[str]) -> list[Path]:
    data = f"npz:{args.data}"
    base = work / "base.h5"
    run(["train", args.arch, "-d", data, "--limit-train", str(args.limit_train), "--limit", "200",
         "--epochs", str(args.epochs), "--milestones", "", "-o", str(base), "-q"], log, output=base)
    keras_models = [base]
    for level in (float(v) for v in args.levels.split(",")):
        pruned = work / f"filter{round(level * 100):02d}.h5"
        run(["prune", str(base), "-m", "nncf-filter", "--target", str(level), "-d", data,
             "--limit-train", str(args.limit_train), "--limit", "200", "--epochs", str(args.prune_epochs),
             "-o", str(pruned), "-q"], log, output=pruned)
        keras_models.append(pruned)
    converted = []
    quiet = ["-q"] if _has_quiet("convert") else []
    for model in keras_models:
        for fmt, suffix in (("tflite", ".tflite"), ("openvino", ".xml")):
            target = model.with_suffix(suffix)
            run(["convert", str(model), "--to", fmt, "-d", data, "--verify", "200", "-o", str(target), *quiet],
                log, output=target)
            converted.append(target)
    return keras_models + converted


def _has_quiet(command: str) -> bool:
    done = subprocess.run(EDGEPRUNE + [command, "--help"], capture_output=True, text=True)
    return "--quiet" in done.stdout


KEYS = ("p50", "p90", "p99", "mean", "std", "min")


def combine_rounds(rounds: list[dict]) -> list[dict]:
    """One row per (model, format, batch, threads): medians over rounds, min of mins, ratios in-round."""
    import statistics

    cells: dict[tuple, list[dict]] = {}
    for report in rounds:
        base = {(r["format"], r["batch"], r["threads"]): r for r in report["results"] if r["model"] == "base"}
        for r in report["results"]:
            b = base[(r["format"], r["batch"], r["threads"])]
            r = dict(r, p50_vs_base=r["latency_ms"]["p50"] / b["latency_ms"]["p50"],
                     min_vs_base=r["latency_ms"]["min"] / b["latency_ms"]["min"])
            cells.setdefault((r["model"], r["format"], r["batch"], r["threads"]), []).append(r)
    rows = []
    for (model, fmt, batch, threads), per_round in cells.items():
        first = per_round[0]
        rows.append({
            "model": model, "format": fmt, "runtime": f"{first['runtime']} {first.get('runtime_version') or ''}".strip(),
            "batch": batch, "threads": threads, "rounds": len(per_round), "runs": sum(r["runs"] for r in per_round),
            **{f"{k}_ms": round(statistics.median(r["latency_ms"][k] for r in per_round), 3) for k in KEYS if k != "min"},
            "min_ms": round(min(r["latency_ms"]["min"] for r in per_round), 3),
            "cv": round(statistics.median(r["cv"] for r in per_round), 3),
            "throughput_ips": round(statistics.median(r["throughput_ips"] for r in per_round), 1),
            "p50_vs_base": round(statistics.median(r["p50_vs_base"] for r in per_round), 3),
            "min_vs_base": round(statistics.median(r["min_vs_base"] for r in per_round), 3),
            "p50_vs_base_per_round": [round(r["p50_vs_base"], 3) for r in per_round],
            "busy": round(statistics.mean(min(1.0, (r.get("other_load_cores") or 0) / len(r["cpus"]))
                                          for r in per_round), 2),
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in per_round),
        })
    order = {"keras": 0, "tflite": 1, "openvino": 2}
    return sorted(rows, key=lambda r: (order.get(r["format"], 9), r["batch"], r["threads"], r["model"]))


def results_markdown(report: dict, rows: list[dict], commands: list[str], args) -> str:
    host = report["host"]
    lines = [
        f"# Profile: base vs NNCF filter-pruned (shrunk) {args.arch} on Keras, TFLite and OpenVINO", "",
        f"Host: {host['cpu_model']} ({host['architecture']}), {host['logical_cores']} logical / "
        f"{host.get('physical_cores')} physical cores, ISA {', '.join(host['isa'])}, "
        f"{host['memory_bytes'] / 2**30:.0f} GiB, {host['os']}; Python {host['versions'].get('python')}, "
        f"tensorflow-cpu {host['versions'].get('tensorflow-cpu')}, openvino {host['versions'].get('openvino')}, "
        f"ai-edge-litert {host['versions'].get('ai-edge-litert')}. {report['device_like']['note']}.", "",
        f"Measured {report['created_utc']} in {args.rounds} interleaved rounds "
        "(model order reversed every other round) on a machine SHARED with other jobs. 'busy' is the "
        "share of the measured CPUs that other processes used during the cells: at 80-95% the absolute "
        "latencies are inflated several-fold and spread out. Read the in-round ratios to the base "
        "(median over rounds), not the absolute figures.", "",
        "Commands (models in a scratch folder, not committed):", "", "```", *commands, "```", "",
        "Filter pruning: NNCF `filter_pruning` (L2, exponential schedule from 0.1, first and stride-2 "
        "convs included) then physical shrinking (Keras model surgery) — `edgeprune prune -m nncf-filter`. "
        "TFLite and OpenVINO are fp32 conversions of each Keras model (`edgeprune convert`).", "",
        "## Size", "",
        "| model | format | params | non-zero | MACs/image | file MB | gzip MB | file vs base | MACs vs base |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    sizes = {(m["model"], m["format"]): m for m in report["models"]}
    for m in sorted(report["models"], key=lambda m: (m["format"], m["model"])):
        base = sizes[("base", m["format"])]
        lines.append(f"| {m['model']} | {m['format']} | {m['params']:,} | {m['params_nonzero']:,} | {m['macs']:,} | "
                     f"{m['file_bytes'] / 1e6:.3f} | {m['gzip_bytes'] / 1e6:.3f} | "
                     f"{m['file_bytes'] / base['file_bytes']:.2f} | {m['macs'] / base['macs']:.2f} |")
    lines += ["", f"## Latency (ms per batch, {args.threads} threads; medians over rounds, min over rounds)", "",
              "| model | runtime | batch | runs | p50 | p90 | p99 | mean ± std | min | CV | img/s | "
              "p50 vs base | min vs base | busy | peak RSS MB |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['runtime']} | {r['batch']} | {r['runs']} | {r['p50_ms']:.1f} | "
                     f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_ms']:.1f} ± {r['std_ms']:.1f} | "
                     f"{r['min_ms']:.1f} | {r['cv']:.0%} | {r['throughput_ips']:,.0f} | {r['p50_vs_base']:.2f} | "
                     f"{r['min_vs_base']:.2f} | {r['busy']:.0%} | {r['peak_rss_bytes'] / 1e6:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="edgeprune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []
    models = build_models(args, work, commands)
    out = Path(args.out)
    rounds = []
    for index in range(args.rounds):
        ordered = models if index % 2 == 0 else models[::-1]
        round_json = work / f"round{index}.json"
        run(["profile", *map(str, ordered), "--batch", args.batch, "--threads", args.threads, "--runs",
             str(args.runs), "--min-time", str(args.min_time), "--isolation", args.isolation,
             "-o", str(round_json), "--force", "-q"], commands)
        rounds.append(json.loads(round_json.read_text()))
    rows = combine_rounds(rounds)
    report = rounds[0]
    for model in report["models"]:
        model["path"] = Path(model["path"]).name  # no machine paths in committed files
    shown = [c.replace(str(work) + "/", "").replace(str(args.data), "cifar10_sample.npz") for c in commands]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({
        "schema": "edgeprune.profile_bench/1", "arch": args.arch, "commands": shown, "host": report["host"],
        "device_like": report["device_like"], "settings": report["settings"], "models": report["models"],
        "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(results_markdown(report, rows, shown, args))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
