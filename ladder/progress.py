"""Progress bars and the console: one rich Console on stderr, so stdout stays clean for tables."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console

console = Console(stderr=True)


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yields advance(k). Transient: the bar disappears when done, the stage line stays."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if total <= 0:
        yield lambda k: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda k: progress.advance(task, k)


def stdout_console() -> Console:
    """Console for tables on stdout; piped or captured output is not squeezed into 80 columns."""
    out = Console()
    return out if out.is_terminal else Console(width=200)
