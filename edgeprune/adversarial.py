"""Adversarial training: one compiled training step for `train` and every fine-tune of `prune`.

`install(model, recipe)` gives a compiled Keras model a `train_step` that trains on
adversarial examples made inside the same `tf.function`, so `model.fit` (with TF-MOT's and
NNCF's callbacks) trains adversarially without any other change. The recipes, with their
published defaults (eps in [0, 1] image units whatever range the model takes):

- `fgsm-rs` (Wong et al. 2020, "Fast is better than free"): one FGSM step of 1.25 * eps from a
  uniform random start in the eps-ball, projected back onto the ball.
- `pgd` (Madry et al. 2018, PGD-AT): 10 steps of 2/255 from a uniform random start.
- `trades` (Zhang et al. 2019): loss CE(f(x), y) + beta * KL(f(x) || f(x')), beta 6; x' maximises
  the KL with 10 steps of 2/255 from x + 0.001 * N(0, 1).

The attacks run the model in inference mode (batch-norm statistics untouched, as in TRADES'
reference code); the weight update runs it in training mode. `fgsm-rs` and `pgd` reuse the
compiled PGD loop of `edgeprune.attacks.gradient`.

Catastrophic overfitting (FGSM training's robust accuracy collapsing to ~0 within an epoch,
Wong et al. 2020 sec. 5) is guarded by `RobustGuard`: after each epoch PGD-10 attacks a fixed
batch of training images that is never augmented (Wong et al. check a training minibatch), the
best robust weights are kept and restored at the end, and a collapse (robust accuracy below
half its best) is logged and recorded.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.options import flag
from edgeprune.stats import annotate
from edgeprune.vocab import ADVERSARIAL_KINDS

if TYPE_CHECKING:
    import tensorflow as tf

    from edgeprune.inputrange import InputRange

DEFAULT_EPS = 8 / 255
# Published steps / step sizes (step size in [0, 1] units; None: the rule in `resolve`).
DEFAULT_STEPS = {"fgsm-rs": 1, "pgd": 10, "trades": 10}
DEFAULT_STEP_SIZE = {"pgd": 2 / 255, "trades": 2 / 255}
FGSM_RS_STEP = 1.25  # x eps (Wong et al. 2020)
TRADES_BETA = 6.0
GUARD_IMAGES = 256
GUARD_STEPS = 10
COLLAPSE_RATIO = 0.5  # robust accuracy below half its best: catastrophic overfitting


@dataclass(frozen=True, kw_only=True)
class AdversarialFields:
    """The adversarial-training options shared by `train` and `prune` (flags `--adversarial`,
    `--adv-eps`, `--adv-steps`, `--adv-step-size`, `--adv-beta`, `--adv-guard/--no-adv-guard`)."""

    adversarial: str = "none"
    adv_eps: float = DEFAULT_EPS
    adv_steps: int | None = None  # None: the recipe's published default
    adv_step_size: float | None = None  # [0, 1] units; None: the recipe's published default
    adv_beta: float = TRADES_BETA  # TRADES only
    adv_guard: bool = flag(True, off="no-adv-guard")

    def adversarial_recipe(self) -> "Recipe | None":
        """The validated recipe, or None for `--adversarial none`."""
        return make_recipe(self.adversarial, eps=self.adv_eps, steps=self.adv_steps,
                           step_size=self.adv_step_size, beta=self.adv_beta, guard=self.adv_guard)


@dataclass(frozen=True)
class Recipe:
    """A validated adversarial-training recipe (what the sidecar records)."""

    kind: str
    eps: float
    steps: int
    step_size: float
    random_start: bool = True
    beta: float = TRADES_BETA
    guard: bool = True
    guard_images: int = GUARD_IMAGES
    guard_steps: int = GUARD_STEPS
    reference: str = ""

    def record(self) -> dict:
        return {**asdict(self), "eps_255": round(self.eps * 255, 4), "step_size_255": round(self.step_size * 255, 4)}


REFERENCES = {"fgsm-rs": "Wong, Rice, Kolter 2020 (FGSM with random start)",
              "pgd": "Madry et al. 2018 (PGD adversarial training)",
              "trades": "Zhang et al. 2019 (TRADES)"}


def make_recipe(kind: str, *, eps: float = DEFAULT_EPS, steps: int | None = None,
                step_size: float | None = None, beta: float = TRADES_BETA, guard: bool = True,
                random_start: bool = True) -> Recipe | None:
    """Validate and fill in published defaults; None for `none`."""
    if kind not in ADVERSARIAL_KINDS:
        raise EdgepruneError(f"--adversarial must be one of {', '.join(ADVERSARIAL_KINDS)}, got {kind!r}")
    if not 0.0 < eps <= 1.0:
        raise EdgepruneError(f"--adv-eps must be in (0, 1] (image units), got {eps}")
    if steps is not None and steps < 1:
        raise EdgepruneError(f"--adv-steps must be at least 1, got {steps}")
    if step_size is not None and not step_size > 0:
        raise EdgepruneError(f"--adv-step-size must be > 0, got {step_size}")
    if not beta > 0:
        raise EdgepruneError(f"--adv-beta must be > 0, got {beta}")
    if kind == "none":
        return None
    steps = DEFAULT_STEPS[kind] if steps is None else steps
    if step_size is None:
        step_size = FGSM_RS_STEP * eps if kind == "fgsm-rs" else DEFAULT_STEP_SIZE[kind]
    return Recipe(kind=kind, eps=float(eps), steps=int(steps), step_size=float(step_size),
                  random_start=random_start, beta=float(beta), guard=guard, reference=REFERENCES[kind])


def _unit_range() -> "InputRange":
    from edgeprune.inputrange import UNIT

    return UNIT


def install(model: "tf.keras.Model", recipe: Recipe, *, input_range: "InputRange | None" = None,
            seed: int = 0) -> Any:
    """Give the compiled `model` an adversarial `train_step` (call after `compile`).

    `input_range`: what the training pipeline feeds the model (eps and clipping stay in [0, 1]
    units; the attack works on (x - low) / scale). Logs: `loss`, `accuracy` (clean, compiled
    metric), `adv_accuracy` (on the training attack's examples; the returned metric, kept off
    the model so it is never saved with it: reset it at each epoch).
    """
    import tensorflow as tf

    from edgeprune.attacks.gradient import _build_pgd_loop

    rng = input_range or _unit_range()
    low, scale = float(rng.low), float(rng.scale)
    generator = tf.random.Generator.from_seed(int(seed))
    adv_accuracy = tf.keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")
    image_shape = tuple(int(d) for d in model.input_shape[1:])

    def logits01(x01):  # the model on [0, 1] images, inference mode (attack side)
        return model(x01 * scale + low, training=False)

    pgd_loop = _build_pgd_loop(logits01, _norm_linf(), image_shape) if recipe.kind != "trades" else None
    eps = tf.constant(recipe.eps, tf.float32)
    step = tf.constant(recipe.step_size, tf.float32)
    steps = tf.constant(recipe.steps, tf.int32)
    kl = tf.keras.losses.KLDivergence(reduction=tf.keras.losses.Reduction.SUM)

    @tf.function
    def trades_inner(x01, p_clean):
        x_adv = tf.clip_by_value(x01 + 0.001 * generator.normal(tf.shape(x01)), 0.0, 1.0)
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                loss = kl(p_clean, tf.nn.softmax(logits01(x_adv)))
            grad = tape.gradient(loss, x_adv)
            x_adv = tf.clip_by_value(x_adv + step * tf.sign(grad), x01 - eps, x01 + eps)
            x_adv = tf.clip_by_value(x_adv, 0.0, 1.0)
        return tf.stop_gradient(x_adv)

    def train_step(self, data):
        x, y = data[0], data[1]
        y = tf.cast(tf.reshape(y, [-1]), tf.int64)
        x01 = (tf.cast(x, tf.float32) - low) / scale
        if recipe.kind == "trades":
            p_clean = tf.stop_gradient(tf.nn.softmax(logits01(x01)))
            x_adv01 = trades_inner(x01, p_clean)
        else:
            start = (generator.uniform(tf.shape(x01), -recipe.eps, recipe.eps) if recipe.random_start
                     else tf.zeros_like(x01))
            x_adv01 = tf.stop_gradient(pgd_loop(x01, y, start, eps, step, steps))
        x_adv = x_adv01 * scale + low
        with tf.GradientTape() as tape:
            if recipe.kind == "trades":
                clean_logits = self(x, training=True)
                adv_logits = self(x_adv, training=True)
                natural = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, clean_logits))
                robust = tf.reduce_mean(tf.reduce_sum(
                    tf.nn.softmax(clean_logits) * (tf.nn.log_softmax(clean_logits) - tf.nn.log_softmax(adv_logits)),
                    axis=-1))
                loss = natural + recipe.beta * robust
                if self.losses:
                    loss += tf.add_n(self.losses)
            else:
                adv_logits = self(x_adv, training=True)
                loss = self.compute_loss(x_adv, y, adv_logits)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        if recipe.kind != "trades":
            clean_logits = self(x, training=False)
        adv_accuracy.update_state(y, adv_logits)
        logs = self.compute_metrics(x, y, clean_logits, None)
        return {**logs, "loss": loss, "adv_accuracy": adv_accuracy.result()}

    import types

    model.train_step = types.MethodType(train_step, model)
    model.train_function = None
    return adv_accuracy


def _norm_linf() -> Any:
    from edgeprune.attacks.norms import Norm

    return Norm.LINF


def guard_batch(dataset: Any, *, images: int = GUARD_IMAGES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch of `dataset`'s training images in [0, 1] (seeded choice, never augmented;
    only these are decoded when the dataset is a folder)."""
    count = len(dataset.labels("train"))
    idx = np.sort(np.random.default_rng(seed).choice(count, size=min(images, count), replace=False))
    x_uint8, y = dataset.take("train", idx, dtype="uint8")
    return np.asarray(x_uint8, np.float32) / 255.0, np.asarray(y, np.int64)


