"""The attack registry: one `AttackSpec` entry per attack name.

THE ATTACK CONTRACT (every attack edgeprune runs follows it)
-----------------------------------------------------------
An attack is a plain function on ONE batch::

    fn(model_fn, x, y, *, eps, norm, seed, **params) -> x_adv

- `model_fn`: maps a float32 `tf.Tensor` batch (NHWC, [0, 1]) to LOGITS (`tf.Tensor`),
  differentiable. The runner guarantees logits: a softmax head is stripped first.
- `x`: float32 `tf.Tensor` (B, H, W, C) in [0, 1]; `y`: int64 `tf.Tensor` (B,) TRUE labels
  (attacks are untargeted and must never guess labels from predictions).
- `eps`: float > 0 for bounded attacks; for minimum-norm attacks `None` means unbounded
  (a float bounds them too). `norm`: "linf" or "l2".
- `seed`: int, already specific to this batch (derived by the runner from the user's seed and
  the batch position, so a resumed run gives the same bytes). Use it for every random draw
  (e.g. `tf.random.Generator.from_seed(seed)`), never the global RNG.
- `**params`: the entry's parameters, already validated and typed by the registry.
- Returns x_adv (numpy or tf, same shape). The attack only *searches*: the runner projects
  x_adv onto the eps-ball in `norm` and onto [0, 1], judges success and measures norms.

A universal attack (`kind="universal"`) has the same signature but returns ONE perturbation
of shape x.shape[1:], fitted on the batch it is given (the runner's fit subset); the runner
adds it to every image.

Adding an attack is one `register(AttackSpec(...))` call below, with `fn` given as a
"module:function" string so that importing the registry (e.g. for `--help`) never imports
TensorFlow.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeprune.attacks.norms import NORMS, parse_norm
from edgeprune.errors import EdgepruneError
from edgeprune.vocab import AUTOATTACK_VERSIONS

KINDS = ("bounded", "minimum-norm", "universal")
DEFAULT_EPS = {"linf": 8 / 255, "l2": 0.5}


def normalize_norm(norm: Any) -> str:
    """'linf' or 'l2' from any usual spelling (np.inf, 'inf', 2, 'L2', ...)."""
    return parse_norm(norm).value


@dataclass(frozen=True)
class Param:
    """One attack parameter: its type, default and allowed range (checked on every run)."""

    name: str
    type: type
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    help: str = ""

    def parse(self, value: Any, attack: str) -> Any:
        """Convert (strings from the CLI included) and range-check one value."""
        try:
            if self.type is bool and isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = lowered in ("true", "1", "yes")
            elif self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise EdgepruneError(
                f"attack {attack}: parameter {self.name} must be {self.type.__name__}, got {value!r}"
            ) from None
        if self.type is float and not math.isfinite(value):
            raise EdgepruneError(f"attack {attack}: parameter {self.name} must be finite, got {value}")
        if self.low is not None and value < self.low:
            raise EdgepruneError(f"attack {attack}: parameter {self.name} must be >= {self.low}, got {value}")
        if self.high is not None and value > self.high:
            raise EdgepruneError(f"attack {attack}: parameter {self.name} must be <= {self.high}, got {value}")
        if self.choices is not None and value not in self.choices:
            raise EdgepruneError(
                f"attack {attack}: parameter {self.name} must be one of {', '.join(map(str, self.choices))}, "
                f"got {value!r}")
        return value

    def describe(self) -> str:
        bounds = ""
        if self.choices:
            bounds = f" in {{{', '.join(map(str, self.choices))}}}"
        elif self.low is not None or self.high is not None:
            bounds = f" in [{'' if self.low is None else self.low}, {'' if self.high is None else self.high}]"
        return f"{self.name}={self.default!r} ({self.type.__name__}{bounds})"


@dataclass(frozen=True)
class AttackSpec:
    """What the runner needs to know about one attack; `fn` follows the module contract."""

    name: str
    fn: str | Callable
    norms: tuple[str, ...]
    params: tuple[Param, ...] = ()
    kind: str = "bounded"
    needs_gradients: bool = True
    description: str = ""
    backend: str = "edgeprune"
    # Attacks that work one image at a time: refuse more images than this (use --limit).
    max_images: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        bad = [n for n in self.norms if n not in NORMS]
        if bad or not self.norms:
            raise ValueError(f"norms must be a non-empty subset of {NORMS}, got {self.norms!r}")
        names = [p.name for p in self.params]
        reserved = {"eps", "norm", "seed"} & set(names)
        if len(set(names)) != len(names) or reserved:
            raise ValueError(f"attack {self.name}: duplicate or reserved parameter names {names}")

    @property
    def bounded(self) -> bool:
        return self.kind != "minimum-norm"

    def function(self) -> Callable:
        """The attack function (imported on first use when given as 'module:function')."""
        if callable(self.fn):
            return self.fn
        module, _, attr = self.fn.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise EdgepruneError(f"attack {self.name}: cannot load {self.fn} ({exc})") from None

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with `params`, each validated; unknown names are refused."""
        by_name = {p.name: p for p in self.params}
        unknown = sorted(set(params or {}) - set(by_name))
        if unknown:
            valid = ", ".join(p.describe() for p in self.params) or "none"
            raise EdgepruneError(
                f"attack {self.name}: unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
        resolved = self.defaults()
        for key, value in (params or {}).items():
            resolved[key] = by_name[key].parse(value, self.name)
        return resolved


ATTACKS: dict[str, AttackSpec] = {}


def register(spec: AttackSpec) -> AttackSpec:
    if spec.name in ATTACKS:
        raise ValueError(f"attack {spec.name!r} is already registered")
    ATTACKS[spec.name] = spec
    return spec


def get_attack(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise EdgepruneError(f"unknown attack {name!r}; expected one of {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


# --- shared parameter definitions -------------------------------------------------------------
STEPS = Param("steps", int, 10, low=1, high=100_000, help="gradient steps")
STEP_SIZE = Param("step_size", float, 0.0, low=0.0,
                  help="step per iteration in the attack's norm; 0 = 2.5 * eps / steps (Madry et al.)")
RANDOM_START = Param("random_start", bool, True, help="start from a uniform point in the eps-ball")

# --- the attacks -------------------------------------------------------------------------------
register(AttackSpec(
    "fgsm", "edgeprune.attacks.gradient:fgsm", norms=("linf", "l2"), backend="cleverhans",
    description="Fast gradient (sign) method, one step of size eps (CleverHans)."))
register(AttackSpec(
    "bim", "edgeprune.attacks.gradient:bim", norms=("linf", "l2"),
    params=(STEPS, STEP_SIZE),
    description="Basic iterative method: PGD without random start (compiled loop, matches CleverHans)."))
register(AttackSpec(
    "pgd", "edgeprune.attacks.gradient:pgd", norms=("linf", "l2"),
    params=(STEPS, STEP_SIZE, RANDOM_START),
    description="Projected gradient descent with a seeded random start (compiled loop, matches CleverHans)."))
register(AttackSpec(
    "mim", "edgeprune.attacks.gradient:mim", norms=("linf", "l2"), backend="cleverhans",
    params=(STEPS, STEP_SIZE, Param("decay", float, 1.0, low=0.0, help="momentum decay factor")),
    description="Momentum iterative method (CleverHans)."))
register(AttackSpec(
    "cw", "edgeprune.attacks.cw:carlini_wagner_l2", norms=("l2",), kind="minimum-norm",
    params=(Param("steps", int, 100, low=1, high=100_000, help="Adam iterations per search step"),
            Param("learning_rate", float, 0.01, low=1e-6, high=10.0),
            Param("binary_search_steps", int, 5, low=1, high=50),
            Param("initial_const", float, 0.01, low=1e-8),
            Param("confidence", float, 0.0, low=0.0)),
    description="Carlini-Wagner L2 (own compiled implementation; CleverHans 4.0's is broken)."))
register(AttackSpec(
    "spsa", "edgeprune.attacks.gradient:spsa", norms=("linf",), backend="cleverhans",
    needs_gradients=False, max_images=256,
    params=(Param("steps", int, 10, low=1, high=10_000),
            Param("samples", int, 128, low=2, high=8192, help="SPSA samples per step (even)"),
            Param("delta", float, 0.01, low=1e-6, high=1.0),
            Param("learning_rate", float, 0.01, low=1e-6, high=1.0)),
    description="SPSA, gradient-free (CleverHans; one image at a time, ~2 s/image: bound with --limit)."))
register(AttackSpec(
    "deepfool", "edgeprune.attacks.deepfool:deepfool", norms=("l2", "linf"), kind="minimum-norm",
    params=(Param("max_iter", int, 50, low=1, high=10_000),
            Param("overshoot", float, 0.02, low=0.0, high=10.0),
            Param("candidates", int, 10, low=2, high=1000, help="top-k classes considered")),
    description="DeepFool, multi-class minimum-norm (own, batched, compiled)."))
register(AttackSpec(
    "uap", "edgeprune.attacks.uap:universal_perturbation", norms=("linf", "l2"), kind="universal",
    params=(Param("max_iter", int, 5, low=1, high=1000, help="passes over the fit set"),
            Param("fit_size", int, 256, low=1, high=1_000_000, help="images used to fit the vector"),
            Param("target_fooling", float, 0.8, low=0.0, high=1.0, help="stop at this fooling rate"),
            Param("deepfool_iter", int, 10, low=1, high=1000),
            Param("overshoot", float, 0.02, low=0.0, high=10.0),
            Param("batch_size", int, 32, low=1, high=4096, help="DeepFool steps per mini-batch")),
    description="Universal adversarial perturbation: one vector for all images (DeepFool steps "
                "projected on the eps-ball)."))
register(AttackSpec(
    "apgd", "edgeprune.attacks.apgd:apgd", norms=("linf", "l2"),
    params=(Param("steps", int, 100, low=1, high=100_000),
            Param("loss", str, "ce", choices=("ce", "dlr")),
            Param("n_restarts", int, 1, low=1, high=100),
            Param("rho", float, 0.75, low=0.01, high=1.0)),
    description="Auto-PGD (Croce & Hein 2020) with CE or DLR loss."))
register(AttackSpec(
    "apgd-t", "edgeprune.attacks.apgd:apgd_targeted", norms=("linf", "l2"),
    params=(Param("steps", int, 100, low=1, high=100_000),
            Param("n_target_classes", int, 9, low=1, high=1000, help="targets: classes ranked 2..n+1"),
            Param("rho", float, 0.75, low=0.01, high=1.0)),
    description="APGD-T: targeted DLR loss over the top classes (AutoAttack's second stage)."))
register(AttackSpec(
    "fab", "edgeprune.attacks.fab:fab", norms=("linf",), kind="minimum-norm",
    params=(Param("steps", int, 100, low=1, high=100_000),
            Param("n_restarts", int, 1, low=1, high=100),
            Param("target_class_rank", int, 2, low=2, high=1000, help="target = class ranked this"),
            Param("alpha_max", float, 0.1, low=0.0, high=1.0),
            Param("eta", float, 1.05, low=1.0, high=10.0, help="overshoot"),
            Param("beta", float, 0.9, low=0.01, high=1.0, help="backward step")),
    description="FAB-T: targeted fast adaptive boundary attack, minimum-norm (Croce & Hein 2020)."))
register(AttackSpec(
    "square", "edgeprune.attacks.square:square", norms=("linf",), needs_gradients=False,
    params=(Param("n_queries", int, 5000, low=1, high=1_000_000),
            Param("p_init", float, 0.8, low=1e-4, high=1.0, help="initial share of pixels redrawn")),
    description="Square Attack: black-box random search on the logits (Andriushchenko et al. 2020)."))
register(AttackSpec(
    "fmn", "edgeprune.attacks.fmn:fmn", norms=("linf", "l2"), kind="minimum-norm",
    params=(Param("steps", int, 100, low=1, high=100_000),
            Param("alpha_init", float, 1.0, low=1e-6, high=100.0,
                  help="step: linf x epsilon, l2 a length"),
            Param("alpha_final", float, 0.0, low=0.0, high=100.0, help="0 = alpha_init / 100"),
            Param("gamma_init", float, 0.05, low=1e-6, high=0.99),
            Param("gamma_final", float, 0.001, low=1e-6, high=0.99),
            Param("schedule", str, "cosine", choices=("cosine", "linear"))),
    description="FMN fast minimum-norm attack (Pintor et al. 2021); curves: evaluate --curve."))
register(AttackSpec(
    "autoattack", "edgeprune.attacks.autoattack:autoattack", norms=("linf", "l2"),
    params=(Param("version", str, "standard", choices=AUTOATTACK_VERSIONS),),
    description="AutoAttack ensemble APGD-CE, APGD-T, FAB-T, Square; per-point worst case."))

# --- presets: named parameter sets per attack ---------------------------------------------------
# vora2023: the first paper's settings (it used ART on [0, 1] inputs). "DeepFool eps 1e-6" is
# ART's overshoot; "UAP eps 10" is read on the 0..255 scale of the UAP paper (10/255 Linf).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "vora2023": {
        "fgsm": {"eps": 0.2, "norm": "linf"},
        "bim": {"eps": 1.0, "norm": "linf", "step_size": 0.1, "steps": 100},
        "pgd": {"eps": 0.3, "norm": "linf", "step_size": 0.1, "steps": 100},
        "apgd": {"eps": 0.3, "norm": "linf", "steps": 100},
        "cw": {"norm": "l2", "learning_rate": 0.01, "steps": 10},
        "deepfool": {"norm": "l2", "max_iter": 5, "overshoot": 1e-6},
        "uap": {"eps": 10 / 255, "norm": "linf", "max_iter": 1},
    },
}


def preset_settings(preset: str, attack: str) -> dict[str, Any]:
    """eps/norm/params a preset gives `attack` (refuses unknown presets and uncovered attacks)."""
    if preset not in PRESETS:
        raise EdgepruneError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if attack not in PRESETS[preset]:
        raise EdgepruneError(
            f"preset {preset} has no settings for attack {attack}; it covers {', '.join(PRESETS[preset])}")
    return dict(PRESETS[preset][attack])
