"""Acceptance for the CI gate: false-alarm rate at default settings, and detection of a ~1.25x slower model.

Profiles are made exactly as `edgeprune profile MODEL.xml` makes them with its defaults (batch
1, 32 and 64; threads = CPUs; >= 10 runs and >= 1 s per cell, shared by 16 fresh processes, 8 in the run of 2026-11-28) and
judged by `compare_profiles` with its defaults (--max-slowdown 10%, false-alarm rate 1%).

Models (OpenVINO IR, built with the opset API, fresh weights: weights do not change timing):
a plain conv net of `--depth` 3x3 convs (32 channels, 32x32 input) as `net`, and the same net
with one more conv (depth + 1: 1.32x the MACs at depth 4) as the slower candidate, under the
same name. The slowdown actually measured (median over repeats of the candidate/baseline p50
ratio of the paired base profile) is reported beside the detection rate.

Sequence (interleaved, so drift in a shared host's load hits both alike): base profile B0; then
for r = 1..repeats: base profile Br and, for the first `--slow-repeats`, a slow profile Sr.
Self-compares: (B[r-1], Br), r = 1..repeats (a CI baseline is a previous run of the same
model); detection: (B[r-1], Sr).

    python benchmarks/compare_gate.py --repeats 100 --slow-repeats 20 --out benchmarks/results/compare_gate

On a many-core host, independent slices can run side by side (each pinned with taskset to its
own CPUs: `edgeprune profile`'s default threads = the CPUs it may use) and be joined:

    taskset -c 0-3 python benchmarks/compare_gate.py --repeats 25 --slow-repeats 5 --out s0 &  ...
    python benchmarks/compare_gate.py --merge s0.json s1.json s2.json s3.json --out benchmarks/results/compare_gate
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build_models(work: Path, depth: int) -> tuple[Path, Path]:
    """`net` of `depth` convs and the slower `net` of depth + 1 (reused if already in `work`)."""
    base, slow = work / "net.xml", work / "slow" / "net.xml"
    if not (base.exists() and slow.exists()):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_profile import ov_convnet  # the TensorFlow-free IR builder the tests use

        slow.parent.mkdir(parents=True, exist_ok=True)
        ov_convnet(base, channels=32, size=32, depth=depth)
        ov_convnet(slow, channels=32, size=32, depth=depth + 1)
    return base, slow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--slow-repeats", type=int, default=20)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--inference-precision", default="default")
    parser.add_argument("--out", default="benchmarks/results/compare_gate")
    parser.add_argument("--work", default=None, help="keep the models and profiles here (models reused)")
    parser.add_argument("--merge", nargs="+", default=None, help="join the JSON results of parallel slices")
    parser.add_argument("--replay", action="store_true",
                        help="judge the profiles already saved in --work (B0.json, B1.json, S1.json, ...) again, "
                             "up to the last complete repeat, without measuring")
    parser.add_argument("--regroup", type=int, default=None, metavar="K",
                        help="with --replay: judge windows of K consecutive profiles merged into one profile "
                             "each (B[r..r+K-1] vs B[r+K..r+2K-1], and vs the K slow profiles S[r+1..r+K]), "
                             "sliding by one: K one-process profiles make a K-process one (the process-level "
                             "rule replayed on processes measured one after another), K 8-process profiles a "
                             "8K-process one")
    parser.add_argument("--pair-replay", type=int, default=None, metavar="K",
                        help="with --work of a default (unpaired) run: the paired rule replayed on its saved "
                             "profiles, pairing process t of K consecutive profiles with process t of the K "
                             "measured next (detection: B[r+1..r+K] with S[r..r+K-1], each S right after its "
                             "B; self: B[r], B[r+2], ... with B[r+1], B[r+3], ...): pairs ~20 s apart")
    parser.add_argument("--paired", action="store_true",
                        help="the within-profile gate: each repeat profiles net, its twin (same IR, another "
                             "name) and, for the first --slow-repeats, the slower net as 'cand', in one "
                             "interleaved profile; judged by `compare --baseline-model net "
                             "--candidate-model twin|cand`. Resumes: profiles already in --work are reused "
                             "(wall_s then covers this invocation only; profiles_reused says how many)")
    parser.add_argument("--processes", type=int, default=None,
                        help="processes per cell (default: edgeprune profile's)")
    args = parser.parse_args()
    if args.pair_replay:
        return pair_replay(Path(args.work), args.pair_replay, Path(args.out))
    if args.regroup:
        return regroup(Path(args.work), args.regroup, Path(args.out))
    if args.merge:
        return write([part for p in args.merge for part in json.loads(Path(p).read_text())["slices"]],
                     Path(args.out), args.depth)

    import tempfile

    from edgeprune.compare import CompareConfig, compare_profiles
    from edgeprune.host import host_fingerprint
    from edgeprune.io import write_json
    from edgeprune.profile import ProfileConfig, model_size, profile_models

    config = ProfileConfig(threads=(len(os.sched_getaffinity(0)),), inference_precision=args.inference_precision,
                           **({"processes": args.processes} if args.processes else {}))
    gate = CompareConfig()
    work = Path(args.work or tempfile.mkdtemp(prefix="edgeprune-gate-"))
    work.mkdir(parents=True, exist_ok=True)
    base, slow = build_models(work, args.depth)
    if args.paired:
        return paired(args, config, gate, work, base, slow)
    macs = {"base": model_size(base)["macs"], "slow": model_size(slow)["macs"]}
    started = time.time()
    loads = []

    def profile(path: Path, name: str) -> dict:
        if args.replay:
            if not (work / f"{name}.json").exists():
                raise FileNotFoundError(name)
            return json.loads((work / f"{name}.json").read_text())
        report = profile_models([path], config, progress=False)
        write_json(work / f"{name}.json", report)
        loads.append(os.getloadavg()[0])
        return report

    rows = []
    previous = profile(base, "B0")
    for r in range(1, args.repeats + 1):
        try:
            current = profile(base, f"B{r}")
            pairs = [("same model", current)]
            if r <= args.slow_repeats:
                pairs.append(("slower model", profile(slow, f"S{r}")))
        except FileNotFoundError:  # --replay: the run stopped before this repeat
            break
        for kind, candidate in pairs:
            rows.extend(judged(kind, r, compare_profiles(previous, candidate, gate)))
        previous = current
    wall = time.time() - started
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result = {"schema": "edgeprune.bench.compare_gate/2", "command": command, "host": host_fingerprint(),
              "cpus": sorted(os.sched_getaffinity(0)),
              "profile_settings": {k: v for k, v in config.__dict__.items() if k != "allow_unsafe"},
              "gate": {"max_slowdown": gate.max_slowdown, "alpha": gate.alpha}, "wall_s": round(wall, 1),
              "macs": macs, "loads": loads, "rows": rows}
    return write([result], Path(args.out), args.depth)


def saved_series(work: Path, prefix: str, first: int) -> list[dict]:
    """The saved profiles PREFIX{first}.json, PREFIX{first + 1}.json, ... up to the first one missing."""
    profiles = []
    while (path := work / f"{prefix}{first + len(profiles)}.json").exists():
        profiles.append(json.loads(path.read_text()))
    return profiles


def judged(kind: str, repeat: int, report: dict) -> list[dict]:
    """One comparison's rows (one per latency cell), printed as a line; latency only: the slower
    net's file is also larger, a size regression by itself."""
    flagged = "regression" if any(c["verdict"] == "regression" for c in report["latency"]) else "pass"
    print(f"{kind} #{repeat}: latency {flagged}  " + ", ".join(
        f"b{c['batch']} {c['verdict']} (x{c['ratio']:.3f} >= x{c['ratio_lower']:.3f}, busy {c['busy']:.0%})"
        for c in report["latency"]) + f"  load {os.getloadavg()[0]:.1f}", flush=True)
    return [{"candidate": kind, "repeat": repeat, "batch": cell["batch"], "threads": cell["threads"],
             "runs_at": cell["runs_at"], "verdict": cell["verdict"], "ratio": cell["ratio"],
             "ratio_lower": cell["ratio_lower"], "limit": cell["limit"], "p50_ratio": cell["p50_ratio"],
             "min_ratio": cell["min_ratio"], "busy": cell["busy"], "sample": cell.get("sample", "runs"),
             "runs": [cell["baseline_runs"], cell["candidate_runs"]], "comparison": flagged}
            for cell in report["latency"]]


