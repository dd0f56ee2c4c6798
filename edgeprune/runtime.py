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
from typing import Any, Protocol

import numpy as np

from edgeprune.errors import EdgepruneError, one_line
from edgeprune.validate import check_single_io
from edgeprune.vocab import INFERENCE_PRECISIONS, RUNTIME_INFERENCE_PRECISIONS


# How the runtime computes (runtime inference precision), set when a model is loaded. Not the
# conversion precision of the file (`edgeprune.convert`: fp32 / fp16 / dynamic / int8, recorded
# as info["precision"]). One vocabulary for every runtime:
#   default  what the runtime picks on this host, as deployed (OpenVINO: no hint, bf16 on CPUs
#            with AVX512_BF16/AMX; TFLite: the default XNNPACK delegate; Keras: f32)
#   f32      OpenVINO hint f32; TFLite: XNNPACK at f32 (its default for float models); Keras: f32
#   bf16     OpenVINO hint bf16 (the plugin falls back to f32 where the CPU lacks it: read back)
#   f16      OpenVINO hint f16 (where the CPU supports it: read back)
#   none     TFLite only: no XNNPACK delegate, the interpreter's builtin kernels
# What actually ran is read back and recorded as info["inference_precision"] (f32 / bf16 / f16),
# beside info["inference_precision_requested"] and, for TFLite, info["delegate"].
_OPENVINO_TYPES = {"f32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16", "f16": "f16",
                   "float16": "f16"}


def check_inference_precision(value: str | None) -> str:
    """'default' for None; otherwise a member of INFERENCE_PRECISIONS or a one-line error."""
    if value is None:
        return "default"
    text = str(value).strip().lower()
    if text not in INFERENCE_PRECISIONS:
        raise EdgepruneError(f"inference precision must be one of {', '.join(INFERENCE_PRECISIONS)}, "
                             f"got {value!r}")
    return text


def _refuse_inference_precision(path: Path, fmt: str, requested: str, supported: tuple[str, ...]) -> None:
    if requested not in supported:
        raise EdgepruneError(f"{path.name}: {fmt} cannot run at inference precision {requested!r} "
                             f"(supported: {', '.join(supported)})")


def inference_label(info: dict) -> str | None:
    """What ran, as one label for tables and pairing: 'bf16', 'f32', 'f32 xnnpack', 'f32 no-xnnpack'."""
    precision = info.get("inference_precision")
    if precision is None:
        return None
    delegate = info.get("delegate")
    if delegate is None:
        return str(precision)
    return f"{precision} {'no-xnnpack' if delegate == 'none' else delegate}"


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
    model: Any  # a tf.keras.Model
    info: dict = field(default_factory=dict)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        outputs = [np.asarray(self.model(batch, training=False)) for batch in _batches(np.asarray(x, np.float32), batch_size)]
        return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0,), np.float32)


