"""Unstructured magnitude pruning and N:M sparsity with TF-MOT, fine-tuned, stripped.

Realised through per-layer TF-MOT parameters: the model is cloned and only its Conv2D and
Dense layers are wrapped with `prune_low_magnitude`, each with its own schedule (so a
`TFOpLambda` elsewhere does not break wrapping, and global / LAMP per-layer targets are
honoured). BatchNormalization and DepthwiseConv2D stay dense, as in TF-MOT.

Measured traps this module avoids (see the stack notes): TF-MOT updates masks only at steps
`begin + k * frequency` up to `end_step`, with a default frequency of 100, so a short
fine-tune silently ends at 0% sparsity, and an `end_step` past the last step never reaches
the target. Here begin/end/frequency come from the real number of fine-tuning steps and the
last mask update lands on the final target. Wrappers are stripped before saving (their
config drops `sparsity_m_by_n` and reloads only inside `prune_scope()`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.data import Dataset
from edgeprune.errors import EdgepruneError
from edgeprune.prune.lamp import SCOPES, layer_sparsities, magnitude_mask, n_m_groups

if TYPE_CHECKING:
    import tensorflow as tf

SCHEDULES = ("constant", "polynomial")
PRUNED_KINDS = ("Conv2D", "Dense")
# Fraction of the fine-tuning steps over which the polynomial schedule ramps sparsity up;
# the rest fine-tunes with the final mask.
POLYNOMIAL_RAMP = 0.7
# Mask updates during the ramp (TF-MOT recomputes the threshold at each).
POLYNOMIAL_UPDATES = 10


def parse_pattern(text: str | None) -> tuple[int, int] | None:
    """"N:M" (N weights kept in every M consecutive input channels) -> (N, M)."""
    if text is None or text == "":
        return None
    try:
        kept, block = (int(part) for part in text.split(":"))
    except ValueError:
        raise EdgepruneError(f"pattern must look like N:M (e.g. 2:4), got {text!r}") from None
    if not 0 < kept < block:
        raise EdgepruneError(f"pattern N:M needs 0 < N < M, got {text!r}")
    return kept, block


@dataclass(frozen=True)
class TfmotConfig:
    """What to prune and how to fine-tune; validates itself when built."""

    sparsity: float | None = 0.5  # None with a pattern: N:M implies 1 - N/M
    schedule: str = "polynomial"
    scope: str = "local"
    pattern: tuple[int, int] | None = None  # (N kept, M block)
    epochs: int = 2  # 0: one-shot magnitude pruning, no fine-tuning
    batch_size: int = 128
    learning_rate: float = 0.01
    momentum: float = 0.9
    frequency: int | None = None  # mask update interval; None = derived from the steps
    seed: int = 0
    adversarial: Any = None  # edgeprune.adversarial.Recipe: fine-tune adversarially

    def __post_init__(self) -> None:
        if self.pattern is None:
            if self.sparsity is None or not 0.0 < self.sparsity < 1.0:
                raise EdgepruneError(f"sparsity must be in (0, 1), got {self.sparsity}")
        else:
            kept, block = self.pattern
            if not 0 < kept < block:
                raise EdgepruneError(f"pattern N:M needs 0 < N < M, got {kept}:{block}")
            if self.sparsity is not None:
                raise EdgepruneError("give either a sparsity or an N:M pattern, not both "
                                     f"({kept}:{block} means sparsity {1 - kept / block:g})")
            if self.scope != "local":
                raise EdgepruneError(f"an N:M pattern applies inside every layer; scope {self.scope!r} "
                                     "does not combine with it")
        if self.schedule not in SCHEDULES:
            raise EdgepruneError(f"unknown schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if self.scope not in SCOPES:
            raise EdgepruneError(f"unknown scope {self.scope!r}; expected one of {', '.join(SCOPES)}")
        if self.epochs < 0:
            raise EdgepruneError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise EdgepruneError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise EdgepruneError(f"learning rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.momentum < 1.0:
            raise EdgepruneError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.frequency is not None and self.frequency < 1:
            raise EdgepruneError(f"frequency must be at least 1 step, got {self.frequency}")

    @property
    def target(self) -> float:
        """The overall sparsity asked for (N:M: 1 - N/M)."""
        if self.pattern is not None:
            return 1.0 - self.pattern[0] / self.pattern[1]
        if self.sparsity is None:
            raise EdgepruneError("give a sparsity or an N:M pattern")
        return float(self.sparsity)


@dataclass(frozen=True)
class ScheduleSteps:
    """When TF-MOT updates masks: steps begin, begin + frequency, ..., end (1-based steps)."""

    kind: str
    total_steps: int
    steps_per_epoch: int
    begin_step: int
    end_step: int
    frequency: int

    @property
    def updates(self) -> int:
        return (self.end_step - self.begin_step) // self.frequency + 1


def derive_schedule(kind: str, total_steps: int, steps_per_epoch: int,
                    frequency: int | None = None) -> ScheduleSteps:
    """Begin/end/frequency such that the last mask update is at the final target, within the
    fine-tune. TF-MOT's wrapper counts steps from 1, so pruning begins at step 1."""
    if total_steps < 1:
        raise EdgepruneError(f"fine-tuning needs at least 1 step, got {total_steps}")
    begin = 1
    if kind == "constant":
        # One update at step 1 reaches the target; refreshing once per epoch lets weights
        # that grew during fine-tuning swap in, as TF-MOT intends.
        step = frequency or max(1, steps_per_epoch)
        end = begin + (total_steps - begin) // step * step
        return ScheduleSteps(kind, total_steps, steps_per_epoch, begin, end, step)
    if total_steps < 2:
        raise EdgepruneError("the polynomial schedule needs at least 2 fine-tuning steps, got "
                             f"{total_steps}; use --schedule constant, more epochs or a smaller batch")
    span = max(1, int(round(POLYNOMIAL_RAMP * (total_steps - begin))))
    step = frequency or max(1, math.ceil(span / POLYNOMIAL_UPDATES))
    if step > total_steps - begin:
        raise EdgepruneError(f"frequency {step} leaves no mask update after step {begin} within "
                             f"{total_steps} steps; use a smaller frequency")
    span = max(step, span // step * step)  # the last update lands exactly on end_step
    return ScheduleSteps(kind, total_steps, steps_per_epoch, begin, begin + span, step)


def _is_graph_model(model) -> bool:
    import tensorflow as tf

    return isinstance(model, tf.keras.Sequential) or bool(getattr(model, "_is_graph_network", False))


def eligible_layers(model: "tf.keras.Model", pattern: tuple[int, int] | None = None) -> tuple[list, list[dict]]:
    """(layers to prune, skipped layers with reasons): exact Conv2D / Dense classes only (a
    DepthwiseConv2D subclasses Conv2D but TF-MOT does not prune it). With an N:M pattern a
    layer needs at least M input channels to hold one group."""
    chosen, skipped = [], []
    for layer in model.layers:
        kind = layer.__class__.__name__
        if hasattr(layer, "layers") and kind in ("Functional", "Sequential", "Model"):
            skipped.append({"layer": layer.name, "kind": kind, "reason": "nested model: not pruned"})
            continue
        if kind not in PRUNED_KINDS:
            if kind in ("DepthwiseConv2D", "SeparableConv2D", "Conv1D", "Conv3D", "Conv2DTranspose"):
                skipped.append({"layer": layer.name, "kind": kind, "reason": "TF-MOT prunes only Conv2D and Dense here"})
            continue
        kernel = layer.get_weights()[0]
        if pattern is not None:
            in_channels = kernel.shape[-2]
            if kernel.ndim not in (2, 4) or in_channels < pattern[1]:
                skipped.append({"layer": layer.name, "kind": kind,
                                "reason": f"{in_channels} input channels: fewer than one {pattern[0]}:{pattern[1]} group"})
                continue
        chosen.append(layer)
    return chosen, skipped


def _copy_model(model: "tf.keras.Model") -> "tf.keras.Model":
    """An independent copy with the same weights (fine-tuning must not touch the base)."""
    import tensorflow as tf

    copy = tf.keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _n_m_mask(kernel: np.ndarray, pattern: tuple[int, int]) -> np.ndarray:
    """TF-MOT's own N:M mask (M - N zeros in every M input channels) for one kernel."""
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

    weights = tf.constant(kernel)
    rows = pruning_utils.weights_rearrange(weights)
    mask = pruning_utils.generate_m_by_n_mask(rows, (pattern[1] - pattern[0], pattern[1]))
    return pruning_utils.m_by_n_sparsity_mask_prepare(mask, weights.shape).numpy().astype(kernel.dtype)


def _one_shot(model, layers, targets: dict[str, float], pattern) -> None:
    for layer in layers:
        weights = layer.get_weights()
        kernel = weights[0]
        mask = _n_m_mask(kernel, pattern) if pattern else magnitude_mask(kernel, targets[layer.name])
        weights[0] = kernel * mask
        layer.set_weights(weights)


def _make_schedule(target: float, steps: ScheduleSteps):
    import tensorflow_model_optimization as tfmot

    sparsity = tfmot.sparsity.keras
    if steps.kind == "constant":
        return sparsity.ConstantSparsity(target, begin_step=steps.begin_step, end_step=steps.end_step,
                                         frequency=steps.frequency)
    return sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target,
                                    begin_step=steps.begin_step, end_step=steps.end_step,
                                    frequency=steps.frequency)


