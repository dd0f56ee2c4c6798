"""FAB-T: targeted Fast Adaptive Boundary attack, L-inf (Croce & Hein, ICML 2020).

A minimum-norm attack that AutoAttack runs after APGD because it does not depend on the
loss surface's scale: at each step it linearises the boundary between the true class y and
a target class t at the current point, projects both the current point and the clean
image onto that hyperplane (inside [0, 1], in L-inf), and moves to a convex combination of
the two projections (weight on the clean image's projection at most `alpha_max`),
overshooting by `eta`. After each success it steps back towards the clean image by
`beta`, so the perturbation shrinks while staying near the boundary.

The projection onto {z : w·z = b} ∩ [0, 1]^d in L-inf is solved exactly per sample: the
largest w·δ reachable with ‖δ‖∞ ≤ t is Σ|w_i|·min(t, room_i), piecewise linear in t, so
sorting the rooms gives the smallest t in closed form.

Contract: `fab(model_fn, x, y, *, eps, norm, seed, ...)` on one batch of float32 images in
[0, 1]; returns float32 numpy x_adv, per sample the smallest-norm misclassified point found
(the clean image where none was found). `eps` only scales the random restarts (as in
AutoAttack): the result is a minimum-norm point, which a bounded caller checks against eps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeprune.attacks.apgd import target_classes
from edgeprune.attacks.checks import as_batch
from edgeprune.attacks.compiled import cached, logits_of
from edgeprune.attacks.norms import (Norm, lp_norm, lp_norm_tf, parse_norm, project_linf_hyperplane,
                                     project_linf_hyperplane_tf)

__all__ = ["fab", "project_linf_hyperplane"]


def _build_loop(model_fn: Callable, image_shape: tuple) -> Callable:
    """All `steps` of one FAB-T restart as one compiled loop (any batch size, one trace)."""
    import tensorflow as tf

    images = tf.TensorSpec((None, *image_shape), tf.float32)
    labels = tf.TensorSpec((None,), tf.int64)
    scalar = tf.TensorSpec((), tf.float32)

    @tf.function(input_signature=[images, images, labels, labels, tf.TensorSpec((), tf.int32),
                                  scalar, scalar, scalar])
    def run(x0, x_start, y, y_target, steps, alpha_max, eta, beta):
        n = tf.shape(x0)[0]
        flat0 = tf.reshape(x0, (n, -1))
        rows = tf.range(n)
        true_idx = tf.stack([rows, tf.cast(y, tf.int32)], axis=1)
        target_idx = tf.stack([rows, tf.cast(y_target, tf.int32)], axis=1)

        def as_rows(mask):
            return tf.reshape(mask, (-1,) + (1,) * len(image_shape))

        x1 = x_start
        best_norm = tf.fill((n,), np.float32(np.inf))
        best_adv = x0
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x1)
                logits = tf.cast(model_fn(x1), tf.float32)
                # z_y - z_t: the linearised boundary between y and the target at x1.
                diff = tf.gather_nd(logits, true_idx) - tf.gather_nd(logits, target_idx)
            w = tf.reshape(tape.gradient(diff, x1), (n, -1))
            flat1 = tf.reshape(x1, (n, -1))
            # Boundary of the linear model at x1: diff + w·(z - x1) = 0  <=>  w·z = w·x1 - diff.
            b = tf.reduce_sum(w * flat1, axis=1) - diff
            deltas = project_linf_hyperplane_tf(tf.concat([flat1, flat0], 0), tf.concat([w, w], 0),
                                                tf.concat([b, b], 0))
            d1, d0 = deltas[:n], deltas[n:]
            n1 = tf.maximum(lp_norm_tf(d1, Norm.LINF), 1e-8)
            n0 = tf.maximum(lp_norm_tf(d0, Norm.LINF), 1e-8)
            alpha = tf.clip_by_value(n1 / (n1 + n0), 0.0, alpha_max)[:, None]
            flat_new = tf.clip_by_value((flat1 + eta * d1) * (1.0 - alpha) + (flat0 + eta * d0) * alpha, 0.0, 1.0)
            x1 = tf.reshape(flat_new, tf.shape(x0))
            is_adv = tf.not_equal(tf.argmax(model_fn(x1), axis=1), y)
            dist = lp_norm_tf(flat_new - flat0, Norm.LINF)
            better = is_adv & (dist < best_norm)
            best_norm = tf.where(better, dist, best_norm)
            best_adv = tf.where(as_rows(better), x1, best_adv)
            # After a success, step back towards the clean image (smaller perturbation).
            x1 = tf.where(as_rows(is_adv), x0 + beta * (x1 - x0), x1)
        return best_norm, best_adv

    return run


def fab(model_fn: Callable, x, y, *, eps: float | None = None, norm="linf", seed: int = 0,
        steps: int = 100, n_restarts: int = 1, target_class_rank: int = 2,
        alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9) -> np.ndarray:
    """Targeted FAB in L-inf on one batch; returns float32 numpy x_adv (see module doc).

    target_class_rank: the target is the class ranked this by the clean logits (2 = runner-up;
    AutoAttack's FAB-T loops over 2..10). Restart 0 starts at x; later restarts start at a
    random point at half of min(best norm so far, eps) (seeded by `seed`).
    """
    import tensorflow as tf

    if parse_norm(norm) != Norm.LINF:
        raise ValueError(f"fab supports norm 'inf' only, got {norm!r}")
    if eps is not None and not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if n_restarts < 1:
        raise ValueError(f"n_restarts must be >= 1, got {n_restarts}")
    if not 0.0 <= alpha_max <= 1.0:
        raise ValueError(f"alpha_max must be in [0, 1], got {alpha_max}")
    if eta < 1.0:
        raise ValueError(f"eta (overshoot) must be >= 1, got {eta}")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    x, y = as_batch(x, y)
    x_out = x.copy()
    if len(x) == 0 or eps == 0:
        return x_out

    run = cached(model_fn, ("fab-linf", tuple(x.shape[1:])), lambda weak_fn: _build_loop(weak_fn, tuple(x.shape[1:])))
    clean_logits = logits_of(model_fn, x)
    num_classes = clean_logits.shape[1]
    if not 2 <= target_class_rank <= num_classes:
        raise ValueError(f"target_class_rank must be in [2, {num_classes}], got {target_class_rank}")
    todo = np.flatnonzero(clean_logits.argmax(axis=1) == y)
    if len(todo) == 0:
        return x_out
    rng = np.random.default_rng(seed)
    x0, y0 = x[todo], y[todo]
    y_target = target_classes(clean_logits[todo], target_class_rank)
    x0_tf, y_tf, yt_tf = tf.constant(x0), tf.constant(y0), tf.constant(y_target)
    settings = (tf.constant(steps, tf.int32), tf.constant(alpha_max, tf.float32), tf.constant(eta, tf.float32),
                tf.constant(beta, tf.float32))
    best_norm = np.full(len(todo), np.inf, np.float32)
    best_adv = x0.copy()
    radius_cap = np.inf if eps is None else float(eps)
    per_image = (-1,) + (1,) * (x0.ndim - 1)

    for restart in range(n_restarts):
        if restart == 0:
            x1 = x0
        else:
            radius = np.minimum(best_norm, radius_cap)
            radius = np.where(np.isfinite(radius), radius, 0.0).astype(np.float32)
            noise = rng.uniform(-1.0, 1.0, size=x0.shape).astype(np.float32)
            noise /= lp_norm(noise, Norm.LINF).astype(np.float32).reshape(per_image) + 1e-12
            x1 = np.clip(x0 + 0.5 * radius.reshape(per_image) * noise, 0.0, 1.0)
        norms, advs = (t.numpy() for t in run(x0_tf, tf.constant(x1), y_tf, yt_tf, *settings))
        better = norms < best_norm
        best_norm[better] = norms[better]
        best_adv[better] = advs[better]
    found = np.isfinite(best_norm)
    x_out[todo[found]] = best_adv[found]
    return x_out
