"""Compare two `edgeprune.profile/1` reports: a CI gate that a noisy machine does not trip.

Entries pair by (model, format, batch, threads). A latency slowdown counts as a regression
only when both hold:

1. the floor (fastest run) is slower beyond the threshold and the host's busy-ness:
   min_c > min_b * (1 + max(max_slowdown, min(busy, 0.6)))
2. the floors differ by more than their own spread:       min_c - min_b > spread_b + spread_c,
   with spread = p5 - min, the width of the run's fastest twentieth.

`busy` is the larger, over the two cells, of the share of the measured CPUs that *other*
processes used while the cell was measured (`other_load_cores / cpus`, from /proc/stat).
The median (p50) ratio is reported beside the verdict; a median slower than the threshold
without (1) and (2) is "slower (within noise)", and a floor slower than the threshold but
not beyond the busy share is "slower (host busy)": reported, never failed.

Why the floor and not the median: interference from other processes inflates the median and
widens the spread of a run, but it seldom slows *every* run, so the fastest of many runs
stays near what the hardware needs, while a model that does more work raises every run. The
median's own spread (IQR) is no use as a margin on a busy host: it grows with the
interference until a 2x slower model hides inside it, and a baseline measured in a starved
moment can have a median as high as a 2x slower candidate's. The fastest twentieth stays tight
unless the run was starved of CPU, which (2) then reports as noise; a few lucky fast runs in
one profile widen its fastest twentieth the same way. (The fastest tenth was too wide: on the
saturated host below, 90% of a run's calls could be interrupted.) Under sustained load even the floor moves:
on a 2-core host where other jobs used 85-99% of both CPUs, back-to-back profiles of one
sub-millisecond model had floors within 2% of each other in most cases and up to 43% above
in some (medians up to 2.5x apart), hence the busy allowance. On a quiet runner `busy` is ~0
and the plain threshold applies; the cap at 60% keeps a 2x slowdown always judged.
Size growth is deterministic and is compared exactly: file bytes (`.xml` with its `.bin`)
beyond `max_size_growth` are a regression.

Profiles from different hosts are refused unless allowed: CPU model, architecture, core
counts, ISA flags, the number of CPUs measured on (`--cpus`), Python, numpy and the version
of each paired entry's runtime must match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeprune.errors import EdgepruneError

SCHEMA = "edgeprune.compare/1"
PROFILE_SCHEMA = "edgeprune.profile/1"
HOST_FIELDS = ("cpu_model", "architecture", "logical_cores", "physical_cores", "isa")
HOST_VERSIONS = ("python", "numpy")
LATENCY_KEYS = ("min", "p5", "p50")
BUSY_ALLOWANCE_CAP = 0.6  # a busy host widens the floor threshold up to 60%, never more
RULE = ("regression = fastest run slower than max(threshold, min(busy, 60%)) AND that gap > "
        "(p5 - min) of baseline + (p5 - min) of candidate; busy = share of the measured CPUs other "
        "processes used")


@dataclass(frozen=True)
class CompareConfig:
    """Thresholds as fractions (0.10 = 10%)."""

    max_slowdown: float = 0.10
    max_size_growth: float = 0.0
    allow_host_mismatch: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.max_slowdown <= 10:
            raise EdgepruneError(f"max_slowdown must be in [0%, 1000%], got {self.max_slowdown:.0%}")
        if not 0 <= self.max_size_growth <= 10:
            raise EdgepruneError(f"max_size_growth must be in [0%, 1000%], got {self.max_size_growth:.0%}")


def parse_fraction(text: str, what: str) -> float:
    """'10%' -> 0.10, '0.1' -> 0.10; a bare number of 1 or more is refused as ambiguous."""
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            return float(raw[:-1]) / 100.0
        value = float(raw)
    except ValueError:
        raise EdgepruneError(f"{what} must be a percentage like 10% or a fraction like 0.10, got {text!r}") from None
    if value >= 1:
        raise EdgepruneError(f"{what} {text!r} is ambiguous: write it as a percentage ({value:g}%) "
                             f"or a fraction below 1")
    return value


def load_profile(path: str | os.PathLike) -> dict:
    """Read and check a profile report; any problem is one EdgepruneError line."""
    from edgeprune.io import read_json

    report = read_json(path)
    if not isinstance(report, dict) or report.get("schema") != PROFILE_SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise EdgepruneError(f"{path}: not an edgeprune profile (schema {found!r}, expected {PROFILE_SCHEMA!r})")
    for key, kind in (("host", dict), ("models", list), ("results", list)):
        if not isinstance(report.get(key), kind):
            raise EdgepruneError(f"{path}: profile has no {key!r} {kind.__name__} (truncated or edited?)")
    for index, entry in enumerate(report["results"]):
        try:
            _ = (str(entry["model"]), str(entry["format"]), int(entry["batch"]), int(entry["threads"]))
            _ = [float(entry["latency_ms"][k]) for k in LATENCY_KEYS]
        except (KeyError, TypeError, ValueError):
            raise EdgepruneError(f"{path}: results[{index}] lacks model/format/batch/threads or "
                                 f"latency_ms {'/'.join(LATENCY_KEYS)}") from None
    for index, model in enumerate(report["models"]):
        if not isinstance(model, dict) or "model" not in model or "format" not in model:
            raise EdgepruneError(f"{path}: models[{index}] lacks model/format")
    return report


def _key(entry: dict) -> tuple[str, str, int, int]:
    return (str(entry["model"]), str(entry["format"]), int(entry["batch"]), int(entry["threads"]))


def host_differences(baseline: dict, candidate: dict) -> list[str]:
    """'field: baseline vs candidate' for each fingerprint field that matters for latency."""
    differences = []
    base_host, cand_host = baseline["host"], candidate["host"]
    for name in HOST_FIELDS:
        if base_host.get(name) != cand_host.get(name):
            differences.append(f"{name}: {base_host.get(name)!r} vs {cand_host.get(name)!r}")
    base_versions, cand_versions = base_host.get("versions") or {}, cand_host.get("versions") or {}
    for name in HOST_VERSIONS:
        if base_versions.get(name) != cand_versions.get(name):
            differences.append(f"{name}: {base_versions.get(name)!r} vs {cand_versions.get(name)!r}")
    base_cpus = (baseline.get("device_like") or {}).get("cpu_count")
    cand_cpus = (candidate.get("device_like") or {}).get("cpu_count")
    if base_cpus != cand_cpus:
        differences.append(f"cpus measured on: {base_cpus!r} vs {cand_cpus!r}")
    base_runtimes = {(e["model"], e["format"]): (e.get("runtime"), e.get("runtime_version"))
                     for e in baseline["results"]}
    seen = set()
    for entry in candidate["results"]:
        pair = (entry["model"], entry["format"])
        runtime = (entry.get("runtime"), entry.get("runtime_version"))
        if pair in base_runtimes and base_runtimes[pair] != runtime and runtime not in seen:
            seen.add(runtime)
            before = " ".join(str(v) for v in base_runtimes[pair])
            differences.append(f"runtime of {entry['format']}: {before} vs {' '.join(str(v) for v in runtime)}")
    return differences


def _busy(cell: dict) -> float:
    """Share (0..1) of the cell's CPUs that other processes used while it was measured."""
    other, cpus = cell.get("other_load_cores"), len(cell.get("cpus") or []) or 1
    return 0.0 if other is None else min(max(float(other) / cpus, 0.0), 1.0)


