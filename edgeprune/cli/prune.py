"""`edgeprune prune`: TF-MOT unstructured / N:M pruning or NNCF filter pruning, fine-tuned."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from edgeprune.cli.common import (allow_unsafe_option, check_output, dataset_option, force_option,
                                  input_range_option, limit_options, quiet_option, seed_option, sidecar)
from edgeprune.errors import EdgepruneError

TFMOT_OPTIONS = ("sparsity", "schedule", "scope", "pattern", "frequency")
NNCF_OPTIONS = ("criterion", "target", "flops_target", "init", "steps", "prune_first_conv",
                "prune_downsample", "shrink")
DEFAULT_EPOCHS = 5


def _open_fraction(name: str, value: float | None) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise EdgepruneError(f"{name} must be in (0, 1), got {value}")


def _refuse_foreign_options(ctx: click.Context, method: str) -> None:
    """Options of the other method, given on the command line, are a mistake: say so."""
    foreign = NNCF_OPTIONS if method == "tfmot" else TFMOT_OPTIONS
    given = [name for name in foreign
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        other = "nncf-filter" if method == "tfmot" else "tfmot"
        raise EdgepruneError(f"{flags} apply to --method {other}, not --method {method}")


def _masked_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.masked{output.suffix}")


def _tfmot_config(sparsity, schedule, scope, pattern, frequency, epochs, batch_size, learning_rate, seed):
    from edgeprune.prune.tfmot import TfmotConfig, parse_pattern

    parsed = parse_pattern(pattern)
    if parsed is None and sparsity is None:
        sparsity = 0.5
    return TfmotConfig(sparsity=sparsity, schedule=schedule, scope=scope, pattern=parsed,
                       epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       frequency=frequency, seed=seed)


def _nncf_config(criterion, target, flops_target, init, steps, prune_first_conv, prune_downsample,
                 epochs, batch_size, learning_rate, seed):
    if target is not None and flops_target is not None:
        raise EdgepruneError("give either --target or --flops-target, not both")
    _open_fraction("--target", target)
    _open_fraction("--flops-target", flops_target)
    if not 0.0 <= init < 1.0:
        raise EdgepruneError(f"--init must be in [0, 1), got {init}")
    if steps is not None and steps < 1:
        raise EdgepruneError(f"--steps must be at least 1, got {steps}")
    if target is None and flops_target is None:
        target = 0.5
    try:
        from edgeprune.prune.nncf_filter import NNCFFilterConfig
    except ImportError as exc:
        raise EdgepruneError(f"--method nncf-filter needs NNCF's TensorFlow backend "
                             f"(pip install 'edgeprune[full]'): {exc}") from None
    try:
        return NNCFFilterConfig(criterion=criterion, target=target, flops_target=flops_target, init=init,
                                epochs=epochs, steps=steps, prune_first_conv=prune_first_conv,
                                prune_downsample_convs=prune_downsample, batch_size=batch_size,
                                learning_rate=learning_rate, seed=seed)
    except ValueError as exc:
        raise EdgepruneError(str(exc)) from None


def _nncf_filter(base, data, config, *, output: Path, shrinking: bool, quiet: bool):
    """Filter-prune with NNCF; with `shrinking`, remove the zeroed filters and check that the
    shrunk model predicts what the masked one does. Returns (output model, method record,
    target record, extra model records, [(model, path)] to save)."""
    import numpy as np

    from edgeprune.modelstats import model_stats
    from edgeprune.prune.nncf_filter import nncf_filter_prune
    from edgeprune.runtime import KerasPredictor

    masked, info = nncf_filter_prune(base, data, config, progress=not quiet)
    target_record = {"filter_level": config.target, "flops_target": config.flops_target,
                     "criterion": config.criterion, "schedule": "exponential", "init": config.init}
    if not shrinking:
        return masked, info, target_record, None, [(masked, output)]
    from edgeprune.prune.shrink import shrink_model

    shrunk, shrink_info = shrink_model(masked)
    x_test, y_test = data.split("test")
    masked_logits = KerasPredictor(masked).predict(x_test)
    shrunk_logits = KerasPredictor(shrunk).predict(x_test)
    shrink_info = {**shrink_info,
                   "max_abs_logit_diff_vs_masked": float(np.max(np.abs(masked_logits - shrunk_logits)))}
    masked_stats = model_stats(masked)
    extra_models = {"masked": {
        "path": str(_masked_path(output)),
        "params": masked_stats["params"], "params_nonzero": masked_stats["params_nonzero"],
        "macs": masked_stats["macs"], "sparsity": round(masked_stats["sparsity"], 6),
        "filters_zero": sum(row["filters_zero"] for row in masked_stats["layers"]),
        "test_accuracy": float((masked_logits.argmax(axis=1) == y_test).mean()),
    }}
    return (shrunk, {**info, "shrink": shrink_info}, target_record, extra_models,
            [(masked, _masked_path(output)), (shrunk, output)])


def _check_compatible(model, data, path) -> None:
    input_shape = tuple(model.input_shape[1:])
    if input_shape != tuple(data.input_shape):
        raise EdgepruneError(f"{path}: model takes inputs {input_shape}, dataset {data.name!r} has "
                             f"{tuple(data.input_shape)}")
    if int(model.output_shape[-1]) != data.num_classes:
        raise EdgepruneError(f"{path}: model has {model.output_shape[-1]} outputs, dataset "
                             f"{data.name!r} has {data.num_classes} classes")


@contextlib.contextmanager
def _tf_warnings_silenced():
    """Keras' h5 writer warns that an uncompiled model has no compiled metrics: noise here."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _write_outputs(models: list[tuple], report: dict, output: Path, started: float) -> None:
    """Save the models, then the report (which records the saved sizes); on any failure,
    Ctrl-C included, remove what this run wrote, so a prune leaves its full set or nothing."""
    import time

    from edgeprune.info import gzip_bytes
    from edgeprune.io import atomic_write_text, write_json
    from edgeprune.modelio import save_keras_model
    from edgeprune.prune.report import layers_csv, markdown

    written: list[Path] = []
    try:
        for model, path, metadata in models:
            with _tf_warnings_silenced():
                save_keras_model(model, path, metadata=metadata)
            written.append(path)
        report["after"]["file_bytes"] = output.stat().st_size
        report["after"]["gzip_bytes"] = gzip_bytes(output)
        report["seconds"] = round(time.perf_counter() - started, 2)
        for path, text in ((sidecar(output, ".md"), markdown(report)),
                           (sidecar(output, ".csv"), layers_csv(report))):
            atomic_write_text(path, text)
            written.append(path)
        write_json(sidecar(output), report)
        written.append(sidecar(output))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _print_summary(report: dict, output: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgeprune.prune.report import summary_rows

    table = Table(title=f"{report['method']} -> {output.name}")
    for column in ("", "before", "after"):
        table.add_column(column, justify="left" if not column else "right")
    for row in summary_rows(report):
        table.add_row(*row)
    Console().print(table)


@click.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--method", "-m", type=click.Choice(["tfmot", "nncf-filter"]), required=True,
              help="tfmot: unstructured magnitude / N:M sparsity (same shapes, real zeros). "
                   "nncf-filter: NNCF filter pruning, physically shrunk by default.")
