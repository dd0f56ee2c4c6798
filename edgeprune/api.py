"""edgeprune's Python API: one function per stage, typed options in, typed results out.

    from edgeprune import api
    base = api.train(api.TrainOptions("smallcnn", epochs=3), "base.h5")
    pruned = api.prune("base.h5", api.PruneOptions("tfmot", sparsity=0.8), "p80.h5")

Each function validates its options, does the work, writes its files (atomically, with the
JSON/CSV/markdown report beside them) and returns a result (`edgeprune.results`). The CLI
commands and the bench's grid cells call exactly these functions. Options are frozen
dataclasses; `edgeprune.options.from_args(XOptions, {"batch-size": 32})` builds one from
flag-spelled names, as a bench suite's `args:` gives them. Importing this module is cheap:
TensorFlow loads inside the stage that needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeprune.convert import ConvertConfig
from edgeprune.errors import EdgepruneError
from edgeprune.folders import FolderOptions
from edgeprune.integrity import check_outputs, check_report_outputs, dataset_files
from edgeprune.io import check_output, sidecar
from edgeprune.options import CALL_NAMES, flag, option_names
from edgeprune.pruning import PruneOptions, prune
from edgeprune.results import (BenchResult, CompareResult, ConvertResult, EvaluateResult, ImportResult, ProfileResult,
                               RobustnessResult, TrainResult, TransferSetResult)
from edgeprune.train import TrainConfig
from edgeprune.vocab import (ARCHITECTURE_NAMES, ATTACK_PRESETS, AUTOATTACK_VERSIONS, BENCH_EXECUTORS,
                             DATASETS_BY_NAME, INFERENCE_PRECISIONS, INPUT_RANGES, NORMS, PROFILE_ISOLATIONS,
                             SPLITS, check_choice)

if TYPE_CHECKING:
    import tensorflow as tf

    from edgeprune.attacks.runner import AttackConfig

    from edgeprune.compare import CompareConfig
    from edgeprune.data import Dataset
    from edgeprune.folders import FolderDataset
    from edgeprune.profile import ProfileConfig
    from edgeprune.runtime import Predictor

__all__ = [
    "AttackOptions", "ConvertOptions", "EvaluateOptions", "ImportOptions", "ProfileOptions", "PruneOptions",
    "RobustnessOptions", "STAGE_OPTIONS", "TrainOptions", "attack", "bench", "compare", "compare_within", "convert",
    "evaluate", "import_model", "load_dataset", "load_model", "load_predictor", "profile", "prune", "robustness",
    "train",
]


# --- loading --------------------------------------------------------------------------------

def load_model(path: str | os.PathLike, *, allow_unsafe: bool = False) -> tf.keras.Model:
    """A Keras model from .h5 (Keras 2 or 3) or .keras; refuses code-carrying files unless
    `allow_unsafe`."""
    from edgeprune.modelio import load_keras_model

    return load_keras_model(path, allow_unsafe=allow_unsafe)


def load_predictor(path: str | os.PathLike, *, allow_unsafe: bool = False, threads: int | None = None,
                   input_range: str | None = None) -> Predictor:
    """A predictor (`.predict(x, batch_size)` -> logits) for .h5, .keras, .tflite or OpenVINO .xml,
    fed [0, 1] images: a model taking another range (`input_range`, else recorded, else
    detected) gets them mapped (edgeprune.inputrange)."""
    from edgeprune.runtime import load

    check_choice("input-range", input_range, INPUT_RANGES)
    return load(path, allow_unsafe=allow_unsafe, threads=threads, input_range=input_range)


def load_dataset(spec: str = "digits", *, limit_train: int | None = None, limit_test: int | None = None,
                 seed: int = 0, folder: FolderOptions | None = None,
                 input_shape: Sequence[int] | None = None) -> Dataset | FolderDataset:
    """digits (embedded), cifar10, cifar100, npz:PATH, dir:PATH, svhn:PATH or folder:PATH (class
    folders of images, decoded in batches; `folder`: --val-split / --image-size / --strict,
    `input_shape`: what its images are resized to)."""
    from edgeprune.data import load_dataset as load

    return load(spec, limit_train=limit_train, limit_test=limit_test, seed=seed, folder=folder,
                input_shape=input_shape)


# --- import ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportOptions:
    """How to import a Keras 3 (.keras / .h5) or foreign Keras 2 model."""

    input_range: str | None = None  # what the model takes; None: recorded, else detected, else 0,1

    def __post_init__(self) -> None:
        check_choice("input-range", self.input_range, INPUT_RANGES)


def import_model(model: str | os.PathLike, output: str | os.PathLike, options: ImportOptions | None = None, *,
                 force: bool = False, allow_unsafe: bool = False) -> ImportResult:
    """Translate `model` (.keras, Keras 3 or Keras 2 .h5) into a Keras 2 .h5 every stage reads,
    without running code from the file, with its record inside and OUTPUT.json beside it
    (source format, Keras version, what was translated, the input range)."""
    from edgeprune.keras3 import import_model as translate

    options = options or ImportOptions()
    record = translate(Path(model), Path(output), input_range=options.input_range, allow_unsafe=allow_unsafe,
                       overwrite=force)
    return ImportResult(record=record, paths=(Path(output), sidecar(output)))


# --- train ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainOptions(FolderOptions, TrainConfig):
    """Train a zoo architecture from scratch (TrainConfig: the first paper's recipe by default)
    on `dataset`."""

    dataset: str = "digits"
    limit_train: int | None = None
    limit_test: int | None = flag(None, name="limit")
    input_range: str | None = None  # train a model taking this range (INPUT_RANGES), recorded in it

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURE_NAMES:
            raise EdgepruneError(f"unknown architecture {self.arch!r}; expected one of {', '.join(ARCHITECTURE_NAMES)}")
        check_choice("input-range", self.input_range, INPUT_RANGES)
        super().__post_init__()

    def config(self) -> TrainConfig:
        """The training recipe alone (what the report records)."""
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})


def train(options: TrainOptions, output: str | os.PathLike, *, force: bool = False,
          progress: bool = True) -> TrainResult:
    """Train `options.arch` and save it as a Keras .h5 (with its dataset recorded) and OUT.json."""
    from edgeprune.data import load_dataset as load
    from edgeprune.inputrange import dataset_for_model, parse_input_range
    from edgeprune.io import versions, write_json
    from edgeprune.modelio import save_keras_model
    from edgeprune.train import train_model

    output = check_output(output, force=force, suffixes=(".h5",), inputs=dataset_files(options.dataset))
    check_output(sidecar(output), force=force, inputs=dataset_files(options.dataset))
    config = options.config()
    data = load(options.dataset, limit_train=options.limit_train, limit_test=options.limit_test,
                seed=options.seed, folder=options)
    input_range = parse_input_range(options.input_range) if options.input_range is not None else None
    if input_range is not None:  # a model that takes this range (e.g. 0,255) is trained on it
        data = dataset_for_model(data, input_range)
    model, result = train_model(config, data, progress=progress)
    result["dataset_spec"] = options.dataset
    result["versions"] = versions()
    metadata = {key: result[key] for key in ("arch", "dataset", "dataset_fingerprint",
                                             "num_classes", "class_names", "input_shape")}
    if input_range is not None:
        metadata["input_range"] = result["input_range"] = input_range.as_dict()
    if result.get("adversarial"):  # the pretraining objective, for the prune taxonomy
        metadata["adversarial"] = result["adversarial"]["recipe"]
    save_keras_model(model, output, metadata=metadata)
    record = {"schema": TrainResult.SCHEMA, **result}
    write_json(sidecar(output), record)
    return TrainResult(record=record, paths=(output, sidecar(output)))


# --- convert --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvertOptions(FolderOptions, ConvertConfig):
    """Convert to TFLite or OpenVINO IR and verify against the source (ConvertConfig), with the
    data to calibrate and verify on."""

    dataset: str | None = None  # None: the dataset the model records, when it loads by name
    no_verify: bool = False
    input_range: str | None = None  # None: the model's recorded range, else detected, else 0,1

    def __post_init__(self) -> None:
        check_choice("input-range", self.input_range, INPUT_RANGES)
        super().__post_init__()

    def config(self) -> ConvertConfig:
        """The conversion settings alone (`no_verify` as verify=0)."""
        values = {f.name: getattr(self, f.name) for f in fields(ConvertConfig)}
        return ConvertConfig(**{**values, "verify": 0 if self.no_verify else self.verify})


def resolve_dataset(spec: str | None, model_path: str | os.PathLike, *, needed: bool, seed: int,
                    folder: FolderOptions | None = None) -> tuple[Dataset | FolderDataset | None, str | None]:
    """(Dataset or None, the spec used). Without a spec, the dataset recorded in the model is
    used when it loads by name (digits, cifar10, cifar100); a file-based one must be given."""
    from edgeprune.data import load_dataset as load
    from edgeprune.modelio import read_metadata

    record = read_metadata(model_path)
    if spec is None:
        if not needed:
            return None, None
        recorded = record.get("dataset")
        if recorded not in DATASETS_BY_NAME:
            where = f"was trained on {recorded!r}" if recorded else "records no dataset"
            raise EdgepruneError(
                f"{model_path}: {where}; pass its data with --dataset (e.g. npz:PATH), "
                "or --no-verify for a float conversion")
        spec = recorded
    return load(spec, seed=seed, folder=folder, input_shape=record.get("input_shape"),
                class_names=record.get("class_names")), spec


def convert(model: str | os.PathLike, options: ConvertOptions, output: str | os.PathLike, *,
            force: bool = False, allow_unsafe: bool = False, progress: bool = True) -> ConvertResult:
    """Convert the Keras model at `model` to `output` (.tflite or .xml), verify it and write
    OUTPUT.json; below the agreement bound nothing is written and VerificationError is raised."""
    from edgeprune.convert import convert_model, report_path_for

    config = options.config()
    inputs = [model, *dataset_files(options.dataset)]
    output = check_output(output, force=force, suffixes=(config.suffix,), inputs=inputs)
    report_path = report_path_for(output)
    check_output(report_path, force=force, inputs=inputs)
    if config.target == "openvino":
        check_output(output.with_suffix(".bin"), force=force, inputs=inputs)
    data, spec = resolve_dataset(options.dataset, model, needed=config.needs_data, seed=options.seed,
                                 folder=options)
    record = convert_model(model, output, config, dataset=data, dataset_spec=spec,
                           allow_unsafe=allow_unsafe, progress=progress, input_range=options.input_range)
    return ConvertResult(record=record, paths=(output, report_path))


# --- attack ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttackOptions(FolderOptions):
    """Craft a transfer set: `attack` (a registry name) on a dataset split, untargeted."""

    attack: str
    dataset: str = "digits"
    split: str = "test"
    limit: int | None = None
    eps: float | None = None  # None: 8/255 (linf) / 0.5 (l2) for bounded attacks, or the preset's
    norm: str | None = None  # None: the attack's first norm, or the preset's
    steps: int | None = None
    step_size: float | None = None
    params: Mapping[str, Any] | None = flag(None, name="param")  # the attack's own parameters
    preset: str | None = None
    batch_size: int = 128
    seed: int = 0
    input_range: str | None = None  # what the model takes; images and eps stay in [0, 1] units

    def __post_init__(self) -> None:
        check_choice("input-range", self.input_range, INPUT_RANGES)
        check_choice("split", self.split, SPLITS)
        check_choice("norm", self.norm, NORMS)
        check_choice("preset", self.preset, ATTACK_PRESETS)
        if self.eps is not None and not self.eps > 0:
            raise EdgepruneError(f"--eps must be > 0, got {self.eps}")
        super().__post_init__()


def attack_config(options: AttackOptions) -> AttackConfig:
    """The attack's validated config (preset, eps, norm and the attack's own parameters): a
    parameter the attack does not take, or a bad value, is refused here, before any work."""
    from edgeprune.attacks.registry import get_attack, preset_settings
    from edgeprune.attacks.runner import AttackConfig

    spec = get_attack(options.attack)
    settings = preset_settings(options.preset, options.attack) if options.preset else {}
    params = {k: v for k, v in settings.items() if k not in ("eps", "norm")}
    params.update(options.params or {})
    if options.steps is not None:
        params["steps"] = options.steps
    if options.step_size is not None:
        params["step_size"] = options.step_size
    eps = options.eps if options.eps is not None else settings.get("eps")
    norm = options.norm or settings.get("norm")
    return AttackConfig.create(spec.name, eps=eps, norm=norm, seed=options.seed, params=params,
                               batch_size=options.batch_size)


def attack(model: str | os.PathLike, options: AttackOptions, output: str | os.PathLike, *,
           force: bool = False, allow_unsafe: bool = False, progress: bool = True) -> TransferSetResult:
    """Attack the Keras model at `model`; write OUTPUT.npz (x_adv, y, index) and OUTPUT.json."""
    from edgeprune.attacks.transferset import craft_transfer_set, set_paths

    config = attack_config(options)
    npz_path, json_path, _ = set_paths(output)
    check_outputs((npz_path, json_path), force=force, inputs=[model, *dataset_files(options.dataset)])
    record = craft_transfer_set(model, options.dataset, config, output, split=options.split, limit=options.limit,
                                progress=progress, allow_unsafe=allow_unsafe, input_range=options.input_range,
                                folder=options)
    return TransferSetResult(record=record, paths=(npz_path, json_path))


# --- evaluate and robustness ----------------------------------------------------------------

@dataclass(frozen=True)
class EvaluateOptions(FolderOptions):
    """Accuracy on the clean test split (`dataset`) and on transfer sets (`sets`), with each
    runtime computing at `inference_precision` (INFERENCE_PRECISIONS; what ran is recorded)."""

    sets: tuple[str, ...] = ()
    dataset: str | None = None  # default: the first set's
    limit: int | None = None
    batch_size: int = 256
    inference_precision: str = "default"
    input_range: str | None = None  # for every model; None: each model's recorded or detected range
    seed: int = 0  # a folder's --val-split seed (the one it was trained with)

    def __post_init__(self) -> None:
        check_choice("inference-precision", self.inference_precision, INFERENCE_PRECISIONS)
        check_choice("input-range", self.input_range, INPUT_RANGES)
        if not self.sets and not self.dataset:
            raise EdgepruneError("nothing to evaluate on: give --sets and/or --dataset")
        super().__post_init__()


def evaluate(models: Sequence[str | os.PathLike], options: EvaluateOptions, output: str | os.PathLike | None = None,
             *, force: bool = False, allow_unsafe: bool = False, progress: bool = True) -> EvaluateResult:
    """Models (.h5, .tflite, .xml) x (clean split + sets) -> accuracy tables; with `output`
    (a stem) writes STEM.json, STEM.csv, STEM.md and STEM.png (existing ones only with `force`)."""
    from edgeprune.evaluate import evaluate as evaluate_models
    from edgeprune.evaluate import write_report

    if output:
        check_report_outputs(output, (".json", ".csv", ".md", ".png"), force=force,
                             inputs=[*models, *options.sets, *dataset_files(options.dataset)])

    record = evaluate_models(list(models), list(options.sets), dataset_spec=options.dataset, limit=options.limit,
                             batch_size=options.batch_size, allow_unsafe=allow_unsafe, progress=progress,
                             inference_precision=options.inference_precision, input_range=options.input_range,
                             folder=options, seed=options.seed)
    paths = tuple(write_report(record, output)) if output else ()
    return EvaluateResult(record=record, paths=paths)


@dataclass(frozen=True)
class RobustnessOptions(FolderOptions):
    """White-box robustness of each model on itself: AutoAttack robust accuracy at `eps`
    (`autoattack` = standard | fast) or FMN robustness curves (`curve`)."""

    curve: bool = False
    autoattack: str | None = None
    eps: str | None = None  # autoattack: the bound; curve: eps values to tabulate ("2/255,8/255")
    norm: str = "linf"
    fmn_steps: int = 100
    tune: bool = flag(True, name="no-tune", negate=True)
    dataset: str | None = None
    limit: int | None = None
    batch_size: int = 256
    seed: int = 0
    input_range: str | None = None  # for every model; None: each model's recorded or detected range

    def __post_init__(self) -> None:
        check_choice("input-range", self.input_range, INPUT_RANGES)
        check_choice("autoattack", self.autoattack, AUTOATTACK_VERSIONS)
        check_choice("norm", self.norm, NORMS)
        if self.curve and self.autoattack:
            raise EdgepruneError("--curve and --autoattack are separate reports: give one of them")
        if not self.curve and not self.autoattack:
            raise EdgepruneError("robustness needs --curve or --autoattack VERSION")
        super().__post_init__()


def robustness(models: Sequence[str | os.PathLike], options: RobustnessOptions,
               output: str | os.PathLike | None = None, *, force: bool = False, allow_unsafe: bool = False,
               progress: bool = True) -> RobustnessResult:
    """AutoAttack or FMN curves for each model; with `output` (a stem) writes STEM.json/.csv/.md
    (and STEM.png for curves)."""
    from edgeprune.attacks.registry import DEFAULT_EPS, normalize_norm
    from edgeprune.robustness import (DEFAULT_CURVE_EPS, evaluate_autoattack, evaluate_curves, parse_eps,
                                      write_autoattack, write_curves)

    norm = normalize_norm(options.norm)
    if output:
        check_report_outputs(output, (".json", ".csv", ".md", ".png"), force=force,
                             inputs=[*models, *dataset_files(options.dataset)])
    paths: list[Path] = []
    model_list = [str(m) for m in models]
    if options.curve:
        texts = [t for t in (options.eps or "").split(",") if t.strip()]
        eps_report = [parse_eps(t) for t in texts] if texts else list(DEFAULT_CURVE_EPS[norm])
        record, curves = evaluate_curves(model_list, dataset_spec=options.dataset, limit=options.limit, norm=norm,
                                         steps=options.fmn_steps, tune=options.tune, eps_report=eps_report,
                                         batch_size=options.batch_size, allow_unsafe=allow_unsafe,
                                         progress=progress, input_range=options.input_range, folder=options,
                                         seed=options.seed)
        if output:
            paths = write_curves(record, curves, output)
    else:
        eps = parse_eps(options.eps) if options.eps else DEFAULT_EPS[norm]
        if eps <= 0:
            raise EdgepruneError(f"--eps must be > 0 for --autoattack, got {options.eps}")
        record = evaluate_autoattack(model_list, eps=eps, dataset_spec=options.dataset, limit=options.limit,
                                     norm=norm, version=options.autoattack or "standard", seed=options.seed,
                                     batch_size=options.batch_size, allow_unsafe=allow_unsafe,
                                     progress=progress, input_range=options.input_range, folder=options)
        if output:
            paths = write_autoattack(record, output)
    return RobustnessResult(record=record, paths=tuple(paths))


# --- profile and compare --------------------------------------------------------------------

@dataclass(frozen=True)
class ProfileOptions:
    """Size and CPU batch latency (see ProfileConfig); `threads` None: the CPUs measured on;
    `inference_precision` (INFERENCE_PRECISIONS): how the runtime computes, read back per cell."""

    batch: tuple[int, ...] = (1, 32, 64)
    threads: tuple[int, ...] | None = None
    cpus: tuple[int, ...] | None = None
    runs: int = 10
    min_time_s: float = flag(1.0, name="min-time")
    warmup: int = 3
    warmup_time_s: float = flag(0.2, name="warmup-time")
    isolation: str = "process"
    processes: int = 16  # fresh processes per cell (isolation "process"); compare judges their medians
    input_shape: tuple[int, ...] | None = None
    seed: int = 0
    inference_precision: str = "default"
    input_range: str | None = None  # the random [0, 1] batch is mapped to it; None: recorded or detected

    def __post_init__(self) -> None:
        check_choice("isolation", self.isolation, PROFILE_ISOLATIONS)
        check_choice("inference-precision", self.inference_precision, INFERENCE_PRECISIONS)
        check_choice("input-range", self.input_range, INPUT_RANGES)

    @property
    def cpu_count(self) -> int:
        from edgeprune.profile import allowed_cpus

        return len(set(self.cpus)) if self.cpus is not None else len(allowed_cpus() or [1])

    def config(self, *, allow_unsafe: bool = False) -> ProfileConfig:
        from edgeprune.profile import ProfileConfig, check_cpus

        cpus = check_cpus(self.cpus) if self.cpus is not None else None
        return ProfileConfig(batches=self.batch, threads=self.threads or (self.cpu_count,), cpus=cpus,
                             runs=self.runs, min_time_s=self.min_time_s, warmup=self.warmup,
                             warmup_time_s=self.warmup_time_s, isolation=self.isolation,
                             processes=self.processes, seed=self.seed,
                             input_shape=self.input_shape, input_range=self.input_range, allow_unsafe=allow_unsafe,
                             inference_precision=self.inference_precision)


def profile(models: Sequence[str | os.PathLike], options: ProfileOptions, output: str | os.PathLike | None = None,
            *, force: bool = False, allow_unsafe: bool = False, progress: bool = True,
            command: str | None = None) -> ProfileResult:
    """Measure each model file; with `output` (.json) writes it and a .csv and .md beside it."""
    from edgeprune.profile import profile_models

    path = check_output(output, force=force, suffixes=(".json",), inputs=models) if output is not None else None
    if path is not None:
        check_outputs((path.with_suffix(".csv"), path.with_suffix(".md")), force=force, inputs=models)
    record = profile_models(list(models), options.config(allow_unsafe=allow_unsafe), progress=progress,
                            command=command)
    result = ProfileResult(record=record)
    if path is None:
        return result
    result.to_json(path)
    result.to_csv(path.with_suffix(".csv"))
    result.to_markdown(path.with_suffix(".md"))
    return ProfileResult(record=record, paths=(path, path.with_suffix(".csv"), path.with_suffix(".md")))


def compare(baseline: str | os.PathLike, candidate: str | os.PathLike, config: CompareConfig | None = None,
            output: str | os.PathLike | None = None, *, force: bool = False) -> CompareResult:
    """The CI gate: candidate profile vs baseline profile (`result.regression`); `output`
    never replaces either profile, nor an existing file without `force`."""
    from edgeprune.compare import CompareConfig, compare_profiles, load_profile

    if output is not None:
        check_output(output, force=force, inputs=(baseline, candidate))
    config = config or CompareConfig()
    record = compare_profiles(load_profile(baseline), load_profile(candidate), config,
                              baseline_path=str(baseline), candidate_path=str(candidate))
    return _compare_result(record, output)


def compare_within(profile: str | os.PathLike, baseline_model: str, candidate_model: str,
                   config: CompareConfig | None = None, output: str | os.PathLike | None = None, *,
                   force: bool = False) -> CompareResult:
    """The CI gate on one interleaved profile of both models (`edgeprune profile BASE CAND`),
    judged turn by turn: immune to the host's drift between two jobs (edgeprune.compare)."""
    from edgeprune.compare import CompareConfig, compare_within as judge, load_profile

    if output is not None:
        check_output(output, force=force, inputs=(profile,))
    record = judge(load_profile(profile), baseline_model, candidate_model, config or CompareConfig(),
                   path=str(profile))
    return _compare_result(record, output)


