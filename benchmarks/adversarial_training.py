"""Cost of one epoch of adversarial training (fgsm-rs / pgd / trades) as a ratio of a normal epoch.

One model per recipe, same architecture, data and batch size; each is warmed up one epoch
(tracing excluded), then epochs are timed in interleaved rounds (none, fgsm-rs, pgd, trades,
none, ...) so machine load hits all alike; the median per recipe is reported and divided by
the normal epoch's median. The guard (PGD-10 on 256 images after each epoch) is timed apart,
since its cost does not grow with the training set. Ratios within one run are the figure to
trust on a shared host.

    python benchmarks/adversarial_training.py --data npz:../shared/data/cifar10_sample.npz \
        --out benchmarks/results/adversarial_training/resnet8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KINDS = ("none", "fgsm-rs", "pgd", "trades")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset spec, e.g. npz:.../cifar10_sample.npz")
    parser.add_argument("--arch", default="resnet8")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", required=True, help="output stem (.json and .md are written)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from edgeprune.adversarial import make_recipe, prepare
    from edgeprune.data import load_dataset
    from edgeprune.host import host_fingerprint
    from edgeprune.io import versions, write_json
    from edgeprune.models import build_model
    from edgeprune.train import make_train_pipeline

    load_start = os.getloadavg()
    data = load_dataset(args.data, limit_train=args.images)
    pipeline = make_train_pipeline(data.x_train, data.y_train, batch_size=args.batch_size, augment="flip-crop",
                                   seed=0)
    models, guards = {}, {}
    for kind in KINDS:
        tf.keras.utils.set_random_seed(0)
        model = build_model(args.arch, input_shape=data.input_shape, num_classes=data.num_classes, width=args.width)
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05, momentum=0.9),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        recipe = make_recipe(kind, guard=kind == "fgsm-rs")
        callbacks, _ = prepare(model, recipe, data, log=False)
        models[kind] = model
        guards[kind] = callbacks
        model.fit(pipeline, epochs=1, verbose=0)  # warm-up: tracing
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    guard_seconds: list[float] = []
    for _ in range(args.rounds):
        for kind in KINDS:
            started = time.perf_counter()
            models[kind].fit(pipeline, epochs=1, verbose=0)
            seconds[kind].append(time.perf_counter() - started)
        guard = guards["fgsm-rs"][-1]  # the robust guard's epoch-end check, alone
        guard.set_model(models["fgsm-rs"])
        started = time.perf_counter()
        guard.on_epoch_end(0, {})
        guard_seconds.append(time.perf_counter() - started)
    median = {kind: statistics.median(values) for kind, values in seconds.items()}
    result = {
        "benchmark": "adversarial_training",
        "command": "python benchmarks/adversarial_training.py " + " ".join(argv or sys.argv[1:]),
        "model": {"arch": args.arch, "width": args.width, "params": int(models["none"].count_params())},
        "data": {"spec": args.data, "train_images": int(len(data.y_train)), "batch_size": args.batch_size},
        "recipes": {kind: (make_recipe(kind).record() if kind != "none" else None) for kind in KINDS},
        "epoch_seconds": seconds,
        "epoch_seconds_median": median,
        "ratio_to_normal_epoch": {kind: round(median[kind] / median["none"], 2) for kind in KINDS},
        # each round's epochs ran back to back: the ratio within a round shares its load
        "ratio_per_round_median": {kind: round(statistics.median(
            a / b for a, b in zip(seconds[kind], seconds["none"], strict=True)), 2) for kind in KINDS},
        "guard_seconds_median": statistics.median(guard_seconds),
        "guard_ratio_to_normal_epoch": round(statistics.median(guard_seconds) / median["none"], 2),
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "host": host_fingerprint(),
        "versions": versions(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), result)
    out.with_suffix(".md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))
    return 0


def _markdown(result: dict) -> str:
    from edgeprune.tables import markdown_table

    host, m, d = result["host"], result["model"], result["data"]
    rows = [[kind, (r or {}).get("steps", 0), f"{(r or {}).get('step_size_255', 0):g}/255",
             f"{result['epoch_seconds_median'][kind]:.2f}", f"x{result['ratio_to_normal_epoch'][kind]:.2f}",
             f"x{result['ratio_per_round_median'][kind]:.2f}"]
            for kind, r in result["recipes"].items()]
    rows.append(["guard (PGD-10, 256 images)", 10, "", f"{result['guard_seconds_median']:.2f}",
                 f"x{result['guard_ratio_to_normal_epoch']:.2f}", ""])
    return "\n".join([
        "# Adversarial training: cost of one epoch vs a normal epoch", "",
        f"`{result['command']}`", "",
        f"{m['arch']} (width {m['width']}, {m['params']:,} params), {d['train_images']} training images of "
        f"`{d['spec']}`, batch {d['batch_size']}; eps 8/255; median of {len(result['epoch_seconds']['none'])} "
        "interleaved epochs after a warm-up epoch.", "",
        markdown_table(["recipe", "attack steps", "step", "s / epoch (median)", "ratio of medians",
                        "median of per-round ratios"], rows, align=["l", "r", "r", "r", "r", "r"]),
        "",
        f"Host: {host.get('cpu_model') or host.get('processor')}, {host.get('logical_cores')} logical cores; load "
        f"average {result['load_average']['start'][0]:.1f} at start, {result['load_average']['end'][0]:.1f} at end "
        "(a shared machine: trust the ratios, measured in one run, not the seconds).", "",
        "Expected from the arithmetic: each attack step is one forward + backward through the model "
        "(about the cost of a training step); fgsm-rs and pgd also run one clean forward for the logged "
        "clean accuracy; trades runs one more forward for p(x) and two training-mode forwards.", "",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