@dataset_option()
@limit_options
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Pruned model (.h5); OUT.json (report), OUT.md and OUT.csv go beside it.")
@click.option("--epochs", type=click.IntRange(min=0), default=None,
              help=f"Fine-tuning epochs [default: {DEFAULT_EPOCHS}]. tfmot: 0 prunes one-shot by "
                   "magnitude without fine-tuning.")
@click.option("--lr", "learning_rate", type=float, default=0.01, show_default=True,
              help="Fine-tuning SGD learning rate (momentum 0.9).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--sparsity", type=float, default=None,
              help="[tfmot] Fraction of weights set to zero, 0 < s < 1 [default: 0.5].")
@click.option("--schedule", type=click.Choice(["constant", "polynomial"]), default="polynomial",
              show_default=True,
              help="[tfmot] polynomial ramps 0 -> sparsity over the first 70% of the fine-tuning "
                   "steps; constant prunes to the target at step 1. Mask-update steps are derived "
                   "from the real number of steps, so the target is reached.")
@click.option("--scope", type=click.Choice(["local", "global", "lamp"]), default="local",
              show_default=True,
              help="[tfmot] local: the same sparsity in every Conv2D/Dense layer; global: one "
                   "magnitude threshold over all layers; lamp: one threshold over LAMP scores "
                   "(Lee et al. 2021), each layer keeps its largest weights.")
