"""`edgeprune bench`: run a YAML suite as a cached, resumable grid and write its report."""

from __future__ import annotations

import click

from edgeprune.cli.common import quiet_option
from edgeprune.vocab import BENCH_EXECUTORS


@click.command("bench")
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Folder for the grid state, the log and the report [default: runs/SUITE-NAME].")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="Content-addressed cell store, shareable between output folders [default: OUT/cache].")
@click.option("--executor", type=click.Choice(BENCH_EXECUTORS), default="local", show_default=True,
              help="local: a process pool on this machine; ray: Ray tasks (a local Ray started for the "
                   "run, or the cluster at --address; its nodes must see the cache folder).")
@click.option("--address", default=None, help="Ray cluster address (e.g. ray://head:10001 or auto).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Parallel cells [default: the suite's execution.workers, else cores limited by "
                   "available memory / execution.memory_per_worker_gb].")
@click.option("--force-mix", is_flag=True,
              help="Allow another suite (a different `suite:` name) to share OUT; its state file "
                   "otherwise refuses. An edited suite of the same name reuses OUT without it.")
@click.option("--dry-run", is_flag=True, help="Validate the suite and list the grid's cells; run nothing.")
@quiet_option
def command(suite, out, cache, executor, address, workers, force_mix, dry_run, quiet):
    """Run every cell of the benchmark SUITE (YAML) and write OUT/report/.

    A cell is one stage invocation (train, prune, convert, attack, robustness, evaluate,
    profile) stored under the hash of its inputs, parameters and versions: a re-run reuses
    finished cells (the log says which), and a run interrupted even by SIGKILL resumes where
    it stopped. Timing (profile) cells run last, alone. The report holds report.md (the
    papers' tables), models.csv, accuracy.csv, latency.csv, report.json and PNG plots.

    \b
    Examples:
      edgeprune bench benchmarks/quick.yaml
      edgeprune bench benchmarks/vora2023-cpu.yaml -o runs/vora --workers 2
      edgeprune bench benchmarks/quick.yaml --executor ray
    """
    from edgeprune.api import bench
    from edgeprune.bench.grid import build_grid
    from edgeprune.bench.suite import load_suite

    if dry_run:
        loaded = load_suite(suite)
        grid = build_grid(loaded)
        click.echo(f"suite {loaded.name}: {len(grid.cells)} cells ("
                   + ", ".join(f"{k} {v}" for k, v in grid.count().items()) + ")")
        for cell in grid.order():
            after = f"  <- {', '.join(sorted(set(cell.deps.values())))}" if cell.deps else ""
            click.echo(f"  {cell.id}{after}" if len(after) < 200 else f"  {cell.id}  <- {len(cell.deps)} cells")
        return
    result = bench(suite, out=out, cache=cache, executor=executor, address=address, workers=workers,
                   force_mix=force_mix, progress=not quiet)
    if not result.ok:
        raise click.exceptions.Exit(1)
