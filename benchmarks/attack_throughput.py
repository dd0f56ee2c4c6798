"""PGD-10 throughput: edgeprune's compiled loop vs CleverHans' PGD vs ART's PGD, one run.

Same model, same images, same eps / step / steps, no random start (so the three compute the
same iterates and their adversarial accuracy must agree). Each method is warmed up once
(tracing excluded) and timed `--repeats` times, interleaved so machine load hits all alike;
the median is reported. Ratios within one run are the figure to trust on a shared host.

    python benchmarks/attack_throughput.py --data npz:PATH/cifar10_sample.npz \
        --out benchmarks/results/attack_throughput
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset spec, e.g. npz:.../cifar10_sample.npz")
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--art-batch", type=int, default=32, help="ART's default batch_size is 32")
    parser.add_argument("--out", required=True, help="output stem (.json and .md are written)")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    from edgeprune.attacks.gradient import pgd
    from edgeprune.attacks.runner import AttackConfig, logits_function, run_attack
    from edgeprune.data import load_dataset, stratified_indices
    from edgeprune.host import host_fingerprint
    from edgeprune.io import versions, write_json
    from edgeprune.train import TrainConfig, train_model

    load_start = os.getloadavg()
    data = load_dataset(args.data)
    model, trained = train_model(TrainConfig(arch=args.arch, epochs=args.epochs, width=args.width,
                                             milestones=()), data, progress=False)
    x_all, y_all = data.split("test")
    keep = stratified_indices(y_all, args.images, seed=0)
    x, y = x_all[keep], y_all[keep]
    eps, step, steps = args.eps, args.eps / 4, args.steps
    model_fn, _ = logits_function(model)
    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=data.num_classes, input_shape=x.shape[1:], clip_values=(0.0, 1.0),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    config = AttackConfig.create("pgd", eps=eps, seed=0, batch_size=len(x),
                                 params={"steps": steps, "step_size": step, "random_start": False})

    methods = {
        "edgeprune run_attack (batch 256, incl. checks + metrics)": lambda xs, ys: run_attack(
            model, xs, ys, config).x_adv,
        "edgeprune pgd() function (batch 256)": lambda xs, ys: pgd(
            model_fn, xs, ys, eps=eps, norm="linf", seed=0, steps=steps, step_size=step, random_start=False),
        "cleverhans projected_gradient_descent (whole batch)": lambda xs, ys: projected_gradient_descent(
            model_fn, tf.constant(xs), eps, step, steps, np.inf, clip_min=0.0, clip_max=1.0, y=tf.constant(ys),
            rand_init=False).numpy(),
        f"ART ProjectedGradientDescent (batch {args.art_batch})": lambda xs, ys: ProjectedGradientDescent(
            classifier, eps=eps, eps_step=step, max_iter=steps, num_random_init=0, batch_size=args.art_batch,
            verbose=False).generate(xs, y=ys),
    }
    for fn in methods.values():  # warm-up: tracing and first-call costs excluded
        fn(x[:32], y[:32])
    times: dict[str, list[float]] = {name: [] for name in methods}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            started = time.perf_counter()
            outputs[name] = np.asarray(fn(x, y))
            times[name].append(time.perf_counter() - started)

    clean = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))
    rows = []
    for name in methods:
        seconds = statistics.median(times[name])
        adv = float(np.mean(np.argmax(model.predict(outputs[name], verbose=0), axis=1) == y))
        rows.append({"method": name, "seconds_median": round(seconds, 3), "seconds_all": [round(t, 3) for t in times[name]],
                     "images_per_second": round(len(x) / seconds, 1), "adversarial_accuracy": adv,
                     "max_linf": float(np.abs(outputs[name] - x).max())})
    by = {r["method"]: r for r in rows}
    ours = by["edgeprune run_attack (batch 256, incl. checks + metrics)"]
    ch = by["cleverhans projected_gradient_descent (whole batch)"]
    art = by[f"ART ProjectedGradientDescent (batch {args.art_batch})"]
    result = {
        "schema": "edgeprune.bench-attack-throughput/1",
        "command": "python benchmarks/attack_throughput.py " + " ".join(_portable(argv or sys.argv[1:])),
        "model": {"arch": args.arch, "width": args.width, "epochs": args.epochs,
                  "test_accuracy_full_split": trained["test_accuracy"], "params": trained["params"]},
        "attack": {"name": "PGD", "norm": "linf", "eps": eps, "step": step, "steps": steps, "random_start": False,
                   "images": int(len(x)), "clean_accuracy": clean},
        "repeats": args.repeats,
        "results": rows,
        "ratios": {"edgeprune_vs_art": round(art["seconds_median"] / ours["seconds_median"], 2),
                   "edgeprune_vs_cleverhans": round(ch["seconds_median"] / ours["seconds_median"], 2),
                   "max_accuracy_gap_points": round(100 * (max(r["adversarial_accuracy"] for r in rows)
                                                           - min(r["adversarial_accuracy"] for r in rows)), 2)},
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "host": host_fingerprint(),
        "versions": {**versions(), "adversarial-robustness-toolbox": _version("adversarial-robustness-toolbox")},
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), result)
    out.with_suffix(".md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))
    return 0


def _portable(items: list[str]) -> list[str]:
    """Machine paths out of the recorded command: a dataset path keeps only its file name."""
    out = []
    for item in items:
        prefix, sep, rest = item.partition(":")
        out.append(f"{prefix}:{Path(rest).name}" if sep and "/" in rest else item)
    return out


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _markdown(result: dict) -> str:
    a, m, host = result["attack"], result["model"], result["host"]
    lines = [
        "# PGD-10 throughput: edgeprune vs CleverHans vs ART", "",
        f"Command: `{result['command']}`", "",
        f"Host: {host.get('cpu_model') or host.get('processor') or host.get('machine')}, "
        f"{host.get('logical_cores')} logical cores; load average "
        f"{result['load_average']['start'][0]:.1f} at start, {result['load_average']['end'][0]:.1f} at end "
        "(shared machine: compare the ratios, not the absolute times).", "",
        f"Model: {m['arch']} (width {m['width']}, {m['params']:,} params) trained {m['epochs']} epochs on the "
        f"CIFAR-10 sample, test accuracy {m['test_accuracy_full_split']:.3f}. Attack: L-inf eps {a['eps']:.5f}, "
        f"step {a['step']:.5f} x {a['steps']}, no random start, {a['images']} test images (clean accuracy "
        f"{a['clean_accuracy']:.3f}). Median of {result['repeats']} interleaved runs after a warm-up.", "",
        "| method | seconds (median) | images/s | adversarial accuracy | max Linf |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        lines.append(f"| {r['method']} | {r['seconds_median']:.2f} | {r['images_per_second']:.1f} | "
                     f"{r['adversarial_accuracy']:.4f} | {r['max_linf']:.5f} |")
    ratios = result["ratios"]
    lines += ["", f"edgeprune (runner) is **{ratios['edgeprune_vs_art']}x** ART's throughput and "
              f"**{ratios['edgeprune_vs_cleverhans']}x** CleverHans'; adversarial accuracies agree within "
              f"{ratios['max_accuracy_gap_points']} points."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
