"""The `edgeprune` command group.

Commands load lazily from `edgeprune.cli.<name>` (each module exposes `command`), so
`edgeprune --help` imports neither TensorFlow nor a runtime, and works with only the
`[device]` extra. A command module that is not installed is simply not listed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import click

from edgeprune import __version__
from edgeprune.errors import EdgepruneError, Interrupted

# Order shown in --help: the pipeline's order.
COMMANDS = ("train", "prune", "convert", "attack", "evaluate", "profile", "compare", "bench",
            "info", "import", "doctor")


# Commands whose module name differs (`import` is a Python keyword).
MODULES = {"import": "import_"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS
                if importlib.util.find_spec(f"edgeprune.cli.{MODULES.get(name, name)}") is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.list_commands(ctx):
            return None
        return importlib.import_module(f"edgeprune.cli.{MODULES.get(name, name)}").command

    def invoke(self, ctx: click.Context):
        from edgeprune.cli.common import fail_one_line

        try:
            return super().invoke(ctx)
        except (EdgepruneError, OSError, KeyboardInterrupt, Interrupted) as exc:
            fail_one_line(ctx, exc)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeprune")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Prune, convert, attack and profile Keras models for edge devices.

    \b
    Pipeline:  train -> prune -> convert -> attack -> evaluate -> profile -> compare
    Grid:      bench runs a YAML suite of all stages, cached and resumable.
    Models take float32 NHWC images in [0, 1] and return logits.
    """
    from edgeprune.cli.common import handle_signals

    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    handle_signals()
    # TensorFlow's C++ start-up chatter hides the one line a user needs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    cli(prog_name="edgeprune")


if __name__ == "__main__":  # pragma: no cover
    main()
