"""A thread pool that takes work a batch at a time and keeps only a few batches in flight.

The predict loop hands over a batch and goes on; the pool's threads wait for the batch's results
to reach the host, encode and write. When ``max_batches`` batches are still in flight, handing
over the next one first collects the oldest: back-pressure, so host memory (and the pinned
buffers behind each batch) stays bounded however fast the model runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Result = TypeVar("Result")


class BatchWritePool(Generic[Result]):
    """Run each batch's jobs on ``workers`` threads, at most ``max_batches`` batches at once.

    Results come back in submission order, from :meth:`submit` (the batches it had to collect to
    make room) and :meth:`drain`. A job's exception is raised there, in the caller's thread.

    Example:
        >>> pool = BatchWritePool(workers=2, max_batches=1)
        >>> pool.submit([lambda: 1, lambda: 2])
        []
        >>> pool.submit([lambda: 3])  # the first batch is collected to make room
        [1, 2]
        >>> pool.drain()
        [3]
        >>> pool.close()
    """

    def __init__(self, workers: int, max_batches: int, name: str = "anomaly-map-writer") -> None:
        self.max_batches = max(1, max_batches)
        self._executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name)
        self._batches: deque[list[Future[Result]]] = deque()

    @property
    def batches_in_flight(self) -> int:
        return len(self._batches)

    def submit(self, jobs: Iterable[Callable[[], Result]]) -> list[Result]:
        """Queue one batch's jobs; first collect the oldest batches while the pool is full."""
        collected: list[Result] = []
        while len(self._batches) >= self.max_batches:
            collected += self._collect(self._batches.popleft())
        self._batches.append([self._executor.submit(job) for job in jobs])
        return collected

    def collect_done(self) -> list[Result]:
        """The results of the oldest batches that have already finished, without waiting."""
        collected: list[Result] = []
        while self._batches and all(future.done() for future in self._batches[0]):
            collected += self._collect(self._batches.popleft())
        return collected

    def drain(self) -> list[Result]:
        """Wait for every queued batch; their results in order."""
        collected: list[Result] = []
        while self._batches:
            collected += self._collect(self._batches.popleft())
        return collected

    def abandon(self) -> list[Result]:
        """After a failure elsewhere: let queued jobs finish (nothing computed is lost), ignore their
        errors (a second error is not raised over the first); the results of those that succeeded."""
        succeeded = [future.result() for batch in self._batches for future in batch if future.exception() is None]
        self._batches.clear()
        return succeeded

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._batches.clear()

    @staticmethod
    def _collect(batch: list[Future[Result]]) -> list[Result]:
        return [future.result() for future in batch]
