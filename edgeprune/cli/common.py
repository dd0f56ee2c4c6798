"""Options and helpers shared by the command modules (light imports only)."""

from __future__ import annotations

import click

from edgeprune.io import check_output, sidecar
from edgeprune.vocab import INFERENCE_PRECISIONS, INPUT_RANGES

__all__ = ["allow_unsafe_option", "check_output", "dataset_option", "force_option", "inference_precision_option",
           "input_range_option", "limit_options", "quiet_option", "seed_option", "sidecar"]


def dataset_option(default: str = "digits"):
    return click.option(
        "--dataset", "-d", default=default, show_default=True,
        help="digits (embedded, offline), cifar10, cifar100 (Keras download), npz:PATH, "
             "dir:PATH (official CIFAR python batches), svhn:PATH (.mat files) or folder:PATH "
             "(class sub-folders of JPEG/PNG/BMP images, streamed).",
    )


def limit_options(func):
    func = click.option("--limit-train", type=click.IntRange(min=1), default=None,
                        help="Use a class-stratified subset of N training images.")(func)
    func = click.option("--limit", "limit_test", type=click.IntRange(min=1), default=None,
                        help="Use a class-stratified subset of N test images.")(func)
    return func


def seed_option(default: int = 0):
    return click.option("--seed", type=int, default=default, show_default=True,
                        help="Random seed, recorded in every output.")


allow_unsafe_option = click.option(
    "--allow-unsafe", is_flag=True,
    help="Load .h5 models with Lambda layers or custom classes (runs code from the file).")

quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")

force_option = click.option("--force", is_flag=True, help="Overwrite existing outputs.")

# One option for profile, evaluate and convert (the `inference_precision` field of their options).
inference_precision_option = click.option(
    "--inference-precision", type=click.Choice(INFERENCE_PRECISIONS), default="default", show_default=True,
    help="How the runtime computes. default: what it picks on this host, as deployed (OpenVINO: bf16 "
         "on CPUs with AVX512_BF16/AMX, else f32; TFLite: the XNNPACK delegate; Keras: f32); f32 / bf16 / "
         "f16: OpenVINO's inference precision hint (TFLite: f32 only); none: TFLite without XNNPACK. What "
         "ran is read back and recorded.")

input_range_option = click.option(
    "--input-range", "input_range", type=click.Choice(INPUT_RANGES), default=None,
    help="Pixel range the model takes (data and eps stay in [0, 1]; the model is fed "
         "x*(hi-lo)+lo). Default: the model's record or sidecar, else detected from a leading "
         "Rescaling (printed), else 0,1.")


def handle_signals() -> None:
    """SIGTERM (timeout, CI cancellation) unwinds like Ctrl-C, so partial files are removed."""
    import signal
    import threading

    from edgeprune.errors import Interrupted

    def interrupt(signum: int, _frame) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def fail_one_line(ctx: click.Context, exc: BaseException) -> None:
    """One line on stderr and the exit status that names the cause: 2 for bad input and for
    an output folder that refuses files (read-only, full), 128+N for signal N. `--debug` adds
    the traceback but keeps the status. Anything else is a bug and propagates."""
    import errno
    import signal
    import sys
    import traceback

    from edgeprune.errors import EdgepruneError, Interrupted
    from edgeprune.io import WRITE_ERRNOS

    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        message = (f"interrupted by {signal.Signals(signum).name}; partial files were removed, "
                   "finished outputs kept")
        status = 128 + int(signum)
    elif isinstance(exc, EdgepruneError):
        message, status = str(exc), 2
    elif isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:  # outside atomic_path: say only what the OS said
        code = errno.errorcode.get(exc.errno or 0, "OS error")
        message, status = f"{exc.filename or 'a file'}: {exc.strerror or exc} ({code})", 2
    else:
        raise exc
    if ctx.obj and ctx.obj.get("debug"):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    click.echo(f"error: {message.splitlines()[0] if message else type(exc).__name__}", err=True)
    ctx.exit(status)
