"""Training recipes: how the learning rate moves and what the loss is, one place for each.

- `vora2023`: the first paper's recipe (Vora et al. 2023): SGD at `lr` multiplied by `gamma` at
  each of `milestones`, plain cross-entropy. What `edgeprune train` did before recipes existed,
  step for step, and still its default, so the paper-named suites and their recorded results
  keep meaning what they say.
- `cpu`: for short budgets on a few thousand images (a 2-core CPU, tens of epochs): a linear
  warm-up from `lr`/10 to `lr` over the first 15% of the steps, then cosine annealing to zero
  (one-cycle shaped), and label smoothing 0.1. `milestones` and `gamma` do not apply. Measured
  against `vora2023` on the CIFAR-10 sample in benchmarks/results/train.md.

Both use the same optimizer (SGD, momentum 0.9, Nesterov, `weight_decay`) and the same
`tf.data` augmentation (`augment`); a recipe changes only the schedule and the loss.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edgeprune.errors import EdgepruneError
from edgeprune.vocab import RECIPES

if TYPE_CHECKING:
    import tensorflow as tf

    from edgeprune.train import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A named schedule + loss. `schedule`: "multistep" (milestones x gamma) or "warmup-cosine"."""

    name: str
    schedule: str
    warmup_fraction: float = 0.0  # of all steps, linear from lr * warmup_start to lr
    warmup_start: float = 0.1
    label_smoothing: float = 0.0

    def describe(self, config: "TrainConfig", steps_per_epoch: int) -> dict[str, Any]:
        """What a training report records: the recipe and the schedule it ran."""
        record: dict[str, Any] = asdict(self)
        total = config.epochs * steps_per_epoch
        record["steps"] = total
        if self.schedule == "multistep":
            record["milestones"] = [m for m in config.milestones if 0 < m < config.epochs]
            record["gamma"] = config.gamma
        else:
            record["warmup_steps"] = warmup_steps(self, total)
        return record


RECIPE_TABLE: dict[str, Recipe] = {
    "vora2023": Recipe("vora2023", "multistep"),
    "cpu": Recipe("cpu", "warmup-cosine", warmup_fraction=0.15, warmup_start=0.1, label_smoothing=0.1),
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPE_TABLE[name]
    except KeyError:
        raise EdgepruneError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}") from None


def warmup_steps(recipe: Recipe, total_steps: int) -> int:
    return min(total_steps, math.ceil(recipe.warmup_fraction * total_steps)) if recipe.warmup_fraction else 0


def learning_rate_schedule(recipe: Recipe, config: "TrainConfig", steps_per_epoch: int) -> Any:
    """The Keras learning-rate schedule (or constant) `recipe` trains `config` with."""
    import tensorflow as tf

    if recipe.schedule == "multistep":
        milestones = [m for m in config.milestones if 0 < m < config.epochs]
        if not milestones:
            return config.learning_rate
        boundaries = [m * steps_per_epoch for m in milestones]
        values = [config.learning_rate * config.gamma ** i for i in range(len(milestones) + 1)]
        return tf.keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    total = config.epochs * steps_per_epoch
    return WarmupCosine(config.learning_rate, total, warmup_steps(recipe, total), recipe.warmup_start)


def make_optimizer(recipe: Recipe, config: "TrainConfig", steps_per_epoch: int) -> "tf.keras.optimizers.Optimizer":
    import tensorflow as tf

    return tf.keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(recipe, config, steps_per_epoch), momentum=config.momentum,
        nesterov=config.nesterov, weight_decay=config.weight_decay or None,
    )


def make_loss(recipe: Recipe, num_classes: int) -> Any:
    """Cross-entropy on logits and integer labels, label-smoothed where the recipe says."""
    import tensorflow as tf

    if not recipe.label_smoothing:
        return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # Keras 2's sparse cross-entropy has no label_smoothing: one-hot the labels first.
    smoothed = tf.keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing)

    def smoothed_cross_entropy(y_true, y_pred):
        labels = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes)
        return smoothed(labels, y_pred)

    return smoothed_cross_entropy


def _warmup_cosine_class() -> type:
    import tensorflow as tf

    class _WarmupCosine(tf.keras.optimizers.schedules.LearningRateSchedule):
        """Linear from peak * start to peak over `warmup` steps, then cosine from peak to 0 at
        `total` steps (and 0 after)."""

        def __init__(self, peak: float, total: int, warmup: int, start: float) -> None:
            if total < 1 or not 0 <= warmup <= total:
                raise EdgepruneError(f"warm-up needs 0 <= warmup <= total steps, got {warmup} of {total}")
            self.peak, self.total, self.warmup, self.start = float(peak), int(total), int(warmup), float(start)

        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = self.peak * (self.start + (1.0 - self.start) * step / max(self.warmup, 1))
            progress = tf.clip_by_value((step - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
            cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
            return tf.where(step < self.warmup, warm, cosine)

        def get_config(self) -> dict[str, Any]:
            return {"peak": self.peak, "total": self.total, "warmup": self.warmup, "start": self.start}

    return _WarmupCosine


def WarmupCosine(peak: float, total: int, warmup: int, start: float = 0.1) -> "tf.keras.optimizers.schedules.LearningRateSchedule":  # noqa: N802
    """The `cpu` recipe's schedule (a Keras LearningRateSchedule; TensorFlow loads on first use)."""
    return _warmup_cosine_class()(peak, total, warmup, start)
