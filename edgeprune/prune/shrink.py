"""Physically remove zeroed filters from a filter-pruned Keras model (model surgery).

NNCF and other filter pruners only *mask*: the pruned filters stay in the graph as zeros,
so a masked model is as large and nearly as slow as the base. Shrinking rebuilds the
functional graph from its config with fewer filters and sliced weights.

Torch-Pruning's three questions, kept apart:
- *What must be cut together.* Every (tensor, channel) pair is a node; layers that map
  channel c to channel c (BatchNorm, activations, pooling, depthwise convs, both sides of an
  Add, the parts of a Concatenate at their offsets, Flatten) join their nodes into one
  group. A group is cut as a whole or not at all, so a residual channel goes only when it
  is dead in every branch of the Add.
- *Which channels.* A channel is dead when it is the same constant at every position: a
  conv/dense filter whose kernel is all zero (its value is the bias), carried through
  BatchNorm (or made constant by gamma = 0), activations and pooling. A group is cut only
  when every member is constant and every consumer that mixes channels can absorb the
  constant exactly: zero needs nothing; a nonzero constant is folded into the consumer's
  bias when the consumer is a Dense layer or a conv without spatial padding effects (1x1
  or `valid`) that has a bias. Otherwise the channel is kept and the reason recorded.
- *How to cut.* One slice rule per layer type (`_new_weights`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgeprune.errors import EdgepruneError

if TYPE_CHECKING:
    import tensorflow as tf

MIXING = ("Conv2D", "Dense", "SeparableConv2D")
ELEMENTWISE = ("ReLU", "Activation", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout",
               "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Rescaling")
POOLING = ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
           "Cropping2D", "UpSampling2D")
MERGING = ("Add", "Average", "Maximum", "Minimum")
CHANNEL_MIXING_ACTIVATIONS = ("softmax", "log_softmax")

TensorId = tuple[str, int, int]


class _Groups:
    """Union-find over (tensor, channel) nodes; each root carries the group's fate."""

    def __init__(self, size: int) -> None:
        self.parent = np.arange(size)

    def find(self, node: int) -> int:
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return int(root)

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[root_b] = root_a


@dataclass
class _Tensor:
    channels: int
    const: np.ndarray  # bool per channel: the same value at every position
    value: np.ndarray  # that value (float64), 0 where not constant
    offset: int = 0  # first node id in the union-find
    rank: int = 2  # rank of the tensor, batch included
    consumers: list[str] = field(default_factory=list)


def _is_channels_last(config: dict) -> bool:
    return config.get("data_format", "channels_last") in (None, "channels_last")


def _spatially_foldable(layer_kind: str, config: dict) -> bool:
    """Can a constant input channel be folded into the bias exactly? Needs no zero padding
    that would mix the constant with zeros at the borders."""
    if layer_kind == "Dense":
        return True
    if config.get("padding") == "valid":
        return True
    return tuple(config.get("kernel_size", (1, 1))) == (1, 1) and layer_kind == "Conv2D"


def _activation(name) -> callable:
    import tensorflow as tf

    function = tf.keras.activations.get(name)
    return lambda values: np.asarray(function(tf.constant(values[None], tf.float32)))[0].astype(np.float64)


def _last_axis(axis, rank: int) -> bool:
    axes = axis if isinstance(axis, list | tuple) else [axis]
    return len(axes) == 1 and axes[0] in (-1, rank - 1)


def _as_functional(model):
    import tensorflow as tf

    if not isinstance(model, tf.keras.Model):
        raise EdgepruneError(f"expected a Keras model, got {type(model).__name__}")
    if isinstance(model, tf.keras.Sequential):
        if not model.built or not model.inputs:
            raise EdgepruneError("cannot shrink a Sequential model that has not been built with an input shape")
        return tf.keras.Model(model.inputs, model.outputs, name=model.name)
    if not getattr(model, "_is_graph_network", False):
        raise EdgepruneError(f"cannot shrink {type(model).__name__}: a subclassed model has no layer graph "
                             "to rebuild; use the functional API")
    return model


