"""Attacks and their runner: a table of cases run on the small trained digits model.

Properties every attack must keep (Foolbox-style): x_adv within eps in the attack's norm,
inside [0, 1], eps = 0 leaves x unchanged, accuracy on the source model drops, the same seed
gives the same bytes. Plus cross-checks against CleverHans and ART, and the runner's checks,
softmax handling and resume.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest

from edgeprune.attacks.registry import ATTACKS, AttackSpec, get_attack, preset_settings, register
from edgeprune.attacks.runner import AttackConfig, attack_batch, check_images, project, run_attack
from edgeprune.errors import EdgepruneError

N_IMAGES = 48


@dataclass(frozen=True)
class Case:
    attack: str
    norm: str
    eps: float | None
    params: dict = field(default_factory=dict)
    max_accuracy: float = 0.15  # adversarial accuracy on the source model must fall below this
    images: int = N_IMAGES

    def __repr__(self) -> str:
        return f"{self.attack}-{self.norm}"


# Digits are 8x8 with 17 grey levels: eps 0.2 (Linf) / 1.5 (L2) are the "8/255" of this data.
CASES = [
    Case("fgsm", "linf", 0.2, max_accuracy=0.35),
    Case("fgsm", "l2", 1.5, max_accuracy=0.5),
    Case("bim", "linf", 0.2, {"steps": 10}),
    Case("pgd", "linf", 0.2, {"steps": 10}),
    Case("pgd", "l2", 1.5, {"steps": 10}),
    Case("mim", "linf", 0.2, {"steps": 10}),
    Case("apgd", "linf", 0.2, {"steps": 20}),
    Case("deepfool", "l2", None, {"max_iter": 50}, max_accuracy=0.05),
    Case("deepfool", "linf", None, {"max_iter": 50}, max_accuracy=0.05),
    Case("cw", "l2", None, {"steps": 40, "binary_search_steps": 3, "learning_rate": 0.05}, max_accuracy=0.25,
         images=24),
    # One vector for every image is a much weaker attack: it must still cost 10 points.
    Case("uap", "linf", 0.3, {"max_iter": 3, "batch_size": 32}, max_accuracy=-0.15),
    Case("spsa", "linf", 0.3, {"steps": 10, "samples": 32, "learning_rate": 0.1}, max_accuracy=0.6, images=3),
]
OWN_ATTACKS = {"fgsm", "bim", "pgd", "mim", "apgd", "deepfool", "cw", "uap", "spsa"}


@pytest.fixture(scope="module")
def data(digits_test_subset):
    return digits_test_subset(N_IMAGES, seed=1)


@pytest.fixture(scope="module")
def model(digits_model):
    return digits_model[1]


@pytest.fixture(scope="module")
def results(model, data):
    """Each case run twice with the same seed (determinism) — computed once per module."""
    x, y = data
    out = {}
    for case in CASES:
        config = AttackConfig.create(case.attack, eps=case.eps, norm=case.norm, seed=3, params=case.params,
                                     batch_size=32)
        first = run_attack(model, x[:case.images], y[:case.images], config)
        second = run_attack(model, x[:case.images], y[:case.images], config)
        out[repr(case)] = (first, second)
    return out


def test_every_registered_attack_of_this_stage_has_a_case():
    assert OWN_ATTACKS <= set(ATTACKS)
    assert OWN_ATTACKS == {c.attack for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_attack_properties(case, results, data):
    x, y = data
    x, y = x[:case.images], y[:case.images]
    first, second = results[repr(case)]
    assert first.x_adv.dtype == np.float32 and first.x_adv.shape == x.shape
    assert first.x_adv.min() >= 0.0 and first.x_adv.max() <= 1.0
    delta = (first.x_adv.astype(np.float64) - x).reshape(len(x), -1)
    if get_attack(case.attack).bounded:
        size = np.abs(delta).max(axis=1) if case.norm == "linf" else np.sqrt((delta ** 2).sum(axis=1))
        assert size.max() <= case.eps + 1e-6
    # The recorded norms are the real ones.
    np.testing.assert_allclose(first.norms_linf, np.abs(delta).max(axis=1), rtol=0, atol=1e-7)
    bound = case.max_accuracy if case.max_accuracy >= 0 else first.clean_accuracy + case.max_accuracy
    assert first.clean_accuracy > 0.85
    assert first.adversarial_accuracy < bound, first.summary()
    # Same seed, same bytes.
    assert first.x_adv.tobytes() == second.x_adv.tobytes()


@pytest.mark.parametrize("name", sorted(OWN_ATTACKS - {"spsa"}))
def test_eps_zero_returns_x_unchanged(name, model, data):
    x, y = data
    norm = get_attack(name).norms[0]
    x_adv = attack_batch(model, x[:8], y[:8], name, eps=0.0, norm=norm)
    assert x_adv.tobytes() == x[:8].tobytes()


def test_pgd_random_start_depends_on_seed(model, data):
    x, y = data
    a, b = (attack_batch(model, x[:16], y[:16], "pgd", eps=0.2, steps=2, seed=s) for s in (1, 2))
    assert a.tobytes() != b.tobytes()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_compiled_pgd_matches_cleverhans(norm, model, data):
    import tensorflow as tf
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    x, y = data
    eps, step = (0.1, 0.025) if norm == "linf" else (1.0, 0.25)
    ours = attack_batch(model, x, y, "bim", eps=eps, norm=norm, steps=10, step_size=step)
    theirs = projected_gradient_descent(lambda t: model(t, training=False), tf.constant(x), eps, step, 10,
                                        np.inf if norm == "linf" else 2, clip_min=0.0, clip_max=1.0,
                                        y=tf.constant(y), rand_init=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_fgsm_and_pgd_match_art(model, data):
    """Independent implementation: ART's FGSM and PGD (no random start) within 1 point."""
    import tensorflow as tf
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier

    x, y = data
    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=10, input_shape=x.shape[1:], clip_values=(0.0, 1.0),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def acc(x_adv):
        return float(np.mean(np.argmax(model(x_adv, training=False), axis=1) == y))

    art_fgsm = FastGradientMethod(classifier, eps=0.1).generate(x, y=y)
    art_pgd = ProjectedGradientDescent(classifier, eps=0.1, eps_step=0.025, max_iter=10, num_random_init=0,
                                       verbose=False).generate(x, y=y)
    ours_fgsm = attack_batch(model, x, y, "fgsm", eps=0.1)
    ours_pgd = attack_batch(model, x, y, "pgd", eps=0.1, steps=10, step_size=0.025, random_start=False)
    assert acc(ours_fgsm) < 0.9  # the check is not vacuous: eps 0.1 really moves accuracy
    assert abs(acc(ours_fgsm) - acc(art_fgsm)) <= 0.01
    assert abs(acc(ours_pgd) - acc(art_pgd)) <= 0.01