@click.option("--pattern", default=None, metavar="N:M",
              help="[tfmot] N:M sparsity: keep N of every M consecutive weights along the input "
                   "channels (2:4 is the pattern sparse tensor cores accelerate). Replaces --sparsity.")
@click.option("--frequency", type=click.IntRange(min=1), default=None,
              help="[tfmot] Steps between mask updates [default: derived from the fine-tune length].")
@click.option("--criterion", type=click.Choice(["l1", "l2", "gm"]), default="l2", show_default=True,
              help="[nncf-filter] Filter importance: L1 / L2 norm or geometric median.")
@click.option("--target", type=float, default=None,
              help="[nncf-filter] Fraction of filters pruned, 0 < t < 1 [default: 0.5].")
@click.option("--flops-target", type=float, default=None,
              help="[nncf-filter] Fraction of FLOPs removed instead of --target.")
@click.option("--init", type=float, default=0.1, show_default=True,
              help="[nncf-filter] Pruning level at the start of the exponential schedule.")
@click.option("--steps", type=int, default=None,
              help="[nncf-filter] NNCF pruning_steps (epochs to reach the target) [default: "
                   "derived from --epochs so the target is reached].")
@click.option("--prune-first-conv/--no-prune-first-conv", default=True, show_default=True,
              help="[nncf-filter] Also prune the first convolution (NNCF leaves it by default).")
@click.option("--prune-downsample/--no-prune-downsample", default=True, show_default=True,
              help="[nncf-filter] Also prune stride-2 convolutions (NNCF leaves them by default).")
@click.option("--shrink/--no-shrink", default=True, show_default=True,
              help="[nncf-filter] Physically remove zeroed filters; the masked model is kept as "
                   "OUT.masked.h5.")
