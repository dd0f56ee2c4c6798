"""Benchmark: TF-MOT magnitude pruning with local, global and LAMP layer-wise sparsity.

The second paper's finding is that plain magnitude pruning with LAMP layer-wise sparsity
beats global and local magnitude pruning at high sparsity. This script measures the clean
side of that on one zoo model trained on the CIFAR-10 sample: for each sparsity and scope,
test accuracy one-shot (no fine-tuning) and after a short fine-tune, with the measured
sparsity and the spread of per-layer sparsities. One base model, one run, one seed.

    python benchmarks/prune_tfmot_scopes.py --data PATH/cifar10_sample.npz
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 sample .npz (Keras layout)")
    parser.add_argument("--arch", default="resnet8")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=15, help="base training epochs")
    parser.add_argument("--finetune", type=int, default=3, help="fine-tuning epochs per cell")
    parser.add_argument("--sparsities", default="0.8,0.9,0.95")
    parser.add_argument("--scopes", default="local,global,lamp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/prune_tfmot_scopes",
                        help="output stem: writes STEM.json and STEM.md")
    return parser.parse_args(argv)


def kernel_sparsities(model) -> dict[str, float]:
    import numpy as np

    return {layer.name: float(np.mean(layer.get_weights()[0] == 0)) for layer in model.layers
            if layer.__class__.__name__ in ("Conv2D", "Dense")}


def render_markdown(record: dict) -> str:
    """The human table of one run (re-renderable from the JSON)."""
    model, host = record["model"], record["host"]
    lines = [
        "# TF-MOT magnitude pruning: local vs global vs LAMP (clean accuracy)", "",
        f"`{record['command']}`", "",
        f"Base: {model['arch']} (width {model['width']}, {model['params']:,} params) trained {model['epochs']} "
        f"epochs on the CIFAR-10 sample ({model['train_samples']} train / {model['test_samples']} test): test "
        f"accuracy **{model['test_accuracy']:.4f}**. Fine-tune: {record['finetune_epochs']} epochs, SGD lr 0.01 "
        f"momentum 0.9, polynomial schedule (edgeprune defaults). Seed {record['seed']}; one run.", "",
        "| sparsity | scope | measured | layer sparsity min-max | one-shot acc | fine-tuned acc |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for row in record["rows"]:
        lines.append(f"| {row['sparsity']:.2f} | {row['scope']} | {row['measured_sparsity']:.4f} | "
                     f"{row['layer_sparsity_min']:.2f}-{row['layer_sparsity_max']:.2f} | "
                     f"{row['one_shot_accuracy']:.4f} | {row['fine_tuned_accuracy']:.4f} |")
    lines += ["", f"Host: {host.get('cpu_model')}, {host.get('logical_cores')} logical cores, "
              f"{(host.get('memory_bytes') or 0) / 2**30:.0f} GiB, {host.get('os')}; "
              f"tensorflow-cpu {record['versions'].get('tensorflow-cpu')}, "
              f"tensorflow-model-optimization {record['versions'].get('tensorflow-model-optimization')}. "
              f"Total {record['seconds']:.0f} s on a machine shared with other jobs."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    from edgeprune.data import load_dataset
    from edgeprune.host import host_fingerprint
    from edgeprune.io import versions, write_json
    from edgeprune.modelstats import model_stats
    from edgeprune.prune.tfmot import TfmotConfig, tfmot_prune
    from edgeprune.train import TrainConfig, accuracy, train_model

    data = load_dataset(f"npz:{args.data}", seed=args.seed)
    x_test, y_test = data.split("test")
    started = time.perf_counter()
    base, trained = train_model(TrainConfig(arch=args.arch, epochs=args.epochs, width=args.width,
                                            milestones=(int(args.epochs * 2 / 3),), seed=args.seed),
                                data, progress=False)
    base_accuracy = accuracy(base, x_test, y_test)
    print(f"base {args.arch} w{args.width}: {base_accuracy:.4f} ({trained['train_seconds']} s)", flush=True)
    rows = []
    for sparsity in (float(s) for s in args.sparsities.split(",")):
        for scope in args.scopes.split(","):
            row = {"sparsity": sparsity, "scope": scope}
            for epochs, key in ((0, "one_shot"), (args.finetune, "fine_tuned")):
                config = TfmotConfig(sparsity=sparsity, scope=scope, epochs=epochs, schedule="polynomial",
                                     learning_rate=0.01, seed=args.seed)
                cell_started = time.perf_counter()
                pruned, _ = tfmot_prune(base, data, config, progress=False)
                layers = kernel_sparsities(pruned)
                row[f"{key}_accuracy"] = accuracy(pruned, x_test, y_test)
                row[f"{key}_seconds"] = round(time.perf_counter() - cell_started, 1)
                row["measured_sparsity"] = round(model_stats(pruned)["sparsity"], 4)
                row["layer_sparsity_min"] = round(min(layers.values()), 4)
                row["layer_sparsity_max"] = round(max(layers.values()), 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    record = {
        "schema": "edgeprune.bench.prune_tfmot_scopes/1",
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "host": host_fingerprint(),
        "versions": versions(),
        "model": {"arch": args.arch, "width": args.width, "epochs": args.epochs, "params": trained["params"],
                  "test_accuracy": base_accuracy, "train_samples": trained["train_samples"],
                  "test_samples": trained["test_samples"]},
        "finetune_epochs": args.finetune,
        "seed": args.seed,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), record)
    out.with_suffix(".md").write_text(render_markdown(record))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
