"""Adversarial attacks behind one runner; transfer sets are their saved output.

The attack contract (details in `edgeprune.attacks.registry`):

    fn(model_fn, x, y, *, eps, norm, seed, **params) -> x_adv

one batch of float32 images in [0, 1], `model_fn` returns differentiable LOGITS, `y` are the
true labels, `norm` is "linf" or "l2" (`edgeprune.attacks.norms.Norm`; `parse_norm` also takes
np.inf, "inf", 2, "L2"), `seed` is specific to the batch. The attack only
searches; `edgeprune.attacks.runner.run_attack` keeps the invariants in one place (input range,
logits not softmax, projection to the eps-ball and [0, 1], success, norms, seeds, resume).
Registering an attack is one `register(AttackSpec(...))` entry in `registry.py`.

Importing this package does not import TensorFlow.
"""

from edgeprune.attacks.registry import (ATTACKS, DEFAULT_EPS, NORMS, PRESETS, AttackSpec, Param,
                                        get_attack, normalize_norm, preset_settings, register)

__all__ = ["ATTACKS", "DEFAULT_EPS", "NORMS", "PRESETS", "AttackSpec", "Param", "get_attack",
           "normalize_norm", "preset_settings", "register"]
