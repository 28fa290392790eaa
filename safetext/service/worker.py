"""Generations in a separate worker process, so the HTTP process never shares its interpreter lock with the denoiser.

A :class:`ProcessWorker` starts one child process (``spawn`` start method: torch and ``fork`` do not
mix) that builds the generator once, from a picklable factory, and then serves one generation at a
time over a pipe. What crosses the pipe is small and plain: the prompt, the seed and the pipeline
arguments one way; the images as PNG bytes and the verdict the other way (plus the child's log
records). Everything else stays in the HTTP process: limits, the compute budget, admission and the
fair queue (:class:`~safetext.service.admission.GenerationPool` treats a ``ProcessWorker`` like a
generator), metrics and the request log.

- Cancellation: a shared ``multiprocessing.Event`` that the child checks after every denoising
  step, set when the request's cancellation flag is set (client gone, shutdown).
- Crashes: when the child dies mid-request (killed, out of memory, a segfault in a kernel), the
  request fails at once with :class:`WorkerCrashed` (the service answers 500 with the request id) and
  a new child is started in the background; the next request waits for it.
- Shutdown: :meth:`ProcessWorker.close` asks the child to exit, then terminates and kills it if it
  does not within the timeout. The child also stops at its next step when the HTTP process dies.
- Threads: the child sets torch's intra-op threads (default: the CPU cores less one for the HTTP
  process, at least 1) and one inter-op thread.

Outputs are bit-identical to the same generator called in-process with the same seed and the same
number of torch threads.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from safetext.errors import PolicyError, PolicyViolation, SafetextError
from safetext.service.admission import Cancelled, step_canceller

logger = logging.getLogger("safetext.service")


class WorkerCrashed(SafetextError, RuntimeError):
    """The generation worker process exited while it ran a request (it is restarted)."""


class WorkerUnavailable(SafetextError, RuntimeError):
    """The generation worker process could not be started (the factory failed, or it timed out)."""


class WorkerError(SafetextError, RuntimeError):
    """An exception raised inside the worker process; ``remote_type`` names it, the message holds its traceback."""

    def __init__(self, remote_type: str, remote_traceback: str) -> None:
        super().__init__(f"{remote_type} in the generation worker:\n{remote_traceback}")
        self.remote_type = remote_type


def default_threads() -> int:
    """torch intra-op threads for the worker: the CPU cores less one for the HTTP process, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


@dataclass(frozen=True)
class GeneratorRecipe:
    """A picklable recipe for the served generator: what ``safetext serve`` builds in the worker process.

    Args:
        model: local diffusers pipeline directory (None: the embedded glyph model).
        policy: policy name, YAML path or mapping.
        layer_map: layer map file (None: the preset for the model).
        allow_paths: let the policy's list paths leave its folder.
    """

    model: str | None = None
    policy: Any = "default"
    layer_map: str | None = None
    allow_paths: bool = False

    def __call__(self) -> Any:
        from safetext.generate_cli import load_pipeline
        from safetext.generator import SafeTextGenerator
        from safetext.policy import load_policy

        kwargs = {"layer_map": self.layer_map} if self.layer_map else {}
        policy = load_policy(self.policy, allow_paths=self.allow_paths)
        return SafeTextGenerator(load_pipeline(self.model), policy=policy, **kwargs)


@dataclass(frozen=True)
class PipelineFacts:
    """What the HTTP process needs to know about the pipeline in the worker (to derive the limits)."""

    default_size: tuple[int, int] | None
    default_steps: int | None


def accepts_step_callback(gen: Any) -> bool:
    """True when the generator's pipeline takes ``callback_on_step_end`` (so it can be cancelled between steps)."""
    import inspect

    target = getattr(gen, "pipe", gen)
    try:
        return "callback_on_step_end" in inspect.signature(target.__call__).parameters
    except (TypeError, ValueError):
        return False


