"""AutoAttack-style ensemble (Croce & Hein, ICML 2020) for Keras, TFLite and OpenVINO models.

A single attack with a single step size overestimates robustness (the second paper measured
2-6 points for PGD-only evaluations). AutoAttack runs four complementary attacks in
sequence, each only on the points the previous ones left robust, and keeps each point's
worst case, so the reported robust accuracy is the minimum over all attacks run:

1. APGD-CE  — step-size-free PGD on cross-entropy;
2. APGD-T   — targeted DLR loss towards each of the top classes (scale-invariant loss);
3. FAB-T    — targeted minimum-norm boundary attack (L-inf; counted when within eps);
4. Square   — black-box random search on the logits (no gradients at all).

Versions (L-inf; L2 runs the two APGD stages only, since FAB and Square here are L-inf):

  standard  APGD-CE 100 steps; APGD-T 9 targets x 100 steps; FAB-T 9 targets x 100 steps;
            Square 5000 queries, p_init 0.8 (AutoAttack's standard settings)
  fast      APGD-CE 50 steps; APGD-T 3 targets x 50 steps; FAB-T 3 targets x 50 steps;
            Square 1000 queries — for CPU-sized checks; it can only report a robust accuracy
            higher than (or equal to) what `standard` would on the same points.

White-box stages need a Keras model (`model_fn` = logits); a `.tflite` / `.xml` model has
only `predict`, so only Square runs against it (the report marks the others skipped).

Cost: each APGD / FAB-T run (all steps of one target class) is one compiled TF loop over
every point still robust, traced once per model and image shape (`attacks.compiled`); every
forward-only query (clean check, success judging) goes through one compiled forward. Square
(5000 queries of the points still robust: nearly all its time is the forward) queries a Keras
model through the model's in-memory TFLite conversion (`square_forward`: about half the CPU
time of TensorFlow's forward on small CNNs, logits equal to ~1e-6; used only where it agrees
with the TensorFlow logits, and success is still judged by the TensorFlow forward); a runtime
model's queries are padded to a few batch sizes (`bucketed_predict`) so its interpreter is not
re-allocated or recompiled for every point Square fools.
torchattacks' `AutoAttack(version="standard")` runs its gradient stages at 10 steps, not 100:
compare like with like (benchmarks/autoattack_reference.py).
`autoattack(model_fn, x, y, *, eps, norm, seed, version)` follows the attack contract
(transfer sets); `run_autoattack` returns the per-stage report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeprune.attacks import checks
from edgeprune.attacks.apgd import apgd
from edgeprune.attacks.compiled import logits_of
from edgeprune.attacks.fab import fab
from edgeprune.attacks.norms import Norm, parse_norm, project
from edgeprune.attacks.square import square_attack

SCHEMA = "edgeprune.autoattack/1"
STAGES = ("apgd-ce", "apgd-t", "fab-t", "square")
VERSIONS: dict[str, dict[str, dict[str, Any]]] = {
    "standard": {
        "apgd-ce": {"steps": 100, "n_restarts": 1},
        "apgd-t": {"steps": 100, "n_target_classes": 9},
        "fab-t": {"steps": 100, "n_target_classes": 9},
        "square": {"n_queries": 5000, "p_init": 0.8},
    },
    "fast": {
        "apgd-ce": {"steps": 50, "n_restarts": 1},
        "apgd-t": {"steps": 50, "n_target_classes": 3},
        "fab-t": {"steps": 50, "n_target_classes": 3},
        "square": {"n_queries": 1000, "p_init": 0.8},
    },
    # What torchattacks 3.5.1 runs as AutoAttack(version="standard"): its APGD, APGD-T and FAB
    # classes keep their default of 10 steps (Croce & Hein's standard is 100); 9 targets, Square
    # 5000 queries. Offered so that the two can be compared doing the same work.
    "torchattacks": {
        "apgd-ce": {"steps": 10, "n_restarts": 1},
        "apgd-t": {"steps": 10, "n_target_classes": 9},
        "fab-t": {"steps": 10, "n_target_classes": 9},
        "square": {"n_queries": 5000, "p_init": 0.8},
    },
}
LINF_ONLY = ("fab-t", "square")
# Square's queries on a Keras model: "auto" = through its in-memory TFLite conversion (about
# twice TensorFlow's speed on CPU; checked against the TensorFlow logits first, TensorFlow
# otherwise), "tensorflow" = the compiled TensorFlow forward. Success is judged by `predict`.
SQUARE_FORWARDS = ("auto", "tensorflow")
# Below this many point-queries (points x queries) "auto" keeps TensorFlow: the conversion
# (2-3 s for a ResNet-8) would cost more than it saves (~0.2 ms per point-query there).
SQUARE_TFLITE_MIN_WORK = 20_000


@dataclass(frozen=True)
class AutoAttackConfig:
    """What an AutoAttack evaluation runs; validated when built."""

    eps: float
    norm: str = "linf"
    version: str = "standard"
    seed: int = 0
    batch_size: int = 128
    stages: tuple[str, ...] = STAGES
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    square_forward: str = "auto"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {self.eps}")
        object.__setattr__(self, "norm", parse_norm(self.norm).value)
        if self.version not in VERSIONS:
            raise ValueError(f"version must be one of {', '.join(VERSIONS)}, got {self.version!r}")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ValueError(f"stages must be a non-empty subset of {', '.join(STAGES)}, got {self.stages}")
        object.__setattr__(self, "stages", tuple(s for s in STAGES if s in self.stages))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        bad = [s for s in self.overrides if s not in STAGES]
        if bad:
            raise ValueError(f"overrides for unknown stages {bad}; stages are {', '.join(STAGES)}")
        if self.square_forward not in SQUARE_FORWARDS:
            raise ValueError(f"square_forward must be one of {', '.join(SQUARE_FORWARDS)}, got {self.square_forward!r}")

    def params(self, stage: str) -> dict[str, Any]:
        return {**VERSIONS[self.version][stage], **dict(self.overrides.get(stage, {}))}

    def as_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "norm": self.norm, "version": self.version, "seed": self.seed,
                "batch_size": self.batch_size, "stages": list(self.stages), "square_forward": self.square_forward,
                "params": {s: self.params(s) for s in self.stages}}


@dataclass(frozen=True)
class StageResult:
    name: str
    status: str              # "ran" or "skipped: why"
    attacked: int            # points still robust when the stage started
    fooled: int              # of those, points it flipped
    robust_accuracy: float   # after this stage, over all points
    seconds: float
    forward: str = ""        # Square: what ran its queries ("tflite", "tensorflow", "predict")


@dataclass(frozen=True)
class AutoAttackResult:
    config: AutoAttackConfig
    x_adv: np.ndarray
    y: np.ndarray
    clean_pred: np.ndarray
    robust: np.ndarray       # bool per point: survived every stage
    fooled_by: np.ndarray    # per point: "clean" (misclassified), a stage name, or ""
    stages: tuple[StageResult, ...]
    warnings: tuple[str, ...] = ()

    @property
    def clean_accuracy(self) -> float:
        return float(np.mean(self.clean_pred == self.y))

    @property
    def robust_accuracy(self) -> float:
        return float(np.mean(self.robust))

    def summary(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "config": self.config.as_dict(),
            "images": int(len(self.y)),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "stages": [{"name": s.name, "status": s.status, "attacked": s.attacked, "fooled": s.fooled,
                        "robust_accuracy": s.robust_accuracy, "seconds": round(s.seconds, 3),
                        **({"forward": s.forward} if s.forward else {})}
                       for s in self.stages],
            "warnings": list(self.warnings),
        }


def _seed(seed: int, stage: int, start: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(stage), int(start)]).generate_state(1)[0])


def numpy_predict(model_fn: Callable, batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """A numpy logits function from a TF `model_fn` (compiled once, batched): Square's interface.

    The closure holds `model_fn` (and so its model) for as long as the caller keeps it.
    """
    def predict(x: np.ndarray) -> np.ndarray:
        return logits_of(model_fn, x, batch_size)

    return predict


def bucket_size(n: int, batch_size: int, last: int = 0) -> int:
    """The batch a query of n rows runs at: the last one while n fills more than half of it,
    else n itself (at most `batch_size`). A shrinking sequence of queries (Square's points still
    robust) then meets at most log2(first) + 1 shapes, each at most twice its rows."""
    if n >= batch_size:
        return batch_size
    return last if last // 2 < n <= last else n


def bucketed_predict(predict_fn: Callable[[np.ndarray, int], np.ndarray],
                     batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """A runtime model's `predict(x, batch_size)` with every query padded to a few batch sizes.

    Square queries the points still robust, one fewer every time one is fooled; a TFLite
    interpreter re-allocates and an OpenVINO model recompiles for every new batch size, so a
    query is padded (repeating its last row) to the last batch size while it fills more than
    half of it (`bucket_size`): Square's first queries run unpadded, and a run meets at most
    log2(points) + 1 shapes. Rows are independent, so the logits are the same.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    last = [0]

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        n = len(x)
        if n == 0 or n >= batch_size:
            return np.asarray(predict_fn(x, batch_size), np.float32)
        size = last[0] = bucket_size(n, batch_size, last[0])
        padded = np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)]) if size > n else x
        return np.asarray(predict_fn(padded, size), np.float32)[:n]

    return predict