def paired(args, config, gate, work: Path, base: Path, slow: Path) -> int:
    """--paired: self-compares and detections judged within one interleaved profile per repeat."""
    import shutil

    from edgeprune.compare import compare_within
    from edgeprune.host import host_fingerprint
    from edgeprune.io import write_json
    from edgeprune.profile import model_size, profile_models

    named = {}
    for name, source in (("twin", base), ("cand", slow)):  # other names, same files: one profile pairs by name
        for suffix in (".xml", ".bin"):
            shutil.copyfile(source.with_suffix(suffix), work / f"{name}{suffix}")
        named[name] = work / f"{name}.xml"
    macs = {"base": model_size(base)["macs"], "slow": model_size(slow)["macs"]}
    started, loads, rows, reused = time.time(), [], [], 0
    for r in range(1, args.repeats + 1):
        models = [base, named["twin"]] + ([named["cand"]] if r <= args.slow_repeats else [])
        saved = work / f"P{r}.json"
        if args.replay and not saved.exists():
            break
        if saved.exists():  # --replay, or a run resumed in the same --work: measured before
            report = json.loads(saved.read_text())
            reused += 1
        else:
            report = profile_models(models, config, progress=False)
            write_json(saved, report)
            loads.append(os.getloadavg()[0])
        pairs = [("same model", "twin")] + ([("slower model", "cand")] if r <= args.slow_repeats else [])
        for kind, name in pairs:
            rows.extend(judged(kind, r, compare_within(report, "net", name, gate, path=f"P{r}")))
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result = {"schema": "edgeprune.bench.compare_gate/2", "command": command, "host": host_fingerprint(),
              "cpus": sorted(os.sched_getaffinity(0)), "mode": "paired within one profile",
              "profile_settings": {k: v for k, v in config.__dict__.items() if k != "allow_unsafe"},
              "gate": {"max_slowdown": gate.max_slowdown, "alpha": gate.alpha},
              "wall_s": round(time.time() - started, 1), "profiles_reused": reused, "macs": macs, "loads": loads,
              "rows": rows}
    return write([result], Path(args.out), args.depth)


