"""Wilson intervals: the formula, and that reports carry them."""

from __future__ import annotations

import json

import pytest

from edgeprune.stats import annotate, pm, separable, wilson


def test_wilson_matches_published_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553 .. 0.3662; 15/148 -> 0.0624 .. 0.1605; 0/20 -> 0 .. 0.1611
    for successes, n, low, high in ((81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611)):
        got = wilson(successes / n, n)
        assert got == pytest.approx((low, high), abs=1e-4)
    assert wilson(0.5, 0) == (0.0, 1.0)
    # the leaderboard's 128 images: about +-9 points around 50%
    assert (wilson(0.5, 128)[1] - wilson(0.5, 128)[0]) / 2 == pytest.approx(0.085, abs=0.002)
    assert pm(0.45, 817) == "0.4500 ± 0.0340" and pm(0.45, None) == "0.4500"


def test_separable_needs_disjoint_intervals():
    assert not separable(0.45, 128, 0.50, 128)
    assert separable(0.45, 10000, 0.50, 10000)


def test_annotate_uses_the_nearest_count():
    record = annotate({"images": 100, "clean_accuracy": 0.9, "train_accuracy_last_epoch": 0.8,
                       "guard": {"images": 20, "epochs": [{"robust_accuracy": 0.5}]},
                       "robust_accuracy_at": {"0.03": 0.5}})
    assert record["clean_accuracy_n"] == 100 and record["clean_accuracy_ci95"] == pytest.approx(list(wilson(0.9, 100)), abs=1e-6)
    assert record["guard"]["epochs"][0]["robust_accuracy_n"] == 20
    assert record["robust_accuracy_at_ci95"]["0.03"] == pytest.approx(list(wilson(0.5, 100)), abs=1e-6)
    assert "train_accuracy_last_epoch_ci95" not in record


def test_prune_report_carries_intervals(tmp_path, digits_model):
    from edgeprune.api import PruneOptions, prune

    output = tmp_path / "p.h5"
    report = prune(digits_model[0], PruneOptions(method="tfmot", epochs=0, limit_test=200), output,
                   progress=False).record
    n = report["dataset"]["test_samples"]
    for part in ("before", "after"):
        assert report[part]["test_accuracy_n"] == n == 200
        low, high = report[part]["test_accuracy_ci95"]
        assert low < report[part]["test_accuracy"] < high
    assert json.loads(output.with_suffix(".json").read_text())["after"]["test_accuracy_ci95"] == [low, high]
    assert " ± " in output.with_suffix(".md").read_text()
    assert report["taxonomy"] == {**report["taxonomy"], "method": "tfmot", "iteration": "one-shot",
                                  "structure": "unstructured", "pretraining": "natural", "fine_tuning": "none"}
