"""Admission control: a fixed pool of generation workers and a bounded, fair queue in front of it.

Each worker thread owns one generator (one pipeline, or one worker process that holds it), so one
pipeline never runs two generations at once. At most ``max_queue`` requests wait for a worker; one
more is refused at once with :class:`Overloaded` (the service answers 503) instead of piling up.
Waiting requests are served per client in start-time fair queuing order weighted by their compute, so
one client's maximum-budget requests cannot sit ahead of everyone else's. Generations run in the
worker threads, so the event loop keeps answering ``/healthz``, ``/metrics`` and scans meanwhile.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
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
    """Runs jobs on a fixed set of generators, one job per generator at a time, behind a bounded, fair queue.

    Waiting jobs are served in start-time fair queuing order, per client and weighted by cost: each
    job's tag is ``max(virtual time, its client's previous finish tag)`` and its finish tag adds its
    cost, and a free worker takes the smallest tag. A client with many (or expensive) requests waiting
    therefore takes its share of worker time in turns with the others instead of sitting ahead of them
    (jobs without a client and cost are served first come, first served).

    Args:
        generators: one generator per worker (their number is the concurrency); anything a job accepts,
            e.g. a ``SafeTextGenerator`` or a :class:`~safetext.service.worker.ProcessWorker`.
        max_queue: most jobs allowed to wait for a free worker (0: refuse whenever all are busy).
        max_waiting_per_client: most jobs one client may have waiting (None: only ``max_queue`` bounds it).

    Example:
        >>> import asyncio
        >>> pool = GenerationPool(["gen-a"], max_queue=0)
        >>> asyncio.run(pool.run(lambda gen: gen.upper()))
        'GEN-A'
        >>> pool.close()
    """

    def __init__(self, generators: Sequence[Any], max_queue: int, max_waiting_per_client: int | None = None) -> None:
        if not generators:
            raise ValueError("GenerationPool needs at least one generator (one per worker); got none")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"max_queue must be an integer >= 0, got {max_queue!r}")
        if max_waiting_per_client is not None and (
            isinstance(max_waiting_per_client, bool) or not isinstance(max_waiting_per_client, int) or max_waiting_per_client < 1
        ):
            raise ValueError(f"max_waiting_per_client must be an integer >= 1 or None, got {max_waiting_per_client!r}")
        self.generators = list(generators)
        self.workers = len(self.generators)
        self.max_queue = max_queue
        self.max_waiting_per_client = max_waiting_per_client
        self._cond = threading.Condition()
        self._pending: list[_Job] = []  # a heap on (tag, seq)
        self._waiting_by_client: dict[str, int] = {}
        self._finish: dict[str, float] = {}  # client -> finish tag of its last queued job
        self._virtual = 0.0  # start tag of the job dispatched last
        self._seq = itertools.count()
        self._admitted = 0  # running + waiting
        self._running = 0
        self._cancels: set[threading.Event] = set()  # one per admitted job
        self._closing = False
        self._threads = [
            threading.Thread(target=self._serve, args=(generator,), name=f"safetext-generate-{i}", daemon=True)
            for i, generator in enumerate(self.generators)
        ]
        for thread in self._threads:
            thread.start()

    def state(self) -> QueueState:
        """How many jobs run and wait now."""
        with self._cond:
            return QueueState(self._running, self._admitted - self._running, self.workers, self.max_queue)

    def admit(self, client: str = "") -> None:
        """Reserve a place (running or waiting) or raise :class:`Overloaded`; pair with a job."""
        with self._cond:
            self._admit(client)

    def release(self) -> None:
        """Give back a place taken with :meth:`admit` whose job was never queued."""
        with self._cond:
            if self._admitted <= self._running + len(self._pending):
                raise RuntimeError("release() without a matching admit()")
            self._admitted -= 1

    def _admit(self, client: str) -> None:
        if self._closing:
            raise Overloaded("the service is shutting down; retry on another replica")
        if self._admitted >= self.workers + self.max_queue:
            raise Overloaded(
                f"all {self.workers} generation worker(s) are busy and {self.max_queue} request(s) are "
                "already waiting; retry later or raise --max-queue / --max-concurrency"
            )
        if (self.max_waiting_per_client is not None and self._running + len(self._pending) >= self.workers
                and self._waiting_by_client.get(client, 0) >= self.max_waiting_per_client):
            raise Overloaded(
                f"this client already has {self.max_waiting_per_client} request(s) waiting (--max-waiting-per-client); "
                "retry when one of them has been answered"
            )
        self._admitted += 1

    async def run(self, job: Callable[[Any], T], cancel: threading.Event | None = None, *, client: str = "",
                  cost: float = 0.0) -> T:
        """Run ``job(generator)`` on a free worker and return its result.

        Raises :class:`Overloaded` at once when the queue is full. When the awaiting coroutine is
        cancelled (the client disconnected, the server shuts down), ``cancel`` is set: a job still
        waiting is dropped at once and never starts, a running one stops at its next check (pass
        ``cancel`` into it, e.g. through :func:`step_canceller`). The place is released when the job ends.

        Args:
            job: called in a worker thread with that worker's generator.
            cancel: the job's cancellation flag (default: a new one).
            client: who asked (a remote address, a token id); the fair queue's unit.
            cost: what the job costs the worker (e.g. step-pixels); a client's turns are weighted by it.

        Raises:
            Overloaded: no place left.
            Cancelled: ``cancel`` was set before the job started, the job raised it, or the pool closed.
        """
        if not cost >= 0:
            raise ValueError(f"cost must be >= 0, got {cost!r}")
        cancel = cancel if cancel is not None else threading.Event()
        future: Future[T] = Future()
        with self._cond:
            self._admit(client)
            start = max(self._virtual, self._finish.get(client, 0.0)) if client else self._virtual
            entry = _Job(start, next(self._seq), job, cancel, future, client)
            if client:
                self._finish[client] = start + cost
            self._waiting_by_client[client] = self._waiting_by_client.get(client, 0) + 1
            heapq.heappush(self._pending, entry)
            self._cancels.add(cancel)
            self._cond.notify()
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            cancel.set()
            self._drop(entry, Cancelled("cancelled while waiting for a worker"))
            raise

    def _drop(self, entry: "_Job", error: BaseException) -> bool:
        """Remove a job that has not started from the queue and fail its future; False if it had started."""
        with self._cond:
            if entry not in self._pending:
                return False
            self._pending.remove(entry)
            heapq.heapify(self._pending)
            self._unwait(entry.client)
            self._admitted -= 1
            self._cancels.discard(entry.cancel)
        if not entry.future.done():
            entry.future.set_exception(error)
        return True

    def _unwait(self, client: str) -> None:
        left = self._waiting_by_client.get(client, 0) - 1
        if left > 0:
            self._waiting_by_client[client] = left
        else:
            self._waiting_by_client.pop(client, None)

    def _serve(self, generator: Any) -> None:
        """One worker thread: take the job with the smallest tag, run it on ``generator``, repeat."""
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                entry = heapq.heappop(self._pending)
                self._unwait(entry.client)
                self._virtual = max(self._virtual, entry.tag)
                if len(self._finish) > 4 * (self.workers + self.max_queue) + 64:  # forget clients that are even
                    self._finish = {c: f for c, f in self._finish.items() if f > self._virtual}
                self._running += 1
            error: BaseException | None = None
            try:
                if entry.cancel.is_set():
                    raise Cancelled("cancelled while waiting for a worker")
                result = entry.job(generator)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
                error = exc
            with self._cond:  # free the place before answering: a client that got its answer sees the pool idle
                self._running -= 1
                self._admitted -= 1
                self._cancels.discard(entry.cancel)
            if error is not None:
                entry.future.set_exception(error)
            else:
                entry.future.set_result(result)

    def cancel_all(self) -> int:
        """Set the cancellation flag of every admitted job; returns how many there were."""
        with self._cond:
            cancels = list(self._cancels)
        for cancel in cancels:
            cancel.set()
        return len(cancels)

    def close(self, timeout: float | None = None) -> None:
        """Stop admitting, let running jobs finish for up to ``timeout`` seconds, then cancel them.

        Waiting jobs are dropped at once (they fail with :class:`Cancelled`). With ``timeout=None``
        running jobs finish.

        Args:
            timeout: seconds running jobs may still take before their cancellation flags are set.
        """
        with self._cond:
            self._closing = True
            pending = list(self._pending)
        for entry in pending:
            self._drop(entry, Cancelled("the service is shutting down"))
        if timeout is not None:
            deadline = time.monotonic() + max(0.0, timeout)
            while self.state().running and time.monotonic() < deadline:
                time.sleep(0.05)
            self.cancel_all()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


@dataclass(eq=False)
class _Job:
    tag: float
    seq: int
    job: Callable[[Any], Any]
    cancel: threading.Event
    future: Future[Any]
    client: str

    def __lt__(self, other: "_Job") -> bool:
        return (self.tag, self.seq) < (other.tag, other.seq)