def latency_verdict(base: dict, cand: dict, max_slowdown: float) -> dict:
    """Ratios and the noise-aware verdict for one paired cell (see the module docstring)."""
    b, c = base["latency_ms"], cand["latency_ms"]
    limit = 1.0 + max_slowdown
    busy = max(_busy(base), _busy(cand))
    floor_limit = 1.0 + max(max_slowdown, min(busy, BUSY_ALLOWANCE_CAP))
    ratio = c["p50"] / b["p50"] if b["p50"] > 0 else float("inf")
    floor_ratio = c["min"] / b["min"] if b["min"] > 0 else float("inf")
    noise_ms = (b["p5"] - b["min"]) + (c["p5"] - c["min"])
    gap_ms = c["min"] - b["min"]
    if floor_ratio > floor_limit and gap_ms > noise_ms:
        verdict = "regression"
    elif floor_ratio > limit and gap_ms > noise_ms:
        verdict = "slower (host busy)"
    elif ratio > limit or floor_ratio > limit:
        verdict = "slower (within noise)"
    elif floor_ratio < 1 / limit and -gap_ms > noise_ms:
        verdict = "faster"
    else:
        verdict = "ok"
    return {
        "model": cand["model"], "format": cand["format"], "runtime": cand.get("runtime"),
        "batch": int(cand["batch"]), "threads": int(cand["threads"]),
        "baseline_p50_ms": b["p50"], "candidate_p50_ms": c["p50"], "p50_ratio": round(ratio, 4),
        "baseline_min_ms": b["min"], "candidate_min_ms": c["min"], "min_ratio": round(floor_ratio, 4),
        "baseline_p90_ms": b.get("p90"), "candidate_p90_ms": c.get("p90"),
        "floor_noise_ms": round(noise_ms, 4), "floor_gap_ms": round(gap_ms, 4),
        "busy": round(busy, 3), "floor_limit": round(floor_limit, 4),
        "baseline_runs": base.get("runs"), "candidate_runs": cand.get("runs"),
        # Cores' worth of other processes' CPU time during each measurement (host busy-ness).
        "baseline_other_load_cores": base.get("other_load_cores"),
        "candidate_other_load_cores": cand.get("other_load_cores"),
        "verdict": verdict,
    }


