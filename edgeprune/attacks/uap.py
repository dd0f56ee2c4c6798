"""Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017): one vector for all images.

Passes over the fit images in seeded random mini-batches; for the images the current vector
v does not yet fool, DeepFool finds the step to their decision boundary, and v moves by the
sum of those steps (the paper's per-image updates, applied together) and is projected back
onto the eps-ball. Stops after `max_iter` passes or once `target_fooling` of the fit images
change class; returns the vector with the highest fooling rate seen after a pass. With
`batch_size=1` this is the paper's per-image algorithm (measured on digits, eps 0.3: the
mean of the steps instead of the sum fooled 2-3x fewer images). Registered as a universal attack: returns v (H, W, C); the runner
adds it to every image and records it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeprune.attacks.compiled import logits_of
from edgeprune.attacks.deepfool import deepfool
from edgeprune.attacks.norms import project_delta


def universal_perturbation(model_fn: Callable, x, y, *, eps: float, norm: str, seed: int,
                           max_iter: int = 5, fit_size: int = 256, target_fooling: float = 0.8,
                           deepfool_iter: int = 10, overshoot: float = 0.02,
                           batch_size: int = 32) -> np.ndarray:
    """One perturbation of shape x.shape[1:] with `norm` at most eps, fitted on (x, y)."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    rng = np.random.default_rng(seed)
    v = np.zeros(x.shape[1:], np.float32)
    clean_pred = _predict(model_fn, x)
    best_v, best_rate = v, 0.0
    for _ in range(max_iter):
        for batch in np.array_split(rng.permutation(len(x)), max(1, -(-len(x) // batch_size))):
            xb = np.clip(x[batch] + v, 0.0, 1.0)
            still = _predict(model_fn, xb) == y[batch]
            if not still.any():
                continue
            stepped = deepfool(model_fn, xb[still], y[batch][still], eps=None, norm=norm, seed=seed,
                               max_iter=deepfool_iter, overshoot=overshoot)
            v = project_delta(v + np.sum(stepped - xb[still], axis=0), eps, norm, batched=False).astype(np.float32)
        rate = float(np.mean(_predict(model_fn, np.clip(x + v, 0.0, 1.0)) != clean_pred))
        if rate > best_rate:  # passes can undo each other: keep the best vector seen
            best_v, best_rate = v, rate
        if rate >= target_fooling:
            break
    return best_v


def _predict(model_fn: Callable, x: np.ndarray, batch_size: int = 256) -> np.ndarray:

    return logits_of(model_fn, x, batch_size).argmax(axis=1)
