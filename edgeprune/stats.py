"""Confidence intervals for the accuracies edgeprune reports (Wilson score interval, 95%).

An accuracy measured on n images is a binomial proportion; with n = 817 a 45% accuracy is
±3.4 points, with n = 128 it is ±8.5. The Wilson interval (Wilson 1927) stays inside [0, 1]
and keeps its coverage near 0% and 100%, where the normal approximation does not.
`annotate` adds `<key>_ci95` ([low, high]) and `<key>_n` beside every accuracy of a record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

Z95 = 1.959963984540054  # the 97.5% standard-normal quantile
COUNT_KEYS = ("images", "samples", "test_samples", "n")


def wilson(accuracy: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion `accuracy` observed on `n` trials; (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, float(accuracy)))
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def half_width(accuracy: float, n: int) -> float:
    low, high = wilson(accuracy, n)
    return (high - low) / 2


def pm(accuracy: float | None, n: int | None, digits: int = 4) -> str:
    """`0.4400 ± 0.0340` (the Wilson interval's half-width); the bare value without n."""
    if accuracy is None:
        return "-"
    if not n:
        return f"{accuracy:.{digits}f}"
    return f"{accuracy:.{digits}f} ± {half_width(accuracy, n):.{digits}f}"


def pct_pm(accuracy: float | None, n: int | None) -> str:
    """`44.0% ± 3.4` (points); the bare percentage without n."""
    if accuracy is None:
        return "-"
    if not n:
        return f"{accuracy:.1%}"
    return f"{accuracy:.1%} ± {100 * half_width(accuracy, n):.1f}"


def separable(a: float, n_a: int, b: float, n_b: int) -> bool:
    """Whether two accuracies' 95% intervals do not overlap (a conservative test: overlapping
    intervals do not prove equality, they say these images cannot tell the two apart)."""
    low_a, high_a = wilson(a, n_a)
    low_b, high_b = wilson(b, n_b)
    return high_a < low_b or high_b < low_a


def _is_accuracy(key: str, value: Any) -> bool:
    return (key.endswith("accuracy") and isinstance(value, float) and not isinstance(value, bool)
            and 0.0 <= value <= 1.0)


def annotate(record: dict, n: int | None = None) -> dict:
    """Add `<key>_ci95` and `<key>_n` beside every `...accuracy` float (and `<key>_ci95` beside
    every `..._accuracy_at` curve) of `record` and its nested dicts and lists, in place; n is
    the nearest `images` / `samples` / `test_samples` / `n` count, or `n`. Returns `record`."""
    local_n = next((int(record[k]) for k in COUNT_KEYS if isinstance(record.get(k), int)), n)
    for key, value in list(record.items()):
        if key.endswith(("_ci95", "_n")):
            continue
        if _is_accuracy(key, value) and local_n:
            record[f"{key}_ci95"] = [round(v, 6) for v in wilson(value, local_n)]
            record[f"{key}_n"] = local_n
        elif key.endswith("accuracy_at") and isinstance(value, Mapping) and local_n:
            record[f"{key}_ci95"] = {k: [round(v, 6) for v in wilson(float(a), local_n)] for k, a in value.items()
                                     if isinstance(a, (int, float))}
        elif isinstance(value, dict):
            annotate(value, local_n)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    annotate(item, local_n)
    return record


def n_of(record: Mapping[str, Any], key: str) -> int | None:
    """The n recorded beside `key` by `annotate`."""
    value = record.get(f"{key}_n")
    return int(value) if isinstance(value, int) else None