def _intra_op_threads() -> int:
    """The CPU threads TensorFlow's kernels use (what it was told, else every core we may run on)."""
    import os

    import tensorflow as tf

    told = tf.config.threading.get_intra_op_parallelism_threads() or int(os.environ.get("TF_NUM_INTRAOP_THREADS", 0))
    return told if told > 0 else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def square_forward(model_fn: Callable | None, predict: Callable[[np.ndarray], np.ndarray], probe: np.ndarray,
                   choice: str = "auto") -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """(what runs Square's queries, its name): model_fn's TFLite conversion where it agrees
    with `predict` on `probe` (same argmax, logits within 1e-4 of their scale), else `predict`."""
    if model_fn is None:
        return predict, "predict"
    if choice == "auto" and len(probe):
        from edgeprune.attacks.compiled import tflite_forward

        fast = tflite_forward(model_fn, tuple(probe.shape[1:]), threads=_intra_op_threads())
        if fast is not None:
            want = np.asarray(predict(probe), np.float32)
            got = fast(probe)
            scale = max(1.0, float(np.abs(want).max()))
            if got.shape == want.shape and np.array_equal(got.argmax(axis=1), want.argmax(axis=1)) \
                    and float(np.abs(got - want).max()) <= 1e-4 * scale:
                return fast, "tflite"
    return predict, "tensorflow"


