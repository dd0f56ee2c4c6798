"""AutoAttack-style ensemble, its attacks (APGD, FAB-T, Square) and sanity checks.

All on the session `digits_model` (smallcnn, ~95%) with 64 test images and reduced
iterations; the eps is chosen where PGD-10 leaves a robust accuracy well inside (0, 1), so
"stronger than PGD" is a real comparison.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

EPS = 0.1
N_IMAGES = 64
REDUCED = {"apgd-ce": {"steps": 25}, "apgd-t": {"steps": 15, "n_target_classes": 2},
           "fab-t": {"steps": 15, "n_target_classes": 2}, "square": {"n_queries": 150}}


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
def aa_result(model_fn, data):
    from edgeprune.attacks.autoattack import AutoAttackConfig, run_autoattack

    x, y = data
    config = AutoAttackConfig(eps=EPS, version="fast", seed=0, batch_size=32, overrides=REDUCED)
    return run_autoattack(model_fn, x, y, config)


def test_autoattack_is_at_least_as_strong_as_pgd10(aa_result, digits_model, data):
    from edgeprune.attacks.runner import AttackConfig, run_attack

    x, y = data
    pgd = run_attack(digits_model[1], x, y, AttackConfig.create("pgd", eps=EPS, norm="linf", seed=0,
                                                               params={"steps": 10}))
    assert 0.2 < pgd.adversarial_accuracy < 0.9, "eps must leave PGD-10 a non-trivial accuracy"
    assert aa_result.clean_accuracy > 0.9
    assert aa_result.robust_accuracy <= pgd.adversarial_accuracy


def test_each_stage_never_increases_robust_accuracy(aa_result, model_fn, data):
    x, y = data
    accuracies = [aa_result.clean_accuracy] + [s.robust_accuracy for s in aa_result.stages]
    assert all(b <= a for a, b in zip(accuracies, accuracies[1:], strict=False))
    assert [s.name for s in aa_result.stages] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert all(s.status == "ran" for s in aa_result.stages)
    assert aa_result.stages[-1].robust_accuracy == aa_result.robust_accuracy
    assert sum(s.fooled for s in aa_result.stages) == int(np.sum(aa_result.clean_pred == y)) - int(
        aa_result.robust.sum())


def test_reported_worst_case_is_real(aa_result, model_fn, data):
    """Every point counted as fooled is misclassified by its x_adv, within eps and [0, 1]."""
    x, y = data
    delta = np.abs(aa_result.x_adv.astype(np.float64) - x).reshape(len(x), -1).max(axis=1)
    assert delta.max() <= EPS + 1e-6
    assert aa_result.x_adv.min() >= 0.0 and aa_result.x_adv.max() <= 1.0
    pred = _predict(model_fn, aa_result.x_adv)
    assert np.array_equal(pred == y, aa_result.robust)
    assert set(aa_result.fooled_by[~aa_result.robust]) <= {"clean", "apgd-ce", "apgd-t", "fab-t", "square"}


def test_square_attacks_a_tflite_model_without_gradients(digits_converted, data):
    from edgeprune.attacks.autoattack import AutoAttackConfig, run_autoattack
    from edgeprune.runtime import load

    x, y = data
    path, _ = digits_converted("tflite", "fp32")
    predictor = load(path)
    config = AutoAttackConfig(eps=EPS, version="fast", overrides={"square": {"n_queries": 300}})
    result = run_autoattack(None, x, y, config, predict=lambda b: predictor.predict(b, 64))
    statuses = {s.name: s.status for s in result.stages}
    assert statuses["square"] == "ran"
    assert all(statuses[s].startswith("skipped") for s in ("apgd-ce", "apgd-t", "fab-t"))
    assert result.robust_accuracy < result.clean_accuracy - 0.25
    assert np.abs(result.x_adv - x).max() <= EPS + 1e-6
    assert np.array_equal(predictor.predict(result.x_adv, 64).argmax(axis=1) == y, result.robust)


def test_apgd_properties(model_fn, data, digits_model):
    from edgeprune.attacks.apgd import apgd, checkpoints

    x, y = data
    for norm, eps in (("inf", 0.08), ("2", 0.6)):
        first = apgd(model_fn, x, y, eps=eps, norm=norm, steps=20, seed=3)
        again = apgd(model_fn, x, y, eps=eps, norm=norm, steps=20, seed=3)
        assert first.tobytes() == again.tobytes()
        flat = (first.astype(np.float64) - x).reshape(len(x), -1)
        norms = np.abs(flat).max(axis=1) if norm == "inf" else np.sqrt((flat ** 2).sum(axis=1))
        assert norms.max() <= eps + 1e-6 and first.min() >= 0 and first.max() <= 1
        assert np.mean(_predict(model_fn, first) == y) < np.mean(_predict(model_fn, x) == y) - 0.2
    assert np.array_equal(apgd(model_fn, x, y, eps=0.0), x)
    # The paper's checkpoints for 100 iterations: 0, 22, 41, 57, 70, 80, 87, 93, 97, ...
    assert checkpoints(100)[:5] == [22, 41, 57, 70, 80]
    with pytest.raises(ValueError, match="loss"):
        apgd(model_fn, x, y, eps=0.1, loss="hinge")
    with pytest.raises(ValueError, match="target_class_rank"):
        apgd(model_fn, x, y, eps=0.1, loss="dlr-t", target_class_rank=11)


def test_fab_projection_is_exact_and_fab_finds_small_perturbations(model_fn, data):
    from scipy.optimize import linprog

    from edgeprune.attacks.fab import fab, project_linf_hyperplane

    rng = np.random.default_rng(0)
    for _ in range(10):
        d = 6
        p, w, b = rng.uniform(0, 1, (1, d)), rng.normal(size=(1, d)), rng.normal(size=1) * 0.5
        delta = project_linf_hyperplane(p, w, b)[0]
        bounds = [(-p[0, i], 1 - p[0, i]) for i in range(d)] + [(0, None)]
        a_ub = np.vstack([np.c_[np.eye(d), -np.ones(d)], np.c_[-np.eye(d), -np.ones(d)]])
        lp = linprog(np.r_[np.zeros(d), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * d), A_eq=np.r_[w[0], 0][None],
                     b_eq=[b[0] - w[0] @ p[0]], bounds=bounds)
        if lp.status == 0:  # reachable inside the box: same optimum as the LP
            assert np.abs(delta).max() == pytest.approx(lp.fun, abs=1e-5)
            assert w[0] @ (p[0] + delta) == pytest.approx(b[0], abs=1e-5)
        assert (p + delta).min() >= -1e-6 and (p + delta).max() <= 1 + 1e-6
    x, y = data
    x_adv = fab(model_fn, x, y, steps=30)
    fooled = _predict(model_fn, x_adv) != y
    correct = _predict(model_fn, x) == y
    assert fooled[correct].mean() > 0.9
    norms = np.abs(x_adv - x).reshape(len(x), -1).max(axis=1)
    assert np.median(norms[correct & fooled]) < 0.2  # minimal, not merely successful


def test_square_result_stays_in_the_ball(model_fn, data):
    from edgeprune.attacks.autoattack import numpy_predict
    from edgeprune.attacks.square import p_schedule, square_attack

    x, y = data
    result = square_attack(numpy_predict(model_fn), x, y, eps=EPS, n_queries=100, seed=1)
    assert np.abs(result.x_adv - x).max() <= EPS + 1e-6
    assert result.queries.max() <= 100
    assert (result.margins < 0).mean() > 0.1
    assert p_schedule(0.8, 0, 1000) == 0.8 and p_schedule(0.8, 999, 1000) == pytest.approx(0.8 / 512)


def test_sanity_checks_fire(model_fn, data, digits_model):
    import tensorflow as tf

    from edgeprune.attacks import checks

    x, y = data
    probe, labels = x[:16], y[:16]
    logits = np.asarray(model_fn(tf.constant(probe)))
    assert checks.check_probability_outputs(logits) is None
    assert "probabilities" in checks.check_probability_outputs(tf.nn.softmax(logits).numpy())
    assert checks.check_randomized(lambda b: np.asarray(model_fn(tf.constant(b))), probe) is None
    noise = np.random.default_rng(0)
    assert "differ" in checks.check_randomized(
        lambda b: np.asarray(model_fn(tf.constant(b))) + noise.normal(size=(len(b), 10)), probe)
    assert checks.check_zero_gradients(model_fn, probe, labels) is None
    assert "zero" in checks.check_zero_gradients(lambda t: tf.stop_gradient(model_fn(t)) + 0 * t[:, 0, 0, :1],
                                                 probe, labels)
    assert checks.check_square_after_whitebox(10, 0) is None
    assert "masked" in checks.check_square_after_whitebox(10, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert checks.emit([None, "x"]) == ["x"]
    assert len(caught) == 1


def test_config_validation():
    from edgeprune.attacks.autoattack import AutoAttackConfig

    with pytest.raises(ValueError, match="eps"):
        AutoAttackConfig(eps=0.0)
    with pytest.raises(ValueError, match="version"):
        AutoAttackConfig(eps=0.1, version="quick")
    with pytest.raises(ValueError, match="stages"):
        AutoAttackConfig(eps=0.1, stages=("pgd",))
    config = AutoAttackConfig(eps=0.1, norm="l2", stages=("square", "apgd-ce"))
    assert config.norm == "l2" and config.stages == ("apgd-ce", "square")
    assert AutoAttackConfig(eps=0.1).params("apgd-t") == {"steps": 100, "n_target_classes": 9}


def test_versions_are_one_vocabulary_and_torchattacks_does_its_work():
    """The CLI/suite name list and the attack's table agree; `torchattacks` is what that
    library's AutoAttack(version='standard') runs: 10-step APGD/APGD-T/FAB, 9 targets, Square 5000."""
    from edgeprune.attacks.autoattack import VERSIONS, AutoAttackConfig
    from edgeprune.attacks.registry import get_attack
    from edgeprune.vocab import AUTOATTACK_VERSIONS

    assert tuple(VERSIONS) == AUTOATTACK_VERSIONS
    version = next(p for p in get_attack("autoattack").params if p.name == "version")
    assert version.choices == AUTOATTACK_VERSIONS
    config = AutoAttackConfig(eps=1 / 255, version="torchattacks")
    assert [config.params(s)["steps"] for s in ("apgd-ce", "apgd-t", "fab-t")] == [10, 10, 10]
    assert config.params("apgd-t")["n_target_classes"] == config.params("fab-t")["n_target_classes"] == 9
    assert config.params("square")["n_queries"] == 5000