def shrink_model(masked_model: "tf.keras.Model") -> tuple["tf.keras.Model", dict]:
    """Rebuild `masked_model` without its dead filters; returns the smaller model and a record
    of filters before/kept per layer and of zero filters that had to stay, with the reason."""
    import tensorflow as tf

    model = _as_functional(masked_model)
    config = model.get_config()
    layer_configs = config["layers"]
    by_name = {entry["name"]: entry for entry in layer_configs}
    layers = {entry["name"]: model.get_layer(entry["name"]) for entry in layer_configs}
    weights = {name: layer.get_weights() for name, layer in layers.items()}
    model_inputs = {tuple(ref) for ref in config["input_layers"]}
    model_outputs = {tuple(ref) for ref in config["output_layers"]}

    def inputs_of(name: str) -> list[TensorId]:
        nodes = by_name[name]["inbound_nodes"]
        return [(ref[0], ref[1], ref[2]) for ref in nodes[0]] if nodes else []

    def output_shapes(name: str) -> list[tuple]:
        layer = layers[name]
        shape = layer.get_output_shape_at(0) if layer.inbound_nodes else layer.output_shape
        if isinstance(shape, list):
            return [tuple(s) for s in shape]
        return [tuple(shape)]

    # Pass 1: tensors, channel counts and per-channel constants, in topological order.
    tensors: dict[TensorId, _Tensor] = {}
    pinned: dict[TensorId, str] = {}  # tensor -> why none of its channels may go
    unsupported: list[dict] = []
    node_count = 0
    for entry in layer_configs:
        name, kind, layer_config = entry["name"], entry["class_name"], entry["config"]
        shared = len(entry["inbound_nodes"]) > 1
        ins = inputs_of(name)
        for tensor_id in ins:
            if tensor_id not in tensors:
                raise EdgepruneError(f"cannot shrink: layer {name} is listed before its input {tensor_id[0]}")
            tensors[tensor_id].consumers.append(name)
        outs = [(name, 0, index) for index in range(len(output_shapes(name)))]
        for tensor_id, shape in zip(outs, output_shapes(name), strict=True):
            channels = int(shape[-1]) if shape and shape[-1] is not None else 0
            tensors[tensor_id] = _Tensor(channels, np.zeros(channels, bool), np.zeros(channels),
                                         offset=node_count, rank=max(2, len(shape)))
            node_count += channels
        reason = _unsupported_reason(kind, layer_config, ins, outs, tensors, shared)
        if reason is not None:
            for tensor_id in ins + outs:
                pinned.setdefault(tensor_id, f"{name} ({kind}): {reason}")
            if kind != "InputLayer":
                unsupported.append({"layer": name, "kind": kind, "reason": reason})
            continue
        _propagate_constants(kind, layer_config, weights[name], layers[name], ins, outs[0], tensors)

    unsupported_names = {item["layer"] for item in unsupported}
    for tensor_id in model_inputs:
        pinned.setdefault(tensor_id, "model input")
    for tensor_id in model_outputs:
        pinned.setdefault(tensor_id, "model output")

    # Pass 2: groups of coupled channels.
    groups = _Groups(node_count)
    for entry in layer_configs:
        name, kind, layer_config = entry["name"], entry["class_name"], entry["config"]
        ins = inputs_of(name)
        out = (name, 0, 0)
        if kind in MIXING or kind == "InputLayer" or name in unsupported_names:
            continue
        source = tensors[ins[0]]
        target = tensors[out]
        if kind == "Concatenate":
            start = 0
            for tensor_id in ins:
                part = tensors[tensor_id]
                for channel in range(part.channels):
                    groups.union(part.offset + channel, target.offset + start + channel)
                start += part.channels
        elif kind == "DepthwiseConv2D":
            multiplier = int(layer_config.get("depth_multiplier", 1))
            for channel in range(source.channels):
                for j in range(multiplier):
                    groups.union(source.offset + channel, target.offset + channel * multiplier + j)
        elif kind == "Flatten" and target.channels != source.channels:
            for feature in range(target.channels):
                groups.union(source.offset + feature % source.channels, target.offset + feature)
        else:  # one-to-one: BN, activations, pooling, merges
            for tensor_id in ins:
                for channel in range(target.channels):
                    groups.union(tensors[tensor_id].offset + channel, target.offset + channel)

    # Pass 3: a group goes only if every member is constant and every consumer absorbs it.
    blocked: dict[int, str] = {}

    def block(tensor: _Tensor, channels, reason: str) -> None:
        for channel in channels:
            blocked.setdefault(groups.find(tensor.offset + int(channel)), reason)

    for tensor_id, tensor in tensors.items():
        live = np.flatnonzero(~tensor.const)
        block(tensor, live, f"channel is live in {tensor_id[0]} (coupled through a residual Add, "
                            "a Concatenate or a depthwise conv)")
        if tensor_id in pinned:
            block(tensor, range(tensor.channels), pinned[tensor_id])
        for consumer in tensor.consumers:
            kind, layer_config = by_name[consumer]["class_name"], by_name[consumer]["config"]
            if kind not in MIXING or consumer in unsupported_names:
                continue
            absorbable = _absorbable(kind, layer_config, tensor)
            bad = np.flatnonzero(tensor.const & ~absorbable)
            block(tensor, bad, f"constant {tensor_id[0]} channel feeds {consumer} ({kind}, "
                               f"{layer_config.get('kernel_size', (1, 1))} kernel, "
                               f"{layer_config.get('padding', 'no')} padding): cannot be folded exactly")

    removed = np.zeros(node_count, bool)
    for tensor in tensors.values():
        for channel in range(tensor.channels):
            root = groups.find(tensor.offset + channel)
            removed[tensor.offset + channel] = root not in blocked
    # Keep at least one channel in every tensor (a layer needs one filter).
    changed = True
    while changed:
        changed = False
        for tensor_id, tensor in tensors.items():
            if tensor.channels and removed[tensor.offset:tensor.offset + tensor.channels].all():
                root = groups.find(tensor.offset)
                blocked[root] = f"last channel of {tensor_id[0]}"
                members = [n for n in range(node_count) if groups.find(n) == root]
                removed[members] = False
                changed = True

    def kept(tensor_id: TensorId) -> np.ndarray:
        tensor = tensors[tensor_id]
        return np.flatnonzero(~removed[tensor.offset:tensor.offset + tensor.channels])

    # Pass 4: rebuild from the config with fewer filters, then slice the weights.
    new_config = copy.deepcopy(config)
    for entry in new_config["layers"]:
        name, kind = entry["name"], entry["class_name"]
        if kind not in MIXING or name in unsupported_names:
            continue
        entry["config"]["units" if kind == "Dense" else "filters"] = int(len(kept((name, 0, 0))))
        source = tensors[inputs_of(name)[0]]
        dropped = removed[source.offset:source.offset + source.channels]
        if (dropped & (source.value != 0)).any():
            entry["config"]["use_bias"] = True  # a removed nonzero constant is folded here
    try:
        shrunk = tf.keras.Model.from_config(new_config)
    except (ValueError, TypeError) as error:
        raise EdgepruneError(f"cannot rebuild the model for shrinking: {str(error).splitlines()[0]}") from error

    report_layers, skipped = [], []
    for entry in layer_configs:
        name, kind = entry["name"], entry["class_name"]
        ins, out = inputs_of(name), (name, 0, 0)
        if kind in ("InputLayer",) or not weights[name]:
            continue
        if name in unsupported_names:
            new = weights[name]
        else:
            kept_in = kept(ins[0]) if ins else None
            new = _new_weights(kind, entry["config"], weights[name], tensors[ins[0]], kept_in,
                               kept(out), removed, shrunk.get_layer(name).get_config().get("use_bias", False))
        shrunk.get_layer(name).set_weights(new)
        if kind in MIXING or kind == "DepthwiseConv2D":
            out_tensor = tensors[out]
            zero = _zero_filters(kind, weights[name])
            kept_out = kept(out)
            still_zero = [int(c) for c in kept_out if zero[c]]
            report_layers.append({"name": name, "kind": kind, "filters": int(out_tensor.channels),
                                  "filters_kept": int(len(kept_out)), "filters_zero": int(zero.sum())})
            if still_zero:
                reasons = sorted({blocked.get(groups.find(out_tensor.offset + c), "kept") for c in still_zero})
                skipped.append({"layer": name, "kind": kind, "zero_filters_kept": len(still_zero),
                                "reason": "; ".join(reasons)})
    for item in unsupported:
        skipped.append({"layer": item["layer"], "kind": item["kind"], "zero_filters_kept": None,
                        "reason": f"not shrunk: {item['reason']}; channels through it are kept"})
    info = {
        "params_before": int(model.count_params()),
        "params_after": int(shrunk.count_params()),
        "filters_before": int(sum(item["filters"] for item in report_layers)),
        "filters_after": int(sum(item["filters_kept"] for item in report_layers)),
        "layers": report_layers,
        "skipped": skipped,
    }
    return shrunk, info


