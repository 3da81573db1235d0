"""What every command shares: one console, and user errors printed as one line with exit code 2.

An interrupt before a command's work can drain (Ctrl-C or SIGTERM while `edge-bus run` loads its
models) exits 128 + the signal number, as a shell reports a process killed by it: 130 for SIGINT,
143 for SIGTERM; the deployed units list both in SuccessExitStatus= (a stop is not a failure).
"""

from __future__ import annotations

import functools
import signal
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from edge_bus.errors import EdgeBusError

# Piped into a log, rich would wrap tables at 80 columns; give logs room for a whole row instead.
_LOG_WIDTH = 180
console = Console(stderr=False, width=None if sys.stdout.isatty() else _LOG_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else _LOG_WIDTH)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn EdgeBusError into `error: <message>` on stderr and exit code 2, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgeBusError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)  # runtime.pipeline.Terminated carries SIGTERM
            err_console.print("terminated" if signum == signal.SIGTERM else "interrupted")
            raise typer.Exit(code=128 + int(signum)) from None

    return wrapper  # type: ignore[return-value]


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


def torch_required(what: str) -> None:
    """Exit with advice when torch is missing (the cart install has no torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        fail(f"{what} needs PyTorch, which is not installed here; install it with: pip install 'edge-bus[train]'")


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