def generate_pngs(gen: Any, prompt: str, seed: int, kwargs: dict[str, Any], cancel: Any = None) -> tuple[list[tuple[bytes, int, int]], Any, float]:
    """One guarded generation: its images as ``(png_bytes, width, height)``, the verdict and the seconds taken.

    Args:
        gen: a ``SafeTextGenerator`` (or anything called like one whose output has ``.verdict``).
        prompt: the prompt.
        seed: seed of a fresh ``torch.Generator`` for the initial noise.
        kwargs: further pipeline arguments (steps, images, size, guidance).
        cancel: anything with ``is_set()``; the generation stops at the next step once it is set.
    """
    import torch

    started = time.perf_counter()
    kwargs = dict(kwargs)
    if cancel is not None and accepts_step_callback(gen):
        kwargs["callback_on_step_end"] = step_canceller(cancel)
    output = gen(prompt=prompt, generator=torch.Generator().manual_seed(seed), output_type="pil", **kwargs)
    seconds = time.perf_counter() - started
    verdict = getattr(output, "verdict", None)
    if verdict is None:
        raise TypeError(f"{type(gen).__name__} returned an output without .verdict; serve a safetext.generator.SafeTextGenerator")
    images = []
    for image in output.images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        images.append((buffer.getvalue(), image.width, image.height))
    return images, verdict, seconds