def test_deepfool_perturbs_less_than_fgsm(results):
    deepfool, _ = results["deepfool-l2"]
    fgsm, _ = results["fgsm-linf"]
    both = (deepfool.adv_pred != deepfool.y) & (fgsm.adv_pred != fgsm.y) & (fgsm.clean_pred == fgsm.y)
    assert both.sum() >= N_IMAGES // 2
    assert np.median(deepfool.norms_l2[both]) < 0.75 * np.median(fgsm.norms_l2[both])


def test_uap_is_one_vector_for_all_images(results, data):
    x, _ = data
    uap, _ = results["uap-linf"]
    v = uap.perturbation
    assert v is not None and v.shape == x.shape[1:]
    assert np.abs(v).max() <= 0.3 + 1e-6 and np.abs(v).max() > 0.05
    np.testing.assert_allclose(uap.x_adv, np.clip(x + v, 0.0, 1.0), rtol=0, atol=1e-6)


def test_softmax_head_is_stripped(model, data):
    import tensorflow as tf

    x, y = data
    probs = tf.keras.Model(model.inputs, tf.keras.layers.Softmax()(model.outputs[0]))
    config = AttackConfig.create("bim", eps=0.1, params={"steps": 5})
    with pytest.warns(UserWarning, match="softmax"):
        stripped = run_attack(probs, x, y, config)
    plain = run_attack(model, x, y, config)
    assert stripped.softmax_stripped and not plain.softmax_stripped
    np.testing.assert_allclose(stripped.x_adv, plain.x_adv, atol=1e-6)


def test_probability_outputs_are_attacked_as_log_probabilities(model, data):
    import tensorflow as tf

    x, y = data

    def probs_fn(t):
        return tf.nn.softmax(model(t, training=False))

    config = AttackConfig.create("bim", eps=0.1, params={"steps": 5})
    with pytest.warns(UserWarning, match="probabilities"):
        result = run_attack(probs_fn, x, y, config)
    assert result.softmax_stripped
    assert result.adversarial_accuracy < result.clean_accuracy - 0.2


