"""The one attack runner: every attack goes through `run_attack`, which keeps the invariants.

Attacks only search (see the contract in `edgeprune.attacks.registry`). Here, once for all
of them: inputs are checked to be float images in [0, 1] that fit the model; a softmax head
is detected and stripped so attacks see logits; work is batched with a progress bar and
per-batch seeds; every x_adv is projected onto the eps-ball in the attack's norm and onto
[0, 1]; success, accuracy and per-sample Linf/L2 norms are measured on the source model; and
finished batches are checkpointed to a partial file so an interrupted run resumes, and only
resumes the same run (same config, inputs and model weights).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.attacks.compiled import logits_of
from edgeprune.attacks.norms import perturbation_norms, project, project_delta
from edgeprune.attacks.registry import DEFAULT_EPS, AttackSpec, get_attack, normalize_norm
from edgeprune.errors import EdgepruneError
from edgeprune.io import atomic_path

PARTIAL_VERSION = 1


@dataclass(frozen=True)
class AttackConfig:
    """A fully resolved, validated attack setting: what a transfer set records."""

    attack: str
    norm: str
    eps: float | None
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 128

    def __post_init__(self) -> None:
        spec = get_attack(self.attack)
        norm = normalize_norm(self.norm)
        object.__setattr__(self, "norm", norm)
        if norm not in spec.norms:
            raise EdgepruneError(
                f"attack {self.attack} supports norm {' or '.join(spec.norms)}, got {norm}")
        if self.eps is not None:
            eps = float(self.eps)
            if not np.isfinite(eps) or eps < 0:
                raise EdgepruneError(f"eps must be a finite number >= 0, got {self.eps}")
            if norm == "linf" and eps > 1:  # images are in [0, 1]: a larger L-inf bound means "anything"
                raise EdgepruneError(f"L-inf eps {eps:g} exceeds 1, the whole [0, 1] pixel range "
                                     "(eps is in [0, 1] units: 8/255, not 8)")
            object.__setattr__(self, "eps", eps)
        elif spec.bounded:
            raise EdgepruneError(f"attack {self.attack} is bounded: it needs eps > 0")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise EdgepruneError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.batch_size < 1:
            raise EdgepruneError(f"batch_size must be >= 1, got {self.batch_size}")
        object.__setattr__(self, "params", spec.resolve(self.params))

    @classmethod
    def create(cls, attack: str, *, eps: float | None = None, norm: str | None = None, seed: int = 0,
               params: Mapping[str, Any] | None = None, batch_size: int = 128) -> AttackConfig:
        """Fill the defaults: the attack's first norm; eps 8/255 (Linf) or 0.5 (L2) when bounded."""
        spec = get_attack(attack)
        norm = normalize_norm(norm) if norm is not None else spec.norms[0]
        if eps is None and spec.bounded:
            eps = DEFAULT_EPS[norm]
        return cls(attack=attack, norm=norm, eps=eps, seed=seed, params=dict(params or {}),
                   batch_size=batch_size)

    @property
    def spec(self) -> AttackSpec:
        return get_attack(self.attack)

    def as_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "norm": self.norm, "eps": self.eps, "seed": int(self.seed),
                "params": dict(self.params), "batch_size": self.batch_size,
                "kind": self.spec.kind, "backend": self.spec.backend}


