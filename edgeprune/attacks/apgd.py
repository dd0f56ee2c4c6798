"""APGD: Auto-PGD (Croce & Hein, ICML 2020), batched and `tf.function`-compiled.

PGD with a fixed step size under-reports attack strength when the step is badly chosen;
APGD removes that choice. It starts at step 2·eps, adds momentum (alpha = 0.75) and halves
the step of a sample at checkpoints where its loss stopped rising (fewer than rho = 75% of
the steps since the last checkpoint increased the loss, or the step was not halved last time
and the best loss did not move), restarting that sample from its best point so far.

Losses: "ce" (cross-entropy), "dlr" (difference of logits ratio, invariant to logit
scale, which makes it robust to gradient masking by large logits) and "dlr-t" (targeted
DLR towards the class ranked `target_class_rank` by the clean logits; AutoAttack's APGD-T
loops over ranks 2..10). Norms: "linf" and "l2" (any spelling `norms.parse_norm` accepts).

Contract (shared by every edgeprune attack): `apgd(model_fn, x, y, *, eps, norm, seed, ...)`
attacks ONE batch of float32 images in [0, 1]; `model_fn` maps a float32 tf.Tensor batch to
differentiable logits. Returns float32 numpy x_adv, per sample the first misclassified
point found or, failing that, the highest-loss point, always within eps and [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeprune.attacks.checks import as_batch
from edgeprune.attacks.compiled import cached, logits_of
from edgeprune.attacks.norms import Norm, lp_norm, parse_norm, project_tf, steepest_direction_tf

LOSSES = ("ce", "dlr", "dlr-t")


def dlr_loss(logits, y):
    """Untargeted DLR: -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3); larger = closer to fooled."""
    import tensorflow as tf

    sorted_logits = tf.sort(logits, axis=1, direction="DESCENDING")
    num_classes = tf.shape(logits)[1]
    onehot = tf.one_hot(y, num_classes, dtype=logits.dtype)
    z_y = tf.reduce_sum(logits * onehot, axis=1)
    z_other = tf.reduce_max(logits - 1e9 * onehot, axis=1)
    return -(z_y - z_other) / (sorted_logits[:, 0] - sorted_logits[:, 2] + 1e-12)


def dlr_targeted_loss(logits, y, y_target):
    """Targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    import tensorflow as tf

    sorted_logits = tf.sort(logits, axis=1, direction="DESCENDING")
    num_classes = tf.shape(logits)[1]
    z_y = tf.reduce_sum(logits * tf.one_hot(y, num_classes, dtype=logits.dtype), axis=1)
    z_t = tf.reduce_sum(logits * tf.one_hot(y_target, num_classes, dtype=logits.dtype), axis=1)
    scale = sorted_logits[:, 0] - 0.5 * (sorted_logits[:, 2] + sorted_logits[:, 3]) + 1e-12
    return -(z_y - z_t) / scale


def _per_sample_loss(loss_id, logits, y, y_target):
    """The loss LOSSES[loss_id] per sample; `loss_id` is a tensor, so one trace serves all."""
    import tensorflow as tf

    # All three are a few ops on the logits; selecting one keeps the graph free of control flow.
    losses = tf.stack([tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits),
                       dlr_loss(logits, y), dlr_targeted_loss(logits, y, y_target)])
    return tf.gather(losses, loss_id)


