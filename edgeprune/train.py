"""Train a zoo model from scratch with the first paper's recipe, or another (edgeprune.recipes).

Defaults (Vora et al. 2023): batch 128, SGD lr 0.1, momentum 0.9, Nesterov, step decay x0.1
at epochs 10/20/30, random flip + crop augmentation; `recipe="cpu"` swaps the step decay for
warm-up + cosine with label smoothing. Augmentation runs in `tf.data`, not in
the model, so the saved model is exactly what gets pruned, converted and attacked.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.adversarial import AdversarialFields
from edgeprune.data import Dataset
from edgeprune.errors import EdgepruneError
from edgeprune.options import flag, internal
from edgeprune.recipes import get_recipe
from edgeprune.vocab import AUGMENTATIONS

if TYPE_CHECKING:
    import tensorflow as tf

    from edgeprune.folders import FolderDataset



@dataclass(frozen=True)
class TrainConfig(AdversarialFields):
    arch: str
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = flag(0.1, name="lr")
    momentum: float = internal(0.9)
    nesterov: bool = internal(True)
    milestones: tuple[int, ...] = (10, 20, 30)
    gamma: float = 0.1
    weight_decay: float = 5e-4
    augment: str = "auto"
    recipe: str = "vora2023"  # edgeprune.recipes: schedule + loss (vora2023: milestones x gamma)
    width: float = 1.0
    seed: int = 0
    extra: dict = internal(factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise EdgepruneError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise EdgepruneError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise EdgepruneError(f"learning rate must be > 0, got {self.learning_rate}")
        if not 0 < self.gamma <= 1:
            raise EdgepruneError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.augment not in AUGMENTATIONS:
            raise EdgepruneError(f"unknown augmentation {self.augment!r}; expected one of {', '.join(AUGMENTATIONS)}")
        get_recipe(self.recipe)
        self.adversarial_recipe()  # validates the --adversarial / --adv-* options


def resolve_augmentation(augment: str, dataset_name: str) -> str:
    """`auto`: flip+crop for natural images; crop only for SVHN (a flipped 2 is not a 2); none
    for the 8x8 digits, where a one-pixel shift is 12% of the image (measured: 5 epochs reach
    0.975 test accuracy without augmentation, 0.92-0.94 with crops)."""
    if augment != "auto":
        return augment
    if dataset_name.startswith("digits"):
        return "none"
    if dataset_name.startswith("svhn"):
        return "crop"
    return "flip-crop"


def make_train_pipeline(x: np.ndarray, y: np.ndarray, *, batch_size: int, augment: str,
                        seed: int, input_range: Any = None) -> "tf.data.Dataset":
    """Shuffled, augmented, batched float32 images from uint8 arrays: in [0, 1], or in the
    model's `input_range` (an edgeprune.inputrange.InputRange) when it takes another."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64)))
    data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return augment_and_batch(data, tuple(x.shape[1:]), batch_size=batch_size, augment=augment,
                             input_range=input_range)


def dataset_train_pipeline(dataset: Any, *, batch_size: int, augment: str, seed: int) -> "tf.data.Dataset":
    """`make_train_pipeline` of a dataset's train split: arrays, or a folder: decoded in batches."""
    # in the range the model takes (set by inputrange.dataset_for_model), as evaluation feeds it
    input_range = getattr(dataset, "input_range", None)
    if isinstance(dataset, Dataset):
        return make_train_pipeline(dataset.x_train, dataset.y_train, batch_size=batch_size, augment=augment,
                                   seed=seed, input_range=input_range)
    return augment_and_batch(dataset.tf_images("train", shuffle_seed=seed), dataset.input_shape,
                             batch_size=batch_size, augment=augment, input_range=input_range)


