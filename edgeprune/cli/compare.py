"""`edgeprune compare`: the CI gate between a baseline profile and a candidate profile."""

from __future__ import annotations

import click

from edgeprune.vocab import COMPARE_OUTPUT_FORMATS


@click.command("compare")
@click.argument("baseline", type=click.Path(dir_okay=False))
@click.argument("candidate", type=click.Path(dir_okay=False))
@click.option("--max-slowdown", default="10%", show_default=True,
              help="Largest tolerated latency growth (10% or 0.10), judged beyond the runs' noise.")
@click.option("--max-size-growth", default="0%", show_default=True,
              help="Largest tolerated file-size growth (compared exactly).")
@click.option("--format", "output_format", type=click.Choice(COMPARE_OUTPUT_FORMATS), default="md",
              show_default=True, help="What to print on stdout: a markdown job summary or JSON.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Also write the JSON report here.")
@click.option("--allow-host-mismatch", is_flag=True,
              help="Compare profiles whose host fingerprints differ (the differences are listed).")
def command(baseline, candidate, max_slowdown, max_size_growth, output_format, output, allow_host_mismatch):
    """Compare CANDIDATE.json against BASELINE.json (both from `edgeprune profile`).

    Entries pair by model name, format, batch and threads. A slowdown is a regression only
    when the fastest run is slower than --max-slowdown AND the fastest runs differ by more
    than their own spread (p5 - min of each run): interference from other processes
    inflates the median, a slower model raises every run. When other processes used a share
    of the measured CPUs during either run, the fastest run must also be slower by more than
    that share (capped at 60%). Median ratios are reported beside the verdict. File size
    growth beyond --max-size-growth is a regression.

    \b
    Exit status: 0 no regression, 1 regression, 2 unusable input (bad JSON, wrong schema,
    different hosts without --allow-host-mismatch, nothing to pair).
    \b
    Example (CI):
      edgeprune compare baseline.json candidate.json --max-slowdown 10% >> "$GITHUB_STEP_SUMMARY"
    """
    from edgeprune.api import compare
    from edgeprune.compare import CompareConfig, parse_fraction

    config = CompareConfig(max_slowdown=parse_fraction(max_slowdown, "--max-slowdown"),
                           max_size_growth=parse_fraction(max_size_growth, "--max-size-growth"),
                           allow_host_mismatch=allow_host_mismatch)
    result = compare(baseline, candidate, config, output)
    if output_format == "json":
        click.echo(result.to_json())
    else:
        click.echo(result.to_markdown(), nl=False)
    raise SystemExit(1 if result.regression else 0)