def _build_loop(model_fn: Callable, norm: Norm, image_shape: tuple) -> Callable:
    """One run of APGD (all steps, step-size halving included) as a single compiled loop.

    Per sample it tracks the first misclassified point (x_hit) and the highest-loss point
    (x_best). Every loss, batch size and step count reuses one trace, and the graph holds
    the model once: iteration 0 evaluates the start point, iteration i > 0 takes step i.
    """
    import tensorflow as tf

    images = tf.TensorSpec((None, *image_shape), tf.float32)
    labels = tf.TensorSpec((None,), tf.int64)

    @tf.function(input_signature=[images, images, labels, labels, tf.TensorSpec((), tf.int32),
                                  tf.TensorSpec((None,), tf.float32), tf.TensorSpec((None,), tf.bool),
                                  tf.TensorSpec((), tf.float32), tf.TensorSpec((), tf.float32)])
    def run(x, x_start, y, y_target, loss_id, eps, is_checkpoint, rho, alpha):
        def rows(mask):  # (batch,) -> broadcastable over the images
            return tf.reshape(mask, (-1,) + (1,) * len(image_shape))

        n = tf.shape(x)[0]
        x_adv, x_adv_old = x_start, x_start
        grad = tf.zeros_like(x)
        x_best, grad_best, x_hit = x_start, grad, x_start
        loss_best = tf.fill((n,), np.float32(-np.inf))
        loss_prev = tf.fill((n,), np.float32(np.inf))
        hit = tf.zeros((n,), tf.bool)
        step_size = 2.0 * eps
        increases = tf.zeros((n,), tf.float32)
        loss_best_last_check = loss_best
        halved_last_check = tf.ones((n,), tf.bool)
        last_checkpoint = tf.constant(0.0)
        for i in tf.range(tf.shape(is_checkpoint)[0] + 1):
            if i > 0:
                momentum = tf.where(i == 1, 1.0, alpha)
                z = project_tf(x_adv + rows(step_size) * steepest_direction_tf(grad, norm), x, eps, norm)
                x_new = project_tf(x_adv + momentum * (z - x_adv) + (1.0 - momentum) * (x_adv - x_adv_old),
                                   x, eps, norm)
                x_adv_old = x_adv
                x_adv = x_new
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                logits = tf.cast(model_fn(x_adv), tf.float32)
                loss_values = _per_sample_loss(loss_id, logits, y, y_target)
                total = tf.reduce_sum(loss_values)
            grad = tape.gradient(total, x_adv)

            now_hit = tf.not_equal(tf.argmax(logits, axis=1), y) & ~hit
            x_hit = tf.where(rows(now_hit), x_adv, x_hit)
            hit = hit | now_hit
            increases += tf.cast(loss_values > loss_prev, tf.float32)
            loss_prev = loss_values
            better = loss_values > loss_best
            x_best = tf.where(rows(better), x_adv, x_best)
            grad_best = tf.where(rows(better), grad, grad_best)
            loss_best = tf.where(better, loss_values, loss_best)
            if i == 0:
                loss_best_last_check = loss_best
            elif is_checkpoint[i - 1]:
                at = tf.cast(i, tf.float32)
                oscillating = increases < rho * (at - last_checkpoint)
                stalled = ~halved_last_check & (loss_best_last_check >= loss_best)
                halve = oscillating | stalled
                halved_last_check = halve
                loss_best_last_check = loss_best
                step_size = tf.where(halve, step_size / 2.0, step_size)
                x_adv = tf.where(rows(halve), x_best, x_adv)
                grad = tf.where(rows(halve), grad_best, grad)
                increases = tf.zeros_like(increases)
                last_checkpoint = at
        return hit, x_hit, x_best, loss_best

    return run


def checkpoints(steps: int) -> list[int]:
    """Iterations at which the step size is reconsidered (Croce & Hein's p_j, in integers).

    Intervals start at 22% of the steps and shrink by 3% to at least 6%:
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); for 100 steps 22, 41, 57, 70, 80, 87, 93, 99.
    """
    interval = max(int(0.22 * steps), 1)
    decrement, minimum = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, at = [], 0
    while at + interval <= steps:
        at += interval
        points.append(at)
        interval = max(interval - decrement, minimum)
    return points


def random_start(x: np.ndarray, eps: np.ndarray, norm: str, rng: np.random.Generator) -> np.ndarray:
    """A uniform point in the Linf ball, or a point on the L2 sphere, clipped to [0, 1]."""
    eps_b = eps.reshape(-1, *([1] * (x.ndim - 1)))
    if parse_norm(norm) == Norm.LINF:
        delta = rng.uniform(-1.0, 1.0, size=x.shape).astype(np.float32) * eps_b
    else:
        direction = rng.standard_normal(size=x.shape).astype(np.float32)
        lengths = lp_norm(direction, Norm.L2).astype(np.float32).reshape(eps_b.shape)
        delta = direction / (lengths + 1e-12) * eps_b
    return np.clip(x + delta, 0.0, 1.0).astype(np.float32)


def target_classes(logits: np.ndarray, rank: int) -> np.ndarray:
    """The class each sample's logits rank `rank`-th (1 = predicted class, 2 = runner-up)."""
    return np.argsort(-logits, axis=1, kind="stable")[:, rank - 1].astype(np.int64)


