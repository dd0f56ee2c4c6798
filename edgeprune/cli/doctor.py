"""`edgeprune doctor`: the stack, the runtimes and the host, in one look."""

from __future__ import annotations

import contextlib
import importlib
import io
import json

import click

# (import name, what it is for)
COMPONENTS = (
    ("tensorflow", "training, pruning, attacks, Keras inference"),
    ("tensorflow_model_optimization", "TF-MOT unstructured / N:M pruning"),
    ("nncf", "NNCF filter pruning, OpenVINO int8"),
    ("cleverhans", "FGSM / BIM / PGD / MIM / CW / SPSA"),
    ("openvino", "OpenVINO IR inference"),
    ("ai_edge_litert", "LiteRT (.tflite) inference"),
    ("tflite_runtime", "tflite-runtime (.tflite fallback)"),
    ("matplotlib", "plots"),
    ("sklearn", "embedded digits dataset"),
)


def check_components() -> list[dict]:
    found = []
    for module_name, purpose in COMPONENTS:
        try:
            # Some packages print to stdout on a failed import; keep --json output clean.
            with contextlib.redirect_stdout(io.StringIO()):
                module = importlib.import_module(module_name)
            version = getattr(module, "__version__", None) or "installed"
            error = None
        except Exception as exc:  # an import can fail in many ways on a board
            version, error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        found.append({"module": module_name, "purpose": purpose, "version": version, "error": error})
    return found


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(as_json):
    """Report stack versions, which runtimes import, and the host CPU and ISA."""
    from rich.console import Console
    from rich.table import Table

    from edgeprune.host import host_fingerprint

    components = check_components()
    host = host_fingerprint()
    if as_json:
        click.echo(json.dumps({"schema": "edgeprune.doctor/1", "components": components, "host": host},
                              indent=2))
        return
    console = Console()
    table = Table(title="stack")
    for column in ("module", "version", "for"):
        table.add_column(column)
    for item in components:
        status = item["version"] or "[red]not importable[/red]"  # the reason is in --json
        table.add_row(item["module"], status, item["purpose"])
    console.print(table)
    hosts = Table(title="host", show_header=False)
    for key in ("cpu_model", "architecture", "logical_cores", "isa", "memory_bytes", "os", "governor"):
        value = host[key]
        hosts.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    console.print(hosts)