def augment_and_batch(data: "tf.data.Dataset", shape: tuple[int, ...], *, batch_size: int,
                      augment: str, input_range: Any = None) -> "tf.data.Dataset":
    """(uint8 image, label) -> float32 [0, 1] (or `input_range`), cropped / flipped as `augment`
    says, batched."""
    import tensorflow as tf

    height, width, channels = shape
    pad = max(1, height // 8)  # 4 pixels on 32x32, 1 on 8x8 digits

    def prepare(image, label):
        image = tf.cast(image, tf.float32) / 255.0
        if augment in ("crop", "flip-crop"):
            image = tf.image.resize_with_crop_or_pad(image, height + 2 * pad, width + 2 * pad)
            image = tf.image.random_crop(image, (height, width, channels))
        if augment == "flip-crop":
            image = tf.image.random_flip_left_right(image)
        if input_range is not None and not input_range.is_unit:
            image = image * float(input_range.scale) + float(input_range.low)
        return image, label

    return data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)


def accuracy(model: "tf.keras.Model", x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras model on float32 images."""
    from edgeprune.runtime import KerasPredictor

    logits = KerasPredictor(model).predict(x, batch_size=batch_size)
    return float((logits.argmax(axis=1) == y).mean())


def dataset_accuracy(model: "tf.keras.Model", dataset: Any, split: str = "test", *, batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras model on a dataset split, read in batches (a folder is streamed)."""
    from edgeprune.runtime import KerasPredictor

    predictor = KerasPredictor(model)
    correct = total = 0
    for x, y in dataset.batches(split, batch_size):
        correct += int(np.sum(predictor.predict(x, batch_size=batch_size).argmax(axis=1) == y))
        total += len(y)
    return correct / total if total else float("nan")


def train_model(config: TrainConfig, dataset: Dataset | FolderDataset, *, progress: bool = True) -> tuple["tf.keras.Model", dict]:
    """Build and train `config.arch` on `dataset`; returns the model and a result record."""
    import tensorflow as tf

    from edgeprune.models import build_model
    from edgeprune.progress import keras_progress_callback
    from edgeprune.recipes import make_loss, make_optimizer

    tf.keras.utils.set_random_seed(config.seed)
    model = build_model(config.arch, input_shape=dataset.input_shape,
                        num_classes=dataset.num_classes, width=config.width)
    y_train = dataset.y_train
    augment = resolve_augmentation(config.augment, dataset.name)
    pipeline = dataset_train_pipeline(dataset, batch_size=config.batch_size, augment=augment, seed=config.seed)
    steps_per_epoch = int(np.ceil(len(y_train) / config.batch_size))
    recipe = get_recipe(config.recipe)
    model.compile(optimizer=make_optimizer(recipe, config, steps_per_epoch),
                  loss=make_loss(recipe, dataset.num_classes), metrics=["accuracy"])
    from edgeprune.adversarial import prepare

    adv_callbacks, adversarial = prepare(model, config.adversarial_recipe(), dataset, seed=config.seed)
    started = time.perf_counter()
    history = model.fit(pipeline, epochs=config.epochs, verbose=0, callbacks=[
        *adv_callbacks, keras_progress_callback(f"train {config.arch}", config.epochs, steps_per_epoch, enabled=progress)
    ])
    seconds = time.perf_counter() - started
    test_accuracy = dataset_accuracy(model, dataset, "test")
    result = {
        "arch": config.arch,
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint("test"),
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "class_names": list(dataset.class_names),
        **({"folder": dataset.record()["folder"]} if not isinstance(dataset, Dataset) else {}),
        "train_samples": int(len(y_train)),
        "test_samples": int(len(dataset.y_test)),
        "config": {**asdict(config), "augment": augment, "milestones": list(config.milestones)},
        "recipe": recipe.describe(config, steps_per_epoch),
        "train_accuracy_last_epoch": float(history.history["accuracy"][-1]),
        "test_accuracy": test_accuracy,
        "params": int(model.count_params()),
        "train_seconds": round(seconds, 2),
        "adversarial": adversarial,
    }
    from edgeprune.stats import annotate

    return model, annotate(result)  # Wilson 95% intervals beside every accuracy
