"""The store's worker threads: run coding tasks in parallel, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from ..progress import byte_progress, wanted


def largest_first(tasks: list, sizes: list[int]) -> tuple[list, list[int]]:
    """`tasks` and their `sizes`, largest first (ties in their order): the threads then end
    on small tasks together instead of one of them coding a large last chunk alone."""
    order = sorted(range(len(tasks)), key=lambda i: -sizes[i])
    return [tasks[i] for i in order], [sizes[i] for i in order]


class Pool:
    """`workers` threads (a fresh pool per call) and the default for progress bars
    (None: shown for large jobs on a terminal)."""

    def __init__(self, workers: int, progress: bool | None):
        self.workers = workers
        self.progress = progress

    def run(
        self,
        fn: Callable,
        tasks: Sequence[tuple],
        description: str,
        progress: bool | Callable[[int], None] | None,
        sizes: Sequence[int],
        done: int = 0,
    ) -> list:
        """Run fn(*task) for every task, results in task order; the first error wins.

        `sizes` are the tasks' byte counts, for the progress bar (`progress` None: the
        pool's default); `done` bytes count as already done. A callable `progress` is
        called with the bytes of each task as it finishes (and `done` first), no bar.
        """
        if callable(progress):
            progress(done)
            return self._run(fn, tasks, sizes, progress) if tasks else []
        if not tasks:
            return []
        total_bytes = sum(sizes) + done
        show = wanted(self.progress if progress is None else progress, total_bytes)
        with byte_progress(description, total_bytes, show) as advance:
            advance(done)
            return self._run(fn, tasks, sizes, advance)

    def _run(self, fn: Callable, tasks: Sequence[tuple], sizes: Sequence[int], advance: Callable) -> list:
        if self.workers == 1 or len(tasks) == 1:
            results = []
            for task, size in zip(tasks, sizes):
                results.append(fn(*task))
                advance(size)
            return results
        with ThreadPoolExecutor(self.workers) as pool:
            futures = []
            for task, size in zip(tasks, sizes):
                future = pool.submit(fn, *task)
                future.add_done_callback(lambda _f, n=size: advance(n))
                futures.append(future)
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
            for f in done:
                if f.exception() is not None:
                    raise f.exception()
            return [f.result() for f in futures]
