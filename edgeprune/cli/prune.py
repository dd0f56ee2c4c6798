"""`edgeprune prune`: TF-MOT unstructured / N:M pruning or NNCF filter pruning, fine-tuned."""

from __future__ import annotations

import click

from edgeprune.cli.adversarial import adversarial_options
from edgeprune.cli.common import (allow_unsafe_option, dataset_option, force_option, input_range_option,
                                  limit_options, quiet_option, seed_option)
from edgeprune.cli.folders import folder_options
from edgeprune.pruning import DEFAULT_EPOCHS, HYDRA_OPTIONS, NNCF_OPTIONS, TFMOT_OPTIONS
from edgeprune.vocab import NNCF_CRITERIA, PRUNE_METHODS, TFMOT_SCHEDULES, TFMOT_SCOPES


def _print_summary(record: dict, output: str) -> None:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from edgeprune.prune.report import summary_rows

    table = Table(title=f"{record['method']} -> {Path(output).name}")
    for column in ("", "before", "after"):
        table.add_column(column, justify="left" if not column else "right")
    for row in summary_rows(record):
        table.add_row(*row)
    Console().print(table)


@click.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--method", "-m", type=click.Choice(PRUNE_METHODS), required=True,
              help="tfmot: unstructured magnitude / N:M sparsity (same shapes, real zeros). "
                   "nncf-filter: NNCF filter pruning, physically shrunk by default.")
@dataset_option()
@limit_options
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Pruned model (.h5); OUT.json (report), OUT.md and OUT.csv go beside it.")
@click.option("--epochs", type=click.IntRange(min=0), default=None,
              help=f"Fine-tuning epochs [default: {DEFAULT_EPOCHS}]. tfmot: 0 prunes one-shot by "
                   "magnitude without fine-tuning.")
@click.option("--lr", "learning_rate", type=float, default=0.01, show_default=True,
              help="Fine-tuning SGD learning rate (momentum 0.9).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--sparsity", type=float, default=None,
              help="[tfmot, hydra] Fraction of weights set to zero, 0 < s < 1 [default: 0.5].")
@click.option("--schedule", type=click.Choice(TFMOT_SCHEDULES), default="polynomial",
              show_default=True,
              help="[tfmot] polynomial ramps 0 -> sparsity over the first 70% of the fine-tuning "
                   "steps; constant prunes to the target at step 1. Mask-update steps are derived "
                   "from the real number of steps, so the target is reached.")
@click.option("--scope", type=click.Choice(TFMOT_SCOPES), default="local",
              show_default=True,
              help="[tfmot] local: the same sparsity in every Conv2D/Dense layer; global: one "
                   "magnitude threshold over all layers; lamp: one threshold over LAMP scores "
                   "(Lee et al. 2021), each layer keeps its largest weights. [hydra] local or global over the "
                   "learned scores.")
@click.option("--pattern", default=None, metavar="N:M",
              help="[tfmot] N:M sparsity: keep N of every M consecutive weights along the input "
                   "channels (2:4 is the pattern sparse tensor cores accelerate). Replaces --sparsity.")
@click.option("--frequency", type=click.IntRange(min=1), default=None,
              help="[tfmot] Steps between mask updates [default: derived from the fine-tune length].")
@click.option("--criterion", type=click.Choice(NNCF_CRITERIA), default="l2", show_default=True,
              help="[nncf-filter] Filter importance: L1 / L2 norm or geometric median.")
@click.option("--target", type=float, default=None,
              help="[nncf-filter] Fraction of filters pruned, 0 < t < 1 [default: 0.5].")
@click.option("--flops-target", type=float, default=None,
              help="[nncf-filter] Fraction of FLOPs removed instead of --target.")
@click.option("--init", type=float, default=0.1, show_default=True,
              help="[nncf-filter] Pruning level at the start of the exponential schedule.")
@click.option("--steps", type=int, default=None,
              help="[nncf-filter] NNCF pruning_steps (epochs to reach the target) [default: "
                   "derived from --epochs so the target is reached].")
@click.option("--prune-first-conv/--no-prune-first-conv", default=True, show_default=True,
              help="[nncf-filter] Also prune the first convolution (NNCF leaves it by default).")
@click.option("--prune-downsample/--no-prune-downsample", default=True, show_default=True,
              help="[nncf-filter] Also prune stride-2 convolutions (NNCF leaves them by default).")
@click.option("--shrink/--no-shrink", default=True, show_default=True,
              help="[nncf-filter] Physically remove zeroed filters; the masked model is kept as "
                   "OUT.masked.h5.")
@click.option("--score-epochs", type=click.IntRange(min=1), default=None,
              help="hydra: epochs of score search (weights frozen) before fine-tuning --epochs under the mask "
                   "[default: 2].")
@seed_option()
@input_range_option
@adversarial_options
@allow_unsafe_option
@force_option
@quiet_option
@folder_options
@click.pass_context
def command(ctx, model, method, dataset, limit_train, limit_test, output, epochs, learning_rate,
            batch_size, sparsity, schedule, scope, pattern, frequency, criterion, target, flops_target,
            init, steps, prune_first_conv, prune_downsample, shrink, score_epochs, seed, input_range, folder,
            adversarial, allow_unsafe, force, quiet):
    """Prune MODEL (.h5), fine-tune it on --dataset, and write the pruned model with a report.

    \b
    The report (OUT.json, schema edgeprune.prune/1; OUT.md; OUT.csv) holds per-layer weights,
    zeros, sparsity and filters kept, whole-model params and MACs before/after, clean test
    accuracy before/after, target vs reached, schedule, seed, time and versions.

    \b
    Examples:
      edgeprune prune base.h5 -m tfmot --sparsity 0.8 --scope lamp -d digits -o lamp80.h5
      edgeprune prune base.h5 -m tfmot --pattern 2:4 --epochs 2 -d digits -o nm24.h5
      edgeprune prune base.h5 -m nncf-filter --criterion gm --target 0.5 -d npz:c10.npz -o f50.h5
    """
    from edgeprune.api import PruneOptions, prune

    # Method-specific options go to the library only when typed (their defaults live there), so
    # one given to the other method is refused rather than silently ignored.
    given = {name: ctx.params[name] for name in dict.fromkeys(TFMOT_OPTIONS + NNCF_OPTIONS + HYDRA_OPTIONS)
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    options = PruneOptions(method=method, dataset=dataset, limit_train=limit_train, limit_test=limit_test,
                           epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                           input_range=input_range, **given, **folder, **adversarial)
    result = prune(model, options, output, force=force, allow_unsafe=allow_unsafe, progress=not quiet)
    _print_summary(dict(result.record), output)
    reached = result.reached
    if method == "tfmot":
        what = f"weight sparsity {reached['prunable_sparsity']:.2%}"
    else:
        what = (f"filters removed {reached['filters_removed_fraction']:.1%}, params x{reached['params_ratio']:.3f}, "
                f"MACs x{reached['macs_ratio']:.3f}" + ("" if options.shrinking else " (masked, not shrunk)"))
    click.echo(f"{method}: {what}, accuracy {result.before.test_accuracy:.4f} -> "
               f"{result.after.test_accuracy:.4f} in {result.record['seconds']:.0f} s -> {output}")
