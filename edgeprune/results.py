"""Typed results of the stages: each wraps the JSON record its stage writes (the file format is
unchanged) and writes itself as JSON, CSV and markdown. The bench report reads every cell back
through these types (`XResult.load(path)`), never by string keys into the raw layouts.

Light on purpose: no TensorFlow here; the report renderers are imported where they are used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from edgeprune.errors import EdgepruneError
from edgeprune.tables import csv_table, markdown_table

R = TypeVar("R", bound="Result")


def _scalars(record: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten nested scalars to (dotted key, value) pairs; lists are left out."""
    pairs: list[tuple[str, Any]] = []
    for key, value in record.items():
        if isinstance(value, Mapping):
            pairs += _scalars(value, f"{prefix}{key}.")
        elif isinstance(value, (str, int, float, bool)) or value is None:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _get(record: Mapping[str, Any], *path: str) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True)
class Result:
    """A stage's report (`record`, what its JSON file holds) and the files the stage wrote."""

    record: Mapping[str, Any]
    paths: tuple[Path, ...] = ()
    SCHEMA: ClassVar[str] = ""

    @classmethod
    def load(cls: type[R], path: str | os.PathLike) -> R:
        """Read a stage's JSON report back as this result type (its schema is checked)."""
        from edgeprune.io import read_json

        record = read_json(path)
        if not isinstance(record, dict):
            raise EdgepruneError(f"{path}: not a JSON report")
        schema = str(record.get("schema", ""))
        if cls.SCHEMA and schema and not schema.startswith(cls.SCHEMA.rsplit("/", 1)[0]):
            raise EdgepruneError(f"{path}: schema {schema!r} is not a {cls.SCHEMA} report")
        return cls(record=record, paths=(Path(path),))

    @property
    def output(self) -> Path | None:
        """The first file the stage wrote (a model for train/import), if any."""
        return self.paths[0] if self.paths else None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.record)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The record as JSON text; with `path`, also written there (atomically)."""
        from edgeprune.io import write_json

        if path is not None:
            write_json(path, self.record)
        return json.dumps(self.record, indent=2, default=str)

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        return self._write(self._csv(), path)

    def to_markdown(self, path: str | os.PathLike | None = None) -> str:
        return self._write(self._markdown(), path)

    @staticmethod
    def _write(text: str, path: str | os.PathLike | None) -> str:
        if path is not None:
            from edgeprune.io import atomic_write_text

            atomic_write_text(path, text)
        return text

    # Defaults: one row of the record's scalars. Stages with real tables override these.
    def _csv(self) -> str:
        pairs = _scalars(self.record)
        return csv_table([k for k, _ in pairs], [[("" if v is None else v) for _, v in pairs]])

    def _markdown(self) -> str:
        title = f"# {type(self).__name__.removesuffix('Result')} report\n\n"
        return title + markdown_table(["field", "value"], ([k, "-" if v is None else v]
                                                           for k, v in _scalars(self.record))) + "\n"


@dataclass(frozen=True)
class ModelFacts:
    """Whole-model counts of one model, as a prune report records before/after."""

    params: int | None = None
    params_nonzero: int | None = None
    sparsity: float | None = None
    macs: int | None = None
    test_accuracy: float | None = None
    file_bytes: int | None = None
    gzip_bytes: int | None = None

    @classmethod
    def of(cls, record: Any) -> ModelFacts:
        record = record if isinstance(record, Mapping) else {}
        return cls(**{k: record.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TrainResult(Result):
    SCHEMA: ClassVar[str] = "edgeprune.train/1"

    @property
    def test_accuracy(self) -> float | None:
        return self.record.get("test_accuracy")

    @property
    def params(self) -> int | None:
        return self.record.get("params")

    @property
    def arch(self) -> str | None:
        return self.record.get("arch")


@dataclass(frozen=True)
class PruneResult(Result):
    SCHEMA: ClassVar[str] = "edgeprune.prune/1"

    @property
    def method(self) -> str | None:
        return self.record.get("method")

    @property
    def before(self) -> ModelFacts:
        return ModelFacts.of(self.record.get("before"))

    @property
    def after(self) -> ModelFacts:
        return ModelFacts.of(self.record.get("after"))

    @property
    def reached(self) -> Mapping[str, Any]:
        return self.record.get("reached") or {}

    def _csv(self) -> str:
        from edgeprune.prune.report import layers_csv

        return layers_csv(self.record)

    def _markdown(self) -> str:
        from edgeprune.prune.report import markdown

        return markdown(self.record)


@dataclass(frozen=True)
class ConvertResult(Result):
    SCHEMA: ClassVar[str] = "edgeprune.convert/1"

    @property
    def params(self) -> int | None:
        return _get(self.record, "model", "params")

    @property
    def weight_sparsity(self) -> float | None:
        return _get(self.record, "model", "weight_sparsity")

    @property
    def verified(self) -> bool:
        return not _get(self.record, "verification", "skipped")

    @property
    def agreement(self) -> float | None:
        return _get(self.record, "verification", "agreement")

    @property
    def converted_accuracy(self) -> float | None:
        return _get(self.record, "verification", "converted_accuracy")

    @property
    def verified_at(self) -> str | None:
        """The inference precision the converted model ran at during verification (read back)."""
        return _get(self.record, "verification", "inference_precision")

    @property
    def output_bytes(self) -> int | None:
        return _get(self.record, "sizes", "output_bytes")


@dataclass(frozen=True)
class ImportResult(Result):
    """`edgeprune import`: a Keras 3 / foreign Keras model written as an edgeprune Keras 2 .h5."""

    SCHEMA: ClassVar[str] = "edgeprune.import/1"

    @property
    def source_format(self) -> str | None:
        return self.record.get("source_format")

    @property
    def input_range(self) -> Mapping[str, Any]:
        """{low, high, label, source (declared/recorded/detected/default), reason}."""
        return self.record.get("input_range") or {}


@dataclass(frozen=True)
class TransferSetResult(Result):
    """`attack`: a transfer set (NAME.npz) and its provenance record (NAME.json)."""

    SCHEMA: ClassVar[str] = "edgeprune.transferset/1"

    @property
    def eps(self) -> float | None:
        return _get(self.record, "attack", "eps")

    @property
    def clean_accuracy(self) -> float | None:
        return _get(self.record, "source_metrics", "clean_accuracy")

    @property
    def adversarial_accuracy(self) -> float | None:
        return _get(self.record, "source_metrics", "adversarial_accuracy")

    @property
    def success_rate(self) -> float | None:
        return _get(self.record, "source_metrics", "success_rate")

    @property
    def images(self) -> int | None:
        return _get(self.record, "dataset", "images")


@dataclass(frozen=True)
class SetAccuracy:
    """One row of an evaluation of one model: a set (`clean` or ATTACK@SURROGATE)."""

    set: str
    accuracy: float | None
    samples: int | None


@dataclass(frozen=True)
class EvaluateResult(Result):
    SCHEMA: ClassVar[str] = "edgeprune.evaluate/1"

    def rows(self, model: str | None = None) -> list[SetAccuracy]:
        """Accuracy per set of `model` (default: the first model evaluated)."""
        images = self.record.get("images") or {}
        out = []
        for row, by_model in (self.record.get("accuracy") or {}).items():
            value = by_model.get(model) if model is not None else next(iter(by_model.values()), None)
            out.append(SetAccuracy(set=row, accuracy=value, samples=images.get(row)))
        return out

    def runs_at(self) -> dict[str, str | None]:
        """How each model's runtime computed (read back): label -> 'bf16', 'f32 xnnpack', ..."""
        return {m.get("label"): m.get("runs_at") for m in self.record.get("models") or []}

    def _csv(self) -> str:
        from edgeprune.evaluate import to_csv

        return to_csv(dict(self.record))

    def _markdown(self) -> str:
        from edgeprune.evaluate import to_markdown

        return to_markdown(dict(self.record))


