"""Progress bars for long work (rich), quiet when output is not a terminal or when asked."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(stderr=True)


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


def keras_progress_callback(description: str, epochs: int, steps_per_epoch: int, *,
                            enabled: bool = True):
    """A Keras callback drawing one bar over all training steps, with loss/accuracy."""
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

        def on_epoch_end(self, epoch, logs=None):  # adversarial training's guard: held-out robust accuracy
            if logs and "robust_accuracy" in logs:
                self._robust = f" robust {logs['robust_accuracy']:.3f}"

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            status = f"epoch {self._epoch}/{epochs} " + " ".join(
                f"{k} {v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy", "adv_accuracy")) + self._robust
            self._progress.update(self._task, advance=1, status=status)

        def on_train_end(self, logs=None):
            self._progress.stop()

    return _Bar()

