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
