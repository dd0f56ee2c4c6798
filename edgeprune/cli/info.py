"""`edgeprune info`: what a model file holds."""

from __future__ import annotations

import json

import click

from edgeprune.cli.common import allow_unsafe_option


def _format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1024
    return str(count)


@click.command("info")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the full record as JSON.")
@click.option("--layers/--no-layers", default=True, show_default=True,
              help="List per-layer sparsity (Keras models).")
@allow_unsafe_option
def command(model, as_json, layers, allow_unsafe):
    """Show a model's size, parameters, measured weight sparsity, input shape and classes.

    Works for .h5 (Keras) and, with the runtimes installed, .tflite and OpenVINO .xml.
    """
    from rich.console import Console
    from rich.table import Table

    from edgeprune.info import model_info

    record = model_info(model, allow_unsafe=allow_unsafe)
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
        return
    console = Console()
    summary = Table(title=f"{model}", show_header=False)
    summary.add_row("format", str(record.get("format")))
    summary.add_row("input shape", str(tuple(record.get("input_shape", ()))))
    summary.add_row("classes", str(record.get("num_classes")))
    summary.add_row("file size", f"{_format_bytes(record['file_bytes'])} (gzip {_format_bytes(record['gzip_bytes'])})")
    if "params" in record:
        summary.add_row("parameters", f"{record['params']:,} ({record['params_nonzero']:,} non-zero)")
        summary.add_row("weight sparsity", f"{record['sparsity']:.2%} of {record['prunable_weights']:,} prunable weights")
        summary.add_row("MACs / image", f"{record['macs']:,}")
        summary.add_row("layers", str(record["layer_count"]))
    meta = record.get("metadata") or {}
    if meta.get("dataset"):
        summary.add_row("trained on", f"{meta['dataset']} ({meta.get('arch', '?')})")
    console.print(summary)
    if layers and record.get("layers"):
        table = Table(title="prunable layers")
        for column in ("layer", "kind", "weights", "sparsity", "filters", "zero filters", "MACs"):
            table.add_column(column, justify="right" if column not in ("layer", "kind") else "left")
        for row in record["layers"]:
            table.add_row(row["name"], row["kind"], f"{row['weights']:,}", f"{row['sparsity']:.1%}",
                          str(row["filters"]), str(row["filters_zero"]), f"{row['macs']:,}")
        console.print(table)
