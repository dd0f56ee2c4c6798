"""`edgeprune evaluate`: models x (clean split + transfer sets) -> accuracy tables."""

from __future__ import annotations

import click

from edgeprune.cli.common import (allow_unsafe_option, force_option, inference_precision_option, input_range_option,
                                  quiet_option)
from edgeprune.cli.folders import folder_options
from edgeprune.vocab import AUTOATTACK_VERSIONS, NORMS


@click.command("evaluate")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--sets", "-s", "set_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Transfer set (NAME.npz from `edgeprune attack`); repeatable, or several after one "
                   "--sets separated by commas.")
@click.option("--dataset", "-d", default=None,
              help="Dataset for the clean row and to check the sets against (default: the first set's).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Clean accuracy on a class-stratified subset of N test images.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False),
              help="Report stem: writes STEM.json, STEM.csv, STEM.md and STEM.png (transfer heatmap).")
@click.option("--curve", is_flag=True,
              help="Robustness curves instead: FMN minimal norms per test image of each Keras model -> "
                   "accuracy vs eps of all MODELS on one STEM.png, with STEM.json/.csv/.md.")
@click.option("--autoattack", "autoattack_version", type=click.Choice(AUTOATTACK_VERSIONS), default=None,
              help="AutoAttack robust accuracy at --eps instead (APGD-CE, APGD-T, FAB-T, Square; per stage). "
                   "standard: Croce & Hein's (100-step APGD/FAB); fast: 50 steps, 3 targets, 1000 queries; "
                   "torchattacks: what torchattacks' 'standard' runs (10-step APGD/FAB). "
                   ".tflite/.xml models get the black-box Square stage only.")
@click.option("--eps", "eps_text", default=None,
              help="--autoattack: the bound (default 8/255 linf, 0.5 l2). --curve: eps values to tabulate, "
                   "comma-separated (default 2/255,4/255,8/255 linf; 0.25,0.5,1 l2). Fractions allowed.")
@click.option("--norm", type=click.Choice(NORMS), default="linf", show_default=True,
              help="Norm for --curve / --autoattack.")
@click.option("--fmn-steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="--curve: FMN iterations per image.")
@click.option("--no-tune", is_flag=True,
              help="--curve: skip FMN's step-size/schedule search on a 32-image calibration subset.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="--autoattack: random seed (recorded); folder: the --val-split seed.")
@inference_precision_option
@input_range_option
@allow_unsafe_option
@force_option
@quiet_option
@folder_options
def command(models, set_paths, dataset, limit, batch_size, output, curve, autoattack_version, eps_text, norm,
            fmn_steps, no_tune, seed, inference_precision, input_range, folder, allow_unsafe, force, quiet):
    """Accuracy of MODELS (.h5, .tflite, .xml, any mix) on the clean test split and on transfer sets.

    Each set must fit each model (image shape, classes, dataset) or nothing runs. The report
    shows (a) each base model beside its pruned/converted versions with the largest change
    vs the base, and (b) transferability: surrogate (the set's source model) x victim.

    \b
    Example:
      edgeprune evaluate base.h5 pruned30.h5 base.tflite --sets sets/pgd.npz,sets/fgsm.npz -o report
      edgeprune evaluate base.h5 p90.h5 p99.h5 --curve -d digits --limit 200 -o curves
      edgeprune evaluate base.h5 base.tflite --autoattack fast --eps 8/255 -d digits --limit 200 -o aa
    """
    from edgeprune import api
    from edgeprune.errors import EdgepruneError

    sets = tuple(p.strip() for group in set_paths for p in group.split(",") if p.strip())
    if curve or autoattack_version:
        options = api.RobustnessOptions(curve=curve, autoattack=autoattack_version, eps=eps_text, norm=norm,
                                        fmn_steps=fmn_steps, tune=not no_tune, dataset=dataset, limit=limit,
                                        batch_size=batch_size, seed=seed, input_range=input_range, **folder)
        if sets:
            raise EdgepruneError("--sets does not combine with --curve/--autoattack (they attack each model)")
        if inference_precision != "default":
            raise EdgepruneError("--inference-precision does not combine with --curve/--autoattack "
                                 "(they run each model at its runtime's default)")
        result = api.robustness(models, options, output, force=force, allow_unsafe=allow_unsafe,
                                progress=not quiet)
        click.echo(result.to_markdown())
    else:
        result = api.evaluate(models, api.EvaluateOptions(sets=sets, dataset=dataset, limit=limit,
                                                          batch_size=batch_size, input_range=input_range,
                                                          inference_precision=inference_precision,
                                                          seed=seed, **folder),
                              output, force=force, allow_unsafe=allow_unsafe, progress=not quiet)
        click.echo(result.to_markdown(), nl=False)
    if result.paths:
        click.echo(f"-> {', '.join(str(p) for p in result.paths)}")
