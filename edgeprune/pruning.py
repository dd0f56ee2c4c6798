"""The prune stage as a library call: options, fine-tune, (shrink), write the output set.

`prune(model, options, output)` loads the model and the dataset, prunes with TF-MOT or NNCF,
measures before/after, and writes the pruned .h5 (and OUT.masked.h5 when a filter-pruned
model is shrunk) with its report (OUT.json, OUT.md, OUT.csv): all of them or, on any failure
(Ctrl-C included), none.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeprune.adversarial import AdversarialFields
from edgeprune.errors import EdgepruneError
from edgeprune.folders import FolderOptions
from edgeprune.integrity import check_outputs, dataset_files
from edgeprune.io import check_output, sidecar
from edgeprune.options import flag
from edgeprune.results import PruneResult
from edgeprune.vocab import (INPUT_RANGES, NNCF_CRITERIA, PRUNE_METHODS, TFMOT_SCHEDULES, TFMOT_SCOPES, check_choice,
                             check_fit)

DEFAULT_EPOCHS = 5
# Options that belong to one method; given to the other, they are a mistake.
TFMOT_OPTIONS = ("sparsity", "schedule", "scope", "pattern", "frequency")
NNCF_OPTIONS = ("criterion", "target", "flops_target", "init", "steps", "prune_first_conv",
                "prune_downsample", "shrink")
HYDRA_OPTIONS = ("sparsity", "scope", "score_epochs")
METHOD_OPTIONS = {"tfmot": TFMOT_OPTIONS, "nncf-filter": NNCF_OPTIONS, "hydra": HYDRA_OPTIONS}


def _open_fraction(name: str, value: float | None) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise EdgepruneError(f"{name} must be in (0, 1), got {value}")


@dataclass(frozen=True)
class PruneOptions(FolderOptions, AdversarialFields):
    """How to prune and fine-tune. Method-specific options are None unless given (their
    defaults apply then); giving one of the other method's is refused."""

    method: str
    dataset: str = "digits"
    limit_train: int | None = None
    limit_test: int | None = flag(None, name="limit")
    epochs: int | None = None  # None: DEFAULT_EPOCHS
    learning_rate: float = flag(0.01, name="lr")
    batch_size: int = 128
    seed: int = 0
    input_range: str | None = None  # what the model takes (INPUT_RANGES); None: recorded, else detected, else 0,1
    # tfmot
    sparsity: float | None = None  # default 0.5 unless a pattern is given
    schedule: str | None = None  # default polynomial
    scope: str | None = None  # default local
    pattern: str | None = None  # N:M
    frequency: int | None = None
    # nncf-filter
    criterion: str | None = None  # default l2
    target: float | None = None  # default 0.5 unless flops_target
    flops_target: float | None = None
    init: float | None = None  # default 0.1
    steps: int | None = None
    prune_first_conv: bool | None = flag(None, off="no-prune-first-conv")  # default True
    prune_downsample: bool | None = flag(None, off="no-prune-downsample")  # default True
    shrink: bool | None = flag(None, off="no-shrink")  # default True
    # hydra (also sparsity, scope: local | global)
    score_epochs: int | None = None  # default 2

    def __post_init__(self) -> None:
        check_choice("method", self.method, PRUNE_METHODS)
        own = METHOD_OPTIONS[self.method]
        given = [name for names in METHOD_OPTIONS.values() for name in names
                 if name not in own and getattr(self, name) is not None]
        if given:
            given = list(dict.fromkeys(given))
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            other = " or ".join(m for m, names in METHOD_OPTIONS.items() if m != self.method and set(given) & set(names))
            raise EdgepruneError(f"{flags} apply to --method {other}, not --method {self.method}")
        if self.epochs is not None and self.epochs < 0:
            raise EdgepruneError(f"--epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise EdgepruneError(f"--batch-size must be >= 1, got {self.batch_size}")
        check_choice("schedule", self.schedule, TFMOT_SCHEDULES)
        check_choice("scope", self.scope, TFMOT_SCOPES)
        check_choice("criterion", self.criterion, NNCF_CRITERIA)
        check_choice("input-range", self.input_range, INPUT_RANGES)
        self.adversarial_recipe()  # validates --adversarial / --adv-*
        super().__post_init__()

    @property
    def fine_tune_epochs(self) -> int:
        return DEFAULT_EPOCHS if self.epochs is None else self.epochs

    @property
    def shrinking(self) -> bool:
        return self.method == "nncf-filter" and self.shrink is not False

    def method_config(self) -> Any:
        """The method's own validated config (TfmotConfig or NNCFFilterConfig)."""
        if self.learning_rate <= 0:
            raise EdgepruneError(f"--lr must be > 0, got {self.learning_rate}")
        _open_fraction("--sparsity", self.sparsity)
        epochs = self.fine_tune_epochs
        if self.method == "tfmot":
            from edgeprune.prune.tfmot import TfmotConfig, parse_pattern

            parsed = parse_pattern(self.pattern)
            sparsity = 0.5 if parsed is None and self.sparsity is None else self.sparsity
            return TfmotConfig(sparsity=sparsity, schedule=self.schedule or "polynomial",
                               scope=self.scope or "local", pattern=parsed, epochs=epochs,
                               batch_size=self.batch_size, learning_rate=self.learning_rate,
                               frequency=self.frequency, seed=self.seed,
                               adversarial=self.adversarial_recipe())
        if self.method == "hydra":
            from edgeprune.prune.hydra import HydraConfig

            return HydraConfig(sparsity=0.5 if self.sparsity is None else self.sparsity, scope=self.scope or "local",
                               score_epochs=2 if self.score_epochs is None else self.score_epochs, epochs=epochs,
                               batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed,
                               adversarial=self.adversarial_recipe())
        if epochs < 1:
            raise EdgepruneError("--method nncf-filter fine-tunes while it prunes: --epochs must be >= 1")
        target, flops_target = self.target, self.flops_target
        if target is not None and flops_target is not None:
            raise EdgepruneError("give either --target or --flops-target, not both")
        _open_fraction("--target", target)
        _open_fraction("--flops-target", flops_target)
        init = 0.1 if self.init is None else self.init
        if not 0.0 <= init < 1.0:
            raise EdgepruneError(f"--init must be in [0, 1), got {init}")
        if self.steps is not None and self.steps < 1:
            raise EdgepruneError(f"--steps must be at least 1, got {self.steps}")
        if target is None and flops_target is None:
            target = 0.5
        try:
            from edgeprune.prune.nncf_filter import NNCFFilterConfig
        except ImportError as exc:
            raise EdgepruneError(f"--method nncf-filter needs NNCF's TensorFlow backend "
                                 f"(pip install 'edgeprune[full]'): {exc}") from None
        try:
            return NNCFFilterConfig(
                criterion=self.criterion or "l2", target=target, flops_target=flops_target, init=init,
                epochs=epochs, steps=self.steps, prune_first_conv=self.prune_first_conv is not False,
                prune_downsample_convs=self.prune_downsample is not False, batch_size=self.batch_size,
                learning_rate=self.learning_rate, seed=self.seed, adversarial=self.adversarial_recipe())
        except ValueError as exc:
            raise EdgepruneError(str(exc)) from None


def masked_path(output: Path) -> Path:
    """Where a shrunk filter-pruned model's masked (unshrunk) version is kept."""
    return output.with_name(f"{output.stem}.masked{output.suffix}")


def output_paths(output: Path, options: PruneOptions) -> list[Path]:
    """Every file a prune writes: the model, OUT.json, OUT.md, OUT.csv (and OUT.masked.h5)."""
    paths = [output, sidecar(output), sidecar(output, ".md"), sidecar(output, ".csv")]
    return paths + [masked_path(output)] if options.shrinking else paths


def _nncf_filter(base: Any, data: Any, config: Any, *, output: Path, shrinking: bool,
                 progress: bool) -> tuple[Any, dict, dict, dict | None, list[tuple[Any, Path]]]:
    """Filter-prune with NNCF; with `shrinking`, remove the zeroed filters and check that the
    shrunk model predicts what the masked one does. Returns (output model, method record,
    target record, extra model records, [(model, path)] to save)."""
    import numpy as np

    from edgeprune.modelstats import model_stats
    from edgeprune.prune.nncf_filter import nncf_filter_prune
    from edgeprune.runtime import KerasPredictor

    masked, info = nncf_filter_prune(base, data, config, progress=progress)
    target_record = {"filter_level": config.target, "flops_target": config.flops_target,
                     "criterion": config.criterion, "schedule": "exponential", "init": config.init}
    if not shrinking:
        return masked, info, target_record, None, [(masked, output)]
    from edgeprune.prune.shrink import shrink_model

    shrunk, shrink_info = shrink_model(masked)
    max_diff, max_logit, masked_correct, agree, seen = 0.0, 0.0, 0, 0, 0
    masked_predictor, shrunk_predictor = KerasPredictor(masked), KerasPredictor(shrunk)
    for x_test, y_test in data.batches("test"):  # streamed: a folder's test split is never whole in memory
        masked_logits = masked_predictor.predict(x_test)
        shrunk_logits = shrunk_predictor.predict(x_test)
        max_diff = max(max_diff, float(np.max(np.abs(masked_logits - shrunk_logits))))
        max_logit = max(max_logit, float(np.max(np.abs(masked_logits))))
        masked_correct += int(np.sum(masked_logits.argmax(axis=1) == y_test))
        agree += int(np.sum(masked_logits.argmax(axis=1) == shrunk_logits.argmax(axis=1)))
        seen += len(y_test)
    # Relative to the largest logit too: float32 rounding on a model with 1e5-sized logits (fresh
    # weights fed 0..255 pixels) gives absolute differences of 0.1 that mean nothing.
    shrink_info = {**shrink_info, "max_abs_logit_diff_vs_masked": max_diff,
                   "max_rel_logit_diff_vs_masked": max_diff / max(max_logit, 1e-12),
                   "argmax_agreement_vs_masked": agree / max(seen, 1)}
    masked_stats = model_stats(masked)
    extra_models = {"masked": {
        "path": str(masked_path(output)),
        "params": masked_stats["params"], "params_nonzero": masked_stats["params_nonzero"],
        "macs": masked_stats["macs"], "sparsity": round(masked_stats["sparsity"], 6),
        "filters_zero": sum(row["filters_zero"] for row in masked_stats["layers"]),
        "test_accuracy": masked_correct / max(seen, 1),
    }}
    return (shrunk, {**info, "shrink": shrink_info}, target_record, extra_models,
            [(masked, masked_path(output)), (shrunk, output)])


@contextlib.contextmanager
def _tf_warnings_silenced() -> Iterator[None]:
    """Keras' h5 writer warns that an uncompiled model has no compiled metrics: noise here."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _write_outputs(models: list[tuple[Any, Path, dict]], report: dict, output: Path,
                   started: float) -> list[Path]:
    """Save the models, then the report (which records the saved sizes); on any failure,
    Ctrl-C included, remove what this run wrote, so a prune leaves its full set or nothing."""
    from edgeprune.info import gzip_bytes
    from edgeprune.modelio import save_keras_model

    written: list[Path] = []
    try:
        for model, path, metadata in models:
            with _tf_warnings_silenced():
                save_keras_model(model, path, metadata=metadata)
            written.append(path)
        report["after"]["file_bytes"] = output.stat().st_size
        report["after"]["gzip_bytes"] = gzip_bytes(output)
        report["seconds"] = round(time.perf_counter() - started, 2)
        result = PruneResult(record=report)
        for path, write in ((sidecar(output, ".md"), result.to_markdown), (sidecar(output, ".csv"), result.to_csv),
                            (sidecar(output), result.to_json)):
            write(path)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def prune(model: str | os.PathLike, options: PruneOptions, output: str | os.PathLike, *,
          force: bool = False, allow_unsafe: bool = False, progress: bool = True) -> PruneResult:
    """Prune the Keras model at `model`, fine-tune it on `options.dataset`, and write the
    pruned model with its report (schema edgeprune.prune/1) beside `output`."""
    started = time.perf_counter()
    config = options.method_config()
    inputs = [model, *dataset_files(options.dataset)]
    output = check_output(output, force=force, suffixes=(".h5",), inputs=inputs)
    check_outputs(output_paths(output, options)[1:], force=force, inputs=inputs)
    source = Path(model)

    from edgeprune.data import load_dataset
    from edgeprune.info import gzip_bytes
    from edgeprune.inputrange import announce, dataset_for_model, resolve_input_range
    from edgeprune.io import sha256_file, versions
    from edgeprune.modelio import load_keras_model, read_metadata
    from edgeprune.modelstats import model_stats
    from edgeprune.prune.report import build_report
    from edgeprune.train import dataset_accuracy

    base = load_keras_model(source, allow_unsafe=allow_unsafe)
    base_meta = read_metadata(source)
    data = load_dataset(options.dataset, limit_train=options.limit_train, limit_test=options.limit_test,
                        seed=options.seed, folder=options, input_shape=base.input_shape[1:],
                        class_names=base_meta.get("class_names"))
    check_fit(data, input_shape=base.input_shape[1:], num_classes=int(base.output_shape[-1]), model=str(source))
    resolved_range = resolve_input_range(options.input_range, metadata=base_meta, model=base)
    announce(resolved_range)
    data = dataset_for_model(data, resolved_range.input_range)  # fine-tuned and measured on what it takes
    if not resolved_range.input_range.is_unit:  # recorded in the pruned model, so later commands feed it so
        base_meta = {**base_meta, "input_range": resolved_range.input_range.as_dict()}
    base_stats = model_stats(base)
    accuracy_before = dataset_accuracy(base, data)

    shrinking = options.shrinking
    extra_models = None
    targets = None
    if options.method == "tfmot":
        from edgeprune.prune.tfmot import tfmot_prune

        pruned, info = tfmot_prune(base, data, config, progress=progress)
        targets = info["layer_targets"]
        target_record = {"sparsity": config.target, "scope": info["scope"], "pattern": info["pattern"],
                         "schedule": info["schedule"]["kind"]}
        to_save = [(pruned, output)]
    elif options.method == "hydra":
        from edgeprune.prune.hydra import hydra_prune

        pruned, info = hydra_prune(base, data, config, progress=progress)
        targets = info["layer_targets"]
        target_record = {"sparsity": config.sparsity, "scope": config.scope, "score_epochs": config.score_epochs}
        to_save = [(pruned, output)]
    else:
        pruned, info, target_record, extra_models, to_save = _nncf_filter(
            base, data, config, output=output, shrinking=shrinking, progress=progress)

    pruned_stats = model_stats(pruned)
    accuracy_after = dataset_accuracy(pruned, data)
    source_sha = sha256_file(source)
    pruning_meta = {"method": options.method,
                    **{k: v for k, v in target_record.items() if not isinstance(v, dict)},
                    "reached_sparsity": round(pruned_stats["sparsity"], 6), "seed": options.seed,
                    "source_sha256": source_sha, "report": sidecar(output).name}
    if options.method == "nncf-filter":
        pruning_meta["shrunk"] = shrinking
    metadata = {**base_meta, "pruning": pruning_meta}
    masked_meta = {**metadata, "pruning": {**pruning_meta, "shrunk": False}}
    models = [(m, p, masked_meta if shrinking and p != output else metadata) for m, p in to_save]

    report = build_report(
        method=options.method,
        source={"path": str(source), "sha256": source_sha, "metadata": base_meta},
        output={"path": str(output), **({"masked_path": str(masked_path(output))} if shrinking else {})},
        dataset={"spec": options.dataset, "name": data.name, "fingerprint": data.fingerprint("test"),
                 "train_samples": int(len(data.y_train)), "test_samples": int(len(data.y_test)), **data.record()},
        base_stats=base_stats, pruned_stats=pruned_stats, accuracy_before=accuracy_before,
        accuracy_after=accuracy_after, target=target_record,
        method_info={**info, "config": asdict(config)}, seed=options.seed, seconds=0.0, versions=versions(),
        targets=targets, extra_models=extra_models,
        files={"base_bytes": source.stat().st_size, "base_gzip_bytes": gzip_bytes(source)},
    )
    report["input_range"] = resolved_range.record()
    from edgeprune.prune.taxonomy import taxonomy_of_prune

    report["taxonomy"] = taxonomy_of_prune(options, base_meta)
    written = _write_outputs(models, report, output, started)
    return PruneResult(record=report, paths=(output, *[p for p in written if p != output]))
