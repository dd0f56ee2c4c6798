"""Parameter, sparsity and MAC counts of Keras models, read from weights and layer shapes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeprune.errors import EdgepruneError

if TYPE_CHECKING:
    import tensorflow as tf

PRUNABLE_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


def _filter_kernel(kind: str, weights: Sequence[np.ndarray]) -> np.ndarray:
    """The kernel that makes a layer's output filters, as (inputs, filters): the pointwise
    kernel of a SeparableConv2D; for a DepthwiseConv2D, output channel c*m + j (m = depth
    multiplier) is filter (c, j) of its (h, w, channels, m) kernel."""
    kernel = weights[1] if kind == "SeparableConv2D" else weights[0]
    if kind == "DepthwiseConv2D":
        return kernel.reshape(-1, kernel.shape[2] * kernel.shape[3])
    return kernel.reshape(-1, kernel.shape[-1])


def zero_filter_mask(kind: str, weights: Sequence[np.ndarray]) -> np.ndarray:
    """Per output filter of a Conv2D / DepthwiseConv2D / SeparableConv2D / Dense layer: True
    where its kernel slice is all zero (a dead filter; its output is the bias). The one
    definition of a zero filter: statistics, reports, NNCF's record and shrinking use it."""
    if kind not in PRUNABLE_LAYERS:
        raise EdgepruneError(f"zero filters are defined for {', '.join(PRUNABLE_LAYERS)}, not {kind}")
    return np.asarray(np.abs(_filter_kernel(kind, weights)).max(axis=0) == 0)


@dataclass(frozen=True)
class LayerStats:
    name: str
    kind: str
    weights: int  # kernel entries (biases excluded: pruners leave them alone)
    zeros: int
    sparsity: float
    filters: int  # output channels
    filters_zero: int  # output channels whose kernel slice is all zero
    macs: int


def _flat_layers(model: "tf.keras.Model"):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.__class__.__name__ in ("Functional", "Sequential", "Model"):
            yield from _flat_layers(layer)
        else:
            yield layer


def _spatial_out(layer) -> int:
    shape = layer.output_shape
    if isinstance(shape, list):
        shape = shape[0]
    return int(np.prod([d for d in shape[1:-1] if d is not None])) if len(shape) > 2 else 1


def _kernel_macs(layer, kernel: np.ndarray) -> int:
    kind = layer.__class__.__name__
    if kind == "Dense":
        return int(kernel.size)
    return int(kernel.size) * _spatial_out(layer)


def layer_stats(model: "tf.keras.Model") -> list[LayerStats]:
    """Per prunable layer: kernel size, zeros, dead output filters, MACs per image."""
    stats = []
    for layer in _flat_layers(model):
        kind = layer.__class__.__name__
        if kind not in PRUNABLE_LAYERS:
            continue
        weights = layer.get_weights()
        if kind == "SeparableConv2D":
            depthwise, pointwise = weights[0], weights[1]
            macs = _kernel_macs(layer, depthwise) + _kernel_macs(layer, pointwise)
            total, zeros = depthwise.size + pointwise.size, int((depthwise == 0).sum() + (pointwise == 0).sum())
        else:
            kernel = weights[0]
            macs = _kernel_macs(layer, kernel)
            total, zeros = int(kernel.size), int((kernel == 0).sum())
        zero_filters = zero_filter_mask(kind, weights)
        stats.append(LayerStats(
            name=layer.name, kind=kind, weights=int(total), zeros=zeros,
            sparsity=zeros / total if total else 0.0,
            filters=int(zero_filters.size), filters_zero=int(zero_filters.sum()), macs=int(macs),
        ))
    return stats


def model_stats(model: "tf.keras.Model") -> dict:
    """Whole-model counts: params, non-zero params, prunable weights, sparsity, MACs."""
    per_layer = layer_stats(model)
    all_weights = model.get_weights()
    params = int(sum(w.size for w in all_weights))
    nonzero = int(sum(np.count_nonzero(w) for w in all_weights))
    prunable = sum(s.weights for s in per_layer)
    prunable_zeros = sum(s.zeros for s in per_layer)
    return {
        "params": params,
        "params_nonzero": nonzero,
        "prunable_weights": int(prunable),
        "prunable_zeros": int(prunable_zeros),
        "sparsity": prunable_zeros / prunable if prunable else 0.0,
        "macs": int(sum(s.macs for s in per_layer)),
        "layers": [asdict(s) for s in per_layer],
    }