@dataclass(frozen=True)
class AttackResult:
    """x_adv with what was measured on the source model."""

    config: AttackConfig
    x_adv: np.ndarray
    y: np.ndarray
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    norms_linf: np.ndarray
    norms_l2: np.ndarray
    seconds: float
    perturbation: np.ndarray | None = None
    softmax_stripped: bool = False
    resumed_images: int = 0

    @property
    def clean_accuracy(self) -> float:
        return float(np.mean(self.clean_pred == self.y))

    @property
    def adversarial_accuracy(self) -> float:
        return float(np.mean(self.adv_pred == self.y))

    @property
    def success_rate(self) -> float:
        """Among images the model classified correctly, the fraction the attack flipped."""
        correct = self.clean_pred == self.y
        return float(np.mean(self.adv_pred[correct] != self.y[correct])) if correct.any() else 0.0

    def summary(self) -> dict[str, Any]:
        def stats(values: np.ndarray) -> dict[str, float]:
            return {"mean": float(values.mean()), "median": float(np.median(values)),
                    "max": float(values.max())}

        changed = self.norms_linf > 0
        return {
            "images": int(len(self.y)),
            "clean_accuracy": self.clean_accuracy,
            "adversarial_accuracy": self.adversarial_accuracy,
            "success_rate": self.success_rate,
            "perturbation_linf": stats(self.norms_linf),
            "perturbation_l2": stats(self.norms_l2),
            "perturbed_images": int(changed.sum()),
            "seconds": round(self.seconds, 3),
            "images_per_second": round(len(self.y) / self.seconds, 2) if self.seconds > 0 else None,
            "softmax_stripped": self.softmax_stripped,
            "resumed_images": self.resumed_images,
        }


