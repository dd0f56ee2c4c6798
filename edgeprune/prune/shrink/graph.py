"""Trace pass: the functional graph as layer calls and channel-carrying tensors.

Inputs are read from Keras' own node objects (`node.keras_inputs`, `node.call_args`), not
from the serialized `inbound_nodes` config, whose entries differ by layer type (a
`TFOpLambda` entry carries its keyword arguments, and tensors nested in them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.errors import EdgepruneError

if TYPE_CHECKING:
    import tensorflow as tf

TensorId = tuple[str, int, int]  # (layer name, node index, output index), as Keras' history


@dataclass
class Tensor:
    """One tensor of the graph, its channels (last axis) and what is known about them."""

    id: TensorId
    shape: tuple[int | None, ...]  # batch included
    offset: int  # first channel's node id in the union-find
    const: np.ndarray  # bool per channel: the same value at every position
    value: np.ndarray  # that value (float64), 0 where not constant
    consumers: list[Call] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return int(self.const.size)

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class Call:
    """One call of a layer in the graph."""

    name: str
    kind: str
    layer: Any  # tf.keras.layers.Layer
    config: dict  # the layer's entry config in the model config (rebuilt from it)
    weights: list[np.ndarray]
    ins: list[Tensor]
    outs: list[Tensor]
    node: Any  # the keras Node: call arguments with tensors in place
    shared: bool

    @property
    def out(self) -> Tensor:
        return self.outs[0]

    @property
    def source(self) -> Tensor:
        return self.ins[0]

    def probe(self, values: list[np.ndarray]) -> np.ndarray | None:
        """Call the layer on tensors that hold `values[i]` (one value per channel) at every
        position of input i; returns the output's values at its first position, or None
        when the layer cannot be called that way."""
        import tensorflow as tf

        constants = {}
        for tensor, channel_values in zip(self.ins, values, strict=True):
            shape = [1, *(d or 1 for d in tensor.shape[1:])]
            constants[tensor.id] = tf.constant(np.broadcast_to(channel_values, shape), tf.float32)

        def substitute(item: Any) -> Any:
            history = getattr(item, "_keras_history", None)
            if history is None or not tf.is_tensor(item):
                return item
            return constants[_tensor_id(item)]

        args = tf.nest.map_structure(substitute, self.node.call_args)
        kwargs = tf.nest.map_structure(substitute, self.node.call_kwargs)
        try:
            result = self.layer(*args, **kwargs)
        except (ValueError, TypeError, tf.errors.OpError):
            return None
        output = np.asarray(result, np.float64)
        return output[(0,) * (output.ndim - 1)] if output.ndim > 1 else output


def _tensor_id(keras_tensor: Any) -> TensorId:
    layer, node_index, tensor_index = keras_tensor._keras_history
    return (layer.name, int(node_index), int(tensor_index))


def as_functional(model: Any) -> Any:
    """The model as a functional graph: Sequential models are wrapped, subclassed refused."""
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


@dataclass
class Graph:
    config: dict  # model.get_config()
    calls: list[Call]  # topological order (the config's)
    tensors: dict[TensorId, Tensor]
    inputs: list[TensorId]
    outputs: list[TensorId]

    @property
    def node_count(self) -> int:
        return sum(tensor.channels for tensor in self.tensors.values())


def trace(model: "tf.keras.Model") -> Graph:
    """Every layer call of `model` with its input/output tensors, in topological order."""
    config = model.get_config()
    network_nodes: set[str] = set(getattr(model, "_network_nodes", ()))
    tensors: dict[TensorId, Tensor] = {}
    calls: list[Call] = []
    offset = 0
    for entry in config["layers"]:
        layer = model.get_layer(entry["name"])
        nodes = [(index, node) for index, node in enumerate(layer.inbound_nodes)
                 if f"{layer.name}_ib-{index}" in network_nodes]
        if not nodes:
            raise EdgepruneError(f"cannot shrink: layer {layer.name} is not called in the model's graph")
        node_index, node = nodes[0]
        ins = []
        for keras_tensor in node.keras_inputs:
            tensor_id = _tensor_id(keras_tensor)
            if tensor_id not in tensors:
                raise EdgepruneError(f"cannot shrink: layer {layer.name} is listed before its input {tensor_id[0]}")
            ins.append(tensors[tensor_id])
        outs = []
        for index, keras_tensor in enumerate(node.outputs if isinstance(node.outputs, list | tuple)
                                             else [node.outputs]):
            shape = tuple(keras_tensor.shape)
            channels = int(shape[-1]) if len(shape) > 1 and shape[-1] is not None else 0
            tensor = Tensor((layer.name, node_index, index), shape, offset,
                            np.zeros(channels, bool), np.zeros(channels))
            tensors[tensor.id] = tensor
            outs.append(tensor)
            offset += channels
        call = Call(layer.name, entry["class_name"], layer, entry["config"], layer.get_weights(), ins, outs,
                    node, shared=len(nodes) > 1)
        for tensor in ins:
            tensor.consumers.append(call)
        calls.append(call)
    model_inputs = [_tensor_id(t) for t in model.inputs]
    model_outputs = [_tensor_id(t) for t in model.outputs]
    return Graph(config, calls, tensors, model_inputs, model_outputs)
