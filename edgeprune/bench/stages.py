"""Run one cell inside a worker process: call the stage's library function (`edgeprune.api`).

A cell's parameters and the suite's `args:` (flag-spelled option names, checked by the suite
loader against the same option schemas) become the stage's typed options, and the cell calls
the very function the CLI command calls. TensorFlow is imported once per worker, not once per
cell. Everything the stage writes goes to a private staging
folder; the cell's manifest is written last and the folder moved into the cache.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.bench.cache import Cache, manifest_record
from edgeprune.errors import EdgepruneError
from edgeprune.io import sha256_file, versions
from edgeprune.options import from_args

FAULT_EXIT_CODE = 86
MODEL_STAGES = ("train", "prune", "convert")


@dataclass(frozen=True)
class CellJob:
    """What a worker needs to run one cell (picklable: plain data only)."""

    cache_root: str
    key: str
    cell_id: str
    stage: str
    params: dict
    inputs: dict  # role -> {"path": str, "sha256": str}
    threads: int | None = None
    fault: bool = False  # test hook: die after the stage ran, before the manifest
    extra: dict = field(default_factory=dict)


class CellFailed(Exception):
    """A stage raised; carries the one-line reason and the cell's log tail."""


_WORKER_READY = False


def init_worker(threads: int | None) -> None:
    """Once per worker: quiet TensorFlow, size its thread pools, make kernels deterministic."""
    global _WORKER_READY
    if _WORKER_READY:
        return
    _die_with_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import tensorflow as tf

    if threads:
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, threads))
    # Same inputs, same bytes: a resumed grid must report what a clean run reports.
    tf.config.experimental.enable_op_determinism()
    _WORKER_READY = True


def watch_driver(driver_pid: int, interval_s: float = 1.0) -> None:
    """Pool initializer: end this worker when the bench process that owns the pool is gone.
    Forkserver workers are not children of that process (no parent-death signal reaches them),
    and an orphan would otherwise finish a cell nobody waits for or idle forever."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(70)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="edgeprune-bench-driver-watch", daemon=True).start()


def _die_with_parent() -> None:
    """Linux: a worker is killed when the process that started it dies (a SIGKILLed bench
    run leaves no orphan still computing; its unfinished cell is redone on resume)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def run_cell(job: CellJob) -> dict:
    """Run the cell's stage into staging, write the manifest last, move it into the cache."""
    init_worker(job.threads)
    import tensorflow as tf

    # Fresh Keras name counters: a cell's files must not depend on what its worker ran before.
    tf.keras.backend.clear_session()
    cache = Cache(job.cache_root)
    staging = cache.new_staging(job.key)
    started = time.perf_counter()
    log_path = staging / "cell.log"
    try:
        with _redirect_output(log_path), _epoch_lines():
            result = RUNNERS[job.stage](job, staging)
    except BaseException as exc:  # noqa: BLE001 - reported with the cell id, staging removed
        reason = str(exc) if isinstance(exc, EdgepruneError) else f"{type(exc).__name__}: {exc}"
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        if not isinstance(exc, EdgepruneError):
            tail += "\n" + traceback.format_exc()[-3000:]
        _remove(staging)
        raise CellFailed(f"{job.cell_id}: {reason}\n{tail}".rstrip()) from None
    if job.stage in MODEL_STAGES and result.get("_primary"):
        from edgeprune.info import gzip_bytes
        from edgeprune.runtime import file_bytes

        model_file = staging / result["_primary"]
        result.update(file_bytes=file_bytes(model_file), gzip_bytes=gzip_bytes(model_file))
    outputs = {}
    for file in sorted(staging.iterdir()):
        if file.is_file() and not file.name.startswith("."):
            outputs[file.name] = {"file": file.name, "bytes": file.stat().st_size,
                                  "sha256": sha256_file(file)}
    if job.fault:
        os._exit(FAULT_EXIT_CODE)  # simulated crash: outputs written, no manifest
    manifest = manifest_record(
        key=job.key, cell_id=job.cell_id, stage=job.stage, params=job.params,
        inputs={role: item["sha256"] for role, item in job.inputs.items()}, outputs=outputs,
        result=result, seconds=time.perf_counter() - started, stack=versions())
    manifest["primary"] = result.pop("_primary", None)
    manifest["report"] = _report_name(staging, manifest["primary"])
    cache.commit(staging, job.key, manifest)
    return manifest


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _epoch_lines():
    """Training epochs logged to the (redirected) stderr: a cell's log shows its progress."""
    import logging

    from edgeprune.progress import epoch_log

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    level = epoch_log.level
    epoch_log.addHandler(handler)
    epoch_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        epoch_log.removeHandler(handler)
        epoch_log.setLevel(level)