def _load_keras(path: Path, *, allow_unsafe: bool = False, threads: int | None = None,
                inference_precision: str = "default") -> Predictor:
    from edgeprune.modelio import load_keras_model

    _refuse_inference_precision(path, "Keras", inference_precision, RUNTIME_INFERENCE_PRECISIONS["keras"])
    model = load_keras_model(path, allow_unsafe=allow_unsafe)
    return KerasPredictor(model=model, info={
        "format": "keras", "precision": "fp32", "path": str(path),
        "file_bytes": file_bytes(path), "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "runtime": {"name": "tensorflow", "version": _package_version("tensorflow-cpu", "tensorflow")},
        "threads": threads,
        "inference_precision": "f32", "inference_precision_requested": inference_precision,
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

def _tflite_interpreter_class() -> tuple[type, Any, str, str | None]:
    """(Interpreter, OpResolverType, runtime name, version): LiteRT first (fast quantized
    kernels on x86), then tflite-runtime, then tf.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        return Interpreter, OpResolverType, "ai-edge-litert", _package_version("ai-edge-litert")
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, OpResolverType

        return Interpreter, OpResolverType, "tflite-runtime", _package_version("tflite-runtime")
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError:
        raise EdgepruneError(
            "no TFLite runtime installed: pip install ai-edge-litert (or tflite-runtime, or tensorflow)"
        ) from None
    return tf.lite.Interpreter, tf.lite.experimental.OpResolverType, "tensorflow", tf.__version__


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

    interpreter: Any  # a LiteRT / tflite-runtime / tf.lite Interpreter
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
        batch = min(batch_size, len(x))
        self._resize(batch)
        in_dtype = np.dtype(self._input["dtype"])
        in_scale, in_zero = self._input["quantization"]
        out_dtype = np.dtype(self._output["dtype"])
        out_scale, out_zero = self._output["quantization"]
        outputs = []
        for chunk, rows in _padded_chunks(x, batch):
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


# The Interpreter API of ai-edge-litert / tflite-runtime exposes no XNNPACK fp16 switch
# (only LiteRT's CompiledModel API takes XNNPACK flags): f16 and bf16 are refused for TFLite.
TFLITE_INFERENCE_PRECISIONS = RUNTIME_INFERENCE_PRECISIONS["tflite"]


def _xnnpack_applied(interpreter: object, log: list[str]) -> bool:
    """True if the XNNPACK delegate took over nodes: its banner on fd 2, or DELEGATE nodes."""
    if any("XNNPACK delegate" in line for line in log):
        return True
    try:
        return any(op.get("op_name") == "DELEGATE" for op in interpreter._get_ops_details())  # type: ignore[attr-defined]
    except Exception:  # a runtime without the private op listing
        return False


def _load_tflite(path: Path, *, allow_unsafe: bool = False, threads: int | None = None,
                 inference_precision: str = "default") -> Predictor:
    threads = _check_threads(threads)
    _refuse_inference_precision(path, "TFLite", inference_precision, TFLITE_INFERENCE_PRECISIONS)
    interpreter_class, resolver, runtime_name, runtime_version = _tflite_interpreter_class()
    options: dict[str, Any] = {}
    if inference_precision == "none":  # the builtin kernels only, no default XNNPACK delegate
        options["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    failure = None
    with captured_stderr() as log:  # LiteRT announces its XNNPACK delegate on fd 2
        try:
            interpreter = interpreter_class(model_path=str(path), num_threads=threads, **options)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            failure = exc
    other = [line for line in log if "Created TensorFlow Lite XNNPACK delegate" not in line]
    if other and failure is None:
        print("\n".join(other), file=sys.stderr)
    if failure is not None:
        first_line = one_line(failure)
        raise EdgepruneError(f"{path}: not a loadable TFLite model ({first_line})") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    check_single_io(path, len(inputs), len(outputs))
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
        # XNNPACK and the builtin kernels compute float ops in f32 (int8 ops in int8).
        "inference_precision": "f32", "inference_precision_requested": inference_precision,
        "delegate": "xnnpack" if _xnnpack_applied(interpreter, log) else "none",
    }
    return TFLitePredictor(interpreter=interpreter, path=path, info=info)


# --- OpenVINO -----------------------------------------------------------------------------

OPENVINO_INFERENCE_PRECISIONS = RUNTIME_INFERENCE_PRECISIONS["openvino"]


def openvino_inference_precision(compiled: object) -> str:
    """The precision a compiled OpenVINO model runs at: f32 / bf16 / f16 (read back, not assumed)."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")  # type: ignore[attr-defined]
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return _OPENVINO_TYPES.get(str(name).lower(), str(name).lower())


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

    core: Any  # openvino.Core
    model: Any  # openvino.Model
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
                first_line = one_line(exc)
                raise EdgepruneError(f"{self.path.name}: OpenVINO cannot compile batch {batch} ({first_line})") from None
            ran = openvino_inference_precision(compiled)
            if self.info.get("inference_precision") not in (None, ran):  # never silently mixed
                raise EdgepruneError(f"{self.path.name}: OpenVINO compiled batch {batch} at {ran}, "
                                     f"batch {next(iter(self._compiled), '?')} at {self.info['inference_precision']}")
            self.info["inference_precision"] = ran
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


def _load_openvino(path: Path, *, allow_unsafe: bool = False, threads: int | None = None,
                   inference_precision: str = "default") -> Predictor:
    threads = _check_threads(threads)
    _refuse_inference_precision(path, "OpenVINO", inference_precision, OPENVINO_INFERENCE_PRECISIONS)
    if not path.with_suffix(".bin").exists():
        raise EdgepruneError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
    from edgeprune.integrity import verify_openvino_pair

    verify_openvino_pair(path)  # a .bin from another model, an edited .xml: refused
    try:
        import openvino as ov
    except ImportError:
        raise EdgepruneError("OpenVINO is not installed: pip install openvino") from None
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except RuntimeError as exc:
        first_line = one_line(exc)
        raise EdgepruneError(f"{path}: not a readable OpenVINO IR ({first_line})") from None
    check_single_io(path, len(model.inputs), len(model.outputs))
    in_shape = model.input(0).get_partial_shape()
    if in_shape.rank.is_dynamic or any(d.is_dynamic for d in list(in_shape)[1:]):
        raise EdgepruneError(f"{path}: input shape {in_shape} must be static except the batch dimension")
    # default: no precision hint, what the CPU plugin picks on this host (bf16 where the CPU
    # has AVX512_BF16 or AMX), as a deployment with OpenVINO's defaults runs it.
    config: dict = {"PERFORMANCE_HINT": "LATENCY"}
    if inference_precision != "default":
        config["INFERENCE_PRECISION_HINT"] = inference_precision
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
        "inference_precision": None, "inference_precision_requested": inference_precision,
    }
    predictor = OpenVINOPredictor(core=core, model=model, path=path, config=config, info=info)
    # Compile once now (at batch 1, kept for reuse) so the precision that runs is read back
    # from a compiled model before anyone records the info.
    predictor._request(1)
    return predictor


LOADERS: dict[str, Callable[..., Predictor]] = {
    ".h5": _load_keras,
    ".hdf5": _load_keras,
    ".keras": _load_keras,
    ".tflite": _load_tflite,
    ".xml": _load_openvino,
}


def load(path: str | os.PathLike, *, allow_unsafe: bool = False, threads: int | None = None,
         inference_precision: str | None = None, input_range: str | None = None) -> Predictor:
    """Load any supported model file behind the common `Predictor` interface.

    `inference_precision` (INFERENCE_PRECISIONS; None = "default") is how the runtime computes;
    what actually ran is read back into `info["inference_precision"]`. The predictor takes [0, 1]
    images; a model taking another range (`input_range`, else its record, else detected from a
    Keras model) is fed x * (high - low) + low (edgeprune.inputrange).
    """
    inference_precision = check_inference_precision(inference_precision)
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"{path}: no such model file")
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise EdgepruneError(
            f"{path}: unsupported model format {path.suffix!r}; expected one of {', '.join(sorted(LOADERS))}"
        )
    from edgeprune.inputrange import apply_input_range

    predictor = loader(path, allow_unsafe=allow_unsafe, threads=threads, inference_precision=inference_precision)
    return apply_input_range(predictor, path, input_range)