@dataclass(frozen=True)
class RobustnessSummary:
    """One model's robustness at one eps, whichever method measured it."""

    eps: float | None
    clean_accuracy: float | None
    robust_accuracy: float | None
    samples: int | None
    median_norm: float | None = None
    stages: Mapping[str, float] | None = None
    curve: Mapping[str, Any] | None = None


def _eps_value(value: Any) -> float:
    text = str(value).split(",")[0]
    if "/" in text:
        top, bottom = text.split("/", 1)
        return float(top) / float(bottom)
    return float(text)


@dataclass(frozen=True)
class RobustnessResult(Result):
    """AutoAttack robust accuracy (`kind` "autoattack") or FMN robustness curves ("curves")."""

    SCHEMA: ClassVar[str] = ""

    @property
    def kind(self) -> str:
        return "autoattack" if "autoattack" in str(self.record.get("schema", "")) else "curves"

    def summary(self, eps: Any = None) -> RobustnessSummary:
        """The first model's figures; for curves, at `eps` (text like 8/255 or a number) or else
        at the largest eps the report tabulates."""
        model = (self.record.get("models") or [{}])[0]
        if self.kind == "autoattack":
            return RobustnessSummary(
                eps=_get(self.record, "config", "eps"), clean_accuracy=model.get("clean_accuracy"),
                robust_accuracy=model.get("robust_accuracy"), samples=model.get("images"),
                stages={s["name"]: s["robust_accuracy"] for s in model.get("stages", [])})
        at = model.get("robust_accuracy_at") or {}
        eps_key = next((k for k in at if eps is not None and abs(float(k) - _eps_value(eps)) < 1e-6),
                       max(at, key=float) if at else None)
        curve = next(iter((self.record.get("curves") or {}).values()), None)
        median = model.get("median_norm")
        return RobustnessSummary(
            eps=float(eps_key) if eps_key else None, clean_accuracy=model.get("clean_accuracy"),
            robust_accuracy=at.get(eps_key) if eps_key else None, samples=model.get("images"),
            median_norm=None if median == "inf" else median,
            curve={"eps": self.record.get("grid"), "accuracy": curve} if curve else None)

    def _csv(self) -> str:
        from edgeprune.robustness import autoattack_csv, curves_csv

        return (autoattack_csv if self.kind == "autoattack" else curves_csv)(dict(self.record))

    def _markdown(self) -> str:
        from edgeprune.robustness import autoattack_markdown, curves_markdown

        return (autoattack_markdown if self.kind == "autoattack" else curves_markdown)(dict(self.record))


