"""The `folder:PATH` dataset options (--val-split, --image-size, --strict), shared by the commands
that read a dataset: they reach the command as one `folder` mapping of FolderOptions fields."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from edgeprune.errors import EdgepruneError


def parse_image_size(text: str | None) -> tuple[int, ...] | None:
    """`224,224`, `224x224` or `224` (square) -> (H, W)."""
    if text is None:
        return None
    try:
        size = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise EdgepruneError(f"--image-size must be H,W (e.g. 224,224), got {text!r}") from None
    return size


def folder_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the three options; the command receives them as `folder` (FolderOptions keyword args)."""

    @functools.wraps(func)
    def command(*args: Any, val_split: float | None, image_size: str | None, strict: bool, **kwargs: Any) -> Any:
        return func(*args, folder={"val_split": val_split, "image_size": parse_image_size(image_size),
                                   "strict": strict}, **kwargs)

    command = click.option("--strict", is_flag=True,
                           help="folder: refuse a file that is not an image (default: skip it, counted).")(command)
    command = click.option("--image-size", default=None, metavar="H,W",
                           help="folder: resize images to H,W (bilinear). Default: the model's input size "
                                "(train: the most common size in the folder).")(command)
    return click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                        metavar="FRACTION",
                        help="folder: one class tree, split per class (by --seed) into train and this "
                             "fraction of test images; use the same value and --seed in every stage.")(command)
