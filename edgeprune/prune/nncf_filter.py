"""NNCF filter pruning (TensorFlow backend) with fine-tuning, as in the first paper.

The returned model is NNCF-stripped: a plain Keras model whose pruned filters are zero in
the conv kernel and in the following BatchNorm's gamma/beta. It is no smaller and barely
faster; `edgeprune.prune.shrink.shrink_model` removes those filters physically.

Pitfalls measured on this stack (see the project's stack notes) and how they are handled:
- NNCF's default `pruning_steps` is 100 epochs, so a short fine-tune never reaches the
  target: the steps are derived from the fine-tuning length instead.
- `fit(epochs=1)` in a loop reports epoch 0 to the scheduler every time: one `fit` over all
  epochs drives the scheduler.
- By default NNCF leaves the first conv and the stride-2 convs alone (ResNet-20 at 0.5 lost
  only 40% of FLOPs): both are pruned by default here, and the reached levels are reported.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any


from edgeprune.data import Dataset
from edgeprune.errors import EdgepruneError, one_line

if TYPE_CHECKING:
    import tensorflow as tf

CRITERIA = {"l1": "L1", "l2": "L2", "gm": "geometric_median"}


@dataclass(frozen=True)
class NNCFFilterConfig:
    """Settings of one NNCF filter-pruning run; validated when built."""

    criterion: str = "l2"
    target: float | None = 0.5
    flops_target: float | None = None
    init: float = 0.1
    epochs: int = 5
    steps: int | None = None
    prune_first_conv: bool = True
    prune_downsample_convs: bool = True
    batch_size: int = 128
    learning_rate: float = 0.01
    seed: int = 0
    adversarial: Any = None  # edgeprune.adversarial.Recipe: fine-tune adversarially

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise EdgepruneError(
                f"unknown filter criterion {self.criterion!r}; expected one of {', '.join(CRITERIA)}")
        if (self.target is None) == (self.flops_target is None):
            raise EdgepruneError("give exactly one of target and flops target, got "
                                 f"target={self.target} flops_target={self.flops_target}")
        level = self.level
        name = "target" if self.target is not None else "flops target"
        if not 0 < level < 1:
            raise EdgepruneError(f"{name} must be in (0, 1), got {level}")
        if not 0 <= self.init < 1:
            raise EdgepruneError(f"pruning init must be in [0, 1), got {self.init}")
        if self.init > level:
            raise EdgepruneError(f"pruning init must not exceed the {name} {level}, got {self.init}")
        if self.epochs < 1:
            raise EdgepruneError(f"epochs must be at least 1, got {self.epochs}")
        if self.steps is not None and not 1 <= self.steps <= self.epochs:
            raise EdgepruneError(
                f"pruning steps must be in [1, epochs={self.epochs}] so the target is reached, got {self.steps}")
        if self.batch_size < 1:
            raise EdgepruneError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise EdgepruneError(f"learning rate must be > 0, got {self.learning_rate}")

    @property
    def level(self) -> float:
        """The requested level: the filter target, else the FLOPs target."""
        level = self.target if self.target is not None else self.flops_target
        if level is None:
            raise EdgepruneError("give exactly one of target and flops target, got neither")
        return float(level)

    @property
    def pruning_steps(self) -> int:
        """Epochs over which the level rises to the target: all but the last epoch, so at
        least one full epoch fine-tunes at the target level."""
        return self.steps if self.steps is not None else max(1, self.epochs - 1)

    def level_at_epoch(self, epoch: int) -> float:
        """NNCF's exponential schedule: density decays from 1-init to 1-target."""
        target = self.level
        last = self.pruning_steps - 1
        if last <= 0 or epoch >= last:
            return float(target)
        density = (1 - self.init) * ((1 - target) / (1 - self.init)) ** (epoch / last)
        return float(min(1 - density, target))


def nncf_config_dict(config: NNCFFilterConfig, input_shape: tuple[int, ...]) -> dict:
    """The NNCF JSON config: `pruning_init` at the compression level, the rest in params."""
    params = {
        "schedule": "exponential",
        "pruning_steps": config.pruning_steps,
        "filter_importance": CRITERIA[config.criterion],
        "prune_first_conv": config.prune_first_conv,
        "prune_downsample_convs": config.prune_downsample_convs,
        "prune_batch_norms": True,
    }
    if config.target is not None:
        params["pruning_target"] = config.target
    else:
        params["pruning_flops_target"] = config.flops_target
    return {
        "input_info": {"sample_size": [1, *input_shape]},
        "compression": {"algorithm": "filter_pruning", "pruning_init": config.init, "params": params},
    }