@contextlib.contextmanager
def _redirect_output(path: Path):
    """Send the stage's stdout/stderr (Python and C level) to the cell's log file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# --- calling the stages -----------------------------------------------------------------------

def _dataset(params: dict, *, limit: int | None = None, train: bool = True) -> dict[str, Any]:
    """The grid's dataset settings as option fields; a cell's own limit wins over the test limit."""
    values: dict[str, Any] = {"dataset": params["dataset"], "seed": params.get("seed", 0)}
    test_limit = limit if limit is not None else params.get("limit_test")
    if train:
        values.update(limit_train=params.get("limit_train"), limit_test=test_limit)
    else:
        values["limit"] = test_limit
    return values


def _announce(stage: str, options: Any) -> None:
    """The cell log's first line: which library call runs, with which options."""
    print(f"edgeprune.api.{stage}: {options!r}", flush=True)


def _pick(report: dict, *keys: str) -> dict:
    return {k: report[k] for k in keys if k in report}


def _report_name(folder: Path, primary: str | None) -> str | None:
    """The stage's JSON report beside its primary output: OUT.json or OUT.EXT.json."""
    if not primary:
        return None
    if primary.endswith(".json"):
        return primary
    for name in (Path(primary).with_suffix(".json").name, f"{primary}.json"):
        if (folder / name).exists() and name != primary:
            return name
    return None


# --- the stages ----------------------------------------------------------------------------

def _train_options(params: dict) -> Any:
    from edgeprune.api import TrainOptions

    return from_args(TrainOptions, params["args"], arch=params["arch"], **_dataset(params))


def _prune_options(params: dict) -> Any:
    from edgeprune.api import PruneOptions

    method = {name: params[name] for name in ("method", "sparsity", "scope", "target", "criterion")
              if params.get(name) is not None}
    return from_args(PruneOptions, params["args"], **method, **_dataset(params))


def _convert_options(params: dict) -> Any:
    from edgeprune.api import ConvertOptions

    return from_args(ConvertOptions, params["args"], target=params["to"], precision=params["precision"],
                     dataset=params["dataset"], seed=params.get("seed", 0))


def _attack_options(params: dict) -> Any:
    from edgeprune.api import AttackOptions
    from edgeprune.options import option_names

    # Suite args that are not options of the stage are the attack's own parameters.
    names = option_names(AttackOptions)
    as_options = {k: v for k, v in params["args"].items() if k in names}
    as_params = {k.replace("-", "_"): str(v) for k, v in params["args"].items() if k not in names}
    return from_args(AttackOptions, as_options, attack=params["attack"], split="test",
                     params=as_params or None, **_dataset(params, limit=params.get("limit"), train=False))


def _evaluate_options(params: dict, sets: tuple[str, ...] = ()) -> Any:
    from edgeprune.api import EvaluateOptions

    values = _dataset(params, limit=params.get("limit"), train=False)
    values.pop("seed")
    return from_args(EvaluateOptions, params["args"], sets=sets, **values)


def _profile_options(params: dict) -> Any:
    from edgeprune.api import ProfileOptions

    return from_args(ProfileOptions, params["args"], batch=params["batch"], threads=params["threads"] or None)


