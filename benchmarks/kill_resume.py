"""Kill a small bench run at random points, resume it, and check it ends like a clean run.

    python benchmarks/kill_resume.py --trials 10 --out /tmp/kill_resume \
        --results benchmarks/results/kill_resume

A clean run of a tiny suite (smallcnn, 1 epoch on 300 digits, one magnitude-pruned copy,
an FGSM transfer set, evaluation of both on the clean split and the set) gives the
reference tables. Each trial starts the same run in a fresh folder, sends SIGKILL (to the
whole process group: the run and its cell workers, as an OOM killer or `kill -9` of a job
would) or SIGTERM (to the run only, as `timeout` and CI cancellation do) at a random moment
within the clean run's duration, then runs the same command again. A trial passes when the
resumed run exits 0 with models.csv and accuracy.csv byte-identical to the clean run's, no
unfinished cell folder, no hidden temp file anywhere under the output, and no process of
the killed run left alive.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

SUITE = {
    "suite": "kill-resume",
    "datasets": [{"spec": "digits", "limit_train": 300, "limit_test": 100}],
    "models": [{"arch": "smallcnn", "train": {"epochs": 1, "batch_size": 64, "milestones": ""}}],
    "pruning": [{"name": "tfmot", "method": "tfmot", "sparsity": [0.5], "args": {"epochs": 0}}],
    "attacks": [{"attack": "fgsm", "limit": 40, "args": {"eps": 0.1}}],
    "evaluate": {"limit": 100},
    "execution": {"workers": 1},
}
TABLES = ("models.csv", "accuracy.csv")


def bench_command(suite: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "edgeprune", "bench", str(suite), "-o", str(out), "-q"]


def run(suite: Path, out: Path) -> tuple[int, float, str]:
    started = time.perf_counter()
    done = subprocess.run(bench_command(suite, out), capture_output=True, text=True)
    return done.returncode, time.perf_counter() - started, done.stderr


def stray_files(out: Path) -> list[str]:
    strays = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name.startswith(".")
              and ".tmp" in p.name]
    staging = out / "cache" / ".staging"
    if staging.exists():
        strays += [str(p.relative_to(out)) for p in staging.iterdir()]
    return strays


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def trial(index: int, suite: Path, root: Path, clean_seconds: float, reference: dict[str, str],
          rng: random.Random) -> dict:
    out = root / f"trial{index:02d}"
    signum = signal.SIGKILL if index % 2 == 0 else signal.SIGTERM
    # A random moment of the run; on a busy host a run can end first: then start afresh earlier.
    for attempt in range(4):
        shutil.rmtree(out, ignore_errors=True)
        at = rng.uniform(0.05, 0.9 if attempt == 0 else 0.5) * clean_seconds
        process = subprocess.Popen(bench_command(suite, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        time.sleep(at)
        finished_before = process.poll() is not None
        if not finished_before:
            break
        process.communicate()
    if not finished_before:
        if signum == signal.SIGKILL:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    _, stderr = process.communicate()
    killed_code = process.returncode
    last_line = (stderr.strip().splitlines() or [""])[-1]
    deadline = time.time() + 30
    while group_alive(process.pid) and time.time() < deadline:
        time.sleep(0.2)
    left_alive = group_alive(process.pid)
    if left_alive:  # do not let a stray worker disturb the next trial
        os.killpg(process.pid, signal.SIGKILL)
    strays_after_kill = stray_files(out) if out.exists() else []
    code, seconds, resume_err = run(suite, out)
    state = json.loads((out / "bench-state.json").read_text()) if (out / "bench-state.json").exists() else {}
    counts = {k: v for k, v in (state.get("runs") or [{}])[-1].items() if k in ("reused", "ran", "failed", "blocked")}
    tables = {name: (out / "report" / name).read_text() if (out / "report" / name).exists() else None
              for name in TABLES}
    strays = stray_files(out)
    return {"trial": index, "signal": signal.Signals(signum).name, "at_s": round(at, 2), "attempts": attempt + 1,
            "finished_before_signal": finished_before, "killed_exit": killed_code,
            "killed_last_line": last_line[:200], "left_alive": left_alive,
            "unfinished_after_kill": len(strays_after_kill), "resume_exit": code, "resume_s": round(seconds, 1),
            "resume_counts": counts, "tables_equal": tables == reference, "strays": strays,
            "ok": code == 0 and tables == reference and not strays and not left_alive,
            "resume_error": None if code == 0 else resume_err.strip().splitlines()[-1:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/kill_resume"))
    parser.add_argument("--results", type=Path, default=None, help="Folder for results.json and results.md.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    suite = args.out / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    load_before = os.getloadavg()
    code, clean_seconds, err = run(suite, args.out / "clean")
    if code != 0:
        print(err, file=sys.stderr)
        return 1
    reference = {name: (args.out / "clean" / "report" / name).read_text() for name in TABLES}
    print(f"clean run: {clean_seconds:.1f} s", flush=True)
    rng = random.Random(args.seed)
    trials = []
    for index in range(args.trials):
        result = trial(index, suite, args.out, clean_seconds, reference, rng)
        trials.append(result)
        print(json.dumps(result), flush=True)
    passed = sum(t["ok"] for t in trials)
    record = {
        "command": "python benchmarks/kill_resume.py " + " ".join(sys.argv[1:]),
        "host": {"machine": platform.machine(), "processor": platform.processor() or None,
                 "cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "suite": SUITE, "clean_seconds": round(clean_seconds, 1), "trials": trials,
        "passed": passed, "total": len(trials),
    }
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "results.json").write_text(json.dumps(record, indent=2) + "\n")
        (args.results / "results.md").write_text(to_markdown(record))
    print(f"{passed}/{len(trials)} trials resumed to the clean run's tables with no stray files")
    return 0 if passed == len(trials) else 1


def to_markdown(record: dict) -> str:
    lines = [
        "# Kill and resume a bench run",
        "",
        f"Command: `{record['command']}`  ",
        f"Host: {record['host']['cpus']} CPUs, {record['host']['machine']}, Python {record['host']['python']}; "
        f"load average before {record['load_average_before']}, after {record['load_average_after']} "
        "(the host was shared with other jobs).  ",
        f"Clean run: {record['clean_seconds']} s. **{record['passed']}/{record['total']} trials** ended, after "
        "the resume, with models.csv and accuracy.csv identical to the clean run's, no unfinished cell "
        "folder, no hidden temp file and no process of the killed run alive.",
        "",
        "| trial | signal | at (s) | killed run exit | its last line | left by the kill | resume exit | resume "
        "(s) | resumed cells | tables equal | strays |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in record["trials"]:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(t["resume_counts"].items()))
        note = "finished first" if t["finished_before_signal"] else t["killed_last_line"].replace("|", "/")[:80]
        lines.append(f"| {t['trial']} | {t['signal']} | {t['at_s']} | {t['killed_exit']} | {note} | "
                     f"{t['unfinished_after_kill']} unfinished | {t['resume_exit']} | {t['resume_s']} | {counts} | "
                     f"{t['tables_equal']} | {len(t['strays'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
