"""Sanity checks before and after a robustness evaluation (as AutoAttack's `checks.py` does).

An evaluation can look robust for the wrong reasons: probabilities instead of logits
(saturated softmax gradients), gradients that are exactly zero (non-differentiable or
masked layers), or a model that answers the same input differently (randomised defences,
dropout left on). Each check returns a message (or None) and the caller records and warns;
nothing here changes the evaluation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import numpy as np


def as_batch(x, y) -> tuple[np.ndarray, np.ndarray]:
    """float32 images and flat int64 labels of equal length: what every attack loop takes."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    return x, y


def check_probability_outputs(outputs: np.ndarray) -> str | None:
    """Outputs that are non-negative and sum to 1 per row are probabilities, not logits."""
    outputs = np.asarray(outputs, np.float64)
    if outputs.ndim != 2 or not len(outputs):
        return None
    if outputs.min() >= 0.0 and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        return ("the model's outputs look like probabilities (non-negative, rows sum to 1): gradient "
                "attacks on a softmax output are weakened by saturation; attack the logits")
    return None


def check_randomized(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> str | None:
    """The same input twice must give the same outputs; otherwise robust accuracy is noisy."""
    first = np.asarray(predict(x), np.float64)
    second = np.asarray(predict(x), np.float64)
    if first.shape != second.shape or not np.allclose(first, second, rtol=1e-5, atol=1e-6):
        return ("the model's outputs differ for the same input (randomised model, e.g. dropout or a "
                "random defence): use an adaptive evaluation (EOT), this one is not reliable")
    return None


def check_zero_gradients(model_fn: Callable, x: np.ndarray, y: np.ndarray) -> str | None:
    """A share of inputs whose cross-entropy gradient is exactly zero hints at gradient masking."""
    import tensorflow as tf

    xt = tf.constant(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logits = tf.cast(model_fn(xt), tf.float32)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant(np.asarray(y, np.int64)), logits=logits))
    grad = tape.gradient(loss, xt)
    if grad is None:
        return "the model has no gradient with respect to its input: white-box attacks cannot run"
    flat = np.abs(grad.numpy().reshape(len(x), -1))
    zero = float(np.mean(flat.max(axis=1) == 0.0))
    if zero > 0:
        return (f"{zero:.1%} of the checked inputs have an all-zero input gradient: white-box attacks "
                "fail there (possible gradient masking); rely on the black-box Square stage")
    return None


def check_target_classes(num_classes: int, n_target_classes: int) -> str | None:
    """Targeted stages need n_target_classes + 1 <= num_classes (DLR-T needs 4 classes)."""
    if num_classes < 4:
        return f"{num_classes} classes: targeted DLR/FAB stages need at least 4 and are skipped"
    if n_target_classes > num_classes - 1:
        return (f"{n_target_classes} target classes requested but only {num_classes - 1} other classes "
                f"exist: using {num_classes - 1}")
    return None


def check_square_after_whitebox(whitebox_robust: int, square_fooled: int) -> str | None:
    """Square (black-box) flipping points the white-box stages could not hints at masked gradients."""
    if whitebox_robust > 0 and square_fooled > 0:
        share = square_fooled / whitebox_robust
        return (f"the black-box Square stage fooled {square_fooled} of {whitebox_robust} points that "
                f"survived the white-box stages ({share:.1%}): gradients may be masked, so gradient-only "
                "evaluations of this model overestimate its robustness")
    return None


def emit(messages: Iterable[str | None]) -> list[str]:
    """Warn once per message; return the messages that fired (for the report)."""
    fired = [m for m in messages if m]
    for message in fired:
        warnings.warn(message, stacklevel=3)
    return fired