# --- helpers ------------------------------------------------------------------------------------
def check_images(x: np.ndarray, y: np.ndarray, *, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 NHWC in [0, 1] and int64 labels of equal length, or a one-line error."""
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if x.ndim != 4:
        raise EdgepruneError(f"images must be a batch NHWC (4-D), got shape {x.shape}")
    if len(x) == 0:
        raise EdgepruneError("no images to attack (empty split or --limit 0)")
    if len(x) != len(y):
        raise EdgepruneError(f"{len(x)} images but {len(y)} labels")
    if not np.issubdtype(x.dtype, np.floating):
        raise EdgepruneError(f"images must be float in [0, 1], got dtype {x.dtype} (divide uint8 by 255)")
    if not np.all(np.isfinite(x)):
        raise EdgepruneError("images contain NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        raise EdgepruneError(f"images must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    if not np.issubdtype(y.dtype, np.integer):
        raise EdgepruneError(f"labels must be integers, got dtype {y.dtype}")
    if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
        raise EdgepruneError(f"labels must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    return x.astype(np.float32, copy=False), y.astype(np.int64)


def batch_seed(seed: int, start: int) -> int:
    """A seed for the batch starting at `start`: independent of batch order and of resumes."""
    return int(np.random.SeedSequence([int(seed), int(start)]).generate_state(1)[0])


def logits_function(model, probe: np.ndarray | None = None) -> tuple[Callable, bool]:
    """(model_fn returning logits, whether a softmax was stripped).

    A Keras model whose last layer applies softmax is rebuilt to end before it. Any other
    callable whose outputs on `probe` are non-negative and sum to 1 is wrapped in log():
    softmax(log p) = p, so the logits describe the same classifier and keep their gradients.
    """
    import tensorflow as tf

    if isinstance(model, tf.keras.Model):
        cached = getattr(model, _LOGITS_ATTR, None)
        if cached is not None:  # the same function each time: compiled attack loops are reused
            call, stripped = cached
            if stripped:
                _warn_softmax()
            return call, stripped
        logits_model = _strip_softmax_layer(model)
        if logits_model is not None:
            _warn_softmax()
            call = _keras_call(logits_model)
            object.__setattr__(model, _LOGITS_ATTR, (call, True))  # bypass Keras' attribute tracking
            return call, True
        call = _keras_call(model)
        object.__setattr__(model, _LOGITS_ATTR, (call, False))
    else:
        call = model
    if probe is not None and len(probe):
        out = np.asarray(call(tf.constant(probe[:32], tf.float32)), np.float64)
        sums = out.sum(axis=1)
        if out.min() >= 0 and np.allclose(sums, 1.0, atol=1e-3):
            warnings.warn("the model's outputs are probabilities (they sum to 1): attacking "
                          "log(probabilities) as logits", stacklevel=3)
            return (lambda t: tf.math.log(tf.maximum(call(t), 1e-30))), True
    return call, False


# The logits function is cached on the model itself: model -> model_fn -> model is a cycle the
# garbage collector frees with the model, and the caller may keep only model_fn.
_LOGITS_ATTR = "_edgeprune_logits_fn"


def _keras_call(model) -> Callable:
    """model(t, training=False), holding `model` for as long as the function lives."""

    def model_fn(t):
        return model(t, training=False)

    return model_fn


def _warn_softmax() -> None:
    warnings.warn("the model ends in softmax: attacking its logits (softmax layer stripped); "
                  "gradient attacks on probabilities are weakened by saturation", stacklevel=4)


def _strip_softmax_layer(model):
    import tensorflow as tf

    last = model.layers[-1]
    if isinstance(last, tf.keras.layers.Softmax) or (
            isinstance(last, tf.keras.layers.Activation)
            and getattr(last.activation, "__name__", "") == "softmax"):
        return tf.keras.Model(model.inputs, last.input)
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") == "softmax":
        config = last.get_config()
        config["activation"] = "linear"
        config["name"] = f"{last.name}_logits"
        twin = last.__class__.from_config(config)
        outputs = twin(last.input)
        twin.set_weights(last.get_weights())
        return tf.keras.Model(model.inputs, outputs)
    return None


def weights_digest(model) -> str:
    """sha256 of a Keras model's weights (ties a resume file to the model), '' otherwise."""
    digest = hashlib.sha256()
    weights = getattr(model, "weights", None)
    if weights is None:
        return ""
    for weight in weights:
        digest.update(np.ascontiguousarray(np.asarray(weight)).tobytes())
    return digest.hexdigest()


def run_key(config: AttackConfig, x: np.ndarray, y: np.ndarray, model_digest: str) -> str:
    digest = hashlib.sha256(json.dumps(config.as_dict(), sort_keys=True).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    digest.update(model_digest.encode())
    digest.update(str(PARTIAL_VERSION).encode())
    return digest.hexdigest()


def _load_partial(path: Path | None, key: str, x: np.ndarray) -> tuple[np.ndarray, int, np.ndarray | None]:
    """(x_adv buffer, images already done, universal perturbation) from a matching partial file."""
    x_adv = np.empty_like(x)
    if path is None or not path.exists():
        return x_adv, 0, None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["key"]) != key:
                warnings.warn(f"{path}: partial results of a different run (config, data or model "
                              "changed); starting afresh", stacklevel=3)
                return x_adv, 0, None
            done = int(saved["done"])
            x_adv[:done] = saved["x_adv"][:done]
            perturbation = saved["perturbation"] if saved["perturbation"].size else None
            return x_adv, done, perturbation
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        # A truncated or corrupt resume file (killed mid-write elsewhere, disk full) is discarded.
        warnings.warn(f"{path}: unreadable partial file (truncated or corrupt); discarded, starting afresh",
                      stacklevel=3)
        path.unlink(missing_ok=True)
        return np.empty_like(x), 0, None


def _save_partial(path: Path, key: str, x_adv: np.ndarray, done: int, perturbation: np.ndarray | None) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, key=np.array(key), done=np.array(done, np.int64), x_adv=x_adv[:done],
                     perturbation=np.zeros(0, np.float32) if perturbation is None else perturbation)


