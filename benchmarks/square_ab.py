"""Benchmark: AutoAttack's Square stage through the TensorFlow forward (before) and the TFLite
conversion (after, `square_forward="auto"`), A/B on the same model and points, alternating.

The points are those AutoAttack hands Square: the images `evaluate --limit N` attacks that
stay robust after APGD-CE, APGD-T and FAB-T (torchattacks' 10-step version), computed once
and cached under --work. Each repetition runs Square (same seed, same query budget) once per
forward, alternating, so both see the same host load; per run: wall seconds, process CPU
seconds (user + system of this process: the work done, much less sensitive to other jobs
than the wall time), points fooled, queries spent, the load average. Both runs must fool
the same points with the same queries (the two forwards' logits differ by ~1e-6).

    python benchmarks/square_ab.py --model aa-ref/resnet8.h5 \\
        --data ../shared/data/cifar10_sample.npz --work aa-ref/ab --eps 1/255,2/255

--runtime adds Square on `.tflite` / `.xml` exports of the model through the runtime interface
(`bucketed_predict`, what `evaluate --autoattack` runs for them), timed the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Keras .h5 model (fed [0, 1] images)")
    parser.add_argument("--data", required=True, help="CIFAR-10 sample .npz (Keras layout)")
    parser.add_argument("--work", required=True, help="folder for the cached Square points")
    parser.add_argument("--limit", type=int, default=200, help="test images (as `evaluate --limit`)")
    parser.add_argument("--eps", default="1/255,2/255", help="L-inf bounds, comma-separated")
    parser.add_argument("--n-queries", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=2, help="A/B pairs per eps")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (TFLite uses the same)")
    parser.add_argument("--runtime", nargs="*", default=[], help=".tflite / .xml exports to time as well")
    parser.add_argument("--per-query", type=int, default=0, metavar="N",
                        help="instead of whole Square runs: time N forwards of the points, per forward and repetition")
    parser.add_argument("--out", default="benchmarks/results/square_ab", help="output stem (.json, .md)")
    return parser.parse_args(argv)


def square_points(args: argparse.Namespace, eps_text: str):
    """(x, y) still robust after the white-box stages at eps (cached npz)."""
    import numpy as np

    cache = Path(args.work) / f"square_points_{eps_text.strip().replace('/', '_')}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["x"], data["y"]
    from edgeprune.attacks.autoattack import AutoAttackConfig, run_autoattack
    from edgeprune.attacks.runner import logits_function
    from edgeprune.modelio import load_keras_model
    from edgeprune.robustness import _load_split

    _, x, y = _load_split(f"npz:{args.data}", [Path(args.model)], args.limit)
    model_fn, _ = logits_function(load_keras_model(args.model), probe=x)
    config = AutoAttackConfig(eps=float(Fraction(eps_text.strip())), version="torchattacks", batch_size=256,
                              stages=("apgd-ce", "apgd-t", "fab-t"))
    robust = run_autoattack(model_fn, x, y, config, run_checks=False).robust
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x[robust], y=y[robust])
    return x[robust], y[robust]


def timed_square(predict, x, y, eps: float, n_queries: int) -> dict:
    import numpy as np

    from edgeprune.attacks.square import square_attack

    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    result = square_attack(predict, x, y, eps=eps, seed=0, n_queries=n_queries)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert float(np.abs(result.x_adv - x).max()) <= eps + 1e-6
    return {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "fooled": int((result.margins <= 0).sum()), "queries": int(result.queries.sum()),
            "fooled_mask": (result.margins <= 0).tolist(),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


def per_query(forwards: dict, x, reps: int, n: int) -> None:
    """Milliseconds per forward of all points (wall, process CPU), alternating forwards."""
    import numpy as np

    wall: dict[str, list[float]] = {label: [] for label in forwards}
    cpu: dict[str, list[float]] = {label: [] for label in forwards}
    for predict in forwards.values():
        predict(x)
    for _ in range(reps):
        for label, predict in forwards.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(n):
                predict(x)
            wall[label].append((time.perf_counter() - started) / n * 1000)
            cpu[label].append((time.process_time() - cpu_started) / n * 1000)
    for label in forwards:
        print(f"{label}: {len(x)} points, wall median {np.median(wall[label]):.1f} ms (min {min(wall[label]):.1f}), "
              f"CPU median {np.median(cpu[label]):.1f} ms, load {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import warnings

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    warnings.simplefilter("ignore")
    from edgeprune.attacks.autoattack import bucketed_predict, numpy_predict, square_forward
    from edgeprune.attacks.runner import logits_function
    from edgeprune.modelio import load_keras_model
    from edgeprune.runtime import load

    model_fn, _ = logits_function(load_keras_model(args.model))
    rows = []
    for eps_text in args.eps.split(","):
        eps = float(Fraction(eps_text.strip()))
        x, y = square_points(args, eps_text)
        before = numpy_predict(model_fn, 256)
        started = time.perf_counter()
        after, name = square_forward(model_fn, before, x, "auto")
        build = time.perf_counter() - started
        forwards = {"tensorflow": before, name: after}
        for path in args.runtime:
            predictor = load(path, threads=args.threads)
            forwards[Path(path).name] = bucketed_predict(predictor.predict, 256)
        if args.per_query:
            per_query(forwards, x, args.reps, args.per_query)
            continue
        runs: dict[str, list[dict]] = {label: [] for label in forwards}
        for rep in range(args.reps):
            for label, predict in forwards.items():
                run = timed_square(predict, x, y, eps, args.n_queries)
                runs[label].append(run)
                print(f"eps {eps_text} rep {rep} {label}: {run['wall_seconds']} s wall, {run['cpu_seconds']} s CPU, "
                      f"fooled {run['fooled']}/{len(y)}, load {run['load_before']} -> {run['load_after']}", flush=True)
        masks = {label: [r.pop("fooled_mask") for r in rs] for label, rs in runs.items()}
        same = all(m == masks["tensorflow"][0] for ms in masks.values() for m in ms)
        rows.append({"eps": eps_text.strip(), "points": int(len(y)), "forward_after": name,
                     "tflite_build_seconds": round(build, 2), "same_points_fooled": same, "runs": runs})
        write(args, rows)  # after every eps: an interrupted run keeps what it measured


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    import numpy as np

    host = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    command = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "host": host, "threads": args.threads,
                                                    "n_queries": args.n_queries, "rows": rows}, indent=2) + "\n")
    lines = ["# Square (AutoAttack's last stage): TensorFlow forward vs TFLite conversion, A/B", "",
             f"Square L-inf, {args.n_queries} queries, p_init 0.8, seed 0, on the points still robust after "
             f"APGD-CE / APGD-T / FAB-T (10 steps) of `{Path(args.model).name}` on {args.limit} test images; "
             f"{args.threads} threads; {args.reps} alternating repetitions per forward (median shown). "
             "CPU = this process's user + system seconds.", "",
             "| eps | points | forward | wall (s) | CPU (s) | fooled | queries | load before → after |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for row in rows:
        for label, runs in row["runs"].items():
            wall = float(np.median([r["wall_seconds"] for r in runs]))
            cpu = float(np.median([r["cpu_seconds"] for r in runs]))
            loads = ", ".join(f"{r['load_before']:.1f} → {r['load_after']:.1f}" for r in runs)
            lines.append(f"| {row['eps']} | {row['points']} | {label} | {wall:.1f} | {cpu:.1f} | {runs[0]['fooled']} | "
                         f"{runs[0]['queries']} | {loads} |")
    lines += ["", "Same points fooled by every forward: " + ", ".join(
        f"{r['eps']}: {'yes' if r['same_points_fooled'] else 'NO'}" for r in rows),
              "TFLite conversion (once per model): " + ", ".join(f"{r['tflite_build_seconds']} s" for r in rows), "",
              f"Host: {platform.processor() or platform.machine()} ({host['cpus']} CPUs), Python {host['python']}.",
              f"Command: `{command}`", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
