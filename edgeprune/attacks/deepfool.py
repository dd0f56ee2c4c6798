"""DeepFool (Moosavi-Dezfooli et al. 2016), multi-class, batched and `tf.function`-compiled.

At each step every still-correct image is linearised around its current point and moved to
the nearest linearised boundary between its true class and one of the `candidates` classes
ranked highest by the clean logits; the sum of these steps is scaled by (1 + overshoot). A
minimum-norm attack: it stops per image as soon as that image is misclassified. Follows the
contract in `edgeprune.attacks.registry` (deterministic: `seed` is unused).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeprune.attacks.compiled import cached
from edgeprune.attacks.norms import Norm, lp_norm_tf, parse_norm


def deepfool(model_fn: Callable, x, y, *, eps: float | None, norm: str, seed: int, max_iter: int = 50,
             overshoot: float = 0.02, candidates: int = 10) -> np.ndarray:
    """x_adv at (close to) the smallest `norm` distance that flips each image's class."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y, tf.int64)
    norm = parse_norm(norm)
    loop = cached(model_fn, ("deepfool", norm, int(candidates), tuple(x.shape[1:])),
                  lambda weak_fn: _build(weak_fn, norm, int(candidates), tuple(x.shape[1:])))
    return loop(x, y, tf.constant(max_iter, tf.int32), tf.constant(overshoot, tf.float32)).numpy()


def _build(model_fn: Callable, norm: Norm, candidates: int, image_shape: tuple) -> Callable:
    import tensorflow as tf

    # Any batch size with one trace (UAP calls it on ever-changing subsets).
    @tf.function(input_signature=[tf.TensorSpec((None, *image_shape), tf.float32), tf.TensorSpec((None,), tf.int64),
                                  tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.float32)])
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
            active = tf.equal(tf.argmax(model_fn(x_adv), axis=1), y)
            if not tf.reduce_any(active):
                break
            # One forward/backward over k copies of each image gives the k boundary gradients
            # (copy j differentiates f_j - f_true); cheaper to trace than k tape.gradient calls.
            copies = tf.repeat(x_adv, k, axis=0)
            with tf.GradientTape() as tape:
                tape.watch(copies)
                logits = tf.reshape(model_fn(copies), [-1, k, num_classes])
                f_true = tf.reduce_sum(logits * onehot[:, None, :], axis=2)
                f_other = tf.reduce_sum(logits * tf.one_hot(others, num_classes, dtype=logits.dtype), axis=2)
                objectives = f_other - f_true  # (B, k), negative while the image is correct
                total = tf.reduce_sum(objectives)
            w = tf.reshape(tape.gradient(total, copies), tf.concat([[-1, k], tf.shape(x)[1:]], 0))
            f = tf.abs(objectives)
            # Distance to boundary j in `norm` is |f_j| / ‖w_j‖ in the dual norm.
            w_norm = tf.reshape(lp_norm_tf(tf.reshape(w, tf.concat([[-1], tf.shape(x)[1:]], 0)), norm.dual),
                                [-1, k]) + 1e-8
            nearest = tf.argmin(f / w_norm, axis=1)
            w_l = tf.gather(w, nearest, batch_dims=1)
            f_l = tf.gather(f, nearest, batch_dims=1)
            n_l = tf.gather(w_norm, nearest, batch_dims=1)
            if norm == Norm.LINF:
                step = tf.reshape((f_l + 1e-4) / n_l, [-1, 1, 1, 1]) * tf.sign(w_l)
            else:
                step = tf.reshape((f_l + 1e-4) / tf.square(n_l), [-1, 1, 1, 1]) * w_l
            r_total += step * tf.reshape(tf.cast(active, x.dtype), [-1, 1, 1, 1])
        return tf.clip_by_value(x + (1.0 + overshoot) * r_total, 0.0, 1.0)

    return loop
