"""FMN minimum-norm attack and the robustness curves built from it.

On the session `digits_model` (smallcnn, ~95%) with 100 stratified test images.

What "FMN's robust accuracy at eps equals a bounded attack's" can honestly mean on 100
images: FMN (100 steps) and bounded attacks are both upper bounds on the true robust
accuracy and neither dominates everywhere. Measured here (L-inf): at eps 0.05 FMN, PGD-10
and APGD-100 agree exactly; at 0.1 FMN is 1-3 points below PGD-10 and 1-2 above APGD; in
the tail (eps 0.15, accuracy < 20%) APGD finds up to 7 points more than FMN. So the test
asserts FMN <= PGD-10 + 1 point (one image) at eps 0.05 and 0.1, and FMN within 4 points of
APGD there; the tail gap is reported in robustness.py's docs, not hidden by the test.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

N_IMAGES = 100


@pytest.fixture(scope="module")
def data(digits_test_subset):
    return digits_test_subset(N_IMAGES, seed=0)


@pytest.fixture(scope="module")
def model_fn(digits_logits_fn):
    return digits_logits_fn


def _predict(model_fn, x):
    import tensorflow as tf

    return np.asarray(model_fn(tf.constant(x))).argmax(axis=1)


@pytest.fixture(scope="module")
def linf_run(model_fn, data):
    from edgeprune.attacks.fmn import FMNConfig, fmn_norms

    x, y = data
    return fmn_norms(model_fn, x, y, norm="linf", config=FMNConfig(steps=100))


def test_reported_norms_are_real_adversarial_examples(linf_run, model_fn, data):
    x, y = data
    x_adv, norms = linf_run
    clean_wrong = _predict(model_fn, x) != y
    assert np.all(norms[clean_wrong] == 0)
    found = np.isfinite(norms) & (norms > 0)
    assert found.sum() >= 0.9 * (~clean_wrong).sum()
    assert np.all(_predict(model_fn, x_adv[found]) != y[found])
    measured = np.abs(x_adv.astype(np.float64) - x).reshape(len(x), -1).max(axis=1)
    np.testing.assert_allclose(measured[found], norms[found], rtol=1e-5, atol=1e-6)
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_curve_is_monotone_and_consistent(linf_run, model_fn, data):
    from edgeprune.robustness import accuracy_curve, median_norm, robust_accuracy_at

    x, y = data
    _, norms = linf_run
    grid = np.linspace(0, 0.3, 301)
    curve = accuracy_curve(norms, grid)
    assert np.all(np.diff(curve) <= 0)
    assert curve[0] == pytest.approx(np.mean(_predict(model_fn, x) == y))
    assert curve[-1] == pytest.approx(np.mean(~np.isfinite(norms) | (norms > 0.3)))
    for eps in (0.0, 0.05, 0.1, float(np.median(norms))):
        assert robust_accuracy_at(norms, eps) == pytest.approx(np.mean(norms > eps))
    assert robust_accuracy_at(norms, median_norm(norms)) <= 0.5 <= robust_accuracy_at(norms, median_norm(norms) - 1e-6)


def test_fmn_matches_bounded_attacks_at_eps(linf_run, digits_model, model_fn, data):
    from edgeprune.attacks.apgd import apgd
    from edgeprune.attacks.runner import AttackConfig, run_attack
    from edgeprune.robustness import robust_accuracy_at

    x, y = data
    _, norms = linf_run
    for eps in (0.05, 0.1):
        pgd = run_attack(digits_model[1], x, y, AttackConfig.create("pgd", eps=eps, norm="linf", seed=0,
                                                                   params={"steps": 10}))
        apgd_acc = float(np.mean(_predict(model_fn, apgd(model_fn, x, y, eps=eps, steps=100)) == y))
        fmn_acc = robust_accuracy_at(norms, eps)
        assert fmn_acc <= pgd.adversarial_accuracy + 0.01, (eps, fmn_acc, pgd.adversarial_accuracy)
        assert abs(fmn_acc - apgd_acc) <= 0.04, (eps, fmn_acc, apgd_acc)


def test_l2_and_bounded_fmn(model_fn, data):
    from edgeprune.attacks.fmn import FMNConfig, fmn_norms

    x, y = data
    x, y = x[:48], y[:48]
    x_adv, norms = fmn_norms(model_fn, x, y, norm="l2", config=FMNConfig(steps=60, alpha_init=0.1))
    found = np.isfinite(norms) & (norms > 0)
    assert found.mean() > 0.85
    measured = np.sqrt(((x_adv.astype(np.float64) - x) ** 2).reshape(len(x), -1).sum(axis=1))
    np.testing.assert_allclose(measured[found], norms[found], rtol=1e-4, atol=1e-6)
    assert np.all(_predict(model_fn, x_adv[found]) != y[found])
    # A bound caps the search: nothing beyond eps is reported, failures are inf.
    _, capped = fmn_norms(model_fn, x, y, norm="l2", eps=0.3, config=FMNConfig(steps=60, alpha_init=0.1))
    assert np.all((capped <= 0.3 + 1e-6) | np.isinf(capped))
    assert np.isinf(capped).sum() > np.isinf(norms).sum()


def test_tuning_picks_the_smallest_median(model_fn, data):
    from edgeprune.attacks.fmn import FMNConfig, tune_fmn

    x, y = data
    result = tune_fmn(model_fn, x[:24], y[:24], norm="linf", steps=20, alphas=(0.1, 1.0))
    assert len(result.table) == 4
    best = min(result.table, key=lambda r: (r["median_norm"], r["mean_finite_norm"]))
    assert (result.config.alpha_init, result.config.schedule) == (best["alpha_init"], best["schedule"])
    with pytest.raises(ValueError, match="schedule"):
        FMNConfig(schedule="step")
    with pytest.raises(ValueError, match="alpha_init"):
        FMNConfig(alpha_init=0)
    cosine, linear = FMNConfig(steps=10), FMNConfig(steps=10, schedule="linear")
    assert cosine.alpha(0) == linear.alpha(0) == 1.0
    assert cosine.alpha(10) == pytest.approx(0.01) and linear.alpha(5) == pytest.approx(0.505)


def test_fmn_transfer_set_through_the_runner(digits_model, data):
    from edgeprune.attacks.runner import AttackConfig, run_attack

    x, y = data
    x, y = x[:32], y[:32]
    unbounded = run_attack(digits_model[1], x, y, AttackConfig.create("fmn", norm="linf", params={"steps": 40}))
    assert unbounded.config.eps is None and unbounded.adversarial_accuracy < 0.15
    bounded = run_attack(digits_model[1], x, y, AttackConfig.create("fmn", eps=0.05, norm="linf",
                                                                   params={"steps": 40}))
    assert bounded.norms_linf.max() <= 0.05 + 1e-6
    assert bounded.adversarial_accuracy > unbounded.adversarial_accuracy


def test_parse_eps():
    from edgeprune.errors import EdgepruneError
    from edgeprune.robustness import parse_eps

    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps("0.03") == pytest.approx(0.03) and parse_eps(0.5) == 0.5
    for bad in ("abc", "-1", "1/0", "inf"):
        with pytest.raises(EdgepruneError, match="eps"):
            parse_eps(bad)


def test_evaluate_curve_cli(digits_model, digits_converted, tmp_path):
    import shutil

    from click.testing import CliRunner

    from edgeprune.cli import cli

    second = tmp_path / "copy.h5"
    shutil.copy(digits_model[0], second)
    stem = tmp_path / "curves"
    runner = CliRunner()
    result = runner.invoke(cli, ["evaluate", str(digits_model[0]), str(second), "--curve", "-d", "digits",
                                 "--limit", "30", "--fmn-steps", "25", "--no-tune", "--eps", "0.05,0.1",
                                 "-q", "-o", str(stem)])
    assert result.exit_code == 0, result.output
    report = json.loads(stem.with_suffix(".json").read_text())
    assert next(iter(report)) == "schema" and report["schema"] == "edgeprune.robustness/1"
    assert [m["label"] for m in report["models"]] == [digits_model[0].name, "copy.h5"]
    assert set(report["models"][0]["robust_accuracy_at"]) == {"0.05", "0.1"}
    with open(stem.with_suffix(".csv")) as handle:
        rows = list(csv.DictReader(handle))
    for label in report["curves"]:
        accs = [float(r["robust_accuracy"]) for r in rows if r["model"] == label]
        assert len(accs) == len(report["grid"]) and all(b <= a for a, b in zip(accs, accs[1:], strict=False))
    png = stem.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 200_000

    tflite, _ = digits_converted("tflite", "fp32")
    bad = runner.invoke(cli, ["evaluate", str(tflite), "--curve", "-d", "digits", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "Keras" in bad.output and not (tmp_path / "x.json").exists()
    bad = runner.invoke(cli, ["evaluate", str(digits_model[0]), "--curve", "-d", "digits", "--eps", "a/b"])
    assert bad.exit_code == 2 and "eps" in bad.output
