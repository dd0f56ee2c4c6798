"""Square Attack, L-inf (Andriushchenko et al., ECCV 2020): black-box, score-based.

AutoAttack ends with Square because it needs no gradients: a model whose gradients are
masked (or that exists only as a `.tflite` / OpenVINO file) is attacked through its logits
alone. Random search: start from vertical stripes of ±eps; each iteration redraws a random
square window of the perturbation to ±eps per channel and keeps the candidate where it
lowers the margin z_y - max_{j≠y} z_j. The window's share of the image, p, starts at
`p_init` and is halved at fixed fractions of the query budget (AutoAttack's schedule).

`square_attack(predict, x, y, ...)` needs only a numpy `predict(x) -> logits` callable (for
example `edgeprune.runtime.load(path).predict`); `square(model_fn, x, y, *, eps, norm, seed,
...)` follows the attack contract for the registry. Every candidate stays within eps of x
and inside [0, 1], so x_adv is valid without further projection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeprune.attacks.checks import as_batch
from edgeprune.attacks.compiled import logits_of
from edgeprune.attacks.norms import Norm, parse_norm

# Fractions of a 10,000-query run at which p is halved (Andriushchenko et al., AutoAttack).
_HALVING_POINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(p_init: float, iteration: int, n_queries: int) -> float:
    """Share of pixels redrawn at `iteration`: p_init halved at each point passed."""
    scaled = int(iteration / max(n_queries, 1) * 10_000)
    halvings = sum(scaled > point for point in _HALVING_POINTS)
    return p_init / (2 ** halvings)


def margin(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z_y - max_{j != y} z_j: positive while correctly classified."""
    rows = np.arange(len(y))
    true = logits[rows, y]
    others = logits.copy()
    others[rows, y] = -np.inf
    return true - others.max(axis=1)


@dataclass(frozen=True)
class SquareResult:
    x_adv: np.ndarray        # float32, within eps of x and inside [0, 1]
    margins: np.ndarray      # final margin per sample (< 0: fooled)
    queries: np.ndarray      # model queries spent per sample


def square_attack(predict: Callable[[np.ndarray], np.ndarray], x, y, *, eps: float, seed: int = 0,
                  n_queries: int = 5000, p_init: float = 0.8,
                  progress: Callable[[int], None] | None = None) -> SquareResult:
    """Square Attack L-inf on a numpy `predict` (logits); stops a sample once misclassified."""
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if n_queries < 1:
        raise ValueError(f"n_queries must be >= 1, got {n_queries}")
    if not 0.0 < p_init <= 1.0:
        raise ValueError(f"p_init must be in (0, 1], got {p_init}")
    x, y = as_batch(x, y)
    if x.ndim != 4:
        raise ValueError(f"square expects NHWC images, got shape {x.shape}")
    n, height, width, channels = x.shape
    queries = np.zeros(n, np.int64)
    if n == 0 or eps == 0:
        return SquareResult(x.copy(), margin(np.asarray(predict(x), np.float32), y) if n else np.zeros(0), queries)
    rng = np.random.default_rng(seed)
    low, high = np.clip(x - eps, 0.0, 1.0), np.clip(x + eps, 0.0, 1.0)

    clean_margin = margin(np.asarray(predict(x), np.float32), y)  # the evaluation, not a query
    x_best = x.copy()
    best_margin = clean_margin.copy()
    # Vertical stripes: one random sign per (column, channel), on the points still correct.
    alive = np.flatnonzero(best_margin > 0)
    if len(alive):
        stripes = eps * rng.choice([-1.0, 1.0], size=(len(alive), 1, width, channels)).astype(np.float32)
        candidate = np.clip(x[alive] + stripes, low[alive], high[alive])
        cand_margin = margin(np.asarray(predict(candidate), np.float32), y[alive])
        queries[alive] += 1
        x_best[alive], best_margin[alive] = candidate, cand_margin

    # The points still correct, compacted; re-gathered only when one of them is fooled.
    alive = np.flatnonzero(best_margin > 0)
    x_a, y_a, low_a, high_a = x[alive], y[alive], low[alive], high[alive]
    best_a, margin_a = x_best[alive], best_margin[alive]
    for iteration in range(1, n_queries):
        if len(alive) == 0:
            break
        p = p_schedule(p_init, iteration, n_queries)
        side = int(round(np.sqrt(p * height * width)))
        side = min(max(side, 1), height - 1, width - 1) if min(height, width) > 1 else 1
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        window = (slice(None), slice(top, top + side), slice(left, left + side), slice(None))
        x_win, low_win, high_win, best_win = x_a[window], low_a[window], high_a[window], best_a[window]
        # Redraw signs until each sample's window really changes (at most a few tries).
        new_window = eps * rng.choice([-1.0, 1.0], size=(len(alive), 1, 1, channels)).astype(np.float32)
        for _ in range(10):
            same = np.all(np.abs(np.clip(x_win + new_window, low_win, high_win) - best_win) < 1e-7,
                          axis=(1, 2, 3))
            if not same.any():
                break
            new_window[same] = eps * rng.choice([-1.0, 1.0], size=(int(same.sum()), 1, 1, channels))
        # Outside the window the candidate is the best point so far (already within eps and [0, 1]).
        candidate = best_a.copy()
        candidate[window] = np.clip(x_win + new_window, low_win, high_win)
        cand_margin = margin(np.asarray(predict(candidate), np.float32), y_a)
        queries[alive] += 1
        improved = cand_margin < margin_a
        best_a[improved] = candidate[improved]
        margin_a[improved] = cand_margin[improved]
        if (margin_a[improved] <= 0).any():  # someone was fooled: write back and compact
            x_best[alive], best_margin[alive] = best_a, margin_a
            keep = margin_a > 0
            alive = alive[keep]
            x_a, y_a, low_a, high_a = x_a[keep], y_a[keep], low_a[keep], high_a[keep]
            best_a, margin_a = best_a[keep], margin_a[keep]
        if progress is not None:
            progress(iteration)
    x_best[alive], best_margin[alive] = best_a, margin_a
    return SquareResult(x_best.astype(np.float32), best_margin, queries)


def square(model_fn: Callable, x, y, *, eps: float, norm="linf", seed: int = 0,
           n_queries: int = 5000, p_init: float = 0.8) -> np.ndarray:
    """Square Attack under the attack contract (uses only `model_fn`'s outputs, no gradients)."""
    if parse_norm(norm) != Norm.LINF:
        raise ValueError(f"square supports norm 'inf' only, got {norm!r}")

    return square_attack(lambda batch: logits_of(model_fn, batch), x, y, eps=eps, seed=seed, n_queries=n_queries, p_init=p_init).x_adv