def test_evaluate_autoattack_cli(digits_model, digits_converted, tmp_path):
    from click.testing import CliRunner

    from edgeprune.cli import cli as main

    tflite, _ = digits_converted("tflite", "fp32")
    stem = tmp_path / "aa"
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(digits_model[0]), str(tflite), "--autoattack", "fast",
                                  "--eps", "0.3", "-d", "digits", "--limit", "16", "-q", "-o", str(stem)])
    assert result.exit_code == 0, result.output
    report = json.loads(stem.with_suffix(".json").read_text())
    assert next(iter(report)) == "schema" and report["schema"] == "edgeprune.autoattack-report/1"
    keras_row, tflite_row = report["models"]
    assert keras_row["robust_accuracy"] < keras_row["clean_accuracy"]
    assert [s["status"] for s in tflite_row["stages"]][:3] == ["skipped: needs gradients (Keras model)"] * 3
    assert stem.with_suffix(".csv").exists() and "after square" in stem.with_suffix(".md").read_text()

    bad = runner.invoke(main, ["evaluate", str(digits_model[0]), "--autoattack", "fast", "--eps", "0",
                               "-d", "digits"])
    assert bad.exit_code == 2 and "eps" in bad.output
    bad = runner.invoke(main, ["evaluate", str(digits_model[0]), "--autoattack", "fast", "--curve"])
    assert bad.exit_code == 2 and "--curve" in bad.output


