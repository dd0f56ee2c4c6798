"""The rule table: what shrinking knows about each layer type, one small rule per type.

A rule answers, for one layer call:
- `check`: can its channels be followed and cut? (None, or why not: the layer is then a
  barrier whose input and output channels are all kept);
- `couple`: how its output channels relate to its input channels: `mix` (new channels made
  from all inputs: conv, dense), `identity` (channel c of every input is channel c of the
  output), `concat`, `depthwise` (input c makes outputs c*m .. c*m+m-1), `flatten`;
- `propagate`: which output channels are the same constant at every position, and its value;
- `absorbs` (mixing layers): can a nonzero constant input channel be folded into the bias?
- `resize`: the config edit for the kept output channels; `cut`: the sliced weights.

Adding a layer type is adding one entry to `RULES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeprune.prune.shrink.graph import Call, Tensor


@dataclass(frozen=True)
class Cut:
    """What one layer keeps: input and output channel indices, and the dropped input
    channels as a mask over the source tensor's channels."""

    kept_in: np.ndarray
    kept_out: np.ndarray
    dropped_in: np.ndarray


def _supported(call: Call) -> str | None:
    return None


def _keep_weights(call: Call, cut: Cut) -> list[np.ndarray]:
    return call.weights


def _no_resize(config: dict, cut: Cut, call: Call) -> None:
    return None


Coupling = Literal["mix", "identity", "concat", "depthwise", "flatten"]


@dataclass(frozen=True)
class Rule:
    """How shrinking follows and cuts one layer type (see the module docstring)."""

    couple: Coupling
    propagate: Callable[[Call], None]
    check: Callable[[Call], str | None] = _supported
    absorbs: Callable[[dict], bool] | None = None
    resize: Callable[[dict, Cut, Call], None] = _no_resize
    cut: Callable[[Call, Cut], list[np.ndarray]] = _keep_weights


# ---- checks -------------------------------------------------------------------------------

def _channels_last(call: Call) -> str | None:
    data_format = call.config.get("data_format", "channels_last")
    return None if data_format in (None, "channels_last") else "channels_first data format"


def _conv_check(call: Call) -> str | None:
    if call.kind == "Conv2D" and int(call.config.get("groups", 1)) != 1:
        return "grouped convolution"
    return _channels_last(call)


def _channel_axis(call: Call, axis: Any, name: str) -> str | None:
    axes = list(axis) if isinstance(axis, list | tuple) else [axis]
    return None if len(axes) == 1 and axes[0] in (-1, call.source.rank - 1) else f"{name} not over the channel axis"


def _same_channels(call: Call) -> str | None:
    if any(tensor.channels != call.out.channels for tensor in call.ins):
        return "inputs broadcast over channels"
    return None


def _activation_check(call: Call) -> str | None:
    if call.kind == "Activation" and call.config.get("activation") in ("softmax", "log_softmax"):
        return "softmax mixes channels"
    if call.kind == "Rescaling" and (np.ndim(call.config.get("scale", 1.0)) or np.ndim(call.config.get("offset", 0.0))):
        return "per-channel rescaling"
    if call.kind == "Softmax":
        return "softmax mixes channels"
    return None


# ---- constants ----------------------------------------------------------------------------

def _set_constants(out: Tensor, const: np.ndarray, values: np.ndarray | None) -> None:
    if values is None or values.shape != const.shape:
        const = np.zeros_like(const)  # the layer could not be probed: nothing is known
        values = np.zeros(const.shape)
    out.const = const
    out.value = np.where(const, values, 0.0)


def _all_inputs_constant(call: Call) -> np.ndarray:
    return np.logical_and.reduce([tensor.const for tensor in call.ins])


def _probe_channelwise(call: Call) -> None:
    """Channel c of the output depends on channel c of the inputs only: constant where
    every input is, with the value the layer itself computes from the constants."""
    _set_constants(call.out, _all_inputs_constant(call), call.probe([t.value for t in call.ins]))


def _probe_multiply(call: Call) -> None:
    """A product is constant where every factor is, and zero where any factor is zero."""
    zero = np.logical_or.reduce([tensor.const & (tensor.value == 0) for tensor in call.ins])
    _set_constants(call.out, _all_inputs_constant(call) | zero, call.probe([t.value for t in call.ins]))


