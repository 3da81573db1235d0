"""Progress reporting for training and fitting, in one place.

On a terminal: a rich progress bar (and rich log lines). Anywhere else (a log file, a pipe, a
systemd journal): no bar, but one plain, flushed line per epoch or per search step, so a
background run shows where it is while it runs, not only at the end.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Iterable, Iterator, TypeVar

T = TypeVar("T")


def is_terminal(stream: IO[str] | None = None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def epoch_line(epoch: int, epochs: int, train_loss: float, val_score: float, seconds: float, best: bool = False) -> str:
    """The one-line summary of an epoch, e.g. 'epoch 3/30: train loss 0.4123, val score 0.5012, 12.3 s (best)'."""
    return (
        f"epoch {epoch}/{epochs}: train loss {train_loss:.4f}, val score {val_score:.4f}, {seconds:.1f} s"
        + (" (best)" if best else "")
    )


class Progress:
    """A bar over `total` steps on a terminal; plain lines from `log` elsewhere; nothing when disabled.

    with Progress("unet", total=100, enabled=is_main) as bar:
        bar.advance(description="unet epoch 1/30 loss 0.41")
        bar.log(epoch_line(...))
    """

    def __init__(self, description: str, total: int | None, *, enabled: bool = True, stream: IO[str] | None = None):
        self.stream = stream
        self.enabled = enabled
        self.live = enabled and is_terminal(stream)
        self._bar: Any = None
        self._task: Any = None
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), console=Console(file=stream) if stream is not None else None,
            )
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> "Progress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        if self._bar is not None:
            kwargs = {"description": description} if description is not None else {}
            self._bar.update(self._task, advance=steps, **kwargs)

    def log(self, line: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.log(line)
        else:
            print(line, file=self.stream if self.stream is not None else sys.stdout, flush=True)


def iterate(items: Iterable[T], description: str, *, enabled: bool = True, stream: IO[str] | None = None) -> Iterator[T]:
    """Iterate with a bar on a terminal, or a plain line per finished item elsewhere."""
    items = list(items)
    started = time.perf_counter()
    with Progress(description, total=len(items), enabled=enabled, stream=stream) as bar:
        for i, item in enumerate(items, 1):
            yield item
            bar.advance()
            if not bar.live:
                bar_line = f"{description}: {i}/{len(items)} done, {time.perf_counter() - started:.1f} s"
                bar.log(bar_line)
