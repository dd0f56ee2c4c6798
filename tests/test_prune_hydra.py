"""HYDRA (`prune -m hydra`): exact sparsity, the mask is the top-k of the learned scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError


def test_scaled_score_init_and_exact_masks(rng):
    from edgeprune.prune.hydra import masks_from_scores, scaled_score_init

    kernel = rng.normal(size=(3, 3, 4, 8)).astype(np.float32)
    score = scaled_score_init(kernel)
    assert np.max(np.abs(score)) == pytest.approx(np.sqrt(6 / 36))
    np.testing.assert_array_equal(np.argsort(np.abs(score).ravel()), np.argsort(np.abs(kernel).ravel()))
    scores = {"a": rng.normal(size=(3, 3, 4, 8)), "b": rng.normal(size=(64, 10))}
    local = masks_from_scores(scores, 0.75, "local")
    assert {name: int(m.sum()) for name, m in local.items()} == {"a": 72, "b": 160}
    glob = masks_from_scores(scores, 0.75, "global")
    assert sum(int(m.sum()) for m in glob.values()) == round(0.25 * (288 + 640))
    threshold = min(np.abs(scores[n])[glob[n] == 1].min() for n in glob)
    assert all(np.abs(scores[n])[glob[n] == 0].max() <= threshold for n in glob)


@pytest.mark.parametrize("scope", ["local", "global"])
def test_hydra_reaches_its_sparsity_and_keeps_what_the_scores_chose(digits_model, digits, scope):
    from edgeprune.data import subset
    from edgeprune.adversarial import make_recipe
    from edgeprune.prune.hydra import HydraConfig, hydra_search, masks_from_scores, scaled_score_init

    _, base, _ = digits_model
    config = HydraConfig(sparsity=0.8, scope=scope, score_epochs=2, epochs=1, batch_size=64,
                         adversarial=make_recipe("fgsm-rs", eps=0.1, guard=False))
    outcome = hydra_search(base, subset(digits, limit_train=640), config, progress=False)
    pruned = {layer.name: layer for layer in outcome.model.layers}
    total = zeros = 0
    for name, mask in outcome.masks.items():
        kernel = pruned[name].get_weights()[0]
        np.testing.assert_array_equal(kernel != 0, mask == 1)  # real zeros exactly where the mask is 0
        zeros += int((kernel == 0).sum())
        total += kernel.size
    expected = masks_from_scores(outcome.scores, 0.8, scope)  # the top-k of the final scores
    for name in expected:
        np.testing.assert_array_equal(outcome.masks[name], expected[name])
    if scope == "global":
        assert zeros == round(0.8 * total)
    else:
        assert zeros == sum(round(0.8 * m.size) for m in outcome.masks.values())
    # the scores were trained: they moved away from their initialisation and changed the mask
    init = scaled_score_init(base.get_layer(name).get_weights()[0])
    assert not np.allclose(outcome.scores[name], init)
    assert outcome.info["mask_changed_by_search"] > 0
    x, y = digits.split("test")
    assert (outcome.model.predict(x, verbose=0).argmax(1) == y).mean() > 0.7
    assert outcome.info["adversarial"]["recipe"]["kind"] == "fgsm-rs"
    # source model untouched, output is the plain architecture
    assert [type(layer).__name__ for layer in outcome.model.layers] == [type(layer).__name__ for layer in base.layers]


def test_cli_prune_hydra_writes_a_plain_h5_with_real_zeros(tmp_path, digits_model, run_cli):
    from edgeprune.modelio import load_keras_model

    output = tmp_path / "hydra.h5"
    result = run_cli("prune", digits_model[0], "-m", "hydra", "--sparsity", "0.9", "--scope", "global",
                     "--score-epochs", "1", "--epochs", "1", "--batch-size", "64", "--limit-train", "512",
                     "--limit", "200", "-d", "digits", "-o", output, "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["method"] == "hydra" and report["target"]["scope"] == "global"
    saved = load_keras_model(output)
    kernels = [saved.get_layer(row["layer"]).get_weights()[0] for row in report["layers"] if row["target_sparsity"]]
    zeros, size = sum(int((k == 0).sum()) for k in kernels), sum(k.size for k in kernels)
    assert zeros == round(0.9 * size) and report["reached"]["pruned_layers_sparsity"] == pytest.approx(0.9, abs=1e-4)


@pytest.mark.parametrize("args,match", [
    ({"scope": "lamp"}, "scope"), ({"criterion": "l1"}, "--criterion apply to --method nncf-filter"),
    ({"pattern": "2:4"}, "--pattern apply to --method tfmot"), ({"score_epochs": 0}, "score-epochs"),
])
def test_hydra_refuses_bad_options(args, match):
    from edgeprune.api import PruneOptions

    with pytest.raises(EdgepruneError, match=match):
        PruneOptions(method="hydra", **args).method_config()


def test_score_epochs_belong_to_hydra():
    from edgeprune.api import PruneOptions

    with pytest.raises(EdgepruneError, match="--score-epochs apply to --method hydra, not --method tfmot"):
        PruneOptions(method="tfmot", score_epochs=3)
