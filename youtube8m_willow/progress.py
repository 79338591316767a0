"""What a long loop shows while it runs: a live progress bar on a terminal,
the original's log lines everywhere else.

On a terminal (stderr is a tty), training, eval and inference draw one bar
(``rich``, which Keras already depends on): done out of the total where it
is known, the rate, the time left, and the loop's latest numbers (loss,
GAP, Hit@1). The bar is transient: when the loop ends it gives way to the
loop's closing log lines. While it is drawn, the log records meant for the
terminal are printed above it instead of through it.

Anywhere else (a log file, a pipe, the tests' captured stderr) there is no
bar: the loops log the original's lines, so parsers of ``training step N |
Loss: ...`` and ``epoch/eval number N | ...`` find them as before.

``YT8M_PROGRESS`` overrides the choice: ``bar`` draws the bar even into a
file or pipe (with terminal control codes), ``lines`` keeps the original's
lines on a terminal; empty or ``auto`` decides by the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import IO, Iterator

from youtube8m_willow.errors import ConfigError

PROGRESS_ENV = "YT8M_PROGRESS"
_CHOICES = ("auto", "bar", "lines")


def bar_wanted(stream: IO | None = None) -> bool:
    """Whether loops writing to ``stream`` (default: stderr) draw a bar:
    ``YT8M_PROGRESS`` if set, else whether the stream is a terminal."""
    choice = os.environ.get(PROGRESS_ENV, "").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ConfigError(f"{PROGRESS_ENV}={os.environ[PROGRESS_ENV]!r}: expected one of "
                          f"{', '.join(_CHOICES)}")
    if choice != "auto":
        return choice == "bar"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ProgressBar:
    """A live bar on ``stream`` (default: stderr) while its ``with`` block runs.

    Args:
        description: what advances (``step``, ``eval``, ``predict``).
        total: the count at which the loop ends; None when unknown (no ETA).
        completed: where it starts (a resumed run's global step).
        unit: the name of what is counted (``videos``), shown after the
            count; "" for none.
        examples_per_unit: examples in one unit, for the examples/s shown.
        enabled: draw the bar; default ``bar_wanted(stream)``. A disabled
            bar does nothing (``active`` is False): the loop logs its lines.

    ``update(advance, **info)`` advances it and shows ``info`` (names and
    already formatted values) after the time left.
    """

    def __init__(self, description: str, total: int | None = None, completed: int = 0,
                 unit: str = "", examples_per_unit: float = 1.0,
                 stream: IO | None = None, enabled: bool | None = None):
        self.stream = sys.stderr if stream is None else stream
        self.active = bar_wanted(self.stream) if enabled is None else enabled
        self._settings = dict(description=description, total=total, completed=completed,
                              unit=unit, examples_per_unit=examples_per_unit)
        self._progress = self._task = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ProgressBar:
        if self.active:
            self._progress, self._task = _rich_progress(self.stream, **self._settings)
            self._stack.enter_context(self._progress)
            self._stack.enter_context(_log_records_above(self._progress.console, self.stream))
        return self

    def update(self, advance: float = 1, **info: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=advance,
                                  info="  ".join(f"{name} {value}" for name, value in info.items()))

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._progress = None


def _rich_progress(stream: IO, description: str, total: int | None, completed: int, unit: str,
                   examples_per_unit: float):
    """A started-when-entered ``rich.progress.Progress`` with one task; rich
    is imported only here (runs without a terminal never load it)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn,
                               TextColumn, TimeRemainingColumn)
    from rich.text import Text

    class ExamplesPerSecond(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.speed
            return Text("" if speed is None else f"{speed * examples_per_unit:,.0f} ex/s")

    class TimeLeft(TimeRemainingColumn):
        """``ETA 00:11`` (nothing where the total is unknown)."""

        def render(self, task) -> Text:
            left = super().render(task)
            return Text("ETA ", style=left.style) + left if task.total is not None else left

    forced = not (hasattr(stream, "isatty") and stream.isatty())
    console = Console(file=stream, force_terminal=True if forced else None, soft_wrap=True)
    # One line within 80 columns, even for WILLOW's 700,000 steps and their ETA.
    columns = [TextColumn("{task.description}"), BarColumn(bar_width=10), MofNCompleteColumn(),
               *([TextColumn(unit)] if unit else []), ExamplesPerSecond(), TimeLeft(compact=True),
               TextColumn("{task.fields[info]}")]
    progress = Progress(*columns, console=console, transient=True, refresh_per_second=4)
    task = progress.add_task(description, total=total, completed=completed, info="")
    return progress, task


class _PrintAbove(logging.Filter):
    """Prints a handler's records through the live display (above the bar)
    and keeps the handler from writing them through it."""

    def __init__(self, handler: logging.Handler, console):
        super().__init__()
        self.handler, self.console = handler, console

    def filter(self, record: logging.LogRecord) -> bool:
        self.console.print(self.handler.format(record), markup=False, highlight=False,
                           emoji=False, soft_wrap=True)
        return False


def _handler_stream(handler: logging.Handler):
    """The stream a handler writes to (absl's handler: its Python handler's)."""
    inner = getattr(handler, "python_handler", handler)
    return getattr(inner, "stream", None)


@contextlib.contextmanager
def _log_records_above(console, stream: IO) -> Iterator[None]:
    """Within the block, the root logger's handlers that write to ``stream``
    or to a terminal print above the bar."""
    routed = []
    for handler in logging.getLogger().handlers:
        target = _handler_stream(handler)
        if target is stream or (hasattr(target, "isatty") and target.isatty()):
            routed.append((handler, _PrintAbove(handler, console)))
    for handler, above in routed:
        handler.addFilter(above)
    try:
        yield
    finally:
        for handler, above in routed:
            handler.removeFilter(above)
