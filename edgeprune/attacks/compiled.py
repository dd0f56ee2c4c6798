"""One compile cache for every attack's `tf.function`s, keyed by the logits function.

Attacks compile their loops once per `model_fn` (and per setting: loss, norm, image shape)
so that batches, restarts and target classes reuse one trace. The cache holds `model_fn`
weakly (a model used for an attack can be freed) and the compiled functions reach it only
through a weak reference (an entry must not keep its own key alive). Whoever calls an
attack holds `model_fn` for the duration of the call — `runner.logits_function` keeps the
function on its Keras model, so a model and its logits function live and die together (a
weakly held *model* once broke `evaluate --autoattack`: the model was collected mid-attack).

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_CACHE: weakref.WeakKeyDictionary[Any, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


def weak_callable(fn: Callable) -> Callable:
    """`fn` through a weak reference where possible; a clear error if called after it died."""
    try:
        ref = weakref.ref(fn)
    except TypeError:
        return fn

    def call(*args: Any, **kwargs: Any) -> Any:
        target = ref()
        if target is None:
            raise RuntimeError("the logits function of a cached compiled attack was freed while in use")
        return target(*args, **kwargs)

    return call


def cached(model_fn: Callable, key: Hashable, build: Callable[[Callable], T]) -> T:
    """`build(weak model_fn)` once per (model_fn, key); rebuilt each call if model_fn is not
    weak-referenceable (then it is passed as is)."""
    try:
        per_model = _CACHE.setdefault(model_fn, {})
    except TypeError:
        return build(model_fn)
    if key not in per_model:
        per_model[key] = build(weak_callable(model_fn))
    return per_model[key]


def logits_of(model_fn: Callable, x: Any, batch_size: int = 256) -> Any:
    """float32 numpy logits of a batch through one compiled forward per (model_fn, image shape).

    Any batch size runs on the same trace; eager Keras calls cost far more per call, and the
    attacks call this for every clean check, target class and Square query.
    """
    import numpy as np
    import tensorflow as tf

    x = np.asarray(x, np.float32)
    shape = tuple(x.shape[1:])

    def build(fn: Callable) -> Callable:
        return tf.function(lambda t: tf.cast(fn(t), tf.float32),
                           input_signature=[tf.TensorSpec((None, *shape), tf.float32)])

    forward = cached(model_fn, ("forward", shape), build)
    outputs = [forward(tf.constant(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    if not outputs:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(outputs)


def tflite_forward(model_fn: Callable, shape: tuple[int, ...],
                   threads: int | None = None) -> Callable[[Any], Any] | None:
    """float32 numpy logits through model_fn converted to an in-memory TFLite model, or None.

    Forward-only attacks (Square: thousands of queries of the points still robust) spend all
    their time in the forward; the TFLite conversion (batch norm folded into the convolutions,
    float32 XNNPACK kernels) runs a small CNN's batch in about half TensorFlow's CPU time
    (ResNet-8, 55 CIFAR images: 20 vs 37 ms on one thread), with logits equal to a few 1e-6.
    The interpreter is resized only when the number of rows changes. Converted once per
    (model_fn, image shape, threads); None when the conversion or the interpreter fails
    (an op TFLite lacks, a stateful layer): callers then keep the TensorFlow forward.
    """
    import numpy as np

    def build(fn: Callable) -> Callable[[Any], Any] | None:
        import tensorflow as tf

        from edgeprune.runtime import TFLitePredictor, _tflite_interpreter_class, captured_stderr

        forward = tf.function(lambda t: tf.cast(fn(t), tf.float32))
        try:
            concrete = forward.get_concrete_function(tf.TensorSpec((None, *shape), tf.float32))
            with captured_stderr():  # the converter's MLIR pass log and LiteRT's delegate banner
                blob = tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()
                interpreter_class, _, _, _ = _tflite_interpreter_class()
                interpreter = interpreter_class(model_content=blob, num_threads=threads)
                interpreter.allocate_tensors()
            outputs = interpreter.get_output_details()
            if len(interpreter.get_input_details()) != 1 or len(outputs) != 1:
                return None
        except Exception:  # any conversion failure: the TensorFlow forward serves instead
            return None
        predictor = TFLitePredictor(interpreter=interpreter, path=Path("logits.tflite"),
                                    info={"input_shape": list(shape), "num_classes": int(outputs[0]["shape"][-1])})

        def predict(x: Any) -> Any:
            x = np.asarray(x, np.float32)
            return predictor.predict(x, max(len(x), 1))

        return predict

    return cached(model_fn, ("tflite", tuple(shape), threads), build)
