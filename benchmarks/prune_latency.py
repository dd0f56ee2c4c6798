"""Benchmark: NNCF filter pruning, masked vs physically shrunk, on compute-bound zoo models.

For each architecture: train a base model briefly on the CIFAR-10 sample, prune its filters
with NNCF (criterion x level), shrink the masked model, and measure in ONE run clean
accuracy, params, MACs, file sizes and batch-64 CPU latency of base, masked and shrunk models
in Keras, TFLite (LiteRT) and OpenVINO. Latencies of the three models are taken in
interleaved rounds (base, masked, shrunk, base, ...) so machine noise hits all three alike;
ratios to the base come from the same rounds.

    python benchmarks/prune_latency.py --data PATH/cifar10_sample.npz

Accuracy is secondary here (a couple of epochs on a few thousand images): the question is
whether latency falls with FLOPs once filters are removed rather than masked.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

RUNTIMES = ("keras", "tflite", "openvino")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="CIFAR-10 sample .npz (Keras layout)")
    parser.add_argument("--render", metavar="JSON", help="only re-render the markdown of a results JSON")
    parser.add_argument("--archs", default="resnet18,vgg16")
    parser.add_argument("--grid", default="resnet18:l2:0.3,resnet18:l2:0.5,resnet18:l1:0.5,resnet18:gm:0.5,"
                                          "vgg16:l2:0.3,vgg16:l2:0.5",
                        help="ARCH:CRITERION:LEVEL cells, comma separated")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--limit-train", type=int, default=1000)
    parser.add_argument("--limit-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2, help="base training epochs")
    parser.add_argument("--prune-epochs", type=int, default=2, help="NNCF fine-tuning epochs")
    parser.add_argument("--batch", type=int, default=64, help="latency batch size")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--out", default="benchmarks/results/prune_filters")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def keras_runner(model, x):
    import tensorflow as tf

    function = tf.function(lambda batch: model(batch, training=False))
    tensor = tf.constant(x)
    return lambda: function(tensor).numpy()


def tflite_runner(model, x, path: Path, threads: int):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(x.shape))
    interpreter.allocate_tensors()
    output = interpreter.get_output_details()[0]["index"]

    def run():
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return run


def openvino_runner(model, x, path: Path, threads: int):
    import openvino as ov

    ov_model = ov.convert_model(model)
    ov.save_model(ov_model, str(path), compress_to_fp16=False)
    ov_model.reshape(list(x.shape))
    compiled = ov.Core().compile_model(ov_model, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run():
        return request.infer({0: x})[compiled.output(0)]

    return run


def interleaved_latency(runners: dict, rounds: int) -> dict[str, dict]:
    """Median/min/max ms per runner, measured round-robin after two warm-up calls each."""
    for run in runners.values():
        run()
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: {"median_ms": float(np.median(t)), "min_ms": float(np.min(t)),
                   "max_ms": float(np.max(t))} for name, t in times.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        from edgeprune.io import atomic_write_text, read_json

        report = read_json(args.render)
        atomic_write_text(Path(args.render).with_suffix(".md"), render_markdown(report))
        return 0
    if not args.data:
        raise SystemExit("--data is required")
    started = time.perf_counter()
    import tensorflow as tf

    from edgeprune.data import load_dataset
    from edgeprune.info import gzip_bytes
    from edgeprune.modelstats import model_stats
    from edgeprune.prune.nncf_filter import NNCFFilterConfig, nncf_filter_prune
    from edgeprune.prune.shrink import shrink_model
    from edgeprune.train import TrainConfig, accuracy, train_model

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    runtimes = [r for r in args.runtimes.split(",") if r]
    dataset = load_dataset(f"npz:{args.data}", limit_train=args.limit_train, limit_test=args.limit_test,
                           seed=args.seed)
    x_test, y_test = dataset.split("test")
    x_batch = np.ascontiguousarray(x_test[:args.batch])
    cells = [cell.split(":") for cell in args.grid.split(",")]
    archs = [a for a in args.archs.split(",") if any(c[0] == a for c in cells)]
    work = Path(tempfile.mkdtemp(prefix="edgeprune-bench-"))
    rows, bases = [], {}

    def files_and_runners(model, tag: str) -> tuple[dict, dict]:
        h5 = work / f"{tag}.h5"
        model.save(h5, include_optimizer=False)
        sizes = {"h5_bytes": h5.stat().st_size, "h5_gzip_bytes": gzip_bytes(h5)}
        runners = {}
        if "keras" in runtimes:
            runners["keras"] = keras_runner(model, x_batch)
        if "tflite" in runtimes:
            runners["tflite"] = tflite_runner(model, x_batch, work / f"{tag}.tflite", args.threads)
            sizes["tflite_bytes"] = (work / f"{tag}.tflite").stat().st_size
        if "openvino" in runtimes:
            runners["openvino"] = openvino_runner(model, x_batch, work / f"{tag}.xml", args.threads)
            sizes["openvino_bytes"] = (work / f"{tag}.xml").stat().st_size + (work / f"{tag}.bin").stat().st_size
        return sizes, runners

    for arch in archs:
        print(f"[{time.perf_counter() - started:.0f}s] train {arch}", file=sys.stderr, flush=True)
        config = TrainConfig(arch=arch, epochs=args.epochs, width=args.width, seed=args.seed, milestones=(),
                             learning_rate=0.05)
        base, result = train_model(config, dataset, progress=False)
        stats = model_stats(base)
        sizes, runners = files_and_runners(base, f"{arch}-base")
        bases[arch] = {"test_accuracy": result["test_accuracy"], "params": stats["params"],
                       "macs": stats["macs"], "train_seconds": result["train_seconds"], **sizes}
        for _, criterion, level in (c for c in cells if c[0] == arch):
            tag = f"{arch}-{criterion}-{level}"
            print(f"[{time.perf_counter() - started:.0f}s] prune {tag}", file=sys.stderr, flush=True)
            copy = tf.keras.models.clone_model(base)
            copy.set_weights(base.get_weights())
            prune_config = NNCFFilterConfig(criterion=criterion, target=float(level), epochs=args.prune_epochs,
                                            batch_size=64, learning_rate=0.01, seed=args.seed)
            masked, info = nncf_filter_prune(copy, dataset, prune_config, progress=False)
            shrunk, shrink_info = shrink_model(masked)
            masked_logits = masked.predict(x_test, batch_size=256, verbose=0)
            shrunk_logits = shrunk.predict(x_test, batch_size=256, verbose=0)
            masked_sizes, masked_runners = files_and_runners(masked, f"{tag}-masked")
            shrunk_sizes, shrunk_runners = files_and_runners(shrunk, f"{tag}-shrunk")
            latency = {}
            for runtime in runners:
                print(f"[{time.perf_counter() - started:.0f}s]   latency {runtime}", file=sys.stderr, flush=True)
                measured = interleaved_latency({"base": runners[runtime], "masked": masked_runners[runtime],
                                                "shrunk": shrunk_runners[runtime]}, args.rounds)
                latency[runtime] = {**measured,
                                    "masked_ratio": measured["masked"]["median_ms"] / measured["base"]["median_ms"],
                                    "shrunk_ratio": measured["shrunk"]["median_ms"] / measured["base"]["median_ms"]}
            masked_stats, shrunk_stats = model_stats(masked), model_stats(shrunk)
            rows.append({
                "arch": arch, "criterion": criterion, "target": float(level),
                "level_reached": info["level_reached"],
                "nncf_flops_pruning_level": info["flops_pruning_level"],
                "nncf_params_pruning_level": info["params_pruning_level"],
                "accuracy_base": bases[arch]["test_accuracy"],
                "accuracy_pruned": accuracy(masked, x_test, y_test),
                "accuracy_shrunk": float((shrunk_logits.argmax(1) == y_test).mean()),
                "max_logit_diff_shrunk_vs_masked": float(np.abs(shrunk_logits - masked_logits).max()),
                "params_base": bases[arch]["params"], "params_masked_nonzero": masked_stats["params_nonzero"],
                "params_shrunk": shrunk_stats["params"],
                "macs_base": bases[arch]["macs"], "macs_shrunk": shrunk_stats["macs"],
                "sizes_base": {k: bases[arch][k] for k in sizes}, "sizes_masked": masked_sizes,
                "sizes_shrunk": shrunk_sizes, "latency": latency,
                "shrink_skipped": shrink_info["skipped"], "nncf_left_alone": info["left_alone"],
                "prune_seconds": info["seconds"],
            })
            print(json.dumps({k: rows[-1][k] for k in ("arch", "criterion", "target", "accuracy_pruned",
                                                        "macs_shrunk")}), file=sys.stderr, flush=True)
            del masked_runners, shrunk_runners
            write_report(args, argv, started, dataset, len(x_test), bases, rows, complete=False)

    report = write_report(args, argv, started, dataset, len(x_test), bases, rows, complete=True)
    print(render_markdown(report))
    return 0


def write_report(args, argv, started: float, dataset, test_count: int, bases: dict, rows: list, *,
                 complete: bool) -> dict:
    """Write JSON + markdown; called after every cell so an interrupted run keeps its rows."""
    from edgeprune.host import host_fingerprint
    from edgeprune.io import atomic_write_text, write_json

    raw = list(argv if argv is not None else sys.argv[1:])
    shown = [Path(a).name if i > 0 and raw[i - 1] == "--data" else a for i, a in enumerate(raw)]
    report = {
        "schema": "edgeprune.bench.prune_filters/1",
        "command": "python benchmarks/prune_latency.py " + " ".join(shlex.quote(a) for a in shown),
        "complete": complete,
        "arguments": {k: v for k, v in vars(args).items() if k != "data"},
        "data": f"CIFAR-10 sample ({len(dataset.x_train)} train / {test_count} test)",
        "host": host_fingerprint(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "bases": bases,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), report)
    atomic_write_text(out.with_suffix(".md"), render_markdown(report))
    return report


def render_markdown(report: dict) -> str:
    host = report["host"]
    lines = [
        f"# NNCF filter pruning: masked vs shrunk (batch-{report['arguments']['batch']} CPU latency)",
        "",
        f"Command: `{report['command']}`  ",
        f"Host: {host['cpu_model']}, {host['logical_cores']} logical cores "
        f"(affinity {len(host['affinity'] or [])}), {report['arguments']['threads']} inference threads, "
        f"ISA {' '.join(host['isa'])}, {host['os']}; shared with other jobs (noisy).  ",
        f"Data: {report['data']}. Wall time: {report['wall_seconds']:.0f} s"
        f"{'' if report['complete'] else ' (partial: run still going or interrupted)'}.",
        "",
        "## Bases",
        "",
        "| arch | test acc | params | MACs | .h5 MB | train s |",
        "|---|---|---|---|---|---|",
    ]
    for arch, base in report["bases"].items():
        lines.append(f"| {arch} | {base['test_accuracy']:.3f} | {base['params']:,} | {base['macs'] / 1e6:.0f} M | "
                     f"{base['h5_bytes'] / 1e6:.1f} | {base['train_seconds']:.0f} |")
    lines += [
        "",
        "## Pruned",
        "",
        "| arch | crit | target | reached | NNCF FLOPs cut | acc base | acc pruned | params shrunk | "
        "MACs shrunk | .h5 MB masked / gzip / shrunk | max logit diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        sizes_m, sizes_s = row["sizes_masked"], row["sizes_shrunk"]
        lines.append(
            f"| {row['arch']} | {row['criterion']} | {row['target']} | {row['level_reached']:.2f} | "
            f"{row['nncf_flops_pruning_level']:.0%} | {row['accuracy_base']:.3f} | {row['accuracy_pruned']:.3f} | "
            f"{row['params_shrunk'] / row['params_base']:.0%} | {row['macs_shrunk'] / row['macs_base']:.0%} | "
            f"{sizes_m['h5_bytes'] / 1e6:.1f} / {sizes_m['h5_gzip_bytes'] / 1e6:.1f} / "
            f"{sizes_s['h5_bytes'] / 1e6:.1f} | {row['max_logit_diff_shrunk_vs_masked']:.1e} |")
    lines += [
        "",
        "## Latency (median ms over interleaved rounds; ratio to the base measured in the same rounds)",
        "",
        "| arch | crit | target | runtime | base ms | masked ms (ratio) | shrunk ms (ratio) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        for runtime, lat in row["latency"].items():
            lines.append(
                f"| {row['arch']} | {row['criterion']} | {row['target']} | {runtime} | "
                f"{lat['base']['median_ms']:.0f} | {lat['masked']['median_ms']:.0f} ({lat['masked_ratio']:.2f}x) | "
                f"{lat['shrunk']['median_ms']:.0f} ({lat['shrunk_ratio']:.2f}x) |")
    lines += [
        "",
        "How it was measured: one fixed batch of test images; Keras under `tf.function`; TFLite fp32 "
        "via LiteRT's interpreter; OpenVINO `convert_model` + `compile_model(CPU)` with the latency "
        "hint, one stream. Each round runs base, masked, shrunk once in turn, after two warm-up calls "
        "each; the median of the rounds is shown. NNCF pruned every conv (first and stride-2 convs "
        "included) with `pruning_steps` derived from the fine-tuning epochs, so the requested level "
        "is reached; 'NNCF FLOPs cut' is NNCF's own count, 'MACs shrunk' is counted on the shrunk "
        "Keras model. Bases trained "
        f"{report['arguments']['epochs']} epochs, pruned models fine-tuned "
        f"{report['arguments']['prune_epochs']} more inside NNCF's schedule: accuracy is a short-budget "
        "figure (a pruned model can beat its base), the latency ratios are what the table is for.",
    ]
    skipped = {(row["arch"], s["layer"], s["reason"]) for row in report["rows"] for s in row["shrink_skipped"]}
    lines += ["", "## Zero filters the shrinker had to keep", ""]
    lines += [f"- {arch} {layer}: {reason}" for arch, layer, reason in sorted(skipped)] or ["- none"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
