"""Progress bars for long work (rich), quiet when output is not a terminal or when asked."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(stderr=True)
# One INFO line per training epoch. Silent unless a handler is attached: the bench attaches one
# for each cell, so a long cell's log shows where it is while its bars are off.
epoch_log = logging.getLogger("edgeprune.progress")


def make_progress(*, enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, disable=not enabled, transient=False,
    )


@contextlib.contextmanager
def progress_task(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable]:
    """Yield `advance(n=1, status='')` for a single bar."""
    with make_progress(enabled=enabled) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str = "") -> None:
            progress.update(task, advance=n, status=status)

        yield advance


TRAIN_METRICS = ("loss", "accuracy", "adv_accuracy")  # what the bar and the epoch lines show


def _metrics(logs: dict | None, keys: tuple[str, ...] = TRAIN_METRICS) -> str:
    """'loss 1.234 accuracy 0.567 ...' for the `keys` present in Keras' `logs`."""
    return " ".join(f"{k} {float(v):.3f}" for k, v in (logs or {}).items() if k in keys)


def keras_progress_callback(description: str, epochs: int, steps_per_epoch: int, *,
                            enabled: bool = True):
    """A Keras callback drawing one bar over all training steps, with loss/accuracy, and
    logging each finished epoch to `epoch_log`."""
    import tensorflow as tf

    class _Bar(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self._progress = make_progress(enabled=enabled)
            self._progress.start()
            self._task = self._progress.add_task(description, total=epochs * steps_per_epoch, status="")
            self._epoch = 0
            self._robust = ""

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch + 1
            self._epoch_started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # adversarial training's guard: held-out robust accuracy
            if logs and "robust_accuracy" in logs:
                self._robust = f" robust {logs['robust_accuracy']:.3f}"
            if epoch_log.isEnabledFor(logging.INFO):
                values = _metrics(logs, (*TRAIN_METRICS, "robust_accuracy"))
                epoch_log.info("%s: epoch %d/%d %s (%.1f s)", description, epoch + 1, epochs, values,
                               time.perf_counter() - self._epoch_started)

        def on_train_batch_end(self, batch, logs=None):
            status = f"epoch {self._epoch}/{epochs} " + _metrics(logs) + self._robust
            self._progress.update(self._task, advance=1, status=status)

        def on_train_end(self, logs=None):
            self._progress.stop()

    return _Bar()

