"""edgeprune: prune, convert, attack and profile Keras models for edge devices.

This file lists exactly what users may import. The stage functions live in `edgeprune.api`
(`api.train`, `api.prune`, `api.convert`, `api.attack`, `api.evaluate`, `api.robustness`,
`api.profile`, `api.compare`, `api.bench`): they cannot be attributes of the package itself,
because the modules `edgeprune.train`, `edgeprune.convert`, ... carry the same names and Python
binds a submodule onto its package when it is imported. Options and result types, the loaders,
`import_model` (a Keras 3 or foreign Keras file -> an edgeprune .h5) and the error type are
re-exported here.

Importing this package is cheap on purpose: names load on first use (no TensorFlow), so the
device-side commands run on boards that only have the `[device]` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "api": "edgeprune.api",
    # loaders
    "load_model": "edgeprune.api",
    "load_predictor": "edgeprune.api",
    "load_dataset": "edgeprune.api",
    "import_model": "edgeprune.api",
    # options
    "TrainOptions": "edgeprune.api",
    "PruneOptions": "edgeprune.api",
    "ConvertOptions": "edgeprune.api",
    "ImportOptions": "edgeprune.api",
    "AttackOptions": "edgeprune.api",
    "EvaluateOptions": "edgeprune.api",
    "RobustnessOptions": "edgeprune.api",
    "ProfileOptions": "edgeprune.api",
    "CompareConfig": "edgeprune.compare",
    "from_args": "edgeprune.options",
    # results
    "Result": "edgeprune.results",
    "TrainResult": "edgeprune.results",
    "PruneResult": "edgeprune.results",
    "ConvertResult": "edgeprune.results",
    "ImportResult": "edgeprune.results",
    "TransferSetResult": "edgeprune.results",
    "EvaluateResult": "edgeprune.results",
    "RobustnessResult": "edgeprune.results",
    "ProfileResult": "edgeprune.results",
    "CompareResult": "edgeprune.results",
    "BenchResult": "edgeprune.results",
    "ModelFacts": "edgeprune.results",
    # errors
    "EdgepruneError": "edgeprune.errors",
}

__all__ = [
    "__version__", "api", "load_model", "load_predictor", "load_dataset", "import_model",
    "TrainOptions", "PruneOptions", "ConvertOptions", "ImportOptions", "AttackOptions", "EvaluateOptions", "RobustnessOptions",
    "ProfileOptions", "CompareConfig", "from_args",
    "Result", "TrainResult", "PruneResult", "ConvertResult", "ImportResult", "TransferSetResult", "EvaluateResult",
    "RobustnessResult", "ProfileResult", "CompareResult", "BenchResult", "ModelFacts",
    "EdgepruneError",
]

if TYPE_CHECKING:
    from edgeprune import api
    from edgeprune.api import (AttackOptions, ConvertOptions, EvaluateOptions, ImportOptions, ProfileOptions,
                               PruneOptions, RobustnessOptions, TrainOptions, import_model, load_dataset, load_model,
                               load_predictor)
    from edgeprune.compare import CompareConfig
    from edgeprune.errors import EdgepruneError
    from edgeprune.options import from_args
    from edgeprune.results import (BenchResult, CompareResult, ConvertResult, EvaluateResult, ImportResult, ModelFacts,
                                   ProfileResult, PruneResult, Result, RobustnessResult, TrainResult,
                                   TransferSetResult)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name == "api" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
