"""Keras `.h5` -> TFLite or OpenVINO IR, verified against the source before it is kept.

A converted model that silently disagrees with its source is worse than none, so every
conversion is run beside the Keras model on held-out test images (top-1 agreement, logit
error, accuracy of both) and only moved into place when it passes. Everything is written in
a temporary folder beside the output first: a failed or refused conversion leaves nothing.

Precisions:
- TFLite: `fp32`; `fp16` (weights stored as float16); `dynamic` (int8 weights, float
  activations); `int8` (full integer, calibrated on training images; int8 or float I/O).
  Sparse models (>= 30% zero weights) are also converted with the converter's sparse-weight
  encoding and the smaller file is kept: the encoding can make a file larger.
- OpenVINO IR: `fp32`; `fp16` (weights compressed to float16); `int8` (NNCF post-training
  quantization of the OpenVINO model). Filters zeroed by a filter pruner are removed from
  the IR by OpenVINO's pruning transformation, so the file and the work really shrink.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.options import flag, internal
from edgeprune.runtime import captured_stderr, check_inference_precision
from edgeprune.vocab import CONVERT_PRECISIONS, CONVERTED_SUFFIXES, SWITCHES, check_fit

if TYPE_CHECKING:
    import tensorflow as tf

    from edgeprune.data import Dataset
    from edgeprune.folders import FolderDataset

# Default top-1 agreement a conversion must reach on the verification images. Float
# conversions only reorder arithmetic: anything below 99% is a broken conversion. Weight or
# full-integer quantization flips borderline images (measured 97% on a CIFAR ResNet-20 at
# int8), while a real fault (wrong scale, zero point or calibration range) falls towards
# chance, so 95% passes honest quantization with margin and still catches broken ones.
DEFAULT_MIN_AGREEMENT = {"fp32": 0.99, "fp16": 0.99, "dynamic": 0.95, "int8": 0.95}
# Weight sparsity from which the sparse TFLite encoding is tried beside the dense one.
SPARSE_THRESHOLD = 0.30
SCHEMA = "edgeprune.convert/1"


class VerificationError(EdgepruneError):
    """The converted model disagrees with its source more than allowed; nothing was written."""


@dataclass(frozen=True)
class ConvertConfig:
    """What to convert to and how to check it; validates itself when built."""

    target: str = flag(name="to")
    precision: str = "fp32"
    calibration: int = 300  # training images for int8 calibration
    int8_io: bool = flag(True, off="float-io")  # TFLite int8: int8 input/output tensors (False: float I/O)
    sparse: str = "auto"  # TFLite sparse-weight encoding: auto (keep the smaller) / on / off
    prune_filters: str = "auto"  # OpenVINO: remove all-zero filters (auto: when there are any)
    verify: int = 300  # test images to verify on; 0 skips verification
    min_agreement: float | None = None  # None: DEFAULT_MIN_AGREEMENT[precision]
    batch_size: int = internal(64)
    seed: int = 0
    # How the runtime computes during verification (edgeprune.vocab.INFERENCE_PRECISIONS);
    # "default": what it picks on this host, as deployed (OpenVINO: bf16 on AVX512_BF16/AMX CPUs).
    inference_precision: str = "default"

    def __post_init__(self) -> None:
        object.__setattr__(self, "inference_precision", check_inference_precision(self.inference_precision))
        if self.target not in CONVERT_PRECISIONS:
            raise EdgepruneError(f"unknown target format {self.target!r}; expected one of "
                                 f"{', '.join(CONVERT_PRECISIONS)}")
        if self.precision not in CONVERT_PRECISIONS[self.target]:
            raise EdgepruneError(
                f"unknown precision {self.precision!r} for {self.target}; expected one of "
                f"{', '.join(CONVERT_PRECISIONS[self.target])}")
        if self.calibration < 1:
            raise EdgepruneError(f"calibration must be at least 1 image, got {self.calibration}")
        if self.verify < 0:
            raise EdgepruneError(f"verify must be 0 (skip) or a positive number of images, got {self.verify}")
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            raise EdgepruneError(f"min agreement must be in [0, 1], got {self.min_agreement}")
        if self.batch_size < 1:
            raise EdgepruneError(f"batch size must be at least 1, got {self.batch_size}")
        for name in ("sparse", "prune_filters"):
            if getattr(self, name) not in SWITCHES:
                raise EdgepruneError(f"{name} must be one of {', '.join(SWITCHES)}, got {getattr(self, name)!r}")

    @property
    def suffix(self) -> str:
        return CONVERTED_SUFFIXES[self.target]

    @property
    def agreement_bound(self) -> float:
        return DEFAULT_MIN_AGREEMENT[self.precision] if self.min_agreement is None else self.min_agreement

    @property
    def needs_data(self) -> bool:
        return self.precision == "int8" or self.verify > 0


# --- helpers ------------------------------------------------------------------------------

def summarise_error(exc: BaseException, log_lines: Sequence[str] = ()) -> str:
    """One line from a converter's multi-line error: its first `error:` message if any."""
    text = "\n".join([str(exc), *log_lines])
    for match in re.finditer(r"error:\s*(.+)", text):
        message = match.group(1).strip()
        if message and not message.startswith("failed while converting"):
            return message[:200]
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first[:200]


