"""The pixel range a model takes, as part of the model: `0,1`, `0,255` or `-1,1`.

Data and attack budgets stay in [0, 1] image units everywhere in edgeprune; a model that takes
another range is fed `x * (high - low) + low` at its boundary. For Keras models that map is a
`Rescaling` layer in front of the model (`with_input_range`), so gradients flow through it and
an eps of 8/255 means 8 pixel levels whatever the model takes; compiled models (.tflite / .xml)
get the same map in the predictor (`edgeprune.runtime.load(..., input_range=...)`).

Where the range comes from, first match wins (`resolve_input_range`): what the user declared
(`--input-range`), what a sidecar or the model's edgeprune record says, what the model itself
says (a leading `Rescaling(1/255)` or `Rescaling(1/127.5, offset=-1)`, as keras.applications
models with built-in preprocessing have: they take 0..255) — printed as an assumption — and
finally the default [0, 1].
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.vocab import INPUT_RANGES, KERAS_SUFFIXES

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class InputRange:
    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high <= self.low:
            raise EdgepruneError(f"input range must have low < high, got {self.low},{self.high}")

    @property
    def label(self) -> str:
        return f"{self.low:g},{self.high:g}"

    @property
    def is_unit(self) -> bool:
        return (self.low, self.high) == (0.0, 1.0)

    @property
    def scale(self) -> float:
        return self.high - self.low

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """Images in [0, 1] -> what the model takes (float32)."""
        x = np.asarray(x, np.float32)
        if self.is_unit:
            return x
        return (x * np.float32(self.scale) + np.float32(self.low)).astype(np.float32)

    def as_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "label": self.label}


# label -> range, for the names in edgeprune.vocab.INPUT_RANGES (the one list of them)
CHOICES: dict[str, InputRange] = {label: InputRange(*(float(v) for v in label.split(","))) for label in INPUT_RANGES}
UNIT, PIXELS, SIGNED = CHOICES["0,1"], CHOICES["0,255"], CHOICES["-1,1"]


def parse_input_range(text: str | InputRange | dict) -> InputRange:
    """`0,1` / `0,255` / `-1,1` (also a recorded {"low", "high"} dict) -> InputRange."""
    if isinstance(text, InputRange):
        return text
    if isinstance(text, dict):
        try:
            return InputRange(float(text["low"]), float(text["high"]))
        except (KeyError, TypeError, ValueError):
            raise EdgepruneError(f"recorded input range {text!r} is not {{low, high}}") from None
    cleaned = str(text).replace(" ", "").replace("..", ",")
    try:
        low, high = (float(v) for v in cleaned.split(","))
    except ValueError:
        raise EdgepruneError(f"input range {text!r}: expected one of {' | '.join(CHOICES)}") from None
    found = InputRange(low, high)
    if found.label not in CHOICES:
        raise EdgepruneError(f"input range {text!r}: expected one of {' | '.join(CHOICES)}")
    return found


def detect_input_range(model: "tf.keras.Model") -> tuple[InputRange, str] | None:
    """(range, reason) when the model's first layer after its input says what it takes."""
    first = _first_layer_after_input(model)
    if first is None or type(first).__name__ != "Rescaling":
        return None
    scale, offset = float(np.asarray(first.scale).ravel()[0]), float(np.asarray(first.offset).ravel()[0])
    if math.isclose(scale, 1 / 255, rel_tol=1e-4) and abs(offset) < 1e-6:
        return PIXELS, f"its first layer {first.name} is Rescaling(1/255)"
    if math.isclose(scale, 1 / 127.5, rel_tol=1e-4) and math.isclose(offset, -1.0, rel_tol=1e-6):
        return PIXELS, f"its first layer {first.name} is Rescaling(1/127.5, offset=-1)"
    return None


def _first_layer_after_input(model: Any) -> Any:
    layers = [layer for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]
    if not layers:
        return None
    first = layers[0]
    if type(first).__name__ in ("Functional", "Sequential", "Model"):
        return _first_layer_after_input(first)
    return first