def size_verdict(base: dict, cand: dict, max_size_growth: float) -> dict:
    growth = cand["file_bytes"] / base["file_bytes"] - 1 if base.get("file_bytes") else 0.0
    gzip_ratio = (cand["gzip_bytes"] / base["gzip_bytes"]
                  if base.get("gzip_bytes") and cand.get("gzip_bytes") is not None else None)
    return {
        "model": cand["model"], "format": cand["format"],
        "baseline_file_bytes": base.get("file_bytes"), "candidate_file_bytes": cand.get("file_bytes"),
        "file_ratio": round(1 + growth, 4),
        "baseline_gzip_bytes": base.get("gzip_bytes"), "candidate_gzip_bytes": cand.get("gzip_bytes"),
        "gzip_ratio": None if gzip_ratio is None else round(gzip_ratio, 4),
        "verdict": "regression" if growth > max_size_growth + 1e-12 else ("smaller" if growth < 0 else "ok"),
    }


def compare_profiles(baseline: dict, candidate: dict, config: CompareConfig, *,
                     baseline_path: str = "baseline", candidate_path: str = "candidate") -> dict:
    """The `edgeprune.compare/1` report; raises EdgepruneError on a host mismatch or no pairs."""
    differences = host_differences(baseline, candidate)
    if differences and not config.allow_host_mismatch:
        raise EdgepruneError("profiles come from different hosts (" + "; ".join(differences) +
                             "); pass --allow-host-mismatch to compare anyway")
    base_cells = {_key(e): e for e in baseline["results"]}
    cand_cells = {_key(e): e for e in candidate["results"]}
    paired = [k for k in base_cells if k in cand_cells]
    if not paired:
        raise EdgepruneError(f"{baseline_path} and {candidate_path} share no (model, format, batch, threads) "
                             "entry; profile the same model names and settings")
    latency = [latency_verdict(base_cells[k], cand_cells[k], config.max_slowdown) for k in paired]
    base_models = {(m["model"], m["format"]): m for m in baseline["models"]}
    size = [size_verdict(base_models[(m["model"], m["format"])], m, config.max_size_growth)
            for m in candidate["models"] if (m["model"], m["format"]) in base_models
            and m.get("file_bytes") is not None]
    regressions = sum(r["verdict"] == "regression" for r in latency + size)
    return {
        "schema": SCHEMA,
        "baseline": str(baseline_path), "candidate": str(candidate_path),
        "settings": {"max_slowdown": config.max_slowdown, "max_size_growth": config.max_size_growth,
                     "rule": RULE},
        "host": {"cpu_model": candidate["host"].get("cpu_model"),
                 "architecture": candidate["host"].get("architecture"),
                 "differences": differences, "mismatch_allowed": bool(differences)},
        "verdict": "regression" if regressions else "pass",
        "regressions": regressions,
        "latency": latency,
        "size": size,
        "baseline_only": ["/".join(map(str, k)) for k in base_cells if k not in cand_cells],
        "candidate_only": ["/".join(map(str, k)) for k in cand_cells if k not in base_cells],
    }


