"""A benchmark suite: the YAML file that names every stage's settings, validated up front.

A typo three hours into a grid is expensive, so the whole file is checked before anything
runs; each error is one line naming the key (`pruning[1].method`) and the values allowed.
Paths in the file may use `${VAR}` / `${VAR:-default}` and are resolved relative to the
suite file, so a suite never needs a machine-specific path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.vocab import (ARCHITECTURE_NAMES, CONVERT_PRECISIONS, CONVERT_TARGETS, NNCF_CRITERIA, PRUNE_METHODS,
                             KERAS_SUFFIXES, RUNTIME_FORMATS, TFMOT_SCOPES)

SCHEMA = "edgeprune.bench.suite/1"

# The attack registry's names are used when it is installed (see `attack_catalogue`); this list
# names what the attack issues specify, for validation without it.
ATTACKS = ("fgsm", "bim", "pgd", "pgd-l2", "mim", "cw", "spsa", "deepfool", "apgd", "uap",
           "autoattack", "fmn", "square")
ROBUSTNESS_ATTACKS = ("autoattack", "fmn", "pgd", "apgd", "square")
EVALUATE_ROBUSTNESS_ARGS = {"autoattack": ("version", "eps", "norm", "batch-size", "input-range"),
                            "fmn": ("steps", "eps", "norm", "no-tune", "batch-size", "input-range")}
MODEL_SELECTORS = ("base", "pruned", "all")
TAXONOMY_KEYS = {
    "pipeline": ("after-training", "before-training", "during-training"),
    "iteration": ("one-shot", "iterative"),
    "structure": ("structured", "unstructured", "semi-structured"),
    "scope": ("local", "global"),
    "criterion": None,  # free text: magnitude, lamp, l1-norm, l2-norm, geometric-median, score-optimisation
    "pretraining": None,  # natural, fgsm-rs, pgd, trades (the base model's recipe; from the prune report)
    "fine_tuning": None,  # natural, fgsm-rs, pgd, trades, none
    "method": None,
    "reference": None,
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# --- value objects -------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetSpec:
    name: str
    spec: str  # resolved: absolute path for npz:/dir:/svhn:
    limit_train: int | None = None
    limit_test: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: str | None  # trained by the grid
    path: str | None  # a given .h5 (absolute)
    datasets: tuple[str, ...]
    train_args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PruneSpec:
    name: str
    method: str
    levels: tuple[float, ...]  # tfmot: --sparsity; nncf-filter: --target
    scopes: tuple[str | None, ...]  # tfmot only
    criteria: tuple[str | None, ...]  # nncf-filter only
    models: tuple[str, ...]
    args: dict = field(default_factory=dict)
    taxonomy: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ConvertSpec:
    name: str
    format: str
    precision: str
    of: str  # base | pruned | all
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AttackSpec:
    name: str
    attack: str
    surrogates: tuple[str, ...]
    limit: int | None
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RobustnessSpec:
    name: str
    attack: str
    of: str
    limit: int | None
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluateSpec:
    enabled: bool = True
    formats: tuple[str, ...] = RUNTIME_FORMATS
    limit: int | None = None
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileSpec:
    enabled: bool = False
    formats: tuple[str, ...] = RUNTIME_FORMATS
    batch: tuple[int, ...] = (32,)
    threads: tuple[int, ...] = ()
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionSpec:
    workers: int | None = None  # None: sized to cores and memory
    memory_per_worker_gb: float = 3.0
    seed: int = 0
    # TensorFlow threads per cell. Fixed (not derived from the pool size) because float
    # reductions split over a different number of threads give different bytes: a grid must
    # give the same results on 1 worker or 16, locally or on Ray. Part of every cell's key.
    threads: int = 1


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: Path
    datasets: tuple[DatasetSpec, ...]
    models: tuple[ModelSpec, ...]
    pruning: tuple[PruneSpec, ...]
    conversions: tuple[ConvertSpec, ...]
    attacks: tuple[AttackSpec, ...]
    robustness: tuple[RobustnessSpec, ...]
    evaluate: EvaluateSpec
    profile: ProfileSpec
    execution: ExecutionSpec
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def digest(self) -> str:
        """Hash of the resolved suite (what the grid state file remembers)."""
        return canonical_hash(self.raw)


def canonical_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- validation helpers --------------------------------------------------------------------

class _Checker:
    """Builds one-line errors that name the suite file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> EdgepruneError:
        return EdgepruneError(f"{self.source}: {key}: {message}")

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping with keys {', '.join(allowed)}, got {_kind(value)}")
        for name in value:
            if name not in allowed:
                raise self.fail(key, f"unknown key {name!r}; allowed: {', '.join(allowed)}")
        for name in required:
            if value.get(name) is None:
                raise self.fail(f"{key}.{name}" if key else name, "is required")
        return value

    def choice(self, value: Any, key: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(key, f"unknown value {value!r}; allowed: {', '.join(allowed)}")
        return value

    def choices(self, value: Any, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise self.fail(key, f"must not be empty; allowed: {', '.join(allowed)}")
        return tuple(self.choice(v, f"{key}" if not isinstance(value, list) else f"{key}[{i}]", allowed)
                     for i, v in enumerate(values))

    def name(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise self.fail(key, f"expected a name of letters, digits, '_', '-', '.', '+', got {value!r}")
        return value

    def integer(self, value: Any, key: str, *, minimum: int = 1, optional: bool = True) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def fraction(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise self.fail(key, f"expected a number in (0, 1), got {value!r}")
        return float(value)

    def fractions(self, value: Any, key: str) -> tuple[float, ...]:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise self.fail(key, "must list at least one level in (0, 1)")
        levels = tuple(self.fraction(v, f"{key}[{i}]" if isinstance(value, list) else key)
                       for i, v in enumerate(values))
        if len(set(levels)) != len(levels):
            raise self.fail(key, f"repeated level in {list(levels)}")
        return levels

    def ints(self, value: Any, key: str) -> tuple[int, ...]:
        values = value if isinstance(value, list) else [value]
        return tuple(self.integer(v, key, optional=False) for v in values)  # type: ignore[misc]

    def args(self, value: Any, key: str, options: tuple[str, ...] | None, command: str,
             reserved: tuple[str, ...] = ()) -> dict:
        """Extra flags for a stage command: {eps: 0.03} -> --eps 0.03, checked against its options."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping of `edgeprune {command}` options, got {_kind(value)}")
        for name, item in value.items():
            flag = str(name).replace("_", "-")
            if flag in reserved:
                raise self.fail(f"{key}.{name}", f"is set by the grid itself; remove it from {key}")
            if options is not None and flag not in options:
                raise self.fail(f"{key}.{name}", f"not an option of `edgeprune {command}`; "
                                f"allowed: {', '.join(sorted(set(options) - set(reserved)))}")
            if isinstance(item, (dict, list)) and not (isinstance(item, list) and all(
                    isinstance(v, (int, float, str)) for v in item)):
                raise self.fail(f"{key}.{name}", f"expected a scalar or a list of scalars, got {_kind(item)}")
        return {str(k).replace("_", "-"): v for k, v in value.items()}


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), f"{type(value).__name__} {value!r}")


def _unique(names: list[str], key: str, checker: _Checker) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise checker.fail(f"{key}[{index}].name", f"duplicate name {name!r}")
        seen.add(name)


# --- stage schemas ---------------------------------------------------------------------------

def stage_options(stage: str) -> tuple[str, ...]:
    """Flag-spelled option names of a stage (`edgeprune.api`'s option schemas; the CLI's long
    options carry the same names)."""
    from edgeprune.api import stage_option_names

    return stage_option_names(stage)


# --- loading -------------------------------------------------------------------------------

def expand_env(text: str, key: str, checker: _Checker) -> str:
    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None or value == "":
            if default is None:
                raise checker.fail(key, f"environment variable {name} is not set "
                                        f"(write ${{{name}:-DEFAULT}} to give a default)")
            return default
        return value

    return _ENV_RE.sub(replace, text)


def resolve_path(text: str, base: Path, key: str, checker: _Checker, *, must_exist: bool = True) -> str:
    path = Path(os.path.expanduser(expand_env(text, key, checker)))
    if not path.is_absolute():
        path = (base / path).resolve()
    if must_exist and not path.exists():
        raise checker.fail(key, f"{path} does not exist")
    return str(path)


def resolve_dataset_spec(spec: str, base: Path, key: str, checker: _Checker) -> str:
    spec = expand_env(spec, key, checker)
    kind, sep, arg = spec.partition(":")
    kinds = ("digits", "cifar10", "cifar100", "npz", "dir", "svhn")
    if kind not in kinds:
        raise checker.fail(key, f"unknown dataset {spec!r}; allowed: digits, cifar10, cifar100, "
                                "npz:PATH, dir:PATH, svhn:PATH")
    if kind in ("npz", "dir", "svhn"):
        if not arg:
            raise checker.fail(key, f"{kind}: needs a path, e.g. {kind}:data/x (relative to the suite file)")
        return f"{kind}:{resolve_path(arg, base, key, checker)}"
    return spec


# A suite expands to a few thousand YAML nodes; aliases may repeat parts, not multiply them.
MAX_EXPANDED_NODES = 100_000


def safe_load_bounded(text: str, path: Path) -> Any:
    """yaml.safe_load, refusing documents whose aliases expand past MAX_EXPANDED_NODES (an
    "alias bomb" of a few hundred bytes that would expand to billions of nodes) before
    anything walks the expanded data."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded = _expanded_size(node, {}, set())
        if expanded > MAX_EXPANDED_NODES:
            raise EdgepruneError(f"{path}: YAML aliases expand to over {MAX_EXPANDED_NODES:,} nodes "
                                 "(an alias bomb?); refused")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, sizes: dict[int, int], visiting: set[int]) -> int:
    """Nodes in the tree once every alias is expanded (shared nodes counted per use; memoised,
    so the walk costs the document's size, not the expansion's)."""
    import yaml

    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in visiting:
        return MAX_EXPANDED_NODES + 1  # a recursive alias expands without end
    visiting.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, sizes, visiting)
            if total > MAX_EXPANDED_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, sizes, visiting) + _expanded_size(v, sizes, visiting)
            if total > MAX_EXPANDED_NODES:
                break
    visiting.discard(key)
    sizes[key] = total
    return total


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and validate a suite file; every problem is one EdgepruneError line."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"{path}: no such suite file")
    try:
        data = safe_load_bounded(path.read_text(encoding="utf-8"), path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise EdgepruneError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_suite(data, path)


def parse_suite(data: Any, path: Path) -> Suite:
    check = _Checker(str(path))
    base = path.resolve().parent
    top = check.mapping(data, "suite file", (
        "schema", "suite", "description", "datasets", "models", "pruning", "conversions", "attacks",
        "robustness", "evaluate", "profile", "execution"), required=("suite", "datasets", "models"))
    if "schema" in top and top["schema"] != SCHEMA:
        raise check.fail("schema", f"unknown value {top['schema']!r}; allowed: {SCHEMA}")
    name = check.name(top["suite"], "suite")
    description = str(top.get("description") or "")

    datasets = _parse_datasets(top["datasets"], base, check)
    dataset_names = tuple(d.name for d in datasets)
    models = _parse_models(top["models"], base, dataset_names, check)
    model_names = tuple(m.name for m in models)
    pruning = _parse_pruning(top.get("pruning") or [], model_names, check)
    conversions = _parse_conversions(top.get("conversions") or [], check)
    attacks = _parse_attacks(top.get("attacks") or [], model_names, check)
    robustness = _parse_robustness(top.get("robustness") or [], check)
    evaluate = _parse_evaluate(top.get("evaluate"), check)
    profile = _parse_profile(top.get("profile"), check)
    execution = _parse_execution(top.get("execution"), check)

    suite = Suite(name=name, description=description, path=path.resolve(), datasets=datasets,
                  models=models, pruning=pruning, conversions=conversions, attacks=attacks,
                  robustness=robustness, evaluate=evaluate, profile=profile, execution=execution)
    raw = _normalised(suite)
    return Suite(**{**suite.__dict__, "raw": raw})


def _list(value: Any, key: str, check: _Checker, *, required: bool = False) -> list:
    if not isinstance(value, list) or (required and not value):
        raise check.fail(key, f"expected a{' non-empty' if required else ''} list, got {_kind(value)}")
    return value


def _parse_datasets(value: Any, base: Path, check: _Checker) -> tuple[DatasetSpec, ...]:
    items = []
    for i, entry in enumerate(_list(value, "datasets", check, required=True)):
        key = f"datasets[{i}]"
        if isinstance(entry, str):
            entry = {"spec": entry}
        entry = check.mapping(entry, key, ("name", "spec", "limit_train", "limit_test"), required=("spec",))
        if not isinstance(entry["spec"], str):
            raise check.fail(f"{key}.spec", f"expected a dataset spec string, got {_kind(entry['spec'])}")
        spec = resolve_dataset_spec(entry["spec"], base, f"{key}.spec", check)
        default_name = spec.split(":")[0] if ":" not in spec else Path(spec.split(":", 1)[1]).stem
        items.append(DatasetSpec(
            name=check.name(entry.get("name", default_name), f"{key}.name"), spec=spec,
            limit_train=check.integer(entry.get("limit_train"), f"{key}.limit_train"),
            limit_test=check.integer(entry.get("limit_test"), f"{key}.limit_test")))
    _unique([d.name for d in items], "datasets", check)
    return tuple(items)


TRAIN_RESERVED = ("arch", "dataset", "output", "limit-train", "limit", "seed", "force", "quiet")


def _parse_models(value: Any, base: Path, datasets: tuple[str, ...], check: _Checker) -> tuple[ModelSpec, ...]:
    items = []
    train_options = stage_options("train")
    for i, entry in enumerate(_list(value, "models", check, required=True)):
        key = f"models[{i}]"
        entry = check.mapping(entry, key, ("name", "arch", "path", "datasets", "train"))
        if ("arch" in entry) == ("path" in entry):
            raise check.fail(key, "give exactly one of `arch` (trained by the grid) or `path` (a given .h5)")
        arch = check.choice(entry["arch"], f"{key}.arch", ARCHITECTURE_NAMES) if "arch" in entry else None
        given = None
        if "path" in entry:
            given = resolve_path(str(entry["path"]), base, f"{key}.path", check)
            if not given.lower().endswith(KERAS_SUFFIXES):
                raise check.fail(f"{key}.path", f"expected a Keras .h5 or .keras file, got {given}")
            if "train" in entry:
                raise check.fail(f"{key}.train", "a given model (`path`) is not trained; remove `train`")
        name = check.name(entry.get("name", arch or Path(given or "").stem), f"{key}.name")
        on = check.choices(entry.get("datasets", list(datasets)), f"{key}.datasets", datasets)
        if given is not None and len(on) != 1:
            raise check.fail(f"{key}.datasets", "a given model belongs to exactly one dataset; name it")
        train_args = check.args(entry.get("train"), f"{key}.train", train_options, "train", TRAIN_RESERVED)
        items.append(ModelSpec(name=name, arch=arch, path=given, datasets=on, train_args=train_args))
    _unique([m.name for m in items], "models", check)
    return tuple(items)


PRUNE_RESERVED = ("method", "sparsity", "target", "scope", "criterion", "dataset", "output", "seed",
                  "force", "quiet", "limit", "limit-train")


def _parse_taxonomy(value: Any, key: str, check: _Checker, method: str, scope: str | None,
                    criterion: str | None, args: dict) -> dict:
    """The second paper's taxonomy record; filled from the method where not given."""
    from edgeprune.prune.taxonomy import taxonomy

    derived = taxonomy(method, scope=scope, criterion=criterion, epochs=args.get("epochs"),
                       schedule=args.get("schedule", "polynomial"), pattern=args.get("pattern"),
                       adversarial=args.get("adversarial", "none"), pretraining=None)
    if value is None:
        return derived
    record = check.mapping(value, key, tuple(TAXONOMY_KEYS))
    for name, allowed in TAXONOMY_KEYS.items():
        if name in record and allowed is not None:
            check.choice(record[name], f"{key}.{name}", allowed)
    return {**derived, **{k: str(v) for k, v in record.items()}}


def _parse_pruning(value: Any, models: tuple[str, ...], check: _Checker) -> tuple[PruneSpec, ...]:
    items = []
    options = stage_options("prune")
    methods, scopes, criteria = PRUNE_METHODS, TFMOT_SCOPES, NNCF_CRITERIA
    for i, entry in enumerate(_list(value, "pruning", check)):
        key = f"pruning[{i}]"
        entry = check.mapping(entry, key, ("name", "method", "sparsity", "target", "scope", "criterion",
                                           "models", "args", "taxonomy"), required=("method",))
        method = check.choice(entry["method"], f"{key}.method", methods)
        if method == "nncf-filter":
            if "sparsity" in entry or "scope" in entry:
                raise check.fail(key, "nncf-filter takes `target` and `criterion`, not `sparsity`/`scope`")
            if "target" not in entry:
                raise check.fail(f"{key}.target", "is required for nncf-filter (levels in (0, 1))")
            levels = check.fractions(entry["target"], f"{key}.target")
            scope_values: tuple[str | None, ...] = (None,)
            criterion_values: tuple[str | None, ...] = check.choices(entry.get("criterion", "l2"),
                                                                      f"{key}.criterion", criteria)
        else:
            if "target" in entry or "criterion" in entry:
                raise check.fail(key, f"{method} takes `sparsity` and `scope`, not `target`/`criterion`")
            if "sparsity" not in entry:
                raise check.fail(f"{key}.sparsity", f"is required for {method} (levels in (0, 1))")
            levels = check.fractions(entry["sparsity"], f"{key}.sparsity")
            scope_values = check.choices(entry.get("scope", "local"), f"{key}.scope", scopes)
            criterion_values = (None,)
        args = check.args(entry.get("args"), f"{key}.args", options, "prune", PRUNE_RESERVED)
        name = check.name(entry.get("name", method), f"{key}.name")
        on = check.choices(entry.get("models", list(models)), f"{key}.models", models)
        if len(scope_values) > 1 or len(criterion_values) > 1:
            if "taxonomy" in entry:
                raise check.fail(f"{key}.taxonomy", "give a taxonomy record only to an entry with one "
                                                    "scope/criterion (split the entry)")
        taxonomies = {}
        for scope in scope_values:
            for criterion in criterion_values:
                taxonomies[(scope, criterion)] = _parse_taxonomy(
                    entry.get("taxonomy"), f"{key}.taxonomy", check, method, scope, criterion, args)
        items.append(PruneSpec(name=name, method=method, levels=levels, scopes=scope_values,
                               criteria=criterion_values, models=on, args=args,
                               taxonomy={f"{s or ''}|{c or ''}": t for (s, c), t in taxonomies.items()}))
    _unique([p.name for p in items], "pruning", check)
    return tuple(items)


CONVERT_RESERVED = ("to", "precision", "output", "force", "quiet", "dataset", "seed")


def _parse_conversions(value: Any, check: _Checker) -> tuple[ConvertSpec, ...]:
    items = []
    options = stage_options("convert")
    formats = CONVERT_TARGETS
    for i, entry in enumerate(_list(value, "conversions", check)):
        key = f"conversions[{i}]"
        entry = check.mapping(entry, key, ("name", "format", "precision", "of", "args"), required=("format",))
        fmt = check.choice(entry["format"], f"{key}.format", formats)
        precision = check.choice(entry.get("precision", "fp32"), f"{key}.precision",
                                 CONVERT_PRECISIONS.get(fmt, ("fp32",)))
        items.append(ConvertSpec(
            name=check.name(entry.get("name", f"{fmt}-{precision}"), f"{key}.name"), format=fmt,
            precision=precision, of=check.choice(entry.get("of", "all"), f"{key}.of", MODEL_SELECTORS),
            args=check.args(entry.get("args"), f"{key}.args", options, "convert", CONVERT_RESERVED)))
    _unique([c.name for c in items], "conversions", check)
    return tuple(items)


ATTACK_RESERVED = ("attack", "dataset", "output", "split", "limit", "seed", "force", "quiet", "param")


def attack_catalogue() -> dict[str, tuple[str, ...]] | None:
    """{attack: its parameter names} from the attack registry, or None where it is absent."""
    try:
        from edgeprune.attacks.registry import ATTACKS as REGISTERED
    except ImportError:
        return None
    return {name: tuple(p.name.replace("_", "-") for p in spec.params) for name, spec in REGISTERED.items()}


def _attack_entry(entry: Any, key: str, check: _Checker, allowed: tuple[str, ...], extra_keys: tuple[str, ...],
                  catalogue: dict | None, options: tuple[str, ...] | None) -> tuple[dict, str, dict]:
    if isinstance(entry, str):
        entry = {"attack": entry}
    entry = check.mapping(entry, key, ("name", "attack", "limit", "args", *extra_keys), required=("attack",))
    attack = check.choice(entry["attack"], f"{key}.attack", allowed)
    # args: options of `edgeprune attack` (eps, norm, steps, preset, ...) or the attack's own
    # parameters, which the cell passes as --param NAME=VALUE.
    accepted = None if options is None else tuple(options) + (catalogue or {}).get(attack, ())
    args = check.args(entry.get("args"), f"{key}.args", accepted, f"attack --attack {attack}", ATTACK_RESERVED)
    return entry, attack, args


def _parse_attacks(value: Any, models: tuple[str, ...], check: _Checker) -> tuple[AttackSpec, ...]:
    items = []
    options = stage_options("attack")
    catalogue = attack_catalogue()
    allowed = tuple(catalogue) if catalogue else ATTACKS
    for i, entry in enumerate(_list(value, "attacks", check)):
        key = f"attacks[{i}]"
        entry, attack, args = _attack_entry(entry, key, check, allowed, ("surrogates",), catalogue, options)
        items.append(AttackSpec(
            name=check.name(entry.get("name", attack), f"{key}.name"), attack=attack,
            surrogates=check.choices(entry.get("surrogates", list(models)), f"{key}.surrogates", models),
            limit=check.integer(entry.get("limit"), f"{key}.limit"), args=args))
    _unique([a.name for a in items], "attacks", check)
    return tuple(items)


def _parse_robustness(value: Any, check: _Checker) -> tuple[RobustnessSpec, ...]:
    items = []
    options = stage_options("attack")
    catalogue = attack_catalogue()
    allowed = tuple(a for a in catalogue if a in ROBUSTNESS_ATTACKS) if catalogue else ROBUSTNESS_ATTACKS
    for i, entry in enumerate(_list(value, "robustness", check)):
        key = f"robustness[{i}]"
        attack = entry.get("attack") if isinstance(entry, dict) else entry
        # AutoAttack and FMN curves run through `edgeprune evaluate --autoattack / --curve`.
        through_evaluate = EVALUATE_ROBUSTNESS_ARGS.get(attack) if isinstance(attack, str) else None
        entry, attack, args = _attack_entry(entry, key, check, allowed, ("of",),
                                            None if through_evaluate else catalogue,
                                            through_evaluate or options)
        items.append(RobustnessSpec(
            name=check.name(entry.get("name", attack), f"{key}.name"), attack=attack,
            of=check.choice(entry.get("of", "all"), f"{key}.of", MODEL_SELECTORS),
            limit=check.integer(entry.get("limit"), f"{key}.limit"), args=args))
    _unique([r.name for r in items], "robustness", check)
    return tuple(items)


EVALUATE_RESERVED = ("sets", "dataset", "output", "limit", "force", "quiet", "format")


def _parse_evaluate(value: Any, check: _Checker) -> EvaluateSpec:
    if value is None or value is True:
        return EvaluateSpec()
    if value is False:
        return EvaluateSpec(enabled=False)
    entry = check.mapping(value, "evaluate", ("enabled", "formats", "limit", "args"))
    return EvaluateSpec(
        enabled=bool(entry.get("enabled", True)),
        formats=check.choices(entry.get("formats", list(RUNTIME_FORMATS)), "evaluate.formats", RUNTIME_FORMATS),
        limit=check.integer(entry.get("limit"), "evaluate.limit"),
        args=check.args(entry.get("args"), "evaluate.args", stage_options("evaluate"), "evaluate",
                        EVALUATE_RESERVED))


PROFILE_RESERVED = ("batch", "threads", "output", "force", "quiet", "format")


def _parse_profile(value: Any, check: _Checker) -> ProfileSpec:
    if value is None or value is False:
        return ProfileSpec(enabled=False)
    if value is True:
        return ProfileSpec(enabled=True)
    entry = check.mapping(value, "profile", ("enabled", "formats", "batch", "threads", "args"))
    return ProfileSpec(
        enabled=bool(entry.get("enabled", True)),
        formats=check.choices(entry.get("formats", list(RUNTIME_FORMATS)), "profile.formats", RUNTIME_FORMATS),
        batch=check.ints(entry.get("batch", [32]), "profile.batch"),
        threads=check.ints(entry["threads"], "profile.threads") if "threads" in entry else (),
        args=check.args(entry.get("args"), "profile.args", stage_options("profile"), "profile",
                        PROFILE_RESERVED))


def _parse_execution(value: Any, check: _Checker) -> ExecutionSpec:
    if value is None:
        return ExecutionSpec()
    entry = check.mapping(value, "execution", ("workers", "memory_per_worker_gb", "seed", "threads"))
    workers = entry.get("workers", "auto")
    if workers != "auto":
        workers = check.integer(workers, "execution.workers")
    memory = entry.get("memory_per_worker_gb", 3.0)
    if isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory <= 0:
        raise check.fail("execution.memory_per_worker_gb", f"expected a number > 0, got {memory!r}")
    seed = entry.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise check.fail("execution.seed", f"expected an integer, got {seed!r}")
    threads = check.integer(entry.get("threads", 1), "execution.threads", optional=False)
    return ExecutionSpec(workers=None if workers == "auto" else workers,
                         memory_per_worker_gb=float(memory), seed=seed, threads=threads or 1)


def _normalised(suite: Suite) -> dict:
    """A JSON-able view of everything that defines the grid (paths resolved, defaults filled)."""
    from dataclasses import asdict

    out: dict[str, Any] = {}
    for name in ("name", "datasets", "models", "pruning", "conversions", "attacks", "robustness",
                 "evaluate", "profile"):
        value = getattr(suite, name)
        if isinstance(value, tuple):
            out[name] = [asdict(v) for v in value]
        elif hasattr(value, "__dataclass_fields__"):
            out[name] = asdict(value)
        else:
            out[name] = value
    out["seed"] = suite.execution.seed
    out["threads"] = suite.execution.threads
    return json.loads(json.dumps(out, default=str))
