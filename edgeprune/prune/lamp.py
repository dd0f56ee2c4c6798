"""Layer-wise sparsity targets for magnitude pruning: local, global and LAMP.

All three decide *how many* weights each layer loses; *which* weights is always the smallest
magnitudes within the layer (what TF-MOT's per-layer pruning does), so a per-layer target
computed here is realised exactly by TF-MOT with that layer's own schedule.

LAMP (Lee et al., "Layer-adaptive sparsity for the magnitude-based pruning", ICLR 2021):
with a layer's weights sorted by magnitude, w_1 <= ... <= w_n,
    score(w_u) = w_u^2 / sum_{v >= u} w_v^2,
and one global threshold on the scores. The score is monotone in magnitude inside a layer,
and every layer keeps its largest weight (score 1), so no layer is wiped out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgeprune.errors import EdgepruneError

SCOPES = ("local", "global", "lamp")


def lamp_scores(kernel: np.ndarray) -> np.ndarray:
    """LAMP score of every weight of one layer, same shape as `kernel`."""
    squared = np.square(np.asarray(kernel, dtype=np.float64)).ravel()
    order = np.argsort(squared, kind="stable")
    sorted_squared = squared[order]
    # suffix[u] = sum of squared weights at or above position u (in ascending order)
    suffix = np.cumsum(sorted_squared[::-1])[::-1]
    sorted_scores = np.divide(sorted_squared, suffix, out=np.zeros_like(sorted_squared),
                              where=suffix > 0)
    scores = np.empty_like(sorted_scores)
    scores[order] = sorted_scores
    return scores.reshape(np.shape(kernel))


def _global_counts(scores: Mapping[str, np.ndarray], target: float) -> dict[str, int]:
    """Zeros per layer when the `target` fraction of lowest scores (over all layers) is cut."""
    names = list(scores)
    flat = np.concatenate([scores[name].ravel() for name in names])
    owner = np.concatenate([np.full(scores[name].size, i) for i, name in enumerate(names)])
    n_prune = int(round(target * flat.size))
    pruned_owner = owner[np.argsort(flat, kind="stable")[:n_prune]]
    counts = np.bincount(pruned_owner, minlength=len(names))
    return {name: int(counts[i]) for i, name in enumerate(names)}


def layer_sparsities(kernels: Mapping[str, np.ndarray], target: float, scope: str) -> dict[str, float]:
    """Per-layer sparsity that realises `target` under `scope` (local, global or lamp).

    `local`: every layer gets `target`. `global`: one magnitude threshold over all layers.
    `lamp`: one threshold over LAMP scores. Each layer keeps at least one weight (TF-MOT
    refuses a sparsity of 1, and a layer with no weights left disconnects the network).
    """
    if scope not in SCOPES:
        raise EdgepruneError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
    if not 0.0 < target < 1.0:
        raise EdgepruneError(f"sparsity must be in (0, 1), got {target}")
    if not kernels:
        raise EdgepruneError("no prunable layers (Conv2D or Dense) in the model")
    if scope == "local":
        return {name: float(target) for name in kernels}
    if scope == "global":
        scores = {name: np.abs(np.asarray(k, dtype=np.float64)) for name, k in kernels.items()}
    else:
        scores = {name: lamp_scores(k) for name, k in kernels.items()}
    counts = _global_counts(scores, target)
    return {name: min(counts[name], kernels[name].size - 1) / kernels[name].size for name in kernels}


def magnitude_mask(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask (1.0 / 0.0) of the round(n * (1 - sparsity)) largest magnitudes (at least 1),
    the count TF-MOT keeps; used for one-shot pruning without fine-tuning."""
    flat = np.abs(np.asarray(kernel)).ravel()
    keep = max(1, int(round(flat.size * (1.0 - sparsity))))
    mask = np.zeros(flat.size, dtype=kernel.dtype)
    mask[np.argsort(-flat, kind="stable")[:keep]] = 1.0
    return mask.reshape(kernel.shape)


def n_m_groups(kernel: np.ndarray, block: int) -> np.ndarray:
    """The kernel as rows of `block` consecutive weights along the input-channel axis, the way
    TF-MOT groups N:M sparsity (TFLite layout [out, h, w, in]); the last group of each row is
    zero-padded when the input channels are not a multiple of `block`, and returned with NaN
    in the padding so callers can tell padding from pruned weights."""
    kernel = np.asarray(kernel)
    if kernel.ndim == 4:
        rows = np.transpose(kernel, (3, 0, 1, 2)).reshape(-1, kernel.shape[2])
    elif kernel.ndim == 2:
        rows = kernel.T
    else:
        raise EdgepruneError(f"N:M sparsity needs a rank-2 or rank-4 kernel, got rank {kernel.ndim}")
    pad = (-rows.shape[1]) % block
    padded = np.pad(rows.astype(np.float64), ((0, 0), (0, pad)), constant_values=np.nan)
    return padded.reshape(-1, block)