def _unsupported_reason(kind: str, config: dict, ins: list[TensorId], outs: list[TensorId],
                        tensors: dict[TensorId, _Tensor], shared: bool) -> str | None:
    """None when the layer's channels can be followed and cut; else why not."""
    if kind == "InputLayer":
        return "model input"
    if shared:
        return "layer is shared (called more than once)"
    if len(outs) != 1:
        return "layer has several outputs"
    out = tensors[outs[0]]
    in_channels = [tensors[t].channels for t in ins]
    if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
        if not _is_channels_last(config):
            return "channels_first data format"
        if kind == "Conv2D" and int(config.get("groups", 1)) != 1:
            return "grouped convolution"
        return None
    if kind == "Dense":
        return None
    if kind == "BatchNormalization":
        return None if config.get("axis") in (-1, [-1], 3, [3]) or _last_axis(config.get("axis"), 4) else \
            "BatchNormalization not over the channel axis"
    if kind in ELEMENTWISE:
        if kind == "Activation" and config.get("activation") in CHANNEL_MIXING_ACTIVATIONS:
            return "softmax mixes channels"
        if kind == "Rescaling" and (np.ndim(config.get("scale", 1.0)) or np.ndim(config.get("offset", 0.0))):
            return "per-channel rescaling"
        return None
    if kind in POOLING or kind == "ZeroPadding2D":
        return None if _is_channels_last(config) else "channels_first data format"
    if kind in MERGING:
        if len(set(in_channels)) != 1 or in_channels[0] != out.channels:
            return "inputs broadcast over channels"
        return None
    if kind == "Concatenate":
        return None if config.get("axis") in (-1,) else "concatenation not over the channel axis"
    if kind == "Flatten":
        return None
    return "layer type not supported by shrinking"


