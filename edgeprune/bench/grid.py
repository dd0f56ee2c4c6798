"""Expand a suite into cells: one unit of work per stage invocation, with its dependencies.

The grid is the cartesian product the suite describes — datasets × base models × pruning
(method, scope/criterion, level) × conversions × attacks (each on its surrogate) — plus one
evaluation and one profile per model file. Cells name their inputs by the id of the cell
that makes them (or a given file); the cache key is computed later from the inputs' bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeprune.bench.suite import DatasetSpec, ModelSpec, PruneSpec, Suite
from edgeprune.errors import EdgepruneError

STAGES = ("train", "prune", "convert", "attack", "robustness", "evaluate", "profile")


@dataclass(frozen=True)
class Cell:
    """One stage invocation. `deps` maps an input role to the id of the cell producing it;
    `files` maps a role to a given file; `labels` place the result in the report."""

    id: str
    stage: str
    params: dict
    deps: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    exclusive: bool = False  # timing cells run alone so other cells do not disturb them


@dataclass(frozen=True)
class ModelNode:
    """A model file the grid will have: made by `cell` or given at `path`."""

    id: str
    cell: str | None
    path: str | None
    labels: dict


@dataclass
class Grid:
    suite: Suite
    cells: dict[str, Cell] = field(default_factory=dict)
    models: dict[str, ModelNode] = field(default_factory=dict)

    def add(self, cell: Cell) -> Cell:
        if cell.id in self.cells:
            raise EdgepruneError(f"grid: two cells named {cell.id!r}; give the suite entries distinct names")
        for dep in cell.deps.values():
            if dep not in self.cells:
                raise EdgepruneError(f"grid: cell {cell.id!r} depends on unknown cell {dep!r}")
        self.cells[cell.id] = cell
        return cell

    def order(self) -> list[Cell]:
        """Cells in a dependency-respecting order (insertion order already is one)."""
        return list(self.cells.values())

    def count(self) -> dict[str, int]:
        counts = {stage: 0 for stage in STAGES}
        for cell in self.cells.values():
            counts[cell.stage] += 1
        return {k: v for k, v in counts.items() if v}


def _dataset_params(dataset: DatasetSpec) -> dict:
    return {"dataset": dataset.spec, "limit_train": dataset.limit_train, "limit_test": dataset.limit_test}


def _model_input(node: ModelNode) -> tuple[dict, dict]:
    return ({"model": node.cell}, {}) if node.cell else ({}, {"model": node.path})


def _fmt_level(level: float) -> str:
    return f"{level:g}"


def build_grid(suite: Suite) -> Grid:
    grid = Grid(suite=suite)
    seed = suite.execution.seed
    for dataset in suite.datasets:
        base_nodes = [_base_model(grid, dataset, model, seed) for model in suite.models
                      if dataset.name in model.datasets]
        pruned_nodes = []
        for base, model in base_nodes:
            for prune in suite.pruning:
                if model.name in prune.models:
                    pruned_nodes += _pruned_models(grid, dataset, base, prune, seed)
        keras_nodes = [b for b, _ in base_nodes] + pruned_nodes
        converted = []
        for conversion in suite.conversions:
            for node in keras_nodes:
                is_pruned = node.labels["level"] > 0
                if conversion.of == "all" or (conversion.of == "pruned") == is_pruned:
                    deps, files = _model_input(node)
                    cell = grid.add(Cell(
                        id=f"convert:{node.id}/{conversion.name}", stage="convert",
                        params={"to": conversion.format, "precision": conversion.precision,
                                **_dataset_params(dataset), "seed": seed, "args": conversion.args},
                        deps=deps, files=files,
                        labels={**node.labels, "format": conversion.format,
                                "precision": conversion.precision, "runtime": conversion.name}))
                    converted.append(_register(grid, ModelNode(
                        id=f"{node.id}/{conversion.name}", cell=cell.id, path=None, labels=cell.labels)))
        sets = []
        for attack in suite.attacks:
            for base, model in base_nodes:
                if model.name not in attack.surrogates:
                    continue
                deps, files = _model_input(base)
                cell = grid.add(Cell(
                    id=f"attack:{dataset.name}/{attack.name}@{model.name}", stage="attack",
                    params={"attack": attack.attack, "name": f"{attack.name}@{model.name}",
                            **_dataset_params(dataset), "limit": attack.limit, "seed": seed,
                            "args": attack.args},
                    deps=deps, files=files,
                    labels={"dataset": dataset.name, "attack": attack.name, "surrogate": model.name}))
                sets.append(cell)
        for robust in suite.robustness:
            for node in keras_nodes:
                is_pruned = node.labels["level"] > 0
                if robust.of == "all" or (robust.of == "pruned") == is_pruned:
                    deps, files = _model_input(node)
                    grid.add(Cell(
                        id=f"robustness:{node.id}/{robust.name}", stage="robustness",
                        params={"attack": robust.attack, "name": robust.name, **_dataset_params(dataset),
                                "limit": robust.limit, "seed": seed, "args": robust.args},
                        deps=deps, files=files, labels={**node.labels, "robustness": robust.name}))
        all_models = keras_nodes + converted
        if suite.evaluate.enabled:
            for node in all_models:
                if node.labels["format"] not in suite.evaluate.formats:
                    continue
                deps, files = _model_input(node)
                deps.update({f"set:{s.labels['attack']}@{s.labels['surrogate']}": s.id for s in sets})
                grid.add(Cell(
                    id=f"evaluate:{node.id}", stage="evaluate",
                    params={**_dataset_params(dataset), "limit": suite.evaluate.limit,
                            "seed": seed, "args": suite.evaluate.args},
                    deps=deps, files=files, labels=node.labels))
        if suite.profile.enabled:
            for node in all_models:
                if node.labels["format"] not in suite.profile.formats:
                    continue
                deps, files = _model_input(node)
                grid.add(Cell(
                    id=f"profile:{node.id}", stage="profile",
                    params={"batch": list(suite.profile.batch), "threads": list(suite.profile.threads),
                            "args": suite.profile.args},
                    deps=deps, files=files, labels=node.labels, exclusive=True))
    check_grid_params(grid)
    return grid


def _register(grid: Grid, node: ModelNode) -> ModelNode:
    if node.id in grid.models:
        raise EdgepruneError(f"grid: two models named {node.id!r}; give the suite entries distinct names")
    grid.models[node.id] = node
    return node


def _base_model(grid: Grid, dataset: DatasetSpec, model: ModelSpec, seed: int) -> tuple[ModelNode, ModelSpec]:
    labels = {"dataset": dataset.name, "model": model.name, "arch": model.arch or "given",
              "prune": "base", "method": "none", "scope": "", "criterion": "", "level": 0.0,
              "format": "keras", "precision": "fp32", "runtime": "keras"}
    node_id = f"{dataset.name}/{model.name}"
    if model.path is not None:
        return _register(grid, ModelNode(id=node_id, cell=None, path=model.path, labels=labels)), model
    cell = grid.add(Cell(
        id=f"train:{node_id}", stage="train",
        params={"arch": model.arch, **_dataset_params(dataset), "seed": seed, "args": model.train_args},
        labels=labels))
    return _register(grid, ModelNode(id=node_id, cell=cell.id, path=None, labels=labels)), model


def _pruned_models(grid: Grid, dataset: DatasetSpec, base: ModelNode, prune: PruneSpec,
                   seed: int) -> list[ModelNode]:
    nodes = []
    for scope in prune.scopes:
        for criterion in prune.criteria:
            variant = scope or criterion
            family = prune.name if len(prune.scopes) * len(prune.criteria) == 1 else f"{prune.name}-{variant}"
            taxonomy = prune.taxonomy[f"{scope or ''}|{criterion or ''}"]
            for level in prune.levels:
                params = {"method": prune.method, **_dataset_params(dataset), "seed": seed,
                          "args": prune.args}
                if prune.method == "nncf-filter":
                    params.update({"target": level, "criterion": criterion})
                else:
                    params.update({"sparsity": level, "scope": scope})
                deps, files = _model_input(base)
                node_id = f"{base.id}/{family}/{_fmt_level(level)}"
                labels = {**base.labels, "prune": family, "method": prune.method, "scope": scope or "",
                          "criterion": criterion or "", "level": level, "taxonomy": taxonomy}
                cell = grid.add(Cell(id=f"prune:{node_id}", stage="prune", params=params, deps=deps,
                                     files=files, labels=labels))
                nodes.append(_register(grid, ModelNode(id=node_id, cell=cell.id, path=None, labels=labels)))
    return nodes


def check_grid_params(grid: Grid) -> None:
    """Every cell's parameters, checked by the stage that takes them (at --dry-run too)."""
    from edgeprune.bench.stages import check_cell_params

    for cell in grid.cells.values():
        try:
            check_cell_params(cell.stage, cell.params)
        except EdgepruneError as exc:
            raise EdgepruneError(f"{grid.suite.path}: {cell.id}: {exc}") from None