def check_cell_params(stage: str, params: dict) -> None:
    """Build the options a cell's stage would get (and, for attacks, the attack's config), so a
    bad value (epochs -5, a parameter the attack does not take) fails at --dry-run, not mid-run."""
    from edgeprune.api import attack_config

    if stage == "attack" or (stage == "robustness" and params.get("attack") not in ("autoattack", "fmn")):
        attack_config(_attack_options(params))
        return
    builders = {"train": _train_options, "prune": _prune_options, "convert": _convert_options,
                "evaluate": _evaluate_options, "profile": _profile_options}
    if stage in builders:
        builders[stage](params)


def run_train(job: CellJob, out: Path) -> dict:
    from edgeprune.api import train

    options = _train_options(job.params)
    _announce("train", options)
    result = train(options, out / "model.h5", progress=False)
    return {"_primary": "model.h5", **_pick(dict(result.record), "test_accuracy", "params", "train_seconds",
                                            "test_samples", "arch", "dataset")}


def run_prune(job: CellJob, out: Path) -> dict:
    from edgeprune.api import prune

    options = _prune_options(job.params)
    _announce("prune", options)
    result = prune(job.inputs["model"]["path"], options, out / "model.h5", progress=False)
    return {"_primary": "model.h5", **_summarise(dict(result.record))}


def run_convert(job: CellJob, out: Path) -> dict:
    from edgeprune.api import convert
    from edgeprune.vocab import CONVERTED_SUFFIXES

    params = job.params
    target = out / f"model{CONVERTED_SUFFIXES[params['to']]}"
    options = _convert_options(params)
    _announce("convert", options)
    result = convert(job.inputs["model"]["path"], options, target, progress=False)
    return {"_primary": target.name, **_summarise(dict(result.record))}


def run_attack(job: CellJob, out: Path) -> dict:
    from edgeprune.api import attack

    params = job.params
    options = _attack_options(params)
    _announce("attack", options)
    name = params.get("name") or "set"
    result = attack(job.inputs["model"]["path"], options, out / name, progress=False)
    return {"_primary": f"{name}.npz", **_summarise(dict(result.record))}


def run_robustness(job: CellJob, out: Path) -> dict:
    """White-box robustness of a model on itself: AutoAttack or FMN curves through
    `api.robustness`; any other attack through `api.attack`, whose set records the model's
    accuracy on it."""
    from edgeprune.api import RobustnessOptions, robustness

    params = job.params
    attack_name, args = params["attack"], dict(params["args"])
    if attack_name not in ("autoattack", "fmn"):
        return run_attack(job, out)
    if attack_name == "autoattack":
        method: dict[str, Any] = {"autoattack": args.pop("version", "standard")}
    else:
        method = {"curve": True, "fmn_steps": args.pop("steps", None) or 100}
    options = from_args(RobustnessOptions, args, **method,
                        **_dataset(params, limit=params.get("limit"), train=False))
    _announce("robustness", options)
    robustness([job.inputs["model"]["path"]], options, out / "robustness", progress=False)
    return {"_primary": "robustness.json"}


def run_evaluate(job: CellJob, out: Path) -> dict:
    from edgeprune.api import evaluate

    sets = tuple(item["path"] for role, item in sorted(job.inputs.items()) if role.startswith("set:"))
    options = _evaluate_options(job.params, sets)
    _announce("evaluate", options)
    result = evaluate([job.inputs["model"]["path"]], options, out / "evaluate", progress=False)
    return {"_primary": "evaluate.json",
            "accuracy": {row.set: row.accuracy for row in result.rows()}}


def run_profile(job: CellJob, out: Path) -> dict:
    from edgeprune.api import profile

    options = _profile_options(job.params)
    _announce("profile", options)
    profile([job.inputs["model"]["path"]], options, out / "profile.json", progress=False)
    return {"_primary": "profile.json"}


def _summarise(report: dict) -> dict:
    """Small scalar facts for the manifest; the full stage report stays in the cell folder."""
    return {k: v for k, v in report.items() if isinstance(v, (int, float, str, bool)) and k != "schema"}


RUNNERS = {
    "train": run_train,
    "prune": run_prune,
    "convert": run_convert,
    "attack": run_attack,
    "robustness": run_robustness,
    "evaluate": run_evaluate,
    "profile": run_profile,
}
