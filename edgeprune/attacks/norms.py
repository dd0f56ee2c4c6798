"""One norm vocabulary and one set of projections for every attack.

`Norm` names the threat models ("linf", "l2"); `parse_norm` accepts every usual spelling
(np.inf, "inf", "Linf", 2, "2", "L2", ...), so the registry's "linf"/"l2" and APGD's legacy
"inf"/"2" mean the same thing. The helpers below are the only place that measures a
perturbation, projects onto an eps-ball or clips to the image box: numpy versions for the
runner and the numpy-side attacks, TensorFlow versions (suffix `_tf`) for compiled loops.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError


class Norm(StrEnum):
    """An attack's threat model; compares equal to its value ("linf" == Norm.LINF)."""

    LINF = "linf"
    L2 = "l2"

    @property
    def dual(self) -> str:
        """The dual norm's name ("l1" for linf, "l2" for l2): what bounds w·δ by ‖w‖*·‖δ‖."""
        return "l1" if self is Norm.LINF else "l2"


NORMS: tuple[str, ...] = tuple(n.value for n in Norm)
_ALIASES = {"linf": Norm.LINF, "inf": Norm.LINF, "l_inf": Norm.LINF, "np.inf": Norm.LINF,
            "infinity": Norm.LINF, "l2": Norm.L2, "2": Norm.L2, "2.0": Norm.L2, "l_2": Norm.L2}


class NormError(EdgepruneError, ValueError):
    """An unknown norm: a user-facing error (CLI exit 2) that is also a ValueError."""


def parse_norm(norm: Any) -> Norm:
    """Norm.LINF or Norm.L2 from any usual spelling; a one-line error otherwise."""
    if isinstance(norm, Norm):
        return norm
    if isinstance(norm, (float, np.floating)) and math.isinf(float(norm)):
        return Norm.LINF
    key = str(norm).strip().lower()
    if key not in _ALIASES:
        raise NormError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")
    return _ALIASES[key]


# --- numpy ----------------------------------------------------------------------------------------
def lp_norm(delta: np.ndarray, norm: Any) -> np.ndarray:
    """Per-sample norm of a batch (float64, shape (batch,)); accepts "l1" for dual norms."""
    flat = np.asarray(delta, np.float64).reshape(len(delta), -1)
    which = norm if norm == "l1" else parse_norm(norm)
    if which == Norm.LINF:
        return np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(len(flat))
    if which == "l1":
        return np.abs(flat).sum(axis=1)
    return np.sqrt((flat * flat).sum(axis=1))


def project_delta(delta: np.ndarray, eps: float, norm: Any, *, batched: bool = True) -> np.ndarray:
    """δ moved onto the eps-ball: per sample when `batched`, else δ is one perturbation.

    L2 lands a hair inside the ball so float32 rounding cannot push a sample past eps.
    """
    if parse_norm(norm) == Norm.LINF:
        return np.clip(delta, -eps, eps)
    flat = delta.reshape(len(delta), -1) if batched else delta.reshape(1, -1)
    sizes = np.sqrt(np.sum(np.square(flat, dtype=np.float64), axis=1))
    factor = np.minimum(1.0, eps * (1 - 1e-7) / np.maximum(sizes, 1e-30))
    if not batched:
        return delta * factor[0]
    return delta * factor.reshape((-1,) + (1,) * (delta.ndim - 1))


def project(x_adv: np.ndarray, x: np.ndarray, eps: float | None, norm: Any) -> np.ndarray:
    """x_adv moved onto the eps-ball around x in `norm` (if eps) and into [0, 1]; float32."""
    delta = np.asarray(x_adv, np.float64) - x
    delta = np.nan_to_num(delta, nan=0.0, posinf=0.0, neginf=0.0)
    if eps is not None:
        delta = project_delta(delta, eps, norm, batched=True)
    return np.clip(x + delta, 0.0, 1.0).astype(np.float32)