def test_one_norm_vocabulary_and_projections_agree():
    import tensorflow as tf

    from edgeprune.attacks.norms import (Norm, lp_norm, lp_norm_tf, parse_norm, project, project_linf_hyperplane,
                                         project_linf_hyperplane_tf, project_tf)
    from edgeprune.attacks.registry import normalize_norm
    from edgeprune.errors import EdgepruneError

    for spelling in ("linf", "Linf", "inf", np.inf, float("inf"), Norm.LINF):
        assert parse_norm(spelling) is Norm.LINF and normalize_norm(spelling) == "linf"
    for spelling in ("l2", "L2", "2", 2, 2.0, Norm.L2):
        assert parse_norm(spelling) is Norm.L2 and normalize_norm(spelling) == "l2"
    with pytest.raises(EdgepruneError, match="norm"):
        parse_norm("l3")
    with pytest.raises(ValueError, match="norm"):  # attacks' own validation stays a ValueError
        parse_norm("hinge")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (5, 4, 4, 3)).astype(np.float32)
    far = np.clip(x + rng.normal(0, 0.5, x.shape), -1, 2).astype(np.float32)
    for norm, eps in ((Norm.LINF, 0.05), (Norm.L2, 0.3)):
        numpy_side = project(far, x, eps, norm)
        tf_side = project_tf(tf.constant(far), tf.constant(x), tf.constant(np.full(5, eps, np.float32)), norm)
        assert np.allclose(numpy_side, tf_side.numpy(), atol=1e-5)
        assert lp_norm(numpy_side - x, norm).max() <= eps + 1e-6
        assert np.allclose(lp_norm(far - x, norm), lp_norm_tf(tf.constant(far - x), norm).numpy(), rtol=1e-5)
    # FAB's projection: the compiled (float32) version lands where the exact numpy one does.
    points, w = rng.uniform(0, 1, (16, 300)), rng.normal(size=(16, 300))
    b = (w * points).sum(axis=1) + rng.normal(size=16) * 2
    exact = project_linf_hyperplane(points, w, b)
    compiled = project_linf_hyperplane_tf(*(tf.constant(a, tf.float32) for a in (points, w, b))).numpy()
    assert np.allclose(exact, compiled, atol=1e-4)


