"""`edgeprune evaluate`: models x (clean split + transfer sets) -> accuracy tables."""

from __future__ import annotations

import click

from edgeprune.cli.common import allow_unsafe_option, input_range_option, quiet_option


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
@click.option("--autoattack", "autoattack_version", type=click.Choice(["standard", "fast"]), default=None,
              help="AutoAttack robust accuracy at --eps instead (APGD-CE, APGD-T, FAB-T, Square; per stage). "
                   ".tflite/.xml models get the black-box Square stage only.")
@click.option("--eps", "eps_text", default=None,
              help="--autoattack: the bound (default 8/255 linf, 0.5 l2). --curve: eps values to tabulate, "
                   "comma-separated (default 2/255,4/255,8/255 linf; 0.25,0.5,1 l2). Fractions allowed.")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True,
              help="Norm for --curve / --autoattack.")
@click.option("--fmn-steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="--curve: FMN iterations per image.")
@click.option("--no-tune", is_flag=True,
              help="--curve: skip FMN's step-size/schedule search on a 32-image calibration subset.")
@click.option("--seed", type=int, default=0, show_default=True, help="--autoattack: random seed (recorded).")
@input_range_option
@allow_unsafe_option
@quiet_option
def command(models, set_paths, dataset, limit, batch_size, output, curve, autoattack_version, eps_text, norm,
            fmn_steps, no_tune, seed, input_range, allow_unsafe, quiet):
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
    from edgeprune.errors import EdgepruneError
    from edgeprune.evaluate import evaluate, to_markdown, write_report

    if curve or autoattack_version:
        from edgeprune.robustness import robustness_command

        robustness_command(models, curve=curve, autoattack_version=autoattack_version, eps_text=eps_text,
                           norm=norm, dataset=dataset, limit=limit, batch_size=batch_size, output=output,
                           fmn_steps=fmn_steps, tune=not no_tune, seed=seed, sets=set_paths,
                           allow_unsafe=allow_unsafe, progress=not quiet, echo=click.echo)
        return
    sets = [p.strip() for group in set_paths for p in group.split(",") if p.strip()]
    if not sets and not dataset:
        raise EdgepruneError("nothing to evaluate on: give --sets and/or --dataset")
    report = evaluate(list(models), sets, dataset_spec=dataset, limit=limit, batch_size=batch_size,
                      allow_unsafe=allow_unsafe, progress=not quiet, input_range=input_range)
    click.echo(to_markdown(report), nl=False)
    if output:
        written = write_report(report, output)
        click.echo(f"-> {', '.join(str(p) for p in written)}")
