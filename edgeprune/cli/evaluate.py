"""`edgeprune evaluate`: models x (clean split + transfer sets) -> accuracy tables."""

from __future__ import annotations

import click

from edgeprune.cli.common import allow_unsafe_option, quiet_option


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
@allow_unsafe_option
@quiet_option
def command(models, set_paths, dataset, limit, batch_size, output, allow_unsafe, quiet):
    """Accuracy of MODELS (.h5, .tflite, .xml, any mix) on the clean test split and on transfer sets.

    Each set must fit each model (image shape, classes, dataset) or nothing runs. The report
    shows (a) each base model beside its pruned/converted versions with the largest change
    vs the base, and (b) transferability: surrogate (the set's source model) x victim.

    \b
    Example:
      edgeprune evaluate base.h5 pruned30.h5 base.tflite --sets sets/pgd.npz,sets/fgsm.npz -o report
    """
    from edgeprune.errors import EdgepruneError
    from edgeprune.evaluate import evaluate, to_markdown, write_report

    sets = [p.strip() for group in set_paths for p in group.split(",") if p.strip()]
    if not sets and not dataset:
        raise EdgepruneError("nothing to evaluate on: give --sets and/or --dataset")
    report = evaluate(list(models), sets, dataset_spec=dataset, limit=limit, batch_size=batch_size,
                      allow_unsafe=allow_unsafe, progress=not quiet)
    click.echo(to_markdown(report), nl=False)
    if output:
        written = write_report(report, output)
        click.echo(f"-> {', '.join(str(p) for p in written)}")