def test_compile_cache_reuses_traces_and_frees_models():
    import gc
    import weakref

    from edgeprune.attacks.compiled import cached

    builds = []

    def build(fn):
        builds.append(fn)
        return lambda v: fn(v) + 1

    def model_fn(v):
        return 2 * v

    first = cached(model_fn, ("k", 1), build)
    assert cached(model_fn, ("k", 1), build) is first and len(builds) == 1
    assert first(3) == 7  # reaches model_fn while the caller holds it
    cached(model_fn, ("k", 2), build)
    assert len(builds) == 2
    ref = weakref.ref(model_fn)
    del model_fn, first
    gc.collect()
    assert ref() is None, "a cache entry must not keep its logits function (and model) alive"


def test_fab_batched_equals_one_sample_at_a_time(model_fn, data):
    from edgeprune.attacks.fab import fab

    x, y = data
    x, y = x[:6], y[:6]
    batched = fab(model_fn, x, y, steps=10, target_class_rank=2)
    single = np.concatenate([fab(model_fn, x[i:i + 1], y[i:i + 1], steps=10, target_class_rank=2)
                             for i in range(len(x))])
    assert np.allclose(batched, single, atol=1e-5)


def test_square_on_tflite_queries_padded_batches_with_the_same_results(digits_converted, data):
    from edgeprune.attacks.autoattack import bucket_size, bucketed_predict
    from edgeprune.attacks.square import square_attack
    from edgeprune.runtime import load

    x, y = data
    predictor = load(digits_converted("tflite", "fp32")[0])
    sizes = []

    def recording(batch, batch_size):
        sizes.append((len(batch), batch_size))
        return predictor.predict(batch, batch_size)

    padded = bucketed_predict(recording, 64)
    assert np.allclose(padded(x[:5]), predictor.predict(x[:5], 64), atol=1e-6)
    assert [bucket_size(n, 64) for n in (1, 5, 33, 64, 100)] == [1, 5, 33, 64, 64]
    assert [bucket_size(n, 64, last=40) for n in (40, 21, 20, 50)] == [40, 40, 20, 50]
    direct = square_attack(lambda b: predictor.predict(b, 64), x, y, eps=EPS, n_queries=60, seed=2)
    bucketed = square_attack(padded, x, y, eps=EPS, n_queries=60, seed=2)
    assert np.array_equal(direct.x_adv, bucketed.x_adv) and np.array_equal(direct.queries, bucketed.queries)
    shapes = {n for n, _ in sizes}
    assert len(shapes) <= 2 + int(np.log2(len(x))) + 1  # 5 rows, 64 (the clean batch), then halvings
    assert all(n == batch for n, batch in sizes)  # every shape runs as one batch, padded


