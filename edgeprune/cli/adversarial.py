"""The adversarial-training flags shared by `train` and `prune` (edgeprune.adversarial)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from edgeprune.adversarial import DEFAULT_EPS, TRADES_BETA
from edgeprune.vocab import ADVERSARIAL_KINDS

NAMES = ("adversarial", "adv_eps", "adv_steps", "adv_step_size", "adv_beta", "adv_guard")


def adversarial_options(func: Callable) -> Callable:
    """Add --adversarial/--adv-* to a command; the command receives them as one `adversarial` dict
    (AdversarialFields keyword arguments)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["adversarial"] = {name: kwargs.pop(name) for name in NAMES}
        return func(*args, **kwargs)

    options = [
        click.option("--adversarial", type=click.Choice(ADVERSARIAL_KINDS), default="none", show_default=True,
                     help="Train on adversarial examples: fgsm-rs (Wong et al. 2020), pgd (Madry et al. 2018), "
                          "trades (Zhang et al. 2019)."),
        click.option("--adv-eps", type=float, default=DEFAULT_EPS, show_default="8/255",
                     help="L-inf radius in [0, 1] image units, whatever range the model takes."),
        click.option("--adv-steps", type=int, default=None,
                     help="Attack steps (default: fgsm-rs 1, pgd 10, trades 10)."),
        click.option("--adv-step-size", type=float, default=None,
                     help="Attack step in [0, 1] units (default: fgsm-rs 1.25*eps, pgd/trades 2/255)."),
        click.option("--adv-beta", type=float, default=TRADES_BETA, show_default=True, help="TRADES beta."),
        click.option("--adv-guard/--no-adv-guard", default=True, show_default=True,
                     help="PGD-10 on 256 fixed training images after each epoch; keep the best robust weights."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