def _propagate_constants(kind: str, config: dict, layer_weights: list[np.ndarray], layer,
                         ins: list[TensorId], out_id: TensorId, tensors: dict[TensorId, _Tensor]) -> None:
    out = tensors[out_id]
    source = tensors[ins[0]] if ins else None
    if kind in ("Conv2D", "Dense", "SeparableConv2D"):
        absorbable = _absorbable(kind, config, source)
        kernel = layer_weights[1] if kind == "SeparableConv2D" else layer_weights[0]
        use_bias = config.get("use_bias", True)
        bias = layer_weights[-1].astype(np.float64) if use_bias else np.zeros(out.channels)
        if kind == "SeparableConv2D":
            depthwise = layer_weights[0]
            multiplier = depthwise.shape[-1]
            # effective per (input channel, output filter) weight sum through the depthwise part
            dw_sums = depthwise.sum(axis=(0, 1))  # (in, m)
            pw = kernel[0, 0].reshape(source.channels, multiplier, out.channels)
            dw_nonzero = np.abs(depthwise).max(axis=(0, 1)) > 0  # (in, m)
            reaches = (np.abs(pw) > 0) & dw_nonzero[:, :, None]
            touches = reaches.any(axis=1)  # (in, out)
            contribution = np.einsum("im,imo->io", dw_sums, pw)
        else:
            flat = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1])
            touches = (np.abs(flat) > 0).any(axis=0)  # (in, out)
            contribution = flat.sum(axis=0)
        const = ~touches[~absorbable].any(axis=0)
        pre = bias + (source.value * absorbable) @ contribution
        out.const = const
        out.value = np.where(const, _activation(config.get("activation", "linear"))(pre), 0.0)
    elif kind == "DepthwiseConv2D":
        depthwise = layer_weights[0]
        multiplier = depthwise.shape[-1]
        bias = layer_weights[1].astype(np.float64) if config.get("use_bias", True) else np.zeros(out.channels)
        zero_input = source.const & ((source.value == 0) | (config.get("padding") == "valid"))
        kernel_zero = np.abs(depthwise).max(axis=(0, 1)) == 0  # (in, m)
        const = (zero_input[:, None] | kernel_zero).reshape(-1)
        pre = bias + (source.value[:, None] * zero_input[:, None] * depthwise.sum(axis=(0, 1))).reshape(-1)
        out.const = const
        out.value = np.where(const, _activation(config.get("activation", "linear"))(pre), 0.0)
    elif kind == "BatchNormalization":
        index = 0
        gamma = layer_weights[index] if config.get("scale", True) else np.ones(out.channels)
        index += 1 if config.get("scale", True) else 0
        beta = layer_weights[index] if config.get("center", True) else np.zeros(out.channels)
        index += 1 if config.get("center", True) else 0
        mean, variance = layer_weights[index], layer_weights[index + 1]
        scale = gamma / np.sqrt(variance.astype(np.float64) + config.get("epsilon", 1e-3))
        out.const = source.const | (gamma == 0)
        out.value = np.where(out.const, scale * (source.value - mean) + beta, 0.0)
    elif kind in ELEMENTWISE:
        import tensorflow as tf

        probe = source.value.reshape((1,) * (source.rank - 1) + (-1,))
        values = np.asarray(layer(tf.constant(probe, tf.float32), training=False)).reshape(-1)
        out.const = source.const.copy()
        out.value = np.where(out.const, values.astype(np.float64), 0.0)
    elif kind in POOLING or kind == "Flatten":
        repeat = out.channels // max(source.channels, 1)
        out.const = np.tile(source.const, repeat)
        out.value = np.tile(source.value, repeat)
    elif kind == "ZeroPadding2D":
        out.const = source.const & (source.value == 0)
        out.value = np.zeros(out.channels)
    elif kind in MERGING:
        parts = [tensors[t] for t in ins]
        out.const = np.logical_and.reduce([p.const for p in parts])
        stacked = np.stack([p.value for p in parts])
        combine = {"Add": stacked.sum(0), "Average": stacked.mean(0),
                   "Maximum": stacked.max(0), "Minimum": stacked.min(0)}[kind]
        out.value = np.where(out.const, combine, 0.0)
    elif kind == "Concatenate":
        out.const = np.concatenate([tensors[t].const for t in ins])
        out.value = np.concatenate([tensors[t].value for t in ins])


