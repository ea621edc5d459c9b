"""One background thread that runs a store's saves in call order (`save_async`).

No step is lost at interpreter exit: a hook registered with `threading._register_atexit`
(it runs before concurrent.futures stops accepting work, so a pending save can still
use its worker threads) waits for every pending save of every store. A save that fails
there, with nobody left to raise it to, is printed on stderr naming its step, and the
process exits with status 1.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import StoreIOError, TPDEError

_LIVE: weakref.WeakSet = weakref.WeakSet()


class BackgroundSaves:
    """Runs save jobs one at a time, in submission order, with at most `limit` in flight.

    Each job holds a copy of a whole state in memory, so `submit` blocks while `limit`
    jobs are queued or running. A failure is raised once, by the next `submit`, `wait`
    or `shutdown` (the store's next `save_async`, `save`, `wait` or `close`).
    """

    def __init__(self, limit: int = 2):
        self._limit = limit
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: list[tuple[int, Future]] = []
        self._lock = threading.Lock()
        _LIVE.add(self)

    def pending(self, step: int) -> bool:
        """Whether a save of `step` is queued or running."""
        with self._lock:
            return any(s == step and not f.done() for s, f in self._jobs)

    def submit(self, step: int, fn: Callable, *args) -> Future:
        """Queue fn(*args) (the save of `step`); returns its future. Raises the failure
        of an earlier save that finished since the last check, without queueing."""
        while True:
            with self._lock:
                running = [f for _, f in self._jobs if not f.done()]
            if len(running) < self._limit:
                break
            running[0].exception()  # wait for the oldest (its error stays in its future)
        with self._lock:
            finished = [(s, f) for s, f in self._jobs if f.done()]
            self._jobs = [(s, f) for s, f in self._jobs if not f.done()]
        _raise_first(finished)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="tpde-save")
            future = self._executor.submit(fn, *args)
            self._jobs.append((step, future))
        return future

    def wait(self) -> None:
        """Block until every queued save is done; raise the first one's error, if any."""
        with self._lock:
            jobs, self._jobs = self._jobs, []
        _raise_first(jobs)

    def shutdown(self) -> None:
        """Wait for the queued saves (raising the first error) and stop the thread."""
        try:
            self.wait()
        finally:
            with self._lock:
                executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=True)

    def finish_at_exit(self) -> list[tuple[int, BaseException]]:
        """Wait for every queued save; returns the failures nobody was told about."""
        with self._lock:
            jobs, self._jobs = self._jobs, []
        return [(step, f.exception()) for step, f in jobs if f.exception() is not None]


def _raise_first(jobs: list[tuple[int, Future]]) -> None:
    first = None
    for step, future in jobs:
        error = future.exception()
        if error is not None and first is None:
            first = (step, error)
    if first is not None:
        step, error = first
        if isinstance(error, StoreIOError):  # stays an OSError too
            raise StoreIOError(f"background save of step {step} failed: {error}", error.errno, error.code) from error
        if isinstance(error, TPDEError):
            raise type(error)(f"background save of step {step} failed: {error}", error.code) from error
        raise error


def _finish_pending_saves() -> None:
    """Interpreter exit: let every pending save finish; fail loudly if one did not."""
    failures = []
    for saves in list(_LIVE):
        failures += saves.finish_at_exit()
    if failures:
        for step, error in failures:
            print(f"tpde: error: background save of step {step} failed at exit: {error}", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)


threading._register_atexit(_finish_pending_saves)  # runs before concurrent.futures' own exit hook
