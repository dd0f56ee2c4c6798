"""Training recipes: the cpu schedule has the warm-up and cosine shape it claims, the recipe is
recorded, and `vora2023` trains exactly as the paper's step decay did before recipes existed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.recipes import RECIPE_TABLE, get_recipe, learning_rate_schedule
from edgeprune.train import TrainConfig
from edgeprune.vocab import RECIPES


def _rates(recipe: str, config: TrainConfig, steps_per_epoch: int) -> np.ndarray:
    schedule = learning_rate_schedule(get_recipe(recipe), config, steps_per_epoch)
    total = config.epochs * steps_per_epoch
    return np.array([float(schedule(step)) for step in range(total + 1)])


def test_every_recipe_name_has_a_definition():
    assert set(RECIPE_TABLE) == set(RECIPES)
    with pytest.raises(EdgepruneError, match="unknown recipe 'fast'"):
        TrainConfig(arch="smallcnn", recipe="fast")


def test_cpu_schedule_warms_up_linearly_then_cosine_decays_to_zero():
    config = TrainConfig(arch="smallcnn", epochs=10, learning_rate=0.2, recipe="cpu")
    rates = _rates("cpu", config, steps_per_epoch=20)  # 200 steps, warm-up 15% = 30
    warmup = 30
    assert rates[0] == pytest.approx(0.02)  # starts at lr / 10
    assert np.all(np.diff(rates[:warmup + 1]) > 0)  # rises ...
    np.testing.assert_allclose(np.diff(rates[:warmup + 1]), (0.2 - 0.02) / warmup, rtol=1e-4)  # ... linearly
    assert rates[warmup] == pytest.approx(0.2)  # to the peak
    assert np.all(np.diff(rates[warmup:]) < 0)  # then only falls
    assert rates[warmup + 85] == pytest.approx(0.1, rel=1e-4)  # half-way through the cosine: half the peak
    assert rates[200] == pytest.approx(0.0, abs=1e-7)  # and ends at zero
    assert max(rates) == pytest.approx(0.2)
    # milestones and gamma do not move it
    other = TrainConfig(arch="smallcnn", epochs=10, learning_rate=0.2, recipe="cpu", milestones=(2, 3), gamma=0.5)
    np.testing.assert_allclose(_rates("cpu", other, 20), rates)


def test_vora2023_schedule_is_the_step_decay():
    config = TrainConfig(arch="smallcnn", epochs=8, learning_rate=0.1, milestones=(5, 7, 9), gamma=0.1)
    rates = _rates("vora2023", config, steps_per_epoch=10)
    expected = np.concatenate([np.full(51, 0.1), np.full(20, 0.01), np.full(10, 0.001)])  # 9 >= epochs: dropped
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert learning_rate_schedule(get_recipe("vora2023"), TrainConfig(arch="smallcnn", epochs=3, milestones=()),
                                  10) == 0.1


def test_vora2023_trains_exactly_as_before(digits):
    """The recipe reproduces the pre-recipe code path (PiecewiseConstantDecay + sparse
    cross-entropy, same seed) weight for weight."""
    import tensorflow as tf

    from edgeprune.models import build_model
    from edgeprune.train import make_train_pipeline, train_model

    config = TrainConfig(arch="smallcnn", epochs=2, milestones=(1,), batch_size=256)
    model, record = train_model(config, digits, progress=False)
    assert record["config"]["recipe"] == "vora2023"
    assert record["recipe"] == {"name": "vora2023", "schedule": "multistep", "warmup_fraction": 0.0,
                                "warmup_start": 0.1, "label_smoothing": 0.0, "steps": record["recipe"]["steps"],
                                "milestones": [1], "gamma": 0.1}

    # The training loop as it was written before recipes (edgeprune 0.x train_model).
    tf.keras.utils.set_random_seed(config.seed)
    before = build_model("smallcnn", input_shape=digits.input_shape, num_classes=digits.num_classes)
    steps = int(np.ceil(len(digits.x_train) / config.batch_size))
    schedule = tf.keras.optimizers.schedules.PiecewiseConstantDecay([steps], [0.1, 0.01])
    before.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, nesterov=True,
                                                     weight_decay=5e-4),
                   loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    before.fit(make_train_pipeline(digits.x_train, digits.y_train, batch_size=config.batch_size, augment="none",
                                   seed=config.seed), epochs=config.epochs, verbose=0)
    for new, old in zip(model.get_weights(), before.get_weights(), strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-6)


def test_cli_train_records_the_cpu_recipe(run_cli, tmp_path):
    out = tmp_path / "m.h5"
    result = run_cli("train", "smallcnn", "--dataset", "digits", "--epochs", "2", "--recipe", "cpu",
                     "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["recipe"] == "cpu"
    assert record["recipe"]["name"] == "cpu"
    assert record["recipe"]["label_smoothing"] == 0.1
    assert record["recipe"]["schedule"] == "warmup-cosine"
    assert record["recipe"]["warmup_steps"] == int(np.ceil(0.15 * record["recipe"]["steps"]))
    assert record["test_accuracy"] > 0.5  # label smoothing still learns the digits
    bad = run_cli("train", "smallcnn", "--recipe", "fast", "-o", tmp_path / "x.h5")
    assert bad.exit_code == 2


def test_recipe_is_a_bench_suite_option():
    from edgeprune.api import TrainOptions
    from edgeprune.options import from_args

    options = from_args(TrainOptions, {"recipe": "cpu", "epochs": 3}, arch="resnet8")
    assert options.config().recipe == "cpu"
    with pytest.raises(EdgepruneError, match="unknown recipe"):
        from_args(TrainOptions, {"recipe": "fast"}, arch="resnet8")