# --- the runner ---------------------------------------------------------------------------------
def run_attack(model, x: np.ndarray, y: np.ndarray, config: AttackConfig, *, progress: bool = False,
               partial_path: str | Path | None = None) -> AttackResult:
    """Attack (x, y) on `model` (a Keras model or a logits callable) under `config`.

    `partial_path`: where finished batches are checkpointed; a later call with the same
    config, inputs and model weights resumes from it. The caller deletes it once the final
    output is safely written.
    """
    import tensorflow as tf

    from edgeprune.progress import progress_task

    spec = config.spec
    num_classes = _num_classes(model)
    x, y = check_images(x, y, num_classes=num_classes)
    _check_shape(model, x)
    if spec.max_images is not None and len(x) > spec.max_images:
        raise EdgepruneError(
            f"attack {spec.name} works one image at a time (slow): at most {spec.max_images} images, "
            f"got {len(x)}; pass --limit")
    model_fn, stripped = logits_function(model, probe=x)
    started = time.perf_counter()
    partial = Path(partial_path) if partial_path is not None else None
    key = run_key(config, x, y, weights_digest(model))
    x_adv, done, perturbation = _load_partial(partial, key, x)
    resumed = done
    fn = spec.function()
    eps, norm = config.eps, config.norm

    if eps == 0.0:
        x_adv, done = x.copy(), len(x)
    elif spec.kind == "universal" and perturbation is None:
        if eps is None:
            raise EdgepruneError(f"attack {spec.name} is universal: it needs eps > 0")
        fit = np.sort(np.random.default_rng(config.seed).permutation(len(x))[:config.params["fit_size"]])
        raw = np.asarray(fn(model_fn, tf.constant(x[fit]), tf.constant(y[fit]), eps=eps, norm=norm,
                            seed=batch_seed(config.seed, len(x) + 1), **config.params), np.float64)
        if raw.shape != x.shape[1:]:
            raise EdgepruneError(f"attack {spec.name} returned a perturbation of shape {raw.shape}, "
                                 f"expected {x.shape[1:]}")
        perturbation = project_delta(raw, eps, norm, batched=False).astype(np.float32)
        if partial is not None:
            _save_partial(partial, key, x_adv, 0, perturbation)

    with progress_task(f"{spec.name} ({norm}, eps {eps if eps is not None else 'none'})", len(x),
                       enabled=progress) as advance:
        advance(done, "resumed" if done else "")
        for start in range(done, len(x), config.batch_size):
            stop = min(start + config.batch_size, len(x))
            xb, yb = x[start:stop], y[start:stop]
            if spec.kind == "universal":
                raw = xb + perturbation
            else:
                raw = fn(model_fn, tf.constant(xb), tf.constant(yb), eps=eps, norm=norm,
                         seed=batch_seed(config.seed, start), **config.params)
                raw = np.asarray(raw)
                if raw.shape != xb.shape:
                    raise EdgepruneError(f"attack {spec.name} returned shape {raw.shape}, expected {xb.shape}")
            x_adv[start:stop] = project(raw, xb, eps, norm)
            if partial is not None:
                _save_partial(partial, key, x_adv, stop, perturbation)
            advance(stop - start)

    clean_pred = _predict(model_fn, x, config.batch_size)
    adv_pred = _predict(model_fn, x_adv, config.batch_size)
    linf, l2 = perturbation_norms(x_adv, x)
    return AttackResult(config=config, x_adv=x_adv, y=y, clean_pred=clean_pred, adv_pred=adv_pred,
                        norms_linf=linf, norms_l2=l2, seconds=time.perf_counter() - started,
                        perturbation=perturbation, softmax_stripped=stripped, resumed_images=resumed)


def attack_batch(model, x, y, attack: str, *, eps: float | None = None, norm: str | None = None,
                 seed: int = 0, **params) -> np.ndarray:
    """Convenience: x_adv for (x, y) with defaults filled in (eps=0 returns x unchanged)."""
    config = AttackConfig.create(attack, eps=eps, norm=norm, seed=seed, params=params,
                                 batch_size=max(1, len(x)))
    return run_attack(model, x, y, config).x_adv


def _predict(model_fn: Callable, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Predicted classes through a compiled forward pass (eager Keras calls cost seconds here)."""
    return logits_of(model_fn, x, batch_size).argmax(axis=1).astype(np.int64)


def _num_classes(model) -> int | None:
    shape = getattr(model, "output_shape", None)
    return int(shape[-1]) if shape is not None and shape[-1] is not None else None


def _check_shape(model, x: np.ndarray) -> None:
    shape = getattr(model, "input_shape", None)
    if shape is None:
        return
    expected = tuple(shape[1:])
    if len(expected) != x.ndim - 1 or any(
            e is not None and e != a for e, a in zip(expected, x.shape[1:], strict=True)):
        raise EdgepruneError(f"images of shape {tuple(x.shape[1:])} do not fit the model's input "
                             f"{tuple(expected)}")
