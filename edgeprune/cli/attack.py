"""`edgeprune attack`: craft a transfer set on a (base) model."""

from __future__ import annotations

import click

from edgeprune.cli.common import (allow_unsafe_option, dataset_option, force_option, input_range_option, quiet_option,
                                  seed_option)
from edgeprune.cli.folders import folder_options
from edgeprune.vocab import ATTACK_PRESETS, NORMS, SPLITS


def _attack_help() -> str:
    from edgeprune.attacks.registry import ATTACKS

    lines = []
    for spec in ATTACKS.values():
        params = ", ".join(p.describe() for p in spec.params) or "no parameters"
        lines.append(f"  {spec.name:<9} [{spec.kind}; {'/'.join(spec.norms)}] {spec.description}\n"
                     f"            params: {params}")
    return "\n".join(lines)


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    from edgeprune.errors import EdgepruneError

    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise EdgepruneError(f"--param expects KEY=VALUE, got {pair!r}")
        params[key.strip().replace("-", "_")] = value.strip()
    return params


@click.command("attack", epilog="\b\nAttacks:\n" + _attack_help())
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--attack", "-a", "attack_name", required=True, help="Attack name (listed below).")
@dataset_option()
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Attack a class-stratified subset of N images of the split (SPSA needs it).")
@click.option("--eps", type=float, default=None,
              help="Perturbation bound in --norm. Default 8/255 (linf) or 0.5 (l2) for bounded attacks; "
                   "none (unbounded) for minimum-norm ones (deepfool, cw).")
@click.option("--norm", type=click.Choice(NORMS), default=None,
              help="Default: the attack's first norm (linf, or l2 for cw/deepfool).")
@click.option("--steps", type=int, default=None, help="Shortcut for --param steps=N.")
@click.option("--step-size", type=float, default=None, help="Shortcut for --param step_size=X.")
@click.option("--param", "-p", "param_pairs", multiple=True, metavar="KEY=VALUE",
              help="An attack parameter (repeatable); see the list below.")
@click.option("--preset", type=click.Choice(ATTACK_PRESETS), default=None,
              help="Named settings: vora2023 = the first paper's (FGSM eps 0.2; BIM eps 1, step 0.1 x100; "
                   "PGD/APGD eps 0.3, step 0.1 x100; CW lr 0.01 x10; DeepFool 5 iter; UAP 10/255). "
                   "Explicit options override it.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="sets/NAME: writes NAME.npz (x_adv, y, index) and NAME.json (provenance).")
@seed_option()
@input_range_option
@allow_unsafe_option
@force_option
@quiet_option
@folder_options
def command(model, attack_name, dataset, split, limit, eps, norm, steps, step_size, param_pairs, preset,
            batch_size, output, seed, input_range, folder, allow_unsafe, force, quiet):
    """Craft a transfer set: attack MODEL (.h5) on a dataset split and save the adversarial images.

    Attacks are untargeted and use the true labels. Every x_adv is projected onto the eps-ball
    and [0, 1]; success and perturbation norms are measured on MODEL. An interrupted run keeps
    finished batches in NAME.partial.npz and the same command resumes from them.

    \b
    Examples:
      edgeprune attack base.h5 -a pgd --eps 0.03 --steps 10 -d digits -o sets/pgd
      edgeprune attack base.h5 -a cw --preset vora2023 --limit 200 -o sets/cw
    """
    from edgeprune.api import AttackOptions, attack

    options = AttackOptions(attack=attack_name, dataset=dataset, split=split, limit=limit, eps=eps, norm=norm,
                            steps=steps, step_size=step_size, params=parse_params(param_pairs) or None,
                            preset=preset, batch_size=batch_size, seed=seed, input_range=input_range,
                            **folder)
    result = attack(model, options, output, force=force, allow_unsafe=allow_unsafe, progress=not quiet)
    record = result.record
    metrics, norms, config = record["source_metrics"], record["perturbation"], record["attack"]
    click.echo(f"{config['name']} ({config['norm']}, eps {config['eps'] if config['eps'] is not None else 'none'}) "
               f"on {record['dataset']['images']} {record['dataset']['name']} {split} images: accuracy "
               f"{metrics['clean_accuracy']:.4f} -> {metrics['adversarial_accuracy']:.4f}, success "
               f"{metrics['success_rate']:.2%}, median L2 {norms['l2']['median']:.4f} / Linf "
               f"{norms['linf']['median']:.4f}, {record['seconds']:.1f} s -> {result.paths[0]}")