def check_nncf_model(model) -> None:
    """NNCF traces functional/Sequential graphs only; a subclassed model has no graph."""
    import tensorflow as tf

    if not isinstance(model, tf.keras.Model):
        raise EdgepruneError(f"expected a Keras model, got {type(model).__name__}")
    if not (isinstance(model, tf.keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise EdgepruneError(
            f"NNCF filter pruning needs a functional or Sequential Keras model; "
            f"{type(model).__name__} is subclassed (rebuild it with the functional API)")


class _NNCFLogCapture(logging.Handler):
    """Collects NNCF's debug lines about node groups it refuses to prune, without printing."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.refused: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Could not prune node group"):
            self.refused.append(message)


@contextlib.contextmanager
def _quiet_nncf():
    """NNCF logs INFO lines on every mask update and a deprecation banner: keep them out of
    the user's terminal, but capture why groups were left unpruned."""
    from nncf.common.logging import nncf_logger

    capture = _NNCFLogCapture()
    old_level = nncf_logger.level
    old_handler_levels = [(handler, handler.level) for handler in nncf_logger.handlers]
    for handler, _ in old_handler_levels:
        handler.setLevel(logging.WARNING)
    nncf_logger.setLevel(logging.DEBUG)
    nncf_logger.addHandler(capture)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield capture
    finally:
        nncf_logger.removeHandler(capture)
        nncf_logger.setLevel(old_level)
        for handler, level in old_handler_levels:
            handler.setLevel(level)


def _zero_filter_counts(model) -> dict[str, tuple[int, int]]:
    """layer name -> (filters, filters whose kernel slice is all zero) for conv layers."""
    from edgeprune.modelstats import layer_stats

    return {stats.name: (stats.filters, stats.filters_zero) for stats in layer_stats(model)
            if stats.kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")}


def _layer_of(node_name: str, layer_names: list[str]) -> str:
    """The model layer an NNCF node or weight name belongs to (`scope/layer/op`, `layer/kernel`);
    Keras layer names may hold '/' themselves (MobileNetV3's `expanded_conv/depthwise`), so
    the longest layer name found between slashes wins."""
    padded = f"/{node_name}/"
    found = [name for name in layer_names if f"/{name}/" in padded]
    return max(found, key=len) if found else node_name.split("/")[0]


def _group_refusals(messages: list[str], layer_names: list[str]) -> list[dict]:
    refusals = []
    for message in messages:
        nodes, _, reason = message.partition("], reason: ")
        names = nodes.removeprefix("Could not prune node group [").split(", ")
        layers = sorted({_layer_of(name, layer_names) for name in names})
        refusals.append({"layers": layers, "reason": reason.rstrip(".")})
    return refusals


def nncf_filter_prune(model: "tf.keras.Model", dataset: Dataset, config: NNCFFilterConfig, *,
                      progress: bool = True) -> tuple["tf.keras.Model", dict]:
    """Prune filters with NNCF while fine-tuning `config.epochs` epochs on `dataset`'s
    training split; returns the stripped Keras model (pruned filters zeroed) and a record of
    requested vs reached levels for the report."""
    import tensorflow as tf

    from edgeprune.progress import keras_progress_callback
    from edgeprune.train import dataset_train_pipeline, resolve_augmentation

    check_nncf_model(model)
    if tuple(model.input_shape[1:]) != tuple(dataset.input_shape):
        raise EdgepruneError(f"model input {tuple(model.input_shape[1:])} does not match dataset "
                             f"{dataset.name} images {tuple(dataset.input_shape)}")
    if int(model.output_shape[-1]) != dataset.num_classes:
        raise EdgepruneError(f"model has {model.output_shape[-1]} outputs but dataset "
                             f"{dataset.name} has {dataset.num_classes} classes")
    started = time.perf_counter()
    tf.keras.utils.set_random_seed(config.seed)
    augment = resolve_augmentation("auto", dataset.name)
    pipeline = dataset_train_pipeline(dataset, batch_size=config.batch_size, augment=augment, seed=config.seed)
    steps_per_epoch = int(math.ceil(len(dataset.y_train) / config.batch_size))

    with _quiet_nncf() as captured:
        from nncf import NNCFConfig
        from nncf.tensorflow import (create_compressed_model, create_compression_callbacks,
                                     register_default_init_args)

        nncf_config = NNCFConfig.from_dict(nncf_config_dict(config, dataset.input_shape))
        nncf_config = register_default_init_args(nncf_config, pipeline, config.batch_size)
        try:
            controller, compressed = create_compressed_model(model, nncf_config)
        except EdgepruneError:
            raise
        except Exception as error:  # NNCF raises many types on graphs it cannot trace
            first_line = one_line(error)
            raise EdgepruneError(f"NNCF cannot filter-prune this model: {first_line}") from error
        layer_names = [layer.name for layer in model.layers]
        refusals = _group_refusals(captured.refused, layer_names)
        full = controller.statistics().filter_pruning.model_statistics
        flops_before, params_before = int(full.full_flops), int(full.full_params_num)
        filters_before = int(full.full_filters_num)

        compressed.compile(
            optimizer=tf.keras.optimizers.SGD(config.learning_rate, momentum=0.9, nesterov=True),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        callbacks = create_compression_callbacks(controller, log_tensorboard=False, log_text=False)
        bar = keras_progress_callback(f"nncf-filter {config.criterion}", config.epochs,
                                      steps_per_epoch, enabled=progress)
        # One fit over all epochs: NNCF's UpdateMask callback sees the real epoch index.
        from edgeprune.adversarial import prepare

        adv_callbacks, adversarial = prepare(compressed, config.adversarial, dataset,
                                             eligible_from=config.pruning_steps - 1, seed=config.seed)
        history = compressed.fit(pipeline, epochs=config.epochs, verbose=0,
                                 callbacks=[*callbacks, *adv_callbacks, bar])
        stats = controller.statistics().filter_pruning
        reached = stats.model_statistics
        pruned_layers = sorted({_layer_of(summary.name, layer_names) for summary in reached.pruned_layers_summary})
        stripped = controller.strip()

    zero_counts = _zero_filter_counts(stripped)
    conv_layers = list(zero_counts)
    left_alone = [name for name in conv_layers if name not in pruned_layers]
    reasons = {layer: refusal["reason"] for refusal in refusals for layer in refusal["layers"]}
    if conv_layers and not pruned_layers:
        first = left_alone[0]
        raise EdgepruneError(f"NNCF pruned no filters: it left all {len(conv_layers)} conv layers alone "
                             f"(first: {first}, {reasons.get(first, 'not selected by its pruning analysis')})")
    level_requested = config.level
    pruned_filters = sum(zero_counts[name][0] for name in pruned_layers if name in zero_counts)
    pruned_zero = sum(zero_counts[name][1] for name in pruned_layers if name in zero_counts)
    info = {
        "method": "nncf-filter",
        "criterion": config.criterion,
        "filter_importance": CRITERIA[config.criterion],
        "config": asdict(config),
        "schedule": {
            "kind": "exponential",
            "init": config.init,
            "pruning_steps": config.pruning_steps,
            "epochs": config.epochs,
            "steps_per_epoch": steps_per_epoch,
            "level_per_epoch": [round(config.level_at_epoch(e), 4) for e in range(config.epochs)],
        },
        "level_kind": "filters" if config.target is not None else "flops",
        "level_requested": level_requested,
        "level_reached": float(controller.pruning_level),
        # measured on the stripped model: zero filters / filters of the layers NNCF pruned
        "zero_filter_fraction": pruned_zero / pruned_filters if pruned_filters else 0.0,
        "flops_before": flops_before,
        "flops_after": int(reached.current_flops),
        "flops_pruning_level": float(reached.flops_pruning_level),
        "params_before": params_before,
        "params_after": int(reached.current_params_num),
        "params_pruning_level": float(reached.params_pruning_level),
        "filters_before": filters_before,
        "filters_after": int(reached.current_filters_num),
        "filter_pruning_level": float(reached.filter_pruning_level),
        "prunable_layers": [
            {"name": name, "filters": zero_counts[name][0], "filters_zero": zero_counts[name][1]}
            for name in conv_layers if name in pruned_layers
        ],
        "left_alone": [
            {"name": name, "reason": reasons.get(name, "not selected by NNCF's pruning analysis")}
            for name in left_alone
        ],
        "train_accuracy_last_epoch": float(history.history["accuracy"][-1]),
        "adversarial": adversarial,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return stripped, info