def _compare_result(record: dict, output: str | os.PathLike | None) -> CompareResult:
    result = CompareResult(record=record)
    if output is None:
        return result
    result.to_json(output)
    return CompareResult(record=record, paths=(Path(output),))


# --- bench ----------------------------------------------------------------------------------

def bench(suite: str | os.PathLike, *, out: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
          executor: str = "local", address: str | None = None, workers: int | None = None,
          force_mix: bool = False, progress: bool = True) -> BenchResult:
    """Run every cell of a suite YAML (cached, resumable) and write OUT/report/."""
    from edgeprune.bench.runner import RunOptions, run_suite
    from edgeprune.bench.suite import load_suite

    check_choice("executor", executor, BENCH_EXECUTORS)
    loaded = load_suite(suite)
    options = RunOptions(out=Path(out) if out else Path("runs") / loaded.name,
                         cache=Path(cache) if cache else None, executor=executor, address=address,
                         workers=workers, force_mix=force_mix, progress=progress)
    run = run_suite(loaded, options)
    report_dir = options.out / "report"
    return BenchResult(record={"schema": BenchResult.SCHEMA, "suite": loaded.name, "counts": dict(run.counts)},
                       counts=dict(run.counts), report_dir=report_dir)


# --- the stages' option schemas (what a bench suite's `args:` may name) ---------------------

STAGE_OPTIONS: dict[str, tuple[type, ...]] = {
    "train": (TrainOptions,),
    "prune": (PruneOptions,),
    "convert": (ConvertOptions,),
    "attack": (AttackOptions,),
    "evaluate": (EvaluateOptions, RobustnessOptions),
    "profile": (ProfileOptions,),
    "import": (ImportOptions,),  # not a bench stage; listed so the CLI is checked against it
}


# What each stage call takes beside its options (see the functions' keyword arguments).
STAGE_CALL_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("output", "force", "quiet"),
    "evaluate": ("output", "force", "quiet", "allow-unsafe"),
    "import": ("output", "force", "allow-unsafe"),
}


def stage_option_names(stage: str) -> tuple[str, ...]:
    """Flag-spelled names a stage takes: its options and its call's own (output, force, ...).
    The CLI command's long options carry the same names."""
    names: list[str] = []
    for cls in STAGE_OPTIONS[stage]:
        names += [n for n in option_names(cls) if n not in names]
    return tuple(names) + STAGE_CALL_NAMES.get(stage, CALL_NAMES)