def _stage_attack(stage: str, params: dict, model_fn: Callable | None, predict: Callable,
                  x: np.ndarray, y: np.ndarray, *, eps: float, norm: str, seed: int,
                  num_classes: int) -> np.ndarray:
    """x_adv for one batch of still-robust points under one stage (targets looped inside)."""
    if stage == "square":  # `predict` here is what runs the queries (see square_forward)
        return square_attack(predict, x, y, eps=eps, seed=seed, n_queries=params["n_queries"],
                             p_init=params["p_init"]).x_adv
    if model_fn is None:
        raise ValueError(f"stage {stage} needs gradients: a TF model_fn")
    if stage == "apgd-ce":
        return apgd(model_fn, x, y, eps=eps, norm=norm, seed=seed, loss="ce", steps=params["steps"],
                    n_restarts=params["n_restarts"])
    n_targets = min(int(params["n_target_classes"]), num_classes - 1)
    x_adv = x.copy()
    alive = np.ones(len(x), bool)
    for rank in range(2, n_targets + 2):
        idx = np.flatnonzero(alive)
        if len(idx) == 0:
            break
        if stage == "apgd-t":
            cand = apgd(model_fn, x[idx], y[idx], eps=eps, norm=norm, seed=seed + rank, loss="dlr-t",
                        steps=params["steps"], target_class_rank=rank)
        else:
            cand = fab(model_fn, x[idx], y[idx], eps=eps, norm=norm, seed=seed + rank,
                       steps=params["steps"], target_class_rank=rank)
        cand = project(cand, x[idx], eps, norm)
        fooled = predict(cand).argmax(axis=1) != y[idx]
        x_adv[idx[fooled]] = cand[fooled]
        alive[idx[fooled]] = False
    return x_adv


