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

import weakref
from collections.abc import Callable

import numpy as np

from edgeprune.attacks.apgd import normalize_norm, target_classes
from edgeprune.attacks.checks import as_batch

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def project_linf_hyperplane(points: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """δ of least L-inf norm with w·(points+δ) = b and points+δ in [0, 1] (rows: samples).

    Where the hyperplane cannot be reached inside the box, returns the box corner that gets
    closest to it.
    """
    points = points.astype(np.float64)
    w = w.astype(np.float64)
    need = b.astype(np.float64) - (w * points).sum(axis=1)
    flip = need < 0
    w = np.where(flip[:, None], -w, w)
    need = np.abs(need)
    # How far each coordinate may move in the direction that increases w·δ.
    room = np.where(w > 0, 1.0 - points, np.where(w < 0, points, 0.0))
    weight = np.abs(w)
    order = np.argsort(room, axis=1, kind="stable")
    room_sorted = np.take_along_axis(room, order, axis=1)
    weight_sorted = np.take_along_axis(weight, order, axis=1)
    # g_k = value of max w·δ at t = room_(k): saturated coordinates before k, t on the rest.
    saturated = np.cumsum(weight_sorted * room_sorted, axis=1) - weight_sorted * room_sorted
    free_weight = weight_sorted[:, ::-1].cumsum(axis=1)[:, ::-1]
    reach = saturated + room_sorted * free_weight
    enough = reach >= need[:, None]
    feasible = enough.any(axis=1)
    k = np.where(feasible, enough.argmax(axis=1), room.shape[1] - 1)
    rows = np.arange(len(points))
    t = np.where(feasible, (need - saturated[rows, k]) / np.maximum(free_weight[rows, k], 1e-30),
                 room_sorted[rows, -1])
    t = np.maximum(t, 0.0)
    delta = np.sign(w) * np.minimum(t[:, None], room)
    return delta.astype(np.float32)


def _compiled(model_fn: Callable):
    import tensorflow as tf

    try:
        cached = _COMPILED.get(model_fn)
    except TypeError:
        cached = None
    if cached is not None:
        return cached

    @tf.function(reduce_retracing=True)
    def diff_and_grad(x, y, y_target):
        """z_y - z_t and its gradient: the linearised boundary between y and the target."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.cast(model_fn(x), tf.float32)
            rows = tf.range(tf.shape(x)[0])
            diff = (tf.gather_nd(logits, tf.stack([rows, tf.cast(y, tf.int32)], axis=1))
                    - tf.gather_nd(logits, tf.stack([rows, tf.cast(y_target, tf.int32)], axis=1)))
        return diff, tape.gradient(diff, x)

    @tf.function(reduce_retracing=True)
    def predict(x):
        return tf.argmax(model_fn(x), axis=1)

    result = (diff_and_grad, predict)
    try:
        _COMPILED[model_fn] = result
    except TypeError:
        pass
    return result


def fab(model_fn: Callable, x, y, *, eps: float | None = None, norm="inf", seed: int = 0,
        steps: int = 100, n_restarts: int = 1, target_class_rank: int = 2,
        alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9) -> np.ndarray:
    """Targeted FAB in L-inf on one batch; returns float32 numpy x_adv (see module doc).

    target_class_rank: the target is the class ranked this by the clean logits (2 = runner-up;
    AutoAttack's FAB-T loops over 2..10). Restart 0 starts at x; later restarts start at a
    random point at half of min(best norm so far, eps) (seeded by `seed`).
    """
    import tensorflow as tf

    if normalize_norm(norm) != "inf":
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

    diff_and_grad, predict = _compiled(model_fn)
    clean_logits = np.asarray(model_fn(tf.constant(x)), dtype=np.float32)
    num_classes = clean_logits.shape[1]
    if not 2 <= target_class_rank <= num_classes:
        raise ValueError(f"target_class_rank must be in [2, {num_classes}], got {target_class_rank}")
    todo = np.flatnonzero(clean_logits.argmax(axis=1) == y)
    if len(todo) == 0:
        return x_out
    rng = np.random.default_rng(seed)
    x0, y0 = x[todo], y[todo]
    y_target = target_classes(clean_logits[todo], target_class_rank)
    y_tf, yt_tf = tf.constant(y0), tf.constant(y_target)
    flat0 = x0.reshape(len(todo), -1)
    best_norm = np.full(len(todo), np.inf, np.float32)
    best_adv = x0.copy()
    radius_cap = np.inf if eps is None else float(eps)

    for restart in range(n_restarts):
        if restart == 0:
            x1 = x0.copy()
        else:
            radius = np.minimum(best_norm, radius_cap)
            radius = np.where(np.isfinite(radius), radius, 0.0).astype(np.float32)
            noise = rng.uniform(-1.0, 1.0, size=x0.shape).astype(np.float32)
            noise /= np.abs(noise.reshape(len(noise), -1)).max(axis=1).reshape(-1, *([1] * (x0.ndim - 1))) + 1e-12
            x1 = np.clip(x0 + 0.5 * radius.reshape(-1, *([1] * (x0.ndim - 1))) * noise, 0.0, 1.0)
        for _ in range(steps):
            diff, grad = diff_and_grad(tf.constant(x1), y_tf, yt_tf)
            w = grad.numpy().reshape(len(todo), -1)
            flat1 = x1.reshape(len(todo), -1)
            # Boundary of the linear model at x1: diff + w·(z - x1) = 0  <=>  w·z = w·x1 - diff.
            b = (w * flat1).sum(axis=1) - diff.numpy()
            deltas = project_linf_hyperplane(np.concatenate([flat1, flat0]), np.concatenate([w, w]),
                                             np.concatenate([b, b]))
            d1, d0 = deltas[:len(todo)], deltas[len(todo):]
            n1 = np.maximum(np.abs(d1).max(axis=1), 1e-8)
            n0 = np.maximum(np.abs(d0).max(axis=1), 1e-8)
            alpha = np.clip(n1 / (n1 + n0), 0.0, alpha_max)[:, None]
            flat_new = np.clip((flat1 + eta * d1) * (1.0 - alpha) + (flat0 + eta * d0) * alpha, 0.0, 1.0)
            x1 = flat_new.reshape(x0.shape).astype(np.float32)
            is_adv = predict(tf.constant(x1)).numpy() != y0
            if is_adv.any():
                dist = np.abs(flat_new - flat0).max(axis=1).astype(np.float32)
                better = is_adv & (dist < best_norm)
                best_norm[better] = dist[better]
                best_adv[better] = x1[better]
                x1[is_adv] = x0[is_adv] + beta * (x1[is_adv] - x0[is_adv])
    found = np.isfinite(best_norm)
    x_out[todo[found]] = best_adv[found]
    return x_out