@seed_option()
@input_range_option
@allow_unsafe_option
@force_option
@quiet_option
@click.pass_context
def command(ctx, model, method, dataset, limit_train, limit_test, output, epochs, learning_rate,
            batch_size, sparsity, schedule, scope, pattern, frequency, criterion, target, flops_target,
            init, steps, prune_first_conv, prune_downsample, shrink, seed, input_range, allow_unsafe, force, quiet):
    """Prune MODEL (.h5), fine-tune it on --dataset, and write the pruned model with a report.

    \b
    The report (OUT.json, schema edgeprune.prune/1; OUT.md; OUT.csv) holds per-layer weights,
    zeros, sparsity and filters kept, whole-model params and MACs before/after, clean test
    accuracy before/after, target vs reached, schedule, seed, time and versions.

    \b
    Examples:
      edgeprune prune base.h5 -m tfmot --sparsity 0.8 --scope lamp -d digits -o lamp80.h5
      edgeprune prune base.h5 -m tfmot --pattern 2:4 --epochs 2 -d digits -o nm24.h5
      edgeprune prune base.h5 -m nncf-filter --criterion gm --target 0.5 -d npz:c10.npz -o f50.h5
    """
    import time

    started = time.perf_counter()
    _refuse_foreign_options(ctx, method)
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    if learning_rate <= 0:
        raise EdgepruneError(f"--lr must be > 0, got {learning_rate}")
    _open_fraction("--sparsity", sparsity)
    if method == "tfmot":
        config = _tfmot_config(sparsity, schedule, scope, pattern, frequency, epochs, batch_size,
                               learning_rate, seed)
    else:
        if epochs < 1:
            raise EdgepruneError("--method nncf-filter fine-tunes while it prunes: --epochs must be >= 1")
        config = _nncf_config(criterion, target, flops_target, init, steps, prune_first_conv,
                              prune_downsample, epochs, batch_size, learning_rate, seed)
    output = check_output(output, force=force, suffixes=(".h5",))
    shrinking = method == "nncf-filter" and shrink
    outputs = [output, sidecar(output), sidecar(output, ".md"), sidecar(output, ".csv")]
    if shrinking:
        outputs.append(_masked_path(output))
    for path in outputs[1:]:
        check_output(path, force=force)
    source = Path(model)
    if source.resolve() in {path.resolve() for path in outputs}:
        raise EdgepruneError(f"{source}: output would overwrite the input model")

    from dataclasses import asdict

    from edgeprune.data import load_dataset
    from edgeprune.info import gzip_bytes
    from edgeprune.io import sha256_file, versions
    from edgeprune.modelio import load_keras_model, read_metadata
    from edgeprune.modelstats import model_stats
    from edgeprune.prune.report import build_report
    from edgeprune.train import accuracy

    base = load_keras_model(source, allow_unsafe=allow_unsafe)
    base_meta = read_metadata(source)
    data = load_dataset(dataset, limit_train=limit_train, limit_test=limit_test, seed=seed)
    _check_compatible(base, data, source)
    from edgeprune.inputrange import announce, dataset_for_model, resolve_input_range

    resolved_range = resolve_input_range(input_range, metadata=base_meta, model=base)
    announce(resolved_range)
    data = dataset_for_model(data, resolved_range.input_range)  # fine-tuned on what it takes
    if not resolved_range.input_range.is_unit:
        base_meta = {**base_meta, "input_range": resolved_range.input_range.as_dict()}
    x_test, y_test = data.split("test")
    base_stats = model_stats(base)
    accuracy_before = accuracy(base, x_test, y_test)

    extra_models = None
    if method == "tfmot":
        from edgeprune.prune.tfmot import tfmot_prune

        pruned, info = tfmot_prune(base, data, config, progress=not quiet)
        targets = info["layer_targets"]
        target_record = {"sparsity": config.target, "scope": info["scope"], "pattern": info["pattern"],
                         "schedule": info["schedule"]["kind"]}
        to_save = [(pruned, output)]
    else:
        pruned, info, target_record, extra_models, to_save = _nncf_filter(
            base, data, config, output=output, shrinking=shrinking, quiet=quiet)
        targets = None

    pruned_stats = model_stats(pruned)
    accuracy_after = accuracy(pruned, x_test, y_test)
    source_sha = sha256_file(source)
    pruning_meta = {"method": method, **{k: v for k, v in target_record.items() if not isinstance(v, dict)},
                    "reached_sparsity": round(pruned_stats["sparsity"], 6), "seed": seed,
                    "source_sha256": source_sha, "report": sidecar(output).name}
    if method == "nncf-filter":
        pruning_meta["shrunk"] = shrinking
    metadata = {**base_meta, "pruning": pruning_meta}
    masked_meta = {**metadata, "pruning": {**pruning_meta, "shrunk": False}}
    models = [(m, p, masked_meta if shrinking and p != output else metadata) for m, p in to_save]

    config_record = asdict(config)
    report = build_report(
        method=method,
        source={"path": str(source), "sha256": source_sha, "metadata": base_meta},
        output={"path": str(output), **({"masked_path": str(_masked_path(output))} if shrinking else {})},
        dataset={"spec": dataset, "name": data.name, "fingerprint": data.fingerprint("test"),
                 "train_samples": int(len(data.y_train)), "test_samples": int(len(y_test))},
        base_stats=base_stats, pruned_stats=pruned_stats, accuracy_before=accuracy_before,
        accuracy_after=accuracy_after, target=target_record,
        method_info={**info, "config": config_record}, seed=seed, seconds=0.0, versions=versions(),
        targets=targets, extra_models=extra_models,
        files={"base_bytes": source.stat().st_size, "base_gzip_bytes": gzip_bytes(source)},
    )
    _write_outputs(models, report, output, started)
    _print_summary(report, output)
    reached = report["reached"]
    if method == "tfmot":
        what = f"weight sparsity {reached['prunable_sparsity']:.2%}"
    else:
        what = (f"filters removed {reached['filters_removed_fraction']:.1%}, params x{reached['params_ratio']:.3f}, "
                f"MACs x{reached['macs_ratio']:.3f}" + ("" if shrinking else " (masked, not shrunk)"))
    click.echo(f"{method}: {what}, accuracy {accuracy_before:.4f} -> {accuracy_after:.4f} "
               f"in {report['seconds']:.0f} s -> {output}")
