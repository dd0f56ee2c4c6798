"""DeepFool (Moosavi-Dezfooli et al. 2016), multi-class, batched and `tf.function`-compiled.

At each step every still-correct image is linearised around its current point and moved to
the nearest linearised boundary between its true class and one of the `candidates` classes
ranked highest by the clean logits; the sum of these steps is scaled by (1 + overshoot). A
minimum-norm attack: it stops per image as soon as that image is misclassified. Follows the
contract in `edgeprune.attacks.registry` (deterministic: `seed` is unused).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np

_LOOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def deepfool(model_fn: Callable, x, y, *, eps: float | None, norm: str, seed: int, max_iter: int = 50,
             overshoot: float = 0.02, candidates: int = 10) -> np.ndarray:
    """x_adv at (close to) the smallest `norm` distance that flips each image's class."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y, tf.int64)
    loop = _compiled(model_fn, norm, int(candidates))
    return loop(x, y, tf.constant(max_iter, tf.int32), tf.constant(overshoot, tf.float32)).numpy()


def _compiled(model_fn: Callable, norm: str, candidates: int) -> Callable:
    import tensorflow as tf

    key = (norm, candidates)
    try:
        cache = _LOOPS.setdefault(model_fn, {})
    except TypeError:
        cache = {}
    if key in cache:
        return cache[key]

    @tf.function(reduce_retracing=True)
    def loop(x, y, max_iter, overshoot):
        logits0 = model_fn(x)
        num_classes = logits0.shape[-1]
        k = min(candidates, num_classes) - 1
        onehot = tf.one_hot(y, num_classes, dtype=logits0.dtype)
        # The k classes (other than the true one) ranked highest on the clean image.
        others = tf.math.top_k(logits0 - 1e9 * onehot, k=k).indices
        r_total = tf.zeros_like(x)
        for _ in tf.range(max_iter):
            x_adv = tf.clip_by_value(x + (1.0 + overshoot) * r_total, 0.0, 1.0)
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x_adv)
                logits = model_fn(x_adv)
                f_true = tf.gather(logits, y, batch_dims=1)
                f_others = tf.gather(logits, others, batch_dims=1)
                objectives = [f_others[:, j] - f_true for j in range(k)]
            active = tf.equal(tf.argmax(logits, axis=1), y)
            if not tf.reduce_any(active):
                break
            w = tf.stack([tape.gradient(o, x_adv) for o in objectives], axis=1)  # (B, k, H, W, C)
            del tape
            f = tf.abs(tf.stack(objectives, axis=1))  # (B, k)
            w_flat = tf.reshape(w, [tf.shape(w)[0], k, -1])
            if norm == "linf":
                w_norm = tf.reduce_sum(tf.abs(w_flat), axis=2) + 1e-8
            else:
                w_norm = tf.sqrt(tf.reduce_sum(tf.square(w_flat), axis=2)) + 1e-8
            nearest = tf.argmin(f / w_norm, axis=1)
            w_l = tf.gather(w, nearest, batch_dims=1)
            f_l = tf.gather(f, nearest, batch_dims=1)
            n_l = tf.gather(w_norm, nearest, batch_dims=1)
            if norm == "linf":
                step = tf.reshape((f_l + 1e-4) / n_l, [-1, 1, 1, 1]) * tf.sign(w_l)
            else:
                step = tf.reshape((f_l + 1e-4) / tf.square(n_l), [-1, 1, 1, 1]) * w_l
            r_total += step * tf.reshape(tf.cast(active, x.dtype), [-1, 1, 1, 1])
        return tf.clip_by_value(x + (1.0 + overshoot) * r_total, 0.0, 1.0)

    cache[key] = loop
    return loop
