"""Admission control: a fixed pool of generation workers and a bounded queue in front of it.

Each worker thread owns one generator (one pipeline), so one pipeline never runs two generations at
once. At most ``max_queue`` requests wait for a worker; one more is refused at once with
:class:`Overloaded` (the service answers 503) instead of piling up. Generations run in the worker
threads, so the event loop keeps answering ``/healthz``, ``/metrics`` and scans meanwhile.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class Overloaded(RuntimeError):
    """Every worker is busy and the queue is full; retry later."""


@dataclass(frozen=True)
class QueueState:
    """A snapshot of the pool: requests running, requests waiting, and the bounds."""

    running: int
    waiting: int
    workers: int
    max_queue: int

    def to_dict(self) -> dict[str, int]:
        return {"running": self.running, "waiting": self.waiting, "workers": self.workers, "max_queue": self.max_queue}


class GenerationPool:
    """Runs jobs on a fixed set of generators, one job per generator at a time, behind a bounded queue.

    Args:
        generators: one generator per worker (their number is the concurrency).
        max_queue: most jobs allowed to wait for a free worker (0: refuse whenever all are busy).

    Example:
        >>> import asyncio
        >>> pool = GenerationPool(["gen-a"], max_queue=0)
        >>> asyncio.run(pool.run(lambda gen: gen.upper()))
        'GEN-A'
        >>> pool.close()
    """

    def __init__(self, generators: Sequence[Any], max_queue: int) -> None:
        if not generators:
            raise ValueError("GenerationPool needs at least one generator (one per worker); got none")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"max_queue must be an integer >= 0, got {max_queue!r}")
        self.workers = len(generators)
        self.max_queue = max_queue
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for generator in generators:
            self._idle.put(generator)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="safetext-generate")
        self._lock = threading.Lock()
        self._admitted = 0  # running + waiting
        self._running = 0

    def state(self) -> QueueState:
        """How many jobs run and wait now."""
        with self._lock:
            return QueueState(self._running, self._admitted - self._running, self.workers, self.max_queue)

    def admit(self) -> None:
        """Reserve a place (running or waiting) or raise :class:`Overloaded`; pair with a job."""
        with self._lock:
            if self._admitted >= self.workers + self.max_queue:
                raise Overloaded(
                    f"all {self.workers} generation worker(s) are busy and {self.max_queue} request(s) are "
                    "already waiting; retry later or raise --max-queue / --max-concurrency"
                )
            self._admitted += 1

    async def run(self, job: Callable[[Any], T]) -> T:
        """Run ``job(generator)`` on a free worker and return its result.

        Raises :class:`Overloaded` at once when the queue is full. The place is released when the
        job ends, also when the waiting coroutine is cancelled (the job itself cannot be interrupted).

        Args:
            job: called in a worker thread with that worker's generator.
        """
        self.admit()
        try:
            future: Future[T] = self._executor.submit(self._work, job)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _work(self, job: Callable[[Any], T]) -> T:
        generator = self._idle.get()
        with self._lock:
            self._running += 1
        try:
            return job(generator)
        finally:
            with self._lock:
                self._running -= 1
            self._idle.put(generator)

    def _release(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        """Stop the workers after the running jobs; waiting jobs are cancelled."""
        self._executor.shutdown(wait=True, cancel_futures=True)
