"""Acceptance for the CI gate at full scale: false alarms and detection of a 2x slower model.

A zoo ResNet-20 (OpenVINO fp32 IR) is profiled once as the baseline, then `--repeats` more
times as candidates: `edgeprune compare` must report no regression for any of them at a 10%
threshold. A wider ResNet-20 (width 1.41: about 2x the MACs) saved under the same name must
be flagged every time. Profiles use the example workflow's kind of settings (pinned CPUs,
many runs, a minimum time per cell) in fresh processes, as `edgeprune profile` does in CI.

    python benchmarks/compare_gate.py --repeats 10 --out benchmarks/results/compare_gate
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build_ir(folder: Path, width: float) -> Path:
    """A freshly initialised zoo ResNet-20 as `folder/resnet20.xml` (weights do not change timing)."""
    import openvino as ov

    from edgeprune.models import build_model

    folder.mkdir(parents=True, exist_ok=True)
    model = build_model("resnet20", num_classes=10, width=width)
    path = folder / "resnet20.xml"
    ov.save_model(ov.convert_model(model), str(path), compress_to_fp16=False)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--slow-repeats", type=int, default=3)
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--cpus", default="0,1")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--max-slowdown", type=float, default=0.10)
    parser.add_argument("--out", default="benchmarks/results/compare_gate")
    args = parser.parse_args()

    from edgeprune.compare import CompareConfig, compare_profiles
    from edgeprune.host import host_fingerprint
    from edgeprune.modelstats import model_stats
    from edgeprune.models import build_model
    from edgeprune.profile import ProfileConfig, profile_models

    config = ProfileConfig(batches=tuple(int(b) for b in args.batch.split(",")),
                           threads=tuple(int(t) for t in args.threads.split(",")),
                           cpus=tuple(int(c) for c in args.cpus.split(",")), runs=args.runs,
                           min_time_s=args.min_time, isolation="process")
    gate = CompareConfig(max_slowdown=args.max_slowdown)
    macs = {w: model_stats(build_model("resnet20", num_classes=10, width=w))["macs"] for w in (1.0, 1.41)}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="edgeprune-gate-") as work:
        base = build_ir(Path(work) / "base", 1.0)
        slow = build_ir(Path(work) / "slow", 1.41)
        baseline = profile_models([base], config, progress=False)
        rows = []
        for kind, path, count in (("same model", base, args.repeats), ("2x MACs", slow, args.slow_repeats)):
            for repeat in range(count):
                report = compare_profiles(baseline, profile_models([path], config, progress=False), gate)
                for cell in report["latency"]:
                    rows.append({"candidate": kind, "repeat": repeat + 1, "batch": cell["batch"],
                                 "threads": cell["threads"], "verdict": cell["verdict"],
                                 "p50_ratio": cell["p50_ratio"], "min_ratio": cell["min_ratio"],
                                 "busy": cell.get("busy")})
                print(f"{kind} #{repeat + 1}: {report['verdict']}  "
                      + ", ".join(f"b{c['batch']} {c['verdict']} (min x{c['min_ratio']:.3f}, p50 x{c['p50_ratio']:.3f})"
                                  for c in report["latency"]), flush=True)
    wall = time.time() - started
    same = [r for r in rows if r["candidate"] == "same model"]
    slower = [r for r in rows if r["candidate"] == "2x MACs"]
    summary = {
        "false_alarms": sum(r["verdict"] == "regression" for r in same), "same_cells": len(same),
        "detected": sum(r["verdict"] == "regression" for r in slower), "slow_cells": len(slower),
        "macs": {"base": macs[1.0], "slow": macs[1.41], "ratio": round(macs[1.41] / macs[1.0], 3)},
    }
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result = {"schema": "edgeprune.bench.compare_gate/1", "command": command, "host": host_fingerprint(),
              "settings": vars(args), "wall_s": round(wall, 1), "summary": summary, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    host = result["host"]
    lines = [
        "# CI gate at full scale: false alarms vs a 2x slower model",
        "",
        f"Command: `{command}`  ",
        f"Host: {host.get('cpu_model')}, {host.get('logical_cores')} logical cores, {platform.system()}; "
        f"profiles pinned to CPUs {args.cpus}, threads {args.threads}, batch {args.batch}, "
        f">= {args.runs} runs and >= {args.min_time} s per cell, fresh process per cell; wall {wall:.0f} s.",
        "",
        f"Models: zoo ResNet-20 (OpenVINO fp32, {macs[1.0] / 1e6:.1f} M MACs) and the same at width 1.41 "
        f"({macs[1.41] / 1e6:.1f} M MACs, x{summary['macs']['ratio']}) under the same name. "
        f"Threshold {args.max_slowdown:.0%}.",
        "",
        f"**False alarms: {summary['false_alarms']} of {summary['same_cells']} cells** "
        f"({args.repeats} re-profiles of the same model). "
        f"**Detected: {summary['detected']} of {summary['slow_cells']} cells** of the 2x model.",
        "",
        "| candidate | repeat | batch | threads | verdict | min ratio | p50 ratio | busy |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    lines += [f"| {r['candidate']} | {r['repeat']} | {r['batch']} | {r['threads']} | {r['verdict']} | "
              f"{r['min_ratio']:.3f} | {r['p50_ratio']:.3f} | {r['busy'] if r['busy'] is not None else ''} |"
              for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"false alarms {summary['false_alarms']}/{summary['same_cells']}, "
          f"detected {summary['detected']}/{summary['slow_cells']}; wrote {out}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
