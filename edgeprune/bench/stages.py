"""Run one cell inside a worker process: call the stage's CLI command in-process.

The stages' command-line flags are their most stable interface, so a cell builds the same
argument list a user would type and runs `edgeprune STAGE` through click with
`standalone_mode=False` (errors arrive as exceptions, not exits). TensorFlow is imported
once per worker, not once per cell. Everything the stage writes goes to a private staging
folder; the cell's manifest is written last and the folder moved into the cache.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.bench.cache import Cache, manifest_record
from edgeprune.errors import EdgepruneError
from edgeprune.io import read_json, sha256_file, versions

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
        with _redirect_output(log_path):
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


# --- building argument lists ---------------------------------------------------------------

def _command(name: str):
    return importlib.import_module(f"edgeprune.cli.{name}").command


def _option_names(command) -> set[str]:
    return {opt[2:] for param in command.params for opt in (*param.opts, *param.secondary_opts)
            if opt.startswith("--")}


def _flags(values: dict[str, Any]) -> list[str]:
    """{eps: 0.03, targeted: true, batch: [1, 32]} -> --eps 0.03 --targeted --batch 1,32."""
    argv: list[str] = []
    for name, value in values.items():
        if value is None:
            continue
        flag = f"--{name}"
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append(f"--no-{name}")
        elif isinstance(value, list):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def _dataset_flags(command, params: dict, *, limit: int | None = None) -> list[str]:
    options = _option_names(command)
    values = {"dataset": params["dataset"]}
    if "limit-train" in options:
        values["limit-train"] = params.get("limit_train")
    test_limit = limit if limit is not None else params.get("limit_test")
    if "limit" in options:
        values["limit"] = test_limit
    if "seed" in options and "seed" in params:
        values["seed"] = params["seed"]
    return _flags({k: v for k, v in values.items() if k in options})


def _invoke(name: str, argv: list[str]) -> None:
    command = _command(name)
    options = _option_names(command)
    if "quiet" in options:
        argv = [*argv, "--quiet"]
    print(f"$ edgeprune {name} {' '.join(argv)}", flush=True)
    command.main(args=argv, prog_name=f"edgeprune {name}", standalone_mode=False)


def _report(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


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


def _pick(report: dict, *keys: str) -> dict:
    return {k: report[k] for k in keys if k in report}


# --- the stages ----------------------------------------------------------------------------

def run_train(job: CellJob, out: Path) -> dict:
    params = job.params
    command = _command("train")
    _invoke("train", [params["arch"], *_dataset_flags(command, params), "-o", str(out / "model.h5"),
                      *_flags(params["args"])])
    report = _report(out / "model.json")
    return {"_primary": "model.h5", **_pick(report, "test_accuracy", "params", "train_seconds",
                                            "test_samples", "arch", "dataset")}


def run_prune(job: CellJob, out: Path) -> dict:
    params = job.params
    command = _command("prune")
    method_flags = {"method": params["method"]}
    for name in ("sparsity", "scope", "target", "criterion"):
        if params.get(name) is not None:
            method_flags[name] = params[name]
    _invoke("prune", [job.inputs["model"]["path"], *_flags(method_flags), *_dataset_flags(command, params),
                      "-o", str(out / "model.h5"), *_flags(params["args"])])
    return {"_primary": "model.h5", **_summarise(_report(out / "model.json"))}


def run_convert(job: CellJob, out: Path) -> dict:
    params = job.params
    command = _command("convert")
    suffix = ".tflite" if params["to"] == "tflite" else ".xml"
    target = out / f"model{suffix}"
    options = _option_names(command)
    data_flags = _dataset_flags(command, params) if "dataset" in options else []
    _invoke("convert", [job.inputs["model"]["path"], "--to", params["to"], "--precision",
                        params["precision"], *data_flags, "-o", str(target), *_flags(params["args"])])
    return {"_primary": target.name,
            **_summarise(_report(out / (_report_name(out, target.name) or "model.json")))}


def run_attack(job: CellJob, out: Path) -> dict:
    params = job.params
    command = _command("attack")
    options = _option_names(command)
    argv = [job.inputs["model"]["path"], "--attack", params["attack"], *_dataset_flags(
        command, params, limit=params.get("limit"))]
    if "split" in options:
        argv += ["--split", "test"]
    # Suite args that are not options of the command are the attack's own parameters (-p k=v).
    as_options = {k: v for k, v in params["args"].items() if k in options}
    as_params = [f"{k.replace('-', '_')}={v}" for k, v in params["args"].items() if k not in options]
    for item in as_params:
        argv += ["--param", item]
    name = params.get("name") or "set"
    _invoke("attack", [*argv, "-o", str(out / name), *_flags(as_options)])
    return {"_primary": f"{name}.npz", **_summarise(_report(out / f"{name}.json"))}


def run_robustness(job: CellJob, out: Path) -> dict:
    """White-box robustness of a model on itself. AutoAttack and FMN curves go through
    `edgeprune evaluate --autoattack / --curve` (per-stage accuracy, per-image minimal norms);
    any other attack through `edgeprune attack`, whose set records the model's accuracy on it."""
    params = job.params
    attack, args = params["attack"], dict(params["args"])
    if attack not in ("autoattack", "fmn"):
        return run_attack(job, out)
    command = _command("evaluate")
    argv = [job.inputs["model"]["path"], *_dataset_flags(command, params, limit=params.get("limit"))]
    if attack == "autoattack":
        values = {"autoattack": args.pop("version", "standard"), **args}
        if "seed" in _option_names(command):
            values["seed"] = params.get("seed")
    else:
        values = {"curve": True, "fmn-steps": args.pop("steps", None), **args}
    _invoke("evaluate", [*argv, *_flags(values), "-o", str(out / "robustness")])
    return {"_primary": "robustness.json"}


def run_evaluate(job: CellJob, out: Path) -> dict:
    params = job.params
    command = _command("evaluate")
    sets = [item["path"] for role, item in sorted(job.inputs.items()) if role.startswith("set:")]
    argv = [job.inputs["model"]["path"], *_dataset_flags(command, params, limit=params.get("limit"))]
    for path in sets:
        argv += ["--sets", path]
    _invoke("evaluate", [*argv, "-o", str(out / "evaluate"), *_flags(params["args"])])
    report = _report(out / "evaluate.json")
    return {"_primary": "evaluate.json", "accuracy": {
        row: next(iter(by_model.values()), None) for row, by_model in (report.get("accuracy") or {}).items()}}


def run_profile(job: CellJob, out: Path) -> dict:
    params = job.params
    values = {"batch": params["batch"], "threads": params["threads"] or None}
    _invoke("profile", [job.inputs["model"]["path"], *_flags(values), "-o", str(out / "profile.json"),
                        *_flags(params["args"])])
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