def _copy_tiled(call: Call) -> None:
    """Pooling, cropping, flattening: a constant channel stays that constant (a flattened
    tensor holds it at every position, channels innermost)."""
    source = call.source
    repeat = call.out.channels // max(source.channels, 1)
    _set_constants(call.out, np.tile(source.const, repeat), np.tile(source.value, repeat))


def _zero_padding(call: Call) -> None:
    source = call.source
    _set_constants(call.out, source.const & (source.value == 0), np.zeros(source.channels))


def _concatenate(call: Call) -> None:
    _set_constants(call.out, np.concatenate([t.const for t in call.ins]), np.concatenate([t.value for t in call.ins]))


def _activation_of(call: Call, pre: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    function = tf.keras.activations.get(call.config.get("activation", "linear"))
    return np.asarray(function(tf.constant(pre[None], tf.float32)), np.float64)[0]


def _bias(call: Call, channels: int) -> np.ndarray:
    return call.weights[-1].astype(np.float64) if call.config.get("use_bias", True) else np.zeros(channels)


def _mixing_paths(call: Call) -> tuple[np.ndarray, np.ndarray]:
    """(in, out) of a mixing layer: does input channel i reach output filter o at all, and
    the sum of its weights (what a constant input adds to the pre-activation)."""
    weights = call.weights
    if call.kind == "SeparableConv2D":
        depthwise, pointwise = weights[0], weights[1]
        multiplier = depthwise.shape[-1]
        pointwise = pointwise[0, 0].reshape(call.source.channels, multiplier, -1)
        reaches = (np.abs(pointwise) > 0) & (np.abs(depthwise).max(axis=(0, 1)) > 0)[:, :, None]
        return reaches.any(axis=1), np.einsum("im,imo->io", depthwise.sum(axis=(0, 1)), pointwise)
    kernel = weights[0]
    flat = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1])
    return (np.abs(flat) > 0).any(axis=0), flat.sum(axis=0, dtype=np.float64)


def unread_inputs(call: Call) -> np.ndarray:
    """Per input channel of a mixing layer: no weight reads it (its kernel rows are zero)."""
    touches, _ = _mixing_paths(call)
    return ~touches.any(axis=1)


def absorbable(rule: Rule, call: Call, tensor: Tensor) -> np.ndarray:
    """Per channel of `tensor` feeding the mixing `call`: constant and removable without
    changing the output (zero, or foldable into the bias; a layer without one gets one)."""
    foldable = rule.absorbs is not None and rule.absorbs(call.config)
    return tensor.const & ((tensor.value == 0) | foldable)


def _mixing_constants(call: Call) -> None:
    """A filter is constant when it reads nothing but absorbable constant inputs (a zero
    kernel reads nothing: its output is the bias)."""
    touches, contribution = _mixing_paths(call)
    absorbed = absorbable(RULES[call.kind], call, call.source)
    const = ~touches[~absorbed].any(axis=0)
    pre = _bias(call, call.out.channels) + (call.source.value * absorbed) @ contribution
    _set_constants(call.out, const, _activation_of(call, pre))


def _depthwise_constants(call: Call) -> None:
    source, depthwise = call.source, call.weights[0]
    zero_input = source.const & ((source.value == 0) | (call.config.get("padding") == "valid"))
    const = (zero_input[:, None] | (np.abs(depthwise).max(axis=(0, 1)) == 0)).reshape(-1)
    pre = (source.value[:, None] * zero_input[:, None] * depthwise.sum(axis=(0, 1))).reshape(-1)
    _set_constants(call.out, const, _activation_of(call, _bias(call, call.out.channels) + pre))


def _batchnorm_parts(call: Call) -> dict[str, np.ndarray]:
    names = [name for name, present in (("gamma", call.config.get("scale", True)),
                                        ("beta", call.config.get("center", True))) if present]
    parts = dict(zip([*names, "mean", "variance"], call.weights, strict=True))
    channels = call.out.channels
    return {"gamma": parts.get("gamma", np.ones(channels)), "beta": parts.get("beta", np.zeros(channels)),
            "mean": parts["mean"], "variance": parts["variance"]}


