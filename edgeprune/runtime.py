"""One predictor interface for every model format: `load(path).predict(x, batch_size)`.

Backends sit in a registry keyed by file suffix, each importing its runtime inside the
loader, so loading a `.tflite` or `.xml` never imports TensorFlow (device-side commands run
with only the `[device]` extra).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeprune.errors import EdgepruneError


class Predictor(Protocol):
    """A loaded model: float32 NHWC images in [0, 1] in, float32 logits out."""

    info: dict

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray: ...


def _batches(x: np.ndarray, batch_size: int):
    if batch_size <= 0:
        raise EdgepruneError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size]


@dataclass
class KerasPredictor:
    model: object
    info: dict = field(default_factory=dict)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        outputs = [np.asarray(self.model(batch, training=False)) for batch in _batches(np.asarray(x, np.float32), batch_size)]
        return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0,), np.float32)


def _load_keras(path: Path, *, allow_unsafe: bool = False, threads: int | None = None) -> Predictor:
    from edgeprune.modelio import load_keras_model

    model = load_keras_model(path, allow_unsafe=allow_unsafe)
    return KerasPredictor(model=model, info={
        "format": "keras", "precision": "fp32", "path": str(path),
        "file_bytes": file_bytes(path), "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "runtime": {"name": "tensorflow", "version": _package_version("tensorflow-cpu", "tensorflow")},
        "threads": threads,
    })


def file_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk; an OpenVINO `.xml` counts together with its `.bin`."""
    path = Path(path)
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        size += path.with_suffix(".bin").stat().st_size
    return size


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what C++ libraries write straight to fd 2 (converter logs, LiteRT's delegate
    banner); the lines are handed back so callers can report or re-emit them."""
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters): nothing to capture
        yield lines
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


# --- shared helpers for the compiled runtimes ---------------------------------------------

def _as_images(x: np.ndarray, input_shape: list[int], path: Path) -> np.ndarray:
    """Float32 NHWC batch checked against the model's input shape (batch dimension free)."""
    x = np.asarray(x, dtype=np.float32)
    expected = [int(d) for d in input_shape]
    if x.ndim != len(expected) + 1 or [int(d) for d in x.shape[1:]] != expected:
        raise EdgepruneError(
            f"{path.name}: expected images of shape (N, {', '.join(map(str, expected))}), "
            f"got {tuple(x.shape)}"
        )
    return x


def _padded_chunks(x: np.ndarray, batch: int):
    """(chunk padded to `batch` rows, real row count): one compiled shape serves every chunk."""
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        rows = len(chunk)
        if rows < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - rows, *chunk.shape[1:]), chunk.dtype)])
        yield chunk, rows


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) <= 0:
        raise EdgepruneError(f"batch_size must be positive, got {batch_size}")
    return int(batch_size)


