"""`shrink_model` as four passes: trace -> group -> decide -> rebuild."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.errors import EdgepruneError, one_line
from edgeprune.modelstats import PRUNABLE_LAYERS, zero_filter_mask
from edgeprune.prune.shrink.graph import Call, Graph, Tensor, TensorId, as_functional, trace
from edgeprune.prune.shrink.rules import RULES, Cut, Rule, absorbable, multiplies, unread_inputs

if TYPE_CHECKING:
    import tensorflow as tf


class _Groups:
    """Union-find over (tensor, channel) nodes."""

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

    def join(self, a: Tensor, a_channels: Any, b: Tensor, b_channels: Any) -> None:
        for channel_a, channel_b in zip(a_channels, b_channels, strict=True):
            self.union(a.offset + int(channel_a), b.offset + int(channel_b))


@dataclass
class _Plan:
    graph: Graph
    rules: dict[str, Rule]  # supported calls -> their rule
    barriers: dict[str, str] = field(default_factory=dict)  # call name -> why its channels stay
    groups: _Groups = field(default_factory=lambda: _Groups(0))
    blocked: dict[int, str] = field(default_factory=dict)  # group root -> why it stays
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def kept(self, tensor: Tensor) -> np.ndarray:
        return np.flatnonzero(~self.removed[tensor.offset:tensor.offset + tensor.channels])

    def block(self, tensor: Tensor, channels: Any, reason: str) -> None:
        for channel in channels:
            self.blocked.setdefault(self.groups.find(tensor.offset + int(channel)), reason)


def _barrier_reason(call: Call) -> str | None:
    """None when a rule can follow the call's channels; else why it is a barrier."""
    if call.kind == "InputLayer":
        return "model input"
    if call.shared:
        return "layer is shared (called more than once)"
    if len(call.outs) != 1:
        return "layer has several outputs"
    if not call.ins:
        return "layer has no tensor input"
    rule = RULES.get(call.kind)
    if rule is None:
        return "layer type not supported by shrinking"
    return rule.check(call)


def _trace_pass(model: "tf.keras.Model") -> _Plan:
    """Trace the graph, find each call's rule (or barrier) and propagate constant channels."""
    plan = _Plan(trace(model), {})
    for call in plan.graph.calls:
        reason = _barrier_reason(call)
        if reason is not None:
            plan.barriers[call.name] = reason
            continue
        plan.rules[call.name] = RULES[call.kind]
        plan.rules[call.name].propagate(call)
    return plan