def _fine_tune(model, layers, targets, config: TfmotConfig, dataset: Dataset, progress: bool):
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    from edgeprune.progress import keras_progress_callback
    from edgeprune.train import dataset_train_pipeline, resolve_augmentation

    steps_per_epoch = math.ceil(len(dataset.y_train) / config.batch_size)
    steps = derive_schedule(config.schedule, config.epochs * steps_per_epoch, steps_per_epoch,
                            config.frequency)
    chosen = {layer.name for layer in layers}
    m_by_n = (config.pattern[1] - config.pattern[0], config.pattern[1]) if config.pattern else None

    def wrap(layer):
        if layer.name not in chosen:
            return layer
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=_make_schedule(targets[layer.name], steps), sparsity_m_by_n=m_by_n)

    wrapped = tf.keras.models.clone_model(model, clone_function=wrap)
    wrapped.compile(
        optimizer=tf.keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    augment = resolve_augmentation("auto", dataset.name)
    pipeline = dataset_train_pipeline(dataset, batch_size=config.batch_size, augment=augment, seed=config.seed)
    from edgeprune.adversarial import prepare

    # the guard keeps best weights only from the epoch where the final mask is in place
    adv_callbacks, adversarial = prepare(wrapped, config.adversarial, dataset,
                                         eligible_from=(steps.end_step - 1) // steps_per_epoch, seed=config.seed)
    history = wrapped.fit(pipeline, epochs=config.epochs, verbose=0, callbacks=[
        tfmot.sparsity.keras.UpdatePruningStep(), *adv_callbacks,
        keras_progress_callback("prune tfmot", config.epochs, steps_per_epoch, enabled=progress),
    ])
    # The optimizer's last step moved masked weights off zero; apply the masks once more.
    for layer in wrapped.layers:
        if isinstance(layer, PruneLowMagnitude):
            layer.pruning_obj.weight_mask_op()
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    schedule = {**asdict(steps), "mask_updates": steps.updates, "augment": augment, "adversarial": adversarial}
    if m_by_n:
        schedule["note"] = "TF-MOT fixes N:M masks at step 1; the schedule only drives fine-tuning"
    return stripped, schedule, float(history.history["accuracy"][-1])


def pattern_violations(kernel: np.ndarray, pattern: tuple[int, int]) -> int:
    """Groups of M consecutive input-channel weights holding more than N non-zeros (a short
    last group of r < M real weights may hold N of them)."""
    groups = n_m_groups(kernel, pattern[1])
    nonzero = np.sum(np.nan_to_num(groups, nan=0.0) != 0, axis=1)
    return int(np.sum(nonzero > pattern[0]))


def tfmot_prune(model: "tf.keras.Model", dataset: Dataset, config: TfmotConfig, *,
                progress: bool = True) -> tuple["tf.keras.Model", dict]:
    """Prune `model`'s Conv2D/Dense kernels to `config`'s target and fine-tune on `dataset`.

    Returns a plain Keras model (wrappers stripped, real zeros) and a record of per-layer
    targets, the schedule actually used and skipped layers. The input model is not changed.
    """
    import tensorflow as tf

    if not _is_graph_model(model):
        raise EdgepruneError(f"model {model.name!r} is subclassed; TF-MOT prunes only Sequential "
                             "and functional models")
    started = time.perf_counter()
    tf.keras.utils.set_random_seed(config.seed)
    work = _copy_model(model)
    layers, skipped = eligible_layers(work, config.pattern)
    if not layers:
        what = (f"{config.pattern[0]}:{config.pattern[1]} (needs Conv2D/Dense with at least "
                f"{config.pattern[1]} input channels)") if config.pattern else "pruning (no Conv2D or Dense layer)"
        raise EdgepruneError(f"model {model.name!r} has no layer eligible for {what}")
    kernels = {layer.name: layer.get_weights()[0] for layer in layers}
    if config.pattern:
        targets = {name: config.target for name in kernels}
    else:
        targets = layer_sparsities(kernels, config.target, config.scope)
    if config.epochs == 0:
        _one_shot(work, layers, targets, config.pattern)
        pruned, schedule, train_accuracy = work, {"kind": "one-shot", "total_steps": 0}, None
    else:
        pruned, schedule, train_accuracy = _fine_tune(work, layers, targets, config, dataset, progress)
    info: dict[str, Any] = {}
    if config.pattern:
        by_name = {layer.name: layer for layer in pruned.layers}
        info["pattern_violations"] = {name: pattern_violations(by_name[name].get_weights()[0], config.pattern)
                                      for name in targets}
    info = {
        **info,
        "target_sparsity": config.target,
        "scope": "n:m" if config.pattern else config.scope,
        "pattern": f"{config.pattern[0]}:{config.pattern[1]}" if config.pattern else None,
        "layer_targets": targets,
        "adversarial": schedule.pop("adversarial", None),
        "schedule": schedule,
        "skipped_layers": skipped,
        "config": {**asdict(config), "pattern": list(config.pattern) if config.pattern else None},
        "fine_tune_train_accuracy": train_accuracy,
        "prune_seconds": round(time.perf_counter() - started, 2),
    }
    return pruned, info
