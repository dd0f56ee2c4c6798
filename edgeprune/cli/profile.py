"""`edgeprune profile`: size and CPU batch latency of model files on this (device-like) host."""

from __future__ import annotations

import shlex
import sys

import click

from edgeprune.cli.common import allow_unsafe_option, check_output, force_option, quiet_option


# One option for profile, evaluate and convert (its choices: edgeprune.runtime.INFERENCE_PRECISIONS,
# spelled out here so `--help` does not import the runtime module; a test keeps them equal).
inference_precision_option = click.option(
    "--inference-precision", type=click.Choice(["default", "f32", "bf16", "f16", "none"]), default="default",
    show_default=True,
    help="How the runtime computes. default: what it picks on this host, as deployed (OpenVINO: bf16 "
         "on CPUs with AVX512_BF16/AMX, else f32; TFLite: the XNNPACK delegate; Keras: f32); f32 / bf16 / "
         "f16: OpenVINO's inference precision hint (TFLite: f32 only); none: TFLite without XNNPACK. What "
         "ran is read back and recorded.")


@click.command("profile")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--batch", "batches", default="1,32,64", show_default=True,
              help="Batch sizes, comma-separated.")
@click.option("--threads", default=None,
              help="Thread counts, comma-separated  [default: the number of CPUs measured on].")
@click.option("--cpus", default=None,
              help="Pin the measurement to these CPU ids (e.g. 0,1 or 0-3), standing in for a "
                   "device with that many cores. The affinity is read back into the output.")
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Minimum timed runs per (model, batch, threads).")
@click.option("--min-time", "min_time_s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Minimum timed seconds per (model, batch, threads); runs go on until both "
                   "--runs and --min-time are met.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Minimum untimed warm-up runs.")
@click.option("--warmup-time", "warmup_time_s", type=click.FloatRange(min=0), default=0.2,
              show_default=True, help="Minimum warm-up seconds.")
@click.option("--isolation", type=click.Choice(["process", "none"]), default="process", show_default=True,
              help="process: a fresh Python process per (model, batch, threads), so thread settings "
                   "apply and the peak RSS is that cell's own; none: measure in this process "
                   "(faster; TensorFlow keeps its first thread setting).")
@click.option("--input-shape", default=None,
              help="H,W,C for models whose input shape is not fixed in the file.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random input batch.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON report here (a .csv and a .md table go beside it).")
@inference_precision_option
@allow_unsafe_option
@force_option
@quiet_option
def command(models, batches, threads, cpus, runs, min_time_s, warmup, warmup_time_s, isolation,
            input_shape, seed, output, inference_precision, allow_unsafe, force, quiet):
    """Measure file size and CPU batch latency of MODELS (.h5, .tflite, .xml).

    Size: file bytes (.xml with its .bin), gzip bytes (what unstructured sparsity saves),
    parameters, non-zero parameters and MACs per image. Latency per (batch, threads):
    min, mean, std, p50/p90/p99, coefficient of variation, images/s and peak RSS. .tflite
    and .xml need only the [device] extra (no TensorFlow).

    \b
    Examples:
      edgeprune profile model.xml model.tflite --batch 32,64 --threads 1,2 -o profile.json
      edgeprune profile model.tflite --cpus 0,1 --batch 1 --min-time 5   # as a 2-core board
    """
    from edgeprune.io import atomic_write_text, write_json
    from edgeprune.profile import (ProfileConfig, allowed_cpus, check_cpus, csv_report, markdown_report,
                                   parse_int_list, profile_models)

    if output is not None:
        output = check_output(output, force=force, suffixes=(".json",))
    cpu_ids = check_cpus(parse_int_list(cpus, "--cpus")) if cpus is not None else None
    cpu_count = len(cpu_ids) if cpu_ids is not None else len(allowed_cpus() or [1])
    thread_counts = parse_int_list(threads, "--threads") if threads is not None else (cpu_count,)
    config = ProfileConfig(
        batches=parse_int_list(batches, "--batch"), threads=thread_counts, cpus=cpu_ids, runs=runs,
        min_time_s=min_time_s, warmup=warmup, warmup_time_s=warmup_time_s, isolation=isolation,
        seed=seed, input_shape=parse_int_list(input_shape, "--input-shape") if input_shape else None,
        allow_unsafe=allow_unsafe, inference_precision=inference_precision)
    command_line = "edgeprune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = profile_models(models, config, progress=not quiet, command=command_line)
    table = markdown_report(report)
    if output is not None:
        write_json(output, report)
        atomic_write_text(output.with_suffix(".csv"), csv_report(report))
        atomic_write_text(output.with_suffix(".md"), table)
    click.echo(table, nl=False)
    oversubscribed = [t for t in thread_counts if t > cpu_count]
    if oversubscribed:
        click.echo(f"note: {oversubscribed} threads exceed the {cpu_count} CPUs measured on "
                   "(oversubscribed: latency includes time slicing)", err=True)
