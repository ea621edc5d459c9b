"""One background thread that runs a store's saves in call order (`save_async`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import TPDEError


class BackgroundSaves:
    """Runs save jobs one at a time, in submission order, with at most `limit` in flight.

    Each job holds a copy of a whole state in memory, so `submit` blocks while `limit`
    jobs are queued or running. `wait` blocks until all are done and raises the first
    failure that nobody has seen through its future yet.
    """

    def __init__(self, limit: int = 2):
        self._limit = limit
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: list[tuple[int, Future]] = []
        self._lock = threading.Lock()

    def pending(self, step: int) -> bool:
        """Whether a save of `step` is queued or running."""
        with self._lock:
            return any(s == step and not f.done() for s, f in self._jobs)

    def submit(self, step: int, fn: Callable, *args) -> Future:
        """Queue fn(*args) (the save of `step`); returns its future."""
        while True:
            with self._lock:
                running = [f for _, f in self._jobs if not f.done()]
            if len(running) < self._limit:
                break
            running[0].exception()  # wait for the oldest (its error stays in its future)
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
        first = None
        for step, future in jobs:
            error = future.exception()
            if error is not None and first is None:
                first = (step, error)
        if first is not None:
            step, error = first
            if isinstance(error, TPDEError):
                raise type(error)(f"background save of step {step} failed: {error}", error.code) from error
            raise error

    def shutdown(self) -> None:
        """Wait for the queued saves (raising the first error) and stop the thread."""
        try:
            self.wait()
        finally:
            with self._lock:
                executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=True)
