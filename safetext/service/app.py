"""The HTTP service: a FastAPI app that scans prompts and generates guarded images.

Routes:
    ``POST /v1/generate``: body ``{prompt, seed, steps, guidance_scale, width, height, num_images}``;
        200 with base64 PNGs and the verdict, 403 with the verdict when the policy blocks the prompt.
    ``POST /v1/scan``: body ``{prompt}``; 200 with the verdict (a blocked prompt is a normal answer here).
    ``GET /metrics``: Prometheus text from the app's own registry.
    ``GET /healthz``: liveness and queue state; the only route served without a token.

Errors all have the body ``{"error": ..., "detail": ...}``: 401 unauthorized, 413 payload_too_large,
422 invalid_request, 403 policy_violation (+ ``verdict``), 503 overloaded (+ ``Retry-After``),
500 generation_failed.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime and the
# request models are local to create_app.

import asyncio
import base64
import contextlib
import io
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from safetext.errors import PolicyError, PolicyViolation
from safetext.policy.verdict import Verdict
from safetext.service.admission import GenerationPool, Overloaded
from safetext.service.guards import RequestGuardMiddleware
from safetext.service.limits import ErrorResponse, GenerateResponse, ServiceLimits, build_request_models
from safetext.telemetry import SafetextMetrics, log_request_event

logger = logging.getLogger("safetext.service")

ROUTES = ("/v1/generate", "/v1/scan", "/metrics", "/healthz")
_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 413, 422, 500, 503)}


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
        limits: request limits (default :class:`ServiceLimits`).
        metrics: where to count (default: a new :class:`SafetextMetrics` on a fresh registry).
        log_prompts: put prompt text in the request log events (default: a hash only, unless the
            policy's config sets ``log_prompts: true``).

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
    policy = _resolve_policy(policy, generator)
    log_prompts = log_prompts or bool(getattr(getattr(policy, "config", None), "log_prompts", False))
    limits = limits or ServiceLimits()
    metrics = metrics or SafetextMetrics()
    GenerateRequest, ScanRequest = build_request_models(limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if generator is not None:
            generators = [generator]
        else:
            generators = [await asyncio.to_thread(generator_factory) for _ in range(max_concurrency)]
        for served in generators:
            if getattr(served, "metrics", None) is not None:
                logger.warning("the served generator has its own metrics=; the service counts requests too, so "
                               "generations are counted twice. Build the generator without metrics=")
        app.state.pool = GenerationPool(generators, max_queue)
        logger.info("safetext service ready: %d worker(s), queue bound %d", max_concurrency, max_queue)
        try:
            yield
        finally:
            await asyncio.to_thread(app.state.pool.close)

    app = FastAPI(title="safetext", summary="Guarded text-to-image generation and prompt scanning.", lifespan=lifespan)
    app.state.metrics, app.state.policy, app.state.limits = metrics, policy, limits
    app.state.pool = None
    responses = _register_service_metrics(metrics, app)
    app.add_middleware(
        RequestGuardMiddleware, token=token, max_body_bytes=limits.max_body_bytes,
        on_response=lambda path, status: responses.labels(route=path if path in ROUTES else "other", status=str(status)).inc(),
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)

    @app.post("/v1/generate", response_model=GenerateResponse, responses=_ERRORS)
    async def generate(body: GenerateRequest) -> Any:  # type: ignore[valid-type]
        request_id, started = uuid.uuid4().hex, time.perf_counter()
        log = _request_logger(request_id, "/v1/generate", started, log_prompts)
        try:
            images, verdict, seconds = await app.state.pool.run(lambda gen: _generate(gen, body))
        except Overloaded as exc:
            return _error(503, "overloaded", str(exc), request_id, headers={"Retry-After": "1"})
        except PolicyViolation as exc:
            verdict = _as_verdict(exc.verdict)
            metrics.observe_request(verdict, scan_seconds=_detail_seconds(verdict, "scan_seconds"))
            log(verdict, 403)
            return _error(403, "policy_violation", str(exc), request_id, verdict=verdict)
        except (PolicyError, ValueError) as exc:
            metrics.observe_error()
            log(None, 422, error=type(exc).__name__)
            return _error(422, "invalid_request", str(exc), request_id)
        except Exception as exc:
            metrics.observe_error()
            logger.exception("generation failed (request %s)", request_id)
            log(None, 500, error=type(exc).__name__)
            detail = f"generation failed ({type(exc).__name__}); see the service log for request {request_id}"
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

    @app.post("/v1/scan", responses=_ERRORS)
    def scan(body: ScanRequest) -> Any:  # type: ignore[valid-type]
        request_id, started = uuid.uuid4().hex, time.perf_counter()
        log = _request_logger(request_id, "/v1/scan", started, log_prompts)
        try:
            verdict = _as_verdict(policy.scan(body.prompt))
        except PolicyError as exc:
            metrics.observe_error()
            log(None, 422, error=type(exc).__name__)
            return _error(422, "invalid_request", str(exc), request_id)
        metrics.observe_request(verdict, scan_seconds=time.perf_counter() - started)
        log(verdict, 200)
        return JSONResponse({"verdict": verdict.to_dict()}, headers={"X-Request-ID": request_id})

    @app.get("/metrics", response_class=Response)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        pool = app.state.pool
        state = pool.state().to_dict() if pool is not None else None
        return {"status": "ok" if pool is not None else "starting", "policy": _policy_name(policy), "queue": state}

    return app


def _generate(gen: Any, body: Any) -> tuple[list[dict[str, Any]], Verdict, float]:
    """Runs in a worker thread: one guarded generation, its images as base64 PNGs."""
    import torch

    started = time.perf_counter()
    output = gen(prompt=body.prompt, generator=torch.Generator().manual_seed(body.seed), output_type="pil", **body.pipeline_kwargs())
    seconds = time.perf_counter() - started
    verdict = getattr(output, "verdict", None)
    if verdict is None:
        raise TypeError(f"{type(gen).__name__} returned an output without .verdict; serve a safetext.generator.SafeTextGenerator")
    images = []
    for image in output.images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        images.append({"png_base64": base64.b64encode(buffer.getvalue()).decode("ascii"), "width": image.width, "height": image.height})
    return images, _as_verdict(verdict), seconds


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


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable message; the offending input is not echoed back (it may be the prompt)."""
    errors = []
    for error in exc.errors():  # type: ignore[attr-defined]
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        message = _FRIENDLY.get(error.get("type", ""), error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":  # loc holds the character position, not a field
            message, loc = f"{message} (error at character {loc[0]})" if loc else message, []
        errors.append({"field": ".".join(loc) or "body", "message": message, "type": error.get("type", "")})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request body"
    return JSONResponse({"error": "invalid_request", "detail": detail, "errors": errors}, status_code=422)


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