def _batchnorm_constants(call: Call) -> None:
    parts = _batchnorm_parts(call)
    scale = parts["gamma"] / np.sqrt(parts["variance"].astype(np.float64) + call.config.get("epsilon", 1e-3))
    const = call.source.const | (parts["gamma"] == 0)
    _set_constants(call.out, const, scale * (call.source.value - parts["mean"]) + parts["beta"])


# ---- config edits and weight cuts ---------------------------------------------------------

def _folds_constants(call: Call, cut: Cut) -> bool:
    """Removed inputs with a nonzero constant value go into the bias (which may be new)."""
    return bool((cut.dropped_in & (call.source.value != 0)).any())


def _resize_filters(key: str) -> Callable[[dict, Cut, Call], None]:
    def resize(config: dict, cut: Cut, call: Call) -> None:
        config[key] = int(cut.kept_out.size)
        config["use_bias"] = bool(config.get("use_bias", True)) or _folds_constants(call, cut)
    return resize


def _cut_mixing(call: Call, cut: Cut) -> list[np.ndarray]:
    """Slice kernel(s) to the kept inputs/outputs; fold removed constant inputs into the bias."""
    weights, kept_in, kept_out = call.weights, cut.kept_in, cut.kept_out
    if call.kind == "SeparableConv2D":
        depthwise, pointwise = weights[0], weights[1]
        multiplier = depthwise.shape[-1]
        expanded = (kept_in[:, None] * multiplier + np.arange(multiplier)).reshape(-1)
        new = [depthwise[:, :, kept_in, :], pointwise[:, :, expanded, :][..., kept_out]]
    else:
        new = [weights[0][..., kept_in, :][..., kept_out]]
    if call.config.get("use_bias", True) or _folds_constants(call, cut):
        _, contribution = _mixing_paths(call)
        folded = np.where(cut.dropped_in, call.source.value, 0.0)
        bias = _bias(call, contribution.shape[1]) + folded @ contribution
        new.append(bias[kept_out].astype(weights[0].dtype))
    return new


def _cut_depthwise(call: Call, cut: Cut) -> list[np.ndarray]:
    return [call.weights[0][:, :, cut.kept_in, :], *(w[cut.kept_out] for w in call.weights[1:])]


def _cut_per_channel(call: Call, cut: Cut) -> list[np.ndarray]:
    """Per-channel weights (BatchNorm, Normalization): keep the kept channels' entries;
    scalars (Normalization's count) stay."""
    return [w[..., cut.kept_out] if w.ndim and w.shape[-1] == call.out.channels else w for w in call.weights]


def _resize_reshape(config: dict, cut: Cut, call: Call) -> None:
    config["target_shape"] = [*config["target_shape"][:-1], int(cut.kept_out.size)]


def _reshape_check(call: Call) -> str | None:
    if call.source.channels != call.out.channels or call.source.channels == 0:
        return "reshape moves the channel axis"
    return None


def _normalization_check(call: Call) -> str | None:
    if call.config.get("mean") is not None or call.config.get("invert"):
        return "normalization with constants in its config"
    return _channel_axis(call, call.config.get("axis", -1), "normalization")


# ---- TFOpLambda: TensorFlow functions called on Keras tensors --------------------------------

ELEMENTWISE_OPS = frozenset({
    "__operators__.add", "__operators__.sub", "__operators__.mul", "__operators__.truediv",
    "math.add", "math.subtract", "math.multiply", "math.truediv", "math.divide", "math.maximum",
    "math.minimum", "math.negative", "math.abs", "math.square", "math.sqrt", "math.rsqrt", "math.exp",
    "math.log", "math.sigmoid", "math.tanh", "math.softplus", "nn.relu", "nn.relu6", "nn.elu",
    "nn.selu", "nn.gelu", "nn.silu", "nn.swish", "nn.leaky_relu", "nn.sigmoid", "nn.tanh",
    "clip_by_value", "identity", "cast", "math.pow",
})
MULTIPLY_OPS = frozenset({"math.multiply", "__operators__.mul"})
REDUCTION_OPS = frozenset({"math.reduce_mean", "math.reduce_max", "math.reduce_min", "math.reduce_sum",
                           "reduce_mean", "reduce_max", "reduce_min", "reduce_sum"})