def pair_replay(work: Path, k: int, out: Path) -> int:
    """--pair-replay: the paired rule on an unpaired run's profiles (see its help)."""
    from edgeprune.compare import DEFAULT_ALPHA, paired_ratio_interval

    def medians(profile: dict) -> dict[int, list[float]]:
        return {int(c["batch"]): c["process_p50_ms"] for c in profile["results"]}

    base = [medians(p) for p in saved_series(work, "B", 0)]
    slow = [medians(p) for p in saved_series(work, "S", 1)]
    batches = sorted(base[0])
    alpha = DEFAULT_ALPHA / len(batches)

    def pooled(profiles: list[dict]) -> dict[int, list[float]]:
        return {b: [v for p in profiles for v in p[b]] for b in batches}

    def flagged(b: dict, c: dict) -> bool:
        return any(paired_ratio_interval(b[batch], c[batch], alpha)[0] > 1.10 for batch in batches)

    detect = [flagged(pooled(base[r + 1:r + 1 + k]), pooled(slow[r:r + k])) for r in range(len(slow) - k + 1)]
    same = [flagged(pooled(base[r:r + 2 * k:2]), pooled(base[r + 1:r + 2 * k:2])) for r in range(len(base) - 2 * k + 1)]
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result = {"schema": "edgeprune.bench.compare_gate_pair_replay/1", "command": command,
              "pairs_per_cell": k * len(base[0][batches[0]]), "alpha_per_cell": alpha,
              "summary": {"same model": {"comparisons": len(same), "flagged": sum(same)},
                          "slower model": {"comparisons": len(detect), "flagged": sum(detect)}}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def regroup(work: Path, k: int, out: Path) -> int:
    """Replay the process-level rule on saved profiles, K at a time (see --regroup)."""
    from edgeprune.compare import CompareConfig, compare_profiles
    from edgeprune.profile import merge_processes

    base, slow = saved_series(work, "B", 0), saved_series(work, "S", 1)

    def merged(profiles: list[dict]) -> dict:
        cells = {}
        for profile in profiles:
            for cell in profile["results"]:
                cells.setdefault((cell["model"], cell["format"], cell["batch"], cell["threads"]), []).append(cell)
        return {**profiles[0], "results": [_merged_cell(parts) for parts in cells.values()]}

    def _merged_cell(parts: list[dict]) -> dict:
        """One-process cells merge as processes; multi-process cells keep every process's median."""
        cell = merge_processes(parts)
        if all(part.get("process_p50_ms") for part in parts):
            cell["process_p50_ms"] = [p50 for part in parts for p50 in part["process_p50_ms"]]
            cell["processes"] = len(cell["process_p50_ms"])
        return cell

    gate = CompareConfig()
    outcome: dict[str, list] = {"same model": [], "slower model": []}
    for r in range(len(base) - 2 * k + 1):
        outcome["same model"].append(compare_profiles(merged(base[r:r + k]), merged(base[r + k:r + 2 * k]), gate))
    for r in range(len(slow) - k + 1):  # S[r+1] was measured right after B[r+1]
        outcome["slower model"].append(compare_profiles(merged(base[r:r + k]), merged(slow[r:r + k]), gate))
    summary = {kind: {"comparisons": len(reports),
                      "flagged": sum(any(c["verdict"] == "regression" for c in rep["latency"]) for rep in reports),
                      "flagged_cells": sum(c["verdict"] == "regression" for rep in reports for c in rep["latency"]),
                      "cells": sum(len(rep["latency"]) for rep in reports),
                      "sample": sorted({c["sample"] for rep in reports for c in rep["latency"]})}
               for kind, reports in outcome.items()}
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result = {"schema": "edgeprune.bench.compare_gate_regroup/1", "command": command, "processes": k,
              "base_profiles": len(base), "slow_profiles": len(slow), "summary": summary}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def write(results: list[dict], out: Path, depth: int) -> int:
    """Summary JSON + markdown of one run or of parallel slices (rows keyed by slice and repeat)."""
    rows = [{**row, "slice": index} for index, result in enumerate(results) for row in result["rows"]]
    loads = [v for result in results for v in result["loads"]] or [float("nan")]
    first = results[0]
    config, gate, macs, host = first["profile_settings"], first["gate"], first["macs"], first["host"]
    wall = max(result["wall_s"] for result in results)

    def comparisons(kind: str) -> list[str]:
        keys = sorted({(r["slice"], r["repeat"]) for r in rows if r["candidate"] == kind})
        return [next(r["comparison"] for r in rows if r["candidate"] == kind and (r["slice"], r["repeat"]) == key)
                for key in keys]

    same, slower = comparisons("same model"), comparisons("slower model")
    batches = sorted({r["batch"] for r in rows})
    measured = {b: statistics.median(r["p50_ratio"] for r in rows if r["candidate"] == "slower model"
                                     and r["batch"] == b) for b in batches}
    per_batch = {b: {"false_alarm_cells": sum(r["verdict"] == "regression" for r in rows
                                              if r["candidate"] == "same model" and r["batch"] == b),
                     "detected_cells": sum(r["verdict"] == "regression" for r in rows
                                           if r["candidate"] == "slower model" and r["batch"] == b),
                     "slow_median_p50_ratio": round(measured[b], 3)} for b in batches}
    def unwidened(kind: str) -> int:
        """Comparisons whose lower bound clears the bare threshold: the verdicts without the load widening."""
        keys = {(r["slice"], r["repeat"]) for r in rows if r["candidate"] == kind
                and r["ratio_lower"] > 1 + gate["max_slowdown"]}
        return len(keys)

    summary = {"self_compares": len(same), "false_alarms": same.count("regression"),
               "slow_compares": len(slower), "detected": slower.count("regression"),
               "without_load_widening": {"false_alarms": unwidened("same model"),
                                         "detected": unwidened("slower model")},
               "macs": {**macs, "ratio": round(macs["slow"] / macs["base"], 3)}, "per_batch": per_batch,
               "load_average_1min": {"min": round(min(loads), 2), "median": round(statistics.median(loads), 2),
                                     "max": round(max(loads), 2)}}
    command = " ; ".join(result["command"] for result in results)
    slices = "" if len(results) == 1 else (
        f"{len(results)} slices side by side, pinned to CPUs " + ", ".join(
            f"{r['cpus'][0]}-{r['cpus'][-1]}" for r in results) + "; ")
    merged = {"schema": "edgeprune.bench.compare_gate/2", "command": command, "host": host,
              "summary": summary, "slices": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(merged, indent=2) + "\n")
    lines = [
        "# CI gate: false alarms at default settings vs a ~1.25x slower model",
        "",
        f"Command: `{command}`  ",
        f"Host: {host.get('cpu_model')} ({host.get('architecture')}), {host.get('logical_cores')} logical cores; "
        f"{slices}1-minute load average {summary['load_average_1min']['min']}–"
        f"{summary['load_average_1min']['max']} (median {summary['load_average_1min']['median']}) over the "
        f"run; wall {wall / 60:.0f} min.  ",
        f"Profiles: `edgeprune profile net.xml` defaults (batch {', '.join(map(str, config['batches']))}; "
        f"{config['threads'][0]} threads = the CPUs it may use; >= {config['runs']} runs and >= "
        f"{config['min_time_s']:g} s per cell, shared by {config.get('processes', 1)} fresh process(es); inference precision "
        f"{config['inference_precision']}). Gate: `edgeprune compare` defaults (max slowdown "
        f"{gate['max_slowdown']:.0%}, false-alarm rate {gate['alpha']:.0%} per comparison).  ",
        f"Models: conv net of {depth} 3x3 convs, 32 channels, 32x32 input ({macs['base'] / 1e6:.1f} M MACs) "
        f"and with {depth + 1} convs ({macs['slow'] / 1e6:.1f} M MACs, x{summary['macs']['ratio']}) under the "
        "same name.",
        "",
        f"**Self-compares: {summary['false_alarms']} false alarms in {summary['self_compares']}** "
        f"(each (previous base profile, next base profile)). "
        f"**Slower model: flagged in {summary['detected']} of {summary['slow_compares']}** (a comparison "
        "counts as flagged when any of its latency cells is a regression; the slower net's larger file, a size "
        "regression by itself, is left out).",
        "",
        f"Without the load widening (limit x{1 + gate['max_slowdown']:.2f} always) the same rows would give "
        f"{summary['without_load_widening']['false_alarms']} false alarms and "
        f"{summary['without_load_widening']['detected']} of {len(slower)} detections.",
        "",
        "| batch | false-alarm cells | slower model flagged (cells) | slower model's measured p50 ratio (median) |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {b} | {v['false_alarm_cells']} / {len(same)} | {v['detected_cells']} / {len(slower)} | "
              f"x{v['slow_median_p50_ratio']:.3f} |" for b, v in per_batch.items()]
    lines += ["", "Verdict counts per candidate (cells):", ""]
    for kind in ("same model", "slower model"):
        counts: dict[str, int] = {}
        for r in rows:
            if r["candidate"] == kind:
                counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        lines.append(f"- {kind}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    lower = [r["ratio_lower"] for r in rows if r["candidate"] == "same model"]
    lines += ["", f"Self-compares: ratio lower bounds {min(lower):.3f}–{max(lower):.3f} (a regression needs > "
                  f"x{1 + gate['max_slowdown']:.2f}, more when the host was busy). Per-cell rows in the JSON."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
