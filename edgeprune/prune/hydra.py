"""HYDRA (Sehwag et al. 2020): importance scores learned with the (adversarial) training loss.

1. Every Conv2D / Dense kernel gets a score tensor, initialised from the weights as in the
   paper's code (`scaled_score_init`: sqrt(6 / fan_in) * w / max|w|).
2. Score search: the forward pass uses `w * m`, m = 1 on the top-k |scores| of each layer
   (`local`) or over all layers (`global`); the mask's gradient reaches the scores straight
   through (d m / d |s| = 1). Weights, biases and batch-norm parameters are frozen; only the
   scores train, with the adversarial loss when `--adversarial` is given.
3. The mask is fixed from the final scores (exact counts: `edgeprune.prune.lamp`'s counting,
   one score threshold per layer or over all layers), and the weights are fine-tuned under it
   with the same loss (scores frozen).
4. The output is the plain source architecture with `w * m`: a Keras .h5 with real zeros.

The mask's threshold is refreshed before every batch (a callback), so a step costs one
top-k per layer per batch, not per call.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.data import Dataset
from edgeprune.errors import EdgepruneError
from edgeprune.prune.lamp import _global_counts

if TYPE_CHECKING:
    import tensorflow as tf

HYDRA_SCOPES = ("local", "global")


@dataclass(frozen=True)
class HydraConfig:
    """HYDRA's settings; validated when built."""

    sparsity: float = 0.5
    scope: str = "local"
    score_epochs: int = 2  # the paper: 20 (CIFAR-10)
    epochs: int = 2  # fine-tuning under the mask; the paper: 20
    batch_size: int = 128
    learning_rate: float = 0.01  # fine-tuning (the paper: 0.01)
    score_learning_rate: float = 0.1  # score search (the paper: 0.1)
    momentum: float = 0.9
    seed: int = 0
    adversarial: Any = None  # edgeprune.adversarial.Recipe

    def __post_init__(self) -> None:
        if not 0.0 < self.sparsity < 1.0:
            raise EdgepruneError(f"sparsity must be in (0, 1), got {self.sparsity}")
        if self.scope not in HYDRA_SCOPES:
            raise EdgepruneError(f"--method hydra takes --scope {' or '.join(HYDRA_SCOPES)}, got {self.scope!r}")
        if self.score_epochs < 1:
            raise EdgepruneError(f"--score-epochs must be at least 1, got {self.score_epochs}")
        if self.epochs < 0:
            raise EdgepruneError(f"epochs must be >= 0, got {self.epochs}")
        if not (self.learning_rate > 0 and self.score_learning_rate > 0):
            raise EdgepruneError("learning rates must be > 0")


def scaled_score_init(kernel: np.ndarray) -> np.ndarray:
    """HYDRA's score initialisation: sqrt(6 / fan_in) * w / max|w| (Kaiming-uniform scale)."""
    fan_in = int(np.prod(kernel.shape[:-1]))
    peak = float(np.max(np.abs(kernel))) or 1.0
    return (math.sqrt(6.0 / fan_in) * kernel / peak).astype(np.float32)


def masks_from_scores(scores: dict[str, np.ndarray], sparsity: float, scope: str) -> dict[str, np.ndarray]:
    """Exact keep-masks: cut the round(s * n) smallest |scores| of each layer (local) or of all
    layers together (global; `edgeprune.prune.lamp`'s counting), each layer keeping >= 1 weight."""
    magnitudes = {name: np.abs(np.asarray(s, np.float64)) for name, s in scores.items()}
    if scope == "global":
        cut = _global_counts(magnitudes, sparsity)
    else:
        cut = {name: int(round(sparsity * m.size)) for name, m in magnitudes.items()}
    masks = {}
    for name, magnitude in magnitudes.items():
        keep = magnitude.size - min(cut[name], magnitude.size - 1)
        mask = np.zeros(magnitude.size, np.float32)
        mask[np.argsort(-magnitude.ravel(), kind="stable")[:keep]] = 1.0
        masks[name] = mask.reshape(magnitude.shape)
    return masks


