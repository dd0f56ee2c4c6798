"""Keras 3 model files (`.keras` archives and Keras-3 `.h5`) read without running their code.

Keras 2.15 cannot read what today's TensorFlow writes. This module reads the file with
zipfile / h5py / json only, translates the Keras 3 model config into a Keras 2.15 one, rebuilds
it from built-in Keras classes (no `custom_objects`) and sets the weights layer by layer, checking
each variable's shape (and, in `.h5`, its name) against the rebuilt layer.

What is translated (each case is listed in `Translation.notes`):
- `InputLayer`: `batch_shape` -> `batch_input_shape`; `optional` dropped.
- dtype policies stored as `{"class_name": "DTypePolicy", ...}` -> their name (`"float32"`).
- `module`, `registered_name`, `build_config`, `shared_object_id` dropped; arguments the Keras 2
  class does not take are dropped when they hold their neutral value (None / False / empty),
  otherwise the model is refused naming the layer and argument.
- inbound nodes `{"args": [<__keras_tensor__ ...>], "kwargs": {}}` -> Keras 2 node lists.
- Sequential models become functional ones (same layers, names and weights); nested models
  (a backbone inside a Sequential) are translated on their own, weights included.
- activations Keras 2 lacks or computes differently are rebuilt from built-in layers:
  `relu6` -> ReLU(6); `hard_sigmoid` (Keras 3: relu6(x + 3) / 6, not Keras 2's 0.2x + 0.5)
  -> Rescaling(1/6, 0.5) + ReLU(1); `hard_silu` / `hard_swish` -> x * hard_sigmoid(x) with a
  Multiply; `silu` -> `swish`; `leaky_relu` -> LeakyReLU(0.2).
- Keras 3 operation nodes from arithmetic on Keras tensors (`x + 3.0`, `x * (1/6)`, `a * b`,
  as in keras.applications' MobileNetV3) -> Rescaling (tensor and number) or the Add / Subtract /
  Multiply layers (two tensors).
- `Lambda` (bytecode) is refused unless `allow_unsafe`, then translated to Keras 2's format.
Anything else that needs code (custom or registered classes, other operations) is refused in
one line.
"""

from __future__ import annotations

import copy
import inspect
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.errors import EdgepruneError, one_line

if TYPE_CHECKING:
    import tensorflow as tf

KERAS_TENSOR = "__keras_tensor__"
# A .keras archive's members; anything bigger than this is not a model we should unpack.
ARCHIVE_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
MAX_MEMBER_BYTES = 4 << 30
CONTAINERS = {"Functional", "Model", "Sequential"}
NEUTRAL: tuple[Any, ...] = (None, False, [], {}, "")
# Keras 3 activation names -> Keras 2 names computing the same function.
SAME_ACTIVATIONS = {"linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus",
                    "softsign", "exponential", "swish", "mish", "gelu"}
RENAMED_ACTIVATIONS = {"silu": "swish"}
# Activations rebuilt from built-in layers (Keras 2 lacks them or computes them differently).
EXPANDED_ACTIVATIONS = {"relu6", "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu"}
# Keras 3 arithmetic operations (module keras.src.ops.numpy) on Keras tensors.
TENSOR_OPS = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply"}
SCALAR_OPS = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide"}
# Variables Keras 3 names differently (DepthwiseConv2D's kernel is Keras 2's depthwise_kernel).
VARIABLE_RENAMES = {"kernel": "depthwise_kernel"}
# Keyword arguments every Keras 2 layer takes through **kwargs.
BASE_LAYER_KWARGS = {"trainable", "name", "dtype", "dynamic", "input_dim", "input_shape",
                     "batch_input_shape", "batch_size", "weights", "activity_regularizer",
                     "autocast", "implementation"}


@dataclass
class Keras3File:
    """What a Keras 3 file holds: its model config, Keras version and weights by layer name."""

    path: Path
    source_format: str  # "keras" (zip archive) or "h5"
    keras_version: str | None
    config: dict
    weights: dict[str, list[np.ndarray]]
    weight_names: dict[str, list[str]] = field(default_factory=dict)  # .h5 only

    def weights_by_layer(self) -> dict[str, list[np.ndarray]]:
        if self.source_format == "keras":
            return _archive_weights_by_layer(self.config, dict(self.weights), self.path)
        return self.weights


@dataclass
class Translation:
    config: dict  # the Keras 2 model config ({"class_name": "Functional", "config": ...})
    notes: list[str]  # what was translated, one line per kind of change
    uses_lambda: bool = False


# --- detection and reading ----------------------------------------------------------------