class ProcessWorker:
    """One generation worker process; call :meth:`generate` from one thread at a time (the pool's worker thread).

    Args:
        factory: a picklable callable that returns the generator (a :class:`GeneratorRecipe`, a
            module-level function or a ``functools.partial`` of one); called once in the child per start.
        threads: torch intra-op threads in the child (default: :func:`default_threads`).
        nice: niceness the child adds to itself (0-19) before it builds the generator, so that the HTTP
            process is scheduled first when both want a core (None: inherit).
        cpus: CPU numbers the child is pinned to (``os.sched_setaffinity``; None: inherit).
        start_timeout: seconds the child may take to build the generator.
        stop_timeout: seconds the child may take to exit when closed before it is terminated.

    Example:
        >>> worker = ProcessWorker(GeneratorRecipe(policy="default")).start()  # doctest: +SKIP
        >>> pngs, verdict, seconds = worker.generate("A sign that says hello", 0, {"num_inference_steps": 20}, cancel)  # doctest: +SKIP
        >>> worker.close()  # doctest: +SKIP
    """

    def __init__(self, factory: Callable[[], Any], *, threads: int | None = None, nice: int | None = None,
                 cpus: Any = None, start_timeout: float = 600.0, stop_timeout: float = 10.0) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        if nice is not None and (isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19):
            raise ValueError(f"nice must be an integer from 0 to 19 (or None), got {nice!r}")
        if cpus is not None:
            cpus = check_cpus(cpus)
        self.factory = factory
        self.threads = threads or (min(default_threads(), len(cpus)) if cpus else default_threads())
        self.nice = nice
        self.cpus = cpus
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.restarts = 0
        self.pipe: PipelineFacts | None = None  # read by ServiceLimits.resolve
        self.policy: Any = None
        self._context = multiprocessing.get_context("spawn")
        self._cancel = self._context.Event()
        self._process: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()  # held for a whole request, and while (re)starting
        self._restart: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start and after close)."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def start(self) -> "ProcessWorker":
        """Start the child and wait until it has built the generator.

        Raises:
            WorkerUnavailable: the factory failed in the child (its traceback is in the message) or the
                child did not get ready within ``start_timeout``.
        """
        with self._lock:
            self._spawn()
        return self

    def _spawn(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, name="safetext-generation-worker", daemon=True,
                                        args=(self.factory, child, self._cancel, self.threads, os.getpid(), self.nice, self.cpus))
        process.start()
        child.close()
        deadline = time.monotonic() + self.start_timeout
        try:
            while True:
                if parent.poll(0.1):
                    message = parent.recv()
                    if message[0] == "log":
                        _emit(message[1])
                        continue
                    if message[0] == "ready":
                        break
                    raise WorkerUnavailable(f"the generation worker could not build the generator:\n{message[1]}")
                if not process.is_alive():
                    raise WorkerUnavailable(f"the generation worker exited during startup with code {process.exitcode}")
                if time.monotonic() > deadline:
                    raise WorkerUnavailable(f"the generation worker was not ready within {self.start_timeout} s")
                if self._closed:
                    raise WorkerUnavailable("the service closed while the generation worker was starting")
        except BaseException:
            _stop(process, parent, 0.0)
            raise
        facts = message[1]
        self.pipe = PipelineFacts(facts["default_size"], facts["default_steps"])
        self._process, self._conn = process, parent
        logger.info("generation worker ready (pid %d, %d torch thread(s))", process.pid, self.threads)

    def _ensure_running(self) -> None:
        """Called with the lock held: wait for a restart in progress; start a child if none runs."""
        restart = self._restart
        if restart is not None:
            restart.join(self.start_timeout + 5)
            self._restart = None
        if self._process is None or not self._process.is_alive():
            self._process = self._conn = None
            self._spawn()

    def generate(self, prompt: str, seed: int, kwargs: dict[str, Any], cancel: threading.Event,
                 request_id: str = "") -> tuple[list[tuple[bytes, int, int]], Any, float]:
        """Run one generation in the child: ``(pngs, verdict, seconds)`` as :func:`generate_pngs` returns them.

        Raises:
            Cancelled: ``cancel`` was set; the child stopped at its next step.
            PolicyViolation, PolicyError: as the generator raised them (with the verdict).
            WorkerError: any other exception in the child (its traceback in the message).
            WorkerCrashed: the child died; a new one is being started.
            WorkerUnavailable: no child could be started.
        """
        with self._lock:
            if self._closed:
                raise Cancelled("the generation worker is shut down")
            self._ensure_running()
            process, conn = self._process, self._conn
            self._cancel.clear()
            if cancel.is_set():
                raise Cancelled("cancelled before the generation started")
            try:
                conn.send(("generate", request_id, prompt, seed, kwargs))
                while True:
                    if cancel.is_set() and not self._cancel.is_set():
                        self._cancel.set()
                    if conn.poll(0.02):
                        message = conn.recv()
                        if message[0] == "log":
                            _emit(message[1], request_id)
                            continue
                        return _result(message)
                    if not process.is_alive() and not conn.poll(0):
                        raise EOFError
            except (EOFError, OSError, BrokenPipeError):
                process.join(1.0)
                code = process.exitcode
                self._process = self._conn = None
                self._restart_in_background()
                raise WorkerCrashed(
                    f"the generation worker (pid {process.pid}) exited with code {code} during request {request_id}; "
                    "a new worker is starting"
                ) from None

    def _restart_in_background(self) -> None:
        """Called with the lock held: start a new child in a thread; the next request joins that thread."""
        self.restarts += 1
        logger.error("generation worker died; restarting it (restart %d)", self.restarts)

        def restart() -> None:  # runs without the lock: the only one spawning while self._restart is set
            if self._closed:
                return
            try:
                self._spawn()
            except BaseException as exc:  # noqa: BLE001 - the next request tries again and reports it
                logger.error("the generation worker could not be restarted: %s", exc)

        self._restart = threading.Thread(target=restart, name="safetext-worker-restart", daemon=True)
        self._restart.start()

    def close(self, timeout: float | None = None) -> None:
        """Ask the child to exit; terminate it after ``timeout`` (default ``stop_timeout``) seconds, then kill it.

        Call it when no request runs (after the pool closed); a request still running is cancelled.
        """
        self._closed = True
        cancel = self._cancel
        if cancel is not None:
            cancel.set()
        restart = self._restart
        if restart is not None:
            restart.join(self.start_timeout + 5)
        with self._lock:
            process, conn = self._process, self._conn
            self._process = self._conn = None
        if process is not None:
            _stop(process, conn, self.stop_timeout if timeout is None else timeout)
        # Dropping the flag releases its semaphores now; kept until exit, multiprocessing reports them leaked.
        self._cancel = None

    def __enter__(self) -> "ProcessWorker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(process: Any, conn: Any, timeout: float) -> None:
    """Ask, then terminate, then kill; always reaps the child."""
    try:
        conn.send(None)
    except (OSError, ValueError):
        pass
    process.join(max(0.0, timeout))
    if process.is_alive():
        logger.warning("generation worker (pid %d) did not exit within %.1f s; terminating it", process.pid, timeout)
        process.terminate()
        process.join(5.0)
    if process.is_alive():
        process.kill()
        process.join(5.0)
    conn.close()