def _masked_layer_classes() -> tuple[type, type]:
    import tensorflow as tf

    class _Scored:
        """kernel * mask(|score|) in the forward pass; the mask's gradient goes to the score."""

        def build(self, input_shape):
            super().build(input_shape)
            self.score = self.add_weight("hydra_score", shape=self.kernel.shape, initializer="zeros",
                                         trainable=True)
            self.threshold = self.add_weight("hydra_threshold", shape=(), initializer="zeros", trainable=False)
            self.fixed_mask = self.add_weight("hydra_mask", shape=self.kernel.shape, initializer="ones",
                                              trainable=False)
            self.use_fixed = self.add_weight("hydra_use_fixed", shape=(), initializer="zeros", trainable=False)

        def masked_kernel(self):
            magnitude = tf.abs(self.score)
            hard = tf.cast(magnitude >= self.threshold, self.kernel.dtype)
            searched = tf.stop_gradient(hard - magnitude) + magnitude  # straight-through
            mask = self.use_fixed * self.fixed_mask + (1.0 - self.use_fixed) * searched
            return self.kernel * mask

    class HydraConv2D(_Scored, tf.keras.layers.Conv2D):
        def call(self, inputs):
            outputs = self.convolution_op(inputs, self.masked_kernel())
            if self.use_bias:
                outputs = tf.nn.bias_add(outputs, self.bias, data_format="NHWC")
            return self.activation(outputs) if self.activation is not None else outputs

    class HydraDense(_Scored, tf.keras.layers.Dense):
        def call(self, inputs):
            outputs = tf.tensordot(inputs, self.masked_kernel(), [[inputs.shape.rank - 1], [0]])
            if self.use_bias:
                outputs = tf.nn.bias_add(outputs, self.bias)
            return self.activation(outputs) if self.activation is not None else outputs

    return HydraConv2D, HydraDense


@dataclass
class HydraOutcome:
    model: Any  # the plain pruned Keras model
    info: dict
    scores: dict[str, np.ndarray]  # final scores per pruned layer
    masks: dict[str, np.ndarray]  # the keep-masks applied