def run_autoattack(model_fn: Callable | None, x, y, config: AutoAttackConfig, *,
                   predict: Callable[[np.ndarray], np.ndarray] | None = None,
                   progress: bool = False, run_checks: bool = True) -> AutoAttackResult:
    """Run the ensemble on (x, y); per-point worst case; robust accuracy after each stage.

    model_fn: TF logits function (white-box stages) or None (black-box only). predict: numpy
    logits function used to judge success and by Square (default: compiled from model_fn).
    """
    from edgeprune.progress import progress_task

    if predict is None:
        if model_fn is None:
            raise ValueError("run_autoattack needs model_fn (white-box) or predict (black-box)")
        predict = numpy_predict(model_fn, config.batch_size)
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64).reshape(-1)
    norm = parse_norm(config.norm)
    clean_logits = np.asarray(predict(x), np.float32)
    num_classes = clean_logits.shape[1]
    clean_pred = clean_logits.argmax(axis=1).astype(np.int64)
    robust = clean_pred == y
    fooled_by = np.where(robust, "", "clean").astype(object)
    x_adv = x.copy()

    fired: list[str] = []
    if run_checks:
        probe = x[:min(len(x), 32)]
        messages = [checks.check_probability_outputs(clean_logits), checks.check_randomized(predict, probe)]
        if model_fn is not None:
            messages.append(checks.check_zero_gradients(model_fn, probe, y[:len(probe)]))
        if any(s in config.stages for s in ("apgd-t", "fab-t")):
            messages.append(checks.check_target_classes(
                num_classes, config.params("apgd-t")["n_target_classes"]))
        fired += checks.emit(messages)

    results: list[StageResult] = []
    whitebox_robust_before_square = None
    for stage_index, stage in enumerate(config.stages):
        params = config.params(stage)
        skip = None
        if stage in LINF_ONLY and norm != Norm.LINF:
            skip = "skipped: L-inf only"
        elif stage != "square" and model_fn is None:
            skip = "skipped: needs gradients (Keras model)"
        elif stage in ("apgd-t", "fab-t") and num_classes < 4:
            skip = "skipped: needs >= 4 classes"
        todo = np.flatnonzero(robust)
        if stage == "square":
            whitebox_robust_before_square = len(todo)
        if skip or len(todo) == 0:
            results.append(StageResult(stage, skip or "ran", len(todo), 0, float(robust.mean()), 0.0))
            continue
        started = time.perf_counter()
        fooled_here = 0
        queries, forward = predict, ""
        if stage == "square":
            worth_it = len(todo) * int(params["n_queries"]) >= SQUARE_TFLITE_MIN_WORK
            queries, forward = square_forward(model_fn, predict, x[todo[:config.batch_size]],
                                              config.square_forward if worth_it else "tensorflow")
        with progress_task(f"autoattack {stage}", len(todo), enabled=progress) as advance:
            for start in range(0, len(todo), config.batch_size):
                idx = todo[start:start + config.batch_size]
                cand = _stage_attack(stage, params, model_fn, queries, x[idx], y[idx], eps=config.eps,
                                     norm=norm, seed=_seed(config.seed, stage_index, start),
                                     num_classes=num_classes)
                cand = project(cand, x[idx], config.eps, config.norm)
                fooled = np.asarray(predict(cand)).argmax(axis=1) != y[idx]
                x_adv[idx[fooled]] = cand[fooled]
                robust[idx[fooled]] = False
                fooled_by[idx[fooled]] = stage
                fooled_here += int(fooled.sum())
                advance(len(idx), f"robust {robust.mean():.2%}")
        results.append(StageResult(stage, "ran", len(todo), fooled_here, float(robust.mean()),
                                   time.perf_counter() - started, forward))
        whitebox_ran = any(r.status == "ran" for r in results[:-1])
        if stage == "square" and run_checks and whitebox_ran:
            fired += checks.emit([checks.check_square_after_whitebox(whitebox_robust_before_square or 0,
                                                                     fooled_here)])
    return AutoAttackResult(config=config, x_adv=x_adv, y=y, clean_pred=clean_pred, robust=robust,
                            fooled_by=np.asarray(fooled_by, dtype=str), stages=tuple(results),
                            warnings=tuple(fired))


def autoattack(model_fn: Callable, x, y, *, eps: float, norm="linf", seed: int = 0,
               version: str = "standard") -> np.ndarray:
    """The ensemble under the attack contract (one batch): worst-case x_adv per point."""
    x = np.asarray(x, np.float32)
    config = AutoAttackConfig(eps=float(eps), norm=norm, version=version, seed=seed,
                              batch_size=max(1, len(x)))
    return run_autoattack(model_fn, x, y, config, run_checks=False).x_adv


def to_markdown(result: AutoAttackResult, label: str = "") -> str:
    """A stage table: robust accuracy after each stage (monotone non-increasing)."""
    head = f"AutoAttack ({result.config.version}, {result.config.norm}, eps {result.config.eps:.5g})"
    lines = [f"### {head}{' — ' + label if label else ''}", "",
             f"clean accuracy {result.clean_accuracy:.2%} on {len(result.y)} images", "",
             "| stage | status | attacked | fooled | robust accuracy | seconds |",
             "|---|---|---:|---:|---:|---:|"]
    for s in result.stages:
        lines.append(f"| {s.name} | {s.status} | {s.attacked} | {s.fooled} | {s.robust_accuracy:.2%} | "
                     f"{s.seconds:.1f} |")
    lines += ["", f"robust accuracy (minimum over all stages, per point): {result.robust_accuracy:.2%}"]
    lines += [f"- warning: {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"
