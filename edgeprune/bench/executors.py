"""Where cells run: a local process pool (default) or a Ray cluster — same cells, same results.

Both hand back `concurrent.futures.Future`s of the cell manifest, so the scheduler does not
care which one it drives. TensorFlow is imported once: locally in a fork server each cell's
process is forked from, on Ray once per (reused) worker.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from dataclasses import dataclass

from edgeprune.bench.stages import CellJob, run_cell, watch_driver
from edgeprune.errors import EdgepruneError

EXECUTORS = ("local", "ray")


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


@dataclass(frozen=True)
class PoolSize:
    workers: int
    threads_per_worker: int
    reason: str


def size_pool(requested: int | None, memory_per_worker_gb: float, threads: int = 1) -> PoolSize:
    """Workers = cores / threads per cell, fewer if the memory available cannot hold one stage
    per worker."""
    cores = available_cores()
    if requested is not None:
        if requested < 1:
            raise EdgepruneError(f"--workers must be at least 1, got {requested}")
        workers, reason = requested, "requested"
    else:
        workers, reason = max(1, cores // threads), f"{cores} cores / {threads} thread(s) per cell"
        memory = available_memory_bytes()
        if memory is not None:
            by_memory = max(1, int(memory // (memory_per_worker_gb * 2**30)))
            if by_memory < workers:
                workers = by_memory
                reason = f"{memory / 2**30:.1f} GiB available / {memory_per_worker_gb:g} GiB per worker"
    return PoolSize(workers=workers, threads_per_worker=threads, reason=reason)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers fork from a server process that imported TensorFlow once (no TF op has run
    there, so forking is safe): a pool starts in milliseconds instead of ~10 s per worker."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["edgeprune.bench.preload"])
        return context
    return multiprocessing.get_context("spawn")


class LocalExecutor:
    """A process pool on this machine, started on the first cell that is not cached."""

    name = "local"

    def __init__(self, size: PoolSize) -> None:
        self.size = size
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    @property
    def slots(self) -> int:
        return self.size.workers

    def submit(self, job: CellJob) -> concurrent.futures.Future:
        if self._pool is None:
            # One process per cell, forked from the preloaded server (milliseconds): a cell's
            # bytes never depend on what ran before it in the same process (OpenVINO numbers
            # the nodes of an IR with a process-wide counter), and memory TensorFlow keeps
            # after a model is gone is returned with its process.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.size.workers, mp_context=_worker_context(),
                initializer=watch_driver, initargs=(os.getpid(),), max_tasks_per_child=1)
        return self._pool.submit(run_cell, job)

    def shutdown(self, *, abort: bool = False) -> None:
        """Normal end: let idle workers exit in the background (TensorFlow's teardown takes
        seconds). Abort: stop running cells now, so none writes after the run let go."""
        if self._pool is None:
            return
        if abort:
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=abort, cancel_futures=True)
        self._pool = None


class RayExecutor:
    """Cells as Ray tasks: on the cluster at `address`, or on a local Ray started for the run.

    Every node must see the cache folder at the same path (a shared filesystem), since cells
    read their inputs from and write their outputs to it.
    """

    name = "ray"

    def __init__(self, size: PoolSize, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise EdgepruneError("--executor ray needs Ray: pip install 'edgeprune[ray]'") from None
        self.size = size
        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            options = {"include_dashboard": False, "log_to_driver": False,
                       "runtime_env": {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}}}
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=size.workers, **options)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        # OpenVINO IR bytes depend on what the process converted before (node-name counter):
        # those cells get a fresh Ray worker; the others reuse workers (TensorFlow loaded once).
        self._fresh = ray.remote(num_cpus=1, max_retries=0, max_calls=1)(run_cell)
        cluster_cpus = int(ray.cluster_resources().get("CPU", size.workers))
        self._slots = cluster_cpus if address else size.workers

    @property
    def slots(self) -> int:
        return self._slots

    def submit(self, job: CellJob) -> concurrent.futures.Future:
        fresh = job.stage == "convert" and job.params.get("to") == "openvino"
        return (self._fresh if fresh else self._remote).remote(job).future()

    def shutdown(self, *, abort: bool = False) -> None:
        if self._started_here:
            self._ray.shutdown()


def make_executor(name: str, size: PoolSize, *, address: str | None = None):
    if name == "local":
        return LocalExecutor(size)
    if name == "ray":
        return RayExecutor(size, address)
    raise EdgepruneError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
