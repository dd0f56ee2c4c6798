"""`edgeprune import`: a Keras 3 (.keras / .h5) or foreign Keras model -> an edgeprune Keras 2 .h5."""

from __future__ import annotations

import click

from edgeprune.cli.common import allow_unsafe_option, force_option, input_range_option, sidecar


@click.command("import")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="The Keras 2 .h5 to write; OUT.json (what was translated) goes beside it.")
@input_range_option
@allow_unsafe_option
@force_option
def command(model, output, input_range, allow_unsafe, force):
    """Translate MODEL (.keras, Keras 3 or Keras 2 .h5) into a Keras 2 .h5 every command reads.

    No code from the file runs: the config is read as JSON, translated, and rebuilt from
    built-in Keras layers; Lambda layers need --allow-unsafe, custom classes are refused.
    The input range (declared, else detected and printed, else 0,1) is recorded, and later
    commands pick it up.

    \b
    Example:
      edgeprune import mobilenet_v3.keras -o mnv3.h5
    """
    from edgeprune.api import ImportOptions, import_model

    record = import_model(model, output, ImportOptions(input_range=input_range), force=force,
                          allow_unsafe=allow_unsafe).record
    rng = record["input_range"]
    if rng["source"] == "detected":
        click.echo(f"assuming input range {rng['label']}: {rng['reason']} (--input-range to override)", err=True)
    version = record.get("keras_version") or "?"
    click.echo(f"{record['source_format']} (Keras {version}) -> {output}: {record['layers'].get('keras2')} layers, "
               f"input range {rng['label']} ({rng['source']}), {len(record['translated'])} kinds of translation "
               f"(see {sidecar(output)})")