@dataclass(frozen=True)
class LatencyCell:
    """One (model, batch, threads) measurement of a profile, in ms."""

    model: str
    batch: int
    threads: int
    mean: float | None
    std: float | None
    p50: float | None
    p90: float | None
    throughput_ips: float | None
    runs_at: str | None = None  # how the runtime computed, read back: 'bf16', 'f32 xnnpack', ...


@dataclass(frozen=True)
class ProfileResult(Result):
    SCHEMA: ClassVar[str] = "edgeprune.profile/1"

    def latency(self) -> list[LatencyCell]:
        cells = []
        for entry in self.record.get("results") or []:
            stats = entry.get("latency_ms") or {}
            cells.append(LatencyCell(model=entry.get("model"), batch=entry.get("batch"),
                                     threads=entry.get("threads"), mean=stats.get("mean"),
                                     std=stats.get("std"), p50=stats.get("p50"), p90=stats.get("p90"),
                                     throughput_ips=entry.get("throughput_ips"), runs_at=entry.get("runs_at")))
        return cells

    def sizes(self) -> list[ModelFacts]:
        return [ModelFacts.of(m) for m in self.record.get("models") or []]

    def _csv(self) -> str:
        from edgeprune.profile import csv_report

        return csv_report(dict(self.record))

    def _markdown(self) -> str:
        from edgeprune.profile import markdown_report

        return markdown_report(dict(self.record))


@dataclass(frozen=True)
class CompareResult(Result):
    SCHEMA: ClassVar[str] = "edgeprune.compare/1"

    @property
    def regression(self) -> bool:
        return self.record.get("verdict") == "regression"

    def _csv(self) -> str:
        rows = list(self.record.get("latency") or [])
        header = sorted({k for r in rows for k in r})
        return csv_table(header, ([r.get(k, "") for k in header] for r in rows))

    def _markdown(self) -> str:
        from edgeprune.compare import markdown_report

        return markdown_report(dict(self.record))


@dataclass(frozen=True)
class BenchResult(Result):
    """A suite run: cell counts and the report folder (report.md, models.csv, accuracy.csv, ...)."""

    SCHEMA: ClassVar[str] = "edgeprune.bench/1"
    counts: Mapping[str, int] = field(default_factory=dict)
    report_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return not (self.counts.get("failed") or self.counts.get("blocked"))

    def _markdown(self) -> str:
        if self.report_dir is not None and (self.report_dir / "report.md").exists():
            return (self.report_dir / "report.md").read_text(encoding="utf-8")
        return super()._markdown()
