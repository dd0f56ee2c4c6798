"""Acceptance: OpenVINO latency from `edgeprune profile` vs OpenVINO's own `benchmark_app`.

Same .xml, same batch, same thread count, single request, at each runtime inference precision
(`--precisions default,f32`): `default` sets no precision on either side (what OpenVINO picks
on this host: bf16 on CPUs with AVX512_BF16 or AMX, else f32), `f32` pins it on both:

    benchmark_app -m M.xml -d CPU -b 64 -nthreads 2 -hint none -nstreams 1 -api sync -t 10 [-infer_precision f32]
    edgeprune profile M.xml --batch 64 --threads 2 --min-time 10 --runs 100 --inference-precision default|f32

Each side's precision is read back (benchmark_app's `INFERENCE_PRECISION_HINT` line, the
profile's `inference_precision`) and must agree. The two tools run in alternating order over
several rounds (A B, B A, ...) so drift in the load of a shared machine hits both alike; each
round's ratio edgeprune p50 / benchmark_app median is reported, and the median of those
ratios per precision is the verdict (within 10%).

    python benchmarks/profile_vs_benchmark_app.py                       # zoo resnet20, fresh weights
    python benchmarks/profile_vs_benchmark_app.py --model M.xml --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
EDGEPRUNE = [sys.executable, "-c", "import sys; from edgeprune.cli import main; sys.argv[0] = 'edgeprune'; main()"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help=".xml to measure (default: build the zoo --arch)")
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precisions", default="default,f32",
                        help="edgeprune --inference-precision values to measure (default, f32, bf16, f16)")
    parser.add_argument("--out", default="benchmarks/results/profile_vs_benchmark_app")
    return parser.parse_args(argv)


def benchmark_app_command() -> list[str]:
    """The console script beside this Python, else the module inside the openvino package."""
    script = Path(sys.executable).with_name("benchmark_app")
    if script.exists():
        return [str(script)]
    if shutil.which("benchmark_app"):
        return [shutil.which("benchmark_app")]
    # The module has no __main__ guard: call its main() (what the console script does).
    return [sys.executable, "-c", "import sys; from openvino.tools.benchmark.main import main; sys.exit(main())"]


def build_xml(arch: str, folder: Path) -> Path:
    import openvino as ov

    from edgeprune.models import build_model

    model = build_model(arch, input_shape=(32, 32, 3))
    path = folder / f"{arch}.xml"
    ov.save_model(ov.convert_model(model), str(path), compress_to_fp16=False)
    return path


BAPP_TYPES = {"f32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16", "f16": "f16", "float16": "f16"}


def run_benchmark_app(xml: Path, args, precision: str) -> dict:
    command = [*benchmark_app_command(), "-m", str(xml), "-d", "CPU", "-b", str(args.batch), "-nthreads",
               str(args.threads), "-hint", "none", "-nstreams", "1", "-api", "sync", "-t", f"{args.seconds:g}"]
    if precision != "default":
        command += ["-infer_precision", precision]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"benchmark_app failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    found = {}
    for key in ("Median", "Average", "Min", "Max"):
        match = re.search(rf"{key}:\s+([0-9.]+) ms", done.stdout)
        found[key.lower()] = float(match.group(1))
    found["count"] = int(re.search(r"Count:\s+(\d+)", done.stdout).group(1))
    ran = re.search(r"INFERENCE_PRECISION_HINT:\s+(?:<Type: ')?(\w+)", done.stdout)
    found["precision"] = BAPP_TYPES.get(ran.group(1).lower(), ran.group(1)) if ran else None
    found["command"] = "benchmark_app " + " ".join(command[len(benchmark_app_command()):]).replace(str(xml), xml.name)
    return found


def run_profile(xml: Path, args, folder: Path, index: int, precision: str) -> dict:
    output = folder / f"profile{index}.json"
    command = ["profile", str(xml), "--batch", str(args.batch), "--threads", str(args.threads), "--min-time",
               f"{args.seconds:g}", "--runs", "100", "--inference-precision", precision,
               "-o", str(output), "--force", "-q"]
    done = subprocess.run(EDGEPRUNE + command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"edgeprune profile failed: {done.stderr[-1500:]}")
    cell = json.loads(output.read_text())["results"][0]
    return {**{k: cell["latency_ms"][k] for k in ("p50", "mean", "min", "max")}, "count": cell["runs"],
            "other_load_cores": cell.get("other_load_cores"), "cpus": len(cell["cpus"]),
            "precision": cell.get("inference_precision"),
            "command": "edgeprune " + " ".join(command[:-3]).replace(str(xml), xml.name).replace(
                f" -o {output}", "")}


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv=None) -> None:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="edgeprune-bapp-"))
    xml = Path(args.model) if args.model else build_xml(args.arch, folder)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    rounds = []
    for index in range(args.rounds):
        for precision in precisions:
            order = ("bapp", "profile") if index % 2 == 0 else ("profile", "bapp")
            measured, load_before = {}, load_average()
            for tool in order:
                measured[tool] = (run_benchmark_app(xml, args, precision) if tool == "bapp"
                                  else run_profile(xml, args, folder, index, precision))
            ratio = measured["profile"]["p50"] / measured["bapp"]["median"]
            rounds.append({"precision": precision, "order": list(order), **measured,
                           "p50_over_median": round(ratio, 4),
                           "mean_over_average": round(measured["profile"]["mean"] / measured["bapp"]["average"], 4),
                           "same_precision": measured["profile"]["precision"] == measured["bapp"]["precision"],
                           "load_average": [load_before, load_average()]})
            print(f"round {index + 1} {precision}: benchmark_app median {measured['bapp']['median']:.2f} ms "
                  f"({measured['bapp']['precision']}), edgeprune p50 {measured['profile']['p50']:.2f} ms "
                  f"({measured['profile']['precision']}), ratio {ratio:.3f}, load {load_average()}", flush=True)
    from edgeprune.host import host_fingerprint

    host = host_fingerprint()
    verdicts = {}
    for precision in precisions:
        mine = [r for r in rounds if r["precision"] == precision]
        median_ratio = statistics.median(r["p50_over_median"] for r in mine)
        agree = abs(median_ratio - 1) <= 0.10 and all(r["same_precision"] for r in mine)
        verdicts[precision] = {"median_p50_over_median": round(median_ratio, 4),
                               "ran_at": sorted({str(r["profile"]["precision"]) for r in mine}),
                               "benchmark_app_ran_at": sorted({str(r["bapp"]["precision"]) for r in mine}),
                               "verdict": "agree within 10%" if agree else "DISAGREE (ratio or precision)"}
    report = {"schema": "edgeprune.profile_vs_benchmark_app/2", "model": xml.name, "arch": args.arch,
              "batch": args.batch, "threads": args.threads, "seconds": args.seconds, "host": host,
              "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "rounds": rounds, "verdicts": verdicts}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# `edgeprune profile` vs OpenVINO `benchmark_app` ({xml.name}, batch {args.batch}, "
             f"{args.threads} threads)", "",
             f"Command: `{report['command']}`  ",
             f"Host: {host['cpu_model']} ({host['architecture']}), {host['logical_cores']} logical cores, "
             f"ISA {', '.join(host['isa'])}; openvino {host['versions'].get('openvino')}, Python "
             f"{host['versions'].get('python')}. Shared with other jobs while measured (see 'busy' and the "
             "1-minute load average before → after each round).", "",
             "Commands (each round and precision; tool order alternates; `default` passes no precision):", "",
             "```"]
    for precision in precisions:
        first = next(r for r in rounds if r["precision"] == precision)
        lines += [first["bapp"]["command"], first["profile"]["command"]]
    lines += ["```", "",
              "| round | precision asked | ran at (bapp / edgeprune) | order | benchmark_app median / avg / min ms (n) | "
              "edgeprune p50 / mean / min ms (n) | p50 / median | busy | load avg |",
              "|---:|---|---|---|---|---|---:|---:|---|"]
    for index, r in enumerate(rounds):
        b, p = r["bapp"], r["profile"]
        busy = "–" if p["other_load_cores"] is None else f"{p['other_load_cores'] / p['cpus']:.0%}"
        loads = " → ".join("–" if v is None else f"{v[0]:.1f}" for v in r["load_average"])
        lines.append(f"| {index // len(precisions) + 1} | {r['precision']} | {b['precision']} / {p['precision']} | "
                     f"{' → '.join(r['order'])} | {b['median']:.2f} / {b['average']:.2f} / "
                     f"{b['min']:.2f} ({b['count']}) | {p['p50']:.2f} / {p['mean']:.2f} / {p['min']:.2f} "
                     f"({p['count']}) | {r['p50_over_median']:.3f} | {busy} | {loads} |")
    lines.append("")
    for precision, v in verdicts.items():
        lines.append(f"**{precision}: ran at {', '.join(v['ran_at'])} (benchmark_app "
                     f"{', '.join(v['benchmark_app_ran_at'])}); median ratio edgeprune p50 / benchmark_app median "
                     f"{v['median_p50_over_median']:.3f} — {v['verdict']}.**  ")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
