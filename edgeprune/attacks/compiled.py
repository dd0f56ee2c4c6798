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
