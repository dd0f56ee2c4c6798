"""Drive a grid: compute each cell's key once its inputs exist, reuse or run it, then report.

Keys need the bytes of the inputs, so a cell's key is known only when the cells it depends
on are finished; the scheduler walks the grid in dependency order, reusing every cell whose
manifest is in the cache and sending the rest to the executor. Timing cells (`exclusive`)
run last and alone, so no other cell competes with them for the CPU.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from edgeprune.bench.cache import Cache, cell_key, check_state, file_hash, now, save_state
from edgeprune.bench.executors import make_executor, size_pool
from edgeprune.bench.grid import Cell, Grid, build_grid
from edgeprune.bench.stages import CellFailed, CellJob
from edgeprune.bench.suite import Suite, canonical_hash
from edgeprune.errors import EdgepruneError, Interrupted
from edgeprune.io import versions

FAULT_ENV = "EDGEPRUNE_BENCH_FAULT_CELL"  # test hook: the Nth cell run dies before its manifest
LOG = logging.getLogger("edgeprune.bench")


@dataclass
class Outcome:
    cell: Cell
    status: str  # reused | ran | failed | blocked
    key: str | None = None
    manifest: dict | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class RunOptions:
    out: Path
    cache: Path | None = None
    executor: str = "local"
    address: str | None = None
    workers: int | None = None
    force_mix: bool = False
    progress: bool = True

    @property
    def cache_root(self) -> Path:
        return self.cache if self.cache is not None else self.out / "cache"


@dataclass
class RunResult:
    grid: Grid
    outcomes: dict[str, Outcome]
    wall_seconds: float
    report_dir: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _setup_log(out: Path, console) -> logging.Handler:
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "bench.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    return handler


class Keys:
    """Cache keys and input paths, from given files' hashes and finished cells' manifests."""

    def __init__(self, cache: Cache, threads: int = 1) -> None:
        self.cache = cache
        self.threads = threads
        self._file_hashes: dict[str, str] = {}
        self._stack = versions()

    def given(self, path: str) -> str:
        if path not in self._file_hashes:
            self._file_hashes[path] = file_hash(path)
        return self._file_hashes[path]

    def dataset_identity(self, spec: str) -> str:
        kind, _, arg = spec.partition(":")
        return f"{kind}:sha256:{self.given(arg)}" if arg else spec

    def inputs(self, cell: Cell, outcomes: dict[str, Outcome]) -> dict[str, dict]:
        found = {}
        for role, dep in cell.deps.items():
            manifest = outcomes[dep].manifest
            if manifest is None:
                raise EdgepruneError(f"{cell.id}: input {dep} has no finished manifest")
            primary = manifest["primary"]
            path = self.cache.path(manifest["key"]) / manifest["outputs"][primary]["file"]
            digest = manifest["outputs"][primary]["sha256"]
            companion = Path(primary).with_suffix(".bin").name
            if primary.endswith(".xml") and companion in manifest["outputs"]:
                digest = canonical_hash([digest, manifest["outputs"][companion]["sha256"]])
            found[role] = {"path": str(path), "sha256": digest}
        for role, path in cell.files.items():
            found[role] = {"path": path, "sha256": self.given(path)}
        return found

    def key(self, cell: Cell, inputs: dict[str, dict]) -> str:
        params = dict(cell.params)
        if cell.stage != "profile":  # TensorFlow's thread count can change a cell's bytes
            params["tf_threads"] = self.threads
        if "dataset" in params:
            params["dataset"] = self.dataset_identity(params["dataset"])
        return cell_key(cell.stage, params, {r: i["sha256"] for r, i in inputs.items()}, self._stack)


def run_suite(suite: Suite, options: RunOptions) -> RunResult:
    """Run (or resume) every cell of `suite` into `options.out` and write the report."""
    from rich.console import Console

    from edgeprune.bench.report import write_report

    console = Console(stderr=True, log_path=False)

    grid = build_grid(suite)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(options.cache_root)
    handler = _setup_log(out, console)
    started = time.perf_counter()
    try:
        with cache.lock():
            state = check_state(out, suite, force_mix=options.force_mix)
            save_state(out, state)
            leftovers = cache.clean_staging()
            if leftovers:
                _say(console, f"removed {leftovers} unfinished cell folder(s) left by an interrupted run")
            size = size_pool(options.workers or suite.execution.workers, suite.execution.memory_per_worker_gb,
                             suite.execution.threads)
            _say(console, f"suite {suite.name}: {len(grid.cells)} cells "
                          f"({', '.join(f'{k} {v}' for k, v in grid.count().items())}); executor "
                          f"{options.executor}, {size.workers} worker(s) × {size.threads_per_worker} "
                          f"thread(s) ({size.reason})")
            outcomes = _schedule(grid, cache, options, size, console)
            wall = time.perf_counter() - started
            counts: defaultdict[str, int] = defaultdict(int)
            for outcome in outcomes.values():
                counts[outcome.status] += 1
            state["cells"] = {cid: o.key for cid, o in outcomes.items() if o.key}
            state["runs"] = [*state.get("runs", []), {
                "finished_at": now(), "suite": suite.name, "executor": options.executor,
                "workers": size.workers, "wall_seconds": round(wall, 1), **counts}]
            save_state(out, state)
            report_dir = write_report(grid, outcomes, cache, out / "report",
                                      run={"executor": options.executor, "workers": size.workers,
                                           "wall_seconds": round(wall, 1), **counts})
            _say(console, f"done in {wall:.0f} s: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                 + f"; report: {report_dir / 'report.md'}")
            return RunResult(grid=grid, outcomes=outcomes, wall_seconds=wall, report_dir=report_dir,
                             counts=dict(counts))
    finally:
        LOG.removeHandler(handler)
        handler.close()


def _say(console, message: str) -> None:
    LOG.info(message)
    console.log(message, highlight=False, markup=False)


def _schedule(grid: Grid, cache: Cache, options: RunOptions, size, console) -> dict[str, Outcome]:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    keys = Keys(cache, grid.suite.execution.threads)
    pending: OrderedDict[str, Cell] = OrderedDict((c.id, c) for c in grid.order())
    outcomes: dict[str, Outcome] = {}
    running: dict[concurrent.futures.Future, tuple[Cell, str, float]] = {}
    stage_seconds: dict[str, list[float]] = defaultdict(list)
    fault_at = int(os.environ.get(FAULT_ENV, "0") or 0)
    submitted = 0
    executor = None

    progress = Progress(
        TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"), console=console,
        disable=not options.progress)

    def eta() -> str:
        remaining = list(pending.values()) + [c for c, _, _ in running.values()]
        everything = [s for v in stage_seconds.values() for s in v]
        if not everything:
            return "?"
        mean_all = sum(everything) / len(everything)
        total = sum((sum(stage_seconds[c.stage]) / len(stage_seconds[c.stage]))
                    if stage_seconds[c.stage] else mean_all for c in remaining)
        seconds = total / max(1, min(len(remaining), executor.slots if executor else size.workers))
        return time.strftime("%H:%M:%S", time.gmtime(seconds))

    def finish(outcome: Outcome) -> None:
        outcomes[outcome.cell.id] = outcome
        status = ", ".join(c.id.split(":", 1)[1][-40:] for c, _, _ in running.values()) or ""
        progress.update(task, advance=1, status=status, eta=eta())

    aborted, signalled = True, False
    with progress:
        task = progress.add_task("bench", total=len(pending), status="", eta="?")
        try:
            while pending or running:
                changed = True
                while changed:
                    changed = False
                    for cell in list(pending.values()):
                        found = [outcomes.get(d) for d in cell.deps.values()]
                        deps = [d for d in found if d is not None]
                        if len(deps) < len(found):
                            continue
                        bad = [d for d in deps if d.status in ("failed", "blocked")]
                        if bad:
                            del pending[cell.id]
                            _say(console, f"blocked {cell.id}: needs {bad[0].cell.id}, which {bad[0].status}")
                            finish(Outcome(cell=cell, status="blocked", error=f"needs {bad[0].cell.id}"))
                            changed = True
                            continue
                        inputs = keys.inputs(cell, outcomes)
                        key = keys.key(cell, inputs)
                        manifest, damage = cache.check(key)
                        if damage is not None:
                            _say(console, f"warning: {cell.id} [{key[:12]}]: {damage}; redoing the cell")
                        if manifest is not None:
                            del pending[cell.id]
                            _say(console, f"reused {cell.id} [{key[:12]}]")
                            finish(Outcome(cell=cell, status="reused", key=key, manifest=manifest))
                            changed = True
                            continue
                        if any(c.exclusive for c, _, _ in running.values()):
                            break
                        if cell.exclusive and (running or any(not c.exclusive for c in pending.values())):
                            continue
                        if executor is None:
                            executor = make_executor(options.executor, size, address=options.address)
                        if len(running) >= executor.slots:
                            break
                        submitted += 1
                        job = CellJob(cache_root=str(cache.root), key=key, cell_id=cell.id, stage=cell.stage,
                                      params=cell.params, inputs=inputs, threads=size.threads_per_worker,
                                      fault=submitted == fault_at)
                        future = executor.submit(job)
                        running[future] = (cell, key, time.perf_counter())
                        del pending[cell.id]
                        LOG.info(f"start {cell.id} [{key[:12]}]")
                        progress.update(task, status=", ".join(
                            c.id.split(":", 1)[1][-40:] for c, _, _ in running.values()))
                        changed = True
                        if cell.exclusive:
                            break
                if not running:
                    if pending:
                        raise EdgepruneError(f"grid: {len(pending)} cell(s) can never run "
                                             f"(first: {next(iter(pending))})")
                    break
                done, _ = concurrent.futures.wait(list(running), timeout=1.0,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
                if not done:
                    progress.update(task, eta=eta())
                for future in done:
                    cell, key, t0 = running.pop(future)
                    seconds = time.perf_counter() - t0
                    try:
                        manifest = future.result()
                    except CellFailed as exc:
                        # Ray wraps the worker's exception; its `cause` is the CellFailed raised.
                        cause = getattr(exc, "cause", None)
                        message = str(cause if isinstance(cause, CellFailed) else exc)
                        _say(console, f"FAILED {message.splitlines()[0]}")
                        LOG.info(message)
                        finish(Outcome(cell=cell, status="failed", key=None, error=message.splitlines()[0],
                                       seconds=seconds))
                        continue
                    except Exception as exc:  # noqa: BLE001 - a worker died: stop, keep finished cells
                        raise EdgepruneError(
                            f"a worker died while running {cell.id} ({type(exc).__name__}: {exc}); "
                            "finished cells are kept — run the same command again to resume") from None
                    stage_seconds[cell.stage].append(seconds)
                    _say(console, f"ran {cell.id} [{key[:12]}] in {seconds:.1f} s")
                    finish(Outcome(cell=cell, status="ran", key=key, manifest=manifest, seconds=seconds))
            aborted = False
        except (KeyboardInterrupt, Interrupted):
            signalled = True
            raise
        finally:
            if executor is not None:
                executor.shutdown(abort=aborted)
            if signalled:  # stopped by SIGTERM or Ctrl-C: the cells it stopped leave no half-made folder
                cache.clean_staging()
    return outcomes
