"""A byte-counting progress bar on stderr, shown only when a person is watching."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Saves and loads smaller than this finish too fast for a bar to help.
AUTO_MIN_BYTES = 256 * 2**20


def wanted(enabled: bool | None, total_bytes: int) -> bool:
    """Resolve a `progress=` argument: None shows a bar for large jobs on a terminal."""
    if enabled is not None:
        return enabled
    return total_bytes >= AUTO_MIN_BYTES and sys.stderr.isatty()


@contextmanager
def byte_progress(description: str, total_bytes: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield `advance(nbytes)`, safe to call from worker threads; draws a rich bar if enabled."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    lock = threading.Lock()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total_bytes)

        def advance(nbytes: int) -> None:
            with lock:
                bar.advance(task, nbytes)

        yield advance