def test_interrupted_run_resumes_with_the_same_bytes(model, data, tmp_path):
    x, y = data
    calls = {"n": 0}

    def flaky_bim(model_fn, x, y, *, eps, norm, seed, steps):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return get_attack("bim").function()(model_fn, x, y, eps=eps, norm=norm, seed=seed, steps=steps)

    register(AttackSpec("test-flaky", flaky_bim, norms=("linf",), params=(ATTACKS["bim"].params[0],)))
    try:
        config = AttackConfig.create("test-flaky", eps=0.1, seed=5, params={"steps": 3}, batch_size=16)
        partial = tmp_path / "set.partial.npz"
        with pytest.raises(KeyboardInterrupt):
            run_attack(model, x, y, config, partial_path=partial)
        assert partial.exists()
        resumed = run_attack(model, x, y, config, partial_path=partial)
        fresh = run_attack(model, x, y, config)
        assert resumed.resumed_images == 32
        assert resumed.x_adv.tobytes() == fresh.x_adv.tobytes()
        # A different config must not reuse the partial results.
        other = AttackConfig.create("test-flaky", eps=0.05, seed=5, params={"steps": 3}, batch_size=16)
        with pytest.warns(UserWarning, match="different run"):
            assert run_attack(model, x, y, other, partial_path=partial).resumed_images == 0
    finally:
        ATTACKS.pop("test-flaky", None)


def test_bad_inputs_are_refused(model, data):
    x, y = data
    config = AttackConfig.create("fgsm", eps=0.1)
    with pytest.raises(EdgepruneError, match=r"\[0, 1\]"):
        run_attack(model, x * 2, y, config)
    with pytest.raises(EdgepruneError, match="float"):
        run_attack(model, (x * 255).astype(np.uint8), y, config)
    with pytest.raises(EdgepruneError, match="no images"):
        run_attack(model, x[:0], y[:0], config)
    with pytest.raises(EdgepruneError, match="labels"):
        run_attack(model, x, y[:-1], config)
    with pytest.raises(EdgepruneError, match="do not fit"):
        run_attack(model, np.zeros((2, 9, 9, 1), np.float32), y[:2], config)
    with pytest.raises(EdgepruneError, match="unknown attack 'nope'.*fgsm"):
        AttackConfig.create("nope")
    with pytest.raises(EdgepruneError, match="unknown parameter.*steps"):
        AttackConfig.create("pgd", params={"stepz": 3})
    with pytest.raises(EdgepruneError, match="steps must be >= 1"):
        AttackConfig.create("pgd", params={"steps": 0})
    with pytest.raises(EdgepruneError, match="eps"):
        AttackConfig.create("pgd", eps=-0.1)
    with pytest.raises(EdgepruneError, match="norm l2"):
        AttackConfig.create("cw", norm="linf")
    with pytest.raises(EdgepruneError, match="at most 256"):
        run_attack(model, np.zeros((257, 8, 8, 1), np.float32), np.zeros(257, np.int64),
                   AttackConfig.create("spsa", eps=0.1))


def test_projection_and_checks_helpers():
    rng = np.random.default_rng(0)
    x = rng.random((4, 3, 3, 1)).astype(np.float32)
    far = x + rng.normal(size=x.shape).astype(np.float32)
    for norm, eps in (("linf", 0.05), ("l2", 0.3)):
        out = project(far, x, eps, norm)
        delta = (out.astype(np.float64) - x).reshape(4, -1)
        size = np.abs(delta).max(1) if norm == "linf" else np.sqrt((delta ** 2).sum(1))
        assert size.max() <= eps + 1e-6 and out.min() >= 0 and out.max() <= 1
    with pytest.raises(EdgepruneError, match="NaN"):
        check_images(np.full((1, 2, 2, 1), np.nan, np.float32), np.zeros(1, np.int64))


def test_vora2023_preset_covers_the_seven_paper_attacks():
    for attack in ("fgsm", "deepfool", "pgd", "bim", "apgd", "cw", "uap"):
        settings = preset_settings("vora2023", attack)
        params = {k: v for k, v in settings.items() if k not in ("eps", "norm")}
        AttackConfig.create(attack, eps=settings.get("eps"), norm=settings.get("norm"), params=params)
    assert preset_settings("vora2023", "fgsm")["eps"] == 0.2
    with pytest.raises(EdgepruneError, match="no settings"):
        preset_settings("vora2023", "spsa")


def test_registry_import_is_light():
    import subprocess
    import sys

    code = "import sys, edgeprune.attacks, edgeprune.cli.attack; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_warnings_do_not_leak_from_plain_runs(model, data):
    x, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        run_attack(model, x[:8], y[:8], AttackConfig.create("fgsm", eps=0.1))