_ICONS = {"regression": "❌ regression", "slower (within noise)": "⚠️ slower (within noise)",
          "slower (host busy)": "⚠️ slower (host busy)",
          "faster": "🚀 faster", "smaller": "✅ smaller", "ok": "✅ ok"}


def markdown_report(report: dict) -> str:
    """A GitHub job summary: verdict first, then latency and size tables."""
    settings = report["settings"]
    head = "❌ **Regression**" if report["verdict"] == "regression" else "✅ **No regression**"
    lines = [f"## edgeprune compare: {head}", "",
             f"`{Path(report['candidate']).name}` against baseline `{Path(report['baseline']).name}` on "
             f"{report['host']['cpu_model']} ({report['host']['architecture']}); "
             f"max slowdown {settings['max_slowdown']:.0%}, max size growth {settings['max_size_growth']:.0%}; "
             f"{report['regressions']} regression(s).", ""]
    if report["host"]["differences"]:
        lines += ["> ⚠️ host mismatch allowed: " + "; ".join(report["host"]["differences"]), ""]
    lines += ["| model | runtime | batch | threads | p50 ms base → cand | ratio | min ms base → cand | "
              "floor noise ms | host busy | verdict |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in report["latency"]:
        lines.append(f"| {row['model']} | {row['runtime']} | {row['batch']} | {row['threads']} | "
                     f"{row['baseline_p50_ms']:.2f} → {row['candidate_p50_ms']:.2f} | ×{row['p50_ratio']:.2f} | "
                     f"{row['baseline_min_ms']:.2f} → {row['candidate_min_ms']:.2f} | {row['floor_noise_ms']:.3f} | "
                     f"{row['busy']:.0%} | "
                     f"{_ICONS[row['verdict']]} |")
    if report["size"]:
        lines += ["", "| model | format | file bytes base → cand | ratio | gzip ratio | verdict |",
                  "|---|---|---:|---:|---:|---|"]
        for row in report["size"]:
            gzip_ratio = "–" if row["gzip_ratio"] is None else f"×{row['gzip_ratio']:.2f}"
            lines.append(f"| {row['model']} | {row['format']} | {row['baseline_file_bytes']:,} → "
                         f"{row['candidate_file_bytes']:,} | ×{row['file_ratio']:.3f} | {gzip_ratio} | "
                         f"{_ICONS[row['verdict']]} |")
    for label, keys in (("only in baseline", report["baseline_only"]), ("only in candidate", report["candidate_only"])):
        if keys:
            lines += ["", f"Not compared ({label}): " + ", ".join(f"`{k}`" for k in keys)]
    lines += ["", f"<sub>Rule: {RULE}. A slower median alone is reported, not failed. Host busy: "
                  "the larger share of the measured CPUs that other processes used during either run."
                  "</sub>"]
    return "\n".join(lines) + "\n"