@dataclass(frozen=True)
class ResolvedRange:
    input_range: InputRange
    source: str  # declared / recorded / detected / default
    reason: str = ""

    @property
    def assumption(self) -> str | None:
        """The line to print when the range was not given or recorded (never silent)."""
        if self.source != "detected":
            return None
        return (f"assuming input range {self.input_range.label}: {self.reason} "
                "(--input-range to override; data and eps stay in [0, 1] units)")

    def record(self) -> dict:
        return {**self.input_range.as_dict(), "source": self.source, "reason": self.reason or None}


def resolve_input_range(declared: str | InputRange | None = None, *, metadata: dict | None = None,
                        model: Any = None) -> ResolvedRange:
    """Declared > recorded (metadata / sidecar `input_range`) > detected from the model > [0, 1]."""
    if declared is not None:
        return ResolvedRange(parse_input_range(declared), "declared")
    recorded = (metadata or {}).get("input_range")
    if recorded:
        return ResolvedRange(parse_input_range(recorded), "recorded")
    if model is not None:
        found = detect_input_range(model)
        if found is not None:
            return ResolvedRange(found[0], "detected", found[1])
    return ResolvedRange(UNIT, "default")


def with_input_range(model: "tf.keras.Model", input_range: InputRange) -> "tf.keras.Model":
    """`model` fed `x * (high - low) + low`: takes [0, 1] images; gradients flow through the map."""
    if input_range.is_unit:
        return model
    import tensorflow as tf

    inputs = tf.keras.Input(shape=model.input_shape[1:], name="image_01")
    scaled = tf.keras.layers.Rescaling(input_range.scale, offset=input_range.low,
                                       name="edgeprune_input_range")(inputs)
    return tf.keras.Model(inputs, model(scaled, training=False), name=f"{model.name}_in01")


def ranged_predictor(predictor: Any, input_range: InputRange) -> Any:
    """A runtime predictor fed [0, 1] images and mapping them to `input_range` first."""
    if input_range.is_unit:
        return predictor
    return RangedPredictor(predictor, input_range)


class RangedPredictor:
    """Wraps any `edgeprune.runtime` predictor: predict(x in [0, 1]) = inner.predict(map(x))."""

    def __init__(self, inner: Any, input_range: InputRange) -> None:
        self.inner = inner
        self.input_range = input_range
        self.info = {**inner.info, "input_range": input_range.as_dict()}

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return self.inner.predict(self.input_range.to_model(x), batch_size)

    def __getattr__(self, name: str) -> Any:  # the inner predictor's other attributes
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def recorded_input_range(path: str | Path) -> dict | None:
    """The range recorded for a model file: its edgeprune record (.h5) or convert report (.tflite/.xml)."""
    path = Path(path)
    if path.suffix.lower() in KERAS_SUFFIXES:
        from edgeprune.modelio import read_metadata

        return read_metadata(path).get("input_range")
    if path.suffix.lower() in (".tflite", ".xml"):
        from edgeprune.runtime import _conversion_record

        return _conversion_record(path).get("input_range")
    return None


def announce(resolved: ResolvedRange) -> None:
    """Print a detected range as the assumption it is (stderr, one line)."""
    if resolved.assumption:
        print(f"note: {resolved.assumption}", file=sys.stderr)


def apply_input_range(predictor: Any, path: str | Path, declared: str | InputRange | None = None) -> Any:
    """`predictor` fed [0, 1] images: declared > recorded > detected (Keras, announced) > [0, 1]."""
    recorded = None if declared is not None else recorded_input_range(path)
    resolved = resolve_input_range(declared, metadata={"input_range": recorded},
                                   model=getattr(predictor, "model", None))
    announce(resolved)
    wrapped = ranged_predictor(predictor, resolved.input_range)
    wrapped.info["input_range"] = resolved.record()
    return wrapped


def dataset_for_model(dataset: Any, input_range: InputRange) -> Any:
    """`dataset` whose float splits come in the model's range (for training and fine-tuning a
    model that takes 0..255 or -1..1); pixels, fingerprints and uint8 splits are unchanged."""
    if input_range.is_unit:
        return dataset
    from dataclasses import replace

    return replace(dataset, input_range=input_range)  # arrays (or a folder's file list) shared, not copied