def _absorbable(kind: str, config: dict, tensor: _Tensor) -> np.ndarray:
    """Per input channel: constant and removable from this consumer without changing its
    output (zero, or foldable into its bias; a layer without one gets a bias)."""
    foldable = _spatially_foldable(kind, config)
    return tensor.const & ((tensor.value == 0) | foldable)


def _zero_filters(kind: str, layer_weights: list[np.ndarray]) -> np.ndarray:
    if kind == "DepthwiseConv2D":
        kernel = layer_weights[0]
        return (np.abs(kernel).max(axis=(0, 1)) == 0).reshape(-1)
    kernel = layer_weights[1] if kind == "SeparableConv2D" else layer_weights[0]
    return np.abs(kernel.reshape(-1, kernel.shape[-1])).max(axis=0) == 0


def _new_weights(kind: str, config: dict, layer_weights: list[np.ndarray], source: _Tensor,
                 kept_in: np.ndarray, kept_out: np.ndarray, removed: np.ndarray,
                 new_use_bias: bool) -> list[np.ndarray]:
    """Slice one layer's weights to the kept input/output channels; fold removed constant
    inputs into the bias (`new_use_bias`: the rebuilt layer has one, possibly added)."""
    dropped_in = removed[source.offset:source.offset + source.channels]
    folded = np.where(dropped_in, source.value, 0.0)
    had_bias = config.get("use_bias", True)
    if kind in ("Conv2D", "Dense", "SeparableConv2D"):
        if kind == "SeparableConv2D":
            depthwise, kernel = layer_weights[0], layer_weights[1]
            multiplier = depthwise.shape[-1]
            expanded = (kept_in[:, None] * multiplier + np.arange(multiplier)).reshape(-1)
            new = [depthwise[:, :, kept_in, :], kernel[:, :, expanded, :][..., kept_out]]
            pw = kernel[0, 0].reshape(source.channels, multiplier, -1)
            contribution = np.einsum("im,imo->io", depthwise.sum(axis=(0, 1)), pw)
        else:
            kernel = layer_weights[0]
            new = [kernel[..., kept_in, :][..., kept_out]]
            contribution = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]).sum(axis=0)
        if new_use_bias:
            bias = layer_weights[-1].astype(np.float64) if had_bias else np.zeros(kernel.shape[-1])
            bias = bias + folded @ contribution
            new.append(bias[kept_out].astype(kernel.dtype))
        return new
    if kind == "DepthwiseConv2D":
        new = [layer_weights[0][:, :, kept_in, :]]
        if config.get("use_bias", True):
            new.append(layer_weights[1][kept_out])
        return new
    if kind == "BatchNormalization":
        return [w[kept_out] for w in layer_weights]
    return layer_weights