def _group_pass(plan: _Plan) -> None:
    """Union the (tensor, channel) nodes that must be cut together."""
    plan.groups = groups = _Groups(plan.graph.node_count)
    for call in plan.graph.calls:
        rule = plan.rules.get(call.name)
        if rule is None or rule.couple == "mix":
            continue
        out = call.out
        if rule.couple == "concat":
            start = 0
            for part in call.ins:
                groups.join(part, range(part.channels), out, range(start, start + part.channels))
                start += part.channels
        elif rule.couple == "depthwise":
            multiplier = out.channels // max(call.source.channels, 1)
            outputs = np.arange(out.channels)
            groups.join(call.source, outputs // multiplier, out, outputs)
        elif rule.couple == "flatten":
            features = np.arange(out.channels)
            groups.join(call.source, features % max(call.source.channels, 1), out, features)
        else:  # identity
            for tensor in call.ins:
                groups.join(tensor, range(out.channels), out, range(out.channels))


def _ignored(plan: _Plan, call: Call, tensor: Tensor, unused: dict[TensorId, np.ndarray]) -> np.ndarray:
    """Channels of `tensor` (an input of `call`) that make no difference to `call`'s output."""
    rule = plan.rules.get(call.name)
    out = unused.get(call.outs[0].id) if call.outs else None
    if rule is None or out is None or not tensor.channels:
        return np.zeros(tensor.channels, bool)
    if rule.couple == "mix":
        return unread_inputs(call) if tensor is call.source else np.zeros(tensor.channels, bool)
    if rule.couple == "concat":
        start = sum(part.channels for part in call.ins[:call.ins.index(tensor)])
        return out[start:start + tensor.channels]
    if rule.couple in ("depthwise", "flatten"):
        grouped = out.reshape(tensor.channels, -1) if rule.couple == "depthwise" else out.reshape(-1, tensor.channels).T
        return grouped.all(axis=1)
    ignored = out.copy()
    if multiplies(call):  # times a constant zero: this factor does not matter
        for other in call.ins:
            if other is not tensor:
                ignored |= other.const & (other.value == 0)
    return ignored


def _unused_pass(plan: _Plan) -> dict[TensorId, np.ndarray]:
    """Per tensor, the channels that no consumer needs (backwards over the graph): a
    squeeze-excite gate channel whose feature channel is zero, a channel read by no weight.
    Such a channel may be live and still be cut with its group."""
    unused: dict[TensorId, np.ndarray] = {}
    outputs = set(plan.graph.outputs)
    for call in reversed(plan.graph.calls):
        for tensor in call.outs:
            if tensor.id in outputs or not tensor.consumers:
                unused[tensor.id] = np.zeros(tensor.channels, bool)
                continue
            unused[tensor.id] = np.logical_and.reduce([_ignored(plan, consumer, tensor, unused)
                                                       for consumer in tensor.consumers])
    return unused


def _pinned(plan: _Plan) -> dict[TensorId, str]:
    """Tensors none of whose channels may go, with why: around barriers, model inputs/outputs."""
    pinned: dict[TensorId, str] = {}
    for call in plan.graph.calls:
        if call.name in plan.barriers:
            for tensor in call.ins + call.outs:
                pinned.setdefault(tensor.id, f"{call.name} ({call.kind}): {plan.barriers[call.name]}")
    for tensor_id in plan.graph.inputs:
        pinned.setdefault(tensor_id, "model input")
    for tensor_id in plan.graph.outputs:
        pinned.setdefault(tensor_id, "model output")
    return pinned


def _block_unabsorbable(plan: _Plan, tensor: Tensor) -> None:
    """Constant channels that a mixing consumer cannot fold exactly stay."""
    for consumer in tensor.consumers:
        rule = plan.rules.get(consumer.name)
        if rule is None or rule.couple != "mix":
            continue
        bad = np.flatnonzero(tensor.const & ~absorbable(rule, consumer, tensor))
        config = consumer.config
        plan.block(tensor, bad, f"constant {tensor.id[0]} channel feeds {consumer.name} ({consumer.kind}, "
                                f"{config.get('kernel_size', (1, 1))} kernel, "
                                f"{config.get('padding', 'no')} padding): cannot be folded exactly")


def _decide_pass(plan: _Plan) -> None:
    """A group goes only if every member is constant (or unused) and every mixing consumer
    absorbs it."""
    graph = plan.graph
    pinned = _pinned(plan)
    unused = _unused_pass(plan)
    for tensor in graph.tensors.values():
        plan.block(tensor, np.flatnonzero(~tensor.const & ~unused[tensor.id]),
                   f"channel is live in {tensor.id[0]} (coupled through a residual Add, a Concatenate "
                   "or a depthwise conv)")
        if tensor.id in pinned:
            plan.block(tensor, range(tensor.channels), pinned[tensor.id])
        _block_unabsorbable(plan, tensor)

    roots = np.array([plan.groups.find(node) for node in range(graph.node_count)], dtype=int)
    plan.removed = ~np.isin(roots, list(plan.blocked)) if plan.blocked else np.ones(graph.node_count, bool)
    # Keep at least one channel in every tensor (a layer needs one filter).
    for tensor in graph.tensors.values():
        members = plan.removed[tensor.offset:tensor.offset + tensor.channels]
        if tensor.channels and members.all():
            root = roots[tensor.offset]
            plan.blocked[root] = f"last channel of {tensor.id[0]}"
            plan.removed[roots == root] = False


def _cut(plan: _Plan, call: Call) -> Cut:
    source = call.source
    return Cut(plan.kept(source), plan.kept(call.out), plan.removed[source.offset:source.offset + source.channels])


def _rebuild_pass(plan: _Plan) -> "tf.keras.Model":
    """Edit the config of every cut layer, rebuild the model, then set the sliced weights."""
    import tensorflow as tf

    new_config = copy.deepcopy(plan.graph.config)
    entries = {entry["name"]: entry for entry in new_config["layers"]}
    for call in plan.graph.calls:
        if call.name in plan.rules:
            plan.rules[call.name].resize(entries[call.name]["config"], _cut(plan, call), call)
    try:
        shrunk = tf.keras.Model.from_config(new_config)
    except (ValueError, TypeError) as error:
        raise EdgepruneError(f"cannot rebuild the model for shrinking: {one_line(error)}") from error
    for call in plan.graph.calls:
        if not call.weights:
            continue
        new = plan.rules[call.name].cut(call, _cut(plan, call)) if call.name in plan.rules else call.weights
        try:
            shrunk.get_layer(call.name).set_weights(new)
        except ValueError as error:
            raise EdgepruneError(f"cannot shrink {call.name} ({call.kind}): "
                                 f"{one_line(error)}") from error
    return shrunk


def _report(plan: _Plan) -> tuple[list[dict], list[dict]]:
    """Filters before/kept per prunable layer, and zero filters that had to stay, with why."""
    layers, skipped = [], []
    for call in plan.graph.calls:
        if call.kind not in PRUNABLE_LAYERS or not call.weights or len(call.outs) != 1:
            continue
        zero = zero_filter_mask(call.kind, call.weights)
        kept_out = plan.kept(call.out)
        layers.append({"name": call.name, "kind": call.kind, "filters": int(call.out.channels),
                       "filters_kept": int(kept_out.size), "filters_zero": int(zero.sum())})
        still_zero = [int(c) for c in kept_out if zero[c]]
        if still_zero and call.name not in plan.barriers:
            reasons = sorted({plan.blocked.get(plan.groups.find(call.out.offset + c), "kept") for c in still_zero})
            skipped.append({"layer": call.name, "kind": call.kind, "zero_filters_kept": len(still_zero),
                            "reason": "; ".join(reasons)})
    for call in plan.graph.calls:
        if call.name in plan.barriers and call.kind != "InputLayer":
            skipped.append({"layer": call.name, "kind": call.kind, "zero_filters_kept": None,
                            "reason": f"not shrunk: {plan.barriers[call.name]}; channels through it are kept"})
    return layers, skipped


def shrink_model(masked_model: "tf.keras.Model") -> tuple["tf.keras.Model", dict]:
    """Rebuild `masked_model` without its dead filters; returns the smaller model and a record
    of filters before/kept per layer and of zero filters that had to stay, with the reason."""
    model = as_functional(masked_model)
    plan = _trace_pass(model)
    _group_pass(plan)
    _decide_pass(plan)
    shrunk = _rebuild_pass(plan)
    layers, skipped = _report(plan)
    info = {
        "params_before": int(model.count_params()),
        "params_after": int(shrunk.count_params()),
        "filters_before": int(sum(item["filters"] for item in layers)),
        "filters_after": int(sum(item["filters_kept"] for item in layers)),
        "layers": layers,
        "skipped": skipped,
    }
    return shrunk, info
