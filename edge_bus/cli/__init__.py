"""The `edge-bus` command line. Each command group lives in its own module and exposes
`register(app)`; modules import heavy libraries (torch, onnx) inside their commands only, so
`edge-bus run` and `edge-bus benchmark` start on a cart without torch."""

from __future__ import annotations

import typer

from edge_bus.cli import benchmark, data, evaluate, export, info, run, train

app = typer.Typer(
    name="edge-bus",
    help="Breast-ultrasound AI at the bedside: data, training, export, runtime and benchmarks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (data, train, evaluate, export, run, benchmark, info):
    module.register(app)


def main() -> None:
    app()