def perturbation_norms(x_adv: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (Linf, L2) of x_adv - x, computed in float64."""
    delta = np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)
    return lp_norm(delta, Norm.LINF), lp_norm(delta, Norm.L2)


def project_linf_hyperplane(points: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """δ of least L-inf norm with w·(points+δ) = b and points+δ in [0, 1] (rows: samples).

    The largest w·δ reachable with ‖δ‖∞ ≤ t is Σ|w_i|·min(t, room_i), piecewise linear in t,
    so sorting the rooms gives the smallest t in closed form. Where the hyperplane cannot be
    reached inside the box, returns the box corner that gets closest to it. (FAB's projection;
    `project_linf_hyperplane_tf` is the same arithmetic inside a compiled step.)
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


# --- TensorFlow (inside compiled loops) -------------------------------------------------------------
def lp_norm_tf(t: Any, norm: Any) -> Any:
    """Per-sample norm of a batch tensor, shape (batch,); "l1" allowed (dual of linf)."""
    import tensorflow as tf

    flat = tf.reshape(t, (tf.shape(t)[0], -1))
    which = norm if norm == "l1" else parse_norm(norm)
    if which == Norm.LINF:
        return tf.reduce_max(tf.abs(flat), axis=1)
    if which == "l1":
        return tf.reduce_sum(tf.abs(flat), axis=1)
    return tf.sqrt(tf.reduce_sum(flat * flat, axis=1))


def per_sample(values: Any, like: Any) -> Any:
    """A (batch,) tensor reshaped to broadcast against the batch tensor `like`."""
    import tensorflow as tf

    return tf.reshape(values, tf.concat([[-1], tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def _l2_tf(t: Any) -> Any:
    """Per-sample L2 norm, floored at 1e-6 so dividing by it is safe (CleverHans' rule)."""
    import tensorflow as tf

    flat = tf.reshape(t, (tf.shape(t)[0], -1))
    return tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(flat), axis=1), 1e-12))


def clip_delta_tf(delta: Any, eps: Any, norm: Any) -> Any:
    """δ onto the eps-ball (eps: a scalar or per-sample (batch,)); L2 scales down, never up."""
    import tensorflow as tf

    eps = tf.convert_to_tensor(eps, delta.dtype)
    if parse_norm(norm) == Norm.LINF:
        eps_b = per_sample(eps, delta) if eps.shape.rank == 1 else eps
        return tf.clip_by_value(delta, -eps_b, eps_b)
    return delta * per_sample(tf.minimum(1.0, eps / _l2_tf(delta)), delta)


def project_tf(x_adv: Any, x: Any, eps: Any, norm: Any) -> Any:
    """Back into the eps-ball around x, then into [0, 1] (which only shrinks |δ|)."""
    import tensorflow as tf

    return tf.clip_by_value(x + clip_delta_tf(x_adv - x, eps, norm), 0.0, 1.0)


def steepest_direction_tf(grad: Any, norm: Any) -> Any:
    """The unit step of steepest ascent: sign(grad) in linf, grad / ‖grad‖₂ in l2."""
    import tensorflow as tf

    if parse_norm(norm) == Norm.LINF:
        return tf.sign(grad)
    return grad / per_sample(_l2_tf(grad), grad)


def project_linf_hyperplane_tf(points: Any, w: Any, b: Any) -> Any:
    """`project_linf_hyperplane` in TensorFlow (float32, rows: samples), for compiled loops."""
    import tensorflow as tf

    need = b - tf.reduce_sum(w * points, axis=1)
    w = tf.where((need < 0)[:, None], -w, w)
    need = tf.abs(need)
    room = tf.where(w > 0, 1.0 - points, tf.where(w < 0, points, tf.zeros_like(points)))
    order = tf.argsort(room, axis=1)
    room_sorted = tf.gather(room, order, batch_dims=1)
    weight_sorted = tf.gather(tf.abs(w), order, batch_dims=1)
    saturated = tf.cumsum(weight_sorted * room_sorted, axis=1, exclusive=True)
    free_weight = tf.cumsum(weight_sorted, axis=1, reverse=True)
    enough = saturated + room_sorted * free_weight >= need[:, None]
    feasible = tf.reduce_any(enough, axis=1)
    last = tf.shape(room)[1] - 1
    k = tf.where(feasible, tf.argmax(tf.cast(enough, tf.int32), axis=1, output_type=tf.int32), last)
    t = tf.where(feasible,
                 (need - tf.gather(saturated, k, batch_dims=1))
                 / tf.maximum(tf.gather(free_weight, k, batch_dims=1), 1e-30),
                 room_sorted[:, -1])
    t = tf.maximum(t, 0.0)
    return tf.sign(w) * tf.minimum(t[:, None], room)