def calibration_images(dataset: "Dataset | FolderDataset", count: int, *, seed: int = 0) -> np.ndarray:
    """`count` class-stratified training images, float32 in [0, 1] (only these are decoded)."""
    from edgeprune.data import stratified_indices

    y_train = dataset.labels("train")
    if len(y_train) == 0:
        dataset.split("train")  # the dataset's own one-line error for an empty split
    return dataset.take("train", stratified_indices(y_train, min(count, len(y_train)), seed=seed))[0]


def verification_split(dataset: "Dataset | FolderDataset", count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` class-stratified test images and labels (only these are decoded)."""
    from edgeprune.data import stratified_indices

    y_test = dataset.labels("test")
    if len(y_test) == 0:
        dataset.split("test")
    return dataset.take("test", stratified_indices(y_test, min(count, len(y_test)), seed=seed))


def compare_logits(source: np.ndarray, converted: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 agreement, |logit difference| and accuracy of both models on the same images."""
    diff = np.abs(source.astype(np.float64) - converted.astype(np.float64))
    return {
        "samples": int(len(labels)),
        "agreement": float((source.argmax(1) == converted.argmax(1)).mean()),
        "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_logit_diff": float(diff.mean()) if diff.size else 0.0,
        "source_accuracy": float((source.argmax(1) == labels).mean()),
        "converted_accuracy": float((converted.argmax(1) == labels).mean()),
    }


def _keras_logits(model: "tf.keras.Model", x: np.ndarray, batch_size: int) -> np.ndarray:
    from edgeprune.runtime import KerasPredictor

    return KerasPredictor(model=model).predict(x, batch_size)


# --- TFLite -------------------------------------------------------------------------------

def _tflite_bytes(model: "tf.keras.Model", precision: str, *, sparse: bool, calibration: np.ndarray | None,
                  int8_io: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = [] if precision == "fp32" else [tf.lite.Optimize.DEFAULT]
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        if calibration is None:
            raise EdgepruneError("int8 conversion needs calibration images")
        images = calibration.astype(np.float32)

        def representative():
            for index in range(len(images)):
                yield [images[index:index + 1]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with captured_stderr() as log, warnings.catch_warnings():
        # int8 I/O without input statistics is intended: the calibrated range is used.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs", category=UserWarning)
        try:
            return converter.convert()
        except Exception as exc:  # the converter raises many types, all multi-line
            failure = exc
    raise EdgepruneError(f"TFLite converter failed: {summarise_error(failure, log)}")


def convert_tflite(model: "tf.keras.Model", destination: Path, config: ConvertConfig, *,
                   sparsity: float, calibration: np.ndarray | None) -> dict:
    """Write the .tflite; with a sparse model, try the sparse encoding and keep the smaller."""
    dense = None
    if config.sparse != "on":
        dense = _tflite_bytes(model, config.precision, sparse=False, calibration=calibration,
                              int8_io=config.int8_io)
    try_sparse = config.sparse == "on" or (config.sparse == "auto" and sparsity >= SPARSE_THRESHOLD)
    encoded = None
    if try_sparse:
        encoded = _tflite_bytes(model, config.precision, sparse=True, calibration=calibration,
                                int8_io=config.int8_io)
    sparse_error = None if encoded is None else _tflite_load_error(encoded, destination, model.input_shape[1:])
    if sparse_error is not None and dense is None:
        raise EdgepruneError(f"the sparse-encoded TFLite model does not run ({sparse_error}); use --sparse auto or off")
    use_sparse = encoded is not None and sparse_error is None and (dense is None or len(encoded) < len(dense))
    chosen = encoded if use_sparse else dense
    assert chosen is not None  # dense is None only when the sparse encoding was tried and kept
    destination.write_bytes(chosen)
    return {
        "weight_sparsity": sparsity,
        "threshold": SPARSE_THRESHOLD,
        "mode": config.sparse,
        "dense_bytes": None if dense is None else len(dense),
        "sparse_bytes": None if encoded is None else len(encoded),
        "sparse_runs": None if encoded is None else sparse_error is None,
        "sparse_error": sparse_error,
        "used": use_sparse,
    }


def _tflite_load_error(content: bytes, destination: Path, input_shape) -> str | None:
    """Why the runtime cannot run `content` (None when it runs a batch of two images).

    Measured: LiteRT's XNNPACK delegate refuses sparse-encoded convolutions ("failed to
    delegate CONV_2D"), so a smaller sparse file is only kept when it actually runs.
    """
    from edgeprune.runtime import load

    trial = destination.with_name(f"trial-{destination.name}")
    trial.write_bytes(content)
    try:
        load(trial).predict(np.zeros((2, *input_shape), np.float32), 2)
    except EdgepruneError as exc:
        return str(exc).split(": ", 1)[-1][:200]
    finally:
        trial.unlink()
    return None


# --- OpenVINO -----------------------------------------------------------------------------

def conv_channels(ov_model) -> dict:
    """Convolutions in an OpenVINO model and the sum of their output channels."""
    convs = [op for op in ov_model.get_ordered_ops()
             if op.get_type_name() in ("Convolution", "GroupConvolution")]
    channels = 0
    for op in convs:
        dim = op.get_output_partial_shape(0)[1]  # OpenVINO convolutions are NCHW inside
        channels += int(dim.get_length()) if dim.is_static else 0
    return {"convolutions": len(convs), "output_channels": channels}


def convert_openvino(model: "tf.keras.Model", destination: Path, config: ConvertConfig, *,
                     zero_filters: int, calibration: np.ndarray | None, progress: bool = False) -> dict:
    """Write .xml + .bin; remove zeroed filters first, then quantize (int8) or compress (fp16)."""
    import openvino as ov

    failure: Exception | None = None
    with captured_stderr() as log:
        try:
            ov_model = ov.convert_model(model)
        except Exception as exc:
            failure = exc
    if failure is not None:
        raise EdgepruneError(f"OpenVINO model conversion failed: {summarise_error(failure, log)}")
    before = conv_channels(ov_model)
    apply = config.prune_filters == "on" or (config.prune_filters == "auto" and zero_filters > 0)
    if apply:
        from openvino._offline_transformations import apply_pruning_transformation

        apply_pruning_transformation(ov_model)
    after = conv_channels(ov_model)
    if config.precision == "int8":
        if calibration is None:
            raise EdgepruneError("int8 conversion needs calibration images")
        ov_model = _nncf_quantize(ov_model, calibration, progress=progress)
    ov_model.set_rt_info(config.precision, ["edgeprune", "precision"])
    ov.save_model(ov_model, str(destination), compress_to_fp16=config.precision == "fp16")
    return {
        "zero_filters": zero_filters,
        "mode": config.prune_filters,
        "applied": apply,
        "conv_channels_before": before["output_channels"],
        "conv_channels_after": after["output_channels"],
        "convolutions": after["convolutions"],
    }


def _nncf_quantize(ov_model, calibration: np.ndarray, *, progress: bool):
    """NNCF post-training quantization (int8 weights and activations) on the OpenVINO model."""
    import io
    import logging

    import nncf

    nncf.set_log_level(logging.ERROR)
    images = calibration.astype(np.float32)
    # One image per item: NNCF's statistics assume the batch dimension is 1.
    dataset = nncf.Dataset([images[index:index + 1] for index in range(len(images))])
    quiet = contextlib.ExitStack()
    if not progress:  # NNCF draws its own progress bars
        quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
        quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
    with quiet:
        try:
            # Full bias correction: measured on a CIFAR ResNet-20, top-1 agreement with
            # the fp32 IR 0.978 against 0.940 with NNCF's default fast bias correction.
            return nncf.quantize(ov_model, dataset, subset_size=len(images),
                                 preset=nncf.QuantizationPreset.PERFORMANCE, fast_bias_correction=False)
        except Exception as exc:
            failure = exc
    raise EdgepruneError(f"NNCF quantization failed: {summarise_error(failure)}")


# --- the whole conversion -----------------------------------------------------------------

def report_path_for(output: str | os.PathLike) -> Path:
    """The report beside a converted model: m.tflite -> m.tflite.json (formats never collide)."""
    output = Path(output)
    return output.with_name(output.name + ".json")


def _move_into_place(converted: Path, output: Path) -> None:
    """Move the converted file(s) to `output`; an IR's .bin first, so the .xml never dangles."""
    if converted.suffix == ".xml":
        os.replace(converted.with_suffix(".bin"), output.with_suffix(".bin"))
    os.replace(converted, output)


def convert_model(source: str | os.PathLike, output: str | os.PathLike, config: ConvertConfig, *,
                  dataset: "Dataset | FolderDataset | None" = None, dataset_spec: str | None = None,
                  allow_unsafe: bool = False, progress: bool = True, input_range: str | None = None) -> dict:
    """Convert `source` (.h5) to `output`, verify it, move it into place and write its report
    (`report_path_for(output)`); return the report.

    The converted model takes what the source takes: calibration and verification images
    ([0, 1]) are mapped to the model's input range (declared, recorded or detected), which the
    report records so `runtime.load` feeds the converted model the same way.

    Raises VerificationError (nothing written) when top-1 agreement on `config.verify` test
    images is below `config.agreement_bound`.
    """
    from edgeprune.inputrange import announce, resolve_input_range
    from edgeprune.io import sha256_file, versions, write_json
    from edgeprune.modelio import load_keras_model, read_metadata
    from edgeprune.modelstats import layer_stats, model_stats
    from edgeprune.progress import progress_task
    from edgeprune.runtime import file_bytes, load

    source, output = Path(source), Path(output)
    if output.suffix.lower() != config.suffix:
        raise EdgepruneError(f"{output}: a {config.target} model must end in {config.suffix}")
    if config.needs_data and dataset is None:
        why = "int8 calibration" if config.precision == "int8" else "verification"
        raise EdgepruneError(f"{why} needs data: pass a dataset (--dataset)"
                             + (" or --no-verify" if config.precision != "int8" else ""))
    started = time.perf_counter()
    steps = 2 + (config.verify > 0)
    with progress_task(f"convert -> {config.target} {config.precision}", steps, enabled=progress) as advance:
        model = load_keras_model(source, allow_unsafe=allow_unsafe)
        if dataset is not None:
            check_fit(dataset, input_shape=model.input_shape[1:], num_classes=int(model.output_shape[-1]),
                      model=source.name, hint="; pass the dataset it was trained on with --dataset")
        stats = model_stats(model)
        zero_filters = sum(layer.filters_zero for layer in layer_stats(model)
                           if layer.kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"))
        resolved = resolve_input_range(input_range, metadata=read_metadata(source), model=model)
        announce(resolved)
        calibration = (resolved.input_range.to_model(calibration_images(dataset, config.calibration, seed=config.seed))
                       if config.precision == "int8" and dataset is not None else None)
        advance(1, "loaded")
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as tmp_dir:
            converted = Path(tmp_dir) / output.name
            convert_started = time.perf_counter()
            if config.target == "tflite":
                details = {"sparse_encoding": convert_tflite(model, converted, config, sparsity=stats["sparsity"],
                                                             calibration=calibration)}
            else:
                details = {"filter_pruning": convert_openvino(model, converted, config, zero_filters=zero_filters,
                                                              calibration=calibration, progress=progress)}
            convert_seconds = time.perf_counter() - convert_started
            advance(1, "converted")
            predictor = load(converted, inference_precision=config.inference_precision)
            verification: dict = {"skipped": True}
            if config.verify > 0 and dataset is not None:
                x_verify, y_verify = verification_split(dataset, config.verify, seed=config.seed)
                x_verify = resolved.input_range.to_model(x_verify)
                figures = compare_logits(_keras_logits(model, x_verify, config.batch_size),
                                         predictor.predict(x_verify, config.batch_size), y_verify)
                bound = config.agreement_bound
                verification = {**figures, "min_agreement": bound, "passed": figures["agreement"] >= bound,
                                "inference_precision": predictor.info.get("inference_precision"),
                                "inference_precision_requested": config.inference_precision,
                                "delegate": predictor.info.get("delegate")}
                advance(1, f"agreement {figures['agreement']:.3f}")
                if not verification["passed"]:
                    raise VerificationError(
                        f"{config.target} {config.precision} (running at "
                        f"{predictor.info.get('inference_precision')}) agrees with {source.name} on "
                        f"{figures['agreement']:.1%} of {figures['samples']} test images (< {bound:.0%}); "
                        f"max |logit diff| {figures['max_abs_logit_diff']:.3g}, mean "
                        f"{figures['mean_abs_logit_diff']:.3g}; accuracy {figures['source_accuracy']:.3f} -> "
                        f"{figures['converted_accuracy']:.3f}; nothing written (--no-verify to keep it anyway)")
            from edgeprune.info import gzip_bytes

            output_bytes, output_gzip = file_bytes(converted), gzip_bytes(converted)
            output_sha256 = sha256_file(converted)
            weights = converted.with_suffix(".bin")  # an IR's weights: runtime.load checks the pair
            output_bin_sha256 = sha256_file(weights) if converted.suffix == ".xml" else None
            _move_into_place(converted, output)
    source_bytes = file_bytes(source)
    recorded_fingerprint = read_metadata(source).get("dataset_fingerprint")
    report = {
        "schema": SCHEMA,
        "source": str(source),
        "source_sha256": sha256_file(source),
        "output": str(output),
        "output_sha256": output_sha256,
        "output_bin_sha256": output_bin_sha256,
        "format": config.target,
        "precision": config.precision,
        "config": asdict(config),
        "sizes": {"source_bytes": source_bytes, "output_bytes": output_bytes,
                  "output_gzip_bytes": output_gzip,
                  "ratio": output_bytes / source_bytes if source_bytes else None},
        "model": {"params": stats["params"], "weight_sparsity": stats["sparsity"],
                  "zero_filters": zero_filters, "input_shape": list(model.input_shape[1:]),
                  "num_classes": int(model.output_shape[-1])},
        **details,
        "int8_io": config.int8_io if (config.target, config.precision) == ("tflite", "int8") else None,
        "calibration": None if calibration is None else {
            "images": int(len(calibration)), "split": "train", "seed": config.seed},
        "dataset": None if dataset is None else {
            "spec": dataset_spec or dataset.name, "name": dataset.name,
            "test_fingerprint": dataset.fingerprint("test"), **dataset.record(),
            "matches_model_record": (None if not recorded_fingerprint
                                     else recorded_fingerprint == dataset.fingerprint("test"))},
        "verification": verification,
        "input_range": resolved.record(),
        "runtime": predictor.info["runtime"],
        "versions": versions(),
        "seconds": {"convert": round(convert_seconds, 3), "total": round(time.perf_counter() - started, 3)},
    }
    write_json(report_path_for(output), report)
    return report
