"""Progress bars and the console: one rich Console on stderr, so stdout stays clean for tables.

Piped or redirected stderr (a log file, `2>&1 | tee`, CI) gets plain lines instead: no transient
bars (rich leaves a blank line where each stood), no wrapping at rich's default 80 columns (a line
cut in two is two lines to a reader of the log and to grep), no colour codes — one line per
finished bar or training log step."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console

console = Console(stderr=True)
# Decided once, at import: where stderr goes does not change during a run.
console.soft_wrap = not console.is_terminal


def live() -> bool:
    """Whether stderr is a terminal that can redraw a bar in place."""
    return console.is_terminal and console.is_interactive


_bars = threading.Semaphore(1)  # rich draws one live display at a time (concurrent variants)


@contextmanager
def progress_bar(label: str, total: int, status: Callable[[], str] | None = None) -> Iterator[Callable[[int], None]]:
    """Yields advance(k). Transient: the bar disappears when done, the stage line stays. Not on a
    terminal: no bar, one line when done ('zero_shot: generating 40/40 in 3.2 s'). `status` adds a
    live note to the line (an API model's current concurrency and rate-limit answers)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if total <= 0:
        yield lambda k: None
        return
    drawn = live() and _bars.acquire(blocking=False)  # a second bar at once prints a line instead
    if not drawn:
        done = [0]
        started = time.perf_counter()

        def advance(k: int) -> None:
            done[0] += k

        yield advance
        console.print(f"{label} {done[0]:,}/{total:,} in {time.perf_counter() - started:.1f} s"
                      + (f" · {status()}" if status else ""), highlight=False, markup=False)
        return
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as progress:
            task = progress.add_task(label, total=total)

            def advance_live(k: int) -> None:
                progress.update(task, advance=k, description=f"{label} · {status()}" if status else label)

            yield advance_live
    finally:
        _bars.release()


def stop_live() -> None:
    """Stop every bar still drawn on stderr, erasing it (they are transient). A bar left running
    by an interrupt (Ctrl-C inside `trainer.train()` skips the callback that would stop it) would
    otherwise stay on screen under the "interrupted" message, redrawn by its thread."""
    stack = getattr(console, "_live_stack", None)  # rich ≥ 14 keeps nested live displays here
    while stack:
        live_display = stack[-1]
        live_display.stop()  # pops itself off the stack (Console.clear_live)
        if stack and stack[-1] is live_display:  # never loop on one that would not come off
            stack.pop()


def stdout_console() -> Console:
    """Console for tables on stdout; piped or captured output is not squeezed into 80 columns. A
    `COLUMNS` the user set wins even when piped (`COLUMNS=100 ladder compare … > t.txt` fits 100
    columns, as on a terminal): rich reads it for terminals only."""
    import os

    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return Console(width=int(columns))
    out = Console()
    return out if out.is_terminal else Console(width=200)