def is_keras3_config(config: Any, keras_version: str | None = None) -> bool:
    """True for a config written by Keras 3 (its version attribute or its node/input format)."""
    if keras_version and str(keras_version).startswith("3"):
        return True
    text = json.dumps(config)
    return KERAS_TENSOR in text or '"batch_shape"' in text


def h5_keras_version(path: str | Path) -> str | None:
    import h5py

    with h5py.File(path, "r") as handle:
        version = handle.attrs.get("keras_version")
    return version.decode() if isinstance(version, bytes) else (None if version is None else str(version))


def read_keras3(path: str | Path) -> Keras3File:
    """Read a `.keras` archive or a Keras-3 `.h5` (config and weights) without Keras."""
    path = Path(path)
    if path.suffix.lower() == ".keras":
        return _read_archive(path)
    return _read_h5(path)


def _read_archive(path: Path) -> Keras3File:
    import h5py

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise EdgepruneError(f"{path}: not a Keras .keras archive (not a readable zip file)") from None
    with archive:
        names = set(archive.namelist())
        if "config.json" not in names:
            raise EdgepruneError(f"{path}: a .keras archive must hold config.json (found {', '.join(sorted(names)[:4])})")
        for member in ARCHIVE_MEMBERS:
            if member in names and archive.getinfo(member).file_size > MAX_MEMBER_BYTES:
                raise EdgepruneError(f"{path}: {member} is larger than {MAX_MEMBER_BYTES >> 30} GiB; refusing to unpack it")
        config = _json_member(archive, "config.json", path)
        metadata = _json_member(archive, "metadata.json", path) if "metadata.json" in names else {}
        if "model.weights.h5" not in names:
            raise EdgepruneError(f"{path}: holds no model.weights.h5 (saved without weights?)")
        blob = archive.read("model.weights.h5")
    if not isinstance(config, dict) or "class_name" not in config:
        raise EdgepruneError(f"{path}: config.json is not a Keras model config")
    by_path: dict[str, list[np.ndarray]] = {}
    try:
        with h5py.File(io.BytesIO(blob), "r") as handle:
            def collect(name: str, item: Any) -> None:
                # layers/... only: a compiled model also stores optimizer/vars, which inference ignores
                if name.startswith("layers/") and name.endswith("/vars") and isinstance(item, h5py.Group) and len(item):
                    by_path[name[:-len("/vars")]] = [np.asarray(item[str(i)]) for i in range(len(item))]

            handle.visititems(collect)
    except (OSError, KeyError) as exc:
        raise EdgepruneError(f"{path}: model.weights.h5 is not readable ({exc})") from None
    # Keyed by archive path (layers/<snake_case class>[_k]/...) until `weights_by_layer` maps them.
    return Keras3File(path=path, source_format="keras", keras_version=metadata.get("keras_version"),
                      config=config, weights=by_path)


