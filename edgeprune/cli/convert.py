"""`edgeprune convert`: Keras .h5 -> TFLite or OpenVINO IR, verified against the source."""

from __future__ import annotations

import click

from edgeprune.cli import common
from edgeprune.cli.folders import folder_options
from edgeprune.vocab import CONVERT_TARGETS, SWITCHES


@click.command("convert")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "target", type=click.Choice(CONVERT_TARGETS), required=True,
              help="tflite (.tflite) or openvino (IR: .xml + .bin).")
@click.option("--precision", "-p", default="fp32", show_default=True,
              help="tflite: fp32, fp16, dynamic (int8 weights), int8 (full integer). "
                   "openvino: fp32, fp16 (compressed weights), int8 (NNCF post-training).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="The converted model (.tflite or .xml); its report goes beside it as OUTPUT.json "
                   "(m.tflite.json, m.xml.json: both formats of one model can share a stem).")
@click.option("--dataset", "-d", default=None,
              help="Data for calibration (train split) and verification (test split): digits, "
                   "cifar10, cifar100, npz:PATH, dir:PATH, svhn:PATH, folder:PATH. Default: the dataset recorded "
                   "in MODEL when it loads by name (digits, cifar10, cifar100).")
@click.option("--calibration", type=click.IntRange(min=1), default=300, show_default=True,
              help="int8: class-stratified training images used to calibrate activation ranges.")
@click.option("--int8-io/--float-io", default=True, show_default=True,
              help="TFLite int8: int8 input/output tensors (full integer, for int-only accelerators) "
                   "or float ones (quantize/dequantize inside the model).")
@click.option("--sparse", type=click.Choice(SWITCHES), default="auto", show_default=True,
              help="TFLite sparse-weight encoding. auto: for models with >= 30% zero weights, convert "
                   "with and without it and keep the smaller file (it can grow a file).")
@click.option("--prune-filters", type=click.Choice(SWITCHES), default="auto",
              show_default=True,
              help="OpenVINO: remove all-zero conv filters from the IR (auto: when MODEL has any).")
@click.option("--verify", type=click.IntRange(min=1), default=300, show_default=True,
              help="Test images on which the converted model is compared with MODEL.")
@click.option("--no-verify", is_flag=True, help="Skip verification (keeps a model that may disagree).")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
              help="Top-1 agreement required. Default 0.99 for fp32/fp16, 0.95 for dynamic/int8.")
@common.inference_precision_option
@common.seed_option()
@common.input_range_option
@common.allow_unsafe_option
@common.force_option
@common.quiet_option
@folder_options
def command(model, target, precision, output, dataset, calibration, int8_io, sparse, prune_filters,
            verify, no_verify, min_agreement, inference_precision, seed, input_range, folder, allow_unsafe, force,
            quiet):
    """Convert a Keras MODEL (.h5) to TFLite or OpenVINO IR and verify it.

    The converted model runs beside MODEL on --verify test images; below --min-agreement
    top-1 agreement the command fails with the figures (exit 2) and writes nothing. The
    report (OUTPUT.json) records sizes, agreement, logit error, accuracy of both,
    calibration and versions.

    \b
    Examples:
      edgeprune convert m.h5 --to tflite -p int8 -o m_int8.tflite
      edgeprune convert pruned.h5 --to openvino -p fp16 -o pruned.xml
    """
    from edgeprune.api import ConvertOptions, convert

    options = ConvertOptions(target=target, precision=precision, dataset=dataset, calibration=calibration,
                             int8_io=int8_io, sparse=sparse, prune_filters=prune_filters, verify=verify,
                             no_verify=no_verify, min_agreement=min_agreement, seed=seed,
                             inference_precision=inference_precision, input_range=input_range, **folder)
    report = convert(model, options, output, force=force, allow_unsafe=allow_unsafe, progress=not quiet).record
    sizes, check = report["sizes"], report["verification"]
    summary = f"{target} {precision}: {sizes['output_bytes']:,} bytes ({sizes['ratio']:.2f}x of .h5)"
    if not check.get("skipped"):
        summary += (f", agreement {check['agreement']:.3f} on {check['samples']} images, accuracy "
                    f"{check['source_accuracy']:.3f} -> {check['converted_accuracy']:.3f}")
    extra = report.get("sparse_encoding") or {}
    if extra.get("sparse_bytes") is not None:
        summary += f", sparse encoding {'used' if extra['used'] else 'not smaller, not used'}"
    pruning = report.get("filter_pruning") or {}
    if pruning.get("applied"):
        summary += (f", conv channels {pruning['conv_channels_before']} -> "
                    f"{pruning['conv_channels_after']}")
    click.echo(f"{summary} -> {output}")