@dataclass
class GuardRecord:
    """What the guard saw, per epoch, and what it did."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_robust_accuracy: float | None = None
    restored: bool = False
    collapsed_at: list[int] = field(default_factory=list)

    @property
    def triggered(self) -> bool:
        return bool(self.collapsed_at)

    def as_dict(self) -> dict:
        return {**asdict(self), "triggered": self.triggered}


def robust_guard(model: "tf.keras.Model", recipe: Recipe, x_guard01: np.ndarray, y_guard: np.ndarray, *,
                 input_range: "InputRange | None" = None, eligible_from: int = 0, seed: int = 0,
                 log: bool = True) -> tuple[Any, GuardRecord]:
    """A Keras callback: PGD-10 (random start, step 2.5 * eps / 10) on the guard batch after each
    epoch, keeping the best robust weights from epoch `eligible_from` (0-based; earlier epochs
    may not have their final mask yet) and restoring them at the end. Adds `robust_accuracy`
    to the epoch logs. Returns (callback, record)."""
    import tensorflow as tf

    from edgeprune.attacks.gradient import pgd

    rng = input_range or _unit_range()
    low, scale = float(rng.low), float(rng.scale)
    record = GuardRecord()

    def logits01(x01):
        return model(x01 * scale + low, training=False)

    class Guard(tf.keras.callbacks.Callback):
        best_weights: list | None = None

        def on_epoch_end(self, epoch, logs=None):
            x_adv = pgd(logits01, x_guard01, y_guard, eps=recipe.eps, norm="linf", seed=seed + epoch,
                        steps=recipe.guard_steps)
            from edgeprune.attacks.compiled import logits_of

            clean = float((logits_of(logits01, x_guard01).argmax(1) == y_guard).mean())
            robust = float((logits_of(logits01, x_adv).argmax(1) == y_guard).mean())
            if logs is not None:
                logs["robust_accuracy"] = robust
            record.epochs.append({"epoch": epoch + 1, "clean_accuracy": clean, "robust_accuracy": robust})
            best = record.best_robust_accuracy
            if best is not None and best >= 0.05 and robust < COLLAPSE_RATIO * best:
                record.collapsed_at.append(epoch + 1)
                if log:
                    print(f"adversarial guard: epoch {epoch + 1} robust accuracy {robust:.3f} on "
                          f"{len(y_guard)} guard images fell below half its best {best:.3f} "
                          "(catastrophic overfitting); best weights will be restored", file=sys.stderr)
            if epoch >= eligible_from and (best is None or robust > best):
                record.best_epoch, record.best_robust_accuracy = epoch + 1, robust
                self.best_weights = [w.copy() for w in model.get_weights()]

        def on_train_end(self, logs=None):
            last = record.epochs[-1]["robust_accuracy"] if record.epochs else None
            if (self.best_weights is not None and last is not None and record.best_epoch != len(record.epochs)
                    and record.best_robust_accuracy is not None and record.best_robust_accuracy > last):
                model.set_weights(self.best_weights)
                record.restored = True
                if log:
                    print(f"adversarial guard: restored the weights of epoch {record.best_epoch} "
                          f"(robust accuracy {record.best_robust_accuracy:.3f} vs {last:.3f} at the end)",
                          file=sys.stderr)
            self.best_weights = None

    return Guard(), record


def prepare(model: "tf.keras.Model", recipe: Recipe | None, dataset: Any, *,
            input_range: "InputRange | None" = None, eligible_from: int = 0, seed: int = 0,
            log: bool = True) -> tuple[list, dict | None]:
    """The one hook for a training loop: install the adversarial step on the compiled `model`
    and return ([callbacks], record) where `record` (the recipe, then the guard's findings once
    `fit` has run) goes into the sidecar. ([], None) when `recipe` is None."""
    if recipe is None:
        return [], None
    import tensorflow as tf

    if input_range is None:  # the range the training pipeline feeds (inputrange.dataset_for_model)
        input_range = getattr(dataset, "input_range", None)

    adv_accuracy = install(model, recipe, input_range=input_range, seed=seed)
    reset = tf.keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: adv_accuracy.reset_state())
    record: dict = {"recipe": recipe.record()}
    if not recipe.guard:
        return [reset], record
    x_guard, y_guard = guard_batch(dataset, images=recipe.guard_images, seed=seed)
    callback, guard = robust_guard(model, recipe, x_guard, y_guard, input_range=input_range,
                                   eligible_from=eligible_from, seed=seed, log=log)

    original_end = callback.on_train_end

    def on_train_end(logs=None):
        original_end(logs)
        record["guard"] = {"images": int(len(y_guard)), "attack": f"pgd-{recipe.guard_steps} linf eps {recipe.eps:.6g}",
                           "source": "fixed training images, not augmented (Wong et al. 2020)",
                           **guard.as_dict()}
        annotate(record["guard"])

    callback.on_train_end = on_train_end
    return [reset, callback], record