def test_compiled_loops_trace_once_across_batches_restarts_and_targets(model_fn, data):
    from edgeprune.attacks.apgd import apgd
    from edgeprune.attacks.compiled import cached
    from edgeprune.attacks.fab import fab
    from edgeprune.attacks.norms import Norm

    x, y = data
    shape = tuple(x.shape[1:])
    for n, steps, rank in ((10, 3, 2), (7, 5, 3), (12, 4, 2)):
        apgd(model_fn, x[:n], y[:n], eps=EPS, steps=steps, loss="dlr-t", target_class_rank=rank, n_restarts=2)
        apgd(model_fn, x[:n], y[:n], eps=EPS, steps=steps, loss="ce", seed=n)  # same trace, other loss
        fab(model_fn, x[:n], y[:n], steps=steps, target_class_rank=rank, n_restarts=2)

    def unbuilt(_fn):
        raise AssertionError("the loop should already be cached")

    for key in (("apgd", Norm.LINF, shape), ("fab-linf", shape)):
        assert cached(model_fn, key, unbuilt).experimental_get_tracing_count() == 1


def test_square_through_tflite_fools_what_the_tensorflow_forward_fools(model_fn, data):
    """Square's fast forward (the model's TFLite conversion) changes its speed, not its results:
    same seed and budget, at least the same points fooled, every candidate inside the eps ball."""
    from edgeprune.attacks.autoattack import numpy_predict, square_forward
    from edgeprune.attacks.square import square_attack

    x, y = data
    reference = numpy_predict(model_fn)
    fast, name = square_forward(model_fn, reference, x)
    assert name == "tflite"
    assert np.abs(fast(x[:7]) - reference(x[:7])).max() < 1e-4  # any batch size, re-sized as needed
    before = square_attack(reference, x, y, eps=EPS, n_queries=80, seed=3)
    after = square_attack(fast, x, y, eps=EPS, n_queries=80, seed=3)
    fooled_before = reference(before.x_adv).argmax(axis=1) != y
    fooled_after = reference(after.x_adv).argmax(axis=1) != y  # judged by TensorFlow, as AutoAttack does
    assert fooled_before.sum() > 5
    assert fooled_after.sum() >= fooled_before.sum()
    assert np.abs(after.x_adv.astype(np.float64) - x).max() <= EPS + 1e-6
    assert after.x_adv.min() >= 0.0 and after.x_adv.max() <= 1.0
    assert after.queries.sum() <= before.queries.sum() + len(x)


def test_square_forward_falls_back_to_tensorflow_when_the_conversion_disagrees(model_fn, data):
    from edgeprune.attacks.autoattack import AutoAttackConfig, numpy_predict, square_forward

    x, _ = data
    reference = numpy_predict(model_fn)

    def shifted(batch):  # logits off by up to 0.5: not the model the conversion was made from
        return reference(batch) + np.linspace(0.0, 0.5, reference(batch[:1]).shape[1], dtype=np.float32)

    assert square_forward(model_fn, shifted, x[:8])[1] == "tensorflow"
    assert square_forward(model_fn, reference, x[:8], "tensorflow") == (reference, "tensorflow")
    assert square_forward(None, reference, x[:8])[1] == "predict"
    with pytest.raises(ValueError, match="square_forward"):
        AutoAttackConfig(eps=EPS, square_forward="xla")


def test_square_stage_on_a_keras_model_runs_through_tflite_when_it_pays(model_fn, data):
    from edgeprune.attacks.autoattack import SQUARE_TFLITE_MIN_WORK, AutoAttackConfig, run_autoattack

    x, y = data
    queries = SQUARE_TFLITE_MIN_WORK // 40  # 64 images, ~60 of them correct: above the threshold
    results = {}
    for choice in ("auto", "tensorflow"):
        config = AutoAttackConfig(eps=EPS, seed=0, stages=("square",), square_forward=choice,
                                  overrides={"square": {"n_queries": queries}})
        results[choice] = run_autoattack(model_fn, x, y, config, run_checks=False)
    fast, slow = results["auto"], results["tensorflow"]
    assert fast.summary()["stages"][0]["forward"] == "tflite" and slow.stages[0].forward == "tensorflow"
    assert fast.summary()["config"]["square_forward"] == "auto"
    assert fast.robust_accuracy <= slow.robust_accuracy
    assert np.array_equal(_predict(model_fn, fast.x_adv) == y, fast.robust)  # judged by TensorFlow
    assert np.abs(fast.x_adv.astype(np.float64) - x).max() <= EPS + 1e-6
