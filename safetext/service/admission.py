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
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class Overloaded(RuntimeError):
    """Every worker is busy and the queue is full; retry later."""


class Cancelled(Exception):
    """A job was cancelled (its client went away, or the service is shutting down) before it finished.

    Raised by the job itself between denoising steps (see :func:`step_canceller`), or by the pool for a
    job cancelled while it waited for a worker.
    """


def step_canceller(cancel: threading.Event) -> Callable[..., dict[str, Any]]:
    """A diffusers ``callback_on_step_end`` that raises :class:`Cancelled` once ``cancel`` is set.

    The pipeline calls it after every denoising step, so a cancelled generation stops within one step;
    safetext's guard removes its hooks on any exception, so the pipeline stays clean.
    """

    def callback(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if cancel.is_set():
            raise Cancelled(f"cancelled after step {step + 1}")
        return {}

    return callback


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
        self._cancels: set[threading.Event] = set()  # one per admitted job
        self._closing = False

    def state(self) -> QueueState:
        """How many jobs run and wait now."""
        with self._lock:
            return QueueState(self._running, self._admitted - self._running, self.workers, self.max_queue)

    def admit(self) -> None:
        """Reserve a place (running or waiting) or raise :class:`Overloaded`; pair with a job."""
        with self._lock:
            if self._closing:
                raise Overloaded("the service is shutting down; retry on another replica")
            if self._admitted >= self.workers + self.max_queue:
                raise Overloaded(
                    f"all {self.workers} generation worker(s) are busy and {self.max_queue} request(s) are "
                    "already waiting; retry later or raise --max-queue / --max-concurrency"
                )
            self._admitted += 1

    async def run(self, job: Callable[[Any], T], cancel: threading.Event | None = None) -> T:
        """Run ``job(generator)`` on a free worker and return its result.

        Raises :class:`Overloaded` at once when the queue is full. When the awaiting coroutine is
        cancelled (the client disconnected, the server shuts down), ``cancel`` is set: a job still
        waiting never starts, a running one stops at its next check (pass ``cancel`` into it, e.g.
        through :func:`step_canceller`). The place is released when the job ends.

        Args:
            job: called in a worker thread with that worker's generator.
            cancel: the job's cancellation flag (default: a new one).

        Raises:
            Overloaded: no place left.
            Cancelled: ``cancel`` was set before the job started, or the job raised it.
        """
        cancel = cancel if cancel is not None else threading.Event()
        self.admit()
        with self._lock:
            self._cancels.add(cancel)
        try:
            future: Future[T] = self._executor.submit(self._work, job, cancel)
        except BaseException:
            self._release(None, cancel)
            raise
        future.add_done_callback(lambda done: self._release(done, cancel))
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            cancel.set()
            future.cancel()  # a job still queued is dropped; a running one sees ``cancel``
            task = asyncio.current_task()
            if future.cancelled() and task is not None and not task.cancelling():
                raise Cancelled("the service is shutting down") from None  # dropped by close(), not by our caller
            raise

    def _work(self, job: Callable[[Any], T], cancel: threading.Event) -> T:
        if cancel.is_set():
            raise Cancelled("cancelled while waiting for a worker")
        generator = self._idle.get()
        with self._lock:
            self._running += 1
        try:
            if cancel.is_set():
                raise Cancelled("cancelled while waiting for a worker")
            return job(generator)
        finally:
            with self._lock:
                self._running -= 1
            self._idle.put(generator)

    def _release(self, _future: Future[Any] | None, cancel: threading.Event | None = None) -> None:
        with self._lock:
            self._admitted -= 1
            self._cancels.discard(cancel)

    def cancel_all(self) -> int:
        """Set the cancellation flag of every admitted job; returns how many there were."""
        with self._lock:
            cancels = list(self._cancels)
        for cancel in cancels:
            cancel.set()
        return len(cancels)

    def close(self, timeout: float | None = None) -> None:
        """Stop admitting, let running jobs finish for up to ``timeout`` seconds, then cancel them.

        Waiting jobs are dropped at once. With ``timeout=None`` running jobs finish.

        Args:
            timeout: seconds running jobs may still take before their cancellation flags are set.
        """
        with self._lock:
            self._closing = True
        if timeout is not None:
            deadline = time.monotonic() + max(0.0, timeout)
            while self.state().running and time.monotonic() < deadline:
                time.sleep(0.05)
            self.cancel_all()
        self._executor.shutdown(wait=True, cancel_futures=True)
