"""APGD: Auto-PGD (Croce & Hein, ICML 2020), batched and `tf.function`-compiled.

PGD with a fixed step size under-reports attack strength when the step is badly chosen;
APGD removes that choice. It starts at step 2·eps, adds momentum (alpha = 0.75) and halves
the step of a sample at checkpoints where its loss stopped rising (fewer than rho = 75% of
the steps since the last checkpoint increased the loss, or the step was not halved last time
and the best loss did not move), restarting that sample from its best point so far.

Losses: "ce" (cross-entropy), "dlr" (difference of logits ratio, invariant to logit
scale, which makes it robust to gradient masking by large logits) and "dlr-t" (targeted
DLR towards the class ranked `target_class_rank` by the clean logits; AutoAttack's APGD-T
loops over ranks 2..10). Norms: "inf" and "2".

Contract (shared by every edgeprune attack): `apgd(model_fn, x, y, *, eps, norm, seed, ...)`
attacks ONE batch of float32 images in [0, 1]; `model_fn` maps a float32 tf.Tensor batch to
differentiable logits. Returns float32 numpy x_adv, per sample the first misclassified
point found or, failing that, the highest-loss point, always within eps and [0, 1].
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np

from edgeprune.attacks.checks import as_batch

LOSSES = ("ce", "dlr", "dlr-t")
NORMS = ("inf", "2")

# Compiled loss+gradient functions per model_fn (weakly held when model_fn allows it), so
# APGD-T's restarts over target ranks and repeated batches do not retrace.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def normalize_norm(norm) -> str:
    """Accept "inf"/np.inf/"linf" and 2/"2"/"l2"; return "inf" or "2"."""
    text = str(norm).lower().removeprefix("l")
    if text in ("inf", "infinity"):
        return "inf"
    if text in ("2", "2.0"):
        return "2"
    raise ValueError(f"norm must be 'inf' or '2', got {norm!r}")


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


def _per_sample_loss(loss: str, logits, y, y_target):
    import tensorflow as tf

    if loss == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    if loss == "dlr":
        return dlr_loss(logits, y)
    return dlr_targeted_loss(logits, y, y_target)


def _lp_norm(t, norm: str):
    """Per-sample norm of a batch tensor, shape (batch,)."""
    import tensorflow as tf

    flat = tf.reshape(t, (tf.shape(t)[0], -1))
    if norm == "inf":
        return tf.reduce_max(tf.abs(flat), axis=1)
    return tf.sqrt(tf.reduce_sum(flat * flat, axis=1))


def _project(x_adv, x, eps, norm: str):
    """Back into the eps-ball around x, then into [0, 1] (which only shrinks |delta|)."""
    import tensorflow as tf

    if norm == "inf":
        x_adv = tf.clip_by_value(x_adv, x - eps[:, None, None, None], x + eps[:, None, None, None])
    else:
        delta = x_adv - x
        scale = tf.minimum(1.0, eps / (_lp_norm(delta, "2") + 1e-12))
        x_adv = x + delta * scale[:, None, None, None]
    return tf.clip_by_value(x_adv, 0.0, 1.0)


def _direction(grad, norm: str):
    import tensorflow as tf

    if norm == "inf":
        return tf.sign(grad)
    return grad / (_lp_norm(grad, "2")[:, None, None, None] + 1e-12)


def _compiled(model_fn: Callable, loss: str, norm: str):
    """(loss_and_grad, step) tf.functions for this model, loss and norm (cached)."""
    import tensorflow as tf

    key = (loss, norm)
    try:
        per_model = _COMPILED.setdefault(model_fn, {})
    except TypeError:  # model_fn not weak-referenceable: compile without caching
        per_model = {}
    if key in per_model:
        return per_model[key]

    def loss_and_grad(x, y, y_target):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.cast(model_fn(x), tf.float32)
            loss_values = _per_sample_loss(loss, logits, y, y_target)
            total = tf.reduce_sum(loss_values)
        return logits, loss_values, tape.gradient(total, x)

    @tf.function(reduce_retracing=True)
    def start(x, y, y_target):
        return loss_and_grad(x, y, y_target)

    @tf.function(reduce_retracing=True)
    def step(x_adv, x_adv_old, x, grad, step_size, alpha, eps, y, y_target):
        z = _project(x_adv + step_size[:, None, None, None] * _direction(grad, norm), x, eps, norm)
        x_new = _project(x_adv + alpha * (z - x_adv) + (1.0 - alpha) * (x_adv - x_adv_old), x, eps, norm)
        logits, loss_values, new_grad = loss_and_grad(x_new, y, y_target)
        return x_new, logits, loss_values, new_grad

    per_model[key] = (start, step)
    return start, step


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
    if norm == "inf":
        delta = rng.uniform(-1.0, 1.0, size=x.shape).astype(np.float32) * eps_b
    else:
        direction = rng.standard_normal(size=x.shape).astype(np.float32)
        lengths = np.sqrt((direction.reshape(len(x), -1) ** 2).sum(axis=1)).reshape(eps_b.shape)
        delta = direction / (lengths + 1e-12) * eps_b
    return np.clip(x + delta, 0.0, 1.0).astype(np.float32)


def target_classes(logits: np.ndarray, rank: int) -> np.ndarray:
    """The class each sample's logits rank `rank`-th (1 = predicted class, 2 = runner-up)."""
    return np.argsort(-logits, axis=1, kind="stable")[:, rank - 1].astype(np.int64)


