"""Benchmark: NNCF filter pruning + shrinking on keras.applications architectures.

Per architecture (weights=None, 32x32 input, 10-class head, built-in preprocessing where the
architecture has it): prune filters with NNCF to 50% (a short fine-tune on the CIFAR-10 sample:
enough for NNCF to zero its groups, not to train a useful model), shrink the masked model, and
record params, MACs, Keras batch latency of base / masked / shrunk, the max |logit| difference
shrunk vs masked on test images (in the range the model expects), what shrinking kept and why,
or the one-line refusal of the stage that refused.

    python benchmarks/shrink_applications.py --data ../shared/data/cifar10_sample.npz
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# architecture -> (constructor keyword arguments, input range it expects)
ARCHITECTURES: dict[str, tuple[dict, tuple[float, float]]] = {
    "MobileNetV2": ({"alpha": 0.35}, (-1.0, 1.0)),
    "MobileNetV3Small": ({"alpha": 0.75, "include_preprocessing": True}, (0.0, 255.0)),
    "MobileNetV3Large": ({"alpha": 0.75, "include_preprocessing": True}, (0.0, 255.0)),
    "EfficientNetB0": ({}, (0.0, 255.0)),
    "ResNet50V2": ({}, (-1.0, 1.0)),
    "DenseNet121": ({}, (0.0, 1.0)),
    "NASNetMobile": ({}, (-1.0, 1.0)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", help="CIFAR-10 sample .npz (Keras layout)")
    parser.add_argument("--render", metavar="JSON", help="only re-render the markdown of a results JSON")
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
    parser.add_argument("--level", type=float, default=0.5)
    parser.add_argument("--limit-train", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1, help="NNCF fine-tuning epochs")
    parser.add_argument("--batch", type=int, default=32, help="latency batch size")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per model (median)")
    parser.add_argument("--out", default="benchmarks/results/shrink_applications")
    return parser.parse_args(argv)


def build(arch: str):
    import tensorflow as tf

    kwargs, _ = ARCHITECTURES[arch]
    return getattr(tf.keras.applications, arch)(input_shape=(32, 32, 3), weights=None, classes=10,
                                                classifier_activation=None, **kwargs)


def latency_ms(model, x: np.ndarray, repeats: int) -> float:
    import tensorflow as tf

    function = tf.function(lambda batch: model(batch, training=False))
    function(x)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(x).numpy()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def run_one(arch: str, data, args: argparse.Namespace) -> dict:
    from edgeprune.errors import EdgepruneError
    from edgeprune.modelstats import model_stats
    from edgeprune.prune.nncf_filter import NNCFFilterConfig, nncf_filter_prune
    from edgeprune.prune.shrink import shrink_model

    row: dict = {"arch": arch}
    base = build(arch)
    base_copy = build(arch)
    base_copy.set_weights(base.get_weights())
    started = time.perf_counter()
    try:
        masked, info = nncf_filter_prune(base, data, NNCFFilterConfig(target=args.level, epochs=args.epochs,
                                                                      batch_size=32), progress=False)
    except EdgepruneError as error:
        return {**row, "refused": f"nncf-filter: {error}"}
    row["nncf_seconds"] = round(time.perf_counter() - started, 1)
    row["zero_filter_fraction"] = round(info["zero_filter_fraction"], 4)
    row["nncf_layers_pruned"] = len(info["prunable_layers"])
    row["nncf_layers_left_alone"] = len(info["left_alone"])
    reasons = Counter(item["reason"] for item in info["left_alone"])
    row["nncf_left_alone_reasons"] = [f"{count} x {reason}" for reason, count in reasons.most_common(3)]
    started = time.perf_counter()
    try:
        shrunk, shrink_info = shrink_model(masked)
    except EdgepruneError as error:
        return {**row, "refused": f"shrink: {error}"}
    row["shrink_seconds"] = round(time.perf_counter() - started, 1)
    low, high = ARCHITECTURES[arch][1]
    x_test, _ = data.split("test")
    x = (low + (high - low) * x_test[:args.batch]).astype("float32")
    masked_logits = masked(x, training=False).numpy()
    row["max_abs_logit"] = float(np.abs(masked_logits).max())
    row["max_logit_diff"] = float(np.abs(masked_logits - shrunk(x, training=False).numpy()).max())
    for name, model in (("base", base_copy), ("masked", masked), ("shrunk", shrunk)):
        stats = model_stats(model)
        row[f"params_{name}"] = stats["params"]
        row[f"macs_{name}"] = stats["macs"]
        row[f"latency_ms_{name}"] = round(latency_ms(model, x, args.repeats), 2)
    row["filters_before"], row["filters_after"] = shrink_info["filters_before"], shrink_info["filters_after"]
    row["skipped"] = shrink_info["skipped"]
    return row


COLUMNS = ("arch", "zero filters", "params base -> shrunk", "MACs base -> shrunk", "latency ms base / masked / shrunk",
           "max logit diff (max logit)", "kept zero filters")


def markdown(result: dict) -> str:
    lines = ["# NNCF filter pruning + shrinking on keras.applications", "",
             f"- command: `{result['command']}`",
             f"- host: {result['host'].get('cpu_model', '?')}, {result['host'].get('logical_cores', '?')} logical cores; "
             f"load average {result['load_average']} at the start (shared machine: latencies are noisy)",
             f"- {result['seconds']} s in all; NNCF target {result['level']} of filters, "
             f"Keras latency: median of {result['repeats']} calls at batch {result['batch']}", "",
             "- what to read: params and MACs are exact; shrunk == masked logits is the correctness check "
             "(weights are fresh and barely tuned, so logits are small: the max |logit| is given beside the "
             "difference). Latencies were taken on a 2-core machine shared with other jobs (load above 10) "
             "and are noise-dominated; `benchmarks/prune_latency.py` measures latency properly.",
             "- NASNetMobile: NNCF (2.19) prunes none of its conv layers (below); since this run, "
             "`nncf_filter_prune` refuses such a model in one line instead of writing it unpruned.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    notes = []
    for row in result["rows"]:
        if row.get("nncf_left_alone_reasons"):
            notes.append(f"- {row['arch']}: NNCF left {row['nncf_layers_left_alone']} conv layers alone: "
                         + "; ".join(row["nncf_left_alone_reasons"]))
        if "refused" in row:
            lines.append(f"| {row['arch']} | refused: {row['refused']} |" + " |" * (len(COLUMNS) - 2))
            continue
        kept = sum(item["zero_filters_kept"] or 0 for item in row["skipped"])
        lines.append(
            f"| {row['arch']} | {row['zero_filter_fraction']:.1%} | {row['params_base']:,} -> {row['params_shrunk']:,} "
            f"(x{row['params_shrunk'] / row['params_base']:.2f}) | {row['macs_base']:,} -> {row['macs_shrunk']:,} "
            f"(x{row['macs_shrunk'] / row['macs_base']:.2f}) | {row['latency_ms_base']} / {row['latency_ms_masked']} / "
            f"{row['latency_ms_shrunk']} | {row['max_logit_diff']:.1e} ({row['max_abs_logit']:.2g}) | {kept} |")
    return "\n".join([*lines, "", *notes]) + "\n"


def main(argv: list[str] | None = None) -> None:
    from edgeprune.data import load_dataset
    from edgeprune.host import host_fingerprint

    args = parse_args(argv)
    if args.render:
        Path(args.render).with_suffix(".md").write_text(markdown(json.loads(Path(args.render).read_text())))
        return
    if not args.data:
        raise SystemExit("--data is required (the CIFAR-10 sample .npz)")
    started = time.perf_counter()
    load = [round(value, 2) for value in os.getloadavg()]
    data = load_dataset(f"npz:{args.data}", limit_train=args.limit_train, limit_test=args.batch)
    rows = []
    for arch in args.archs.split(","):
        rows.append(run_one(arch, data, args))
        print(json.dumps({key: value for key, value in rows[-1].items() if key != "skipped"}), flush=True)
    result = {"command": shlex.join(["python", *sys.argv]), "host": host_fingerprint(), "load_average": load,
              "level": args.level, "batch": args.batch, "repeats": args.repeats,
              "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