def _check_threads(threads: int | None) -> int | None:
    if threads is not None and int(threads) <= 0:
        raise EdgepruneError(f"threads must be a positive number of CPU threads, got {threads}")
    return None if threads is None else int(threads)


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Float to integer input tensor: round(x / scale) + zero_point, clipped to the dtype range."""
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(o: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer output tensor to float logits: (o - zero_point) * scale."""
    return ((o.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def _conversion_record(path: Path) -> dict:
    """The `edgeprune convert` report beside a converted model, m.tflite.json ({} when absent or foreign)."""
    import json

    report_path = path.with_name(path.name + ".json")
    try:
        record = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("schema") != "edgeprune.convert/1":
        return {}
    if Path(str(record.get("output", ""))).name != path.name:  # a report of another file
        return {}
    return record


def _package_version(*names: str) -> str | None:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


# --- TFLite -------------------------------------------------------------------------------

def _tflite_interpreter_class() -> tuple[type, str, str | None]:
    """LiteRT first (fast quantized kernels on x86), then tflite-runtime, then tf.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert", _package_version("ai-edge-litert")
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime", _package_version("tflite-runtime")
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError:
        raise EdgepruneError(
            "no TFLite runtime installed: pip install ai-edge-litert (or tflite-runtime, or tensorflow)"
        ) from None
    return tf.lite.Interpreter, "tensorflow", tf.__version__


def _tflite_precision(input_dtype: np.dtype, tensors: list[dict]) -> str:
    """fp32 / fp16 / dynamic / int8 read from tensor types when no convert report is beside it."""
    dtypes = {np.dtype(t["dtype"]) for t in tensors}
    if np.dtype(input_dtype) in (np.dtype(np.int8), np.dtype(np.uint8)):
        return "int8"
    if np.dtype(np.float16) in dtypes:
        return "fp16"
    quantized_int32 = any(np.dtype(t["dtype"]) == np.int32 and t["quantization"][0] != 0 for t in tensors)
    if quantized_int32:  # int32 biases with a scale exist only in full-integer models
        return "int8"
    if np.dtype(np.int8) in dtypes:
        return "dynamic"
    return "fp32"


@dataclass
class TFLitePredictor:
    """A TFLite interpreter whose batch dimension is resized once per batch size and reused."""

    interpreter: object
    path: Path
    info: dict = field(default_factory=dict)
    _batch: int | None = None

    def __post_init__(self) -> None:
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]

    def _resize(self, batch: int) -> None:
        if batch == self._batch:
            return
        index = self._input["index"]
        signature = list(self._input.get("shape_signature", self._input["shape"]))
        shape = [batch, *[int(d) for d in self._input["shape"][1:]]]
        try:
            self.interpreter.resize_tensor_input(index, shape, strict=signature[0] == -1)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgepruneError(f"{self.path.name}: cannot run a batch of {batch} ({exc})") from None
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = batch

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits for float32 images in [0, 1]; quantizes inputs and dequantizes outputs as needed.

        The interpreter is resized to min(batch_size, len(x)) rows only when that differs
        from the last call, and a short last chunk is zero-padded, so repeated calls with one
        batch shape (a profiler's loop) never re-allocate.
        """
        batch_size = _check_batch_size(batch_size)
        x = _as_images(x, self.info["input_shape"], self.path)
        if len(x) == 0:
            return np.zeros((0, self.info["num_classes"]), np.float32)
        self._resize(min(batch_size, len(x)))
        in_dtype = np.dtype(self._input["dtype"])
        in_scale, in_zero = self._input["quantization"]
        out_dtype = np.dtype(self._output["dtype"])
        out_scale, out_zero = self._output["quantization"]
        outputs = []
        for chunk, rows in _padded_chunks(x, self._batch):
            if np.issubdtype(in_dtype, np.integer):
                chunk = quantize_input(chunk, in_scale, in_zero, in_dtype)
            else:
                chunk = chunk.astype(in_dtype, copy=False)
            self.interpreter.set_tensor(self._input["index"], chunk)
            self.interpreter.invoke()
            out = self.interpreter.get_tensor(self._output["index"])[:rows]
            if np.issubdtype(out_dtype, np.integer):
                out = dequantize_output(out, out_scale, out_zero)
            outputs.append(np.array(out, dtype=np.float32))
        return np.concatenate(outputs)


def _load_tflite(path: Path, *, allow_unsafe: bool = False, threads: int | None = None) -> Predictor:
    threads = _check_threads(threads)
    interpreter_class, runtime_name, runtime_version = _tflite_interpreter_class()
    failure = None
    with captured_stderr() as log:  # LiteRT announces its XNNPACK delegate on fd 2
        try:
            interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            failure = exc
    other = [line for line in log if "Created TensorFlow Lite XNNPACK delegate" not in line]
    if other and failure is None:
        print("\n".join(other), file=sys.stderr)
    if failure is not None:
        first_line = (str(failure).strip().splitlines() or [type(failure).__name__])[0][:200]
        raise EdgepruneError(f"{path}: not a loadable TFLite model ({first_line})") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise EdgepruneError(f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
    record = _conversion_record(path)
    precision = record.get("precision") or _tflite_precision(inputs[0]["dtype"], interpreter.get_tensor_details())
    in_scale, in_zero = inputs[0]["quantization"]
    info = {
        "format": "tflite", "precision": precision, "path": str(path), "file_bytes": file_bytes(path),
        "input_shape": [int(d) for d in inputs[0]["shape"][1:]],
        "num_classes": int(outputs[0]["shape"][-1]),
        "input_dtype": np.dtype(inputs[0]["dtype"]).name,
        "input_quantization": {"scale": float(in_scale), "zero_point": int(in_zero)} if in_scale else None,
        "runtime": {"name": runtime_name, "version": runtime_version},
        "threads": threads,
    }
    return TFLitePredictor(interpreter=interpreter, path=path, info=info)


# --- OpenVINO -----------------------------------------------------------------------------

# f32 execution: OpenVINO's CPU plugin otherwise runs in bf16 on hosts that support it,
# which would make accuracy depend on the host rather than on the converted model.
OPENVINO_EXECUTION_PRECISION = "f32"


def _openvino_precision(model) -> str:
    """The precision `edgeprune convert` stored in the IR, else read from its operations."""
    if model.has_rt_info(["edgeprune", "precision"]):
        return str(model.get_rt_info(["edgeprune", "precision"]).astype(str))
    types = {op.get_type_name() for op in model.get_ops()}
    if "FakeQuantize" in types or "FakeConvert" in types:
        return "int8"
    constant_types = {op.get_output_element_type(0).get_type_name() for op in model.get_ops()
                      if op.get_type_name() == "Constant"}
    if "f16" in constant_types:
        return "fp16"
    return "fp32"


@dataclass
class OpenVINOPredictor:
    """An OpenVINO model compiled once per static batch size (cached), one infer request each."""

    core: object
    model: object
    path: Path
    config: dict
    info: dict = field(default_factory=dict)
    _compiled: dict = field(default_factory=dict)

    def _request(self, batch: int):
        if batch not in self._compiled:
            shape = [batch, *self.info["input_shape"]]
            try:
                self.model.reshape({self.model.input(0): shape})
                compiled = self.core.compile_model(self.model, "CPU", self.config)
            except RuntimeError as exc:
                first_line = (str(exc).strip().splitlines() or ["?"])[0][:200]
                raise EdgepruneError(f"{self.path.name}: OpenVINO cannot compile batch {batch} ({first_line})") from None
            if len(self._compiled) >= 4:  # keep memory bounded when callers vary the batch
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[batch] = compiled.create_infer_request()
        return self._compiled[batch]

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits for float32 images in [0, 1]; one compiled model per batch size, reused."""
        batch_size = _check_batch_size(batch_size)
        x = _as_images(x, self.info["input_shape"], self.path)
        if len(x) == 0:
            return np.zeros((0, self.info["num_classes"]), np.float32)
        batch = min(batch_size, len(x))
        request = self._request(batch)
        outputs = []
        for chunk, rows in _padded_chunks(x, batch):
            request.infer({0: np.ascontiguousarray(chunk)})
            outputs.append(np.array(request.get_output_tensor(0).data[:rows], dtype=np.float32))
        return np.concatenate(outputs)


def _load_openvino(path: Path, *, allow_unsafe: bool = False, threads: int | None = None) -> Predictor:
    threads = _check_threads(threads)
    if not path.with_suffix(".bin").exists():
        raise EdgepruneError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
    try:
        import openvino as ov
    except ImportError:
        raise EdgepruneError("OpenVINO is not installed: pip install openvino") from None
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except RuntimeError as exc:
        first_line = (str(exc).strip().splitlines() or ["?"])[0][:200]
        raise EdgepruneError(f"{path}: not a readable OpenVINO IR ({first_line})") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgepruneError(
            f"{path}: expected one input and one output, found {len(model.inputs)} and {len(model.outputs)}")
    in_shape = model.input(0).get_partial_shape()
    if in_shape.rank.is_dynamic or any(d.is_dynamic for d in list(in_shape)[1:]):
        raise EdgepruneError(f"{path}: input shape {in_shape} must be static except the batch dimension")
    config = {"INFERENCE_PRECISION_HINT": OPENVINO_EXECUTION_PRECISION, "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    record = _conversion_record(path)
    info = {
        "format": "openvino", "precision": record.get("precision") or _openvino_precision(model),
        "path": str(path), "file_bytes": file_bytes(path),
        "input_shape": [int(d.get_length()) for d in list(in_shape)[1:]],
        "num_classes": int(model.output(0).get_partial_shape()[-1].get_length()),
        "input_dtype": model.input(0).get_element_type().get_type_name(),
        "input_quantization": None,
        "runtime": {"name": "openvino", "version": ov.get_version().split("-")[0]},
        "threads": threads,
        "execution_precision": OPENVINO_EXECUTION_PRECISION,
    }
    return OpenVINOPredictor(core=core, model=model, path=path, config=config, info=info)


LOADERS: dict[str, Callable[..., Predictor]] = {
    ".h5": _load_keras,
    ".hdf5": _load_keras,
    ".keras": _load_keras,
    ".tflite": _load_tflite,
    ".xml": _load_openvino,
}


def load(path: str | os.PathLike, *, allow_unsafe: bool = False, threads: int | None = None,
         input_range: str | None = None) -> Predictor:
    """Load any supported model file behind the common `Predictor` interface.

    The predictor takes [0, 1] images; a model taking another range (`input_range`, else its
    record, else detected from a Keras model) is fed x * (high - low) + low (edgeprune.inputrange).
    """
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"{path}: no such model file")
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise EdgepruneError(
            f"{path}: unsupported model format {path.suffix!r}; expected one of {', '.join(sorted(LOADERS))}"
        )
    from edgeprune.inputrange import apply_input_range

    return apply_input_range(loader(path, allow_unsafe=allow_unsafe, threads=threads), path, input_range)