def _result(message: tuple) -> tuple[list[tuple[bytes, int, int]], Any, float]:
    kind = message[0]
    if kind == "ok":
        return message[1], message[2], message[3]
    if kind == "cancelled":
        raise Cancelled(message[1])
    if kind == "violation":
        raise PolicyViolation(message[1], message[2])
    if kind == "policy_error":
        raise PolicyError(message[1])
    raise WorkerError(message[1], message[2])


def _emit(record: dict[str, Any], request_id: str = "") -> None:
    """Re-emit a log record from the child through this process's logging, tagged with the request id."""
    record = logging.makeLogRecord(record)
    if request_id:
        record.request_id = request_id
        record.msg = f"{record.msg} (request {request_id})"
    record.worker = True
    target = logging.getLogger(record.name)
    if target.isEnabledFor(record.levelno):
        target.handle(record)


class _PipeLogHandler(logging.Handler):
    """In the child: sends each record (message formatted, traceback as text) to the HTTP process."""

    def __init__(self, conn: Any, lock: threading.Lock) -> None:
        super().__init__()
        self.conn, self.send_lock = conn, lock  # not ``self.lock``: Handler.handle holds that one around emit

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            fields = {"name": record.name, "levelno": record.levelno, "levelname": record.levelname, "msg": message,
                      "args": None, "pathname": record.pathname, "lineno": record.lineno, "funcName": record.funcName,
                      "created": record.created, "process": record.process}
            with self.send_lock:
                self.conn.send(("log", fields))
        except Exception:  # noqa: BLE001 - logging must never break a generation
            self.handleError(record)


class _Cancel:
    """The child's cancellation check: the shared flag, or the HTTP process gone."""

    def __init__(self, event: Any, parent_pid: int) -> None:
        self.event, self.parent_pid = event, parent_pid

    def is_set(self) -> bool:
        return self.event.is_set() or os.getppid() != self.parent_pid


def check_cpus(cpus: Any) -> frozenset[int]:
    """``cpus`` as a set of CPU numbers this process may use, or a ValueError naming the fix."""
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("worker_cpus needs os.sched_setaffinity (Linux); leave it unset on this platform")
    try:
        chosen = frozenset(int(cpu) for cpu in cpus)
    except (TypeError, ValueError):
        raise ValueError(f"worker_cpus must be CPU numbers such as {{1, 2, 3}}, got {cpus!r}") from None
    allowed = os.sched_getaffinity(0)
    if not chosen or not chosen <= allowed:
        raise ValueError(f"worker_cpus {sorted(chosen)} must be a non-empty subset of the CPUs this process may use "
                         f"({sorted(allowed)})")
    return chosen


def _worker_main(factory: Callable[[], Any], conn: Any, cancel_event: Any, threads: int, parent_pid: int,
                 nice: int | None = None, cpus: frozenset[int] | None = None) -> None:
    """The child: build the generator, then answer requests until told to stop or the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    if nice:
        os.nice(nice)
    if cpus:
        os.sched_setaffinity(0, cpus)
    send_lock = threading.Lock()
    root = logging.getLogger()
    root.addHandler(_PipeLogHandler(conn, send_lock))
    root.setLevel(logging.INFO)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (the factory started parallel work)
        pass
    try:
        generator = factory()
        from safetext.service.limits import default_steps, native_size

        facts = {"default_size": native_size(generator), "default_steps": default_steps(generator)}
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises WorkerUnavailable
        with send_lock:
            conn.send(("failed", traceback.format_exc()))
        return
    with send_lock:
        conn.send(("ready", facts))
    cancel = _Cancel(cancel_event, parent_pid)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        _, request_id, prompt, seed, kwargs = request
        try:
            pngs, verdict, seconds = generate_pngs(generator, prompt, seed, kwargs, cancel)
            answer: tuple = ("ok", pngs, verdict, seconds)
        except Cancelled as exc:
            answer = ("cancelled", str(exc))
        except PolicyViolation as exc:
            answer = ("violation", str(exc), exc.verdict)
        except PolicyError as exc:
            answer = ("policy_error", str(exc))
        except Exception as exc:  # noqa: BLE001 - the parent logs it under the request id
            answer = ("error", type(exc).__name__, traceback.format_exc())
        try:
            with send_lock:
                conn.send(answer)
        except (OSError, ValueError):
            return
