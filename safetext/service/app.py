"""The HTTP service: a FastAPI app that scans prompts and generates guarded images.

Routes:
    ``POST /v1/generate``: body ``{prompt, seed, steps, guidance_scale, width, height, num_images}``;
        200 with base64 PNGs and the verdict, 403 with the verdict when the policy blocks the prompt.
    ``POST /v1/scan``: body ``{prompt}``; 200 with the verdict (a blocked prompt is a normal answer here).
    ``GET /metrics``: Prometheus text from the app's own registry.
    ``GET /healthz``: liveness and queue state; the only route served without a token.

Errors all have the body ``{"error": ..., "detail": ...}``: 401 unauthorized, 404 not_found,
405 method_not_allowed, 413 payload_too_large, 422 invalid_request (also a request over the compute
budget), 403 policy_violation (+ ``verdict``), 429 rate_limited (+ ``Retry-After``: a client over its
scan rate, see :mod:`safetext.service.ratelimit`), 503 overloaded (+ ``Retry-After``), 500
generation_failed. Internal exception text never reaches a client: a 500 names the request id
(also the ``X-Request-ID`` header) under which the service log holds the traceback.

A generation whose client disconnects is cancelled between two denoising steps; on shutdown the
service stops accepting, lets running generations finish for ``shutdown_timeout`` seconds, then
cancels them the same way.

Generations run in worker threads of this process (``worker="thread"``) or in worker processes
(``worker="process"``, see :mod:`safetext.service.worker`) so that scans, ``/healthz`` and admission
never share the interpreter lock with the denoiser. Waiting requests are served fairly per client
(remote address, or a header set by a trusted proxy), weighted by their compute.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime and the
# request models are local to create_app.

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import threading

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from safetext.errors import PolicyError, PolicyViolation
from safetext.policy.verdict import Verdict
from safetext.service.admission import Cancelled, GenerationPool, Overloaded
from safetext.service.guards import RequestGuardMiddleware
from safetext.service.limits import ErrorResponse, GenerateResponse, ServiceLimits, build_request_models, check_request
from safetext.service.ratelimit import DEFAULT_MAX_SCANS_PER_CLIENT, DEFAULT_SCAN_RATE, RateLimited, ScanLimiter
from safetext.service.worker import ProcessWorker, check_cpus, generate_pngs
from safetext.telemetry import SafetextMetrics, log_request_event

logger = logging.getLogger("safetext.service")

ROUTES = ("/v1/generate", "/v1/scan", "/metrics", "/healthz")
_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 413, 422, 500, 503)}
_SCAN_ERRORS = {code: {"model": ErrorResponse} for code in (401, 413, 422, 429)}
#: Status of a request whose client went away before the answer (nginx's convention; nobody reads it).
CLIENT_CLOSED = 499


def create_app(
    generator: Any = None,
    policy: Any = None,
    *,
    generator_factory: Callable[[], Any] | None = None,
    token: str | None,
    insecure_no_auth: bool = False,
    max_queue: int = 8,
    max_concurrency: int = 1,
    limits: ServiceLimits | None = None,
    metrics: SafetextMetrics | None = None,
    log_prompts: bool = False,
    shutdown_timeout: float = 30.0,
    worker: str = "thread",
    worker_threads: int | None = None,
    max_waiting_per_client: int | None = None,
    client_header: str | None = None,
    scan_rate: float | None = DEFAULT_SCAN_RATE,
    scan_burst: int | None = None,
    max_scans_per_client: int | None = DEFAULT_MAX_SCANS_PER_CLIENT,
    worker_nice: int | None = None,
    worker_cpus: Any = None,
) -> FastAPI:
    """Build the service app around a guarded generator and a policy.

    Args:
        generator: a ``SafeTextGenerator`` (or anything called like one) shared by the single worker.
        policy: the policy for ``/v1/scan``: a ``Policy`` or anything ``safetext.policy.load_policy``
            takes (name, YAML path, mapping); default: ``generator.policy``.
        generator_factory: called ``max_concurrency`` times at startup, one generator (and pipeline)
            per worker; use it instead of ``generator`` to load the model when the server starts.
        token: the bearer token every route but ``/healthz`` requires.
        insecure_no_auth: must be True to run with ``token=None``.
        max_queue: requests allowed to wait for a worker; beyond it the answer is 503 at once.
        max_concurrency: generation workers; each owns one pipeline (more than 1 needs a factory).
        limits: request limits (default :class:`ServiceLimits`); limits left at None are derived from the
            served pipeline at startup (its native size and default steps, see :meth:`ServiceLimits.resolve`).
        metrics: where to count (default: a new :class:`SafetextMetrics` on a fresh registry).
        log_prompts: put prompt text in the request log events (default: a hash only, unless the
            policy's config sets ``log_prompts: true``).
        shutdown_timeout: seconds running generations may take to finish when the service stops; then
            they are cancelled at their next denoising step.
        worker: ``"thread"``: generations run in threads of this process; ``"process"``: each of the
            ``max_concurrency`` workers is a :class:`~safetext.service.worker.ProcessWorker` that builds
            its generator with ``generator_factory`` (which must then be picklable) and is restarted
            when it dies.
        worker_threads: torch intra-op threads of each worker process (default: CPU cores less one).
        max_waiting_per_client: most requests one client may have waiting (None: only ``max_queue``).
        client_header: a request header that names the client for the fair queue and the scan rate limit
            (set by a trusted proxy in front of the service); default: the remote address.
        scan_rate: characters per second each client may scan on average; a scan costs its prompt's
            length plus 100, and a client over its rate gets 429 with ``Retry-After`` (None: no limit).
        scan_burst: characters a client may scan at once after a pause (default: two seconds of ``scan_rate``).
        max_scans_per_client: most scans one client may have running at once; 429 beyond (None: no cap).
        worker_nice: niceness added to each worker process (0-19), so that under CPU contention the HTTP
            process (scans, ``/healthz``, admission) runs before the denoiser (``worker="process"`` only).
        worker_cpus: CPUs each worker process is pinned to (a set of CPU numbers, ``worker="process"``
            only; Linux), e.g. all but the one left to the HTTP process.

    Example:
        >>> from safetext.service import create_app
        >>> app = create_app(generator_factory=make_generator, policy="default", token=token)  # doctest: +SKIP
        >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    if (generator is None) == (generator_factory is None):
        raise ValueError("pass exactly one of `generator` (an instance) and `generator_factory` (a callable)")
    if token is None and not insecure_no_auth:
        raise ValueError("no API token: pass token=... (or set SAFETEXT_API_TOKEN), or insecure_no_auth=True to serve without auth")
    if token is not None and insecure_no_auth:
        raise ValueError("both a token and insecure_no_auth=True were given; drop one of them")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
    if generator is not None and max_concurrency > 1:
        raise ValueError(
            f"max_concurrency={max_concurrency} with one shared generator would run one pipeline in several "
            "threads at once; pass generator_factory so each worker builds its own pipeline"
        )
    if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
        raise ValueError(f"max_queue must be an integer >= 0, got {max_queue!r}")
    if not shutdown_timeout >= 0:
        raise ValueError(f"shutdown_timeout must be >= 0 seconds, got {shutdown_timeout!r}")
    if worker not in ("thread", "process"):
        raise ValueError(f"worker must be 'thread' or 'process', got {worker!r}")
    if worker == "process" and generator_factory is None:
        raise ValueError("worker='process' builds the generator in the worker process: pass generator_factory "
                         "(a picklable callable such as safetext.service.worker.GeneratorRecipe), not generator")
    if worker == "process" and policy is None:
        policy = getattr(generator_factory, "policy", None)
        if policy is None:
            raise ValueError("worker='process' needs policy=... for /v1/scan (the generator lives in the worker process)")
    for name, value in (("worker_threads", worker_threads), ("max_waiting_per_client", max_waiting_per_client)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1 (or None), got {value!r}")
    if worker_threads is not None and worker != "process":
        raise ValueError("worker_threads applies to worker='process' only; set torch's threads yourself for 'thread'")
    for name, value in (("worker_nice", worker_nice), ("worker_cpus", worker_cpus)):
        if value is not None and worker != "process":
            raise ValueError(f"{name} applies to worker='process' only (a thread shares the HTTP process's priority)")
    if worker_nice is not None and (isinstance(worker_nice, bool) or not isinstance(worker_nice, int)
                                    or not 0 <= worker_nice <= 19):
        raise ValueError(f"worker_nice must be an integer from 0 to 19 (or None), got {worker_nice!r}")
    if worker_cpus is not None:
        worker_cpus = check_cpus(worker_cpus)
    scan_limiter = ScanLimiter(scan_rate, scan_burst, max_scans_per_client)
    policy = _resolve_policy(policy, generator)
    log_prompts = log_prompts or bool(getattr(getattr(policy, "config", None), "log_prompts", False))
    limits = limits or ServiceLimits()
    metrics = metrics or SafetextMetrics()
    GenerateRequest, ScanRequest = build_request_models(limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if worker == "process":
            generators = [ProcessWorker(generator_factory, threads=worker_threads, nice=worker_nice, cpus=worker_cpus)
                          for _ in range(max_concurrency)]
            try:
                for process in generators:
                    await asyncio.to_thread(process.start)
            except BaseException:
                for process in generators:
                    await asyncio.to_thread(process.close)
                raise
        elif generator is not None:
            generators = [generator]
        else:
            generators = [await asyncio.to_thread(generator_factory) for _ in range(max_concurrency)]
        for served in generators:
            if getattr(served, "metrics", None) is not None:
                logger.warning("the served generator has its own metrics=; the service counts requests too, so "
                               "generations are counted twice. Build the generator without metrics=")
        resolved = limits.resolve(generators[0])
        app.state.limits, app.state.native = resolved, limits.native(generators[0])
        app.state.pool = GenerationPool(generators, max_queue, max_waiting_per_client)
        logger.info("safetext service ready: %d %s worker(s), queue bound %d, limits: %d steps (default %d), %dx%d px, "
                    "%d images, compute budget %d step-pixels", max_concurrency, worker, max_queue, resolved.max_steps,
                    resolved.default_steps, resolved.max_width, resolved.max_height, resolved.max_images,
                    resolved.max_compute)
        try:
            yield
        finally:
            await asyncio.to_thread(app.state.pool.close, shutdown_timeout)
            for served in generators:
                if isinstance(served, ProcessWorker):
                    await asyncio.to_thread(served.close)

    app = FastAPI(title="safetext", summary="Guarded text-to-image generation and prompt scanning.", lifespan=lifespan)
    app.state.metrics, app.state.policy, app.state.limits = metrics, policy, limits
    app.state.pool, app.state.worker, app.state.scan_limiter = None, worker, scan_limiter
    responses = _register_service_metrics(metrics, app)

    def refuse_throttled_scan(scope: dict[str, Any]) -> tuple[int, str, str, dict[str, str]] | None:
        """A scan from a client with an empty bucket is refused before its body is read (the flood stays cheap)."""
        if scope.get("path") != "/v1/scan" or scope.get("method") != "POST":
            return None
        refusal = scan_limiter.refusal(_scope_client_key(scope, client_header))
        if refusal is None:
            return None
        request_id = uuid.uuid4().hex
        logger.debug("scan refused (request %s): %s", request_id, refusal)
        return 429, "rate_limited", str(refusal), {"Retry-After": str(refusal.retry_after), "X-Request-ID": request_id}

    app.add_middleware(
        RequestGuardMiddleware, token=token, max_body_bytes=limits.max_body_bytes, max_json_depth=limits.max_json_depth,
        on_response=lambda path, status: responses.labels(route=path if path in ROUTES else "other", status=str(status)).inc(),
        refuse_early=refuse_throttled_scan if scan_limiter.enabled else None,
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    @app.post("/v1/generate", response_model=GenerateResponse, responses=_ERRORS)
    async def generate(body: GenerateRequest, request: Request) -> Any:  # type: ignore[valid-type]
        request_id, started = uuid.uuid4().hex, time.perf_counter()
        log = _request_logger(request_id, "/v1/generate", started, log_prompts)
        resolved = app.state.limits
        body = body.with_defaults(resolved)
        problems = check_request(body, resolved, app.state.native)
        if problems:
            log(None, 422, error="limits")
            return _invalid(problems, request_id)
        cancel = threading.Event()
        height, width = body.height or app.state.native[0], body.width or app.state.native[1]
        client = _client_key(request, client_header)
        try:
            images, verdict, seconds = await _until_disconnect(
                request,
                app.state.pool.run(lambda gen: _generate(gen, body, cancel, request_id), cancel, client=client,
                                   cost=float(body.steps * width * height * body.num_images)),
                cancel,
            )
        except Overloaded as exc:
            return _error(503, "overloaded", str(exc), request_id, headers={"Retry-After": "1"})
        except _ClientGone:
            log(None, CLIENT_CLOSED, error="client_disconnected")
            return _error(CLIENT_CLOSED, "cancelled", "the client disconnected; the generation was cancelled", request_id)
        except Cancelled:
            log(None, 503, error="cancelled")
            return _error(503, "overloaded", "the service is shutting down; retry on another replica", request_id,
                          headers={"Retry-After": "1"})
        except PolicyViolation as exc:
            verdict = _as_verdict(exc.verdict)
            metrics.observe_request(verdict, scan_seconds=_detail_seconds(verdict, "scan_seconds"))
            log(verdict, 403)
            return _error(403, "policy_violation", str(exc), request_id, verdict=verdict)
        except PolicyError as exc:  # the prompt against the policy (too long, invalid Unicode): the client's to fix
            metrics.observe_error()
            log(None, 422, error=type(exc).__name__)
            return _error(422, "invalid_request", str(exc), request_id)
        except Exception as exc:  # anything else is ours; its text may hold paths or secrets: log it, answer the id
            metrics.observe_error()
            kind = getattr(exc, "remote_type", type(exc).__name__)
            logger.exception("generation failed (request %s)", request_id)
            log(None, 500, error=kind)
            detail = f"generation failed ({kind}); see the service log for request {request_id}"
            return _error(500, "generation_failed", detail, request_id)
        generation_seconds = _detail_seconds(verdict, "generation_seconds")
        metrics.observe_request(
            verdict, seconds if generation_seconds is None else generation_seconds,
            scan_seconds=_detail_seconds(verdict, "scan_seconds"),
            patch_overhead_seconds=_detail_seconds(verdict, "patch_overhead_seconds"),
        )
        log(verdict, 200, steps=body.steps, num_images=body.num_images)
        payload = {"images": images, "verdict": verdict.to_dict(), "seed": body.seed, "steps": body.steps, "seconds": seconds}
        return JSONResponse(payload, headers={"X-Request-ID": request_id})

    @app.post("/v1/scan", responses=_SCAN_ERRORS)
    async def scan(body: ScanRequest, request: Request) -> Any:  # type: ignore[valid-type]
        request_id, started = uuid.uuid4().hex, time.perf_counter()
        log = _request_logger(request_id, "/v1/scan", started, log_prompts)
        client = _client_key(request, client_header)
        try:
            scan_limiter.acquire(client, len(body.prompt))
        except RateLimited as exc:  # refused before any scanning: a flood costs the service almost nothing
            log(None, 429, error="rate_limited")
            return _error(429, "rate_limited", str(exc), request_id, headers={"Retry-After": str(exc.retry_after)})
        try:
            # In a thread, never on the event loop: /healthz and admission keep answering during a long scan.
            verdict = _as_verdict(await run_in_threadpool(policy.scan, body.prompt))
        except PolicyError as exc:
            metrics.observe_error()
            log(None, 422, error=type(exc).__name__)
            return _error(422, "invalid_request", str(exc), request_id)
        finally:
            scan_limiter.release(client)
        metrics.observe_request(verdict, scan_seconds=time.perf_counter() - started)
        log(verdict, 200)
        return JSONResponse({"verdict": verdict.to_dict()}, headers={"X-Request-ID": request_id})

    @app.get("/metrics", response_class=Response)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:  # on the event loop: no thread-pool hop for the load balancer
        pool = app.state.pool
        state = pool.state().to_dict() if pool is not None else None
        workers = {"mode": worker, "restarts": _restarts(pool)}
        return {"status": "ok" if pool is not None else "starting", "policy": _policy_name(policy), "queue": state,
                "workers": workers}

    return app


class _ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _until_disconnect(request: Request, work: Any, cancel: threading.Event) -> Any:
    """Await ``work``; when the client disconnects first, set ``cancel``, stop the work and raise _ClientGone."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        cancel.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Cancelled):
            await task
        raise _ClientGone()
    finally:
        watcher.cancel()
        if not task.done():
            cancel.set()
            task.cancel()


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _generate(gen: Any, body: Any, cancel: threading.Event, request_id: str) -> tuple[list[dict[str, Any]], Verdict, float]:
    """Runs in a pool thread: one guarded generation (here or in a worker process), its images as base64 PNGs.

    The generation stops at the next step once ``cancel`` is set.
    """
    if isinstance(gen, ProcessWorker):
        pngs, verdict, seconds = gen.generate(body.prompt, body.seed, body.pipeline_kwargs(), cancel, request_id)
    else:
        pngs, verdict, seconds = generate_pngs(gen, body.prompt, body.seed, body.pipeline_kwargs(), cancel)
    images = [{"png_base64": base64.b64encode(png).decode("ascii"), "width": width, "height": height}
              for png, width, height in pngs]
    return images, _as_verdict(verdict), seconds


def _client_key(request: Request, header: str | None) -> str:
    """Who the fair queue counts a request against: the trusted proxy's header, else the remote address."""
    return _scope_client_key(request.scope, header)


def _scope_client_key(scope: dict[str, Any], header: str | None) -> str:
    if header:
        name = header.lower().encode("latin-1")
        for key, value in scope.get("headers", ()):
            if key.lower() == name and value:
                return "h:" + value.decode("latin-1").split(",")[0].strip()[:256]
    client = scope.get("client")
    return "a:" + (client[0] if client else "")


def _restarts(pool: Any) -> int:
    return sum(getattr(gen, "restarts", 0) for gen in pool.generators) if pool is not None else 0


def _request_logger(request_id: str, route: str, started: float, log_prompts: bool) -> Callable[..., None]:
    def log(verdict: Verdict | None, status: int, **fields: Any) -> None:
        log_request_event(
            logger, verdict, seconds=time.perf_counter() - started, log_prompts=log_prompts,
            route=route, status=status, request_id=request_id, **fields,
        )

    return log


def _error(status: int, error: str, detail: str, request_id: str, *, verdict: Verdict | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if verdict is not None:
        body["verdict"] = verdict.to_dict()
    return JSONResponse(body, status_code=status, headers={"X-Request-ID": request_id, **(headers or {})})


_FRIENDLY = {
    "json_invalid": "the body is not valid JSON",
    "model_attributes_type": "the body must be a JSON object sent with 'Content-Type: application/json'",
    "extra_forbidden": "unknown field; remove it (see /docs for the accepted fields)",
}


def _invalid(errors: list[dict[str, str]], request_id: str | None = None) -> JSONResponse:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request body"
    headers = {"X-Request-ID": request_id} if request_id else None
    return JSONResponse({"error": "invalid_request", "detail": detail, "errors": errors}, status_code=422, headers=headers)


_HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """404, 405 and other routing errors in the service's ``{error, detail}`` format."""
    status = getattr(exc, "status_code", 500)
    if status == 404:
        detail = f"no route {request.url.path}; the routes are {', '.join(ROUTES)}"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    else:
        detail = "the request could not be handled"
    headers = dict(getattr(exc, "headers", None) or {})
    return JSONResponse({"error": _HTTP_ERRORS.get(status, "http_error"), "detail": detail}, status_code=status,
                        headers=headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable message; the offending input is not echoed back (it may be the prompt)."""
    errors = []
    for error in exc.errors():  # type: ignore[attr-defined]
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        message = _FRIENDLY.get(error.get("type", ""), error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":  # loc holds the character position, not a field
            message, loc = f"{message} (error at character {loc[0]})" if loc else message, []
        errors.append({"field": ".".join(loc) or "body", "message": message, "type": error.get("type", "")})
    return _invalid(errors)


def _register_service_metrics(metrics: SafetextMetrics, app: FastAPI) -> Counter:
    """HTTP-level series on the app's registry: responses by route and status, and the queue gauges."""
    responses = Counter(
        "safetext_http_responses_total", "HTTP responses by route and status code.", ["route", "status"],
        registry=metrics.registry,
    )
    for name, doc, field in (
        ("safetext_queue_running", "Generations running now.", "running"),
        ("safetext_queue_waiting", "Generation requests waiting for a worker.", "waiting"),
    ):
        gauge = Gauge(name, doc, registry=metrics.registry)
        gauge.set_function(lambda field=field: float(getattr(app.state.pool.state(), field)) if app.state.pool else 0.0)
    restarts = Gauge("safetext_worker_restarts", "Generation worker processes restarted after they died, since start.",
                     registry=metrics.registry)
    restarts.set_function(lambda: float(_restarts(app.state.pool)))
    return responses


def _resolve_policy(policy: Any, generator: Any) -> Any:
    if policy is None:
        policy = getattr(generator, "policy", None)
        if policy is None:
            raise ValueError("no policy: pass policy=<name, path or Policy> (the generator does not expose .policy)")
    if not callable(getattr(policy, "scan", None)):
        from safetext.policy import load_policy

        policy = load_policy(policy)  # a name, path, mapping or PolicyConfig; PolicyError otherwise
    return policy


def _policy_name(policy: Any) -> str | None:
    name = getattr(policy, "name", None)
    if name is None:
        name = getattr(getattr(policy, "config", None), "name", None)
    return name if isinstance(name, str) else None


def _as_verdict(verdict: Any) -> Verdict:
    if isinstance(verdict, Verdict):
        return verdict
    raise TypeError(f"expected a safetext Verdict, got {type(verdict).__name__}")


def _detail_seconds(verdict: Verdict, key: str) -> float | None:
    """A timing the generator recorded in ``verdict.details["timings"][key]``, if any."""
    timings = verdict.details.get("timings")
    value = timings.get(key) if isinstance(timings, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None
