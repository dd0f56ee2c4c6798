"""`edgeprune profile`: size and CPU batch latency of model files on this (device-like) host."""

from __future__ import annotations

import shlex
import sys

import click

from edgeprune.cli.common import (allow_unsafe_option, force_option, inference_precision_option, input_range_option,
                                  quiet_option)
from edgeprune.vocab import PROFILE_ISOLATIONS


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
@click.option("--isolation", type=click.Choice(PROFILE_ISOLATIONS), default="process", show_default=True,
              help="process: a fresh Python process per (model, batch, threads), so thread settings "
                   "apply and the peak RSS is that cell's own; none: measure in this process "
                   "(faster; TensorFlow keeps its first thread setting).")
@click.option("--processes", type=click.IntRange(min=1, max=1000), default=16, show_default=True,
              help="Fresh processes per (model, batch, threads) with --isolation process, taken in "
                   "turns; --runs and --min-time are shared among them. `compare` judges the "
                   "processes' medians: latency varies more between processes than within one.")
@click.option("--input-shape", default=None,
              help="H,W,C for models whose input shape is not fixed in the file.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random input batch.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON report here (a .csv and a .md table go beside it).")
@inference_precision_option
@input_range_option
@allow_unsafe_option
@force_option
@quiet_option
def command(models, batches, threads, cpus, runs, min_time_s, warmup, warmup_time_s, isolation, processes,
            input_shape, seed, output, inference_precision, input_range, allow_unsafe, force, quiet):
    """Measure file size and CPU batch latency of MODELS (.h5, .keras, .tflite, .xml).

    Size: file bytes (.xml with its .bin), gzip bytes (what unstructured sparsity saves),
    parameters, non-zero parameters and MACs per image. Latency per (batch, threads):
    min, mean, std, p50/p90/p99, coefficient of variation, images/s and peak RSS. .tflite
    and .xml need only the [device] extra (no TensorFlow).

    \b
    Examples:
      edgeprune profile model.xml model.tflite --batch 32,64 --threads 1,2 -o profile.json
      edgeprune profile model.tflite --cpus 0,1 --batch 1 --min-time 5   # as a 2-core board
    """
    from edgeprune.api import ProfileOptions, profile
    from edgeprune.profile import parse_int_list

    options = ProfileOptions(
        batch=parse_int_list(batches, "--batch"),
        threads=parse_int_list(threads, "--threads") if threads is not None else None,
        cpus=parse_int_list(cpus, "--cpus") if cpus is not None else None, runs=runs, min_time_s=min_time_s,
        warmup=warmup, warmup_time_s=warmup_time_s, isolation=isolation, processes=processes,
        input_shape=parse_int_list(input_shape, "--input-shape") if input_shape else None, seed=seed,
        inference_precision=inference_precision, input_range=input_range)
    command_line = "edgeprune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = profile(models, options, output, force=force, allow_unsafe=allow_unsafe, progress=not quiet,
                     command=command_line)
    click.echo(result.to_markdown(), nl=False)
    cpu_count = options.cpu_count
    oversubscribed = [t for t in options.threads or () if t > cpu_count]
    if oversubscribed:
        click.echo(f"note: {oversubscribed} threads exceed the {cpu_count} CPUs measured on "
                   "(oversubscribed: latency includes time slicing)", err=True)