def hydra_search(model: "tf.keras.Model", dataset: Dataset, config: HydraConfig, *,
                 progress: bool = True) -> HydraOutcome:
    """Run HYDRA on a copy of `model`; the input model is not changed."""
    import tensorflow as tf

    from edgeprune.adversarial import prepare
    from edgeprune.progress import keras_progress_callback
    from edgeprune.prune.tfmot import _is_graph_model, eligible_layers
    from edgeprune.train import dataset_train_pipeline, resolve_augmentation

    if not _is_graph_model(model):
        raise EdgepruneError(f"model {model.name!r} is subclassed; HYDRA prunes Sequential and functional models")
    started = time.perf_counter()
    tf.keras.utils.set_random_seed(config.seed)
    chosen, skipped = eligible_layers(model)
    if not chosen:
        raise EdgepruneError(f"model {model.name!r} has no Conv2D or Dense layer to prune")
    names = {layer.name for layer in chosen}
    conv_cls, dense_cls = _masked_layer_classes()

    def swap(layer):
        if layer.name not in names:
            return layer.__class__.from_config(layer.get_config())
        cls = conv_cls if layer.__class__.__name__ == "Conv2D" else dense_cls
        return cls.from_config(layer.get_config())

    work = tf.keras.models.clone_model(model, clone_function=swap)
    originals = {layer.name: layer for layer in model.layers}
    scored = [layer for layer in work.layers if layer.name in names]
    for layer in work.layers:
        source = originals[layer.name].get_weights()
        if layer.name in names:
            layer.kernel.assign(source[0])
            if layer.use_bias:
                layer.bias.assign(source[1])
            layer.score.assign(scaled_score_init(source[0]))
        elif source:
            layer.set_weights(source)

    sizes = np.array([int(np.prod(layer.kernel.shape)) for layer in scored])
    keep_local = [max(1, int(round(n * (1.0 - config.sparsity)))) for n in sizes]
    keep_global = max(len(sizes), int(round(sizes.sum() * (1.0 - config.sparsity))))

    @tf.function
    def refresh_thresholds():
        magnitudes = [tf.reshape(tf.abs(layer.score), [-1]) for layer in scored]
        if config.scope == "global":
            top = tf.math.top_k(tf.concat(magnitudes, 0), keep_global, sorted=True).values
            for layer in scored:
                layer.threshold.assign(top[-1])
        else:
            for layer, flat, keep in zip(scored, magnitudes, keep_local, strict=True):
                layer.threshold.assign(tf.math.top_k(flat, keep, sorted=True).values[-1])

    augment = resolve_augmentation("auto", dataset.name)
    pipeline = dataset_train_pipeline(dataset, batch_size=config.batch_size, augment=augment, seed=config.seed)
    steps_per_epoch = math.ceil(len(dataset.labels("train")) / config.batch_size)
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def phase(trainable_scores: bool, epochs: int, learning_rate: float, label: str) -> dict:
        # score search: only the scores train (other layers frozen, batch-norm in inference mode);
        # fine-tune: everything but the scores. Within a scored layer the split is made by hand.
        for layer in work.layers:
            layer.trainable = layer.name in names or not trainable_scores
        work.compile(optimizer=tf.keras.optimizers.SGD(learning_rate, momentum=config.momentum),
                     loss=loss, metrics=["accuracy"])
        frozen = _freeze(scored, scores=not trainable_scores)
        callbacks, adversarial = prepare(work, config.adversarial, dataset,
                                         seed=config.seed, log=progress)
        extra = []
        if trainable_scores:
            extra.append(tf.keras.callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs=None: refresh_thresholds()))
        history = work.fit(pipeline, epochs=epochs, verbose=0, callbacks=[
            *extra, *callbacks, keras_progress_callback(f"hydra {label}", epochs, steps_per_epoch, enabled=progress)])
        _unfreeze(frozen)
        return {"epochs": epochs, "learning_rate": learning_rate,
                "train_accuracy_last_epoch": float(history.history["accuracy"][-1]), "adversarial": adversarial}

    init_scores = {layer.name: layer.score.numpy().copy() for layer in scored}
    refresh_thresholds()
    search = phase(True, config.score_epochs, config.score_learning_rate, "score search")
    scores = {layer.name: layer.score.numpy() for layer in scored}
    masks = masks_from_scores(scores, config.sparsity, config.scope)
    for layer in scored:
        layer.fixed_mask.assign(masks[layer.name])
        layer.use_fixed.assign(1.0)
    fine_tune = phase(False, config.epochs, config.learning_rate, "fine-tune") if config.epochs else None

    pruned = tf.keras.models.clone_model(model)
    trained = {layer.name: layer for layer in work.layers}
    for layer in pruned.layers:
        source = trained[layer.name]
        if layer.name in names:
            weights = [source.kernel.numpy() * masks[layer.name]] + ([source.bias.numpy()] if source.use_bias else [])
            layer.set_weights(weights)
        elif source.get_weights():
            layer.set_weights(source.get_weights())
    init_masks = masks_from_scores(init_scores, config.sparsity, config.scope)
    changed = sum(int(np.sum(init_masks[n] != masks[n])) for n in masks)
    info = {
        "target_sparsity": config.sparsity,
        "scope": config.scope,
        "layer_targets": {name: float(1.0 - masks[name].mean()) for name in masks},
        "score_init": "scaled |w| (sqrt(6/fan_in) * w / max|w|; Sehwag et al. 2020)",
        "mask_changed_by_search": changed / int(sizes.sum()),
        "score_search": search,
        "fine_tune": fine_tune,
        "adversarial": (fine_tune or search)["adversarial"],
        "skipped_layers": skipped,
        "schedule": {"kind": "hydra", "score_epochs": config.score_epochs, "fine_tune_epochs": config.epochs,
                     "augment": augment},
        "config": {**asdict(config), "adversarial": config.adversarial.record() if config.adversarial else None},
        "prune_seconds": round(time.perf_counter() - started, 2),
    }
    return HydraOutcome(model=pruned, info=info, scores=scores, masks=masks)


def _freeze(scored: list, *, scores: bool) -> list:
    """Make the score variables (scores=True) or every other variable of the scored layers and
    the rest of the model untrainable for one phase; returns what to undo."""
    undo = []
    for layer in scored:
        for variable in ([layer.score] if scores else [layer.kernel] + ([layer.bias] if layer.use_bias else [])):
            undo.append((layer, variable))
    for layer, variable in undo:  # Keras has no per-variable switch: move it between the lists
        _move(variable, layer._trainable_weights, layer._non_trainable_weights)  # noqa: SLF001
    return undo


def _unfreeze(undo: list) -> None:
    for layer, variable in undo:
        _move(variable, layer._non_trainable_weights, layer._trainable_weights)  # noqa: SLF001


def _move(variable: Any, source: list, target: list) -> None:
    """Move by identity (`==` on variables compares values)."""
    source[:] = [v for v in source if v is not variable]
    target.append(variable)


def hydra_prune(model: "tf.keras.Model", dataset: Dataset, config: HydraConfig, *,
                progress: bool = True) -> tuple["tf.keras.Model", dict]:
    """HYDRA-prune `model` to `config.sparsity`: (plain Keras model with real zeros, record)."""
    outcome = hydra_search(model, dataset, config, progress=progress)
    return outcome.model, outcome.info