def _call_operands(call: Call) -> list[Any]:
    import tensorflow as tf

    return [item for item in tf.nest.flatten((call.node.call_args, call.node.call_kwargs))
            if not tf.is_tensor(item) and not isinstance(item, str | bool | type(None))]


def _op_check(call: Call) -> str | None:
    function = call.config.get("function", "")
    if function in REDUCTION_OPS:
        axis = call.node.call_kwargs.get("axis", call.node.call_args[1] if len(call.node.call_args) > 1 else None)
        if axis is None:
            return f"tf.{function} over every axis"
        axes = [int(a) % call.source.rank for a in (axis if isinstance(axis, list | tuple) else [axis])]
        if call.source.rank - 1 in axes or call.out.channels != call.source.channels:
            return f"tf.{function} over the channel axis"
        if any(d is None for d in call.source.shape[1:]):
            return f"tf.{function} over a dimension of unknown size"
        return None
    if function not in ELEMENTWISE_OPS:
        return f"tf.{function} is not known to keep channels apart"
    if any(np.ndim(operand) for operand in _call_operands(call)):
        return f"tf.{function} with a per-channel constant"
    return _same_channels(call)


def multiplies(call: Call) -> bool:
    """Is the call a product of its inputs (a factor that is zero makes the others unused)?"""
    return call.kind == "Multiply" or (call.kind == "TFOpLambda" and call.config.get("function") in MULTIPLY_OPS)


def _op_constants(call: Call) -> None:
    if multiplies(call):
        _probe_multiply(call)
    else:
        _probe_channelwise(call)


def _channelwise(check: Callable[[Call], str | None] = _supported,
                 propagate: Callable[[Call], None] = _probe_channelwise) -> Rule:
    return Rule("identity", propagate, check)


def _mixing(key: str, absorbs: Callable[[dict], bool]) -> Rule:
    return Rule("mix", _mixing_constants, _conv_check, absorbs, _resize_filters(key), _cut_mixing)


ACTIVATIONS = ("ReLU", "Activation", "LeakyReLU", "ELU", "ThresholdedReLU", "Softmax", "Rescaling",
               "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
               "ActivityRegularization")
POOLING = ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Cropping2D",
           "UpSampling2D")
MERGES = ("Add", "Subtract", "Average", "Maximum", "Minimum")

RULES: dict[str, Rule] = {
    # a nonzero constant input folds into the bias only where no zero padding meets it
    "Conv2D": _mixing("filters", lambda c: c.get("padding") == "valid" or tuple(c["kernel_size"]) == (1, 1)),
    "SeparableConv2D": _mixing("filters", lambda c: c.get("padding") == "valid"),
    "Dense": _mixing("units", lambda c: True),
    "DepthwiseConv2D": Rule("depthwise", _depthwise_constants, _conv_check, cut=_cut_depthwise),
    "BatchNormalization": Rule("identity", _batchnorm_constants,
                               lambda call: _channel_axis(call, call.config.get("axis"), "BatchNormalization"),
                               cut=_cut_per_channel),
    "Normalization": Rule("identity", _probe_channelwise, _normalization_check, cut=_cut_per_channel),
    **{kind: _channelwise(_activation_check) for kind in ACTIVATIONS},
    **{kind: _channelwise(_channels_last, _copy_tiled) for kind in POOLING},
    "ZeroPadding2D": _channelwise(_channels_last, _zero_padding),
    **{kind: _channelwise(_same_channels) for kind in MERGES},
    "Multiply": _channelwise(_same_channels, _probe_multiply),
    "Concatenate": Rule("concat", _concatenate,
                        lambda call: _channel_axis(call, call.config.get("axis", -1), "concatenation")),
    "Flatten": Rule("flatten", _copy_tiled, _channels_last),
    "Reshape": Rule("identity", _probe_channelwise, _reshape_check, resize=_resize_reshape),
    "TFOpLambda": _channelwise(_op_check, _op_constants),
}