def apgd(model_fn: Callable, x, y, *, eps: float, norm="inf", seed: int = 0, steps: int = 100,
         loss: str = "ce", n_restarts: int = 1, rho: float = 0.75, alpha: float = 0.75,
         target_class_rank: int | None = None, random_init: bool = True) -> np.ndarray:
    """Auto-PGD on one batch; returns float32 x_adv (numpy) within eps of x and inside [0, 1].

    eps: radius in `norm` ("inf" or "2"); steps: iterations per restart; loss: "ce", "dlr"
    or "dlr-t" (then `target_class_rank`, default 2, picks the target from the clean logits);
    n_restarts: extra random starts for samples not yet misclassified; rho: the fraction of
    improving steps below which the step size is halved; alpha: momentum weight of the new
    step; seed: random starts (numpy), so equal seeds give equal bytes.
    """
    import tensorflow as tf

    norm = normalize_norm(norm)
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

    start, step = _compiled(model_fn, loss, norm)
    rng = np.random.default_rng(seed)
    x_tf = tf.constant(x)
    y_tf = tf.constant(y)
    clean_logits = np.asarray(model_fn(x_tf), dtype=np.float32)
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
    y_target_tf = tf.constant(y_target)

    fooled = clean_logits.argmax(axis=1) != y
    x_out = x.copy()
    best_loss_out = np.full(len(x), -np.inf, np.float32)
    eps_all = np.full(len(x), eps, np.float32)
    checkpoint_set = set(checkpoints(steps))

    for _restart in range(n_restarts):
        todo = np.flatnonzero(~fooled)
        if len(todo) == 0:
            break
        x_sub, eps_sub = x[todo], eps_all[todo]
        x_sub_tf, eps_tf = tf.constant(x_sub), tf.constant(eps_sub)
        y_sub_tf, yt_sub_tf = tf.gather(y_tf, todo), tf.gather(y_target_tf, todo)
        y_sub = y[todo]

        x_adv = random_start(x_sub, eps_sub, norm, rng) if random_init else x_sub.copy()
        logits, loss_values, grad = (t.numpy() for t in start(tf.constant(x_adv), y_sub_tf, yt_sub_tf))
        x_best, loss_best, grad_best = x_adv.copy(), loss_values.copy(), grad.copy()
        hit = logits.argmax(axis=1) != y_sub
        x_hit = np.where(hit[:, None, None, None], x_adv, x_best)
        step_size = 2.0 * eps_sub
        x_adv_old = x_adv.copy()
        loss_prev = loss_values.copy()
        increases = np.zeros(len(todo), np.int64)
        loss_best_last_check = loss_best.copy()
        halved_last_check = np.ones(len(todo), bool)
        last_checkpoint = 0

        for i in range(steps):
            momentum = 1.0 if i == 0 else alpha
            x_new, logits, loss_values, grad = step(
                tf.constant(x_adv), tf.constant(x_adv_old), x_sub_tf, tf.constant(grad),
                tf.constant(step_size.astype(np.float32)), tf.constant(momentum, tf.float32),
                eps_tf, y_sub_tf, yt_sub_tf)
            x_adv_old, x_adv = x_adv, x_new.numpy()
            logits, loss_values, grad = logits.numpy(), loss_values.numpy(), grad.numpy()

            now_hit = (logits.argmax(axis=1) != y_sub) & ~hit
            x_hit[now_hit] = x_adv[now_hit]
            hit |= now_hit
            increases += loss_values > loss_prev
            loss_prev = loss_values
            better = loss_values > loss_best
            x_best[better], grad_best[better], loss_best[better] = x_adv[better], grad[better], loss_values[better]

            if i + 1 in checkpoint_set:
                interval = i + 1 - last_checkpoint
                oscillating = increases < rho * interval
                stalled = ~halved_last_check & (loss_best_last_check >= loss_best)
                halve = oscillating | stalled
                halved_last_check = halve
                loss_best_last_check = loss_best.copy()
                step_size[halve] /= 2.0
                x_adv[halve], grad[halve] = x_best[halve], grad_best[halve]
                increases[:] = 0
                last_checkpoint = i + 1

        # Per sample: the misclassified point if any, else the highest-loss point over restarts.
        new_best = ~hit & (loss_best > best_loss_out[todo])
        x_out[todo[hit]] = x_hit[hit]
        x_out[todo[new_best]] = x_best[new_best]
        best_loss_out[todo[new_best]] = loss_best[new_best]
        fooled[todo[hit]] = True
    return x_out


def apgd_targeted(model_fn: Callable, x, y, *, eps: float, norm="inf", seed: int = 0, steps: int = 100,
                  n_target_classes: int = 9, rho: float = 0.75) -> np.ndarray:
    """APGD-T as AutoAttack runs it: targeted DLR towards the classes ranked 2..n+1 by the
    clean logits, each on the points the previous targets did not flip; worst case per point."""
    import tensorflow as tf

    if n_target_classes < 1:
        raise ValueError(f"n_target_classes must be >= 1, got {n_target_classes}")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    x_adv = x.copy()
    if len(x) == 0 or eps == 0:
        return x_adv
    logits = np.asarray(model_fn(tf.constant(x)), np.float32)
    alive = logits.argmax(axis=1) == y
    for rank in range(2, min(n_target_classes, logits.shape[1] - 1) + 2):
        idx = np.flatnonzero(alive)
        if len(idx) == 0:
            break
        cand = apgd(model_fn, x[idx], y[idx], eps=eps, norm=norm, seed=seed + rank, steps=steps,
                    loss="dlr-t", target_class_rank=rank, rho=rho)
        fooled = np.asarray(model_fn(tf.constant(cand))).argmax(axis=1) != y[idx]
        x_adv[idx] = cand  # flipped points leave `alive`; the others keep the latest attempt
        alive[idx[fooled]] = False
    return x_adv
