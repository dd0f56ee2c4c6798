"""The adversarial-pruning taxonomy (Piras et al. 2024) of each pruning method edgeprune runs.

A record says how a method prunes in the survey's vocabulary: `pipeline` (pruning after
training, before, or during), `iteration` (one-shot or iterative), `structure` (unstructured,
semi-structured N:M, structured filters), `scope` (local: per layer; global: over the network),
`criterion` (what ranks the weights), and the objectives of `pretraining` (the base model's
training) and `fine_tuning` (natural, or the adversarial recipe: fgsm-rs, pgd, trades).
One function, used by the prune report and the bench suite, so both say the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TAXONOMY_FIELDS = ("pipeline", "iteration", "structure", "scope", "criterion", "pretraining", "fine_tuning")
FILTER_CRITERIA = {"l1": "l1-norm", "l2": "l2-norm", "gm": "geometric-median"}
REFERENCES = {"tfmot": "Zhu & Gupta 2017 (gradual magnitude pruning); LAMP: Lee et al. 2021",
              "nncf-filter": "Li et al. 2017 (filter norms); He et al. 2019 (geometric median)",
              "hydra": "Sehwag et al. 2020 (HYDRA)"}


def objective(adversarial: str | None) -> str:
    """`natural` or the adversarial recipe's name; `unknown` when not recorded."""
    if adversarial is None:
        return "unknown"
    return "natural" if adversarial in ("", "none") else str(adversarial)


def taxonomy(method: str, *, scope: str | None = None, criterion: str | None = None, epochs: int | None = None,
             schedule: str | None = None, pattern: str | None = None, adversarial: str | None = "none",
             pretraining: str | None = None) -> dict[str, Any]:
    """The record of one configured method (`adversarial`: the fine-tune's recipe name;
    `pretraining`: the base model's recipe name, None when not recorded)."""
    fine_tunes = epochs is None or epochs > 0 or method == "nncf-filter"
    if method == "nncf-filter":
        iteration, structure = "iterative", "structured"
        scope_name, rank = "local", FILTER_CRITERIA.get(criterion or "l2", criterion or "l2-norm")
    elif method == "hydra":
        # one score search, then one fixed mask fine-tuned: one-shot in the survey's terms
        iteration, structure = "one-shot", "unstructured"
        scope_name, rank = scope or "local", "score-optimisation"
    else:
        iteration = "one-shot" if not fine_tunes or schedule == "constant" or pattern else "iterative"
        structure = "semi-structured" if pattern else "unstructured"
        scope_name = "local" if pattern or scope in (None, "local") else "global"
        rank = "lamp" if scope == "lamp" else "magnitude"
    return {"method": method, "pipeline": "after-training", "iteration": iteration, "structure": structure,
            "scope": scope_name, "criterion": rank, "pretraining": objective(pretraining),
            "fine_tuning": objective(adversarial) if fine_tunes else "none", "reference": REFERENCES.get(method, "")}


def taxonomy_of_prune(options: Any, base_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a `prune` call (PruneOptions), pretraining read from the base model's
    metadata (`adversarial`, written by `train`; a model not trained by edgeprune: unknown)."""
    recorded = base_metadata.get("adversarial")
    pretraining = (recorded.get("kind") if isinstance(recorded, Mapping) else recorded) if recorded else (
        "none" if base_metadata.get("arch") else None)
    return taxonomy(options.method, scope=options.scope, criterion=options.criterion,
                    epochs=options.fine_tune_epochs, schedule=options.schedule or "polynomial", pattern=options.pattern,
                    adversarial=options.adversarial, pretraining=pretraining)


def markdown_line(record: Mapping[str, Any]) -> str:
    return "- taxonomy: " + ", ".join(f"{k.replace('_', '-')} {record.get(k)}" for k in TAXONOMY_FIELDS)
