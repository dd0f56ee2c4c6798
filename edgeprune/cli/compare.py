"""`edgeprune compare`: the CI gate between a baseline profile and a candidate profile."""

from __future__ import annotations

import click

from edgeprune.cli.common import force_option
from edgeprune.vocab import COMPARE_OUTPUT_FORMATS


@click.command("compare")
@click.argument("baseline", type=click.Path(dir_okay=False))
@click.argument("candidate", type=click.Path(dir_okay=False), required=False)
@click.option("--baseline-model", default=None,
              help="With one interleaved PROFILE of both models: the baseline's model name in it.")
@click.option("--candidate-model", default=None,
              help="With one interleaved PROFILE of both models: the candidate's model name in it.")
@click.option("--max-slowdown", default="10%", show_default=True,
              help="Largest tolerated latency growth (10% or 0.10); a regression must exceed it with confidence.")
@click.option("--false-alarm-rate", default="1%", show_default=True,
              help="Chance of flagging a candidate that is not slower than --max-slowdown (the test's "
                   "level, split over the paired cells).")
@click.option("--max-size-growth", default="0%", show_default=True,
              help="Largest tolerated file-size growth (compared exactly).")
@click.option("--format", "output_format", type=click.Choice(COMPARE_OUTPUT_FORMATS), default="md",
              show_default=True, help="What to print on stdout: a markdown job summary or JSON.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Also write the JSON report here.")
@click.option("--allow-host-mismatch", is_flag=True,
              help="Compare profiles whose host fingerprints differ (the differences are listed).")
@force_option
def command(baseline, candidate, baseline_model, candidate_model, max_slowdown, false_alarm_rate,
            max_size_growth, output_format, output, allow_host_mismatch, force):
    """Compare CANDIDATE.json against BASELINE.json (both from `edgeprune profile`), or two
    models measured together in one PROFILE (--baseline-model / --candidate-model).

    Entries pair by model name, format, batch and threads, at the same runtime inference
    precision (cells that ran at bf16 and f32 are not paired: exit 2). Per cell, from the
    per-process medians of both profiles (every run where a profile has fewer than 5 processes):
    the candidate/baseline latency ratio (Hodges-Lehmann: the median of all pairwise ratios)
    and its one-sided Mann-Whitney lower confidence bound. A regression is a lower bound above
    1 + --max-slowdown, that is a candidate slower than the threshold with confidence: one that
    is not is flagged with probability at most --false-alarm-rate (split over the cells). When
    other processes used a share of the CPUs during either profile, the threshold widens by
    that share (capped at 60%). A slower estimate without confidence is reported, not failed.
    File size growth beyond --max-size-growth is a regression.

    Two profiles made at different times carry the host's drift between them (on a shared
    2-vCPU VM, more than 10% over minutes). On such runners profile the baseline model and the
    candidate together (`edgeprune profile base.xml model.xml`: their processes alternate) and
    compare within that PROFILE: each turn's pair of process medians ran seconds apart, and the
    ratio is judged on those pairs (Wilcoxon signed-rank).

    \b
    Exit status: 0 no regression, 1 regression, 2 unusable input (bad JSON, wrong schema,
    different hosts without --allow-host-mismatch, nothing to pair).
    \b
    Examples (CI):
      edgeprune compare baseline.json candidate.json --max-slowdown 10% >> "$GITHUB_STEP_SUMMARY"
      cp main/model.xml base.xml && cp main/model.bin base.bin   # names must differ
      edgeprune profile base.xml model.xml -o both.json
      edgeprune compare both.json --baseline-model base --candidate-model model
    """
    from edgeprune.api import compare, compare_within
    from edgeprune.compare import CompareConfig, parse_fraction
    from edgeprune.errors import EdgepruneError

    config = CompareConfig(max_slowdown=parse_fraction(max_slowdown, "--max-slowdown"),
                           alpha=parse_fraction(false_alarm_rate, "--false-alarm-rate"),
                           max_size_growth=parse_fraction(max_size_growth, "--max-size-growth"),
                           allow_host_mismatch=allow_host_mismatch)
    within = baseline_model is not None or candidate_model is not None
    if within and (baseline_model is None or candidate_model is None or candidate is not None):
        raise EdgepruneError("compare within one profile: give PROFILE and both --baseline-model and "
                             "--candidate-model (and no second file)")
    if not within and candidate is None:
        raise EdgepruneError("give BASELINE.json and CANDIDATE.json, or one PROFILE with --baseline-model "
                             "and --candidate-model")
    result = (compare_within(baseline, baseline_model, candidate_model, config, output, force=force) if within
              else compare(baseline, candidate, config, output, force=force))
    if output_format == "json":
        click.echo(result.to_json())
    else:
        click.echo(result.to_markdown(), nl=False)
    raise SystemExit(1 if result.regression else 0)