def apgd(model_fn: Callable, x, y, *, eps: float, norm="linf", seed: int = 0, steps: int = 100,
         loss: str = "ce", n_restarts: int = 1, rho: float = 0.75, alpha: float = 0.75,
         target_class_rank: int | None = None, random_init: bool = True) -> np.ndarray:
    """Auto-PGD on one batch; returns float32 x_adv (numpy) within eps of x and inside [0, 1].

    eps: radius in `norm` ("linf" or "l2"); steps: iterations per restart; loss: "ce", "dlr"
    or "dlr-t" (then `target_class_rank`, default 2, picks the target from the clean logits);
    n_restarts: extra random starts for samples not yet misclassified; rho: the fraction of
    improving steps below which the step size is halved; alpha: momentum weight of the new
    step; seed: random starts (numpy), so equal seeds give equal bytes.
    """
    import tensorflow as tf

    norm = parse_norm(norm)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if n_restarts < 1:
        raise ValueError(f"n_restarts must be >= 1, got {n_restarts}")
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    x, y = as_batch(x, y)
    if len(x) == 0 or eps == 0:
        return x.copy()

    run = cached(model_fn, ("apgd", norm, tuple(x.shape[1:])),
                 lambda weak_fn: _build_loop(weak_fn, norm, tuple(x.shape[1:])))
    rng = np.random.default_rng(seed)
    clean_logits = logits_of(model_fn, x)
    num_classes = clean_logits.shape[1]
    min_classes = {"ce": 2, "dlr": 3, "dlr-t": 4}[loss]
    if num_classes < min_classes:
        raise ValueError(f"loss {loss!r} needs at least {min_classes} classes, the model has {num_classes}")
    if loss == "dlr-t":
        rank = 2 if target_class_rank is None else int(target_class_rank)
        if not 2 <= rank <= num_classes:
            raise ValueError(f"target_class_rank must be in [2, {num_classes}], got {rank}")
        y_target = target_classes(clean_logits, rank)
    else:
        y_target = y.copy()

    fooled = clean_logits.argmax(axis=1) != y
    x_out = x.copy()
    best_loss_out = np.full(len(x), -np.inf, np.float32)
    eps_all = np.full(len(x), eps, np.float32)
    is_checkpoint = np.zeros(steps, bool)
    is_checkpoint[[c - 1 for c in checkpoints(steps)]] = True

    for _restart in range(n_restarts):
        todo = np.flatnonzero(~fooled)
        if len(todo) == 0:
            break
        x_sub, eps_sub = x[todo], eps_all[todo]
        x_start = random_start(x_sub, eps_sub, norm, rng) if random_init else x_sub.copy()
        hit, x_hit, x_best, loss_best = (t.numpy() for t in run(
            tf.constant(x_sub), tf.constant(x_start), tf.constant(y[todo]), tf.constant(y_target[todo]),
            tf.constant(LOSSES.index(loss), tf.int32), tf.constant(eps_sub), tf.constant(is_checkpoint), tf.constant(rho, tf.float32),
            tf.constant(alpha, tf.float32)))

        # Per sample: the misclassified point if any, else the highest-loss point over restarts.
        new_best = ~hit & (loss_best > best_loss_out[todo])
        x_out[todo[hit]] = x_hit[hit]
        x_out[todo[new_best]] = x_best[new_best]
        best_loss_out[todo[new_best]] = loss_best[new_best]
        fooled[todo[hit]] = True
    return x_out


def apgd_targeted(model_fn: Callable, x, y, *, eps: float, norm="linf", seed: int = 0, steps: int = 100,
                  n_target_classes: int = 9, rho: float = 0.75) -> np.ndarray:
    """APGD-T as AutoAttack runs it: targeted DLR towards the classes ranked 2..n+1 by the
    clean logits, each on the points the previous targets did not flip; worst case per point."""

    if n_target_classes < 1:
        raise ValueError(f"n_target_classes must be >= 1, got {n_target_classes}")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    x_adv = x.copy()
    if len(x) == 0 or eps == 0:
        return x_adv
    logits = logits_of(model_fn, x)
    alive = logits.argmax(axis=1) == y
    for rank in range(2, min(n_target_classes, logits.shape[1] - 1) + 2):
        idx = np.flatnonzero(alive)
        if len(idx) == 0:
            break
        cand = apgd(model_fn, x[idx], y[idx], eps=eps, norm=norm, seed=seed + rank, steps=steps,
                    loss="dlr-t", target_class_rank=rank, rho=rho)
        fooled = logits_of(model_fn, cand).argmax(axis=1) != y[idx]
        x_adv[idx] = cand  # flipped points leave `alive`; the others keep the latest attempt
        alive[idx[fooled]] = False
    return x_adv