def _json_member(archive: zipfile.ZipFile, name: str, path: Path) -> Any:
    try:
        return json.loads(archive.read(name).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EdgepruneError(f"{path}: {name} is not valid JSON (corrupt archive)") from None


def snake_case(name: str) -> str:
    """Keras 3's `naming.to_snake_case`: how a .keras archive names a layer's weight group."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _archive_weights_by_layer(config: dict, by_path: dict[str, list[np.ndarray]], path: Path,
                              *, group: str = "layers", prefix: str = "") -> dict[str, list[np.ndarray]]:
    """A .keras archive groups weights as layers/<snake_case(class)>[_k]/vars/<i> in the order of
    the model's layers (a nested model's under .../layers/...): map them to layer paths
    ("layer" or "model/layer"), the keys `set_weights` looks up."""
    used: dict[str, int] = {}
    weights: dict[str, list[np.ndarray]] = {}
    for layer in _layer_entries(config):
        if _is_operation(layer):
            continue  # operations are not saveable: they hold no weights and take no slot
        key = snake_case(layer["class_name"])
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        name = _layer_name(layer)
        if layer.get("class_name") in CONTAINERS:
            weights.update(_archive_weights_by_layer(layer, by_path, path, group=f"{group}/{key}/layers",
                                                     prefix=f"{prefix}{name}/"))
        elif f"{group}/{key}" in by_path:
            weights[prefix + name] = by_path.pop(f"{group}/{key}")
    if by_path and not prefix:
        raise EdgepruneError(f"{path}: weight groups {', '.join(sorted(by_path)[:3])} match no layer "
                             "of the model config")
    return weights


def _h5_nested_weights(config: dict, weights: dict[str, list[np.ndarray]], names: dict[str, list[str]]) -> None:
    """A Keras-3 .h5 stores a nested model's weights in one group named after it, each named
    "<inner layer>/<variable>": split them into "model/layer" keys, in stored order."""
    for layer in _layer_entries(config):
        name = _layer_name(layer)
        if layer.get("class_name") not in CONTAINERS or name not in weights:
            continue
        arrays, stored = weights.pop(name), names.pop(name)
        for array, weight_name in zip(arrays, stored, strict=True):
            parts = weight_name.split("/")
            if len(parts) > 2 and parts[0] == name:
                parts = parts[1:]
            key = f"{name}/{parts[0]}"
            weights.setdefault(key, []).append(array)
            names.setdefault(key, []).append(weight_name)


def _read_h5(path: Path) -> Keras3File:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
            version = handle.attrs.get("keras_version")
            root = handle["model_weights"] if "model_weights" in handle else handle
            weights: dict[str, list[np.ndarray]] = {}
            names: dict[str, list[str]] = {}
            for layer_name, group in root.items():
                if not isinstance(group, h5py.Group):
                    continue
                weight_names = [n.decode() if isinstance(n, bytes) else str(n)
                                for n in group.attrs.get("weight_names", [])]
                if weight_names:
                    weights[layer_name] = [np.asarray(group[n]) for n in weight_names]
                    names[layer_name] = weight_names
    except (OSError, KeyError) as exc:
        raise EdgepruneError(f"{path}: not a readable Keras .h5 model ({exc})") from None
    if raw is None:
        raise EdgepruneError(f"{path}: holds no model config (weights-only file?); save the whole model")
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EdgepruneError(f"{path}: model config is not valid JSON (corrupt file)") from None
    version_text = version.decode() if isinstance(version, bytes) else (None if version is None else str(version))
    weights.pop("top_level_model_weights", None)
    _h5_nested_weights(config, weights, names)
    return Keras3File(path=path, source_format="h5", keras_version=version_text, config=config,
                      weights=weights, weight_names=names)


# --- safety -------------------------------------------------------------------------------

def _layer_entries(config: dict) -> list[dict]:
    inner = config.get("config", {})
    return list(inner.get("layers", [])) if isinstance(inner, dict) else []


def _layer_name(layer: dict) -> str:
    return str(layer.get("name") or layer.get("config", {}).get("name", "?"))


def _is_operation(layer: dict) -> bool:
    """A Keras 3 operation node (arithmetic on Keras tensors), not a layer: module keras.src.ops.*
    in a .keras config; in a Keras-3 .h5 no module and a config holding only its name."""
    if "module" in layer:
        return str(layer.get("module") or "").startswith("keras.src.ops")
    config = layer.get("config")
    return isinstance(config, dict) and set(config) == {"name"} and "inbound_nodes" in layer


def _is_builtin(entry: dict) -> bool:
    """Built-in Keras classes carry module keras.* (or none, in Keras-3 .h5 layer lists) and no
    registered name of their own (custom classes register as "package>Class")."""
    module = str(entry.get("module") or "keras")
    registered = entry.get("registered_name")
    return (module == "keras" or module.startswith("keras.")) and registered in (None, entry.get("class_name"))


def check_keras3_config(config: dict, path: Path | str, *, allow_unsafe: bool) -> None:
    """Refuse Lambda layers and custom classes before anything is built (same messages as Keras 2)."""
    if config.get("class_name") not in CONTAINERS:
        raise EdgepruneError(f"{path}: top-level class {config.get('class_name')!r} is not a Keras "
                             "Functional or Sequential model (subclassed models need their code)")
    from edgeprune.modelio import _builtin_layer_names

    known = _builtin_layer_names() | CONTAINERS
    lambdas, custom = [], set()
    for entry in _serialized_objects(config):
        if entry.get("class_name") == "Lambda":
            lambdas.append(str(entry.get("config", {}).get("name", "?")))
        elif not _is_builtin(entry) or (entry.get("class_name") not in known and not _is_operation(entry)):
            custom.add(str(entry.get("registered_name") or entry.get("class_name")))
    if lambdas and not allow_unsafe:
        raise EdgepruneError(
            f"{path}: refusing to load Lambda layer(s) {', '.join(sorted(lambdas)[:3])} — they run Python "
            "code stored in the file; pass --allow-unsafe only if you trust its author")
    if custom:  # no opt-in helps: the code of a custom class is not in the file
        raise EdgepruneError(
            f"{path}: uses custom classes {', '.join(sorted(custom)[:3])}; refusing to load code from "
            "outside Keras (Keras 3 files are rebuilt from built-in Keras classes only)")


def _serialized_objects(value: Any) -> list[dict]:
    """Every {"class_name": ..., "config": {...}} object in a config, Keras tensors excepted."""
    found: list[dict] = []
    if isinstance(value, dict):
        if "class_name" in value and value.get("class_name") != KERAS_TENSOR and (
                isinstance(value.get("config"), dict) or "module" in value):
            found.append(value)
        for key, item in value.items():
            if key != "function":  # a Lambda's serialized code is not a class
                found.extend(_serialized_objects(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_serialized_objects(item))
    return found


# --- translation --------------------------------------------------------------------------

class _Translator:
    def __init__(self, path: Path | str) -> None:
        import tensorflow as tf

        self.tf = tf
        self.path = path
        self.notes: dict[str, None] = {}
        self.alias: dict[str, str] = {}  # Keras 3 layer -> Keras 2 layer producing its output
        self.layers: list[dict] = []
        self.uses_lambda = False
        self.dropped: set[str] = set()
        # Keras 2 counts a nested model's own construction as its node 0: calls start at 1.
        self.node_offset: dict[str, int] = {}

    def note(self, text: str) -> None:
        self.notes.setdefault(text, None)

    def fail(self, text: str) -> EdgepruneError:
        return EdgepruneError(f"{self.path}: {text}")

    # values ------------------------------------------------------------------------------
    def clean(self, value: Any) -> Any:
        """Nested serialized objects to Keras 2's {"class_name", "config"}; policies to names."""
        if isinstance(value, list):
            return [self.clean(v) for v in value]
        if not isinstance(value, dict):
            return value
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(value.get("config"), dict):
            self.note("dtype policies -> dtype names")
            return value["config"].get("name", "float32")
        if "class_name" in value and isinstance(value.get("config"), dict):
            if "module" in value or "registered_name" in value:
                self.note("module / registered_name dropped")
            cls = self._object_class(value["class_name"])
            config = {k: self.clean(v) for k, v in value["config"].items() if k != "shared_object_id"}
            if cls is not None:
                config = self.accepted(cls, config, f"{value['class_name']}")
            return {"class_name": value["class_name"], "config": config}
        return {k: self.clean(v) for k, v in value.items() if k != "shared_object_id"}

    def _object_class(self, name: str) -> type | None:
        tf = self.tf
        for module in (tf.keras.initializers, tf.keras.regularizers, tf.keras.constraints):
            cls = getattr(module, name, None)
            if isinstance(cls, type):
                return cls
        return None

    def accepted(self, cls: type, config: dict, where: str) -> dict:
        """Drop arguments `cls` does not take when they are neutral; refuse otherwise."""
        names = _init_arguments(cls)
        kept = {}
        for key, value in config.items():
            if key in names:
                kept[key] = value
            elif value in NEUTRAL or key in ("input_axes", "output_axes"):
                self.dropped.add(key)
            else:
                raise self.fail(f"{where}: argument {key}={json.dumps(value)[:40]} has no Keras 2 equivalent")
        return kept

    # nodes -------------------------------------------------------------------------------
    def ref(self, tensor: dict) -> list:
        history = tensor.get("config", {}).get("keras_history")
        if not isinstance(history, list) or len(history) != 3:
            raise self.fail(f"unreadable tensor reference {json.dumps(tensor)[:80]}")
        name, node, index = history
        return [self.alias.get(name, name), int(node) + self.node_offset.get(name, 0), int(index)]

    def node_inputs(self, layer_name: str, node: Any) -> tuple[list, list, dict]:
        """(tensor refs, other positional args, kwargs) of one Keras 3 inbound node."""
        if isinstance(node, list):  # already Keras 2 style: [[layer, node, tensor, kwargs], ...]
            refs = [[self.alias.get(r[0], r[0]), r[1] + self.node_offset.get(r[0], 0), r[2]] for r in node]
            kwargs = node[0][3] if node and len(node[0]) > 3 else {}
            return ([refs] if len(refs) > 1 else refs), [], kwargs
        if not isinstance(node, dict) or "args" not in node:
            raise self.fail(f"layer {layer_name}: unreadable inbound node")
        args, kwargs = list(node.get("args", [])), dict(node.get("kwargs") or {})
        if "mask" in kwargs and kwargs["mask"] is None:
            # Keras 3 writes the default `mask=None` (BatchNormalization); Keras 2 never does, and
            # layers that wrap others (NNCF's) then fail on an argument their call does not take.
            del kwargs["mask"]
        if KERAS_TENSOR in json.dumps(kwargs):
            raise self.fail(f"layer {layer_name}: takes tensors as keyword arguments (masks?), which Keras 2 "
                            "nodes cannot express")
        refs, others = [], []
        for arg in args:
            if _is_tensor(arg):
                refs.append(self.ref(arg))
            elif isinstance(arg, list) and arg and all(_is_tensor(a) for a in arg):
                refs.append([self.ref(a) for a in arg])
            else:
                others.append(arg)
        return refs, others, kwargs

    def keras2_node(self, refs: list, kwargs: dict) -> list:
        flat = refs[0] if len(refs) == 1 and isinstance(refs[0][0], list) else refs
        return [[*r, dict(kwargs)] for r in flat]

    # layers ------------------------------------------------------------------------------
    def add(self, class_name: str, config: dict, nodes: list[list]) -> None:
        self.layers.append({"class_name": class_name, "config": config, "name": config["name"],
                            "inbound_nodes": nodes})

    def layer_class(self, class_name: str) -> type:
        cls = getattr(self.tf.keras.layers, class_name, None)
        if not isinstance(cls, type):
            raise self.fail(f"layer class {class_name} does not exist in Keras 2.15")
        return cls

    def translate_layer(self, layer: dict, nodes: list) -> None:
        class_name, name = layer["class_name"], _layer_name(layer)
        if _is_operation(layer):
            self.translate_operation(layer, nodes)
            return
        if class_name in CONTAINERS:
            self.nested_model(layer, nodes)
            return
        config = {k: self.clean(v) for k, v in layer.get("config", {}).items() if k != "shared_object_id"}
        config["name"] = name
        if class_name == "InputLayer":
            config = self.input_layer(config)
            self.add("InputLayer", config, [])
            return
        if class_name == "Lambda":
            config = self.lambda_layer(config)
        else:
            config = self.accepted(self.layer_class(class_name), config, f"layer {name}")
        keras2_nodes = self.single_input_nodes(name, nodes, f"layer {name}")
        activation = config.get("activation")
        if class_name == "Activation":
            self.activation_layer(name, config, keras2_nodes)
            return
        if isinstance(activation, str) and activation not in SAME_ACTIVATIONS:
            config["activation"] = "linear"
            self.add(class_name, config, keras2_nodes)
            refs = [[[name, k, 0, {}]] for k in range(len(keras2_nodes))]
            last = self.expand_activation(activation, f"{name}__{activation}", refs, config.get("dtype"))
            self.alias[name] = last
            self.note(f"activation {activation} of a weighted layer -> separate built-in layers")
            return
        self.add(class_name, config, keras2_nodes)

    def single_input_nodes(self, name: str, nodes: list, what: str) -> list:
        """Keras 2 node lists of a layer whose every call takes one tensor (else refused)."""
        keras2_nodes = []
        for node in nodes:
            refs, others, kwargs = self.node_inputs(name, node)
            if others or len(refs) != 1:
                raise self.fail(f"{what}: called with {len(refs)} tensors and {len(others)} other "
                                "positional arguments, which Keras 2 nodes cannot express")
            keras2_nodes.append(self.keras2_node(refs, kwargs))
        return keras2_nodes

    def nested_model(self, layer: dict, nodes: list) -> None:
        """A model used as a layer (a backbone inside a Sequential): translated on its own."""
        name = _layer_name(layer)
        inner = _Translator(self.path)
        config = inner.model(layer)["config"]
        config["name"] = name
        for text in inner.notes:
            self.note(text)
        self.dropped |= inner.dropped
        self.uses_lambda |= inner.uses_lambda
        keras2_nodes = self.single_input_nodes(name, nodes, f"nested model {name}")
        self.add("Functional", config, keras2_nodes)
        self.node_offset[name] = 1
        self.note("nested model -> nested Keras 2 functional model")

    def input_layer(self, config: dict) -> dict:
        if "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
            self.note("InputLayer batch_shape -> batch_input_shape")
        config.pop("optional", None)
        return self.accepted(self.layer_class("InputLayer"), config, f"input {config['name']}")

    def lambda_layer(self, config: dict) -> dict:
        function = config.get("function")
        if isinstance(function, dict) and function.get("class_name") == "__lambda__":
            inner = function.get("config", {})
            config["function"] = [inner.get("code"), inner.get("defaults"), inner.get("closure")]
            config["function_type"] = "lambda"
        config.setdefault("output_shape", None)
        config.setdefault("output_shape_type", "raw")
        config.setdefault("module", None)
        self.uses_lambda = True
        self.note("Lambda bytecode -> Keras 2 Lambda format (--allow-unsafe)")
        return config  # Lambda.from_config reads the function_* / output_shape_* keys itself

    def activation_layer(self, name: str, config: dict, nodes: list[list]) -> None:
        activation = config.get("activation")
        if not isinstance(activation, str):
            raise self.fail(f"layer {name}: activation {json.dumps(activation)[:60]} is not a built-in name")
        if activation in SAME_ACTIVATIONS or activation in RENAMED_ACTIVATIONS:
            config["activation"] = RENAMED_ACTIVATIONS.get(activation, activation)
            if activation in RENAMED_ACTIVATIONS:
                self.note(f"activation {activation} -> {config['activation']}")
            self.add("Activation", config, nodes)
            return
        self.expand_activation(activation, name, nodes, config.get("dtype"), final_name=name)
        self.note(f"Activation({activation}) -> built-in layers computing Keras 3's {activation}")

    def expand_activation(self, activation: str, base: str, nodes: list[list], dtype: Any,
                          final_name: str | None = None) -> str:
        """Layers computing Keras 3's `activation` on each node's input; returns the last name."""
        if activation in RENAMED_ACTIVATIONS or activation in SAME_ACTIVATIONS:
            out = final_name or f"{base}"
            self.add("Activation", {"name": out, "dtype": dtype,
                                    "activation": RENAMED_ACTIVATIONS.get(activation, activation)}, nodes)
            return out
        if activation not in EXPANDED_ACTIVATIONS:
            raise self.fail(f"activation {activation!r} has no Keras 2 equivalent")
        out = final_name or base
        common = {"dtype": dtype, "trainable": True}
        if activation == "relu6":
            self.add("ReLU", {**common, "name": out, "max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0}, nodes)
            return out
        if activation == "leaky_relu":
            self.add("LeakyReLU", {**common, "name": out, "alpha": 0.2}, nodes)
            return out
        hard_sigmoid = out if activation == "hard_sigmoid" else f"{base}__hsig"
        self.add("Rescaling", {**common, "name": f"{base}__affine", "scale": 1.0 / 6.0, "offset": 0.5}, nodes)
        self.add("ReLU", {**common, "name": hard_sigmoid, "max_value": 1.0, "negative_slope": 0.0, "threshold": 0.0},
                 [[[f"{base}__affine", k, 0, {}]] for k in range(len(nodes))])
        if activation == "hard_sigmoid":
            return out
        self.add("Multiply", {**common, "name": out},
                 [[node[0], [hard_sigmoid, k, 0, {}]] for k, node in enumerate(nodes)])
        return out

    def translate_operation(self, layer: dict, nodes: list) -> None:
        """Arithmetic on Keras tensors (keras.src.ops.numpy) -> Rescaling or a merge layer."""
        class_name, name = layer["class_name"], _layer_name(layer)
        common = {"name": name, "trainable": True, "dtype": "float32"}
        per_node: list[tuple[str, dict, list]] = []
        for node in nodes:
            refs, others, kwargs = self.node_inputs(name, node)
            args = node.get("args", []) if isinstance(node, dict) else []
            if len(refs) == 2 and not others and class_name in TENSOR_OPS:
                per_node.append((TENSOR_OPS[class_name], common, [[*refs[0], {}], [*refs[1], {}]]))
                continue
            if len(refs) != 1 or len(others) != 1 or not isinstance(others[0], (int, float)) \
                    or class_name not in SCALAR_OPS:
                raise self.fail(f"Keras 3 operation {class_name} ({name}) has no built-in Keras 2 layer equivalent")
            number, tensor_first = float(others[0]), _is_tensor(args[0])
            if class_name == "Add":
                scale, offset = 1.0, number
            elif class_name == "Subtract":
                scale, offset = (1.0, -number) if tensor_first else (-1.0, number)
            elif class_name == "Multiply":
                scale, offset = number, 0.0
            elif tensor_first and number != 0:
                scale, offset = 1.0 / number, 0.0
            else:
                raise self.fail(f"Keras 3 operation {class_name} ({name}): a number divided by a tensor "
                                "has no built-in Keras 2 layer equivalent")
            per_node.append(("Rescaling", {**common, "scale": scale, "offset": offset}, [[*refs[0], {}]]))
        kinds = {(kind, json.dumps(config, sort_keys=True)) for kind, config, _ in per_node}
        if len(kinds) != 1:
            raise self.fail(f"Keras 3 operation {name} is called in different ways; cannot share one Keras 2 layer")
        kind, config, _ = per_node[0]
        self.add(kind, dict(config), [inputs for _, _, inputs in per_node])
        self.note(f"Keras 3 operations -> built-in layers (ops.{snake_case(class_name)} -> {kind})")

    # models ------------------------------------------------------------------------------
    def model(self, config: dict) -> dict:
        class_name = config.get("class_name")
        inner = config.get("config", {})
        if class_name == "Sequential":
            return self.sequential(inner)
        for layer in inner.get("layers", []):
            self.translate_layer(layer, layer.get("inbound_nodes", []))
        return self.functional(inner.get("name", "model"), _refs(inner.get("input_layers")),
                               _refs(inner.get("output_layers")))

    def functional(self, name: str, inputs: list, outputs: list) -> dict:
        return {"class_name": "Functional", "config": {
            "name": name, "trainable": True, "layers": self.layers,
            "input_layers": [[self.alias.get(r[0], r[0]), r[1], r[2]] for r in inputs],
            "output_layers": [[self.alias.get(r[0], r[0]), r[1] + self.node_offset.get(r[0], 0), r[2]]
                              for r in outputs]}}

    def sequential(self, inner: dict) -> dict:
        layers = list(inner.get("layers", []))
        if not layers:
            raise self.fail("an empty Sequential model")
        if layers[0].get("class_name") != "InputLayer":
            shape = (layers[0].get("build_config") or {}).get("input_shape") or inner.get("build_input_shape")
            if not shape:
                raise self.fail("a Sequential model that was never built (no input shape)")
            layers.insert(0, {"class_name": "InputLayer", "config": {"batch_shape": shape, "name": "input"}})
        self.note("Sequential -> functional model (same layers, names and weights)")
        previous = None
        for layer in layers:
            tensor = {"class_name": KERAS_TENSOR, "config": {"keras_history": [previous, 0, 0]}}
            nodes: list[dict] = [] if previous is None else [{"args": [tensor], "kwargs": {}}]
            self.translate_layer(layer, nodes)
            previous = self.alias.get(_layer_name(layer), _layer_name(layer))
        first = _layer_name(layers[0])
        return self.functional(inner.get("name", "sequential"), [[first, 0, 0]], [[previous, 0, 0]])


def _is_tensor(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == KERAS_TENSOR


def _refs(value: Any) -> list:
    if not value:
        return []
    if isinstance(value[0], str):
        return [value]
    return [list(v) for v in value]


def _init_arguments(cls: type) -> set[str]:
    """Keyword arguments a Keras 2 class accepts (following **kwargs up its bases)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names.update(p for p in params if p not in ("self", "args", "kwargs"))
        if klass.__name__ == "Layer":  # Keras' base layer: takes BASE_LAYER_KWARGS via **kwargs
            return names | BASE_LAYER_KWARGS
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return names
    return names | BASE_LAYER_KWARGS


def translate_config(config: dict, path: Path | str = "model") -> Translation:
    """The Keras 2.15 model config equivalent to a Keras 3 one (see the module docstring)."""
    translator = _Translator(path)
    keras2 = translator.model(copy.deepcopy(config))
    translator.note("Keras 3 inbound nodes -> Keras 2 node lists")
    if translator.dropped:
        translator.note(f"Keras 3 arguments Keras 2 lacks, all at neutral values, dropped: "
                        f"{', '.join(sorted(translator.dropped))}")
    return Translation(config=keras2, notes=list(translator.notes), uses_lambda=translator.uses_lambda)


# --- rebuilding ---------------------------------------------------------------------------

def set_weights(model: "tf.keras.Model", source: Keras3File) -> int:
    """Set every layer's weights from the file, checking count, shapes and (h5) names; returns
    the number of arrays set."""
    remaining = dict(source.weights_by_layer())
    count = _assign(model, remaining, source, prefix="")
    if remaining:
        raise EdgepruneError(f"{source.path}: weights for {', '.join(sorted(remaining)[:3])} match no layer")
    return count


def _assign(model: Any, remaining: dict[str, list[np.ndarray]], source: Keras3File, *, prefix: str) -> int:
    count = 0
    for layer in model.layers:
        key = prefix + layer.name
        if hasattr(layer, "layers") and type(layer).__name__ in CONTAINERS:
            count += _assign(layer, remaining, source, prefix=f"{key}/")
            continue
        if not layer.weights:
            continue
        values = remaining.pop(key, None)
        if values is None:
            raise EdgepruneError(f"{source.path}: no weights stored for layer {key}")
        if len(values) != len(layer.weights):
            raise EdgepruneError(f"{source.path}: layer {key} has {len(layer.weights)} variables in "
                                 f"Keras 2 but {len(values)} in the file")
        stored_names = source.weight_names.get(key, [])
        for position, (variable, value) in enumerate(zip(layer.weights, values, strict=True)):
            if tuple(variable.shape) != tuple(value.shape):
                raise EdgepruneError(f"{source.path}: layer {layer.name} variable {position} has shape "
                                     f"{tuple(value.shape)} in the file, {tuple(variable.shape)} in Keras 2")
            if stored_names:
                wanted = variable.name.split("/")[-1].split(":")[0]
                stored = stored_names[position].split("/")[-1].split(":")[0]
                if VARIABLE_RENAMES.get(stored, stored) != wanted and stored != wanted:
                    raise EdgepruneError(f"{source.path}: layer {layer.name} variable {position} is {stored} in "
                                         f"the file but {wanted} in Keras 2")
        layer.set_weights(values)
        count += len(values)
    return count


def load_keras3_model(path: str | Path, *, allow_unsafe: bool = False) -> tuple["tf.keras.Model", dict]:
    """Rebuild a Keras 3 file as a Keras 2 model; returns (model, record of the translation)."""
    source = read_keras3(path)
    check_keras3_config(source.config, source.path, allow_unsafe=allow_unsafe)
    translation = translate_config(source.config, source.path)
    import contextlib

    import tensorflow as tf

    scope: Any = contextlib.nullcontext()
    if translation.uses_lambda:  # reached only with allow_unsafe: the user trusts this file
        from keras.src.saving.serialization_lib import SafeModeScope

        scope = SafeModeScope(safe_mode=False)
    try:
        with scope:
            model = tf.keras.Model.from_config(translation.config["config"])
    except Exception as exc:  # Keras raises many types; the user needs one line
        first_line = one_line(exc)
        raise EdgepruneError(f"{source.path}: the translated Keras 2 model does not build ({first_line})") from None
    arrays = set_weights(model, source)
    record = {
        "source_format": "keras3-archive" if source.source_format == "keras" else "keras3-h5",
        "keras_version": source.keras_version,
        "translated": translation.notes,
        "layers": {"keras3": len(_layer_entries(source.config)), "keras2": len(model.layers)},
        "weight_arrays": arrays,
    }
    return model, record


# --- `edgeprune import` -------------------------------------------------------------------

IMPORT_SCHEMA = "edgeprune.import/1"  # = edgeprune.results.ImportResult.SCHEMA


def import_model(source: str | Path, output: str | Path, *, input_range: str | None = None,
                 allow_unsafe: bool = False, overwrite: bool = False) -> dict:
    """Write `source` (a Keras 3 `.keras` / `.h5`, or a Keras 2 `.h5`) as a Keras 2 `.h5` with
    its record inside and a sidecar `output.json`: source format, Keras version, what was
    translated and the input range (declared, else detected, else [0, 1]). Returns the record."""
    from edgeprune.inputrange import resolve_input_range
    from edgeprune.io import check_output, sha256_file, versions, write_json
    from edgeprune.modelio import is_keras3_file, load_keras_model, read_metadata, save_keras_model

    source, output = Path(source), Path(output)
    sidecar = output.with_suffix(".json")
    if output.suffix.lower() not in (".h5", ".hdf5"):
        raise EdgepruneError(f"{output}: the imported model is written as Keras 2 .h5; end it in .h5")
    for target in (output, sidecar):
        check_output(target, force=overwrite, inputs=[source])
    if not source.is_file():
        raise EdgepruneError(f"{source}: no such model file")
    metadata = read_metadata(source)
    if is_keras3_file(source):
        model, translated = load_keras3_model(source, allow_unsafe=allow_unsafe)
    else:
        model = load_keras_model(source, allow_unsafe=allow_unsafe)
        translated = {"source_format": "keras2-h5", "keras_version": h5_keras_version(source),
                      "translated": [], "layers": {"keras2": len(model.layers)}}
    resolved = resolve_input_range(input_range, metadata=metadata, model=model)
    record = {
        "schema": IMPORT_SCHEMA,
        "source": str(source),
        "source_sha256": sha256_file(source),
        "output": str(output),
        **translated,
        "input_range": resolved.record(),
        "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "versions": versions(),
    }
    meta = {**metadata, "imported": {k: record[k] for k in ("source", "source_sha256", "source_format",
                                                           "keras_version", "translated")},
            "input_range": resolved.input_range.as_dict()}
    save_keras_model(model, output, metadata=meta)
    record["output_sha256"] = sha256_file(output)
    write_json(sidecar, record)
    return record
